//! End-to-end tests of sem-demo: both flavours' narrated runs (P/V, the race, the
//! mutex, the sync order, a dying holder), reader and writer as separate
//! processes, ping, bad usage, Ctrl+C while asleep in P, and peers killed. After
//! every run: no `/dev/shm/sem.*` entry of ours and no System V set with our key.

use ipc_tests::*;

const DEMO: &str = "sem-demo";

/// A POSIX name no other test (or test run) uses: our pid and a tag. No tag is
/// a prefix of another, so no name is a prefix of another test's.
fn name(tag: &str) -> String {
    format!("/semtest-{}-{tag}", std::process::id())
}

/// A System V key no other test uses: our pid (22 bits at most) and a tag < 32.
fn key(tag: u32) -> String {
    assert!(tag < 32);
    let key = 0x4000_0000 | ((std::process::id() & 0x3f_ffff) << 5) | tag;
    format!("{key:#x}")
}

/// The /dev/shm entries of the named semaphores sem-demo makes from `name`
/// (`/x` → `sem.x`, `sem.x-pong`, `sem.x-mutex`, `sem.x-sync`), by exact name:
/// a prefix match would also count another test's `/x-more`.
fn posix_entries(name: &str) -> Vec<String> {
    let base = format!("sem.{}", name.trim_start_matches('/'));
    ["", "-pong", "-mutex", "-sync"]
        .iter()
        .map(|suffix| format!("{base}{suffix}"))
        .filter(|file| std::path::Path::new("/dev/shm").join(file).exists())
        .collect()
}

fn assert_no_posix_leftovers(name: &str) {
    let left = posix_entries(name);
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// True if /proc/sysvipc/sem lists a set with `key` (0x hex or decimal).
fn sysv_set_exists(key: &str) -> bool {
    let wanted = parse_key(key);
    std::fs::read_to_string("/proc/sysvipc/sem")
        .expect("read /proc/sysvipc/sem")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse::<i32>().ok())
        .any(|k| k == wanted)
}

fn parse_key(key: &str) -> i32 {
    match key.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).expect("hex key") as i32,
        None => key.parse::<u32>().expect("decimal key") as i32,
    }
}

fn assert_no_sysv_leftovers(key: &str) {
    assert!(
        !sysv_set_exists(key),
        "a semaphore set with key {key} is left in /proc/sysvipc/sem"
    );
}

/// The number after `key=` in `line` (`"mutex: expected=40000 actual=..."`).
fn field(line: &str, key: &str) -> u64 {
    let needle = format!("{key}=");
    let start = line
        .find(&needle)
        .unwrap_or_else(|| panic!("no {needle} in {line:?}"))
        + needle.len();
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {needle} in {line:?}"))
}

/// The milliseconds of a `t=+12.345ms` timestamp in `line`.
fn timestamp_ms(line: &str) -> f64 {
    let start = line
        .find("t=+")
        .unwrap_or_else(|| panic!("no t=+ in {line:?}"))
        + 3;
    let end = start + line[start..].find("ms").expect("ms after t=+");
    line[start..end].parse().expect("a timestamp")
}

/// The one line containing `needle`.
fn only_line<'a>(out: &'a Finished, needle: &str) -> &'a str {
    let lines = out.lines_with(needle);
    assert_eq!(
        lines.len(),
        1,
        "expected one line with {needle:?}:\n{}",
        out.stdout
    );
    lines[0]
}

/// Acts 1 to 4, the same for both flavours: fails on any broken claim.
fn check_acts_1_to_4(out: &Finished, sleepers_source: &str) {
    // Act 1: the notes' definitions are quoted, and B asleep shows both views:
    // Linux's value 0 with one sleeper, the notes' count -1.
    out.assert_stdout_contains("notes: P 操作，这个操作会把信号量减去 1");
    out.assert_stdout_contains("notes: V 操作，这个操作会把信号量加上 1");
    let asleep = only_line(out, "B is asleep in the kernel");
    assert!(asleep.contains("value=0 asleep_in_P=1"), "{asleep}");
    assert!(asleep.contains(sleepers_source), "{asleep}");
    assert!(asleep.contains("notes: 0-1=-1 < 0"), "{asleep}");
    assert!(only_line(out, "after B's V").contains("value=1 asleep_in_P=0"));

    // Act 2: the race is printed, never asserted (it depends on the scheduler).
    let race = only_line(out, "race: expected=");
    let (expected, actual) = (field(race, "expected"), field(race, "actual"));
    assert!(actual <= expected, "{race}");
    println!("{}: {race}", out.name);

    let header = only_line(out, "--- act 2:");
    let loops: u64 = header
        .split("counter ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no loop count in {header:?}"));
    assert_eq!(expected, 2 * loops, "{race}");

    // Act 3: with the mutex the total is exact.
    let mutex = only_line(out, "mutex: expected=");
    assert_eq!(field(mutex, "expected"), expected, "{mutex}");
    assert_eq!(
        field(mutex, "actual"),
        expected,
        "the mutex lost updates: {mutex}"
    );
    assert_eq!(field(mutex, "lost"), 0);

    // Act 4: A's step comes before B's, in the output and on the clock, and B
    // reads what A wrote.
    let a_step = out.line_index("A's step: wrote 42");
    let b_step = out.line_index("B's step: read 42");
    assert!(a_step < b_step, "B ran before A:\n{}", out.stdout);
    let a_time = timestamp_ms(only_line(out, "A's step: wrote"));
    let b_time = timestamp_ms(only_line(out, "B's step: read"));
    assert!(a_time <= b_time, "A at {a_time} ms, B at {b_time} ms");
    assert!(only_line(out, "B is asleep in P on").contains("asleep_in_P=1"));
}

