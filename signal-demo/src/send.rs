//! Sending: kill(2) and sigqueue(3).
//!
//! Only the number travels, and, with sigqueue, one int. The kernel adds who sent it
//! (pid, uid) and how (`si_code`) to the receiver's siginfo. A standard signal still
//! pending when the next of its kind comes merges with it (one pending bit); a
//! real-time one is queued with its value, up to RLIMIT_SIGPENDING (`ulimit -i`) per
//! user: beyond it sigqueue fails with EAGAIN.

use std::ffi::{c_int, c_void};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// kill(2) `signo` to the process `pid`, real-time numbers included.
///
/// `pid` must be a real process id: 0 means "my process group", -1 "every process
/// I may signal", another negative number a process group (`Pid` lets you pass
/// them all). ESRCH: no such process; EPERM: another user's.
pub fn kill(pid: Pid, signo: c_int) -> nix::Result<()> {
    // SAFETY: plain integers; the kernel checks them.
    Errno::result(unsafe { libc::kill(pid.as_raw(), signo) }).map(drop)
}

/// sigqueue(3): kill(2) plus one int, which the receiver finds as `value` in its
/// [`Caught`](crate::Caught) (`si_code` SI_QUEUE). Real-time signals sent this way are
/// queued one by one, in order; EAGAIN when the queue limit is reached.
///
/// # Examples
/// ```
/// use nix::sys::signal::SigSet;
/// use signal_demo::{mask, names, send, take};
/// use std::time::Duration;
/// let rt = names::rtmin() + 1;
/// let set = mask::set_of(&[rt]);
/// let before = mask::block(&set).unwrap(); // blocked first: it waits for us
/// send::sigqueue(nix::unistd::getpid(), rt, 42).unwrap();
/// let got = take::take(&set, Duration::from_secs(5)).unwrap().unwrap();
/// assert_eq!((got.signo, got.value, got.code), (rt, 42, libc::SI_QUEUE));
/// mask::restore(&before).unwrap();
/// ```
pub fn sigqueue(pid: Pid, signo: c_int, value: i32) -> nix::Result<()> {
    // The value travels in a union of int and pointer; libc only names the pointer.
    let value = libc::sigval {
        sival_ptr: value as isize as *mut c_void,
    };
    // SAFETY: plain values, no pointer the kernel would follow (sival_ptr is only
    // copied into the receiver's siginfo).
    Errno::result(unsafe { libc::sigqueue(pid.as_raw(), signo, value) }).map(drop)
}

/// Whether `pid` still exists, as kill(pid, 0) sees it: sends nothing.
///
/// A zombie (dead, not yet reaped by its parent) still counts as existing, and a pid
/// can be reused by a new process once reaped: for your own child, use
/// [`Child`](crate::child::Child) instead, which knows.
pub fn exists(pid: Pid) -> bool {
    !matches!(nix::sys::signal::kill(pid, None), Err(Errno::ESRCH))
}

/// raise(3): `sig` to this thread. Blocked, it stays pending until unblocked.
pub fn raise(sig: Signal) -> nix::Result<()> {
    nix::sys::signal::raise(sig)
}
