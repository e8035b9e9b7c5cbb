//! Taking a signal like a message: sigtimedwait(2), no handler at all.
//!
//! The caller keeps the signals blocked ([`mask::block`](crate::mask::block)), so they
//! stay pending; sigtimedwait takes one, with its siginfo, and the kernel forgets it.
//! No handler runs, nothing is async: the simplest correct way to wait for a signal
//! in a single-threaded program (signalfd is the same idea as an fd for poll).
//! Put SIGINT/SIGTERM/SIGHUP in the set too and Ctrl+C ends the wait like any event.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::SigSet;
use nix::sys::time::TimeSpec;

use crate::Caught;

/// How one sigtimedwait(2) call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// A signal of the set, taken.
    Got(Caught),
    /// The timeout passed, nothing came (EAGAIN).
    RanOut,
    /// Cut short (EINTR): a handler for a signal outside the set ran, or the process
    /// was stopped (Ctrl+Z, SIGSTOP) and SIGCONT resumed it; the kernel does not
    /// restart this call.
    Interrupted,
}

/// One sigtimedwait(2): takes one pending signal of `set` (which the caller keeps
/// blocked: an unblocked one may be delivered instead of taken), or says why none.
pub fn take_once(set: &SigSet, timeout: Duration) -> nix::Result<Waited> {
    let timeout = TimeSpec::from_duration(timeout);
    // SAFETY: all-zero bytes are a valid siginfo_t (a C struct of integers).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: the three pointers are valid for the call; the kernel writes `info`.
    let rc = unsafe { libc::sigtimedwait(set.as_ref(), &mut info, timeout.as_ref()) };
    match Errno::result(rc) {
        Ok(signo) => Ok(Waited::Got(Caught::from_siginfo(signo, &info))),
        Err(Errno::EAGAIN) => Ok(Waited::RanOut),
        Err(Errno::EINTR) => Ok(Waited::Interrupted),
        Err(e) => Err(e),
    }
}

/// Takes one pending signal of `set` (kept blocked by the caller), waiting up to
/// `timeout` for one to come: None when none came in time.
///
/// The deadline is real: a wait cut short (EINTR) goes on for what is left of it. It
/// is measured on CLOCK_MONOTONIC, which keeps counting while the process is stopped;
/// where a Ctrl+Z must not count, loop over [`take_once`] in short slices instead.
///
/// # Examples
/// ```
/// use nix::sys::signal::{SigSet, Signal};
/// use signal_demo::{mask, send, take};
/// use std::time::Duration;
/// let usr2 = SigSet::from(Signal::SIGUSR2);
/// let before = mask::block(&usr2).unwrap();
/// assert_eq!(take::take(&usr2, Duration::from_millis(10)).unwrap(), None);
/// send::kill(nix::unistd::getpid(), libc::SIGUSR2).unwrap();
/// let got = take::take(&usr2, Duration::from_secs(5)).unwrap().unwrap();
/// assert!(got.is(Signal::SIGUSR2) && got.code == libc::SI_USER);
/// mask::restore(&before).unwrap();
/// ```
pub fn take(set: &SigSet, timeout: Duration) -> nix::Result<Option<Caught>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match take_once(set, left)? {
            Waited::Got(caught) => return Ok(Some(caught)),
            Waited::RanOut => return Ok(None),
            Waited::Interrupted if left.is_zero() => return Ok(None),
            Waited::Interrupted => {}
        }
    }
}