#[test]
fn posix_default_run_shows_p_v_race_mutex_sync_and_a_holder_nothing_releases() {
    let out = run(DEMO, &[]);
    out.assert_success();
    let a = out.pid_of("A");
    out.assert_stdout_contains(&format!(
        "/dev/shm/sem.sem-demo-{a}-mutex (rw-------, 32 bytes)"
    ));
    check_acts_1_to_4(&out, "counted here from /proc/PID/wchan");
    // Where no process of ours can be in P, the count is said to be assumed: POSIX
    // gives no way to read glibc's own count of sleepers.
    assert!(
        only_line(&out, "P: took the mutex")
            .contains("asleep_in_P=0 (assumed: no process of ours is in P)"),
        "{}",
        out.stdout
    );

    // Act 5: B is killed holding the mutex; C's timed wait gives up, clearly.
    assert!(
        out.lines_with("reaped B")
            .iter()
            .any(|l| l.contains("killed by SIGKILL")),
        "{}",
        out.stdout
    );
    let gave_up = only_line(&out, "gave up");
    assert!(gave_up.starts_with("[C "), "{gave_up}");
    assert!(
        gave_up.contains("(ETIMEDOUT)")
            && gave_up.contains("nothing releases a POSIX semaphore when its holder dies"),
        "{gave_up}"
    );
    assert!(only_line(&out, "nothing released it").contains("value=0"));
    assert!(
        out.lines_with("reaped C")[0].contains("exited with status 0"),
        "{}",
        out.stdout
    );
    out.assert_stdout_contains(&format!("removed semaphore /sem-demo-{a}-sync"));
    assert_no_posix_leftovers(&format!("/sem-demo-{a}"));
}

#[test]
fn sysv_default_run_shows_getncnt_and_sem_undo_releasing_a_dead_holder() {
    let out = run(DEMO, &["sysv"]);
    out.assert_success();
    let a = out.pid_of("A");
    out.assert_stdout_contains("perms=600 nsems=2");
    check_acts_1_to_4(&out, "GETNCNT");

    // Act 5: C wakes holding the mutex only after B was killed: the kernel undid
    // B's P (SEM_UNDO).
    let kill = out.line_index("kill -KILL");
    let woke = out.line_index("woke up holding the mutex after");
    assert!(kill < woke, "C woke before B was killed:\n{}", out.stdout);
    assert!(out.lines_with("woke up holding the mutex after")[0].starts_with("[C "));
    assert!(
        out.lines_with("reaped B")
            .iter()
            .any(|l| l.contains("killed by SIGKILL"))
    );
    assert!(
        only_line(&out, "the kernel released a dead holder's mutex (SEM_UNDO)")
            .contains("value=1 asleep_in_P=0")
    );
    assert!(out.lines_with("gave up").is_empty());
    let fresh_key = format!("{:#x}", 0x5300_0000 | a);
    out.assert_stdout_contains(&format!("key {fresh_key} is free again"));
    assert_no_sysv_leftovers(&fresh_key);
}

#[test]
fn the_mutex_total_is_exact_at_a_given_meeting_point() {
    let n = name("mutex");
    let out = run(DEMO, &["posix", "--name", &n, "--loops", "3000"]);
    out.assert_success();
    let mutex = only_line(&out, "mutex: expected=");
    assert_eq!(
        (field(mutex, "expected"), field(mutex, "actual")),
        (6000, 6000)
    );
    out.assert_stdout_contains(&format!("created semaphore {n}-mutex, value 1"));
    assert_no_posix_leftovers(&n);

    let k = key(1);
    let out = run(DEMO, &["sysv", "--key", &k, "--loops", "3000"]);
    out.assert_success();
    let mutex = only_line(&out, "mutex: expected=");
    assert_eq!(
        (field(mutex, "expected"), field(mutex, "actual")),
        (6000, 6000)
    );
    out.assert_stdout_contains(&format!("at key {k}"));
    assert_no_sysv_leftovers(&k);
}

/// Starts a reader and waits until it sleeps in P.
fn start_reader(args: &[&str], wchan: &str) -> Demo {
    let mut reader = Demo::start(DEMO, args);
    reader.wait_for_line("so I sleep in the kernel until a writer does V");
    wait_until_asleep_in(reader.pid(), wchan);
    reader
}

#[test]
fn reader_and_writer_as_separate_processes() {
    for (flavour, option, meeting, wchan) in [
        ("posix", "--name", name("pair"), "futex"),
        ("sysv", "--key", key(2), "semtimedop"),
    ] {
        let reader = start_reader(&["reader", flavour, option, &meeting], wchan);
        let writer = run(DEMO, &["writer", flavour, option, &meeting]);
        writer.assert_success();
        let out = reader.finish();
        out.assert_success();
        out.assert_stdout_contains("woke up after");
        for (side, role) in [(&writer, "writer"), (&out, "reader")] {
            let summary = side.summary(role);
            assert!(summary.ok, "{}", summary.line);
            assert_eq!(summary.num("messages"), 1.0);
            assert_eq!(summary.num("bytes"), 0.0);
        }
        if flavour == "sysv" {
            // The kernel counted the reader asleep in P before the V.
            writer.assert_stdout_contains("1 asleep in P (GETNCNT)");
            assert_no_sysv_leftovers(&meeting);
        } else {
            assert_no_posix_leftovers(&meeting);
        }
    }
}

