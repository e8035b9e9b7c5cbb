//! ipc-tests: the harness that runs the demo binaries as real processes.
//!
//! Every end-to-end test in `tests/tests/*.rs` goes through this file. It
//! - builds the demo binaries itself (cargo does not build another package's
//!   binaries for our tests: see `shared/reference/rust-apis.md` §6);
//! - starts each demo with `Command` in its own process group (never `fork` inside
//!   the test harness), so `killpg` acts like Ctrl+C and leftovers are easy to find;
//! - reads its stdout line by line on a thread, so a test can wait for a line with a
//!   deadline instead of sleeping;
//! - puts a deadline on every wait, and kills the whole group if a test gives up, so
//!   no test hangs and no demo outlives its test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod bench;

pub use nix::sys::signal::Signal;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;

/// How long a test waits for any one thing (a line, an exit, a file) before it
/// fails. Generous: two cores, debug builds and tests running in parallel.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The directory holding the demo binaries: `target/<profile>`, the one this test
/// binary was built into (so `cargo bench`, a release build, runs release demos).
pub fn demo_bin_dir() -> PathBuf {
    // target/<profile>/deps/<test-binary> -> target/<profile>
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

/// The path of one demo binary, e.g. `demo_bin("pipe-demo")`, built once per test
/// binary. Only that package is built, so one demo's tests do not depend on the
/// others compiling.
pub fn demo_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let profile_dir = demo_bin_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", name, "--bins", "--target-dir"])
        .arg(profile_dir.parent().expect("target dir"));
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let status = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("spawn cargo build");
    assert!(status.success(), "building {name} failed: {status}");
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    built.insert(name.to_string(), path.clone());
    path
}

/// A demo process started by a test, with its output collected as it comes.
pub struct Demo {
    name: String,
    child: Option<Child>,
    pid: i32,
    lines: Receiver<String>,
    stdout_seen: Arc<Mutex<Vec<String>>>,
    stdout_thread: Option<JoinHandle<()>>,
    stderr_thread: Option<JoinHandle<String>>,
    stdin_thread: Option<JoinHandle<()>>,
}

