//! The signal mask: which signals the kernel holds pending instead of delivering.
//!
//! A blocked signal is not lost: the kernel keeps it pending (a standard signal as
//! one bit, however many were sent; a real-time one queued with its value) until the
//! thread unblocks it or takes it with sigtimedwait(2). Block before the moment a
//! signal could come (before fork, before asking a peer to answer), and no signal is
//! missed between "check" and "wait".
//!
//! Every function here changes the calling thread's mask only (pthread_sigmask; in a
//! single-threaded program that is the process's). Threads inherit the mask: block
//! before starting any thread, or a process-directed signal goes to a thread that
//! has it unblocked.

use std::ffi::c_int;

use nix::sys::signal::{SigSet, SigmaskHow};

/// The set of these signal numbers, real-time ones included (nix's `SigSet::add`
/// takes a `Signal`, which stops at 31). A number out of range is left out.
///
/// # Examples
/// ```
/// use signal_demo::{mask, send};
/// let set = mask::set_of(&[libc::SIGUSR1, send::rtmin() + 1]);
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

/// Unblocks `set`. A pending one is delivered (its handler runs, or its default
/// action: a pending SIGTERM with no handler ends the process) before this returns.
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
