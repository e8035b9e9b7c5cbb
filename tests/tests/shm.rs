//! End-to-end tests of shm-demo: both flavours (posix, sysv), the default run, reader
//! and writer as separate processes, bulk through the ring (and a corruption injected
//! into the segment), ping on semaphores and with --spin, bad usage, Ctrl+C while
//! blocked, a writer with nothing to open, and a peer killed with SIGKILL; and the
//! `memfd` flavour (issue 12): no name, sealed, shared with a forked child.
//!
//! After every run: nothing of ours left in the kernel. POSIX: no /dev/shm entry of
//! ours (the object, or a `sem.` named semaphore). System V: no line with our key in
//! /proc/sysvipc/shm or /proc/sysvipc/sem. Each test meets at its own name or key,
//! made of this test process's pid and a tag, so the tests run in parallel.

use ipc_tests::*;
use nix::sys::signal::kill;
use nix::unistd::Pid;

const DEMO: &str = "shm-demo";
/// Long enough that it is still running when a test kills one side.
const ENDLESS: [&str; 4] = ["--count", "100000000", "--size", "4096"];

/// Where a test's two sides meet.
#[derive(Clone)]
enum Meet {
    Posix(String),
    Sysv(i32),
}

impl Meet {
    fn posix(tag: &str) -> Meet {
        Meet::Posix(format!("/shm-test-{}-{tag}", std::process::id()))
    }

    /// A key of this test process: 0x6PPPPPTT (pid's low 20 bits, tag).
    fn sysv(tag: u8) -> Meet {
        let pid = (std::process::id() & 0xf_ffff) as i32;
        Meet::Sysv(0x6000_0000 | pid << 8 | tag as i32)
    }

    /// The meeting point the default run picks by itself: from the reader's pid.
    fn default_of(flavour: &str, reader_pid: i32) -> Meet {
        match flavour {
            "posix" => Meet::Posix(format!("/shm-demo-{reader_pid}")),
            _ => Meet::Sysv(0x5300_0000 | reader_pid),
        }
    }

    /// The flavour word and its option: `posix --name /x` or `sysv --key 0x...`.
    fn args(&self) -> Vec<String> {
        match self {
            Meet::Posix(name) => vec!["posix".into(), "--name".into(), name.clone()],
            Meet::Sysv(key) => vec!["sysv".into(), "--key".into(), format!("{key:#x}")],
        }
    }

    /// Asserts the kernel keeps nothing of ours.
    fn assert_nothing_left(&self) {
        match self {
            Meet::Posix(name) => {
                let file = &name[1..];
                for entry in [format!("/dev/shm/{file}"), format!("/dev/shm/sem.{file}")] {
                    assert!(is_gone(&entry), "{entry} was left behind");
                }
            }
            Meet::Sysv(key) => {
                for table in ["shm", "sem"] {
                    assert!(
                        !sysv_keys(table).contains(key),
                        "/proc/sysvipc/{table} still has key {key:#x}"
                    );
                }
            }
        }
    }
}

/// The keys in /proc/sysvipc/shm or /sem (first column, signed decimal).
fn sysv_keys(table: &str) -> Vec<i32> {
    let text = std::fs::read_to_string(format!("/proc/sysvipc/{table}")).expect("sysvipc");
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// `role` followed by the meeting point and `rest`, as one argument list.
fn command(role: &str, meet: &Meet, rest: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if !role.is_empty() {
        args.push(role.into());
    }
    args.extend(meet.args());
    args.extend(rest.iter().map(|s| s.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The hex number right after `key` in `line`.
fn hex_after(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} not in {line:?}"))
        + key.len();
    let digits: String = line[at..]
        .trim_start_matches("0x")
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    u64::from_str_radix(&digits, 16).unwrap_or_else(|_| panic!("no hex after {key:?}: {line}"))
}

/// The text between `start` and `end` in `line`.
fn between<'a>(line: &'a str, start: &str, end: &str) -> &'a str {
    let from = line
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in {line:?}"))
        + start.len();
    let len = line[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{end:?} not after {start:?} in {line:?}"));
    &line[from..from + len]
}

/// How one side saw the segment: its address, the inode in its /proc/PID/maps line,
/// and the physical frame of page 0 if the kernel showed it.
#[derive(Debug)]
struct View {
    addr: u64,
    inode: String,
    frame: Option<u64>,
}

fn view(stdout: &str, role: &str) -> View {
    let mine = |needle: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("[{role} ")) && l.contains(needle))
            .unwrap_or_else(|| panic!("no {role} line with {needle:?}:\n{stdout}"))
            .to_string()
    };
    let line = mine("my view: the segment at ");
    let page = mine("page 0 at ");
    View {
        addr: hex_after(&line, "the segment at "),
        inode: between(&line, "(inode ", ")").to_string(),
        frame: page
            .contains("physical frame")
            .then(|| hex_after(&page, "physical frame ")),
    }
}

/// One physical memory, two virtual addresses: the addresses differ, the inode (and
/// the frame, where both sides could read it) is the same.
fn assert_two_addresses_one_memory(reader: &View, writer: &View) {
    assert_ne!(reader.addr, writer.addr, "the two mappings should differ");
    assert_eq!(reader.inode, writer.inode, "both map the same object");
    if let (Some(r), Some(w)) = (reader.frame, writer.frame) {
        assert_eq!(r, w, "both see the same physical page");
    }
}

/// The bytes the writer stored and the bytes the reader found, message by message.
fn stored_and_seen(writer_out: &str, reader_out: &str) -> (Vec<String>, Vec<String>) {
    let stored = writer_out
        .lines()
        .filter(|l| l.starts_with("[writer ") && l.contains("] stored "))
        .map(|l| between(l, "] stored ", " at 0x").to_string())
        .collect();
    let seen = reader_out
        .lines()
        .filter(|l| l.starts_with("[reader ") && l.contains(": read in place"))
        .map(|l| between(l, " holds ", ": read in place").to_string())
        .collect();
    (stored, seen)
}

fn received(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("[reader ") && l.contains("] received "))
        .map(|l| between(l, "] received ", " (").to_string())
        .collect()
}

// ---------------------------------------------------------------- default runs

