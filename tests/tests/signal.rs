//! End-to-end tests of signal-demo: the narrated default run (EINTR, stop and resume,
//! coalescing, real-time queueing, the child reaped), reader and writer as separate
//! processes, Ctrl+C / Ctrl+Z / fg with `kill` and with real keys in a terminal
//! (tmux), the ping workload, bad usage and a peer that dies; a run stopped and
//! continued, interrupted by Ctrl+C, or started outside any job-control shell (setsid).
//! Signals leave no kernel object behind; the leak check is that no process of a run is
//! left, alive or zombie.

use ipc_tests::*;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = "signal-demo";
/// A pid no process can have: above the kernel's largest pid_max (2^22).
const NO_SUCH_PID: &str = "2147483646";

fn send(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill {sig} {pid}: {e}"));
}

/// The state letter of `pid` (S asleep, T stopped...), '-' once it is gone.
fn state(pid: i32) -> char {
    proc_state(pid).map_or('-', |(s, _)| s)
}

/// Waits until some stdout line of `demo` contains every one of `parts`, whatever
/// lines came before or after (signals pending together are delivered lowest number
/// first, not in the order sent). Returns that line.
fn wait_for_line_with(demo: &Demo, parts: &[&str]) -> String {
    let mut found = None;
    let what = format!("a line with {parts:?}");
    wait_until(&what, || {
        found = demo
            .stdout_so_far()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string);
        found.is_some()
    });
    found.unwrap()
}

