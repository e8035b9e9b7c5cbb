//! End-to-end tests of pipe-demo: every flavour, both workloads, bad usage, signals
//! and a peer killed mid-transfer. Each run is checked for leftovers: no process of
//! its group may outlive it, and no child may be left unreaped.

use ipc_tests::*;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = "pipe-demo";

#[test]
fn oneway_shows_one_direction_eof_a_full_buffer_and_epipe() {
    let out = run(DEMO, &[]);
    out.assert_success();

    // Act 1: the messages arrive whole and in order, then EOF.
    let hello = out.line_index(r#"received "hello" (5 bytes)"#);
    let second = out.line_index(r#"received "through a pipe" (14 bytes)"#);
    let third = out.line_index(r#"received "one way only" (12 bytes)"#);
    let eof = out.line_index("EOF: every write end is closed");
    assert!(
        hello < second && second < third && third < eof,
        "{}",
        out.stdout
    );
    assert_eq!(out.lines_with("] received ").len(), 3);
    out.assert_stdout_contains("writing into the read end fails with EBADF");

    // Act 2: the pipe took exactly its capacity, then the writer slept until the
    // reader, having seen it asleep in the kernel, drained the pipe.
    let capacity = number_after(out.lines_with("F_GETPIPE_SZ")[0], "F_GETPIPE_SZ says ");
    let filled = number_after(out.lines_with("O_NONBLOCK")[0], "wrote ");
    assert_eq!(filled, capacity, "{}", out.stdout);
    let asleep = out.line_index("is asleep in the kernel");
    assert!(out.lines_with("is asleep in the kernel")[0].contains("pipe_write"));
    let woke = out.line_index("woke up: the write finished");
    assert!(
        asleep < woke,
        "the writer woke before the reader saw it asleep:\n{}",
        out.stdout
    );
    let drained = number_after(out.lines_with("room again")[0], "read ");
    assert_eq!(drained, capacity + 4096);

    // Act 3: after the reader is reaped, a write fails with EPIPE.
    let reaped = out.line_index("reaped reader");
    let epipe = out.line_index("write failed with EPIPE");
    assert!(reaped < epipe, "{}", out.stdout);
    assert!(out.lines_with("reaped reader")[0].contains("exited with status 0"));

    for role in ["writer", "reader"] {
        let summary = out.summary(role);
        assert!(summary.ok);
        assert_eq!(summary.num("messages"), 3.0);
        assert_eq!(summary.num("bytes"), 31.0);
    }
}

#[test]
fn oneway_carries_the_messages_given_on_the_command_line() {
    let out = run(DEMO, &["first message", "second", "ünïcode ✓"]);
    out.assert_success();
    let received: Vec<&str> = out.lines_with("] received ");
    assert_eq!(received.len(), 3);
    assert!(received[0].ends_with(r#"received "first message" (13 bytes)"#));
    assert!(received[1].ends_with(r#"received "second" (6 bytes)"#));
    assert!(received[2].contains("ünïcode ✓"));
}

#[test]
fn duplex_answers_each_request_over_the_second_pipe() {
    let out = run(DEMO, &["duplex", "ping me", "again"]);
    out.assert_success();
    let replies = out.lines_with("up the second pipe");
    assert!(
        replies
            .iter()
            .any(|l| l.contains(r#"received "PING ME" (7 bytes)"#)),
        "{}",
        out.stdout
    );
    assert!(
        replies
            .iter()
            .any(|l| l.contains(r#"received "AGAIN" (5 bytes)"#))
    );
    // Each reply comes after its request was sent.
    assert!(out.line_index(r#"sent "ping me""#) < out.line_index(r#"received "PING ME""#));
    assert!(out.line_index(r#"received "PING ME""#) < out.line_index(r#"sent "again""#));
    assert_eq!(out.summary("parent").num("messages"), 2.0);
    assert_eq!(out.summary("child").num("messages"), 2.0);
    assert!(out.lines_with("reaped child")[0].contains("exited with status 0"));
}

#[test]
fn shell_runs_ps_into_grep_and_reaps_both() {
    let out = run(DEMO, &["shell"]);
    // Not assert_success: its panic check scans stdout for "RUST_BACKTRACE", and the
    // lines grep passes through are other processes' command lines, which may hold
    // it (any process started with that variable in its command line, as some
    // sandboxes do). The demo's own stderr must be clean, and nothing left running.
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert_group_gone(out.pid);
    // grep's output is ps's lines that contain "ps", among them ps itself.
    assert!(
        out.stdout
            .lines()
            .any(|l| !l.starts_with('[') && l.contains("ps auxf")),
        "no line of ps output came through grep:\n{}",
        out.stdout
    );
    assert!(out.lines_with("reaped `ps auxf`")[0].contains("exited with status 0"));
    assert!(out.lines_with("reaped `grep ps`")[0].contains("exited with status 0"));
}

#[test]
fn bulk_moves_every_byte_in_order() {
    for (count, size) in [("64", "65536"), ("2000", "3"), ("10", "100000")] {
        let out = run(DEMO, &["--count", count, "--size", size]);
        out.assert_success();
        let bytes: f64 = count.parse::<f64>().unwrap() * size.parse::<f64>().unwrap();
        for role in ["writer", "reader"] {
            let summary = out.summary(role);
            assert!(summary.ok, "{}", summary.line);
            assert_eq!(summary.num("messages"), count.parse::<f64>().unwrap());
            assert_eq!(summary.num("bytes"), bytes);
            summary.assert_throughput_consistent();
        }
    }
}

/// Issue 13: the fast paths carry the same checked stream. The reader checks every
/// message's sequence number and pattern, so a vmsplice ring that rewrote a buffer
/// the pipe still referred to would fail here ("carries sequence number").
/// 2000 messages of 64 KiB wrap every ring many times; 6000 bytes is 1.5 pages
/// (two slots a message); 3 bytes takes a whole slot per message.
#[test]
fn bulk_fast_paths_move_every_byte_in_order() {
    for fast in [
        &["--pipe-size", "auto"][..],
        &["--vmsplice"],
        &["--pipe-size", "auto", "--vmsplice"],
        &["--pipe-size", "1048576", "--vmsplice"],
    ] {
        for (count, size) in [("2000", "65536"), ("3000", "6000"), ("5000", "3")] {
            let mut args = vec!["--count", count, "--size", size, "--cpus", "0,1"];
            if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
                args.truncate(4);
            }
            args.extend_from_slice(fast);
            let out = run(DEMO, &args);
            out.assert_success();
            if fast.contains(&"--pipe-size") {
                out.assert_stdout_contains("the pipe holds");
            }
            if fast.contains(&"--vmsplice") {
                out.assert_stdout_contains("page-aligned buffers in turn");
            }
            let bytes = count.parse::<f64>().unwrap() * size.parse::<f64>().unwrap();
            for role in ["writer", "reader"] {
                let summary = out.summary(role);
                assert!(summary.ok, "{args:?}: {}", summary.line);
                assert_eq!(summary.num("bytes"), bytes, "{args:?}");
            }
        }
    }
}

/// `--pipe-size auto`: four 64 KiB messages deep, unless pipe-max-size is lower.
#[test]
fn pipe_size_auto_makes_the_pipe_four_messages_deep() {
    let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = run(
        DEMO,
        &["--count", "8", "--size", "65536", "--pipe-size", "auto"],
    );
    out.assert_success();
    let line = &out.lines_with("F_SETPIPE_SZ: the pipe holds")[0];
    let expected: u64 = if max >= 262144 { 262144 } else { 65536 };
    assert_eq!(number_after(line, "holds "), expected, "{line}");
}

/// `--pipe-size auto` only grows a pipe: 4 KiB messages keep a new pipe's capacity
/// (64 KiB, 16 of them, for a user under pipe-user-pages-soft), which is deeper than
/// four messages; cutting it to 16 KiB made 4 KiB bulk about 8 times slower.
#[test]
fn pipe_size_auto_never_shrinks_a_pipe() {
    let (read_end, _write_end) = nix::unistd::pipe().unwrap();
    let fresh = nix::fcntl::fcntl(&read_end, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap() as u64;
    let out = run(
        DEMO,
        &["--count", "8", "--size", "4096", "--pipe-size", "auto"],
    );
    out.assert_success();
    let line = &out.lines_with("the pipe holds")[0];
    assert_eq!(number_after(line, "holds "), fresh.max(4 * 4096), "{line}");
    if fresh >= 4 * 4096 {
        assert!(line.contains("no F_SETPIPE_SZ"), "{line}");
    }
}

#[test]
fn ping_reports_round_trip_percentiles() {
    let out = run(DEMO, &["--ping", "500", "--size", "64"]);
    out.assert_success();
    let summary = out.summary("writer");
    assert_eq!(summary.num("messages"), 500.0);
    assert_eq!(summary.num("bytes"), 500.0 * 64.0);
    let (p50, p99) = (summary.num("rtt_p50_us"), summary.num("rtt_p99_us"));
    assert!(p50 > 0.0 && p50 <= p99, "{}", summary.line);
    assert_eq!(out.summary("reader").num("messages"), 500.0);
}

#[test]
fn bad_usage_exits_2_and_names_the_problem() {
    for (args, needle) in [
        (&["--bogus"][..], "--bogus"),
        (&["--count"], "--count needs a value"),
        (&["--count", "ten", "--size", "1"], "ten"),
        (&["--count", "3"], "--size"),
        (&["--ping", "3", "--count", "3", "--size", "1"], "pick one"),
        (&["--ping", "3", "--size", "999999999999"], "at most"),
        (&["shell", "extra"], "shell"),
        (&["reader"], "no reader role"),
        (&["writer", "hi"], "no writer role"),
        (&["line\nbreak"], "newline"),
        (&["--vmsplice"], "go with --count"),
        (&["--ping", "3", "--pipe-size", "auto"], "go with --count"),
        (
            &["--count", "3", "--size", "1", "--pipe-size", "0"],
            "--pipe-size 0",
        ),
        (
            &["--count", "3", "--size", "1", "--pipe-size", "big"],
            "--pipe-size big",
        ),
    ] {
        let out = run(DEMO, args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        assert!(
            out.stdout.is_empty(),
            "bad usage must do nothing: {}",
            out.stdout
        );
    }
}

#[test]
fn help_prints_the_usage() {
    let out = run(DEMO, &["--help"]);
    out.assert_success()
        .assert_stdout_contains("usage: pipe-demo");
}

/// Starts a bulk transfer too long to finish during the test and returns it with
/// the reader's pid, once data is flowing.
fn start_endless_bulk() -> (Demo, i32) {
    let mut demo = Demo::start(DEMO, &["--count", "100000000", "--size", "65536"]);
    let line = demo.wait_for_line("sending 100000000 messages");
    let reader = number_after(&line, "to reader ") as i32;
    (demo, reader)
}

#[test]
fn ctrl_c_mid_transfer_stops_both_processes() {
    let (demo, reader) = start_endless_bulk();
    demo.signal_group(Signal::SIGINT);
    let out = demo.finish();
    out.assert_killed_by(Signal::SIGINT);
    // Both got the SIGINT (one process group, as from a terminal) and died of it.
    assert!(out.stdout.contains(&format!("to reader {reader}")));
}

#[test]
fn writer_survives_a_killed_reader_with_a_clear_error() {
    let (demo, reader) = start_endless_bulk();
    // The writer outruns the reader: kill the reader while the writer sleeps on the
    // full pipe.
    wait_until_asleep_in(demo.pid(), "pipe_write");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the reader is gone")
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGKILL"));
}

/// Issue 13: a vmsplicing writer asleep on a full pipe meets a killed reader the
/// same way: EPIPE, a sentence, exit 1, the reader reaped.
#[test]
fn a_vmsplicing_writer_survives_a_killed_reader_with_a_clear_error() {
    let mut demo = Demo::start(
        DEMO,
        &["--count", "100000000", "--size", "65536", "--vmsplice"],
    );
    let line = demo.wait_for_line("sending 100000000 messages");
    let reader = number_after(&line, "to reader ") as i32;
    wait_until_asleep_in(demo.pid(), "pipe_wait_writable");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the reader is gone: vmsplice failed with EPIPE")
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGKILL"));
}

#[test]
fn reader_notices_a_killed_writer_and_exits_non_zero() {
    let (demo, reader) = start_endless_bulk();
    let pgid = demo.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
    // The orphaned reader sees EOF in the middle of the stream, says so, exits 1.
    let reader_pid = nix::unistd::Pid::from_raw(reader);
    assert_eq!(
        reap_orphans_with_status(pgid),
        vec![(reader, nix::sys::wait::WaitStatus::Exited(reader_pid, 1))],
        "the reader should exit by itself, with status 1"
    );
    assert!(
        out.stderr.contains("the writer closed the pipe") && out.stderr.contains("it died"),
        "the reader's message is missing: {}",
        out.stderr
    );
}

/// Runs pipe-demo with `args` (any bytes) and `env` added, in its own process group,
/// its output in files of `dir`; waits with a deadline. Returns (exit code, stdout,
/// stderr). For what `Demo::start` cannot give: a non-UTF-8 argument, a chosen PATH.
fn run_raw(
    dir: &ScratchDir,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    prepare_test_process();
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(demo_bin(DEMO))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn pipe-demo");
    let pgid = child.id() as i32;
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL);
            let _ = child.wait();
            panic!("pipe-demo did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_group_gone(pgid);
    let read = |p: &str| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    (status.code(), read(&out), read(&err))
}

#[test]
fn an_argument_that_is_not_utf8_is_bad_usage_not_a_panic() {
    let dir = ScratchDir::new("pipe-argv");
    for args in [&[b"\xff".as_slice()][..], &[b"duplex", b"caf\xe9"]] {
        let args: Vec<&std::ffi::OsStr> = args
            .iter()
            .map(|a| std::ffi::OsStr::from_bytes(a))
            .collect();
        let (code, stdout, stderr) = run_raw(&dir, &args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("not valid UTF-8"), "{stderr}");
        assert!(stderr.contains("usage:"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stdout.is_empty(), "bad usage must do nothing: {stdout}");
    }
}

#[test]
fn numbers_too_big_for_a_u64_are_bad_usage() {
    for args in [
        &["--count", "99999999999999999999999", "--size", "1"][..],
        &["--ping", "1", "--size", "99999999999999999999999"],
        &["--ping", "1", "--cpus", "99999999999999999999999,0"],
    ] {
        run(DEMO, args)
            .assert_exit_code(2)
            .assert_stderr_contains("usage:");
    }
}

#[test]
fn shell_says_grep_could_not_be_run_when_exec_fails() {
    let Some(ps) = find_tool("ps", "procps") else {
        return;
    };
    // A PATH that holds `ps` and nothing else: exec finds no grep.
    let dir = ScratchDir::new("pipe-path");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(&ps, dir.path().join("bin/ps")).unwrap();
    let (code, stdout, stderr) = run_raw(&dir, &["shell".as_ref()], &[("PATH", &bin)]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(r#"exec "grep": ENOENT"#), "{stderr}");
    assert!(
        stderr.contains("`grep ps` could not be run"),
        "exec failed, so grep never ran: {stderr}"
    );
    assert!(!stderr.contains("no matching line"), "{stderr}");
    assert!(
        stdout.contains("reaped `grep ps`") && stdout.contains("exited with status 127"),
        "{stdout}"
    );
    assert_no_line_twice(&stdout);
    assert_eq!(stderr.matches("exec \"grep\"").count(), 1, "{stderr}");
}

#[test]
fn shell_with_neither_program_on_path_says_each_could_not_be_run_once() {
    // An empty PATH directory: exec finds neither ps nor grep.
    let dir = ScratchDir::new("pipe-nopath");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let (code, stdout, stderr) = run_raw(&dir, &["shell".as_ref()], &[("PATH", &bin)]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("`ps auxf` could not be run") && stderr.contains("exit status 127"),
        "{stderr}"
    );
    for program in ["ps", "grep"] {
        let said = format!("exec \"{program}\": ENOENT");
        assert_eq!(stderr.matches(&said).count(), 1, "{stderr}");
    }
    assert_eq!(
        stdout.matches("exited with status 127").count(),
        2,
        "{stdout}"
    );
    // A child whose exec failed ends with _exit: whatever its copy of the parent's
    // memory holds (stdout's buffer, exit handlers) is not run or printed again.
    assert_no_line_twice(&stdout);
}

/// Every line of narration is printed once: a child that flushed a copy of its
/// parent's buffer would print the parent's lines again.
fn assert_no_line_twice(stdout: &str) {
    let mut seen = std::collections::HashSet::new();
    for line in stdout.lines().filter(|l| l.starts_with('[')) {
        assert!(seen.insert(line), "printed twice: {line:?}\n{stdout}");
    }
}

#[test]
fn sighup_while_the_writer_blocks_on_a_full_pipe_ends_both() {
    let (demo, reader) = start_endless_bulk();
    // The writer outruns the reader, so it ends up asleep on the full pipe.
    wait_until_asleep_in(demo.pid(), "pipe_write");
    demo.signal_group(Signal::SIGHUP);
    let out = demo.finish();
    out.assert_killed_by(Signal::SIGHUP);
    assert!(!process_exists(reader), "the reader outlived the hang-up");
}

#[test]
fn sigterm_to_the_writer_alone_leaves_a_reader_that_exits_1_by_itself() {
    let (demo, reader) = start_endless_bulk();
    let pgid = demo.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), Signal::SIGTERM).unwrap();
    let out = demo.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32));
    let reader_pid = nix::unistd::Pid::from_raw(reader);
    assert_eq!(
        reap_orphans_with_status(pgid),
        vec![(reader, nix::sys::wait::WaitStatus::Exited(reader_pid, 1))]
    );
    assert!(
        out.stderr.contains("the writer closed the pipe") && out.stderr.contains("it died"),
        "{}",
        out.stderr
    );
}

#[test]
fn sigterm_to_the_reader_alone_makes_the_writer_exit_1() {
    let (demo, reader) = start_endless_bulk();
    wait_until_asleep_in(demo.pid(), "pipe_write");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGTERM).unwrap();
    demo.finish()
        .assert_exit_code(1)
        .assert_stderr_contains("the reader is gone")
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGTERM"));
}

/// Starts a ping run too long to finish during the test, with the echo side's pid.
fn start_endless_ping() -> (Demo, i32) {
    let mut demo = Demo::start(DEMO, &["--ping", "100000000", "--size", "64"]);
    let line = demo.wait_for_line("round trips of 64 bytes with reader ");
    let reader = number_after(&line, "with reader ") as i32;
    (demo, reader)
}

#[test]
fn ping_writer_notices_a_killed_echo_side() {
    let (demo, reader) = start_endless_ping();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGKILL).unwrap();
    demo.finish()
        .assert_exit_code(1)
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGKILL"));
}

#[test]
fn ping_echo_side_notices_a_killed_writer() {
    let (demo, reader) = start_endless_ping();
    let pgid = demo.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
    let reader_pid = nix::unistd::Pid::from_raw(reader);
    assert_eq!(
        reap_orphans_with_status(pgid),
        vec![(reader, nix::sys::wait::WaitStatus::Exited(reader_pid, 1))]
    );
    assert!(out.stderr.contains("it died"), "{}", out.stderr);
}

#[test]
fn help_into_a_closed_pipe_exits_0() {
    prepare_test_process();
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let mut child = Command::new(demo_bin(DEMO))
        .arg("--help")
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Starts pipe-demo with `args`, takes the child's pid from the first line containing
/// `pid_after`, stops the parent (it sends no more, so the child falls asleep on the
/// empty pipe), then SIGKILLs the parent. Asserts that the orphaned child exits by
/// itself with status 1 and says the other side died; returns what was printed.
fn kill_the_parent_while_its_child_waits_on_an_empty_pipe(
    args: &[&str],
    pid_after: &str,
) -> Finished {
    let mut demo = Demo::start(DEMO, args);
    let line = demo.wait_for_line(pid_after);
    let child = number_after(&line, pid_after) as i32;
    let parent = nix::unistd::Pid::from_raw(demo.pid());
    nix::sys::signal::kill(parent, Signal::SIGSTOP).unwrap();
    wait_until_asleep_in(child, "pipe_read");
    nix::sys::signal::kill(parent, Signal::SIGKILL).unwrap();
    let out = demo.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
    let child_pid = nix::unistd::Pid::from_raw(child);
    assert_eq!(
        reap_orphans_with_status(out.pid),
        vec![(child, nix::sys::wait::WaitStatus::Exited(child_pid, 1))],
        "the child must exit by itself, with status 1, not take its parent's death for \
         a clean EOF: {}",
        out.stderr
    );
    assert!(out.stderr.contains("died"), "{}", out.stderr);
    out
}

#[test]
fn duplex_child_tells_its_parents_death_from_its_eof() {
    // Enough requests that the parent is still asking when it is stopped.
    let mut args = vec!["duplex"];
    args.extend(std::iter::repeat_n("m", 30_000));
    kill_the_parent_while_its_child_waits_on_an_empty_pipe(&args, "forked the child, pid ");
}

#[test]
fn oneway_reader_tells_its_writers_death_from_the_end_of_act_1() {
    let args = vec!["m"; 30_000];
    let out = kill_the_parent_while_its_child_waits_on_an_empty_pipe(
        &args,
        "fork(2) made the reader, pid ",
    );
    assert!(
        !out.stdout.contains("came in the order sent"),
        "a dead writer's EOF is not the end of its messages:\n{}",
        out.stdout
    );
}

#[test]
fn bulk_reader_asleep_on_an_empty_pipe_notices_its_writer_was_killed() {
    let out = kill_the_parent_while_its_child_waits_on_an_empty_pipe(
        &["--count", "100000000", "--size", "65536"],
        "to reader ",
    );
    assert!(
        out.stderr.contains("the writer closed the pipe"),
        "{}",
        out.stderr
    );
}

#[test]
fn oneway_writer_asleep_on_a_full_pipe_notices_its_reader_was_killed() {
    // 100 lines of 1000 bytes: more than the pipe holds, so with the reader stopped the
    // writer of act 1 falls asleep on the full pipe.
    let line = "x".repeat(1000);
    let args = vec![line.as_str(); 100];
    let mut demo = Demo::start(DEMO, &args);
    let forked = demo.wait_for_line("fork(2) made the reader, pid ");
    let reader = number_after(&forked, "made the reader, pid ") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGSTOP).unwrap();
    wait_until_asleep_in(demo.pid(), "pipe_write");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the reader is gone")
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGKILL"));
}

// --- the big flavour (issue 12): F_SETPIPE_SZ.

/// Starts `pipe-demo big --hold` with a stdin the test holds: the reader drains only
/// once the returned writer is dropped (EOF) or written a line. Returns it once the
/// writer is asleep on the full 1 MiB pipe, with the reader's pid.
fn start_held_big() -> (Demo, i32, std::io::PipeWriter) {
    // std::io::pipe: close-on-exec, so no other test's child inherits the write end.
    let (stdin, hold) = std::io::pipe().expect("pipe");
    let mut demo = Demo::start_with_stdio(DEMO, &["big", "--hold"], Stdio::from(stdin));
    let forked = demo.wait_for_line("fork(2) made the reader, pid ");
    let reader = number_after(&forked, "made the reader, pid ") as i32;
    demo.wait_for_line("--hold: press Enter");
    wait_until_asleep_in(demo.pid(), "pipe_write");
    (demo, reader, hold)
}

#[test]
fn big_grows_the_pipe_to_1_mib_and_the_writer_sleeps_only_after_1_mib() {
    let out = run(DEMO, &["big"]);
    out.assert_success();
    let new = out.lines_with("act 1: a new pipe: F_GETPIPE_SZ says ")[0];
    let default = number_after(new, "F_GETPIPE_SZ says ");
    out.assert_stdout_contains("/proc/sys/fs/pipe-max-size: ")
        .assert_stdout_contains("/proc/sys/fs/pipe-user-pages-soft: ");
    // Above pipe-max-size: EPERM without CAP_SYS_RESOURCE, granted with it.
    if out.stdout.contains("and it has CAP_SYS_RESOURCE") {
        out.assert_stdout_contains("(above pipe-max-size): granted");
    } else {
        out.assert_stdout_contains("(above pipe-max-size): EPERM");
    }
    out.assert_stdout_contains(
        "F_SETPIPE_SZ 1048576 returned 1048576; F_GETPIPE_SZ reads back 1048576",
    );
    // O_NONBLOCK fills 1 MiB, sixteen times a new pipe (with 4 KiB pages), before EAGAIN.
    out.assert_stdout_contains("wrote 1048576 bytes with O_NONBLOCK before EAGAIN");
    assert!(default < 1048576, "a new pipe is smaller: {new}");
    let asleep = out.lines_with("is asleep in the kernel (/proc/")[0];
    assert!(asleep.contains("pipe_write"), "{asleep}");
    for role in ["writer", "reader"] {
        let summary = out.summary(role);
        assert!(summary.ok);
        assert_eq!(
            summary.num("bytes"),
            (1048576 + 4096) as f64,
            "{}",
            summary.line
        );
    }
    assert_group_gone(out.pid);
}

#[test]
fn big_held_writer_is_seen_asleep_by_the_kernel_until_the_reader_drains() {
    let (demo, reader, hold) = start_held_big();
    // The kernel's view, from outside: the writer sleeps in the pipe's write, and
    // the reader, held on its stdin, has not read a byte.
    let (state, wchan) = proc_state(demo.pid()).expect("the writer");
    assert!(
        state == 'S' && wchan.contains("pipe_write"),
        "{state} {wchan}"
    );
    assert!(process_exists(reader));
    drop(hold); // EOF on the reader's stdin: it drains
    let out = demo.finish();
    out.assert_success()
        .assert_stdout_contains("read 1052672 bytes")
        .assert_stdout_contains("EOF: the writer closed its end");
    assert_group_gone(out.pid);
}

#[test]
fn ctrl_c_while_the_big_pipe_writer_sleeps_ends_both() {
    let (demo, reader, _hold) = start_held_big();
    demo.signal_group(Signal::SIGINT);
    let out = demo.finish();
    out.assert_killed_by(Signal::SIGINT);
    assert!(!process_exists(reader), "the reader outlived Ctrl+C");
}

#[test]
fn big_writer_asleep_on_1_mib_notices_its_killed_reader() {
    let (demo, reader, _hold) = start_held_big();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the reader is gone")
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGKILL"));
}

#[test]
fn big_reader_notices_its_killed_writer_once_it_drains() {
    let (demo, reader, hold) = start_held_big();
    let pgid = demo.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL).unwrap();
    drop(hold);
    let out = demo.finish();
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
    let reader_pid = nix::unistd::Pid::from_raw(reader);
    assert_eq!(
        reap_orphans_with_status(pgid),
        vec![(reader, nix::sys::wait::WaitStatus::Exited(reader_pid, 1))]
    );
    assert!(
        out.stderr
            .contains(&format!("the writer, pid {pgid}, died")),
        "{}",
        out.stderr
    );
}

#[test]
fn big_bad_usage_exits_2() {
    for (args, needle) in [
        (vec!["big", "hello"], "the big flavour takes no messages"),
        (
            vec!["big", "--count", "3", "--size", "8"],
            "the big flavour takes no messages",
        ),
        (
            vec!["big", "--ping", "3"],
            "the big flavour takes no messages",
        ),
        (vec!["--hold"], "--hold goes with the big flavour only"),
        (
            vec!["duplex", "--hold"],
            "--hold goes with the big flavour only",
        ),
    ] {
        let out = run(DEMO, &args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}
