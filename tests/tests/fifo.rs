//! End-to-end tests of fifo-demo: the reader and the writer run as real, unrelated
//! processes (and sometimes `sh`, `cat` or this test itself takes one side), meeting at
//! a FIFO in each test's own scratch directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use ipc_tests::*;
use nix::sys::signal::kill;
use nix::unistd::Pid;

const DEMO: &str = "fifo-demo";

// ---------- helpers ----------

/// The texts of the `[ROLE PID] LABEL "text" (N bytes)` lines of one process, in order.
/// The test texts hold no quote or backslash, so `{:?}` printed them as they are. The
/// writer shows a text longer than 40 characters shortened, `"its first 40"… (N bytes)`:
/// then this returns those 40 characters.
fn texts(stdout: &str, role: &str, pid: i32, label: &str) -> Vec<String> {
    let prefix = format!("[{role} {pid}] {label} \"");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let end = rest.rfind(" (").expect("a text line ends with (N bytes)");
            let quoted = &rest[..end];
            let text = quoted.strip_suffix("\"…").or(quoted.strip_suffix('"'));
            text.expect("the text ends with \" or \"…").to_string()
        })
        .collect()
}

fn received(stdout: &str, pid: i32) -> Vec<String> {
    texts(stdout, "reader", pid, "received")
}

fn sent(stdout: &str, pid: i32) -> Vec<String> {
    texts(stdout, "writer", pid, "sent")
}

/// Every pid that narrated as `role`, in order of its first line.
fn pids_of(stdout: &str, role: &str) -> Vec<i32> {
    let prefix = format!("[{role} ");
    let mut pids = Vec::new();
    for line in stdout.lines() {
        if let Some(pid) = line
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split(']').next()?.parse().ok())
        {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// The private directory the default run announced.
fn private_dir(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.contains("] private directory "))
        .unwrap_or_else(|| panic!("no private directory line:\n{stdout}"));
    let rest = line.split("] private directory ").nth(1).unwrap();
    rest.split_whitespace().next().unwrap().to_string()
}

/// `mkfifo PATH` with the system tool: a FIFO nobody in this suite made.
fn mkfifo(path: &str) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {path}: {status}");
}

/// Starts a reader on `fifo` and waits until it sleeps in open(2), so a writer opening
/// the FIFO next (even a blocking open in this test) meets it at once.
fn start_reader(fifo: &str, extra: &[&str]) -> Demo {
    let mut args = vec!["reader", "--path", fifo];
    args.extend_from_slice(extra);
    let mut reader = Demo::start(DEMO, &args);
    reader.wait_for_line("opening");
    wait_until_asleep_in(reader.pid(), "wait_for_partner");
    reader
}

