//! A child process waited for with a deadline: fork, SIGCHLD, waitpid.
//!
//! waitpid(2) has no timeout, and a parent that waits forever for a stuck child
//! hangs too. So the parent blocks SIGCHLD before fork (the kernel sends it each time
//! a child stops, continues or ends) and sleeps in sigtimedwait(2) for it, with a
//! timeout, between two waitpid(WNOHANG) looks at this child's pid (never -1: other
//! children are not ours to reap). Blocked, a SIGCHLD that comes before the parent
//! waits stays pending, so the wake-up is never missed; several child events may
//! merge into one SIGCHLD (one pending bit), which is why each wake-up looks with
//! waitpid again rather than count signals.
//!
//! A [`Child`] dropped before it was reaped is killed (SIGKILL) and reaped: no
//! zombie and no child left running, whatever path the parent took.
//!
//! Needs `pending.rs` and `send.rs` beside it; nix features "signal", "process".

use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::pending::{self, Caught, Waited};
use crate::send;

/// Which process we are after [`fork`].
pub enum Forked {
    /// The parent, with its child.
    Parent(Child),
    /// The child. It must end with `std::process::exit` (or `_exit`), never by
    /// returning into the parent's code.
    Child,
}

/// Forks, with SIGCHLD and `also` blocked in the parent from before the fork (take
/// them with [`Child::wait_change`]: none that comes early is lost). The child gets
/// back the mask from before this call: these are the parent's business. If fork
/// fails, the mask from before goes back too.
///
/// Flushes stdout first: a line still in its buffer would be printed twice.
///
/// # Safety
/// Only in a single-threaded program (or one whose child only calls
/// async-signal-safe functions, then exec or `_exit`): the child has one thread, and
/// a lock another thread held at the moment of fork (the allocator's, stdout's)
/// stays locked in it forever.
pub unsafe fn fork(also: &SigSet) -> nix::Result<Forked> {
    let before = pending::block(&(*also | Signal::SIGCHLD))?;
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: the caller promises the conditions above.
    let forked = unsafe { nix::unistd::fork() };
    if forked.is_err() {
        let _ = pending::restore(&before); // no child: the mask as it was
    }
    match forked? {
        ForkResult::Parent { child } => Ok(Forked::Parent(Child {
            pid: child,
            ended: None,
        })),
        ForkResult::Child => {
            // Never an Err here: the child would run the caller's "fork failed"
            // path as a second parent. (With a mask from pthread_sigmask it cannot
            // fail anyway.)
            let _ = pending::restore(&before);
            Ok(Forked::Child)
        }
    }
}

/// What [`Child::wait_change`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The child stopped, continued, exited or was killed (then it is reaped).
    Child(WaitStatus),
    /// A signal of the caller's set came first (SIGINT, say).
    Signal(Caught),
    /// Neither, within the timeout.
    TimedOut,
}

/// A child of ours, by pid. Not reaped: `Drop` kills and reaps it.
///
/// # Examples
/// ```
/// use nix::sys::signal::SigSet;
/// use signal_demo::child::{self, Forked};
/// // SAFETY: this doctest is single-threaded; the child only calls pause.
/// let pid = match unsafe { child::fork(&SigSet::empty()) }.unwrap() {
///     Forked::Child => loop {
///         unsafe { libc::pause() };
///     },
///     Forked::Parent(kid) => kid.pid(), // `kid` dropped here: SIGKILL, waitpid
/// };
/// assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "no zombie");
/// ```
pub struct Child {
    pid: Pid,
    /// Its end, once waitpid has reported it (then it is reaped: no second look).
    ended: Option<WaitStatus>,
}

