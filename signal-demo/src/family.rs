//! Parent and child: fork, the child's exit, and waiting for the child with a deadline.
//!
//! waitpid(2) has no timeout, and a parent that waits forever for a stuck child hangs
//! too. So the parent blocks SIGCHLD before fork (the kernel sends it each time a
//! child stops, continues or ends) and sleeps in sigtimedwait(2) for it, with a
//! timeout, between two waitpid(WNOHANG) looks. Blocked, no SIGCHLD is lost, not even
//! one that comes before the parent starts waiting. Signals telling a parent about
//! its children: the oldest use of the mechanism.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::{ffi, say};

/// The child, as its parent sees it.
pub struct Kid {
    pid: Pid,
    /// Its end, once waitpid has reported it (then it is reaped: no second look).
    ended: Option<WaitStatus>,
}

/// Which process we are after `fork`.
pub enum Side {
    Parent(Kid),
    Child,
}

/// Forks. Both processes return from here with a copy of everything: memory, open
/// file descriptors, signal handlers and the signal mask.
pub fn fork() -> Result<Side> {
    SigSet::from(Signal::SIGCHLD)
        .thread_block()
        .context("sigprocmask SIGCHLD")?;
    // A line still in our stdout buffer would be copied into the child and printed
    // twice.
    let _ = std::io::stdout().flush();
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that some other thread held at the moment of fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Parent { child } => Ok(Side::Parent(Kid {
            pid: child,
            ended: None,
        })),
        ForkResult::Child => Ok(Side::Child),
    }
}

/// Ends the child with the outcome of its work: 0, or 1 after saying what failed.
/// The child must not return into `main`: the rest of `main` is the parent's.
pub fn exit_child(outcome: Result<()>) -> ! {
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

impl Kid {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// A look without waiting: how it ended, if it has (it is then reaped).
    pub fn has_ended(&mut self) -> Result<Option<WaitStatus>> {
        if self.ended.is_none() {
            let status = waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).context("waitpid")?;
            if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                self.ended = Some(status);
            }
        }
        Ok(self.ended)
    }

    /// Waits up to `limit` for the child to stop, continue or end, as a shell waits
    /// for its job (waitpid with WUNTRACED and WCONTINUED).
    pub fn wait_change(&mut self, limit: Duration) -> Result<WaitStatus> {
        let deadline = Instant::now() + limit;
        let sigchld = SigSet::from(Signal::SIGCHLD);
        loop {
            if let Some(ended) = self.ended {
                return Ok(ended);
            }
            let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
            match waitpid(self.pid, Some(flags)).context("waitpid")? {
                WaitStatus::StillAlive => {}
                status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    self.ended = Some(status);
                }
                change => return Ok(change),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.ended.is_none() {
                if left.is_zero() {
                    bail!(
                        "the reader (pid {}) did not stop, continue or end within {limit:?}",
                        self.pid
                    );
                }
                // Sleep until the kernel says something happened to a child.
                ffi::sigtimedwait(&sigchld, left).context("sigtimedwait SIGCHLD")?;
            }
        }
    }

    /// Waits up to `limit` for the child to end, reaps it (no zombie is left), and
    /// says how it ended. An `Err` if it did not exit with status 0.
    pub fn reap(mut self, role: &str, limit: Duration) -> Result<()> {
        let status = loop {
            match self.wait_change(limit)? {
                ended @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break ended,
                _ => continue, // a stop or a continue: not the end yet
            }
        };
        let pid = self.pid;
        // After waitpid the kernel has freed the child's last trace, its /proc entry.
        let gone = if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            String::new() // the pid was reused already: nothing to show
        } else {
            format!("; /proc/{pid} is gone: no zombie left")
        };
        say!(role, "reaped reader {pid}: {}{gone}", describe(status));
        match status {
            WaitStatus::Exited(_, 0) => Ok(()),
            _ => bail!("the reader (pid {pid}) {}", describe(status)),
        }
    }

    /// The error path: the parent gives up, so it ends the child (which may be
    /// waiting for it, or stopped) and reaps it, rather than leave it behind.
    pub fn kill_and_reap(mut self, role: &str, limit: Duration) {
        if matches!(self.has_ended(), Ok(None)) {
            let _ = kill(self.pid, Signal::SIGKILL); // works on a stopped process too
        }
        let _ = self.reap(role, limit);
    }
}

/// Pins this process to one CPU (`sched_setaffinity`), if asked: `--cpus`.
pub fn run_on_cpu(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}

/// How a child ended, in words: "exited with status 0", "killed by SIGKILL".
pub fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
        WaitStatus::Stopped(_, sig) => format!("stopped by {sig}"),
        WaitStatus::Continued(_) => "continued".into(),
        other => format!("{other:?}"),
    }
}