/// Starts `fifo-demo reader` with no --path, so it makes its own private directory;
/// waits until it sleeps in open(2). Returns the reader and that directory.
fn start_reader_in_its_own_dir() -> (Demo, String) {
    let mut reader = Demo::start(DEMO, &["reader"]);
    let line = reader.wait_for_line("made the private directory");
    let dir = line
        .split("made the private directory ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    reader.wait_for_line("opening");
    wait_until_asleep_in(reader.pid(), "wait_for_partner");
    (reader, dir)
}

/// The test itself takes the writer's side: open the FIFO for writing. Call only once
/// a reader is asleep in open, or this would block.
fn open_for_writing(fifo: &str) -> File {
    OpenOptions::new()
        .write(true)
        .open(fifo)
        .unwrap_or_else(|e| panic!("open {fifo} for writing: {e}"))
}

/// Waits for a helper process (sh, cat) with the harness's deadline; kills its group
/// if it overstays.
fn wait_child(mut child: Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            panic!("{what} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

// ---------- the default run ----------

/// The pid of the default run's act-2 writer that reads `DIR/{letter}.lines`, from main's
/// `started writer PID: ... < DIR/A.lines` line.
fn act2_writer(run: &Finished, letter: char) -> i32 {
    let line = run.lines_with(&format!("/{letter}.lines"));
    let line = line
        .iter()
        .find(|l| l.contains("] started writer "))
        .unwrap_or_else(|| panic!("no writer started for {letter}.lines:\n{}", run.stdout));
    let rest = line.split("] started writer ").nth(1).unwrap();
    rest.split(':').next().unwrap().parse().unwrap()
}

#[test]
fn default_run_narrates_the_rendezvous_and_pipe_buf() {
    let run = run(DEMO, &[]);
    run.assert_success();
    let out = &run.stdout;

    let dir = private_dir(out);
    assert!(is_gone(&dir), "the default run left {dir} behind");
    run.assert_stdout_contains("prw------- st_mode=010600 size=0");
    let readers = pids_of(out, "reader");
    let writers = pids_of(out, "writer");
    assert_eq!(
        readers.len(),
        1,
        "one reader, in act 1 (in act 2 main reads):\n{out}"
    );
    assert_eq!(
        writers.len(),
        3,
        "one writer in act 1, two in act 2:\n{out}"
    );
    run.assert_stdout_contains(&format!(
        "reader {} is asleep in open(2) (wchan wait_for_partner)",
        readers[0]
    ));
    let children = readers.iter().map(|p| ("reader", p));
    for (role, pid) in children.chain(writers.iter().map(|p| ("writer", p))) {
        let reaped = format!(
            "[main {}] reaped {role} {pid}: exited with status 0",
            run.pid
        );
        assert_eq!(
            run.lines_with(&reaped).len(),
            1,
            "main reaps {role} {pid} once:\n{out}"
        );
    }

    // Act 1: what the writer sent, the reader received, in the same order.
    let act1 = sent(out, writers[0]);
    assert_eq!(act1.len(), 3, "{out}");
    assert_eq!(received(out, readers[0]), act1);
    assert!(
        run.line_index(&format!("[writer {}] sent", writers[0]))
            > run.line_index("is asleep in open(2)")
    );
    assert!(run.summary("reader").ok);

    // Act 2: main reads two writers at once, once both wait in open(2), then in write(2).
    run.assert_stdout_contains("PIPE_BUF is 4096 bytes");
    let (a, b) = (act2_writer(&run, 'A'), act2_writer(&run, 'B'));
    let started = run.line_index(&format!(
        "writers A {a} and B {b} started: while nobody has "
    ));
    let opened = run.line_index("for reading: the writers' next open(2) succeeds");
    let both_full = run.line_index("writers A and B are both asleep in write(2) (wchan ");
    assert!(started < opened && opened < both_full, "{out}");
    for (letter, pid) in [('A', a), ('B', b)] {
        // Each writer narrates its 4000-byte lines shortened, with the exact byte count.
        let lines = run.lines_with(&format!("[writer {pid}] sent \""));
        assert_eq!(lines.len(), 20, "{out}");
        assert!(
            lines.iter().all(|l| l.ends_with("\"… (4000 bytes)")),
            "{out}"
        );
        let shown = sent(out, pid);
        for (i, text) in shown.iter().enumerate() {
            let head = format!("{letter} {:04} ", i + 1);
            let fill = letter.to_string().repeat(40 - head.len());
            assert_eq!(*text, head + &fill, "writer {letter}'s line {}", i + 1);
        }
        run.assert_stdout_contains(&format!("[writer {pid}] summary: messages=20 bytes=80000 "));
    }

    // The tally: every line whole and in order. How often the writers took turns varies
    // from run to run: it is only parsed, and checked against the narrated runs.
    let tally = run.lines_with(&format!(
        "[main {}] read 40 lines of 4000 bytes: 20 from A and 20 from B, each in order; \
         the writers took turns ",
        run.pid
    ));
    assert_eq!(tally.len(), 1, "{out}");
    assert!(
        tally[0].ends_with(
            "; every line whole, none mixed (each write(2) was at most PIPE_BUF = 4096 bytes)"
        ),
        "{}",
        tally[0]
    );
    let turns: usize = tally[0]
        .split("took turns ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number of turns: {}", tally[0]));
    println!("act 2: the writers took turns {turns} times");
    // One narrated run of lines per writer's turn, adding up to the 40 lines.
    let runs: Vec<usize> = out
        .lines()
        .filter(|l| l.starts_with(&format!("[main {}] received ", run.pid)))
        .map(|l| {
            let n = l.split(": ").nth(1).and_then(|r| r.split(' ').next());
            n.and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {l}"))
        })
        .collect();
    assert_eq!(runs.len(), turns + 1, "{out}");
    assert_eq!(runs.iter().sum::<usize>(), 40, "{out}");
    run.assert_stdout_contains("/server, its pid file and the two input files");
}

#[test]
fn default_run_sends_the_given_messages_in_order() {
    let run = run(DEMO, &["first", "two words", "--", "-third"]);
    run.assert_success();
    let out = &run.stdout;
    let reader = pids_of(out, "reader")[0];
    assert_eq!(received(out, reader), ["first", "two words", "-third"]);
    let summary = run.summary("reader");
    assert_eq!(summary.num("messages"), 3.0);
    assert_eq!(summary.num("bytes"), 20.0);
    assert!(is_gone(&private_dir(out)));
}

// ---------- two processes, and the shell on either side ----------

#[test]
fn separate_reader_and_writer_meet_at_the_path() {
    let scratch = ScratchDir::new("fifo-pair");
    let fifo = scratch.join("f");
    let reader = start_reader(&fifo, &[]);
    assert!(is_fifo(&fifo), "the reader creates the FIFO");

    let writer = run(DEMO, &["writer", "--path", &fifo, "alpha", "beta gamma"]);
    writer.assert_success();
    let reader = reader.finish();
    reader.assert_success();
    reader.assert_stdout_contains("prw-------");
    reader.assert_stdout_contains("EOF: every writer has closed its end");
    assert_eq!(
        received(&reader.stdout, reader.pid),
        ["alpha", "beta gamma"]
    );
    assert_eq!(sent(&writer.stdout, writer.pid), ["alpha", "beta gamma"]);
    assert_eq!(writer.summary("writer").num("messages"), 2.0);
    assert!(is_gone(&fifo), "the reader removes its FIFO");
    assert!(scratch.entries().is_empty());
}

#[test]
fn writer_sends_each_line_of_stdin() {
    let scratch = ScratchDir::new("fifo-stdin");
    let fifo = scratch.join("f");
    let reader = start_reader(&fifo, &[]);
    let writer = run_with_stdin(
        DEMO,
        &["writer", "--path", &fifo],
        b"one\ntwo words\n\nlast",
    );
    writer.assert_success();
    let reader = reader.finish();
    reader.assert_success();
    assert_eq!(
        received(&reader.stdout, reader.pid),
        ["one", "two words", "", "last"]
    );
    assert!(is_gone(&fifo));
}

#[test]
fn shell_echo_writes_into_our_reader() {
    let scratch = ScratchDir::new("fifo-echo");
    let fifo = scratch.join("f");
    let reader = start_reader(&fifo, &[]);
    let sh = Command::new("sh")
        .arg("-c")
        .arg(format!("echo hi > '{fifo}'"))
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    assert!(wait_child(sh, "sh -c 'echo hi > P'").success());
    let reader = reader.finish();
    reader.assert_success();
    reader.assert_stdout_contains("received \"hi\" (2 bytes)");
    assert!(is_gone(&fifo));
}

#[test]
fn shell_cat_reads_from_our_writer() {
    let scratch = ScratchDir::new("fifo-cat");
    let fifo = scratch.join("f");
    mkfifo(&fifo);
    let mut cat = Command::new("cat")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn cat");
    let mut cat_out = cat.stdout.take().unwrap();
    let writer = run(
        DEMO,
        &["writer", "--path", &fifo, "hello", "from fifo-demo"],
    );
    writer.assert_success();
    assert!(wait_child(cat, "cat P").success());
    let mut text = String::new();
    cat_out.read_to_string(&mut text).unwrap();
    assert_eq!(
        text, "hello\nfrom fifo-demo\n",
        "the wire format is plain lines"
    );
    assert!(
        is_fifo(&fifo),
        "the writer never removes a FIFO it did not make"
    );
}

/// Line `i` of writer `w`: about 4000 bytes, so with its newline within PIPE_BUF, and
/// self-describing, so a line mixed from two writes cannot pass.
fn many_writers_line(w: usize, i: usize) -> String {
    let head = format!("w{w}-{i:04}-");
    let fill = (b'a' + ((w * 7 + i) % 26) as u8) as char;
    let mut line = head.clone();
    line.extend(std::iter::repeat_n(fill, 4000 - head.len()));
    line
}

#[test]
fn many_writers_at_once_every_line_arrives_whole() {
    // Enough lines that the writers take turns hundreds of times: a writer that split a
    // line into two writes was caught in every one of 6 runs (with 300 lines, in 3 of 5).
    const WRITERS: usize = 4;
    const LINES: usize = 1000;
    let scratch = ScratchDir::new("fifo-many");
    let fifo = scratch.join("f");
    let reader = start_reader(&fifo, &[]);
    // Hold a write end, as a well-known-FIFO server does, so the reader cannot see
    // EOF between one writer closing and the next opening.
    let held = open_for_writing(&fifo);

    let writers: Vec<Demo> = (0..WRITERS)
        .map(|w| {
            let input: String = (0..LINES).map(|i| many_writers_line(w, i) + "\n").collect();
            Demo::start_with_stdin(DEMO, &["writer", "--path", &fifo], input.into_bytes())
        })
        .collect();
    for writer in writers {
        let writer = writer.finish();
        writer.assert_success();
        assert!(
            !writer.stdout.contains("warning"),
            "every line fits in PIPE_BUF: {}",
            writer.stdout
        );
    }
    drop(held);
    let reader = reader.finish();
    reader.assert_success();

    let got = received(&reader.stdout, reader.pid);
    assert_eq!(got.len(), WRITERS * LINES, "every line arrives");
    assert_eq!(
        reader.lines_with("(4000 bytes)").len(),
        WRITERS * LINES,
        "every line 4000 bytes"
    );
    let mut next = [0usize; WRITERS];
    for line in &got {
        let w: usize = line[1..2].parse().expect("a writer number");
        assert!(w < WRITERS, "line from an unknown writer: {}", &line[..12]);
        // The reader echoes the first 40 characters (the echo is cut); its byte count
        // says the rest of the line came whole.
        let expected = many_writers_line(w, next[w])[..40].to_string();
        assert!(
            *line == expected,
            "line {} of writer {w} arrived mixed or out of order: starts {:?}",
            next[w],
            &line[..12]
        );
        next[w] += 1;
    }
    assert_eq!(next, [LINES; WRITERS]);
    // How often the writers actually took turns varies from run to run: shown, not asserted.
    let turns = got.windows(2).filter(|p| p[0][..2] != p[1][..2]).count();
    println!("{turns} changes of writer in {} lines", got.len());
    assert!(is_gone(&fifo));
}

// ---------- bulk and ping ----------

fn assert_bulk_summaries(run: &Finished, count: u64, size: u64) {
    for role in ["reader", "writer"] {
        let s = run.summary(role);
        assert!(s.ok, "{}", s.line);
        assert_eq!(s.num("messages"), count as f64, "{}", s.line);
        assert_eq!(s.num("bytes"), (count * size) as f64, "{}", s.line);
        s.assert_throughput_consistent();
        assert!(s.num("elapsed_us") >= 0.0, "{}", s.line);
    }
}

#[test]
fn bulk_in_the_default_run_checks_every_byte() {
    let run = run(DEMO, &["--count", "64", "--size", "65536"]);
    run.assert_success();
    assert_bulk_summaries(&run, 64, 65536);
    assert!(is_gone(&private_dir(&run.stdout)));
}

#[test]
fn bulk_between_separate_processes() {
    let scratch = ScratchDir::new("fifo-bulk");
    let fifo = scratch.join("f");
    // An odd size, so messages straddle the pipe's pages; then one shorter than the header.
    for (count, size) in [("1000", "4099"), ("300", "3")] {
        let reader = start_reader(&fifo, &["--count", count, "--size", size]);
        let writer = run(
            DEMO,
            &["writer", "--path", &fifo, "--count", count, "--size", size],
        );
        writer.assert_success();
        let reader = reader.finish();
        reader.assert_success();
        let (n, s): (u64, u64) = (count.parse().unwrap(), size.parse().unwrap());
        for summary in [reader.summary("reader"), writer.summary("writer")] {
            assert!(summary.ok);
            assert_eq!(summary.num("messages"), n as f64, "{}", summary.line);
            assert_eq!(summary.num("bytes"), (n * s) as f64, "{}", summary.line);
        }
        assert!(is_gone(&fifo));
    }
}

/// Feeds `stream` to a bulk reader of `count` messages of `size` bytes, the test
/// itself being the writer; returns how the reader ended.
fn feed_bulk_reader(tag: &str, count: u64, size: usize, stream: &[u8]) -> Finished {
    let scratch = ScratchDir::new(tag);
    let fifo = scratch.join("f");
    let reader = start_reader(
        &fifo,
        &["--count", &count.to_string(), "--size", &size.to_string()],
    );
    let mut writer = open_for_writing(&fifo);
    // The reader may stop before taking it all: then this write fails with EPIPE.
    let _ = writer.write_all(stream);
    drop(writer);
    let reader = reader.finish();
    assert!(
        is_gone(&fifo),
        "the reader removes its FIFO on the way out, error or not"
    );
    reader
}

#[test]
fn bulk_check_catches_a_changed_byte() {
    let mut stream = bulk_stream(64, 4096);
    stream[37 * 4096 + 1000] ^= 0x01;
    let reader = feed_bulk_reader("fifo-corrupt", 64, 4096, &stream);
    reader.assert_exit_code(1);
    reader.assert_stderr_contains("message 37 of 64 is wrong at byte 1000");

    // The control: the same stream unchanged passes.
    let reader = feed_bulk_reader("fifo-intact", 64, 4096, &bulk_stream(64, 4096));
    reader.assert_success();
}

#[test]
fn bulk_check_catches_a_missing_message() {
    let mut stream = bulk_stream(64, 4096);
    stream.drain(20 * 4096..21 * 4096);
    let reader = feed_bulk_reader("fifo-lost", 64, 4096, &stream);
    reader.assert_exit_code(1);
    reader.assert_stderr_contains("message 20 of 64 is wrong at byte 0");

    let stream = bulk_stream(63, 4096);
    let reader = feed_bulk_reader("fifo-short", 64, 4096, &stream);
    reader.assert_exit_code(1);
    reader.assert_stderr_contains("the writer closed the FIFO after 63 of 64 messages");

    let stream = bulk_stream(65, 4096);
    let reader = feed_bulk_reader("fifo-extra", 64, 4096, &stream);
    reader.assert_exit_code(1);
    reader.assert_stderr_contains("more than 64 messages");
}

#[test]
fn ping_through_two_fifos() {
    let run = run(DEMO, &["--ping", "200"]);
    run.assert_success();
    let writer = run.summary("writer");
    assert!(writer.ok, "{}", writer.line);
    assert_eq!(writer.num("messages"), 200.0);
    assert_eq!(writer.num("bytes"), 20000.0);
    let (p50, p99) = (writer.num("rtt_p50_us"), writer.num("rtt_p99_us"));
    assert!(p50 > 0.0 && p50 <= p99, "{}", writer.line);
    assert_eq!(run.summary("reader").num("messages"), 200.0);
    run.assert_stdout_contains(".reply for writing");
    assert!(is_gone(&private_dir(&run.stdout)));
}

#[test]
fn ping_between_separate_reader_and_writer() {
    let scratch = ScratchDir::new("fifo-ping-pair");
    let fifo = scratch.join("fifo");
    let reader = start_reader(&fifo, &["--ping", "100", "--size", "64"]);
    let writer = run(
        DEMO,
        &["writer", "--path", &fifo, "--ping", "100", "--size", "64"],
    );
    writer.assert_success();
    let reader = reader.finish();
    reader.assert_success();
    let timed = writer.summary("writer");
    assert_eq!(timed.num("messages"), 100.0);
    assert_eq!(timed.num("bytes"), 6400.0);
    assert!(timed.num("rtt_p50_us") > 0.0, "{}", timed.line);
    assert_eq!(reader.summary("reader").num("messages"), 100.0);
    // The reader made both FIFOs, P and P.reply, and removed both.
    assert!(is_gone(&fifo) && is_gone(&format!("{fifo}.reply")));
    assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
}

// ---------- mistakes ----------

#[test]
fn bad_usage_exits_2_and_creates_nothing() {
    let scratch = ScratchDir::new("fifo-usage");
    let p = scratch.join("f");
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "unknown option --bogus"),
        (
            &["reader", "--path", &p, "--count"],
            "--count needs a value",
        ),
        (&["reader", "--path"], "--path needs a value"),
        (
            &["reader", "--path", &p, "--count", "ten"],
            "--count \"ten\" is not a number",
        ),
        (
            &["reader", "--path", &p, "--ping", "0"],
            "--ping must be at least 1",
        ),
        (
            &["--ping", "100000001"],
            "--ping 100000001: at most 100000000 round trips",
        ),
        (
            &["writer", "--path", &p, "--ping", "18446744073709551615"],
            "at most 100000000 round trips",
        ),
        (
            &["reader", "--path", &p, "--ping", "18446744073709551616"],
            "is not a number",
        ),
        (
            &["reader", "--path", &p, "--count", "1", "--size", "0"],
            "--size 0 is out of range",
        ),
        (
            &["reader", "--path", &p, "--count", "1", "--size", "67108865"],
            "out of range",
        ),
        (&["--count", "5", "--ping", "5"], "--count and --ping"),
        (
            &["reader", "--path", &p, "--size", "100"],
            "--size needs a workload",
        ),
        (&["writer", "hello"], "the writer needs --path"),
        (
            &["writer", "--path", &p, "a\nb"],
            "newline separates messages",
        ),
        (
            &["writer", "--path", &p, "--count", "2", "hello"],
            "a workload sends its own data",
        ),
        (
            &["reader", "--path", &p, "hello"],
            "the reader takes no messages",
        ),
        (&["--path", &p], "--path is for"),
        (
            &["reader", "--path", &p, "--count", "1", "--count", "2"],
            "--count given twice",
        ),
    ];
    for (args, what) in cases {
        let run = run(DEMO, args);
        run.assert_exit_code(2);
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(what),
            "{args:?}: the first line should say {what:?}:\n{}",
            run.stderr
        );
        run.assert_stderr_contains("\n\nusage: fifo-demo");
        assert!(
            run.stdout.is_empty(),
            "{args:?}: nothing narrated: {}",
            run.stdout
        );
        assert!(
            scratch.entries().is_empty(),
            "{args:?} created {:?}",
            scratch.entries()
        );
    }

    let help = run(DEMO, &["--help"]);
    help.assert_success();
    assert!(
        help.stdout.starts_with("usage: fifo-demo"),
        "{}",
        help.stdout
    );
    assert!(
        !help.stdout.contains("/tmp/"),
        "the usage teaches no guessable /tmp path: {}",
        help.stdout
    );
}

