//! Pending signals: block them (the mask), take them like messages (sigtimedwait),
//! and what each one says (its siginfo, [`Caught`]).
//!
//! A blocked signal is not lost: the kernel keeps it pending (a standard signal as
//! one bit, however many were sent; a real-time one queued with its value) until the
//! thread unblocks it or takes it with sigtimedwait(2). Block before the moment a
//! signal could come (before fork, before telling a peer your pid), and no signal is
//! missed between "check" and "wait".
//!
//! Taken with sigtimedwait, the kernel hands over the siginfo and forgets the
//! signal. No handler runs, nothing is async: the simplest correct way to wait for
//! a signal in a single-threaded program (signalfd is the same idea as an fd for
//! poll). Put SIGINT/SIGTERM/SIGHUP in the set too and Ctrl+C ends the wait like
//! any other event.
//!
//! Every mask change here is the calling thread's (pthread_sigmask; in a
//! single-threaded program that is the process's). Threads inherit the mask: block
//! before starting any thread, or a process-directed signal goes to a thread that
//! has it unblocked (with no handler, its default action: for most, the end).
//!
//! Stands alone: copy it with nix's feature "signal" (and libc).

use std::ffi::c_int;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::time::TimeSpec;

/// The set of these signal numbers, real-time ones included (nix's `SigSet::add`
/// takes a `Signal`, which stops at 31). A number out of range is left out.
///
/// # Examples
/// ```
/// use signal_demo::{pending, send};
/// let set = pending::set_of(&[libc::SIGUSR1, send::rtmin() + 1]);
/// assert!(set.contains(nix::sys::signal::Signal::SIGUSR1));
/// ```
pub fn set_of(signos: &[c_int]) -> SigSet {
    signos
        .iter()
        .fold(SigSet::empty(), |set, &signo| with(&set, signo))
}

/// `set` plus signal `signo`, real-time ones included.
pub fn with(set: &SigSet, signo: c_int) -> SigSet {
    edit(set, signo, libc::sigaddset)
}

/// `set` without signal `signo`, real-time ones included.
pub fn without(set: &SigSet, signo: c_int) -> SigSet {
    edit(set, signo, libc::sigdelset)
}

fn edit(
    set: &SigSet,
    signo: c_int,
    change: unsafe extern "C" fn(*mut libc::sigset_t, c_int) -> c_int,
) -> SigSet {
    let mut raw = *set.as_ref();
    // SAFETY: `raw` is a valid sigset_t copied from a SigSet; for a number out of
    // range sigaddset/sigdelset fail with EINVAL and leave it unchanged.
    unsafe { change(&mut raw, signo) };
    // SAFETY: `raw` is still a valid, initialised sigset_t.
    unsafe { SigSet::from_sigset_t_unchecked(raw) }
}

/// Blocks `set` (adds it to the mask) and returns the mask from before, for
/// [`restore`]. Signals of `set` that come from now on stay pending.
pub fn block(set: &SigSet) -> nix::Result<SigSet> {
    set.thread_swap_mask(SigmaskHow::SIG_BLOCK)
}

/// Unblocks `set`. What was pending is delivered before this returns to your code
/// (its handler runs, or its default action: a pending SIGTERM with no handler ends
/// the process). Linux delivers every one pending; POSIX promises at least one.
pub fn unblock(set: &SigSet) -> nix::Result<()> {
    set.thread_unblock()
}

/// Puts back a mask returned by [`block`] (or [`current`]).
pub fn restore(mask: &SigSet) -> nix::Result<()> {
    mask.thread_set_mask()
}

/// The calling thread's mask now.
pub fn current() -> nix::Result<SigSet> {
    SigSet::thread_get_mask()
}

/// Unblocks `set` for an instant, then blocks it again: each pending one is
/// delivered in between (its handler runs). A handler-based program's way to take
/// what came while it was busy, at a point it chooses.
pub fn let_in(set: &SigSet) -> nix::Result<()> {
    unblock(set)?;
    block(set).map(drop)
}

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
/// blocked, [`block`]: an unblocked one may be delivered instead), or says why none.
pub fn take_once(set: &SigSet, timeout: Duration) -> nix::Result<Waited> {
    // Capped at 136 years: a longer one wraps to a negative time_t (EINVAL).
    let timeout = TimeSpec::from_duration(timeout.min(Duration::from_secs(u32::MAX as u64)));
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
/// use signal_demo::{pending, send};
/// use std::time::Duration;
/// let usr2 = SigSet::from(Signal::SIGUSR2);
/// let before = pending::block(&usr2).unwrap();
/// assert_eq!(pending::take(&usr2, Duration::from_millis(10)).unwrap(), None);
/// send::kill(nix::unistd::getpid(), libc::SIGUSR2).unwrap();
/// let got = pending::take(&usr2, Duration::MAX).unwrap().unwrap(); // no panic
/// assert!(got.is(Signal::SIGUSR2) && got.code == libc::SI_USER);
/// send::kill(nix::unistd::getpid(), libc::SIGUSR2).unwrap();
/// let once = pending::take_once(&usr2, Duration::MAX).unwrap(); // no EINVAL
/// assert!(matches!(once, pending::Waited::Got(c) if c.is(Signal::SIGUSR2)));
/// pending::restore(&before).unwrap();
/// ```
pub fn take(set: &SigSet, timeout: Duration) -> nix::Result<Option<Caught>> {
    // Capped at 136 years: `Instant + Duration::MAX` would panic.
    let deadline = Instant::now() + timeout.min(Duration::from_secs(u32::MAX as u64));
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

/// One signal as the kernel described it, in the siginfo it hands to a handler
/// (SA_SIGINFO) or to sigtimedwait(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caught {
    /// The signal's number (real-time ones included, hence not a nix `Signal`).
    pub signo: c_int,
    /// `si_code`: how it was sent. `libc::SI_USER` kill(2), `SI_QUEUE` sigqueue(3),
    /// `SI_TKILL` tgkill(2)/raise(3), `SI_KERNEL` the kernel (a terminal key);
    /// for SIGCHLD, `CLD_EXITED` and friends.
    pub code: c_int,
    /// The sender's pid (for SI_USER, SI_QUEUE, SI_TKILL; the child's for SIGCHLD).
    pub pid: i32,
    /// The sender's real uid, for the same codes.
    pub uid: u32,
    /// The int sigqueue(3) attached, for SI_QUEUE. For other codes it is whatever
    /// that part of the siginfo holds (for SIGCHLD, it overlaps the exit status):
    /// ignore it.
    pub value: i32,
}

impl Caught {
    /// Reads a siginfo. Async-signal-safe (no allocation, no lock): a handler may call it.
    pub fn from_siginfo(signo: c_int, info: &libc::siginfo_t) -> Caught {
        // SAFETY: the kernel filled the whole siginfo_t. si_pid, si_uid and si_value
        // are plain integers at fixed offsets in it: reading them is always sound;
        // they mean something only for the si_code values documented above.
        let (pid, uid, value) = unsafe {
            (
                info.si_pid(),
                info.si_uid(),
                info.si_value().sival_ptr as isize as i32,
            )
        };
        Caught {
            signo,
            code: info.si_code,
            pid,
            uid,
            value,
        }
    }

    /// Whether this is `sig`.
    pub fn is(&self, sig: Signal) -> bool {
        self.signo == sig as c_int
    }
}
