//! `signal-demo writer --pid PID [SIGNAL...]`: sends signals to a process.
//!
//! A standard signal goes with kill(2): only its number travels (the kernel adds the
//! sender's pid and uid to the receiver's siginfo). A real-time signal goes with
//! sigqueue(3), which adds one integer (here, the signal's position on the command
//! line): the receiver finds it in its siginfo, and real-time signals queue, so each
//! one sent is received (up to RLIMIT_SIGPENDING queued at once: beyond it sigqueue
//! fails with EAGAIN).

use std::ffi::c_int;

use anyhow::{Result, anyhow};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use signal_demo::send;

use crate::say;

const WRITER: &str = "writer";

pub fn run(pid: Pid, signals: &[c_int]) -> Result<()> {
    let signals = if signals.is_empty() {
        &[libc::SIGUSR1][..]
    } else {
        signals
    };
    for (k, &signo) in signals.iter().enumerate() {
        let name = send::name(signo);
        match Signal::try_from(signo) {
            Ok(sig) => {
                send::kill(pid, sig as c_int).map_err(|e| explain(e, pid, "kill(2)"))?;
                say!(WRITER, "sent {name} to {pid} with kill(2)");
            }
            Err(_) => {
                send::sigqueue(pid, signo, k as i32).map_err(|e| explain(e, pid, "sigqueue(3)"))?;
                say!(
                    WRITER,
                    "sent {name} to {pid} with sigqueue(3), value {k}: real-time, queued with its value"
                );
            }
        }
    }
    for (i, &signo) in signals.iter().enumerate() {
        let times = signals.iter().filter(|&&s| s == signo).count();
        let first = signals.iter().position(|&s| s == signo) == Some(i);
        if first && times > 1 && Signal::try_from(signo).is_ok() {
            say!(
                WRITER,
                "{} went {times} times: one still pending when the next comes merges with it, \
                 so the receiver may see it fewer times",
                send::name(signo)
            );
        }
    }
    Ok(())
}

/// The kernel's refusal, in words.
fn explain(e: Errno, pid: Pid, call: &str) -> anyhow::Error {
    match e {
        Errno::ESRCH => anyhow!(
            "no process {pid}: {call} failed with ESRCH (no such process): start \
             `signal-demo reader` and pass the pid it prints"
        ),
        Errno::EPERM => anyhow!(
            "not allowed to signal process {pid}: {call} failed with EPERM (it belongs to \
             another user)"
        ),
        e => anyhow!("{call} to process {pid}: {e}"),
    }
}