/// Runs the demo with its stdout or stderr a pipe nobody reads any more (`| true`), so
/// every write to it fails with EPIPE. Returns how it ended and its other stream.
fn run_with_closed(stream: &str, args: &[&str]) -> (ExitStatus, String) {
    let (closed_r, closed_w) = std::io::pipe().expect("pipe");
    drop(closed_r); // nobody will ever read this pipe
    let mut cmd = Command::new(demo_bin(DEMO));
    cmd.args(args).stdin(Stdio::null()).process_group(0);
    if stream == "stdout" {
        cmd.stdout(closed_w).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(closed_w);
    }
    let mut child = cmd.spawn().expect("spawn fifo-demo");
    let mut other = String::new();
    let out = child.stdout.take().map(|o| Box::new(o) as Box<dyn Read>);
    let err = child.stderr.take().map(|e| Box::new(e) as Box<dyn Read>);
    out.or(err).unwrap().read_to_string(&mut other).unwrap();
    (wait_child(child, "fifo-demo"), other)
}

#[test]
fn help_and_errors_survive_a_closed_output() {
    // `fifo-demo --help | (exec <&-; ...)`: the usage cannot be written, and that is no panic.
    let (status, stderr) = run_with_closed("stdout", &["--help"]);
    assert_eq!(status.code(), Some(0), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The same for the error line on a closed stderr: exit 2 (bad usage) and 1 (failure).
    let (status, stdout) = run_with_closed("stderr", &["--bogus"]);
    assert_eq!(status.code(), Some(2), "{status}: {stdout}");
    let scratch = ScratchDir::new("fifo-closed-stderr");
    let fifo = scratch.join("f");
    let (status, stdout) = run_with_closed("stderr", &["writer", "--path", &fifo, "hi"]);
    assert_eq!(status.code(), Some(1), "{status}: {stdout}");
}

#[test]
fn writer_without_a_fifo_says_start_the_reader_first() {
    let scratch = ScratchDir::new("fifo-nofifo");
    let fifo = scratch.join("f");
    let nofifo = run(DEMO, &["writer", "--path", &fifo, "hi"]);
    nofifo.assert_exit_code(1);
    nofifo.assert_stderr_contains(&format!(
        "error: open {fifo} for writing: no FIFO at {fifo}: start the reader first (fifo-demo reader --path {fifo})"
    ));
    assert!(is_gone(&fifo), "the writer never creates the FIFO");

    // A regular file is not a FIFO: refused, and left as it was.
    std::fs::write(&fifo, b"keep").unwrap();
    let regular = run(DEMO, &["writer", "--path", &fifo, "hi"]);
    regular.assert_exit_code(1);
    regular.assert_stderr_contains("is not a FIFO");
    assert_eq!(std::fs::read(&fifo).unwrap(), b"keep");
}

#[test]
fn reader_refuses_a_stale_fifo() {
    let scratch = ScratchDir::new("fifo-stale");
    let fifo = scratch.join("f");
    mkfifo(&fifo);
    let run = run(DEMO, &["reader", "--path", &fifo]);
    run.assert_exit_code(1);
    run.assert_stderr_contains(&format!("{fifo} already exists"));
    run.assert_stderr_contains(&format!("rm {fifo}"));
    assert!(
        is_fifo(&fifo),
        "a FIFO the reader did not make is not its to remove"
    );
}

// ---------- signals ----------

#[test]
fn sigint_stops_a_writer_waiting_for_a_reader() {
    let scratch = ScratchDir::new("fifo-sigint-writer");
    let fifo = scratch.join("fifo");
    mkfifo(&fifo); // a FIFO with no reader: the writer's open(2) waits for one
    let mut writer = Demo::start(DEMO, &["writer", "--path", &fifo, "hello"]);
    writer.wait_for_line("no reader has");
    writer.signal_group(Signal::SIGINT);
    let writer = writer.finish();
    writer.assert_killed_by(Signal::SIGINT);
    // The writer owns nothing: it leaves the FIFO it did not make, and makes nothing.
    assert!(is_fifo(&fifo));
    assert_eq!(scratch.entries(), vec!["fifo".to_string()]);
}

#[test]
fn sigint_stops_a_reader_asleep_in_open() {
    let scratch = ScratchDir::new("fifo-int-open");
    let fifo = scratch.join("f");
    let reader = start_reader(&fifo, &[]); // asleep in wait_for_partner
    reader.signal_group(Signal::SIGINT);
    let reader = reader.finish();
    reader.assert_killed_by(Signal::SIGINT);
    reader.assert_stdout_contains(&format!("interrupted by SIGINT: removed {fifo}"));
    assert!(is_gone(&fifo));
}

#[test]
fn sigint_stops_a_reader_asleep_in_read() {
    let scratch = ScratchDir::new("fifo-int-read");
    let fifo = scratch.join("f");
    let mut reader = start_reader(&fifo, &[]);
    let idle_writer = open_for_writing(&fifo); // connected, but never writes
    reader.wait_for_line("a writer opened");
    wait_until_asleep_in(reader.pid(), "pipe_read");
    reader.signal_group(Signal::SIGINT);
    let reader = reader.finish();
    reader.assert_killed_by(Signal::SIGINT);
    reader.assert_stdout_contains("interrupted by SIGINT: removed");
    assert!(is_gone(&fifo));
    drop(idle_writer);
}

/// The SIGINT and SIGTERM bits of the `SigIgn` and `SigCgt` masks in /proc/PID/status.
fn ignored_and_caught(pid: i32) -> [(bool, bool); 2] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let mask = |key: &str| {
        let line = status.lines().find(|l| l.starts_with(key)).expect(key);
        u64::from_str_radix(line[key.len()..].trim(), 16).expect("a hex mask")
    };
    let (ignored, caught) = (mask("SigIgn:"), mask("SigCgt:"));
    [Signal::SIGINT, Signal::SIGTERM].map(|sig| {
        let bit = 1u64 << (sig as i32 - 1);
        (ignored & bit != 0, caught & bit != 0)
    })
}