fn default_run_shows_one_memory_at_two_addresses(flavour: &str) {
    let out = run(DEMO, &[flavour]);
    out.assert_success();
    let reader_pid = out.pid_of("reader");
    assert_eq!(reader_pid, out.pid, "the reader is the process we started");
    let writer_pid = out.pid_of("writer");
    assert_ne!(writer_pid, reader_pid, "two processes");

    assert_two_addresses_one_memory(&view(&out.stdout, "reader"), &view(&out.stdout, "writer"));
    let (stored, seen) = stored_and_seen(&out.stdout, &out.stdout);
    assert_eq!(stored.len(), 3, "{}", out.stdout);
    assert_eq!(stored, seen, "the reader sees the bytes the writer stored");
    assert_eq!(
        received(&out.stdout),
        [
            r#""hello""#,
            r#""from the writer's stores""#,
            r#""read in place by the reader""#
        ]
    );
    for role in ["reader", "writer"] {
        let summary = out.summary(role);
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(summary.num("messages"), 3.0);
        assert_eq!(summary.num("bytes"), 56.0);
    }
    // The reader's summary is its last line, after the writer was reaped.
    let last = out.stdout.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("[reader {reader_pid}] summary: ")),
        "{last}"
    );
    out.assert_stdout_contains(&format!("reaped writer {writer_pid}: exited with status 0"));
    Meet::default_of(flavour, reader_pid).assert_nothing_left();
}

#[test]
fn posix_default_run_shows_one_memory_at_two_addresses() {
    default_run_shows_one_memory_at_two_addresses("posix");
}

#[test]
fn sysv_default_run_shows_one_memory_at_two_addresses() {
    default_run_shows_one_memory_at_two_addresses("sysv");
}

#[test]
fn posix_keeps_its_semaphores_inside_the_segment() {
    let out = run(DEMO, &["hi"]); // posix is the default flavour
    out.assert_success()
        .assert_stdout_contains("sem_init(pshared=1) x4 inside the segment")
        .assert_stdout_contains("sem_destroy x4");
    // The semaphores lie in the segment: the reader's at a fixed offset from its
    // mapping, the writer's at the same offset from its own.
    let sems = |role: &str, needle: &str| {
        let line = out.lines_with(needle)[0];
        assert!(line.starts_with(&format!("[{role} ")), "{line}");
        hex_after(line, needle) - view(&out.stdout, role).addr
    };
    assert_eq!(
        sems("reader", "inside the segment at "),
        sems("writer", "for me at ")
    );
    Meet::default_of("posix", out.pid).assert_nothing_left();
}

#[test]
fn sysv_rmid_only_marks_a_segment_still_attached() {
    let meet = Meet::sysv(1);
    let out = run(DEMO, &strs(&command("", &meet, &["one"])));
    out.assert_success();
    let marked = out.line_index("IPC_RMID): only MARKED for removal");
    let freed = out.line_index("the kernel freed it");
    assert!(marked < freed, "{}", out.stdout);
    meet.assert_nothing_left();
}

// ---------------------------------------------------------------- two processes

/// Starts the reader alone and returns it once it waits for a writer.
fn start_reader(meet: &Meet, workload: &[&str]) -> Demo {
    let mut reader = Demo::start(DEMO, &strs(&command("reader", meet, workload)));
    reader.wait_for_line("ready. In another terminal: shm-demo writer");
    reader
}

fn separate_processes(meet: Meet, writer_stdin: Option<&[u8]>, messages: &[&str]) {
    let reader = start_reader(&meet, &[]);
    let args = command("writer", &meet, messages);
    let writer = match writer_stdin {
        Some(input) => run_with_stdin(DEMO, &strs(&args), input),
        None => run(DEMO, &strs(&args)),
    };
    writer.assert_success();
    let reader = reader.finish();
    reader.assert_success();

    let (r, w) = (
        view(&reader.stdout, "reader"),
        view(&writer.stdout, "writer"),
    );
    assert_two_addresses_one_memory(&r, &w);
    // The writer read the reader's address from the header: the one it printed.
    let claimed = hex_after(
        writer.lines_with("the reader mapped the segment at ")[0],
        "the reader mapped the segment at ",
    );
    assert_eq!(claimed, r.addr);
    let (stored, seen) = stored_and_seen(&writer.stdout, &reader.stdout);
    assert_eq!(stored, seen);
    let expected: Vec<String> = ["first", "", "ünïcode ✓"]
        .iter()
        .map(|m| format!("{m:?}"))
        .collect();
    assert_eq!(received(&reader.stdout), expected);
    assert_eq!(reader.summary("reader").num("messages"), 3.0);
    assert_eq!(writer.summary("writer").num("messages"), 3.0);
    meet.assert_nothing_left();
}

#[test]
fn posix_reader_and_writer_as_separate_processes() {
    separate_processes(Meet::posix("two"), None, &["first", "", "ünïcode ✓"]);
}

#[test]
fn sysv_writer_sends_the_lines_of_its_stdin() {
    separate_processes(Meet::sysv(2), Some("first\n\nünïcode ✓\n".as_bytes()), &[]);
}

#[test]
fn writer_with_another_workload_is_refused_and_the_reader_goes_on() {
    let meet = Meet::posix("mismatch");
    let reader = start_reader(&meet, &["--ping", "20"]);
    let wrong = run(DEMO, &strs(&command("writer", &meet, &["--ping", "21"])));
    wrong
        .assert_exit_code(1)
        .assert_stderr_contains("start both sides with the same workload options");
    let right = run(DEMO, &strs(&command("writer", &meet, &["--ping", "20"])));
    right.assert_success();
    assert_eq!(right.summary("writer").num("messages"), 20.0);
    reader.finish().assert_success();
    meet.assert_nothing_left();
}

// ---------------------------------------------------------------- workloads

fn bulk(meet: Meet, count: u64, size: usize) {
    bulk_with(meet, count, size, &[]);
}