#[test]
fn writer_with_nothing_to_open_says_start_the_reader_first() {
    let n = name("nobody");
    run(DEMO, &["writer", "--name", &n])
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("no semaphore {n}: start the reader first"));
    let k = key(3);
    run(DEMO, &["writer", "sysv", "--key", &k])
        .assert_exit_code(1)
        .assert_stderr_contains("start the reader first (sem-demo reader sysv --key");
    assert_no_posix_leftovers(&n);
    assert_no_sysv_leftovers(&k);
}

#[test]
fn a_meeting_point_already_taken_is_named_with_the_command_that_frees_it() {
    for (flavour, option, meeting, wchan, remedy) in [
        (
            "posix",
            "--name",
            name("taken"),
            "futex",
            "rm /dev/shm/sem.",
        ),
        ("sysv", "--key", key(4), "semtimedop", "ipcrm -s "),
    ] {
        let first = start_reader(&["reader", flavour, option, &meeting], wchan);
        run(DEMO, &["reader", flavour, option, &meeting])
            .assert_exit_code(1)
            .assert_stderr_contains("already exists")
            .assert_stderr_contains(remedy);
        // The second reader must not have removed the first one's semaphore.
        run(DEMO, &["writer", flavour, option, &meeting]).assert_success();
        first.finish().assert_success();
    }
    assert_no_posix_leftovers(&name("taken"));
    assert_no_sysv_leftovers(&key(4));
}

fn check_ping(out: &Finished, count: f64) {
    let summary = out.summary("writer");
    assert!(summary.ok, "{}", summary.line);
    assert_eq!(summary.num("messages"), count);
    assert_eq!(summary.num("bytes"), 0.0, "a semaphore carries no data");
    let (p50, p99) = (summary.num("rtt_p50_us"), summary.num("rtt_p99_us"));
    assert!(p50 > 0.0 && p50 <= p99, "{}", summary.line);
    assert_eq!(out.summary("reader").num("messages"), count);
}

#[test]
fn ping_times_p_v_round_trips_in_both_flavours() {
    let n = name("ping-run");
    let out = run(DEMO, &["--ping", "500", "--name", &n]);
    out.assert_success();
    check_ping(&out, 500.0);
    assert!(out.lines_with("reaped reader")[0].contains("exited with status 0"));
    assert_no_posix_leftovers(&n);

    let k = key(5);
    let out = run(DEMO, &["sysv", "--ping", "500", "--key", &k]);
    out.assert_success();
    check_ping(&out, 500.0);
    assert_no_sysv_leftovers(&k);
}

#[test]
fn ping_between_a_separate_reader_and_writer() {
    for (flavour, option, meeting, wchan) in [
        ("posix", "--name", name("ping-pair"), "futex"),
        ("sysv", "--key", key(6), "semtimedop"),
    ] {
        let mut reader = Demo::start(
            DEMO,
            &["reader", flavour, option, &meeting, "--ping", "200"],
        );
        reader.wait_for_line("in another terminal");
        wait_until_asleep_in(reader.pid(), wchan);
        let writer = run(
            DEMO,
            &["writer", flavour, option, &meeting, "--ping", "200"],
        );
        writer.assert_success();
        let out = reader.finish();
        out.assert_success();
        let summary = writer.summary("writer");
        assert_eq!(summary.num("messages"), 200.0);
        assert!(summary.num("rtt_p50_us") > 0.0);
        assert_eq!(out.summary("reader").num("messages"), 200.0);
    }
    assert_no_posix_leftovers(&name("ping-pair"));
    assert_no_sysv_leftovers(&key(6));
}

#[test]
fn a_ping_writer_without_a_ping_reader_says_how_to_start_it() {
    let n = name("noping");
    let reader = start_reader(&["reader", "--name", &n], "futex");
    run(DEMO, &["writer", "--name", &n, "--ping", "5"])
        .assert_exit_code(1)
        .assert_stderr_contains("--ping 5");
    run(DEMO, &["writer", "--name", &n]).assert_success();
    reader.finish().assert_success();
    assert_no_posix_leftovers(&n);
}