#[test]
fn sigint_ignored_at_start_stays_ignored() {
    // A shell script's `cmd &`, and nohup, start a command with SIGINT ignored, so that
    // a Ctrl+C meant for the foreground job leaves it running. The demo keeps that
    // choice, and still handles SIGTERM.
    let scratch = ScratchDir::new("fifo-nohup");
    let fifo = scratch.join("f");
    let sh = Command::new("sh")
        .arg("-c")
        .arg("trap '' INT; exec \"$0\" reader --path \"$1\"")
        .arg(demo_bin(DEMO))
        .arg(&fifo)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let pid = sh.id() as i32; // exec: the same process becomes the reader
    wait_until_asleep_in(pid, "wait_for_partner");
    let [sigint, sigterm] = ignored_and_caught(pid);
    // Stop it before asserting, so a failure leaves no reader behind.
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let status = wait_child(sh, "fifo-demo reader with SIGINT ignored");
    assert_eq!(
        sigint,
        (true, false),
        "SIGINT stays ignored (ignored, caught)"
    );
    assert_eq!(
        sigterm,
        (false, true),
        "SIGTERM is handled (ignored, caught)"
    );
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status}");
    assert!(is_gone(&fifo), "the SIGTERM handler removed the FIFO");
}

#[test]
fn sigterm_stops_a_reader_and_removes_its_own_directory() {
    let (reader, dir) = start_reader_in_its_own_dir();
    reader.signal_group(Signal::SIGTERM);
    let reader = reader.finish();
    reader.assert_killed_by(Signal::SIGTERM);
    assert!(is_gone(&dir), "{dir} left behind");
}

