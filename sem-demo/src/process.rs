//! Related processes: fork, and a guard for the child that reaps it on every way out.
//!
//! A semaphore between a parent and its child is the simplest case: both get the
//! semaphores (and an anonymous shared page, [`crate::shared`]) at fork. The parent
//! holds a [`Child`] per child: waited for by its own pid (never -1: other children
//! are not ours to reap), and killed and reaped by `Drop` if the parent leaves early,
//! so no child runs on and no zombie is left.
//!
//! Needs nix with the features "process" and "signal".

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, getpid};

/// Which process we are after [`fork`].
pub enum Forked {
    /// The parent, with its child.
    Parent(Child),
    /// The child. End it with `std::process::exit` (or `_exit`), never by returning
    /// into the parent's code: that would run on as a second parent, and a guard that
    /// does not check its pid (this crate's do) would remove the parent's objects.
    Child,
}

/// Forks, flushing stdout first (a line in its buffer would be printed twice).
///
/// # Safety
/// Only in a single-threaded program (or one whose child calls only
/// async-signal-safe functions, then exec or `_exit`): the child has one thread,
/// and a lock another thread held at the moment of fork (the allocator's,
/// stdout's) stays locked in it forever.
///
/// # Examples
/// ```
/// use sem_demo::process::{self, Forked};
/// use std::time::Duration;
/// // SAFETY: this doctest is single-threaded.
/// match unsafe { process::fork() }.unwrap() {
///     Forked::Child => loop {
///         std::thread::sleep(Duration::from_secs(1));
///     },
///     Forked::Parent(child) => {
///         let pid = child.pid();
///         drop(child); // SIGKILL, then waitpid: no child left running, no zombie
///         assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
///     }
/// }
/// ```
pub unsafe fn fork() -> nix::Result<Forked> {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: the caller promises the conditions above.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(Child {
            pid: child,
            parent: getpid(),
            reaped: false,
        })),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// A child not reaped yet. `Drop` kills (SIGKILL) and reaps it.
pub struct Child {
    pid: Pid,
    /// Set at fork: a copy of this guard in a later child does nothing.
    parent: Pid,
    reaped: bool,
}

impl Child {
    /// Its pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// waitpid on this child's pid until it ends, so it leaves no zombie. An EINTR
    /// (a signal handler ran) asks `stop()`: yes returns EINTR with the child still
    /// guarded (dropping it then kills and reaps it). A signal that lands just before
    /// the call only sets the caller's flag; waitpid then sleeps until the child ends.
    pub fn wait(mut self, stop: &dyn Fn() -> bool) -> nix::Result<WaitStatus> {
        loop {
            if stop() {
                return Err(Errno::EINTR);
            }
            match waitpid(self.pid, None) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Ok(_) | Err(Errno::EINTR) => {} // stopped or continued: not ended
                Err(e) => return Err(e),
            }
        }
    }

    /// SIGKILL: the child ends at once, running no code of its own (no guard, no
    /// handler). Reap it afterwards with [`wait`](Self::wait).
    pub fn kill(&self) -> nix::Result<()> {
        kill(self.pid, Signal::SIGKILL)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped && getpid() == self.parent {
            let _ = kill(self.pid, Signal::SIGKILL);
            while let Err(Errno::EINTR) = waitpid(self.pid, None) {}
        }
    }
}