/// A demo started with `Command` rather than `Demo::start`, leading its own process
/// group. Like a `Demo`, if the test fails half-way the group is killed and waited for.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// Waits for a `Started` demo, reading its stdout from `stdout` and its stderr from
/// the child, and returns what `Demo::finish` would. Fails the test after the deadline.
fn finish_command(mut started: Started, mut stdout: impl Read + Send + 'static) -> Finished {
    let child = &mut started.0;
    let pid = child.id() as i32;
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut status = None;
    wait_until(&format!("pid {pid} exits"), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    // The output closes when the last process holding it (the reader too) is gone.
    wait_until("its output is closed", || {
        out.is_finished() && err.is_finished()
    });
    Finished {
        name: DEMO.to_string(),
        pid,
        status: status.unwrap(),
        stdout: out.join().expect("stdout thread"),
        stderr: err.join().expect("stderr thread"),
    }
}

/// A demo's child that outlives it comes to us (not to PID 1, which never reaps
/// here), so a test can see it. `Demo::start` does this too.
fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// Starts `signal-demo reader ARGS` and returns it with its pid, once it waits.
fn start_reader(args: &[&str], ready: &str) -> (Demo, i32) {
    let mut all = vec!["reader"];
    all.extend_from_slice(args);
    let mut reader = Demo::start(DEMO, &all);
    let line = reader.wait_for_line(ready);
    let pid = pid_of_role(&line, "reader").expect("a [reader PID] line");
    assert_eq!(pid, reader.pid());
    (reader, pid)
}

// ---- the default run --------------------------------------------------------------

#[test]
fn default_run_interrupts_a_blocked_read_and_the_work_resumes() {
    let out = run(DEMO, &[]);
    out.assert_success();
    let writer = out.pid_of("writer");

    // The writer saw the reader asleep in the pipe's read before it signalled.
    let asleep = out.line_index("it sleeps in the kernel; sending SIGUSR1");
    assert!(out.lines_with("/wchan says")[0].contains("pipe_read"));
    let eintr = out.line_index("read(2) returned EINTR");
    let eintr_line = out.lines_with("read(2) returned EINTR")[0];
    assert!(
        eintr_line.contains(&format!(
            "SIGUSR1 from pid {writer} (signal-demo) with kill(2)"
        )),
        "{eintr_line}"
    );
    let noted = out.line_index("I find SIGUSR1 in the handler's notes");
    let resumed = out.line_index(r#"read(2) resumed and returned "back to work" (12 bytes)"#);
    assert!(
        asleep < eintr && eintr < noted && noted < resumed,
        "{}",
        out.stdout
    );
}

#[test]
fn default_run_stops_the_reader_like_a_shell_job_and_resumes_it() {
    let out = run(DEMO, &[]);
    out.assert_success();
    let stopping = out.line_index("received SIGTSTP from pid");
    let stopped = out.line_index("waitpid: the reader was stopped by SIGTSTP");
    assert!(
        out.lines_with("was stopped by SIGTSTP")[0].contains("says state T"),
        "{}",
        out.stdout
    );
    let cont_sent = out.line_index("sending SIGCONT");
    let continued = out.line_index("waitpid(WCONTINUED): the reader runs again");
    let resumed = out.line_index("received SIGCONT from pid");
    let resumed_line = out.lines_with("received SIGCONT from pid")[0];
    assert!(
        resumed_line.contains("resumed after ") && resumed_line.contains(" µs stopped"),
        "{resumed_line}"
    );
    assert!(
        stopping < stopped && stopped < cont_sent && cont_sent < continued,
        "{}",
        out.stdout
    );
    assert!(cont_sent < resumed, "{}", out.stdout);
}

#[test]
fn standard_signals_coalesce_and_real_time_signals_queue_in_order() {
    let out = run(DEMO, &[]);
    out.assert_success();

    // As fast as possible: fewer, how many varies, so it is printed, not asserted.
    let ran = number_after(out.lines_with("for the 1000 SIGUSR1 sent")[0], "ran ");
    assert!((1..=1000).contains(&ran), "{}", out.stdout);
    println!("coalescing: the handler ran {ran} times for 1000 SIGUSR1 sent");

    // Blocked while the 1000 were sent: one pending bit, exactly one delivery.
    assert!(
        out.lines_with("ShdPnd")[0].contains("SIGUSR1's bit is set"),
        "{}",
        out.stdout
    );
    let blocked = out.lines_with("sent while it was blocked")[0];
    assert_eq!(number_after(blocked, "ran exactly "), 1, "{blocked}");

    // Real-time: every one, in order, with its value (the reader checks each).
    out.assert_stdout_contains(
        "all 1000 SIGRTMIN arrived, in order, each with its value: 0, 1, 2 ... 999",
    );
    out.assert_stdout_contains("queued 1000 SIGRTMIN");
}

#[test]
fn default_run_reaps_its_child_and_leaves_no_zombie() {
    let out = run(DEMO, &[]);
    out.assert_success(); // also: nothing of its process group left, not even a zombie
    let reader = out.pid_of("reader");
    assert_ne!(reader, out.pid);
    let reaped = out.lines_with(&format!("reaped reader {reader}"));
    assert_eq!(reaped.len(), 1, "{}", out.stdout);
    assert!(reaped[0].contains("exited with status 0"), "{}", reaped[0]);
    assert!(reaped[0].contains("no zombie left"), "{}", reaped[0]);
    assert!(out.line_index("done: exiting with status 0") < out.line_index("reaped reader"));
    assert!(!process_exists(reader));
}

#[test]
fn default_run_works_without_a_job_control_shell() {
    // Under `setsid` (like `ssh host cmd`, or a container's PID 1) the demo leads a
    // session of its own: no process of its group has a parent in another group of
    // that session, so the group is "orphaned" and the kernel throws away SIGTSTP sent
    // to it. Act 2 works anyway: the reader runs in a group of its own, whose parent,
    // the writer, is in the same session.
    become_subreaper();
    let mut setsid = Started(
        Command::new("setsid")
            .arg("-w")
            .arg(demo_bin(DEMO))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn setsid (util-linux)"),
    );
    let stdout = setsid.0.stdout.take().expect("stdout piped");
    let out = finish_command(setsid, stdout);
    // Not a group leader, setsid did not fork: it became the demo (exec), so out.pid
    // is the writer, whose group assert_success checks.
    assert_eq!(out.pid_of("writer"), out.pid, "{}", out.stdout);
    out.assert_success()
        .assert_stdout_contains("waitpid: the reader was stopped by SIGTSTP")
        .assert_stdout_contains("waitpid(WCONTINUED): the reader runs again");
    let reader = out.pid_of("reader");
    out.assert_stdout_contains(&format!("reaped reader {reader}: exited with status 0"));
    assert!(!process_exists(reader), "reader {reader} left behind");
}

#[test]
fn ctrl_c_during_the_default_run_reaches_the_reader_through_the_writer() {
    // The run takes milliseconds: no time to aim a signal at it. So the test holds
    // it: its stdout is a pipe of one page, filled before the demo starts, so the
    // writer's first line blocks in write(2), right after fork, until we read.
    become_subreaper();
    let (out_r, mut out_w) = std::io::pipe().expect("pipe");
    // SAFETY: fcntl F_SETPIPE_SZ on a pipe we own; it returns the size it set.
    let size = unsafe { libc::fcntl(out_w.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size > 0,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    out_w
        .write_all(&vec![b'\n'; size as usize])
        .expect("fill the pipe");
    let demo = Started(
        Command::new(demo_bin(DEMO))
            .stdin(Stdio::null())
            .stdout(out_w)
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn signal-demo"),
    );
    let writer = demo.0.id() as i32;
    wait_until_asleep_in(writer, "pipe_write");
    // The reader has left the writer's group: Ctrl+C, which a terminal sends to its
    // foreground group, reaches the writer only.
    let group: Vec<i32> = group_members(writer).iter().map(|m| m.0).collect();
    assert_eq!(
        group,
        vec![writer],
        "the reader should have a group of its own"
    );
    killpg(Pid::from_raw(writer), Signal::SIGINT).expect("killpg SIGINT");

    let mut out = finish_command(demo, out_r);
    out.stdout = out.stdout.trim_start_matches('\n').to_string(); // the filling
    // The reader may not have printed a line: it could be blocked on its first one.
    let reader = number_after(out.lines_with("forked the reader")[0], "pid ") as i32;
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains("interrupted by SIGINT from pid")
        // The writer passed it on, and reaped the reader.
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGINT"));
    assert!(!process_exists(reader), "reader {reader} left behind");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

// ---- reader and writer as two processes -------------------------------------------

#[test]
fn reader_reports_each_signal_a_separate_writer_sends() {
    let (reader, pid) = start_reader(&[], "waiting for signals");
    let pid_text = pid.to_string();
    let out = run(
        DEMO,
        &[
            "writer", "--pid", &pid_text, "USR1", "sigusr2", "WINCH", "RTMIN", "RTMIN+1",
            "SIGRTMIN",
        ],
    );
    out.assert_success();
    let writer = out.pid;
    for name in ["SIGUSR1", "SIGUSR2", "SIGWINCH"] {
        out.assert_stdout_contains(&format!("sent {name} to {pid} with kill(2)"));
    }
    out.assert_stdout_contains(&format!(
        "sent SIGRTMIN+1 to {pid} with sigqueue(3), value 4"
    ));

    // The kernel tells the reader who sent each one, and how (the writer may be
    // gone by then, so its command name is not checked).
    let from = format!("from pid {writer} (");
    for name in ["SIGUSR1", "SIGUSR2", "SIGWINCH"] {
        wait_for_line_with(
            &reader,
            &[&format!("received {name} "), &from, "with kill(2)"],
        );
    }
    let rtmin_3 = wait_for_line_with(
        &reader,
        &["received SIGRTMIN ", &from, "sigqueue(3), value 3"],
    );
    let rtmin_5 = wait_for_line_with(
        &reader,
        &["received SIGRTMIN ", &from, "sigqueue(3), value 5"],
    );
    wait_for_line_with(
        &reader,
        &["received SIGRTMIN+1 ", &from, "sigqueue(3), value 4"],
    );
    let seen = reader.stdout_so_far();
    assert!(
        seen.find(&rtmin_3) < seen.find(&rtmin_5),
        "two SIGRTMIN came out of order:\n{seen}"
    );

    reader.signal_group(Signal::SIGINT);
    let done = reader.finish();
    done.assert_killed_by(Signal::SIGINT);
    done.assert_stdout_contains("received SIGINT from pid")
        .assert_stdout_contains("exiting cleanly (7 signals received in all)");
}

#[test]
fn ctrl_c_or_sigterm_while_waiting_ends_the_reader_cleanly() {
    for (sig, name) in [(Signal::SIGINT, "SIGINT"), (Signal::SIGTERM, "SIGTERM")] {
        let (reader, pid) = start_reader(&[], "waiting for signals");
        wait_until_asleep_in(pid, "poll"); // blocked in ppoll(2)
        reader.signal_group(sig);
        let out = reader.finish();
        out.assert_killed_by(sig); // died of it, as the shell expects
        let line = out.lines_with(&format!("received {name} "));
        assert_eq!(line.len(), 1, "{}", out.stdout);
        assert!(line[0].contains("exiting cleanly"), "{}", line[0]);
        assert!(out.stderr.is_empty(), "{}", out.stderr);
    }
}

#[test]
fn sigtstp_stops_the_reader_and_sigcont_resumes_it() {
    let (mut reader, pid) = start_reader(&[], "waiting for signals");
    send(pid, Signal::SIGTSTP);
    reader.wait_for_line("received SIGTSTP from pid");
    wait_until("the reader is stopped (state T)", || state(pid) == 'T');

    send(pid, Signal::SIGCONT);
    let line = reader.wait_for_line("received SIGCONT");
    assert!(line.contains("resumed after"), "{line}");
    wait_until("the reader sleeps again (state S)", || state(pid) == 'S');

    // Stopped and resumed once more: the handler was put back after the first time.
    send(pid, Signal::SIGTSTP);
    wait_until("the reader is stopped again", || state(pid) == 'T');
    send(pid, Signal::SIGCONT);
    reader.wait_for_line("resumed after");

    reader.signal_group(Signal::SIGTERM);
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGTERM);
    assert_eq!(
        out.lines_with("received SIGTSTP").len(),
        2,
        "{}",
        out.stdout
    );
}

// ---- real keys in a real terminal -------------------------------------------------

/// A tmux server on a private socket running one interactive bash, driven with
/// send-keys and read with capture-pane. Dropped: the server is killed and its
/// processes reaped.
struct Tmux {
    /// The tmux binary (`find_tool`).
    tool: std::path::PathBuf,
    socket: String,
    /// tmux's directory for its socket (TMUX_TMPDIR), removed with all it holds.
    dir: ScratchDir,
    /// tmux's server, its bash, and the processes a test started there.
    pids: Vec<i32>,
}

/// A detached session "t" running bash with none of the machine's set-up: a known
/// prompt, no history file, a screen wide enough for the reader's longest line.
#[rustfmt::skip]
const NEW_SESSION: &[&str] = &[
    "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "250", "-y", "50",
    "env", "-i", "PATH=/usr/bin:/bin", "TERM=xterm", "PS1=$ ", "HISTFILE=/dev/null",
    "bash", "--norc", "--noprofile",
];

impl Tmux {
    /// None (the test is skipped) where tmux is not installed.
    fn start(tag: &str) -> Option<Tmux> {
        let tool = ipc_tests::find_tool("tmux", "tmux")?;
        // tmux's server detaches from its client: orphaned, it would go to PID 1,
        // which never reaps here. As a subreaper, we get it and reap it ourselves.
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        let mut tmux = Tmux {
            tool,
            socket: format!("signal-demo-{}-{tag}", std::process::id()),
            dir: ScratchDir::new("tmux"),
            pids: Vec::new(),
        };
        tmux.run(NEW_SESSION);
        let pids = tmux.run(&["display-message", "-p", "-t", "t", "#{pid} #{pane_pid}"]);
        tmux.pids = pids
            .split_whitespace()
            .map(|p| p.parse().expect("a pid from tmux"))
            .collect();
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.tool)
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("TMUX_TMPDIR", self.dir.path())
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.tool.display()));
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses keys: "C-z", "Enter"...
    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "t", keys]);
    }

    /// Types `text` and presses Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
        self.keys("Enter");
    }

    /// What the terminal shows, wrapped lines joined, history included.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
    }

    /// Waits until the screen shows `needle`; returns the screen.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {needle:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20)); // one tmux call per look
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new(&self.tool)
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .env("TMUX_TMPDIR", self.dir.path())
            .output();
        let me = std::process::id() as i32;
        for &pid in &self.pids {
            // Each ends (bash on the hangup, a job with it) and, orphaned, comes to us.
            wait_until(&format!("tmux's process {pid} is gone"), || {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return true;
                };
                let mut fields = stat.rsplit_once(')').map_or("", |s| s.1).split_whitespace();
                let (st, ppid) = (fields.next(), fields.next().and_then(|p| p.parse().ok()));
                if st == Some("Z") && ppid == Some(me) {
                    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
                }
                false
            });
        }
    }
}