#[test]
fn sigint_stops_the_whole_default_run() {
    let mut run = Demo::start(DEMO, &["--ping", "10000000"]);
    run.wait_for_line("timing 10000000 round trips");
    let reader = pid_of_role(&run.stdout_so_far(), "reader").unwrap();
    wait_until_asleep_in(reader, "pipe_read");
    run.signal_group(Signal::SIGINT); // Ctrl+C: main and both children
    let run = run.finish();
    run.assert_killed_by_after_reaping(Signal::SIGINT); // and no process of the group is left
    run.assert_stdout_contains("[reader");
    run.assert_stdout_contains("interrupted by SIGINT: removed");
    assert!(
        run.lines_with("] interrupted by SIGINT").len() >= 3,
        "{}",
        run.stdout
    );
    assert!(is_gone(&private_dir(&run.stdout)));
}

// ---------- a peer dies ----------
//
// SIGKILL of either side at each point where the other waits: in open(2), on a full
// pipe, on an empty one; two terminals and the default run. The survivor must exit 1
// within the deadline with a sentence, remove what it owns, and name with `rm` what the
// dead side left.

const ENDLESS: &[&str] = &["--count", "100000000", "--size", "65536"];

/// A reader and a writer in the middle of an endless bulk transfer.
fn mid_bulk(fifo: &str) -> (Demo, Demo) {
    let mut reader = start_reader(fifo, ENDLESS);
    let mut args = vec!["writer", "--path", fifo];
    args.extend_from_slice(ENDLESS);
    let mut writer = Demo::start(DEMO, &args);
    reader.wait_for_line("checking 100000000 messages");
    writer.wait_for_line("sending 100000000 messages");
    (reader, writer)
}