fn bulk_with(meet: Meet, count: u64, size: usize, extra: &[&str]) {
    let (c, s) = (count.to_string(), size.to_string());
    let mut args = vec!["--count", c.as_str(), "--size", s.as_str()];
    args.extend_from_slice(extra);
    let out = run(DEMO, &strs(&command("", &meet, &args)));
    out.assert_success();
    for role in ["reader", "writer"] {
        let summary = out.summary(role);
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(summary.num("messages"), count as f64);
        assert_eq!(summary.num("bytes"), (count * size as u64) as f64);
        summary.assert_throughput_consistent();
    }
    meet.assert_nothing_left();
}

#[test]
fn posix_bulk_moves_tens_of_mib_intact() {
    bulk(Meet::posix("bulk64k"), 640, 65536); // 40 MiB through a 16-slot ring
    bulk(Meet::posix("bulk3"), 5000, 3); // a sequence number cut to 3 bytes
    bulk(Meet::posix("bulk1m"), 20, 1 << 20); // a ring of 2 slots
}

#[test]
fn sysv_bulk_moves_tens_of_mib_intact() {
    bulk(Meet::sysv(3), 640, 65536);
    bulk(Meet::sysv(4), 5000, 3);
}

/// Issue 13: the spinning ring (`--count --spin`) moves every byte intact too, whether
/// the sides find each other spinning or asleep (a 3-byte message is quick enough that
/// the reader outruns the writer and sleeps; 1 MiB messages are two slots).
#[test]
fn posix_spinning_ring_moves_tens_of_mib_intact() {
    bulk_with(Meet::posix("spinbulk4k"), 5000, 4096, &["--spin"]);
    bulk_with(Meet::posix("spinbulk3"), 5000, 3, &["--spin"]);
    bulk_with(Meet::posix("spinbulk1m"), 20, 1 << 20, &["--spin"]);
}

#[test]
fn sysv_spinning_ring_moves_tens_of_mib_intact() {
    bulk_with(Meet::sysv(21), 640, 65536, &["--spin"]);
    bulk_with(Meet::sysv(22), 5000, 3, &["--spin"]);
}

#[test]
fn spinning_ring_between_separate_processes() {
    let meet = Meet::posix("spinbulk2");
    let workload = ["--count", "5000", "--size", "4096", "--spin"];
    let reader = start_reader(&meet, &workload);
    let writer = run(DEMO, &strs(&command("writer", &meet, &workload)));
    writer.assert_success();
    assert_eq!(writer.summary("writer").num("messages"), 5000.0);
    let reader = reader.finish();
    reader.assert_success();
    assert_eq!(reader.summary("reader").num("bytes"), 5000.0 * 4096.0);
    meet.assert_nothing_left();
}

#[test]
fn bulk_between_separate_processes() {
    let meet = Meet::sysv(5);
    let workload = ["--count", "320", "--size", "65536"];
    let reader = start_reader(&meet, &workload);
    let writer = run(DEMO, &strs(&command("writer", &meet, &workload)));
    writer.assert_success();
    let reader = reader.finish();
    reader.assert_success();
    assert_eq!(reader.summary("reader").num("bytes"), 320.0 * 65536.0);
    meet.assert_nothing_left();
}

/// A third process writes a damaged message into the ring and posts `filled` itself,
/// as any process that maps the segment can: the reader must name the damage.
#[test]
fn posix_bulk_catches_a_corrupted_byte_in_the_segment() {
    let meet = Meet::posix("corrupt");
    let Meet::Posix(name) = &meet else {
        unreachable!()
    };
    let mut reader = Demo::start(
        DEMO,
        &strs(&command(
            "reader",
            &meet,
            &["--count", "2", "--size", "100"],
        )),
    );
    let sems_line = reader.wait_for_line("sem_init(pshared=1) x4 inside the segment at ");
    let view_line = reader.wait_for_line("my view: the segment at ");
    reader.wait_for_line("expecting 2 messages");
    let sems_offset =
        hex_after(&sems_line, "inside the segment at ") - hex_after(&view_line, "the segment at ");

    // Message 0 as the writer would store it, with byte 50 changed.
    let mut message = bulk_message(0, 100);
    message[50] ^= 0xff;
    inject_into_slot_0(&format!("/dev/shm{name}"), &message, sems_offset as usize);

    let out = reader.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("message 0, byte 50")
        .assert_stderr_contains("corrupted");
    meet.assert_nothing_left();
}

/// Maps the POSIX object at `path`, stores `message` in slot 0 (offset 4096: a u64
/// length, then the bytes; see shm-demo/src/segment.rs) and posts the `filled`
/// semaphore (the second sem_t at `sems_offset`).
fn inject_into_slot_0(path: &str, message: &[u8], sems_offset: usize) {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the segment");
    let len = 8192;
    // SAFETY: a new shared mapping of the first two pages of the object (which has at
    // least that many), at an address the kernel picks; unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap the segment");
    let base = base.cast::<u8>();
    // SAFETY: slot 0 and the semaphores lie inside the two pages just mapped; the
    // reader only looks at slot 0 after the post; sem_post on a pshared semaphore in
    // shared memory is what it is for.
    unsafe {
        let slot = base.add(4096);
        std::ptr::copy_nonoverlapping((message.len() as u64).to_le_bytes().as_ptr(), slot, 8);
        std::ptr::copy_nonoverlapping(message.as_ptr(), slot.add(8), message.len());
        let filled = base.add(sems_offset + size_of::<libc::sem_t>()).cast();
        assert_eq!(libc::sem_post(filled), 0, "sem_post");
        libc::munmap(base.cast(), len);
    }
}

fn ping(meet: Meet, spin: bool) {
    let mut args = vec!["--ping", "500", "--size", "64"];
    if spin {
        args.push("--spin");
    }
    let out = run(DEMO, &strs(&command("", &meet, &args)));
    out.assert_success();
    let summary = out.summary("writer");
    assert_eq!(summary.num("messages"), 500.0);
    assert_eq!(summary.num("bytes"), 500.0 * 64.0);
    let (p50, p99) = (summary.num("rtt_p50_us"), summary.num("rtt_p99_us"));
    assert!(p50 > 0.0 && p50 <= p99, "{}", summary.line);
    assert_eq!(out.summary("reader").num("messages"), 500.0);
    if spin {
        out.assert_stdout_contains("no system call per round trip");
    }
    meet.assert_nothing_left();
}