#[test]
fn terminal_keys_stop_resume_and_end_the_reader() {
    let Some(mut tmux) = Tmux::start("keys") else {
        return;
    };
    let bash = tmux.pids[1];
    let demo = demo_bin(DEMO);
    tmux.type_line(&format!("'{}' reader", demo.display()));
    let screen = tmux.wait_for("waiting for signals");
    let pid = pid_of_role(&screen, "reader").expect("the reader's pid on screen");
    tmux.pids.push(pid);

    // Ctrl+Z: the terminal sends SIGTSTP; the reader says so and really stops, and
    // the shell sees its job stopped.
    tmux.keys("C-z");
    tmux.wait_for("received SIGTSTP from the kernel (the terminal: Ctrl+Z): stopping for real");
    wait_until("the reader is stopped (state T)", || state(pid) == 'T');
    tmux.wait_for("Stopped");

    // fg: the shell sends SIGCONT; the reader says it resumed and waits again.
    tmux.type_line("fg");
    let screen = tmux.wait_for("resumed after");
    assert!(
        screen.contains(&format!(
            "received SIGCONT from pid {bash} (bash) with kill(2): resumed"
        )),
        "{screen}"
    );
    wait_until("the reader sleeps again (state S)", || state(pid) == 'S');

    // Ctrl+C: SIGINT; the reader says so and dies of it, as the shell expects.
    tmux.keys("C-c");
    tmux.wait_for("received SIGINT from the kernel (the terminal: Ctrl+C): exiting cleanly");
    tmux.type_line("echo status=$?");
    tmux.wait_for("status=130"); // 128 + 2: killed by SIGINT
    assert_eq!(
        state(pid),
        '-',
        "the reader should be gone (bash reaped it)"
    );
}

// ---- the ping workload ------------------------------------------------------------

#[test]
fn ping_measures_the_signal_round_trip() {
    let out = run(DEMO, &["--ping", "500"]);
    out.assert_success();
    let writer = out.summary("writer");
    assert!(writer.ok, "{}", writer.line);
    assert_eq!(writer.num("messages"), 500.0);
    assert_eq!(writer.num("bytes"), 0.0);
    let (p50, p99) = (writer.num("rtt_p50_us"), writer.num("rtt_p99_us"));
    assert!(p50 > 0.0 && p50 <= p99, "{}", writer.line);
    assert_eq!(out.summary("reader").num("messages"), 500.0);
    assert!(out.lines_with("reaped reader")[0].contains("exited with status 0"));
    // The summary is the writer's last line (DESIGN §4): it reaps the reader first.
    let writer_lines = out.lines_with(&format!("[writer {}] ", out.pid));
    assert_eq!(
        writer_lines.last(),
        Some(&writer.line.as_str()),
        "{}",
        out.stdout
    );
}

#[test]
fn ping_takes_the_common_size_and_cpu_options() {
    // The benchmark runs every demo's ping with --size and --cpus.
    let out = run(DEMO, &["--ping", "100", "--size", "1000", "--cpus", "0,0"]);
    out.assert_success()
        .assert_stdout_contains("--size 1000: ignored, a signal carries no bytes");
    let writer = out.summary("writer");
    assert_eq!(writer.num("messages"), 100.0);
    assert_eq!(writer.num("bytes"), 0.0);
    assert!(writer.num("rtt_p50_us") <= writer.num("rtt_p99_us"));
}

#[test]
fn ping_between_a_separate_reader_and_writer() {
    let (reader, pid) = start_reader(&["--ping", "200"], "waiting for 200 pings");
    let out = run(
        DEMO,
        &["writer", "--pid", &pid.to_string(), "--ping", "200"],
    );
    out.assert_success();
    let summary = out.summary("writer");
    assert_eq!(summary.num("messages"), 200.0);
    assert!(summary.num("rtt_p50_us") <= summary.num("rtt_p99_us"));
    let done = reader.finish();
    done.assert_success();
    assert_eq!(done.summary("reader").num("messages"), 200.0);
    done.assert_stdout_contains(&format!("first ping from pid {} ", out.pid));
}

#[test]
fn ctrl_c_ends_a_reader_waiting_for_pings() {
    let (reader, pid) = start_reader(&["--ping", "5"], "waiting for 5 pings");
    wait_until_asleep_in(pid, "sigtimedwait");
    reader.signal_group(Signal::SIGINT);
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains("interrupted by SIGINT");
}

/// A ping too long to end during the test; returns it with the reader's pid.
fn start_endless_ping() -> (Demo, i32) {
    let mut demo = Demo::start(DEMO, &["--ping", "1000000"]);
    let line = demo.wait_for_line("round trips of SIGUSR1 with reader ");
    (demo, number_after(&line, "with reader ") as i32)
}

#[test]
fn a_ping_stopped_and_continued_goes_on() {
    // Ctrl+Z then fg: a process stopped while it waits in sigtimedwait(2) gets EINTR
    // once continued. That is a short wait, not an error. Each side is stopped while
    // it surely waits there: the reader for its first ping, the writer for an answer
    // from the stopped reader.
    let (reader, pid) = start_reader(&["--ping", "50"], "waiting for 50 pings");
    wait_until_asleep_in(pid, "sigtimedwait");
    reader.signal_group(Signal::SIGTSTP);
    wait_until("the reader is stopped (state T)", || state(pid) == 'T');

    let mut writer = Demo::start(DEMO, &["writer", "--pid", &pid.to_string(), "--ping", "50"]);
    writer.wait_for_line("round trips of SIGUSR1 with pid");
    wait_until_asleep_in(writer.pid(), "sigtimedwait");
    writer.signal_group(Signal::SIGSTOP);
    wait_until("the writer is stopped (state T)", || {
        state(writer.pid()) == 'T'
    });

    reader.signal_group(Signal::SIGCONT);
    writer.signal_group(Signal::SIGCONT);
    let out = writer.finish();
    out.assert_success();
    assert_eq!(out.summary("writer").num("messages"), 50.0);
    let done = reader.finish();
    done.assert_success();
    assert_eq!(done.summary("reader").num("messages"), 50.0);
}