#[test]
fn bad_usage_exits_2_names_the_problem_and_creates_nothing() {
    let n = name("bad");
    let k = key(7);
    for (args, needle) in [
        (
            vec!["--count", "3", "--size", "8", "--name", &n],
            "a semaphore carries no data",
        ),
        (
            vec!["--ping", "3", "--size", "100", "--name", &n],
            "a semaphore carries no data",
        ),
        (vec!["reader", "--name", &n, "hello"], "carries no messages"),
        (vec!["writer", "--name", &n, "hello"], "carries no messages"),
        (
            vec!["reader", "sysv", "--key", &k, "--count", "2"],
            "carries no data",
        ),
        (vec!["--bogus"], "unknown option --bogus"),
        (vec!["--ping"], "--ping needs a value"),
        (vec!["--ping", "zero", "--name", &n], "not a whole number"),
        (
            vec!["--ping", "18446744073709551615", "--name", &n],
            "at most 100000000 round trips",
        ),
        (
            vec!["reader", "sysv", "--key", &k, "--ping", "100000001"],
            "at most 100000000 round trips",
        ),
        (vec!["--loops", "0", "--name", &n], "--loops 0"),
        (
            vec!["reader", "--loops", "5", "--name", &n],
            "--loops goes with",
        ),
        (vec!["writer"], "the writer needs --name /NAME"),
        (vec!["writer", "sysv"], "the writer needs --key KEY"),
        (vec!["reader", "--name", "no-slash"], "starts with '/'"),
        (vec!["reader", "--name", "/a/b"], "without '/'"),
        (vec!["reader", "sysv", "--key", "0"], "IPC_PRIVATE"),
        (
            vec!["reader", "sysv", "--key", "0x1zz"],
            "not a 32-bit number",
        ),
        (vec!["reader", "--key", &k], "--key is for System V"),
        (vec!["reader", "sysv", "--name", &n], "--name is for POSIX"),
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
        assert_no_posix_leftovers(&n);
        assert_no_sysv_leftovers(&k);
    }
}

#[test]
fn help_prints_the_usage() {
    run(DEMO, &["--help"])
        .assert_success()
        .assert_stdout_contains("usage: sem-demo");
}

#[test]
fn ctrl_c_while_the_reader_sleeps_in_p_removes_its_semaphore() {
    for (flavour, option, meeting, wchan) in [
        ("posix", "--name", name("sigint-reader"), "futex"),
        ("sysv", "--key", key(8), "semtimedop"),
    ] {
        let reader = start_reader(&["reader", flavour, option, &meeting], wchan);
        reader.signal_group(Signal::SIGINT);
        let out = reader.finish();
        out.assert_killed_by_after_reaping(Signal::SIGINT);
        out.assert_stdout_contains("interrupted by SIGINT: removed");
    }
    assert_no_posix_leftovers(&name("sigint-reader"));
    assert_no_sysv_leftovers(&key(8));
}

/// The default run signalled in act 5, while C sleeps (up to 2 s) on the mutex a killed
/// B still holds: every process ends, and the run removes both semaphores.
fn signal_during_the_default_run(sig: Signal, tag: &str) {
    let n = name(tag);
    let mut demo = Demo::start(DEMO, &["posix", "--name", &n]);
    let line = demo.wait_for_line("B holds it, so I sleep");
    let c = pid_of_role(&line, "C").expect("C's pid");
    wait_until_asleep_in(c, "futex");
    demo.signal_group(sig);
    let out = demo.finish();
    out.assert_killed_by_after_reaping(sig);
    out.assert_stdout_contains(&format!(
        "interrupted by {}: removed {n}-mutex and {n}-sync",
        sig.as_str()
    ));
    assert!(!process_exists(c), "C outlived {sig}");
    assert_no_posix_leftovers(&n);
}

#[test]
fn ctrl_c_during_the_default_run_stops_every_process_and_removes_everything() {
    signal_during_the_default_run(Signal::SIGINT, "sigint-run");
}

/// Round trips for a ping the test kills: at a microsecond or more each, over
/// ten seconds, while the test kills a side as soon as the round trips begin.
/// (Well under the demo's limit, 100000000: it reserves 16 bytes per round trip.)
const ENDLESS_PING: &str = "10000000";

/// Starts a ping too long to finish during the test; returns it and the reader's
/// pid once the round trips have begun.
fn start_endless_ping(args: &[&str]) -> (Demo, i32) {
    let mut demo = Demo::start(DEMO, args);
    let line = demo.wait_for_line("round trips of V then P with reader");
    let rest = line.split("with reader ").nth(1).expect("reader pid");
    let reader = rest
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .expect("a pid");
    (demo, reader)
}

#[test]
fn a_killed_ping_reader_is_noticed_and_nothing_is_left() {
    for (flavour, option, meeting) in [
        ("posix", "--name", name("kill-r")),
        ("sysv", "--key", key(9)),
    ] {
        let (demo, reader) =
            start_endless_ping(&[flavour, "--ping", ENDLESS_PING, option, &meeting]);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGKILL).unwrap();
        let out = demo.finish();
        out.assert_exit_code(1)
            .assert_stderr_contains(&format!(
                "the reader (pid {reader}) is gone, so no V will come"
            ))
            .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGKILL"));
    }
    assert_no_posix_leftovers(&name("kill-r"));
    assert_no_sysv_leftovers(&key(9));
}

#[test]
fn a_killed_ping_writer_is_noticed_by_the_reader_which_cleans_up() {
    for (flavour, option, meeting) in [
        ("posix", "--name", name("kill-w")),
        ("sysv", "--key", key(10)),
    ] {
        let (demo, reader) =
            start_endless_ping(&[flavour, "--ping", ENDLESS_PING, option, &meeting]);
        let pgid = demo.pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL).unwrap();
        let out = demo.finish();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(Signal::SIGKILL as i32)
        );
        assert_eq!(
            reap_orphans(pgid),
            vec![reader],
            "the reader should exit by itself"
        );
        assert!(
            out.stderr
                .contains(&format!("the writer (pid {pgid}) is gone")),
            "the reader's message is missing: {}",
            out.stderr
        );
        assert!(
            out.stdout
                .contains("the writer died without cleaning up: removed")
        );
    }
    assert_no_posix_leftovers(&name("kill-w"));
    assert_no_sysv_leftovers(&key(10));
}