/// SIGKILLs `stopped` at a moment when `waiting` surely sleeps in `wchan`: stops it
/// (SIGSTOP), waits until `waiting` sleeps, and kills it if that sleep is in `wchan`;
/// otherwise (the stop came between two moves, and `waiting` sleeps elsewhere) lets it
/// go on (SIGCONT) and tries again.
fn kill_while_other_waits(stopped: i32, waiting: i32, wchan: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        kill(Pid::from_raw(stopped), Signal::SIGSTOP).unwrap();
        let mut slept_in = String::new();
        wait_until(&format!("pid {waiting} sleeps"), || {
            match proc_state(waiting) {
                Some(('S', w)) if w != "0" => {
                    slept_in = w;
                    true
                }
                _ => false,
            }
        });
        if slept_in.contains(wchan) {
            kill(Pid::from_raw(stopped), Signal::SIGKILL).unwrap();
            return;
        }
        kill(Pid::from_raw(stopped), Signal::SIGCONT).unwrap();
        assert!(
            Instant::now() < deadline,
            "pid {waiting} never slept in {wchan} while {stopped} was stopped (last: {slept_in})"
        );
    }
}

/// The message the writer gives when the reader died and left `remove` behind.
fn dead_reader_sentence(pid: i32, fifo: &str, remove: &str) -> String {
    format!(
        "the reader {pid} that made {fifo} is gone and did not remove it (killed by SIGKILL, or crashed: \
         its cleanup never ran); remove what it left with: {remove}"
    )
}

/// Field 22 of /proc/PID/stat: the start time `P.pid` records.
fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[19].parse().expect("starttime")
}

/// A helper process (sh, sleep) that is SIGKILLed, and reaped, when dropped, so a test
/// that fails half-way leaves none behind.
struct Helper(Child);

impl Helper {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// SIGKILL, and no wait: until reaped it stays a zombie, which must count as dead.
    fn kill(&self) {
        kill(Pid::from_raw(self.pid()), Signal::SIGKILL).unwrap();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process that holds `fifo` open, `<` for reading or `>` for writing, and then only
/// sleeps: a peer that never moves, for this test to SIGKILL. Its pid stays the same
/// through `exec`.
fn holder(fifo: &str, redirect: &str) -> Helper {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3{redirect}\"$0\"; exec sleep 1000"))
        .arg(fifo)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    Helper(child)
}

/// Writes `P.pid` for `pid`, as a reader would: the test plays that reader.
fn publish_reader_pid(fifo: &str, pid: i32) {
    std::fs::write(
        format!("{fifo}.pid"),
        format!("{pid} {}\n", start_time(pid)),
    )
    .unwrap();
}

#[test]
fn writer_started_after_its_reader_was_killed_exits_1() {
    let scratch = ScratchDir::new("fifo-dead-reader-open");
    let fifo = scratch.join("f");
    let reader = start_reader(&fifo, &[]);
    let reader_pid = reader.pid();
    kill(Pid::from_raw(reader_pid), Signal::SIGKILL).unwrap();
    reader.finish().assert_killed_by(Signal::SIGKILL);
    // P and P.pid are left; a blocking open(2) for writing would now sleep forever.
    let writer = run(DEMO, &["writer", "--path", &fifo, "hello"]);
    writer.assert_exit_code(1);
    writer.assert_stderr_contains(&dead_reader_sentence(
        reader_pid,
        &fifo,
        &format!("rm {fifo} {fifo}.pid"),
    ));
    assert!(is_fifo(&fifo), "the writer removes nothing of the reader's");
    assert_eq!(scratch.entries(), ["f", "f.pid"]);
    // A new reader at the same path refuses the leftovers, and names all of them.
    let next = run(DEMO, &["reader", "--path", &fifo]);
    next.assert_exit_code(1);
    next.assert_stderr_contains(&format!(
        "already exists (left by a killed run?): remove what is there with rm {fifo} {fifo}.pid"
    ));
    assert_eq!(scratch.entries(), ["f", "f.pid"]);
}