#[test]
fn ctrl_z_and_fg_during_a_ping_then_ctrl_c() {
    let (demo, reader) = start_endless_ping();
    let writer = demo.pid();
    demo.signal_group(Signal::SIGTSTP); // Ctrl+Z: both stop
    wait_until("writer and reader are stopped", || {
        state(writer) == 'T' && state(reader) == 'T'
    });
    demo.signal_group(Signal::SIGCONT); // fg
    // Both ping on: each sleeps in sigtimedwait again (on EINTR they would have quit).
    wait_until_asleep_in(reader, "sigtimedwait");
    wait_until_asleep_in(writer, "sigtimedwait");
    demo.signal_group(Signal::SIGINT); // Ctrl+C
    let out = demo.finish();
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGINT"));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn ctrl_c_during_a_ping_ends_both_and_the_writer_reaps_the_reader() {
    let (demo, reader) = start_endless_ping();
    let writer = demo.pid();
    demo.signal_group(Signal::SIGINT);
    let out = demo.finish();
    // Reaped by its parent, not orphaned: nothing came to us to reap. (Checked before
    // assert_killed_by, which reaps such orphans itself.)
    assert_eq!(reap_orphans(writer), Vec::<i32>::new(), "{}", out.stdout);
    assert!(!process_exists(reader), "reader {reader} left behind");
    out.assert_killed_by(Signal::SIGINT);
    for role in ["writer", "reader"] {
        let said = out.lines_with(&format!("[{role} "));
        assert!(
            said.iter()
                .any(|l| l.contains("interrupted by SIGINT from pid")),
            "{}",
            out.stdout
        );
    }
    let reaped = out.lines_with(&format!("reaped reader {reader}: killed by SIGINT"));
    assert_eq!(reaped.len(), 1, "{}", out.stdout);
    assert!(reaped[0].contains("no zombie left"), "{}", reaped[0]);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn ping_writer_notices_a_killed_reader() {
    let (demo, reader) = start_endless_ping();
    send(reader, Signal::SIGKILL);
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!("the other side (pid {reader}) ended"))
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGKILL"));
}

#[test]
fn ping_reader_notices_a_killed_writer() {
    let (demo, reader) = start_endless_ping();
    let pgid = demo.pid();
    send(pgid, Signal::SIGKILL);
    let out = demo.finish();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(Signal::SIGKILL as i32)
    );
    // Orphaned, the reader notices (it was re-parented) and exits by itself.
    assert_eq!(
        reap_orphans(pgid),
        vec![reader],
        "the reader should exit by itself"
    );
    // It finds out from getppid() or from sigqueue's ESRCH, whichever comes first.
    assert!(
        out.stderr
            .contains(&format!("the other side (pid {pgid}) is gone")),
        "the reader's message is missing: {}",
        out.stderr
    );
}

// ---- bad usage and runtime errors -------------------------------------------------