#[test]
fn posix_ping_on_semaphores_and_spinning() {
    ping(Meet::posix("ping"), false);
    ping(Meet::posix("spin"), true);
}

#[test]
fn sysv_ping_on_semaphores_and_spinning() {
    ping(Meet::sysv(6), false);
    ping(Meet::sysv(7), true);
}

#[test]
fn spin_ping_between_separate_processes() {
    let meet = Meet::posix("spin2");
    let workload = ["--ping", "300", "--spin"];
    let reader = start_reader(&meet, &workload);
    let writer = run(DEMO, &strs(&command("writer", &meet, &workload)));
    writer.assert_success();
    assert!(writer.summary("writer").num("rtt_p99_us") > 0.0);
    reader.finish().assert_success();
    meet.assert_nothing_left();
}

// ---------------------------------------------------------------- usage

#[test]
fn bad_usage_exits_2_names_the_problem_and_creates_nothing() {
    let name = Meet::posix("bad");
    let Meet::Posix(n) = &name else {
        unreachable!()
    };
    let key = Meet::sysv(8);
    for (args, needle) in [
        (vec!["--bogus"], "--bogus"),
        (vec!["--count"], "--count needs a value"),
        (vec!["--count", "ten", "--size", "1"], "ten"),
        (vec!["--count", "3"], "--size"),
        (
            vec!["--ping", "3", "--count", "3", "--size", "1"],
            "pick one",
        ),
        (vec!["--ping", "3", "--size", "999999999999"], "--size"),
        // Each round trip's time is kept: a count past the limit would not fit in memory.
        (
            vec!["--ping", "1000000000000"],
            "at most 100000000 round trips",
        ),
        (vec!["--ping", "18446744073709551615"], "at most 100000000"),
        (vec!["--spin"], "--spin goes with --ping"),
        (vec!["--ping", "2", "hello"], "workload sends its own data"),
        (vec!["reader", "hello"], "the reader takes no messages"),
        (vec!["writer", "hello"], "the writer needs --name"),
        (vec!["writer", "sysv", "hello"], "the writer needs --key"),
        (vec!["posix", "--key", "5"], "--key is for the sysv flavour"),
        (
            vec!["sysv", "--name", n.as_str()],
            "--name is for the posix flavour",
        ),
        (vec!["--name", "no-slash"], "a POSIX name is a slash"),
        (vec!["sysv", "--key", "0"], "IPC_PRIVATE"),
        (vec!["sysv", "--key", "0x1g"], "not a number"),
    ] {
        let out = run(DEMO, &args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        assert!(
            out.stdout.is_empty(),
            "bad usage must do nothing: {}",
            out.stdout
        );
        Meet::default_of("posix", out.pid).assert_nothing_left();
        Meet::default_of("sysv", out.pid).assert_nothing_left();
    }
    // With a meeting point given: still nothing made under it.
    let long = "x".repeat(5000);
    for (meet, extra) in [(&name, "--spin"), (&key, long.as_str())] {
        let out = run(DEMO, &strs(&command("reader", meet, &[extra])));
        out.assert_exit_code(2);
        meet.assert_nothing_left();
    }
}

#[test]
fn help_prints_the_usage() {
    run(DEMO, &["--help"])
        .assert_success()
        .assert_stdout_contains("usage: shm-demo");
}

#[test]
fn writer_with_nothing_to_open_says_start_the_reader_first() {
    for meet in [Meet::posix("nothing"), Meet::sysv(9)] {
        let out = run(DEMO, &strs(&command("writer", &meet, &["hi"])));
        out.assert_exit_code(1)
            .assert_stderr_contains("start the reader first (shm-demo reader ");
        meet.assert_nothing_left();
    }
}

#[test]
fn a_second_reader_is_refused_with_the_command_that_cleans_up() {
    for (meet, remedy) in [
        (Meet::posix("twice"), "rm /dev/shm/"),
        (Meet::sysv(10), "ipcrm -M 0x"),
    ] {
        let first = start_reader(&meet, &[]);
        let second = run(DEMO, &strs(&command("reader", &meet, &[])));
        second
            .assert_exit_code(1)
            .assert_stderr_contains("already exists")
            .assert_stderr_contains(remedy);
        first.signal_group(Signal::SIGINT);
        first.finish().assert_killed_by(Signal::SIGINT);
        meet.assert_nothing_left();
    }
}

// ---------------------------------------------------------------- signals and deaths

fn ctrl_c_while_the_reader_waits(meet: Meet, wchan: &str) {
    let reader = start_reader(&meet, &[]);
    // It sleeps in the semaphore wait (timed: it wakes every 100 ms to look around).
    wait_until_asleep_in(reader.pid(), wchan);
    reader.signal_group(Signal::SIGINT);
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains("interrupted by SIGINT: removed ");
    meet.assert_nothing_left();
}

#[test]
fn posix_ctrl_c_while_blocked_in_sem_timedwait() {
    ctrl_c_while_the_reader_waits(Meet::posix("sigint"), "futex");
}

#[test]
fn sysv_ctrl_c_while_blocked_in_semtimedop() {
    ctrl_c_while_the_reader_waits(Meet::sysv(11), "semtimedop");
}

/// Reader and writer as separate processes, in the middle of an endless bulk.
fn start_endless_pair(meet: &Meet) -> (Demo, Demo) {
    let mut reader = Demo::start(DEMO, &strs(&command("reader", meet, &ENDLESS)));
    reader.wait_for_line("expecting 100000000 messages");
    let mut writer = Demo::start(DEMO, &strs(&command("writer", meet, &ENDLESS)));
    writer.wait_for_line("sending 100000000 messages");
    (reader, writer)
}

fn sigkill(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
}

fn killed_writer(meet: Meet) {
    let (reader, writer) = start_endless_pair(&meet);
    let w = writer.pid();
    sigkill(w);
    writer.finish().assert_killed_by(Signal::SIGKILL);
    reader
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("the writer (pid {w}) is gone"));
    meet.assert_nothing_left();
}

fn killed_reader(meet: Meet) {
    let (reader, writer) = start_endless_pair(&meet);
    let r = reader.pid();
    sigkill(r);
    reader.finish().assert_killed_by(Signal::SIGKILL);
    // The writer notices, and removes what the dead reader could not.
    writer
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("the reader (pid {r}) is gone"))
        .assert_stdout_contains("died without cleaning up: I removed");
    meet.assert_nothing_left();
}

