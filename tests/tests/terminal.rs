//! Terminal keys through a pseudo-terminal this test opens itself: Ctrl+Z, `fg` and
//! Ctrl+C reaching `signal-demo reader` exactly as they do from a real terminal, with
//! nothing installed (the tmux test in signal.rs adds a real shell, where tmux is).
//!
//! The test plays the terminal and the user: it owns the pty's master side, writes the
//! keys into it and reads the screen from it. `job-shell` (tests/src/bin) plays the
//! shell: the session leader on the pty's slave side, running the demo as a job in a
//! foreground process group of its own. Writing `^Z` (0x1a) or `^C` (0x03) into the
//! master makes the kernel's line discipline send SIGTSTP or SIGINT to that group; no
//! process of ours sends them.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_tests::{DEADLINE, Signal, assert_group_gone, demo_bin, proc_state, wait_until};
use nix::pty::openpty;
use nix::sys::signal::killpg;
use nix::unistd::Pid;

/// The pty's master side: what the user types goes in, the screen comes out.
struct Terminal {
    master: std::fs::File,
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    /// Presses a key: one byte into the master, as a terminal emulator writes it.
    fn press(&mut self, key: u8) {
        self.master
            .write_all(&[key])
            .expect("write a key into the pty master");
    }

    /// Waits until `text` is on the screen, and returns the screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen.lock().unwrap().clone();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?} on the terminal; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Opens a pty and starts `job-shell PROGRAM ARGS` on its slave side, as the leader
/// of a new session with the pty as its controlling terminal.
fn start_on_a_pty(program: &std::path::Path, args: &[&str]) -> (Terminal, ShellGuard) {
    ipc_tests::prepare_test_process();
    let pty = openpty(None, None).expect("openpty");
    let slave = |pty: &OwnedFd| Stdio::from(pty.try_clone().expect("dup the pty slave"));
    let mut shell = Command::new(env!("CARGO_BIN_EXE_job-shell"));
    shell
        .arg(program)
        .args(args)
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave));
    // SAFETY: between fork and exec the child calls only setsid and ioctl, both
    // async-signal-safe, and allocates nothing.
    unsafe {
        shell.pre_exec(|| {
            nix::unistd::setsid()?;
            // fd 0 is the slave: make it this new session's controlling terminal.
            if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = shell.spawn().expect("spawn job-shell");
    drop(pty.slave); // ours closed: the master reads EIO once job-shell and the job end
    let master = std::fs::File::from(pty.master);
    let screen = Arc::new(Mutex::new(String::new()));
    let mut reader = master.try_clone().expect("dup the pty master");
    let sink = Arc::clone(&screen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO (every slave fd closed) or EOF ends the screen.
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (Terminal { master, screen }, ShellGuard { child, job: None })
}

/// Kills job-shell's session and the job if the test gives up on them.
struct ShellGuard {
    child: Child,
    job: Option<Pid>,
}

impl ShellGuard {
    /// Waits for job-shell to exit, and returns its exit code.
    fn wait(&mut self) -> i32 {
        let mut code = None;
        wait_until("job-shell exits", || {
            code = self.child.try_wait().expect("try_wait job-shell");
            code.is_some()
        });
        code.unwrap().code().expect("job-shell exits, not killed")
    }
}

impl Drop for ShellGuard {
    fn drop(&mut self) {
        if let Some(job) = self.job {
            let _ = killpg(job, Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after `[ROLE ` on the screen: the pid a demo or job-shell prints.
fn pid_after(screen: &str, prefix: &str) -> i32 {
    let rest = &screen[screen.find(prefix).expect(prefix) + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a pid")
}

fn state(pid: i32) -> char {
    proc_state(pid).map_or('-', |(s, _)| s)
}

#[test]
fn ctrl_z_fg_and_ctrl_c_through_a_pty() {
    let (mut term, mut shell) = start_on_a_pty(&demo_bin("signal-demo"), &["reader"]);
    let screen = term.wait_for("in the foreground");
    let job = pid_after(&screen, "] job ");
    shell.job = Some(Pid::from_raw(job));
    let screen = term.wait_for("waiting for signals");
    let reader = pid_after(&screen, "[reader ");
    assert_eq!(reader, job, "the reader leads its own process group");

    // Ctrl+Z: the line discipline sends SIGTSTP to the foreground group; the reader
    // reports it, then really stops, and job-shell's waitpid sees the stop.
    term.press(0x1a);
    term.wait_for("received SIGTSTP from the kernel (the terminal: Ctrl+Z)");
    wait_until("the reader is stopped (state T)", || state(reader) == 'T');
    term.wait_for(&format!("job {job} stopped by SIGTSTP"));

    // fg: SIGCONT to the job's group, which is what a shell's fg sends.
    killpg(Pid::from_raw(job), Signal::SIGCONT).expect("SIGCONT to the job");
    term.wait_for(&format!(
        "received SIGCONT from pid {} ",
        std::process::id()
    ));
    term.wait_for(&format!("job {job} continued"));
    wait_until("the reader sleeps again (state S)", || state(reader) == 'S');

    // Ctrl+C: SIGINT to the foreground group; the reader reports it and dies of it,
    // so its shell reads 130 (128 + SIGINT), as a shell's $? would.
    term.press(0x03);
    term.wait_for("received SIGINT from the kernel (the terminal: Ctrl+C)");
    term.wait_for(&format!("job {job} killed by SIGINT"));
    assert_eq!(shell.wait(), 130, "{}", term.wait_for(""));
    assert_group_gone(job);
}