#[test]
fn bad_usage_exits_2_and_names_the_problem() {
    for (args, needle) in [
        (
            &["writer", "--pid", NO_SUCH_PID, "NOPE"][..],
            "NOPE: not a signal name",
        ),
        (
            &["writer", "--pid", NO_SUCH_PID, "RTMIN+99"],
            "out of range",
        ),
        (&["writer", "--pid", "12ab"], "--pid 12ab: not a process id"),
        (&["writer", "--pid", "0"], "at least 1"),
        (&["writer", "--pid"], "--pid needs a value"),
        (&["writer", "USR1"], "needs --pid"),
        (&["--bogus"], "unknown option --bogus"),
        (&["reader", "--frobnicate"], "unknown option --frobnicate"),
        (&["reader", "--pid", "5"], "--pid is for the writer"),
        (&["hello"], "unexpected \"hello\""),
        (&["--count", "3", "--size", "10"], "no bulk workload"),
        (&["--size", "10"], "--size and --cpus go with --ping"),
        (&["--ping", "3", "--size", "0"], "--size 0"),
        (&["--ping", "3", "--cpus", "0"], "expected WRITER,READER"),
        (
            &["--ping", "3", "--cpus", "0,4096"],
            "CPU numbers go from 0",
        ),
        (&["reader", "--ping", "3", "--cpus", "0,0"], "use taskset"),
        (&["--ping", "0"], "--ping 0"),
        (&["--ping", "many"], "--ping many"),
        (
            &["writer", "--pid", NO_SUCH_PID, "--ping", "3", "USR1"],
            "no SIGNAL",
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
fn bad_usage_sends_nothing() {
    let (reader, pid) = start_reader(&[], "waiting for signals");
    let pid_text = pid.to_string();
    // USR1 is valid, NOPE is not: the whole line is refused before anything is sent.
    run(DEMO, &["writer", "--pid", &pid_text, "USR1", "NOPE"]).assert_exit_code(2);
    run(DEMO, &["writer", "--pid", &pid_text, "USR2"]).assert_success();
    // A SIGUSR1 sent before this SIGUSR2 would have been reported no later than it.
    wait_for_line_with(&reader, &["received SIGUSR2 "]);
    reader.signal_group(Signal::SIGINT);
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGINT);
    assert!(
        out.lines_with("received SIGUSR1").is_empty(),
        "{}",
        out.stdout
    );
}

#[test]
fn writer_to_a_pid_that_does_not_exist_fails_clearly() {
    for args in [
        &["writer", "--pid", NO_SUCH_PID][..],
        &["writer", "--pid", NO_SUCH_PID, "RTMIN"],
        &["writer", "--pid", NO_SUCH_PID, "--ping", "3"],
    ] {
        let out = run(DEMO, args);
        out.assert_exit_code(1)
            .assert_stderr_contains(&format!("no process {NO_SUCH_PID}"))
            .assert_stderr_contains("ESRCH (no such process)")
            .assert_stderr_contains("signal-demo reader");
    }
}

#[test]
fn help_prints_the_usage() {
    let out = run(DEMO, &["--help"]);
    out.assert_success()
        .assert_stdout_contains("usage: signal-demo")
        .assert_stdout_contains("writer --pid PID");
}

// ---- stops longer than the patience, SIGHUP, a peer killed, argv -----------------

/// How many times `pid` went to sleep (voluntary context switches): a ping side
/// sleeps once a round, so this grows while the ping makes progress. 0 once gone.
fn sleeps_of(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Longer than a ping side's patience (10 s of silence). The hold itself is what
/// these tests are about: a Ctrl+Z (or SIGSTOP) longer than that, then `fg`.
const LONGER_THAN_PATIENCE: Duration = Duration::from_secs(11);

/// Waits until `pid`, a ping side, has slept `rounds` more times; fails at once if
/// it ended (gone, or a zombie) meanwhile.
fn wait_for_progress(demo: &Demo, pid: i32, rounds: u64) {
    let before = sleeps_of(pid);
    wait_until(&format!("pid {pid} pings {rounds} more rounds"), || {
        let st = state(pid);
        assert!(
            st != '-' && st != 'Z',
            "pid {pid} ended instead of going on: {}",
            demo.stdout_so_far()
        );
        sleeps_of(pid) > before + rounds
    });
}

#[test]
fn a_ping_stopped_longer_than_its_patience_goes_on_after_fg() {
    let (demo, reader) = start_endless_ping();
    let writer = demo.pid();
    demo.signal_group(Signal::SIGTSTP); // Ctrl+Z: both stop
    wait_until("writer and reader are stopped", || {
        state(writer) == 'T' && state(reader) == 'T'
    });
    std::thread::sleep(LONGER_THAN_PATIENCE);
    demo.signal_group(Signal::SIGCONT); // fg
    wait_for_progress(&demo, reader, 1000);
    demo.signal_group(Signal::SIGINT);
    let out = demo.finish();
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGINT"));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn a_ping_writer_waits_for_a_reader_stopped_longer_than_its_patience() {
    let (mut reader, pid) = start_reader(&["--ping", "1000000"], "waiting for 1000000 pings");
    let writer = Demo::start(
        DEMO,
        &["writer", "--pid", &pid.to_string(), "--ping", "1000000"],
    );
    reader.wait_for_line("first ping from");
    reader.signal_group(Signal::SIGSTOP); // the reader's terminal only
    wait_until("the reader is stopped (state T)", || state(pid) == 'T');
    std::thread::sleep(LONGER_THAN_PATIENCE);
    let st = state(writer.pid());
    assert!(
        st != '-' && st != 'Z',
        "the writer gave up on a stopped reader: {}",
        writer.stdout_so_far()
    );
    reader.signal_group(Signal::SIGCONT);
    wait_for_progress(&writer, writer.pid(), 1000);
    // Ctrl+C on the writer: the reader then finds it gone and says so.
    writer.signal_group(Signal::SIGINT);
    let w = writer.pid();
    writer.finish().assert_killed_by(Signal::SIGINT);
    reader
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("the other side (pid {w})"));
}

#[test]
fn sighup_during_a_ping_ends_both_and_the_writer_reaps_the_reader() {
    let (demo, reader) = start_endless_ping();
    let writer = demo.pid();
    demo.signal_group(Signal::SIGHUP); // the terminal closed
    let out = demo.finish();
    assert_eq!(reap_orphans(writer), Vec::<i32>::new(), "{}", out.stdout);
    assert!(!process_exists(reader), "reader {reader} left behind");
    out.assert_killed_by(Signal::SIGHUP)
        .assert_stdout_contains("interrupted by SIGHUP")
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGHUP"));
}

#[test]
fn sighup_ends_a_reader_waiting_for_pings_cleanly() {
    let (reader, pid) = start_reader(&["--ping", "5"], "waiting for 5 pings");
    wait_until_asleep_in(pid, "sigtimedwait");
    reader.signal_group(Signal::SIGHUP);
    reader
        .finish()
        .assert_killed_by(Signal::SIGHUP)
        .assert_stdout_contains("interrupted by SIGHUP");
}

#[test]
fn sighup_ends_the_signal_reader_cleanly() {
    let (reader, pid) = start_reader(&[], "waiting for signals");
    wait_until_asleep_in(pid, "poll"); // blocked in ppoll(2)
    reader.signal_group(Signal::SIGHUP);
    reader
        .finish()
        .assert_killed_by(Signal::SIGHUP)
        .assert_stdout_contains("received SIGHUP");
}

#[test]
fn a_separate_ping_writer_notices_its_reader_killed() {
    let (mut reader, pid) = start_reader(&["--ping", "1000000"], "waiting for 1000000 pings");
    let writer = Demo::start(
        DEMO,
        &["writer", "--pid", &pid.to_string(), "--ping", "1000000"],
    );
    reader.wait_for_line("first ping from");
    // Not reaped until reader.finish(): a zombie, which kill(pid, 0) still finds.
    reader.signal_group(Signal::SIGKILL);
    writer
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("the other side (pid {pid})"));
    reader.finish().assert_killed_by(Signal::SIGKILL);
}

#[test]
fn a_separate_ping_reader_notices_its_writer_killed() {
    let (mut reader, pid) = start_reader(&["--ping", "1000000"], "waiting for 1000000 pings");
    let writer = Demo::start(
        DEMO,
        &["writer", "--pid", &pid.to_string(), "--ping", "1000000"],
    );
    let w = writer.pid();
    reader.wait_for_line("first ping from");
    writer.signal_group(Signal::SIGKILL); // a zombie until writer.finish()
    reader
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("the other side (pid {w})"));
    writer.finish().assert_killed_by(Signal::SIGKILL);
}

#[test]
fn argv_that_used_to_panic_is_bad_usage_or_help() {
    for sig in ["RTMIN+2147483647", "RTMAX-2147483647", "RTMAX-2147483648"] {
        let out = run(DEMO, &["writer", "--pid", NO_SUCH_PID, sig]);
        out.assert_exit_code(2)
            .assert_stderr_contains(&format!("{sig}: "))
            .assert_stderr_contains("usage:");
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    // --help into a pipe nobody reads: EPIPE, which is no reason to panic.
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    drop(read_end);
    let out = Command::new(demo_bin(DEMO))
        .arg("--help")
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .expect("run signal-demo --help");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not UTF-8: one line and the usage, exit 2.
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(demo_bin(DEMO))
        .arg(std::ffi::OsStr::from_bytes(b"\xff"))
        .output()
        .expect("run signal-demo");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not valid UTF-8") && err.contains("usage:"),
        "{err}"
    );
}

/// The default run, held: its stdout is a pipe of one page, filled beforehand, so the
/// writer's first line after fork blocks in write(2) until the test reads. Returns
/// it with the read end, the writer's pid and the reader's (its only child).
fn start_held_default_run() -> (Started, std::io::PipeReader, i32, i32) {
    start_held_run(&[])
}

/// `start_held_default_run` for the run of a flavour: `signal-demo ARGS`.
fn start_held_run(args: &[&str]) -> (Started, std::io::PipeReader, i32, i32) {
    become_subreaper();
    let (out_r, mut out_w) = std::io::pipe().expect("pipe");
    // SAFETY: fcntl F_SETPIPE_SZ on a pipe we own; it returns the size it set.
    let size = unsafe { libc::fcntl(out_w.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size > 0,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    out_w
        .write_all(&vec![b'\n'; size as usize])
        .expect("fill the pipe");
    let demo = Started(
        Command::new(demo_bin(DEMO))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out_w)
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn signal-demo"),
    );
    let writer = demo.0.id() as i32;
    wait_until_asleep_in(writer, "pipe_write");
    let children = format!("/proc/{writer}/task/{writer}/children");
    let reader = std::fs::read_to_string(&children)
        .expect(&children)
        .trim()
        .parse()
        .expect("one child, the reader");
    (demo, out_r, writer, reader)
}

#[test]
fn default_run_writer_notices_its_reader_killed() {
    let (demo, out_r, writer, reader) = start_held_default_run();
    send(reader, Signal::SIGKILL);
    let out = finish_command(demo, out_r);
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!("the reader (pid {reader})"))
        .assert_stderr_contains("killed by SIGKILL");
    assert!(!process_exists(reader), "reader {reader} left behind");
    assert_eq!(reap_orphans(writer), Vec::<i32>::new());
}