#[test]
fn posix_reader_survives_a_killed_writer() {
    killed_writer(Meet::posix("killw"));
}

#[test]
fn sysv_reader_survives_a_killed_writer() {
    killed_writer(Meet::sysv(12));
}

#[test]
fn posix_writer_cleans_up_after_a_killed_reader() {
    killed_reader(Meet::posix("killr"));
}

#[test]
fn sysv_writer_cleans_up_after_a_killed_reader() {
    killed_reader(Meet::sysv(13));
}

#[test]
fn default_run_reaps_a_killed_writer_and_exits_1() {
    let meet = Meet::sysv(14);
    let mut demo = Demo::start(DEMO, &strs(&command("", &meet, &ENDLESS)));
    let line = demo.wait_for_line("sending 100000000 messages");
    let writer = pid_of_role(&line, "writer").expect("writer pid");
    sigkill(writer);
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!("the writer (pid {writer}) is gone"))
        .assert_stdout_contains(&format!("reaped writer {writer}: killed by SIGKILL"));
    meet.assert_nothing_left();
}

/// A default run (`args`) SIGKILLed in its reader mid-bulk: the orphaned writer exits by
/// itself (assert_killed_by reaps it) and says why. Returns the run and the reader's pid.
fn kill_the_reader_mid_bulk(args: &[&str]) -> (Finished, i32) {
    let mut demo = Demo::start(DEMO, args);
    let line = demo.wait_for_line("sending 100000000 messages");
    let writer = pid_of_role(&line, "writer").expect("writer pid");
    let reader = demo.pid();
    sigkill(reader);
    let out = demo.finish();
    out.assert_killed_by(Signal::SIGKILL);
    assert!(
        !process_exists(writer),
        "writer {writer} outlived its reader"
    );
    assert!(
        out.stderr
            .contains(&format!("the reader (pid {reader}) is gone")),
        "{}",
        out.stderr
    );
    (out, reader)
}

#[test]
fn default_run_writer_outlives_its_killed_reader_and_cleans_up() {
    let meet = Meet::posix("orphan");
    kill_the_reader_mid_bulk(&strs(&command("", &meet, &ENDLESS)));
    meet.assert_nothing_left();
}

// ------------------------------------------------ SIGHUP, peers, floods, headers, argv

/// Closing the terminal sends SIGHUP: the reader asleep in its wait removes everything
/// and dies of SIGHUP, as it does for Ctrl+C (review row 5).
fn hangup_while_the_reader_waits(meet: Meet, wchan: &str) {
    let reader = start_reader(&meet, &[]);
    wait_until_asleep_in(reader.pid(), wchan);
    reader.signal_group(Signal::SIGHUP);
    reader
        .finish()
        .assert_killed_by(Signal::SIGHUP)
        .assert_stdout_contains("interrupted by SIGHUP: removed ");
    meet.assert_nothing_left();
}

#[test]
fn posix_sighup_while_blocked_in_sem_timedwait_removes_the_object() {
    hangup_while_the_reader_waits(Meet::posix("sighup"), "futex");
}

#[test]
fn sysv_sighup_while_blocked_in_semtimedop_removes_the_set_and_segment() {
    hangup_while_the_reader_waits(Meet::sysv(15), "semtimedop");
}

/// SIGHUP or SIGTERM to the writer mid-bulk: it dies of it, owning nothing; the
/// reader sees it gone and removes its own objects.
fn signal_to_the_writer_mid_bulk(meet: Meet, sig: Signal) {
    let (reader, writer) = start_endless_pair(&meet);
    let w = writer.pid();
    writer.signal_group(sig);
    writer
        .finish()
        .assert_killed_by(sig)
        .assert_stdout_contains(&format!("interrupted by {sig}: my mapping is gone"));
    reader
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("the writer (pid {w}) is gone"));
    meet.assert_nothing_left();
}

#[test]
fn sysv_sighup_to_the_writer_mid_bulk() {
    signal_to_the_writer_mid_bulk(Meet::sysv(16), Signal::SIGHUP);
}

#[test]
fn posix_sigterm_to_the_writer_mid_bulk() {
    signal_to_the_writer_mid_bulk(Meet::posix("termw"), Signal::SIGTERM);
}

/// The default run, both processes signalled at once in the middle of a bulk, as a
/// closed terminal (SIGHUP) or Ctrl+C (SIGINT) does: the reader reaps its writer,
/// removes everything, and dies of the signal.
fn default_run_signalled_mid_bulk(meet: Meet, sig: Signal) {
    let mut demo = Demo::start(DEMO, &strs(&command("", &meet, &ENDLESS)));
    demo.wait_for_line("sending 100000000 messages");
    demo.signal_group(sig);
    demo.finish().assert_killed_by_after_reaping(sig);
    meet.assert_nothing_left();
}

#[test]
fn posix_default_run_hung_up_mid_bulk_removes_everything() {
    default_run_signalled_mid_bulk(Meet::posix("hupdefault"), Signal::SIGHUP);
}

#[test]
fn sysv_default_run_interrupted_mid_bulk_removes_everything() {
    default_run_signalled_mid_bulk(Meet::sysv(19), Signal::SIGINT);
}

/// A writer started by hand, outside the harness's `Demo`: `stdin` as given, stdout
/// into `out` (a file the test can watch), stderr piped; in a process group of its own.
fn spawn_writer(meet: &Meet, stdin: std::process::Stdio, out: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    prepare_test_process();
    let file = std::fs::File::create(out).expect("stdout file");
    std::process::Command::new(demo_bin(DEMO))
        .args(command("writer", meet, &[]))
        .stdin(stdin)
        .stdout(file)
        .stderr(std::process::Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .process_group(0)
        .spawn()
        .expect("spawn the writer")
}

/// Waits for `child` to exit (killing it past the deadline), calling `each` while it
/// runs; returns its status and stderr.
fn finish_child(
    mut child: std::process::Child,
    mut each: impl FnMut(i32),
) -> (std::process::ExitStatus, String) {
    let pid = child.id() as i32;
    let mut status = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(&format!("writer {pid} exits"), || {
            status = child.try_wait().expect("try_wait");
            if status.is_none() {
                each(pid);
            }
            status.is_some()
        })
    }));
    if let Err(panic) = waited {
        let _ = child.kill();
        let _ = child.wait();
        std::panic::resume_unwind(panic);
    }
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
    (status.unwrap(), stderr)
}