#[test]
fn sighup_while_the_reader_sleeps_in_p_removes_its_semaphores() {
    // Closing the terminal sends SIGHUP; a reader asleep in P must still clean up.
    for (flavour, option, meeting, wchan, ping) in [
        ("posix", "--name", name("hup-reader"), "futex", None),
        ("sysv", "--key", key(11), "semtimedop", None),
        ("posix", "--name", name("hup-ping"), "futex", Some("5")),
        ("sysv", "--key", key(12), "semtimedop", Some("5")),
    ] {
        let mut args = vec!["reader", flavour, option, meeting.as_str()];
        if let Some(n) = ping {
            args.extend(["--ping", n]);
        }
        let mut reader = Demo::start(DEMO, &args);
        reader.wait_for_line("in another terminal");
        wait_until_asleep_in(reader.pid(), wchan);
        reader.signal_group(Signal::SIGHUP);
        let out = reader.finish();
        out.assert_killed_by_after_reaping(Signal::SIGHUP);
        out.assert_stdout_contains("interrupted by SIGHUP: removed");
        if flavour == "sysv" {
            assert_no_sysv_leftovers(&meeting);
        } else {
            assert_no_posix_leftovers(&meeting);
        }
    }
}

#[test]
fn sighup_during_the_default_run_stops_every_process_and_removes_everything() {
    signal_during_the_default_run(Signal::SIGHUP, "hup-run");
}

#[test]
fn ctrl_c_stops_the_unprotected_counting_loop_at_once() {
    // 10^9 increments each would take many minutes: only a loop that looks at the
    // Ctrl+C flag ends within the harness deadline.
    for (flavour, option, meeting) in [
        ("sysv", "--key", key(14)),
        ("posix", "--name", name("long-loop")),
    ] {
        let mut demo = Demo::start(DEMO, &[flavour, option, &meeting, "--loops", "1000000000"]);
        demo.wait_for_line("--- act 2:");
        demo.wait_for_line("counting from now on");
        demo.wait_for_line("counting from now on");
        demo.signal_group(Signal::SIGINT);
        let out = demo.finish();
        out.assert_killed_by_after_reaping(Signal::SIGINT);
        out.assert_stdout_contains("interrupted by SIGINT: removed");
        assert!(
            out.lines_with("added 1 1000000000 times").is_empty(),
            "a process finished its whole loop first:\n{}",
            out.stdout
        );
        if flavour == "sysv" {
            assert_no_sysv_leftovers(&meeting);
        } else {
            assert_no_posix_leftovers(&meeting);
        }
    }
}

/// Both flavours' two-terminal meeting points, as (flavour, option, meeting).
fn two_terminal_meetings(tag: &str, key_tag: u32) -> [(&'static str, &'static str, String); 2] {
    [
        ("posix", "--name", name(tag)),
        ("sysv", "--key", key(key_tag)),
    ]
}

fn wchan_of(flavour: &str) -> &'static str {
    if flavour == "sysv" {
        "semtimedop"
    } else {
        "futex"
    }
}

fn assert_nothing_left(flavour: &str, meeting: &str) {
    if flavour == "sysv" {
        assert_no_sysv_leftovers(meeting);
    } else {
        assert_no_posix_leftovers(meeting);
    }
}

/// A ping reader and writer started by hand, the round trips under way; the
/// pids of reader and writer are their process groups.
fn start_endless_ping_pair(flavour: &str, option: &str, meeting: &str) -> (Demo, Demo) {
    let mut reader = Demo::start(
        DEMO,
        &["reader", flavour, option, meeting, "--ping", ENDLESS_PING],
    );
    reader.wait_for_line("in another terminal");
    wait_until_asleep_in(reader.pid(), wchan_of(flavour));
    let mut writer = Demo::start(
        DEMO,
        &["writer", flavour, option, meeting, "--ping", ENDLESS_PING],
    );
    writer.wait_for_line(&format!(
        "round trips of V then P with reader {}",
        reader.pid()
    ));
    // The reader names the writer once it has found it (in /proc, or by GETPID).
    reader.wait_for_line(&format!("the writer is pid {}", writer.pid()));
    (reader, writer)
}

/// The command in the last `...` of `text`: what the demo says removes a leftover.
fn last_quoted_command(text: &str) -> String {
    let end = text.rfind('`').expect("a `command` in the message");
    let start = text[..end].rfind('`').expect("an opening `");
    text[start + 1..end].to_string()
}

/// Runs the command a demo named for what a dead process left behind: it must work.
fn run_named_command(command: &str) {
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .expect("sh");
    assert!(status.success(), "`{command}` failed: {status}");
}

#[test]
fn a_two_terminal_reader_notices_its_killed_writer_and_removes_its_semaphores() {
    for (flavour, option, meeting) in two_terminal_meetings("tt-kill-w", 15) {
        let (reader, writer) = start_endless_ping_pair(flavour, option, &meeting);
        let writer_pid = writer.pid();
        writer.signal_group(Signal::SIGKILL);
        writer.finish().assert_killed_by(Signal::SIGKILL);
        let out = reader.finish();
        out.assert_exit_code(1)
            .assert_stderr_contains(&format!("the writer (pid {writer_pid}) died"))
            .assert_stderr_contains("so no V will come");
        match flavour {
            "sysv" => out.assert_stdout_contains("removed semaphore set id"),
            _ => out.assert_stdout_contains(&format!("removed semaphore {meeting}-pong")),
        };
        assert_nothing_left(flavour, &meeting);
    }
}

