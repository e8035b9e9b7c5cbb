//! Parent and child, narrated: how a child of ours ends, and the parent reaping it.
//!
//! The forking itself, with each side closing the ends it does not use, is
//! `pipe_demo::fork`. Here: `exit_child` makes sure the child never returns into
//! the parent's code, and `reap` waits for the child (`pipe_demo::fork::wait`, on its
//! pid) so it does not linger as a zombie, and says how it ended.

use anyhow::{Context, Result};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use pipe_demo::fork;
use std::io::Write;

use crate::say;

/// Ends the child with the outcome of its work: 0, or 1 after saying what failed.
///
/// The child must not return into `main`: the rest of `main` is the parent's.
pub fn exit_child(outcome: Result<()>) -> ! {
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            crate::complain(&format!("error: {e:#}"));
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Waits for `child` (so it leaves no zombie) and narrates how it ended.
/// An `Err` if it did not exit with status 0.
pub fn reap(role: &str, child: Pid, what: &str) -> Result<()> {
    let status = fork::wait(child).with_context(|| format!("waitpid {what} {child}"))?;
    tell_reaped(role, what, status);
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => {
            anyhow::bail!("the {what} (pid {child}) failed with exit status {code}")
        }
        WaitStatus::Signaled(_, signal, _) => {
            anyhow::bail!("the {what} (pid {child}) was killed by {signal}")
        }
        other => anyhow::bail!("the {what} (pid {child}) ended oddly: {other:?}"),
    }
}

/// Narrates how a reaped child ended.
pub fn tell_reaped(role: &str, what: &str, status: WaitStatus) {
    match status {
        WaitStatus::Exited(child, code) => {
            say!(role, "reaped {what} {child}: exited with status {code}")
        }
        WaitStatus::Signaled(child, signal, _) => {
            say!(role, "reaped {what} {child}: killed by {signal}")
        }
        _ => {}
    }
}
