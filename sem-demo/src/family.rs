//! Parent and children: fork, end a child, reap it.
//!
//! Every act forks the processes it needs. `fork` returns a `Kid` to the parent:
//! a guard that reaps the child (so no zombie is left) and narrates how it ended.
//! If the parent leaves an act early (an error, Ctrl+C), the guard's `Drop` kills
//! the child and reaps it, so no child outlives the run. A child never returns
//! into `main`: `exit_child` ends it.

use std::io::Write;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, getpid};

use crate::say;
use crate::signals::{self, Interrupted};

/// Which process we are after `fork`.
pub enum Side {
    Parent(Kid),
    Child,
}

/// Forks. Both processes return from here; the child is named `name` (B, C...)
/// in the parent's narration.
pub fn fork(name: &'static str) -> Result<Side> {
    // A line still in our stdout buffer would be copied into the child and printed
    // twice.
    let _ = std::io::stdout().flush();
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that another thread held at the moment of fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Parent { child } => Ok(Side::Parent(Kid {
            pid: child,
            name,
            parent: getpid(),
            reaped: false,
        })),
        ForkResult::Child => Ok(Side::Child),
    }
}

/// Ends a child with the outcome of its part: status 0, or 1 after saying what
/// failed. Stopped by Ctrl+C, it dies of the signal like its parent will.
pub fn exit_child(outcome: Result<()>) -> ! {
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            if let Some(Interrupted(signal)) = e.downcast_ref::<Interrupted>() {
                let _ = signals::die_of(*signal);
            }
            _ = writeln!(std::io::stderr(), "error: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    // Not `return`: the rest of `main`, and the guards above us, are the parent's.
    std::process::exit(code)
}

/// A child the parent has not reaped yet.
pub struct Kid {
    pid: Pid,
    name: &'static str,
    /// Set at fork: a copy of this guard in a later child must do nothing.
    parent: Pid,
    reaped: bool,
}

impl Kid {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the child (so it leaves no zombie) and narrates how it ended.
    pub fn reap(mut self, role: &str) -> Result<WaitStatus> {
        let status = loop {
            signals::check()?;
            match waitpid(self.pid, None) {
                Ok(status) => break status,
                Err(Errno::EINTR) => continue, // the loop re-checks for Ctrl+C
                Err(e) => bail!("waitpid {} {}: {e}", self.name, self.pid),
            }
        };
        self.reaped = true;
        let (name, pid) = (self.name, self.pid);
        match status {
            WaitStatus::Exited(_, code) => {
                say!(role, "reaped {name} {pid}: exited with status {code}")
            }
            WaitStatus::Signaled(_, signal, _) => {
                say!(role, "reaped {name} {pid}: killed by {signal}")
            }
            other => say!(role, "reaped {name} {pid}: {other:?}"),
        }
        Ok(status)
    }

    /// Reaps the child and requires that it exited with status 0.
    pub fn reap_ok(self, role: &str) -> Result<()> {
        let name = self.name;
        match self.reap(role)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            WaitStatus::Exited(pid, code) => {
                bail!("{name} (pid {pid}) failed with exit status {code}")
            }
            WaitStatus::Signaled(pid, signal, _) => {
                bail!("{name} (pid {pid}) was killed by {signal}")
            }
            other => bail!("{name} ended oddly: {other:?}"),
        }
    }

    /// Sends SIGKILL: the child ends at once, running none of its own code.
    pub fn kill(&self) -> Result<()> {
        kill(self.pid, Signal::SIGKILL).with_context(|| format!("kill -KILL {}", self.pid))
    }
}

impl Drop for Kid {
    /// Leaving early: end the child and reap it, so it neither runs on nor lingers
    /// as a zombie.
    fn drop(&mut self) {
        if !self.reaped && getpid() == self.parent {
            let _ = kill(self.pid, Signal::SIGKILL);
            while let Err(Errno::EINTR) = waitpid(self.pid, None) {}
        }
    }
}
