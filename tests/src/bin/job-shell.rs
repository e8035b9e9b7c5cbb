//! job-shell: the smallest job-control shell, so a test can press Ctrl+Z and Ctrl+C
//! on a real terminal with nothing installed (`tests/tests/terminal.rs`).
//!
//! Usage: `job-shell PROGRAM [ARG...]`, started as the leader of a new session whose
//! controlling terminal is its stdin (the test does `setsid` and `TIOCSCTTY` on a
//! pty it opened). It runs PROGRAM as one job, the way an interactive shell does:
//! - in a process group of its own, made the terminal's foreground group
//!   (`tcsetpgrp`), so the line discipline sends the signals of Ctrl+C and Ctrl+Z
//!   (SIGINT, SIGTSTP) to the job and not to this shell;
//! - as a child of a process in another group of the same session, which keeps the
//!   job's group from being orphaned. That matters: the kernel discards SIGTSTP,
//!   SIGTTIN and SIGTTOU whose action is the default stop in an orphaned process
//!   group (nobody could resume it), so a program run as the session leader itself
//!   could not be stopped by Ctrl+Z.
//!
//! It reports each change of the job on the terminal, `[job-shell PID] ...`, and
//! exits as a shell's `$?` would read: the job's status, or 128 + the signal that
//! killed it. Resuming a stopped job (`fg`) is left to the test: SIGCONT to the
//! job's process group, which is all `fg` sends once the job is in the foreground.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, tcsetpgrp};

fn say(line: &str) {
    let _ = writeln!(
        std::io::stdout(),
        "[job-shell {}] {line}",
        std::process::id()
    );
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: job-shell PROGRAM [ARG...]");
        return ExitCode::from(2);
    };
    let child = match Command::new(program).args(rest).process_group(0).spawn() {
        Ok(child) => child,
        Err(e) => {
            say(&format!("cannot run {program:?}: {e}"));
            return ExitCode::from(127);
        }
    };
    let job = Pid::from_raw(child.id() as i32);
    // We are still the foreground group, so tcsetpgrp needs no SIGTTOU dance.
    if let Err(e) = tcsetpgrp(std::io::stdin(), job) {
        say(&format!("tcsetpgrp: {e}"));
        return ExitCode::from(1);
    }
    say(&format!("job {job} in the foreground"));
    let flags = WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
    loop {
        match waitpid(job, Some(flags)) {
            Ok(WaitStatus::Stopped(_, sig)) => say(&format!("job {job} stopped by {sig:?}")),
            Ok(WaitStatus::Continued(_)) => say(&format!("job {job} continued")),
            Ok(WaitStatus::Exited(_, code)) => {
                say(&format!("job {job} exited with status {code}"));
                return ExitCode::from(code as u8);
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                say(&format!("job {job} killed by {sig:?}"));
                return ExitCode::from(128 + sig as u8);
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                say(&format!("waitpid: {e}"));
                return ExitCode::from(1);
            }
        }
    }
}