#[test]
fn a_two_terminal_writer_notices_its_killed_reader_and_names_what_it_left() {
    for (flavour, option, meeting) in two_terminal_meetings("tt-kill-r", 16) {
        let (reader, writer) = start_endless_ping_pair(flavour, option, &meeting);
        let reader_pid = reader.pid();
        reader.signal_group(Signal::SIGKILL);
        reader.finish().assert_killed_by(Signal::SIGKILL);
        let out = writer.finish();
        out.assert_exit_code(1)
            .assert_stderr_contains(&format!("the reader (pid {reader_pid}) died"))
            .assert_stderr_contains("died without removing");
        let command = last_quoted_command(&out.stderr);
        match flavour {
            "sysv" => assert!(command.starts_with("ipcrm -s "), "{command}"),
            _ => assert!(command.starts_with("rm /dev/shm/sem."), "{command}"),
        }
        run_named_command(&command);
        assert_nothing_left(flavour, &meeting);
    }
}

#[test]
fn a_writer_that_finds_a_killed_readers_semaphore_says_so_instead_of_posting() {
    for (flavour, option, meeting) in two_terminal_meetings("tt-dead-r", 17) {
        let reader = start_reader(&["reader", flavour, option, &meeting], wchan_of(flavour));
        reader.signal_group(Signal::SIGKILL);
        reader.finish().assert_killed_by(Signal::SIGKILL);
        let out = run(DEMO, &["writer", flavour, option, &meeting]);
        out.assert_exit_code(1)
            .assert_stderr_contains("died without removing");
        assert!(
            out.lines_with("V on").is_empty(),
            "a V for nobody: {}",
            out.stdout
        );
        run_named_command(&last_quoted_command(&out.stderr));
        assert_nothing_left(flavour, &meeting);
    }
}

#[test]
fn sighup_while_the_ping_writer_waits_for_an_answer() {
    for (flavour, option, meeting) in two_terminal_meetings("tt-hup-w", 18) {
        let mut reader = Demo::start(DEMO, &["reader", flavour, option, &meeting, "--ping", "5"]);
        reader.wait_for_line("in another terminal");
        wait_until_asleep_in(reader.pid(), wchan_of(flavour));
        // A stopped reader answers nothing: the writer sleeps in P for its answer.
        reader.signal_group(Signal::SIGSTOP);
        let mut writer = Demo::start(DEMO, &["writer", flavour, option, &meeting, "--ping", "5"]);
        writer.wait_for_line("round trips of V then P");
        wait_until_asleep_in(writer.pid(), wchan_of(flavour));
        writer.signal_group(Signal::SIGHUP);
        writer
            .finish()
            .assert_killed_by_after_reaping(Signal::SIGHUP);
        // The reader, woken, takes the one ping, then finds its writer gone.
        reader.signal_group(Signal::SIGCONT);
        let out = reader.finish();
        out.assert_exit_code(1);
        assert_nothing_left(flavour, &meeting);
    }
}

#[test]
fn a_set_removed_under_a_waiting_reader_is_named_as_removed_not_as_its_creator_ending() {
    let k = key(19);
    let mut reader = Demo::start(DEMO, &["reader", "sysv", "--key", &k]);
    let line = reader.wait_for_line("created semaphore set id");
    let id = number_after(&line, "set id ");
    wait_until_asleep_in(reader.pid(), "semtimedop");
    run_named_command(&format!("ipcrm -s {id}"));
    let out = reader.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the set was removed (IPC_RMID) while I waited");
    assert!(
        !out.stderr.contains("its creator ended"),
        "the reader is its creator: {}",
        out.stderr
    );
    assert_no_sysv_leftovers(&k);
}

/// Starts the default run with endless counting and returns it, with B's pid,
/// once A and B count in act 2.
fn start_endless_race(flavour: &str, option: &str, meeting: &str) -> (Demo, i32) {
    let mut demo = Demo::start(DEMO, &[flavour, option, meeting, "--loops", "1000000000"]);
    demo.wait_for_line("--- act 2:");
    let mut b = None;
    for _ in 0..2 {
        let line = demo.wait_for_line("counting from now on");
        if line.starts_with("[B ") {
            b = pid_of_role(&line, "B");
        }
    }
    (demo, b.expect("B's counting line"))
}

#[test]
fn a_child_whose_parent_was_killed_mid_run_stops_and_removes_the_semaphores() {
    for (flavour, option, meeting) in two_terminal_meetings("race-kill-a", 20) {
        let (demo, b) = start_endless_race(flavour, option, &meeting);
        let a = demo.pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(a), Signal::SIGKILL).unwrap();
        let out = demo.finish();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(Signal::SIGKILL as i32)
        );
        let orphans = reap_orphans_with_status(a);
        assert_eq!(
            orphans,
            vec![(
                b,
                nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(b), 1)
            )],
            "B should notice and exit 1 by itself"
        );
        assert!(
            out.stderr
                .contains(&format!("A (pid {a}) died before it had finished counting")),
            "{}",
            out.stderr
        );
        assert!(
            out.stdout
                .contains(&format!("A (pid {a}) died without removing")),
            "{}",
            out.stdout
        );
        assert_nothing_left(flavour, &meeting);
    }
}

