//! Parent and children, narrated: fork, end a child, reap it.
//!
//! Every act forks the processes it needs. `fork` returns a `Kid` to the parent:
//! `sem_demo::process::Child` (reaped by its own pid; killed and reaped by its
//! `Drop` if the parent leaves an act early, an error or Ctrl+C, so no child
//! outlives the run) with the child's name, so the narration says how it ended.
//! A child never returns into `main`: `exit_child` ends it.

use std::io::Write;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use sem_demo::process::{self, Child, Forked};

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
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that another thread held at the moment of fork.
    match unsafe { process::fork() }.context("fork")? {
        Forked::Parent(child) => Ok(Side::Parent(Kid { child, name })),
        Forked::Child => Ok(Side::Child),
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

/// A child the parent has not reaped yet, with its name for the narration.
pub struct Kid {
    child: Child,
    name: &'static str,
}

impl Kid {
    pub fn pid(&self) -> Pid {
        self.child.pid()
    }

    /// Waits for the child (so it leaves no zombie) and narrates how it ended.
    pub fn reap(self, role: &str) -> Result<WaitStatus> {
        let (name, pid) = (self.name, self.child.pid());
        let status = match self.child.wait(&signals::stopped) {
            Ok(status) => status,
            Err(Errno::EINTR) => {
                signals::check()?; // Ctrl+C: the Interrupted error
                bail!("waitpid {name} {pid}: interrupted")
            }
            Err(e) => bail!("waitpid {name} {pid}: {e}"),
        };
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
        let pid = self.child.pid();
        self.child
            .kill()
            .with_context(|| format!("kill -KILL {pid}"))
    }
}