/// Review row 2: a newline-free stdin (/dev/zero, endless) made the writer's line
/// buffer double without limit. Now a line is refused once it outgrows a slot, while
/// reading: exit 1 naming the cap, memory bounded, and the reader ends cleanly.
/// (By hand: `shm-demo writer --name /x < /dev/zero` after `shm-demo reader --name /x`.)
#[test]
fn posix_writer_fed_an_endless_line_stops_at_the_slot_size() {
    let meet = Meet::posix("flood");
    let reader = start_reader(&meet, &[]);
    let dir = ScratchDir::new("shm-flood");
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let writer = spawn_writer(&meet, zero.into(), &dir.join("out"));
    let mut peak = 0;
    let (status, stderr) = finish_child(writer, |pid| {
        peak = peak.max(vm_hwm_kib(pid).unwrap_or(0));
        assert!(
            peak < 128 << 10,
            "the writer grew to {peak} KiB on one line"
        );
    });
    assert_eq!(status.code(), Some(1), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("a line longer than 4088 bytes"), "{stderr}");
    reader
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains("is gone");
    meet.assert_nothing_left();
}

/// A writer waiting for the user's next line notices a reader killed meanwhile
/// (SIGKILL: no guard ran), within a tick, and removes what it left: before, it
/// noticed only when the next line came, and /dev/shm kept the object until then.
fn writer_waiting_on_stdin_outlives_a_killed_reader(meet: Meet) {
    let reader = start_reader(&meet, &[]);
    let r = reader.pid();
    let dir = ScratchDir::new("shm-stdin");
    let out = dir.join("out");
    let writer = spawn_writer(&meet, std::process::Stdio::piped(), &out);
    wait_until("the writer has claimed the segment", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("two virtual addresses"))
    });
    sigkill(r);
    reader.finish().assert_killed_by(Signal::SIGKILL);
    let (status, stderr) = finish_child(writer, |_| {});
    assert_eq!(status.code(), Some(1), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!("the reader (pid {r}) is gone")),
        "{stderr}"
    );
    let stdout = std::fs::read_to_string(&out).unwrap();
    assert!(
        stdout.contains("died without cleaning up: I removed"),
        "{stdout}"
    );
    meet.assert_nothing_left();
}

#[test]
fn posix_writer_waiting_on_stdin_outlives_a_killed_reader() {
    writer_waiting_on_stdin_outlives_a_killed_reader(Meet::posix("stdinkill"));
}

#[test]
fn sysv_writer_waiting_on_stdin_outlives_a_killed_reader() {
    writer_waiting_on_stdin_outlives_a_killed_reader(Meet::sysv(17));
}

/// Review row 4: a /dev/shm object made by another program, with a ready mark and a
/// header saying 0 slots (or other nonsense), is refused with a sentence, never a
/// panic (it used to divide by zero).
#[test]
fn posix_writer_refuses_a_crafted_header() {
    let meet = Meet::posix("craft");
    let Meet::Posix(name) = &meet else {
        unreachable!()
    };
    let path = format!("/dev/shm{name}");
    let me = std::process::id() as i32;
    // (slots, stride, size), each wrong in its own way.
    for (slots, size, stride, needle) in [
        (0u32, 4088u64, 4096u64, "0 slots"),
        (1, 4088, 4096, "1 slots"),
        (u32::MAX, 4088, 4096, "slots"),
        (4, u64::MAX, 4096, "do not fit"),
        (4, 4088, u64::MAX / 2, "do not fit"),
    ] {
        let mut header = vec![0u8; 5 * 4096];
        header[0..8].copy_from_slice(b"shmdemo1");
        header[8..12].copy_from_slice(&1u32.to_le_bytes()); // kind: text
        header[12..16].copy_from_slice(&slots.to_le_bytes());
        header[16..24].copy_from_slice(&0u64.to_le_bytes()); // count
        header[24..32].copy_from_slice(&size.to_le_bytes());
        header[32..40].copy_from_slice(&stride.to_le_bytes());
        header[40..44].copy_from_slice(&me.to_le_bytes()); // a live "reader"
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .expect("create the crafted object");
            std::io::Write::write_all(&mut f, &header).unwrap();
        }
        let out = run(DEMO, &strs(&command("writer", &meet, &["hi"])));
        let _ = std::fs::remove_file(&path);
        out.assert_exit_code(1).assert_stderr_contains(needle);
    }
    meet.assert_nothing_left();
}

/// `--help` into a pipe nobody reads: exit 0, no panic (print! used to panic).
#[test]
fn help_into_a_closed_pipe_exits_0() {
    prepare_test_process();
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    drop(read_end);
    let out = std::process::Command::new(demo_bin(DEMO))
        .arg("--help")
        .stdout(std::process::Stdio::from(write_end))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run shm-demo --help");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// Review row 3: another process of our uid shrinks the object under the reader's
/// mapping. SIGBUS cannot be avoided with shm_open (only a sealed memfd can), but the
/// reader's handler removes the name before it dies of it.
#[test]
fn posix_object_shrunk_under_the_reader_sigbus_removes_the_name() {
    let meet = Meet::posix("shrink");
    let Meet::Posix(name) = &meet else {
        unreachable!()
    };
    let reader = start_reader(&meet, &[]);
    wait_until_asleep_in(reader.pid(), "futex");
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .expect("open the object")
        .set_len(0)
        .expect("ftruncate it to 0");
    reader
        .finish()
        .assert_killed_by(Signal::SIGBUS)
        .assert_stderr_contains("SIGBUS: a page of the shared memory object is gone");
    meet.assert_nothing_left();
}

/// A full slot of text (4088 bytes) is echoed cut, on both sides: 200 bytes and "…".
#[test]
fn long_messages_are_echoed_cut() {
    let long = "y".repeat(4088);
    let out = run(DEMO, &[long.as_str()]);
    out.assert_success();
    let shown = format!("\"{}\"… (4088 bytes)", "y".repeat(200));
    for role in ["reader", "writer"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("[{role} ")) && l.contains(&shown)),
            "{role} should echo 200 bytes then …:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains(&"y".repeat(201)),
        "an echo was not cut"
    );
    Meet::default_of("posix", out.pid).assert_nothing_left();
}