/// What a demo left behind when it exited.
#[derive(Debug)]
pub struct Finished {
    pub name: String,
    pub pid: i32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Demo {
    /// Starts `name` with `args`, standard input closed.
    pub fn start(name: &str, args: &[&str]) -> Demo {
        Demo::spawn(name, args, None)
    }

    /// Starts `name` with `args`, feeding `input` to its standard input.
    pub fn start_with_stdin(name: &str, args: &[&str], input: Vec<u8>) -> Demo {
        Demo::spawn(name, args, Some(input))
    }

    /// Starts `name` with `args` and `stdin` as its standard input (a file such as
    /// /dev/zero: endless input without a newline).
    pub fn start_with_stdio(name: &str, args: &[&str], stdin: Stdio) -> Demo {
        Demo::spawn_with(name, args, None, stdin)
    }

    fn spawn(name: &str, args: &[&str], input: Option<Vec<u8>>) -> Demo {
        let stdin = if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        Demo::spawn_with(name, args, input, stdin)
    }

    fn spawn_with(name: &str, args: &[&str], input: Option<Vec<u8>>, stdin: Stdio) -> Demo {
        prepare_test_process();
        let mut cmd = Command::new(demo_bin(name));
        cmd.args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_BACKTRACE", "1") // a panic would show a backtrace: tests reject it
            .process_group(0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let pid = child.id() as i32;

        let stdin_thread = input.map(|bytes| {
            let mut stdin = child.stdin.take().expect("stdin piped");
            std::thread::spawn(move || {
                // The demo may exit before reading it all (that can be the point of a
                // test), so a broken pipe here is not an error.
                let _ = stdin.write_all(&bytes);
            })
        });

        let (tx, lines) = channel();
        let stdout_seen = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&stdout_seen);
        let stdout = child.stdout.take().expect("stdout piped");
        let stdout_thread = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&raw)
                            .trim_end_matches('\n')
                            .to_string();
                        seen.lock().unwrap().push(line.clone());
                        let _ = tx.send(line);
                    }
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr piped");
        let stderr_thread = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });

        Demo {
            name: name.to_string(),
            child: Some(child),
            pid,
            lines,
            stdout_seen,
            stdout_thread: Some(stdout_thread),
            stderr_thread: Some(stderr_thread),
            stdin_thread,
        }
    }

    /// The demo's pid, which is also its process group id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the next stdout line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no line containing {needle:?} within {DEADLINE:?}; stdout so far:\n{}",
                    self.name,
                    self.stdout_so_far()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: exited before printing a line containing {needle:?}; stdout:\n{}",
                    self.name,
                    self.stdout_so_far()
                ),
            }
        }
    }

    /// Everything the demo printed to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        self.stdout_seen.lock().unwrap().join("\n")
    }

    /// Sends `sig` to the demo's whole process group, as Ctrl+C in a terminal would.
    pub fn signal_group(&self, sig: Signal) {
        killpg(Pid::from_raw(self.pid), sig).expect("killpg");
    }

    /// Waits for the demo to exit and returns what it printed. Fails the test if it
    /// takes longer than the deadline (after killing the whole group).
    pub fn finish(mut self) -> Finished {
        let mut child = self.child.take().expect("not finished yet");
        let status = wait_with_deadline(&mut child, DEADLINE).unwrap_or_else(|| {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "{} (pid {}) did not exit within {DEADLINE:?}; stdout:\n{}",
                self.name,
                self.pid,
                self.stdout_so_far()
            )
        });
        if let Some(t) = self.stdin_thread.take() {
            let _ = t.join();
        }
        // The output pipes close when the last process of the group holding them
        // exits; a leftover child keeps them open, so do not wait forever.
        let stdout_thread = self.stdout_thread.take().expect("stdout thread");
        let stderr_thread = self.stderr_thread.take().expect("stderr thread");
        let joined_by = Instant::now() + DEADLINE;
        while !(stdout_thread.is_finished() && stderr_thread.is_finished()) {
            if Instant::now() > joined_by {
                let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
                panic!(
                    "{}: its output stayed open {DEADLINE:?} after it exited: a child outlived it",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        stdout_thread.join().expect("stdout thread");
        let stderr = stderr_thread.join().expect("stderr thread");
        Finished {
            name: self.name.clone(),
            pid: self.pid,
            status,
            stdout: self.stdout_so_far(),
            stderr,
        }
    }
}

impl Drop for Demo {
    /// A test that panics half-way must not leave demos running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a demo to the end: `run("pipe-demo", &["duplex"])`.
pub fn run(name: &str, args: &[&str]) -> Finished {
    Demo::start(name, args).finish()
}

/// Runs a demo to the end with `input` on its standard input.
pub fn run_with_stdin(name: &str, args: &[&str], input: &[u8]) -> Finished {
    Demo::start_with_stdin(name, args, input.to_vec()).finish()
}

impl Finished {
    fn describe(&self) -> String {
        format!(
            "{} (pid {}) {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name, self.pid, self.status, self.stdout, self.stderr
        )
    }

    /// Asserts exit status 0, no panic, and that no process of its group is left.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected success: {}",
            self.describe()
        );
        self.assert_clean_exit()
    }

    /// Asserts the exit code (1: a foreseeable failure, 2: bad usage), no panic,
    /// and that no process of its group is left.
    pub fn assert_exit_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit code {code}: {}",
            self.describe()
        );
        self.assert_clean_exit()
    }

    /// Asserts the demo died of `sig` (a demo re-raises SIGINT after cleaning up,
    /// so the shell sees it was interrupted).
    pub fn assert_killed_by(&self, sig: Signal) -> &Self {
        assert_eq!(
            self.status.signal(),
            Some(sig as i32),
            "expected death by {sig}: {}",
            self.describe()
        );
        self.assert_clean_exit()
    }

    /// Like `assert_killed_by`, for a demo that catches the signal, cleans up and
    /// re-raises it: it had the chance to reap its children first, so a zombie left
    /// behind is a bug here, not an orphan of a sudden death.
    pub fn assert_killed_by_after_reaping(&self, sig: Signal) -> &Self {
        assert_eq!(
            self.status.signal(),
            Some(sig as i32),
            "expected death by {sig}: {}",
            self.describe()
        );
        assert_group_gone(self.pid);
        self
    }

    fn assert_clean_exit(&self) -> &Self {
        // A panic prints to stderr. On stdout only the panic line itself counts: a
        // demo may print other processes' command lines (pipe-demo's `ps`), which
        // can hold any word.
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(
                !self.stderr.contains(bad) && !self.stdout.contains("panicked at"),
                "{}: a panic, never a clear message: {}",
                self.name,
                self.describe()
            );
        }
        if self.status.signal().is_some() {
            // Killed by a signal, it had no chance to reap a child that died with
            // it: such orphans come to us. They must still have exited.
            reap_orphans(self.pid);
        } else {
            assert_group_gone(self.pid);
        }
        self
    }

    /// Asserts stderr says `needle` (case-sensitive).
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr should contain {needle:?}: {}",
            self.describe()
        );
        self
    }

    /// Asserts some stdout line contains `needle`.
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout should contain {needle:?}: {}",
            self.describe()
        );
        self
    }

    /// The stdout lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.contains(needle)).collect()
    }

    /// Index of the first stdout line containing `needle`; fails if none does.
    pub fn line_index(&self, needle: &str) -> usize {
        self.stdout
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line containing {needle:?}: {}", self.describe()))
    }

    /// The summary line of `role` (DESIGN §4), parsed.
    pub fn summary(&self, role: &str) -> Summary {
        let prefix = format!("[{role} ");
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix) && l.contains("] summary: "))
            .unwrap_or_else(|| panic!("no summary line for {role}: {}", self.describe()));
        Summary::parse(line)
    }

    /// The pid printed in the first line narrated by `role` (`[reader 4243] ...`).
    pub fn pid_of(&self, role: &str) -> i32 {
        pid_of_role(&self.stdout, role)
            .unwrap_or_else(|| panic!("no line from {role}: {}", self.describe()))
    }
}