#[test]
fn a_parent_whose_child_was_killed_mid_run_says_so_and_removes_the_semaphores() {
    for (flavour, option, meeting) in two_terminal_meetings("race-kill-b", 21) {
        let (demo, b) = start_endless_race(flavour, option, &meeting);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(b), Signal::SIGKILL).unwrap();
        let out = demo.finish();
        out.assert_exit_code(1)
            .assert_stderr_contains(&format!("B (pid {b}) died before it had finished counting"))
            .assert_stdout_contains(&format!("reaped B {b}: killed by SIGKILL"));
        assert_nothing_left(flavour, &meeting);
    }
}

/// Raw calls of the mechanism (and of fork, signals and shared memory) that only the
/// library half may make: `libc::NAME(`, and nix's wrappers by name.
const RAW_CALLS: [&str; 8] = [
    "unistd::fork",
    "waitpid(",
    "sigaction(",
    "raise(",
    "mmap",
    "munmap(",
    "kill(",
    "libc::",
];

/// A line's code: what comes before `//`, with string literals blanked out (a line
/// that starts inside a string continued from the line before is skipped).
fn code_of(line: &str) -> Option<String> {
    let code = line.split("//").next().unwrap_or("").trim();
    if code.starts_with(|c: char| c.is_lowercase()) && !code.contains(['=', '(', ';', '{']) {
        return None; // the middle of a long string: words, not code
    }
    let mut out = String::new();
    for (k, part) in code.split('"').enumerate() {
        if k % 2 == 0 {
            out.push_str(part);
        }
    }
    Some(out)
}