#[test]
fn writer_waiting_for_a_reader_notices_its_death() {
    // The test plays a reader that made P and published its pid, then never opens P.
    let scratch = ScratchDir::new("fifo-dead-reader-wait");
    let fifo = scratch.join("f");
    mkfifo(&fifo);
    let sleeper = Helper(
        Command::new("sleep")
            .arg("1000")
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = sleeper.pid();
    publish_reader_pid(&fifo, pid);
    let mut writer = Demo::start(DEMO, &["writer", "--path", &fifo, "hello"]);
    writer.wait_for_line(&format!("its reader {pid} ("));
    sleeper.kill();
    let writer = writer.finish();
    drop(sleeper);
    writer.assert_exit_code(1);
    writer.assert_stderr_contains(&dead_reader_sentence(
        pid,
        &fifo,
        &format!("rm {fifo} {fifo}.pid"),
    ));
}

#[test]
fn writer_on_a_full_pipe_gets_epipe_when_the_reader_is_killed() {
    let scratch = ScratchDir::new("fifo-kill-reader");
    let fifo = scratch.join("f");
    let (reader, writer) = mid_bulk(&fifo);
    let reader_pid = reader.pid();
    kill_while_other_waits(reader_pid, writer.pid(), "pipe_write");
    reader.finish().assert_killed_by(Signal::SIGKILL);
    let writer = writer.finish();
    writer.assert_exit_code(1);
    writer.assert_stderr_contains("the reader is gone (EPIPE)");
    writer.assert_stderr_contains(&dead_reader_sentence(
        reader_pid,
        &fifo,
        &format!("rm {fifo} {fifo}.pid"),
    ));
    // SIGKILL leaves no chance to clean up: the FIFO stays (the scratch dir goes).
    assert_eq!(scratch.entries(), ["f", "f.pid"]);
}

#[test]
fn reader_on_an_empty_fifo_sees_early_eof_when_the_writer_is_killed() {
    let scratch = ScratchDir::new("fifo-kill-writer");
    let fifo = scratch.join("f");
    let (reader, writer) = mid_bulk(&fifo);
    kill_while_other_waits(writer.pid(), reader.pid(), "pipe_read");
    writer.finish().assert_killed_by(Signal::SIGKILL);
    let reader = reader.finish();
    reader.assert_exit_code(1);
    reader.assert_stderr_contains("the writer closed the FIFO after");
    reader.assert_stderr_contains(
        "of 100000000 messages (it exited or was killed: EOF cannot tell which)",
    );
    reader.assert_stdout_contains(&format!("removed {fifo} and {fifo}.pid, all of it ours"));
    assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
}

#[test]
fn text_reader_says_eof_cannot_tell_a_killed_writer() {
    let scratch = ScratchDir::new("fifo-kill-text-writer");
    let fifo = scratch.join("f");
    let mut reader = start_reader(&fifo, &[]);
    // A real writer, reading lines from a stdin that stays open: it sends one, then waits.
    let mut writer = Command::new(demo_bin(DEMO))
        .args(["writer", "--path", &fifo])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn writer");
    let mut input = writer.stdin.take().unwrap();
    input.write_all(b"one\n").unwrap();
    reader.wait_for_line("received \"one\"");
    wait_until_asleep_in(reader.pid(), "pipe_read");
    kill(Pid::from_raw(writer.id() as i32), Signal::SIGKILL).unwrap();
    assert_eq!(wait_child(writer, "writer").signal(), Some(9));
    drop(input);
    let reader = reader.finish();
    // For text, EOF is the end of the messages: the reader cannot know it was a death.
    reader.assert_success();
    reader.assert_stdout_contains(
        "EOF: every writer has closed its end (a writer that exits, or is killed even by SIGKILL, \
         closes it too: EOF cannot tell which)",
    );
    assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
}

#[test]
fn ping_reader_waiting_to_open_the_reply_fifo_notices_the_writer_killed() {
    let scratch = ScratchDir::new("fifo-ping-dead-writer");
    let fifo = scratch.join("f");
    let mut reader = start_reader(&fifo, &["--ping", "10"]);
    let sh = holder(&fifo, ">"); // opens P for writing, never opens P.reply
    reader.wait_for_line("open for reading yet (ENXIO)");
    sh.kill();
    let reader = reader.finish();
    reader.assert_exit_code(1);
    reader.assert_stderr_contains(&format!(
        "the writer closed {fifo} before opening {fifo}.reply: it exited or was killed"
    ));
    reader.assert_stdout_contains(&format!(
        "removed {fifo} and {fifo}.reply and {fifo}.pid, all of it ours"
    ));
    assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
}

#[test]
fn ping_writer_waiting_for_the_first_answer_notices_the_reader_killed() {
    // The test plays a reader that made P and P.reply, opened P, and never answers.
    let scratch = ScratchDir::new("fifo-ping-dead-reader");
    let fifo = scratch.join("f");
    mkfifo(&fifo);
    mkfifo(&format!("{fifo}.reply"));
    let sh = holder(&fifo, "<");
    let pid = sh.pid();
    publish_reader_pid(&fifo, pid);
    let mut writer = Demo::start(DEMO, &["writer", "--path", &fifo, "--ping", "10"]);
    writer.wait_for_line("timing 10 round trips");
    wait_until_asleep_in(writer.pid(), "poll");
    sh.kill();
    let writer = writer.finish();
    drop(sh);
    writer.assert_exit_code(1);
    writer.assert_stderr_contains("the reader is gone: nobody has the FIFO open for reading");
    writer.assert_stderr_contains(&dead_reader_sentence(
        pid,
        &fifo,
        &format!("rm {fifo} {fifo}.reply {fifo}.pid"),
    ));
}

#[test]
fn ping_writer_waiting_for_an_answer_sees_eof_when_the_reader_is_killed() {
    let scratch = ScratchDir::new("fifo-ping-kill-reader");
    let fifo = scratch.join("f");
    let ping = ["--ping", "100000000"];
    let mut reader = start_reader(&fifo, &ping);
    let mut writer = Demo::start(DEMO, &["writer", "--path", &fifo, ping[0], ping[1]]);
    writer.wait_for_line("timing 100000000 round trips");
    reader.wait_for_line("answering");
    let reader_pid = reader.pid();
    kill_while_other_waits(reader_pid, writer.pid(), "pipe_read");
    reader.finish().assert_killed_by(Signal::SIGKILL);
    let writer = writer.finish();
    writer.assert_exit_code(1);
    writer.assert_stderr_contains("the reader closed the reply FIFO after");
    writer.assert_stderr_contains(&dead_reader_sentence(
        reader_pid,
        &fifo,
        &format!("rm {fifo} {fifo}.reply {fifo}.pid"),
    ));
}

#[test]
fn ping_reader_on_a_full_reply_pipe_gets_epipe_when_the_writer_is_killed() {
    // 1 MiB pings: the reader's answer does not fit in P.reply while the writer is stopped.
    let scratch = ScratchDir::new("fifo-ping-kill-writer");
    let fifo = scratch.join("f");
    let ping = ["--ping", "100000000", "--size", "1048576"];
    let mut reader = start_reader(&fifo, &ping);
    let mut args = vec!["writer", "--path", &fifo];
    args.extend_from_slice(&ping);
    let mut writer = Demo::start(DEMO, &args);
    writer.wait_for_line("timing 100000000 round trips");
    reader.wait_for_line("answering");
    kill_while_other_waits(writer.pid(), reader.pid(), "pipe_write");
    writer.finish().assert_killed_by(Signal::SIGKILL);
    let reader = reader.finish();
    reader.assert_exit_code(1);
    reader.assert_stderr_contains("the writer is gone (EPIPE)");
    reader.assert_stdout_contains("all of it ours");
    assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
}

#[test]
fn default_run_stops_the_writer_when_the_reader_dies() {
    let mut run = Demo::start(DEMO, ENDLESS);
    run.wait_for_line("sending 100000000 messages");
    let so_far = run.stdout_so_far();
    let reader = pid_of_role(&so_far, "reader").unwrap();
    let writer = pid_of_role(&so_far, "writer").unwrap();
    kill_while_other_waits(reader, writer, "pipe_write");
    let run = run.finish();
    run.assert_exit_code(1); // and no process of the group is left
    run.assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGKILL"));
    // Main names whichever failure it saw first: the killed reader, or the writer that
    // got EPIPE from it. Either way it stopped the rest.
    let main_error = run.stderr.lines().last().unwrap_or_default();
    assert!(
        main_error.starts_with("error: the ") && main_error.contains(" failed: "),
        "{}",
        run.stderr
    );
    // The killed reader could not remove its FIFO; main's directory guard did.
    let dir = private_dir(&run.stdout);
    run.assert_stdout_contains(&format!("removed {dir}, with whatever a child left in it"));
    assert!(is_gone(&dir));
}

#[test]
fn default_run_stops_the_reader_when_the_writer_dies() {
    let mut run = Demo::start(DEMO, ENDLESS);
    run.wait_for_line("sending 100000000 messages");
    let so_far = run.stdout_so_far();
    let reader = pid_of_role(&so_far, "reader").unwrap();
    let writer = pid_of_role(&so_far, "writer").unwrap();
    kill_while_other_waits(writer, reader, "pipe_read");
    let run = run.finish();
    run.assert_exit_code(1);
    run.assert_stdout_contains(&format!("reaped writer {writer}: killed by SIGKILL"));
    let main_error = run.stderr.lines().last().unwrap_or_default();
    assert!(
        main_error.starts_with("error: the ") && main_error.contains(" failed: "),
        "{}",
        run.stderr
    );
    let dir = private_dir(&run.stdout);
    run.assert_stdout_contains(&format!("removed {dir}, with whatever a child left in it"));
    assert!(is_gone(&dir));
}

#[test]
fn a_reader_waiting_for_a_writer_main_never_starts_ends_when_main_is_killed() {
    let mut run = Demo::start(DEMO, &[]);
    let started = run.wait_for_line("] started reader ");
    kill(Pid::from_raw(run.pid()), Signal::SIGSTOP).unwrap();
    let reader: i32 = started
        .split("] started reader ")
        .nth(1)
        .and_then(|rest| rest.split(':').next()?.parse().ok())
        .expect("the reader's pid");
    // Either main stopped before it started the writer (the reader waits in open, and
    // only main and the reader are in the group), or it had started it already.
    let waiting = || matches!(proc_state(reader), Some(('S', w)) if w.contains("wait_for_partner"));
    wait_until(
        "the reader waits in open, or main started the writer",
        || waiting() || group_members(run.pid()).len() > 2,
    );
    let alone = group_members(run.pid()).len() == 2 && waiting();
    let dir = private_dir(&run.stdout_so_far());
    kill(Pid::from_raw(run.pid()), Signal::SIGKILL).unwrap();
    let run = run.finish(); // its output closes once the reader has exited
    let orphans = reap_orphans_with_status(run.pid);
    let _ = std::fs::remove_dir_all(&dir); // main's, left by its SIGKILL
    assert_eq!(run.status.signal(), Some(Signal::SIGKILL as i32));
    if !alone {
        println!("main had started the writer before it was stopped: shown, not asserted");
        return;
    }
    // PR_SET_PDEATHSIG: the kernel sent the orphaned reader SIGTERM; it cleaned up.
    assert_eq!(
        orphans,
        [(
            reader,
            nix::sys::wait::WaitStatus::Signaled(Pid::from_raw(reader), Signal::SIGTERM, false)
        )],
        "{}",
        run.stdout
    );
    run.assert_stdout_contains(&format!(
        "[reader {reader}] interrupted by SIGTERM: removed {dir}/fifo and {dir}/fifo.pid"
    ));
}

#[test]
fn act_2_writers_name_what_a_killed_main_left() {
    let mut run = Demo::start(DEMO, &[]);
    let started = run.wait_for_line("] writers A ");
    // Main, the server, is stopped before it reads a line: the writers then wait in
    // their open(2) loop, or (if main's open came first) on the full pipe, 16 of their
    // 40 lines in it. Either way neither can finish; then main dies of SIGKILL.
    kill(Pid::from_raw(run.pid()), Signal::SIGSTOP).unwrap();
    let dir = private_dir(&run.stdout_so_far());
    // "[main 1] writers A 123 and B 124 started: ..."
    let words: Vec<&str> = started.split_whitespace().collect();
    let writers: Vec<i32> = [4, 7].iter().map(|&i| words[i].parse().unwrap()).collect();
    for &w in &writers {
        wait_until(&format!("writer {w} waits"), || {
            matches!(proc_state(w), Some(('S', _)))
        });
    }
    kill(Pid::from_raw(run.pid()), Signal::SIGKILL).unwrap();
    let run = run.finish(); // its output closes once both writers have exited
    let orphans = reap_orphans_with_status(run.pid); // the writers came to us
    let left = is_fifo(&format!("{dir}/server"));
    let _ = std::fs::remove_dir_all(&dir); // what the writers say to do; before any assert
    assert!(left, "SIGKILL: main could not remove {dir}/server");
    assert_eq!(run.status.signal(), Some(Signal::SIGKILL as i32));
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    // Whatever main printed, it printed before the stop.
    if run.stdout.contains("reading one line per read(2)") {
        // Main had started reading before the stop came: a writer may have finished.
        println!("main was reading before it was stopped: shown, not asserted");
        return;
    }
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    for (pid, status) in &orphans {
        assert_eq!(
            *status,
            nix::sys::wait::WaitStatus::Exited(Pid::from_raw(*pid), 1),
            "{}",
            run.stderr
        );
    }
    let sentence = dead_reader_sentence(run.pid, &format!("{dir}/server"), &format!("rm -r {dir}"));
    assert_eq!(
        run.stderr.matches(&sentence).count(),
        2,
        "each writer names what main left:\n{}",
        run.stderr
    );
}

// ---------- SIGHUP, and a flood with no newline ----------

#[test]
fn sighup_stops_a_reader_asleep_in_open_and_removes_its_directory() {
    let (reader, dir) = start_reader_in_its_own_dir();
    reader.signal_group(Signal::SIGHUP);
    let reader = reader.finish();
    reader.assert_killed_by(Signal::SIGHUP);
    reader.assert_stdout_contains("interrupted by SIGHUP: removed");
    assert!(is_gone(&dir), "{dir} left behind");
}

#[test]
fn sighup_stops_a_reader_asleep_in_read() {
    let scratch = ScratchDir::new("fifo-hup-read");
    let fifo = scratch.join("f");
    let mut reader = start_reader(&fifo, &[]);
    let idle_writer = open_for_writing(&fifo);
    reader.wait_for_line("a writer opened");
    wait_until_asleep_in(reader.pid(), "pipe_read");
    reader.signal_group(Signal::SIGHUP);
    let reader = reader.finish();
    reader.assert_killed_by(Signal::SIGHUP);
    reader.assert_stdout_contains("interrupted by SIGHUP: removed");
    assert!(is_gone(&fifo));
    drop(idle_writer);
}

#[test]
fn a_flood_with_no_newline_is_capped_at_1_mib() {
    let scratch = ScratchDir::new("fifo-flood");
    let fifo = scratch.join("f");
    let mut reader = start_reader(&fifo, &[]);
    let mut writer = open_for_writing(&fifo);
    reader.wait_for_line("a writer opened");
    let chunk = vec![b'x'; 64 * 1024];
    let mut peak = 0;
    for _ in 0..128 {
        // 8 MiB in all; EPIPE once the reader has given up.
        if writer.write_all(&chunk).is_err() {
            break;
        }
        peak = peak.max(vm_hwm_kib(reader.pid()).unwrap_or(0));
    }
    drop(writer);
    let reader = reader.finish();
    reader.assert_exit_code(1);
    reader.assert_stderr_contains("line too long: more than 1048576 bytes (1 MiB, the cap)");
    assert!(peak < 128 * 1024, "VmHWM {peak} KiB");
    assert!(reader.stdout.len() < 64 * 1024, "the echo was not cut");
    assert!(is_gone(&fifo));
}