/// The whole number that follows `key` in `line` ("... 65536 bytes" after "... ").
pub fn number_after(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} not in {line:?}"));
    let digits: String = line[at + key.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key:?} in {line:?}"))
}

/// Finds the pid in the first `[ROLE PID]` prefix of `stdout`.
pub fn pid_of_role(stdout: &str, role: &str) -> Option<i32> {
    let prefix = format!("[{role} ");
    stdout.lines().find_map(|l| {
        let rest = l.strip_prefix(&prefix)?;
        rest.split(']').next()?.parse().ok()
    })
}

/// A parsed summary line: `[ROLE PID] summary: messages=N bytes=B ... ok`.
#[derive(Debug)]
pub struct Summary {
    pub line: String,
    pub fields: HashMap<String, String>,
    pub ok: bool,
}

impl Summary {
    pub fn parse(line: &str) -> Summary {
        let (_, rest) = line
            .split_once("] summary: ")
            .unwrap_or_else(|| panic!("not a summary line: {line}"));
        let fields = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Summary {
            line: line.to_string(),
            fields,
            ok: rest.split_whitespace().last() == Some("ok"),
        }
    }

    /// Checks `mib_per_s` against `bytes` and `elapsed_us` on the same line: a real
    /// figure, consistent with what was moved, whatever the machine's speed (a slow
    /// run of a few kilobytes may honestly print 0.0, so "> 0" would be flaky).
    pub fn assert_throughput_consistent(&self) {
        let (bytes, us, rate) = (
            self.num("bytes"),
            self.num("elapsed_us"),
            self.num("mib_per_s"),
        );
        let expected = bytes / (1024.0 * 1024.0) / (us.max(1.0) / 1e6);
        assert!(
            rate >= 0.0 && (rate - expected).abs() <= 0.051 + 0.01 * expected,
            "mib_per_s={rate} but bytes/elapsed gives {expected:.3}: {}",
            self.line
        );
    }