/// `--spin`: no semaphore to wake on, only counters; a killed peer is still noticed
/// (the spin loop looks at the peer's pid every tick).
fn killed_while_spinning(meet: Meet, kill_reader: bool) {
    let spin = ["--ping", "100000000", "--spin"];
    killed_mid_spin(meet, kill_reader, &spin, "--spin: 100000000 round trips");
}

/// The peer is killed while the survivor is somewhere in its spin-then-sleep loop.
fn killed_mid_spin(meet: Meet, kill_reader: bool, spin: &[&str], writer_line: &str) {
    let mut reader = Demo::start(DEMO, &strs(&command("reader", &meet, spin)));
    reader.wait_for_line("ready. In another terminal");
    let mut writer = Demo::start(DEMO, &strs(&command("writer", &meet, spin)));
    writer.wait_for_line(writer_line);
    let (victim, survivor, role) = if kill_reader {
        (reader, writer, "reader")
    } else {
        (writer, reader, "writer")
    };
    let pid = victim.pid();
    sigkill(pid);
    victim.finish().assert_killed_by(Signal::SIGKILL);
    survivor
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("the {role} (pid {pid}) is gone"));
    meet.assert_nothing_left();
}

#[test]
fn posix_spinning_reader_survives_a_killed_writer() {
    killed_while_spinning(Meet::posix("spinkillw"), false);
}

#[test]
fn sysv_spinning_writer_cleans_up_after_a_killed_reader() {
    killed_while_spinning(Meet::sysv(18), true);
}

/// Issue 13: the spinning ring, peer killed mid-bulk (1 TiB: it never ends by itself).
const ENDLESS_SPIN_BULK: [&str; 5] = ["--count", "268435456", "--size", "4096", "--spin"];

#[test]
fn posix_spinning_ring_reader_survives_a_killed_writer() {
    let line = "--spin: sending 268435456 messages";
    killed_mid_spin(Meet::posix("spinbulkkw"), false, &ENDLESS_SPIN_BULK, line);
}

#[test]
fn sysv_spinning_ring_writer_cleans_up_after_a_killed_reader() {
    let line = "--spin: sending 268435456 messages";
    killed_mid_spin(Meet::sysv(23), true, &ENDLESS_SPIN_BULK, line);
}

// ---------------------------------------------------------------------------------
// The library half.

/// Issue 11: the narrated binary makes every shared-memory, semaphore and signal call
/// through the library modules (`lib.rs`, `posix.rs`, `sysv.rs`, `sigbus.rs`, and since
/// issue 12 `memfd.rs`), so the
/// tests above exercise the code people copy. Outside them: no `libc::` function called
/// (types such as `libc::sem_t` are fine) and nothing imported from `nix::sys::mman` or
/// `nix::sys::signal`.
#[test]
fn the_narration_makes_no_shm_call_of_its_own() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shm-demo/src");
    let library = ["lib.rs", "posix.rs", "sysv.rs", "sigbus.rs", "memfd.rs"];
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).expect("shm-demo/src") {
        let path = entry.expect("a directory entry").path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.ends_with(".rs") || library.contains(&file.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for (at, _) in code.match_indices("libc::") {
                let rest = &code[at + "libc::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    !rest[name.len()..].trim_start().starts_with('('),
                    "{file}:{}: an FFI call outside the library: {line}",
                    n + 1
                );
            }
        }
        // `use nix::sys::signal::{...}` up to its `;`: types (`Signal`) only, no function.
        for module in ["nix::sys::mman::", "nix::sys::signal::"] {
            for (at, _) in text.match_indices(module) {
                let import = text[at + module.len()..]
                    .split(';')
                    .next()
                    .unwrap_or_default();
                let function = import
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .find(|word| word.starts_with(|c: char| c.is_ascii_lowercase()));
                assert!(
                    function.is_none(),
                    "{file}: {module}{} used outside the library",
                    function.unwrap_or_default()
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} narration files found in {src:?}"
    );
}

// ---------------------------------------------------------------------------------
// Issue 12: the `memfd` flavour: no name, sealed, shared with a forked child.

/// The memfd's line in a /proc/PID/maps: `... 00:01 INODE /memfd:shm-demo (deleted)`.
fn memfd_maps_inode(pid: i32) -> Option<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let line = maps
        .lines()
        .find(|l| l.ends_with("/memfd:shm-demo (deleted)"))?;
    line.split_whitespace().nth(4).map(String::from)
}

/// The fd number under which `pid` holds the memfd (/proc/PID/fd/N -> /memfd:...).
fn memfd_fd(pid: i32) -> Option<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy() == "/memfd:shm-demo (deleted)")
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// Nothing of a memfd run can be in /dev/shm: no entry with its pid or "memfd" in it.
fn assert_nothing_in_dev_shm(pid: i32) {
    Meet::default_of("posix", pid).assert_nothing_left();
    for entry in std::fs::read_dir("/dev/shm").expect("/dev/shm").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains("memfd") && !name.contains(&pid.to_string()),
            "/dev/shm/{name} after a memfd run"
        );
    }
}