impl Child {
    /// Its pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// A look without waiting: how it ended, if it has (it is then reaped).
    pub fn try_wait(&mut self) -> nix::Result<Option<WaitStatus>> {
        if self.ended.is_none() {
            let status = waitpid(self.pid, Some(WaitPidFlag::WNOHANG))?;
            if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                self.ended = Some(status);
            }
        }
        Ok(self.ended)
    }

    /// Waits up to `timeout` for the child to stop, continue or end (waitpid with
    /// WUNTRACED and WCONTINUED, as a shell waits for its job), or for a signal of
    /// `also` (kept blocked by the caller, as [`fork`] does). Needs SIGCHLD blocked.
    ///
    /// # Examples
    /// ```
    /// use nix::sys::signal::SigSet;
    /// use nix::sys::wait::WaitStatus;
    /// use signal_demo::child::{self, Change, Forked};
    /// use std::time::Duration;
    /// // SAFETY: this doctest is single-threaded; the child only calls _exit.
    /// match unsafe { child::fork(&SigSet::empty()) }.unwrap() {
    ///     Forked::Child => unsafe { libc::_exit(3) },
    ///     Forked::Parent(mut kid) => {
    ///         let ended = kid.wait_change(&SigSet::empty(), Duration::MAX); // no panic
    ///         assert_eq!(ended.unwrap(), Change::Child(WaitStatus::Exited(kid.pid(), 3)));
    ///     }
    /// }
    /// ```
    pub fn wait_change(&mut self, also: &SigSet, timeout: Duration) -> nix::Result<Change> {
        // Capped at 136 years: `Instant + Duration::MAX` would panic.
        let deadline = Instant::now() + timeout.min(Duration::from_secs(u32::MAX as u64));
        let events = *also | Signal::SIGCHLD;
        loop {
            if let Some(ended) = self.ended {
                return Ok(Change::Child(ended));
            }
            let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
            match waitpid(self.pid, Some(flags))? {
                WaitStatus::StillAlive => {}
                status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    self.ended = Some(status);
                    continue;
                }
                change => return Ok(Change::Child(change)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Change::TimedOut);
            }
            // Sleep until the kernel says something happened to a child (SIGCHLD,
            // maybe another child's: the next waitpid tells), or a signal of `also`.
            match pending::take_once(&events, left)? {
                Waited::Got(c) if c.is(Signal::SIGCHLD) => {}
                Waited::Got(c) => return Ok(Change::Signal(c)),
                Waited::RanOut | Waited::Interrupted => {}
            }
        }
    }

    /// Waits up to `timeout` for the child to end, and reaps it; stops and continues
    /// are passed over. A signal of `also` first: [`Change::Signal`].
    pub fn wait(&mut self, also: &SigSet, timeout: Duration) -> nix::Result<Change> {
        // Capped at 136 years: `Instant + Duration::MAX` would panic.
        let deadline = Instant::now() + timeout.min(Duration::from_secs(u32::MAX as u64));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_change(also, left)? {
                Change::Child(WaitStatus::Stopped(..) | WaitStatus::Continued(..)) => {}
                other => return Ok(other),
            }
        }
    }

    /// Sends `sig` to the child, unless it has ended, then SIGCONT: a stopped process
    /// dies of SIGKILL at once, of another signal only once it runs again. Reap it
    /// afterwards ([`Child::wait`]).
    pub fn end(&mut self, sig: Signal) {
        if matches!(self.try_wait(), Ok(None)) {
            let _ = send::kill(self.pid, sig as i32);
            let _ = send::kill(self.pid, Signal::SIGCONT as i32);
        }
    }
}

impl Drop for Child {
    /// A child not reaped yet: SIGKILL (it works on a stopped process too, and cannot
    /// be caught), then a waitpid that blocks on this pid: no zombie left.
    fn drop(&mut self) {
        if self.ended.is_none() {
            let _ = send::kill(self.pid, Signal::SIGKILL as i32);
            // A handler of the caller's (installed without SA_RESTART) may cut the
            // wait short: wait again, or the zombie stays.
            while let Err(nix::errno::Errno::EINTR) = waitpid(self.pid, None) {}
        }
    }
}