#[test]
fn default_run_reader_notices_its_writer_killed() {
    let (demo, out_r, writer, reader) = start_held_default_run();
    send(writer, Signal::SIGKILL);
    let out = finish_command(demo, out_r);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(Signal::SIGKILL as i32)
    );
    // Orphaned, it came to us: it must have ended by itself, with status 1.
    let ended = reap_orphans_with_status(reader);
    assert_eq!(
        ended,
        vec![(
            reader,
            nix::sys::wait::WaitStatus::Exited(Pid::from_raw(reader), 1)
        )],
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("the writer (pid {writer})")),
        "{}",
        out.stderr
    );
}

#[test]
fn sighup_during_the_default_run_ends_both_and_the_writer_reaps_the_reader() {
    let (demo, out_r, writer, reader) = start_held_default_run();
    killpg(Pid::from_raw(writer), Signal::SIGHUP).expect("killpg SIGHUP");
    let out = finish_command(demo, out_r);
    out.assert_killed_by(Signal::SIGHUP)
        .assert_stdout_contains("interrupted by SIGHUP")
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGHUP"));
    assert!(!process_exists(reader), "reader {reader} left behind");
}

#[test]
fn a_ping_started_with_sighup_ignored_keeps_it_ignored() {
    // As under nohup: SIGHUP ignored from the start. The ping must not take it from
    // its waits (a blocked signal is queued even when ignored) and stop.
    let script = format!(
        "trap '' HUP; exec '{}' --ping 1000000",
        demo_bin(DEMO).display()
    );
    let mut demo = Started(
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn sh"),
    );
    let stdout = demo.0.stdout.take().expect("stdout piped");
    let writer = demo.0.id() as i32; // sh, then (exec) the demo
    let children = format!("/proc/{writer}/task/{writer}/children");
    let mut reader = 0;
    wait_until("the ping's writer has forked its reader", || {
        let comm = std::fs::read_to_string(format!("/proc/{writer}/comm")).unwrap_or_default();
        reader = std::fs::read_to_string(&children)
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        comm.trim() == DEMO && reader > 0
    });
    killpg(Pid::from_raw(writer), Signal::SIGHUP).expect("killpg SIGHUP");
    for pid in [reader, writer] {
        let before = sleeps_of(pid);
        wait_until(&format!("pid {pid} pings on after SIGHUP"), || {
            assert!(
                !matches!(state(pid), '-' | 'Z'),
                "pid {pid} ended on SIGHUP"
            );
            sleeps_of(pid) > before + 1000
        });
    }
    killpg(Pid::from_raw(writer), Signal::SIGINT).expect("killpg SIGINT");
    let out = finish_command(demo, stdout);
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGINT"));
}

#[test]
fn sigcont_after_sigstop_does_not_claim_the_reader_was_not_stopped() {
    // SIGSTOP cannot be caught: the reader cannot know it was stopped, so it must
    // not say it was not.
    let (reader, pid) = start_reader(&[], "waiting for signals");
    reader.signal_group(Signal::SIGSTOP);
    wait_until("the reader is stopped (state T)", || state(pid) == 'T');
    reader.signal_group(Signal::SIGCONT);
    let line = wait_for_line_with(&reader, &["received SIGCONT "]);
    assert!(!line.contains("I was not stopped"), "{line}");
    assert!(line.contains("cannot tell"), "{line}");
    reader.signal_group(Signal::SIGTERM);
    reader.finish().assert_killed_by(Signal::SIGTERM);
}

/// The signal calls a program copies, as they appear in code (`kill(pid, …)`, not
/// the narration's `kill(2)`): the binary half must reach each through the library.
const SIGNAL_CALLS: [&str; 15] = [
    "kill(",
    "syscall(",   // pidfd_open, pidfd_send_signal
    "SignalFd::", // nix's signalfd
    "raise(",
    "sigaction(",
    "sigqueue(",
    "sigtimedwait(",
    "ppoll(",
    "waitpid(",
    "thread_block(",
    "thread_unblock(",
    "thread_swap_mask(",
    "thread_set_mask(",
    "unistd::fork",
    "libc::sig",
];