#[test]
fn memfd_default_run_has_no_name_is_sealed_and_shared_by_fork() {
    let out = run(DEMO, &["memfd"]);
    out.assert_success();
    let (reader, writer) = (out.pid_of("reader"), out.pid_of("writer"));
    assert_eq!(reader, out.pid, "the reader is the process we started");
    // No name: a file with no link, in no directory, not in /dev/shm.
    out.assert_stdout_contains("MFD_ALLOW_SEALING|MFD_CLOEXEC")
        .assert_stdout_contains("-> /memfd:shm-demo (deleted)")
        .assert_stdout_contains("links 0: a file in no directory")
        .assert_stdout_contains("no entry of /dev/shm has inode")
        .assert_stdout_contains("F_GET_SEALS = F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL");
    // The writer, the other side, is refused every change of size and of the seals.
    let refused = out.lines_with(&format!("[writer {writer}]"));
    for call in [
        ", 0) = EPERM: refused by F_SEAL_SHRINK",
        "= EPERM: refused by F_SEAL_GROW",
        "F_ADD_SEALS, F_SEAL_WRITE) = EPERM",
    ] {
        assert!(
            refused.iter().any(|l| l.contains(call)),
            "no {call:?}:\n{}",
            out.stdout
        );
    }
    // Shared through fork: the child names its parent and maps the inherited fd anew.
    out.assert_stdout_contains(&format!("forked by reader {reader}: fd "));
    let (r, w) = (view(&out.stdout, "reader"), view(&out.stdout, "writer"));
    assert_two_addresses_one_memory(&r, &w);
    assert!(
        out.stdout
            .contains(&format!("(deleted) (inode {})", r.inode)),
        "the maps line names the memfd: {}",
        out.stdout
    );
    assert_eq!(
        received(&out.stdout),
        [
            r#""hello""#,
            r#""from the writer's stores""#,
            r#""read in place by the reader""#
        ]
    );
    for role in ["reader", "writer"] {
        let summary = out.summary(role);
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(summary.num("messages"), 3.0);
    }
    out.assert_stdout_contains(&format!("reaped writer {writer}: exited with status 0"))
        .assert_stdout_contains("there was no name to unlink");
    assert_nothing_in_dev_shm(reader);
}

#[test]
fn memfd_bulk_moves_tens_of_mib_intact() {
    let out = run(DEMO, &["memfd", "--count", "1000", "--size", "65536"]);
    out.assert_success();
    for role in ["reader", "writer"] {
        let summary = out.summary(role);
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(summary.num("messages"), 1000.0);
        assert_eq!(summary.num("bytes"), 65_536_000.0);
        summary.assert_throughput_consistent();
    }
    assert_nothing_in_dev_shm(out.pid);
}

/// While it runs, from outside: both processes map one memfd (one inode, in no
/// directory), and a third process (this test), reopening it through /proc/PID/fd/N,
/// cannot shrink it either: EPERM from the kernel, not a check of the demo's own.
/// Then the writer is SIGKILLed: the reader notices, reaps it and exits 1.
#[test]
fn memfd_is_sealed_against_everyone_and_survives_a_killed_writer() {
    let mut demo = Demo::start(DEMO, &["memfd", "--count", "100000000", "--size", "4096"]);
    let line = demo.wait_for_line("sending 100000000 messages");
    let writer = pid_of_role(&line, "writer").expect("writer pid");
    let reader = demo.pid();
    let inode = memfd_maps_inode(reader).expect("the reader maps the memfd");
    assert_eq!(
        memfd_maps_inode(writer),
        Some(inode),
        "one memfd, two processes"
    );
    let fd = memfd_fd(writer).expect("the writer holds the memfd's fd");
    let path = format!("/proc/{writer}/fd/{fd}");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("reopen the memfd through /proc");
    let before = file.metadata().expect("fstat").len();
    let shrink = file
        .set_len(0)
        .expect_err("a sealed memfd cannot be shrunk");
    assert_eq!(shrink.raw_os_error(), Some(libc_eperm()), "{shrink}");
    assert_eq!(file.metadata().expect("fstat").len(), before);
    drop(file);

    sigkill(writer);
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!("the writer (pid {writer}) is gone"))
        .assert_stdout_contains(&format!("reaped writer {writer}: killed by SIGKILL"));
    assert_nothing_in_dev_shm(reader);
}

fn libc_eperm() -> i32 {
    nix::errno::Errno::EPERM as i32
}

/// The reader SIGKILLed (no guard runs): the forked writer notices within a tick or
/// two, exits 1 saying so, and there is nothing anyone must remove.
#[test]
fn memfd_writer_outlives_its_killed_reader_with_nothing_to_remove() {
    let (out, reader) =
        kill_the_reader_mid_bulk(&["memfd", "--count", "100000000", "--size", "4096"]);
    out.assert_stdout_contains("the reader died: there is nothing to remove");
    assert_nothing_in_dev_shm(reader);
}

/// Ctrl+C while the reader is surely blocked: the writer is stopped (SIGSTOP), so the
/// reader sleeps in sem_timedwait (futex); the group gets SIGINT, the writer SIGCONT.
#[test]
fn memfd_ctrl_c_while_the_reader_is_blocked_leaves_nothing() {
    let mut demo = Demo::start(DEMO, &["memfd", "--count", "100000000", "--size", "4096"]);
    let line = demo.wait_for_line("sending 100000000 messages");
    let writer = pid_of_role(&line, "writer").expect("writer pid");
    kill(Pid::from_raw(writer), Signal::SIGSTOP).expect("SIGSTOP");
    wait_until_asleep_in(demo.pid(), "futex");
    demo.signal_group(Signal::SIGINT);
    kill(Pid::from_raw(writer), Signal::SIGCONT).expect("SIGCONT");
    let reader = demo.pid();
    let out = demo.finish();
    out.assert_killed_by_after_reaping(Signal::SIGINT)
        .assert_stdout_contains("interrupted by SIGINT: nothing to remove (the memfd had no name)");
    assert_nothing_in_dev_shm(reader);
}

#[test]
fn memfd_bad_usage_exits_2_and_points_to_fdpass() {
    for (args, needle) in [
        (vec!["reader", "memfd"], "socket-demo fdpass"),
        (vec!["writer", "memfd", "hi"], "socket-demo fdpass"),
        (vec!["memfd", "--name", "/x"], "it has no name at all"),
        (vec!["memfd", "--key", "5"], "it has no name at all"),
        (vec!["memfd", "--count", "3"], "--size"),
    ] {
        let out = run(DEMO, &args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        assert!(
            out.stdout.is_empty(),
            "bad usage must do nothing: {}",
            out.stdout
        );
        assert_nothing_in_dev_shm(out.pid);
    }
    run(DEMO, &["--help"])
        .assert_success()
        .assert_stdout_contains("memfd    memfd_create: no name");
}