#[test]
fn the_narrated_binary_makes_every_semaphore_call_through_the_library() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sem-demo/src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let library: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| format!("{}.rs", m.trim_end_matches(';')))
        .collect();
    assert!(
        library.len() >= 2,
        "lib.rs declares its modules: {library:?}"
    );
    let mut offences = Vec::new();
    for entry in std::fs::read_dir(&src).expect("sem-demo/src") {
        let path = entry.expect("dir entry").path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if file == "lib.rs" || library.contains(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source file");
        for (n, line) in text.lines().enumerate() {
            let Some(code) = code_of(line) else { continue };
            for call in RAW_CALLS {
                for (at, _) in code.match_indices(call) {
                    let rest = &code[at + call.len()..];
                    let allowed = match call {
                        // The library's `Child::kill` (`.kill()`, our wrapper's `fn kill(`),
                        // not kill(2).
                        "kill(" => code[..at].ends_with('.') || code[..at].ends_with("fn "),
                        // libc's types and constants (`libc::key_t`) are fine; its
                        // functions (`libc::sem_post(`) are the library's.
                        "libc::" => !rest
                            .split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                            .is_some_and(|name| rest[name.len()..].starts_with('(')),
                        _ => false,
                    };
                    if !allowed {
                        offences.push(format!("{file}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "raw calls outside the library half (sem_demo::posix, sysv, process...):\n{}",
        offences.join("\n")
    );
}

// --- the eventfd flavour (issue 12): no name, so the leak check is "no process of
// the run is left", and the kernel's view is /proc/PID/fd and /proc/PID/fdinfo.

/// The eventfds process `pid` has open: (fd, eventfd-count, semaphore mode), read
/// from /proc/PID/fd (the link names `anon_inode:[eventfd]`) and fdinfo.
fn eventfds_of(pid: i32) -> Vec<(String, u64, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd") {
        let entry = entry.expect("fd entry");
        let fd = entry.file_name().to_string_lossy().to_string();
        let link = std::fs::read_link(entry.path()).unwrap_or_default();
        if link.to_string_lossy() != "anon_inode:[eventfd]" {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
        let value = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let count = u64::from_str_radix(&value("eventfd-count:").expect("eventfd-count"), 16)
            .expect("hex count");
        // eventfd-semaphore: Linux 6.6 and later; older kernels: trust the flags line.
        let semaphore = value("eventfd-semaphore:").is_none_or(|v| v == "1");
        found.push((fd, count, semaphore));
    }
    found.sort();
    found
}

#[test]
fn eventfd_default_run_counts_in_fdinfo_and_polls_beside_a_pipe() {
    let out = run(DEMO, &["eventfd", "--loops", "2000"]);
    out.assert_success();
    // Act 1: three V raise the counter as fdinfo shows it; B's three P lower it.
    assert!(only_line(&out, "created jobs (eventfd").contains("eventfd-count: 0"));
    let a_counts: Vec<u64> = out
        .lines_with("V: wrote 1, eventfd-count")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(a_counts, [1, 2, 3], "{}", out.stdout);
    let b_counts: Vec<u64> = out
        .lines_with("P: read took 1")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(b_counts, [2, 1, 0], "{}", out.stdout);
    let asleep = only_line(&out, "B is asleep in P (/proc/");
    assert!(
        asleep.contains("poll") && asleep.ends_with("eventfd-count 0"),
        "{asleep}"
    );
    // (A's line and B's come from two processes: their order is the scheduler's.)
    out.assert_stdout_contains("V: wrote 1, and the kernel woke B");
    out.assert_stdout_contains("woke up and took the unit A wrote, eventfd-count 0");
    // Acts 3 and 4, shared with the other flavours.
    let mutex = only_line(&out, "mutex: expected=");
    assert_eq!(field(mutex, "lost"), 0, "{mutex}");
    assert!(out.line_index("A's step: wrote 42") < out.line_index("B's step: read 42"));
    assert!(only_line(&out, "B is asleep in P on sync").contains("asleep_in_P=1"));
    // Act 5: the deadline passes with nothing ready, then the pipe, then the semaphore.
    let timed_out = out.line_index("poll returned 0 after 300ms");
    let pipe = out.line_index("poll: the pipe is readable: read \"hello\"");
    let sem = out.line_index("is readable: P took the unit, eventfd-count 0");
    assert!(timed_out < pipe && pipe < sem, "{}", out.stdout);
    assert!(
        !out.stdout.contains("removed"),
        "nothing has a name to remove"
    );
    assert_group_gone(out.pid);
}

/// Starts the eventfd run with endless counting; returns it and B's pid once A and
/// B count in act 2 (the mutex at 1 and the sync semaphore at 0 are open by then).
fn start_endless_eventfd_race() -> (Demo, i32) {
    let mut demo = Demo::start(DEMO, &["eventfd", "--loops", "1000000000"]);
    demo.wait_for_line("--- act 2:");
    let mut b = None;
    for _ in 0..2 {
        let line = demo.wait_for_line("counting from now on");
        if line.starts_with("[B ") {
            b = pid_of_role(&line, "B");
        }
    }
    (demo, b.expect("B's counting line"))
}

#[test]
fn eventfd_semaphores_are_in_the_kernel_fd_tables_and_a_killed_parent_is_noticed() {
    let (demo, b) = start_endless_eventfd_race();
    let a = demo.pid();
    // The kernel's view: A and its child share the same two eventfds in semaphore
    // mode, the mutex at 1 (nobody holds it in act 2) and the sync one at 0.
    for pid in [a, b] {
        let fds = eventfds_of(pid);
        let counts: Vec<(u64, bool)> = fds.iter().map(|&(_, c, s)| (c, s)).collect();
        assert_eq!(counts, [(1, true), (0, true)], "pid {pid}: {fds:?}");
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(a), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(Signal::SIGKILL as i32)
    );
    let orphans = reap_orphans_with_status(a);
    assert_eq!(
        orphans,
        vec![(
            b,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(b), 1)
        )],
        "B should notice and exit 1 by itself"
    );
    out.assert_stderr_contains(&format!("A (pid {a}) died before it had finished counting"));
    assert!(
        !out.stdout.contains("removed"),
        "an eventfd leaves nothing to remove: {}",
        out.stdout
    );
}

#[test]
fn eventfd_parent_whose_child_was_killed_says_so() {
    let (demo, b) = start_endless_eventfd_race();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(b), Signal::SIGKILL).unwrap();
    let pgid = demo.pid();
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!("B (pid {b}) died before it had finished counting"))
        .assert_stdout_contains(&format!("reaped B {b}: killed by SIGKILL"));
    assert_group_gone(pgid);
}

#[test]
fn eventfd_ping_times_round_trips_over_two_eventfds() {
    let out = run(DEMO, &["eventfd", "--ping", "500"]);
    out.assert_success();
    check_ping(&out, 500.0);
    assert_group_gone(out.pid);
}

#[test]
fn eventfd_ping_sides_notice_a_killed_peer() {
    let (demo, reader) = start_endless_ping(&["eventfd", "--ping", ENDLESS_PING]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    out.assert_exit_code(1).assert_stderr_contains(&format!(
        "the reader (pid {reader}) is gone, so no V will come"
    ));
    assert_group_gone(out.pid);

    let (demo, reader) = start_endless_ping(&["eventfd", "--ping", ENDLESS_PING]);
    let pgid = demo.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    assert_eq!(
        reap_orphans(pgid),
        vec![reader],
        "the reader should exit by itself"
    );
    out.assert_stderr_contains(&format!("the writer (pid {pgid}) is gone"));
    assert!(!out.stdout.contains("removed"), "{}", out.stdout);
}

#[test]
fn ctrl_c_while_eventfd_sides_wait_stops_both() {
    let (demo, reader) = start_endless_ping(&["eventfd", "--ping", ENDLESS_PING]);
    demo.signal_group(Signal::SIGINT);
    let out = demo.finish();
    out.assert_killed_by_after_reaping(Signal::SIGINT);
    out.assert_stdout_contains("interrupted by SIGINT: removed nothing: an eventfd has no name");
    assert!(!process_exists(reader), "the reader outlived Ctrl+C");
}

#[test]
fn eventfd_bad_usage_exits_2() {
    for (args, needle) in [
        (vec!["reader", "eventfd"], "eventfd has no reader or writer"),
        (vec!["writer", "eventfd"], "eventfd has no reader or writer"),
        (vec!["eventfd", "--name", "/x"], "an eventfd has no name"),
        (vec!["eventfd", "--key", "5"], "an eventfd has no name"),
        (
            vec!["eventfd", "--count", "3"],
            "a semaphore carries no data",
        ),
        (vec!["eventfd", "hello"], "carries no messages"),
    ] {
        let out = run(DEMO, &args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}