    /// A numeric field; fails the test if it is missing or not a number.
    pub fn num(&self, key: &str) -> f64 {
        self.fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("summary has no numeric {key}: {}", self.line))
    }
}

/// Waits until `cond` holds, polling every few milliseconds, failing the test after
/// the deadline. For conditions only the kernel can show (a file appears, a
/// process falls asleep), never for "give it time".
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The kernel's view of a process: its state letter (R, S, T, Z...) and the kernel
/// function it sleeps in (`wchan`), or None once it is gone.
pub fn proc_state(pid: i32) -> Option<(char, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    Some((state, wchan))
}

/// Waits until `pid` is asleep in the kernel in a function whose name contains
/// `wchan` ("wait_for_partner" for a FIFO open, "pipe_read" for a read...). A
/// signal sent then surely interrupts the blocking call.
pub fn wait_until_asleep_in(pid: i32, wchan: &str) {
    wait_until(
        &format!("pid {pid} sleeps in {wchan}"),
        || matches!(proc_state(pid), Some(('S', w)) if w.contains(wchan)),
    );
}

/// Prepares this test process, once, before it starts any demo (`Demo::start`
/// calls it; a test that spawns a demo another way calls it first):
/// - it becomes the "subreaper" of every demo it starts: a demo's child that
///   outlives its parent is re-parented to us instead of to PID 1 (which reaps late
///   or not at all in some containers), so a test can see it, and reap it by pid;
/// - SIGINT, SIGTERM and SIGQUIT get their default action back: a test run started
///   with them ignored (`cargo test &` in a script) would otherwise pass the ignore
///   on to every demo, and a Ctrl+C test would wait in vain.
pub fn prepare_test_process() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGQUIT] {
            // SAFETY: SIG_DFL installs no handler of ours, so nothing can run in
            // signal context.
            unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) }
                .expect("reset a signal to its default action");
        }
    });
}

/// The processes of group `pgid`: (pid, state letter, parent pid).
pub fn group_members(pgid: i32) -> Vec<(i32, char, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut f = stat.rsplit_once(')')?.1.split_whitespace();
            let state = f.next()?.chars().next()?;
            let ppid = f.next()?.parse().ok()?;
            let pgrp: i32 = f.next()?.parse().ok()?;
            (pgrp == pgid).then_some((pid, state, ppid))
        })
        .collect()
}

/// Waits until no process of group `pgid` is left, then checks that none was
/// left as a zombie either: a zombie there is a child some demo never waited for.
pub fn assert_group_gone(pgid: i32) {
    wait_until(&format!("every process of group {pgid} has exited"), || {
        group_members(pgid)
            .iter()
            .all(|&(_, state, _)| state == 'Z')
    });
    let zombies = reap_orphans(pgid);
    assert!(
        zombies.is_empty(),
        "zombie children left by group {pgid}: {zombies:?} (a parent did not wait for them)"
    );
}

