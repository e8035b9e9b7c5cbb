//! The signal calls nix 0.31 does not wrap, each wrapped once here in a small safe
//! function: real-time signals (nix's `Signal` and `SigSet` stop at 31), sigqueue(3),
//! sigtimedwait(2), and reading the fields of a `siginfo_t`.

use std::ffi::{c_int, c_void};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::time::TimeSpec;
use nix::unistd::Pid;

use crate::catch::Caught;

/// The first real-time signal. glibc keeps the kernel's first two (32, 33) for its
/// threads, so this is 34 on Linux with glibc: always ask, never hard-code it.
pub fn rtmin() -> c_int {
    libc::SIGRTMIN()
}

pub fn rtmax() -> c_int {
    libc::SIGRTMAX()
}

/// "SIGUSR1", or "SIGRTMIN+2" for a real-time signal.
pub fn signal_name(signo: c_int) -> String {
    match Signal::try_from(signo) {
        Ok(sig) => sig.as_str().to_string(),
        Err(_) if signo == rtmin() => "SIGRTMIN".to_string(),
        Err(_) if signo > rtmin() && signo <= rtmax() => format!("SIGRTMIN+{}", signo - rtmin()),
        Err(_) => format!("signal {signo}"),
    }
}

/// sigqueue(3): kill(2) plus one integer, which the receiver finds in its siginfo
/// (`si_value`). Real-time signals sent this way are queued one by one, in order.
pub fn sigqueue(pid: Pid, signo: c_int, value: i32) -> nix::Result<()> {
    // The value travels in a union of int and pointer; libc only names the pointer.
    let value = libc::sigval {
        sival_ptr: value as isize as *mut c_void,
    };
    // SAFETY: plain values, no pointer the kernel would follow (sival_ptr is only
    // copied into the receiver's siginfo).
    let rc = unsafe { libc::sigqueue(pid.as_raw(), signo, value) };
    Errno::result(rc).map(drop)
}

/// The handler signature the kernel calls with SA_SIGINFO.
pub type InfoHandler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);

/// sigaction(2) for a real-time signal, which nix's `Signal` cannot name: `handler`
/// with SA_SIGINFO, and no SA_RESTART, like the standard ones (see catch.rs).
pub fn install_realtime(signo: c_int, handler: InfoHandler) -> nix::Result<()> {
    // SAFETY: `sigaction` is a plain C struct; all-zero bytes are a valid value
    // (no handler, no flags), which we then fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action.sa_mask` is a valid sigset_t we own; sigemptyset only writes it.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialised; `handler` only touches atomics (catch.rs),
    // so it is async-signal-safe; the old action is not asked for (null).
    let rc = unsafe { libc::sigaction(signo, &action, std::ptr::null_mut()) };
    Errno::result(rc).map(drop)
}

/// `set` plus signal `signo`, real-time ones included (nix's `add` takes a `Signal`).
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

/// sigtimedwait(2): takes one pending signal of `set` (which the caller keeps
/// blocked) without running any handler, or returns None after `timeout`. The signal
/// is read like a message: the kernel hands over its siginfo and forgets it.
///
/// None also when the wait was cut short: a process stopped (Ctrl+Z, SIGSTOP) while
/// in sigtimedwait gets EINTR once SIGCONT wakes it, and the kernel does not restart
/// this call. Every caller waits in a loop with its own deadline, so an early return
/// is just a short slice.
pub fn sigtimedwait(set: &SigSet, timeout: Duration) -> nix::Result<Option<Caught>> {
    Ok(match wait_for_signal(set, timeout)? {
        Waited::Got(c) => Some(c),
        Waited::RanOut | Waited::Interrupted => None,
    })
}

/// How a sigtimedwait(2) ended.
pub enum Waited {
    Got(Caught),
    /// The timeout passed, nothing came (EAGAIN).
    RanOut,
    /// Cut short (EINTR): we were stopped, and SIGCONT resumed us.
    Interrupted,
}

/// sigtimedwait(2), telling a timeout from a wait cut short by a stop.
pub fn wait_for_signal(set: &SigSet, timeout: Duration) -> nix::Result<Waited> {
    let timeout = TimeSpec::from_duration(timeout);
    // SAFETY: all-zero bytes are a valid siginfo_t (a C struct of integers).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: the three pointers are valid for the call; the kernel writes `info`.
    let rc = unsafe { libc::sigtimedwait(set.as_ref(), &mut info, timeout.as_ref()) };
    match Errno::result(rc) {
        Ok(signo) => Ok(Waited::Got(caught(signo, &info))),
        Err(Errno::EAGAIN) => Ok(Waited::RanOut),
        Err(Errno::EINTR) => Ok(Waited::Interrupted),
        Err(e) => Err(e),
    }
}

/// What a siginfo says: how the signal was sent (`si_code`), by whom (`si_pid`) and
/// the value sigqueue(3) attached (`si_value`). Async-signal-safe: no allocation, no
/// lock, so the handler calls it too.
pub fn caught(signo: c_int, info: &libc::siginfo_t) -> Caught {
    // SAFETY: the kernel filled the whole siginfo_t. si_pid and si_value are plain
    // integers at fixed offsets in it: reading them is always sound, and they mean
    // something only for the si_code values catch.rs interprets them for.
    let (pid, value) = unsafe { (info.si_pid(), info.si_value().sival_ptr as isize as i32) };
    Caught {
        signo,
        code: info.si_code,
        pid,
        value,
    }
}
