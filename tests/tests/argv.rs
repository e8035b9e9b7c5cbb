//! Any argv, in every demo: one line and exit 2, or the help and exit 0; never a
//! panic (DESIGN §4, §5). One table over all seven demos, so a demo added later is
//! checked the same way by adding its name.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, ExitStatus, Stdio};

use ipc_tests::{demo_bin, wait_until};

const DEMOS: [&str; 7] = [
    "pipe-demo",
    "fifo-demo",
    "msgq-demo",
    "shm-demo",
    "sem-demo",
    "signal-demo",
    "socket-demo",
];

/// Runs `demo ARGS` with `stdout` as its standard output, to the end (killed past
/// the deadline), and returns its status and stderr.
fn run_raw(demo: &str, args: &[OsString], stdout: Stdio) -> (ExitStatus, String) {
    ipc_tests::prepare_test_process();
    let mut child = Command::new(demo_bin(demo))
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {demo}: {e}"));
    let mut stderr = child.stderr.take().unwrap();
    let text = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = exit_status(child, &format!("{demo} {args:?}"));
    (status, text.join().unwrap())
}

/// Waits for `child` to exit; past the deadline, kills it and fails: every run here
/// should end at once.
fn exit_status(mut child: std::process::Child, what: &str) -> ExitStatus {
    let mut status = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(&format!("{what} exits"), || {
            status = child.try_wait().unwrap();
            status.is_some()
        })
    }));
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not exit: it should have ended at once");
    }
    status.unwrap()
}

/// What is wrong with one run, if anything: a panic, or an exit code not `want`.
fn problem(demo: &str, args: &[OsString], want: i32, run: (ExitStatus, String)) -> Option<String> {
    let (status, stderr) = run;
    if stderr.contains("panicked") || stderr.contains("stack backtrace") {
        return Some(format!("{demo} {args:?} panicked:\n{stderr}"));
    }
    if status.code() != Some(want) {
        return Some(format!(
            "{demo} {args:?}: {status}, not exit {want}\n{stderr}"
        ));
    }
    if want == 2 && stderr.trim().is_empty() {
        return Some(format!("{demo} {args:?}: exit 2 without a word on stderr"));
    }
    None
}

/// Fails with every demo's problem at once, so one run shows all that is left.
fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Bad usage: exit 2, one line saying what is wrong (then the usage), no panic.
fn bad_usage(demo: &str, args: &[OsString]) -> Option<String> {
    problem(demo, args, 2, run_raw(demo, args, Stdio::null()))
}

#[test]
fn a_non_utf8_argument_is_bad_usage_not_a_panic() {
    let bad = [OsString::from_vec(vec![0xff])];
    assert_none(DEMOS.iter().filter_map(|d| bad_usage(d, &bad)).collect());
}

#[test]
fn a_number_too_big_for_its_type_is_bad_usage() {
    let args = ["--ping", "99999999999999999999999999"].map(OsString::from);
    assert_none(DEMOS.iter().filter_map(|d| bad_usage(d, &args)).collect());
}

#[test]
fn a_realtime_signal_offset_that_overflows_is_bad_usage() {
    let args = ["writer", "--pid", "999999", "RTMIN+2147483647"].map(OsString::from);
    assert_none(bad_usage("signal-demo", &args).into_iter().collect());
}

#[test]
fn help_into_a_closed_pipe_exits_0_without_a_panic() {
    let mut problems = Vec::new();
    for demo in DEMOS {
        // A pipe whose read end is already closed: every write gets EPIPE (Rust
        // ignores SIGPIPE), as with `demo --help | true` once `true` has exited.
        let (read_end, write_end): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        drop(read_end);
        let args = [OsString::from("--help")];
        let run = run_raw(demo, &args, Stdio::from(write_end));
        problems.extend(problem(demo, &args, 0, run));
    }
    assert_none(problems);
}

/// Runs `demo ARGS` with its standard error a pipe whose read end is closed (as in
/// `demo 2>&1 | true`, or a terminal gone): writing the error gets EPIPE, and a
/// demo that `eprintln!`s would panic there (exit 101) instead of exiting as it
/// means to. Returns the exit status.
fn status_with_stderr_closed(demo: &str, args: &[&str]) -> ExitStatus {
    ipc_tests::prepare_test_process();
    let (read_end, write_end): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let child = Command::new(demo_bin(demo))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write_end))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {demo}: {e}"));
    exit_status(child, &format!("{demo} {args:?} (stderr closed)"))
}

#[test]
fn bad_usage_with_stderr_closed_still_exits_2() {
    let problems: Vec<String> = DEMOS
        .iter()
        .filter_map(|demo| {
            let status = status_with_stderr_closed(demo, &["--no-such-option"]);
            (status.code() != Some(2)).then(|| format!("{demo} --no-such-option: {status}"))
        })
        .collect();
    assert_none(problems);
}

#[test]
fn a_failure_with_stderr_closed_still_exits_1() {
    // Each: a writer with nothing to meet, a foreseeable failure (exit 1).
    let pid = std::process::id();
    let missing = format!("/tmp/ipc-tests-missing-{pid}/x");
    let name = format!("/ipc-tests-missing-{pid}");
    let runs: [(&str, Vec<&str>); 6] = [
        ("fifo-demo", vec!["writer", "--path", &missing, "hi"]),
        ("msgq-demo", vec!["writer", "--name", &name, "hi"]),
        ("shm-demo", vec!["writer", "--name", &name, "hi"]),
        ("sem-demo", vec!["writer", "--name", &name]),
        ("signal-demo", vec!["writer", "--pid", "2147483647"]),
        (
            "socket-demo",
            vec!["writer", "unix", "--path", &missing, "hi"],
        ),
    ];
    let problems: Vec<String> = runs
        .iter()
        .filter_map(|(demo, args)| {
            let status = status_with_stderr_closed(demo, args);
            (status.code() != Some(1)).then(|| format!("{demo} {args:?}: {status}"))
        })
        .collect();
    assert_none(problems);
}