/// Waits until no live process of group `pgid` is left and reaps the zombies that
/// came to us. For tests that kill a parent on purpose: its orphaned child must
/// still exit by itself. Returns the pids reaped.
pub fn reap_orphans(pgid: i32) -> Vec<i32> {
    reap_orphans_with_status(pgid)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// Like `reap_orphans`, with how each orphan ended, for a test to judge it.
pub fn reap_orphans_with_status(pgid: i32) -> Vec<(i32, nix::sys::wait::WaitStatus)> {
    wait_until(&format!("every process of group {pgid} has exited"), || {
        group_members(pgid)
            .iter()
            .all(|&(_, state, _)| state == 'Z')
    });
    let me = std::process::id() as i32;
    let mut reaped = Vec::new();
    for (pid, _, ppid) in group_members(pgid) {
        if ppid == me {
            if let Ok(status) = nix::sys::wait::waitpid(Pid::from_raw(pid), None) {
                reaped.push((pid, status));
            }
        }
    }
    reaped
}

/// True while process `pid` exists (running, stopped or zombie).
pub fn process_exists(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// A private directory for one test (mode 0700), removed with all it holds on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ipc-tests-{tag}-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory, as a `String` for command lines.
    pub fn join(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    /// The names of the entries left in the directory.
    pub fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .expect("read scratch dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True if `path` exists and is a FIFO.
pub fn is_fifo(path: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// True if nothing exists at `path` (not even a dangling link).
pub fn is_gone(path: &str) -> bool {
    std::fs::symlink_metadata(path).is_err()
}

/// The bulk workload's message `k` of `size` bytes, as every demo writes it
/// (DESIGN §3): the first `min(8, size)` bytes are `k` as a little-endian u64, byte
/// `i >= 8` is `i % 251`. The sequence number catches a lost, repeated or
/// reordered message; the pattern catches a changed byte.
pub fn bulk_message(k: u64, size: usize) -> Vec<u8> {
    let mut msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let head = size.min(8);
    msg[..head].copy_from_slice(&k.to_le_bytes()[..head]);
    msg
}

/// The whole bulk stream of `count` messages of `size` bytes.
pub fn bulk_stream(count: u64, size: usize) -> Vec<u8> {
    (0..count).flat_map(|k| bulk_message(k, size)).collect()
}

/// The path of `tool` on PATH, for a test that drives a program nobody here wrote
/// (socat, nc, tmux, python3). Missing, the test should pass without it: this
/// prints `skipped: TEST: TOOL not found (apt-get install PACKAGE)` on the real
/// stderr (not captured, so `cargo test` shows it) and returns None. With
/// `IPC_DEMOS_REQUIRE_TOOLS=1` (set by `.ci/run` after installing them) a missing
/// tool fails the test instead, so CI never skips.
pub fn find_tool(tool: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_some() {
        return found;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let line = format!("skipped: {test}: {tool} not found (apt-get install {package})");
    if std::env::var_os("IPC_DEMOS_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{line}, and IPC_DEMOS_REQUIRE_TOOLS=1 requires it");
    }
    // io::stderr() directly, not eprintln!: the test harness captures only the
    // print macros, and a skip must be seen.
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    None
}

/// The peak resident set size (`VmHWM`, KiB) of a live process, from
/// `/proc/PID/status`: how a flood test proves a reader's memory stayed bounded.
pub fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The keys listed in `/proc/sysvipc/TABLE` (`msg`, `shm` or `sem`; the first
/// column, signed decimal): how a test sees that a System V object is gone.
pub fn sysv_keys(table: &str) -> Vec<i32> {
    let text = std::fs::read_to_string(format!("/proc/sysvipc/{table}"))
        .unwrap_or_else(|e| panic!("read /proc/sysvipc/{table}: {e}"));
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// True while the POSIX message queue `name` ("/q") exists. Asks the kernel with
/// `mq_open(O_RDONLY)` rather than looking in `/dev/mqueue`, which is only there
/// where someone mounted the mqueue filesystem.
pub fn posix_queue_exists(name: &str) -> bool {
    let c = std::ffi::CString::new(name).expect("queue name without NUL");
    // SAFETY: `c` is a valid NUL-terminated string; without O_CREAT mq_open takes
    // no further arguments. The descriptor it may return is closed at once.
    let mqd = unsafe { libc::mq_open(c.as_ptr(), libc::O_RDONLY) };
    if mqd == -1 {
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ENOENT),
            "mq_open({name}): {err}"
        );
        return false;
    }
    // SAFETY: `mqd` is the descriptor mq_open just returned, closed once.
    unsafe { libc::mq_close(mqd) };
    true
}

/// Every path under `/tmp/` or `/dev/shm/` that `text` names, with the punctuation
/// narration puts around it stripped: after a demo has gone, each must be gone too.
pub fn tmp_and_shm_paths_in(text: &str) -> Vec<String> {
    let mut paths: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\'' | '`'))
        .filter(|w| w.starts_with("/tmp/") || w.starts_with("/dev/shm/"))
        .map(|w| w.trim_end_matches([':', ',', ';', '.']).to_string())
        .filter(|w| !w.ends_with('/') && !w.contains("XXXX"))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}