#[test]
fn the_narrated_binary_makes_every_signal_call_through_the_library() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../signal-demo/src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let library: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| format!("{}.rs", m.trim_end_matches(';')))
        .collect();
    assert!(
        library.len() >= 3,
        "lib.rs declares its modules: {library:?}"
    );
    let mut offences = Vec::new();
    for entry in std::fs::read_dir(&src).expect("signal-demo/src") {
        let path = entry.expect("dir entry").path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if file == "lib.rs" || library.contains(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for call in SIGNAL_CALLS {
                for (at, _) in code.match_indices(call) {
                    let before = &code[..at];
                    let next = code[at + call.len()..].chars().next().unwrap_or(' ');
                    // `send::kill(`, `catch::wait(`... are the library; `kill(2)` and
                    // `waitpid(WUNTRACED)` in a sentence are not calls.
                    let through_library = ["send::", "pending::", "catch::", "child::"]
                        .iter()
                        .any(|m| before.ends_with(m));
                    let a_call = call.ends_with("::") || call.ends_with("::sig") || {
                        !(next.is_ascii_digit() || next.is_ascii_uppercase())
                    };
                    if a_call && !through_library {
                        offences.push(format!("{file}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "signal calls outside the library: {offences:#?}"
    );
}

// ---- signalfd: signals read as data ---------------------------------------------------

/// Bit N-1 of a /proc mask for signal N.
fn bit(signo: i32) -> u64 {
    1 << (signo - 1)
}

/// A hex mask field of /proc/PID/status (SigBlk, SigCgt...).
fn status_mask(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    u64::from_str_radix(hex.trim(), 16).expect("hex mask")
}

/// The fds of `pid` whose /proc/PID/fd link is `target` (`anon_inode:[signalfd]`).
fn fds_to(pid: i32, target: &str) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            if link.to_str()? != target {
                return None;
            }
            e.file_name().to_str()?.parse().ok()
        })
        .collect()
}

fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

#[test]
fn signalfd_run_reads_each_signal_as_data_beside_a_pipe() {
    let out = run(DEMO, &["signalfd"]);
    out.assert_success();
    let (writer, reader) = (out.pid_of("writer"), out.pid_of("reader"));
    let from_writer = format!("ssi_pid {writer} (signal-demo)");

    // The kernel's side, read by the writer while the reader polled: the fd's mask
    // is exactly the reader's set, which is blocked and has no handler.
    let mask_line = out.lines_with("sigmask")[0];
    let hex = mask_line.rsplit(' ').next().unwrap();
    let mask = u64::from_str_radix(hex, 16).expect("sigmask hex");
    let set = [
        libc::SIGUSR1,
        libc::SIGUSR2,
        sigrtmin(),
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
    ];
    assert_eq!(
        mask,
        set.iter().map(|&s| bit(s)).sum::<u64>(),
        "{mask_line}"
    );
    assert!(mask_line.contains("anon_inode:[signalfd]"), "{mask_line}");
    out.assert_stdout_contains("has all of them blocked")
        .assert_stdout_contains("has none of them: no handler");

    // Each signal is a signalfd_siginfo: who sent it and how, the value too.
    let line = |i: usize| out.stdout.lines().nth(i).unwrap().to_string();
    let usr1 = out.line_index("ssi_signo 10 (SIGUSR1), ssi_code 0 SI_USER");
    assert!(line(usr1).contains(&from_writer), "{}", line(usr1));
    let rt = out.line_index(&format!(
        "ssi_signo {} (SIGRTMIN), ssi_code -1 SI_QUEUE",
        sigrtmin()
    ));
    assert!(
        line(rt).contains(&from_writer) && line(rt).ends_with("ssi_int 42"),
        "{}",
        line(rt)
    );
    let pipe = out.line_index("the pipe is readable; read(2) gave \"hello through the pipe\"");
    let term = out.line_index("ssi_signo 15 (SIGTERM)");
    // One order, step by step: each act waits for the reader's ack.
    assert!(out.line_index("act 1") < usr1 && usr1 < out.line_index("act 2"));
    assert!(out.line_index("act 2") < rt && rt < out.line_index("act 3"));
    assert!(out.line_index("act 3") < pipe && pipe < out.line_index("act 4"));
    assert!(out.line_index("act 4") < term);
    // SIGTERM did not end the reader: its loop did, with status 0.
    out.assert_stdout_contains("SIGTERM is data here")
        .assert_stdout_contains(&format!("reaped reader {reader}: exited with status 0"));
    assert_group_gone(out.pid);
}

/// The reader has seen its stdin (closed by the harness) end, and sleeps in poll.
fn reader_stdin_eof_then_asleep(reader: &Demo, pid: i32) {
    wait_for_line_with(reader, &["stdin: end of file"]);
    wait_until_asleep_in(pid, "poll");
}

#[test]
fn signalfd_reader_takes_signals_from_an_fd_with_no_handler() {
    let (reader, pid) = start_reader(&["signalfd"], "waiting: poll(2)");
    reader_stdin_eof_then_asleep(&reader, pid);
    // The kernel's view: one signalfd, whose mask has SIGUSR1; SIGUSR1 blocked, not caught.
    let sfds = fds_to(pid, "anon_inode:[signalfd]");
    assert_eq!(sfds.len(), 1, "one signalfd in /proc/{pid}/fd");
    let fdinfo = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", sfds[0])).unwrap();
    let mask = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("sigmask:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .expect("a sigmask line");
    assert_ne!(mask & bit(libc::SIGUSR1), 0, "{fdinfo}");
    assert_eq!(
        mask & bit(libc::SIGTSTP),
        0,
        "Ctrl+Z keeps its default action"
    );
    assert_ne!(status_mask(pid, "SigBlk") & bit(libc::SIGUSR1), 0);
    assert_eq!(
        status_mask(pid, "SigCgt") & bit(libc::SIGUSR1),
        0,
        "no handler"
    );

    // A second terminal: signals through a pidfd, then a wait for the reader's exit.
    let pid_text = pid.to_string();
    let args = [
        "writer", "pidfd", "--pid", &pid_text, "USR1", "RTMIN+1", "TERM",
    ];
    let wrote = run(DEMO, &args);
    wrote
        .assert_success()
        .assert_stdout_contains("sent SIGRTMIN+1")
        .assert_stdout_contains(&format!("{pid} has terminated: its pidfd became readable"));
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGTERM);
    let from = format!("ssi_pid {} (signal-demo)", wrote.pid);
    for signal in ["(SIGUSR1)", "(SIGTERM)", "(SIGRTMIN+1)"] {
        let line = out
            .lines_with(signal)
            .into_iter()
            .find(|l| l.contains("signalfd: ssi_signo"))
            .unwrap_or_else(|| panic!("no {signal} read: {}", out.stdout));
        // pidfd_send_signal with no siginfo is described as kill(2)'s is.
        assert!(line.contains(&from) && line.contains("SI_USER"), "{line}");
    }
    // All three read, SIGRTMIN+1 too: pending with SIGTERM, it would be read after it
    // (lower numbers first), and the reader reads what is pending before it leaves.
    out.assert_stdout_contains("SIGTERM taken: exiting cleanly (3 signals received in all)");
    assert_group_gone(pid);
}

#[test]
fn signalfd_reader_polls_stdin_beside_its_signals() {
    let mut reader =
        Demo::start_with_stdin(DEMO, &["reader", "signalfd"], b"typed line\n".to_vec());
    let pid = reader.pid();
    let line = reader.wait_for_line("stdin: read(2) gave \"typed line\" (11 bytes)");
    assert!(line.starts_with(&format!("[reader {pid}]")), "{line}");
    reader_stdin_eof_then_asleep(&reader, pid);
    send(pid, Signal::SIGUSR2);
    wait_for_line_with(&reader, &["ssi_signo 12 (SIGUSR2)", "SI_USER"]);
    reader.signal_group(Signal::SIGTERM);
    reader.finish().assert_killed_by(Signal::SIGTERM);
    assert_group_gone(pid);
}

#[test]
fn ctrl_c_ends_a_signalfd_reader_blocked_in_poll() {
    let (reader, pid) = start_reader(&["signalfd"], "waiting: poll(2)");
    reader_stdin_eof_then_asleep(&reader, pid);
    reader.signal_group(Signal::SIGINT);
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains("ssi_signo 2 (SIGINT)")
        .assert_stdout_contains("SIGINT taken: exiting cleanly");
    assert_group_gone(pid);
}

#[test]
fn signalfd_run_writer_notices_its_reader_killed() {
    let (demo, out_r, writer, reader) = start_held_run(&["signalfd"]);
    send(reader, Signal::SIGKILL);
    let out = finish_command(demo, out_r);
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!(
            "the reader (pid {reader}) ended before it answered"
        ))
        .assert_stderr_contains("killed by SIGKILL");
    assert!(!process_exists(reader), "reader {reader} left behind");
    assert_eq!(reap_orphans(writer), Vec::<i32>::new());
}

/// A held flavour run whose writer is SIGKILLed: the orphaned reader must exit by
/// itself, status 1, naming the writer.
fn reader_notices_its_writer_killed(flavour: &str) {
    let (demo, out_r, writer, reader) = start_held_run(&[flavour]);
    send(writer, Signal::SIGKILL);
    let out = finish_command(demo, out_r);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(Signal::SIGKILL as i32)
    );
    // The flavours keep the reader in the writer's group (no job control here).
    let ended = reap_orphans_with_status(writer);
    assert_eq!(
        ended,
        vec![(
            reader,
            nix::sys::wait::WaitStatus::Exited(Pid::from_raw(reader), 1)
        )],
        "{}",
        out.stderr
    );
    out.assert_stderr_contains(&format!("the writer (pid {writer}) is gone"));
}

#[test]
fn signalfd_run_reader_notices_its_writer_killed() {
    reader_notices_its_writer_killed("signalfd");
}

// ---- pidfd: a process by handle ---------------------------------------------------------

#[test]
fn pidfd_run_signals_by_handle_and_gets_esrch_once_reaped() {
    let out = run(DEMO, &["pidfd"]);
    out.assert_success();
    let first = pid_of_role(&out.stdout, "reader").expect("a reader line");
    out.assert_stdout_contains(&format!("pidfd_open({first}) gave fd"))
        .assert_stdout_contains(&format!(
            "says Pid {first}; poll says it is not readable: alive"
        ))
        .assert_stdout_contains("the pidfd is readable: the reader has terminated")
        .assert_stdout_contains(&format!("/proc/{first}/stat says state Z"))
        .assert_stdout_contains("to the zombie: 0 (success)")
        .assert_stdout_contains(&format!("reaped reader {first}: killed by SIGTERM"))
        .assert_stdout_contains("now says Pid -1");
    // After the reap: ESRCH through the same pidfd, and only after it.
    let esrch = out.line_index("act 3: SIGTERM through the same pidfd again: ESRCH");
    assert!(out.line_index(&format!("reaped reader {first}")) < esrch);
    // The reader watched its parent through a pidfd of its own.
    out.assert_stdout_contains(&format!(
        "opened a pidfd on my parent, the writer {}",
        out.pid
    ));

    // Act 4: the reuse, where the kernel let us ask for the pid again.
    if out.stdout.contains("my new reader got pid") {
        out.assert_stdout_contains(&format!("my new reader got pid {first}"))
            .assert_stdout_contains("pidfd_send_signal SIGTERM: ESRCH")
            .assert_stdout_contains(&format!("kill(2) SIGTERM to pid {first}, the old way"))
            .assert_stdout_contains(&format!("reaped the new reader {first}: killed by SIGTERM"));
    } else {
        assert!(
            out.stdout.contains("the reuse is not shown"),
            "act 4 must say why it did not show the reuse: {}",
            out.stdout
        );
    }
    assert_group_gone(out.pid);
}

#[test]
fn pidfd_run_as_an_ordinary_user_says_what_it_cannot_show() {
    prepare_test_process();
    let mut cmd = Command::new(demo_bin(DEMO));
    cmd.arg("pidfd")
        .current_dir("/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // As root, become nobody (std drops the supplementary groups too).
    let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    if me == 0 {
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().expect("spawn signal-demo pidfd");
    let stdout = child.stdout.take().unwrap();
    let out = finish_command(Started(child), stdout);
    out.assert_success()
        .assert_stdout_contains("act 3: SIGTERM through the same pidfd again: ESRCH")
        .assert_stdout_contains("needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE")
        .assert_stdout_contains("the reuse is not shown here");
    assert!(
        out.lines_with("my new reader got pid").is_empty(),
        "{}",
        out.stdout
    );
    assert_group_gone(out.pid);
}

#[test]
fn pidfd_run_writer_notices_its_reader_killed() {
    let (demo, out_r, writer, reader) = start_held_run(&["pidfd"]);
    send(reader, Signal::SIGKILL);
    let out = finish_command(demo, out_r);
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!(
            "the reader (pid {reader}) ended before it was ready"
        ))
        .assert_stderr_contains("killed by SIGKILL");
    assert!(!process_exists(reader), "reader {reader} left behind");
    assert_eq!(reap_orphans(writer), Vec::<i32>::new());
}

#[test]
fn pidfd_run_reader_notices_its_writer_killed() {
    reader_notices_its_writer_killed("pidfd");
}

#[test]
fn pidfd_writer_waits_for_a_process_it_did_not_fork_and_notices_sigkill() {
    let (reader, pid) = start_reader(&["signalfd"], "waiting: poll(2)");
    reader_stdin_eof_then_asleep(&reader, pid);
    let pid_text = pid.to_string();
    let mut writer = Demo::start(DEMO, &["writer", "pidfd", "--pid", &pid_text, "USR2"]);
    writer.wait_for_line(&format!("waiting for {pid} to exit"));
    let from = format!("ssi_pid {}", writer.pid());
    wait_for_line_with(&reader, &["(SIGUSR2)", &from]);
    wait_until_asleep_in(writer.pid(), "poll");
    send(pid, Signal::SIGKILL);
    let wrote = writer.finish();
    wrote
        .assert_success()
        .assert_stdout_contains(&format!("{pid} has terminated: its pidfd became readable"));
    reader.finish().assert_killed_by(Signal::SIGKILL);
    assert_group_gone(wrote.pid);
}

#[test]
fn ctrl_c_ends_a_pidfd_writer_waiting_in_poll() {
    let (reader, pid) = start_reader(&["signalfd"], "waiting: poll(2)");
    let pid_text = pid.to_string();
    let mut writer = Demo::start(DEMO, &["writer", "pidfd", "--pid", &pid_text]);
    writer.wait_for_line(&format!("waiting for {pid} to exit"));
    wait_until_asleep_in(writer.pid(), "poll");
    writer.signal_group(Signal::SIGINT);
    let wrote = writer.finish();
    wrote
        .assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains("interrupted by SIGINT");
    assert!(
        process_exists(pid),
        "the watched reader is not the writer's to end"
    );
    assert_group_gone(wrote.pid);
    reader.signal_group(Signal::SIGTERM);
    reader.finish().assert_killed_by(Signal::SIGTERM);
}

#[test]
fn flavour_bad_usage_exits_2_and_does_nothing() {
    for (args, needle) in [
        (
            &["signalfd", "--ping", "3"][..],
            "--ping goes with the handler flavour",
        ),
        (&["signalfd", "USR1"], "unexpected \"USR1\" after signalfd"),
        (
            &["reader", "signalfd", "--pid", "5"],
            "--pid is for `signal-demo writer pidfd`",
        ),
        (
            &["writer", "signalfd", "--pid", "5"],
            "a signalfd is the reader's",
        ),
        (&["reader", "pidfd"], "there is no `reader pidfd`"),
        (&["pidfd", "TERM"], "unexpected \"TERM\" after pidfd"),
        (&["writer", "pidfd"], "writer pidfd needs --pid PID"),
        (&["writer", "pidfd", "--pid", "0"], "at least 1"),
        (
            &["writer", "pidfd", "--pid", NO_SUCH_PID, "NOPE"],
            "NOPE: not a signal name",
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
    run(DEMO, &["writer", "pidfd", "--pid", NO_SUCH_PID])
        .assert_exit_code(1)
        .assert_stderr_contains(&format!(
            "no process {NO_SUCH_PID}: pidfd_open(2) failed with ESRCH"
        ));
    run(DEMO, &["--help"])
        .assert_stdout_contains("signal-demo signalfd")
        .assert_stdout_contains("signal-demo writer pidfd --pid PID");
}

#[test]
fn a_stopped_signalfd_reader_resumes_and_reads_the_sigcont() {
    let (reader, pid) = start_reader(&["signalfd"], "waiting: poll(2)");
    reader_stdin_eof_then_asleep(&reader, pid);
    // SIGSTOP, not SIGTSTP: the kernel discards SIGTSTP for an orphaned process group,
    // and the test cannot know how it was started. Both stop with their default action.
    send(pid, Signal::SIGSTOP);
    wait_until("the reader is stopped", || state(pid) == 'T');
    send(pid, Signal::SIGCONT);
    // Blocked, SIGCONT still resumed it; and the notice waits in the fd.
    wait_for_line_with(&reader, &["ssi_signo 18 (SIGCONT)", "SI_USER"]);
    wait_until_asleep_in(pid, "poll");
    reader.signal_group(Signal::SIGTERM);
    reader.finish().assert_killed_by(Signal::SIGTERM);
    assert_group_gone(pid);
}

#[test]
fn ctrl_c_during_a_flavour_run_ends_both_and_the_writer_reaps_the_reader() {
    for flavour in ["signalfd", "pidfd"] {
        let (demo, out_r, writer, reader) = start_held_run(&[flavour]);
        killpg(Pid::from_raw(writer), Signal::SIGINT).expect("killpg SIGINT");
        let out = finish_command(demo, out_r);
        // The writer took SIGINT from its signalfd, passed it on, reaped, then died of it.
        out.assert_killed_by(Signal::SIGINT)
            .assert_stdout_contains("interrupted by SIGINT")
            .assert_stdout_contains(&format!("reaped reader {reader}: killed by SIGINT"));
        assert!(
            !process_exists(reader),
            "{flavour}: reader {reader} left behind"
        );
        assert_eq!(reap_orphans(writer), Vec::<i32>::new(), "{flavour}");
    }
}
