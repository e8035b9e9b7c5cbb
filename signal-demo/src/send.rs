//! Naming a signal and sending it: names and numbers (real-time ones included:
//! nix's `Signal` stops at 31), kill(2) and sigqueue(3).
//!
//! The first real-time signal is not a constant: glibc keeps the kernel's first two
//! (32, 33) for its threads, so SIGRTMIN is 34 on Linux with glibc. Always ask.
//!
//! Only the number travels, and, with sigqueue, one int. The kernel adds who sent it
//! (pid, uid) and how (`si_code`) to the receiver's siginfo. A standard signal still
//! pending when the next of its kind comes merges with it (one pending bit); a
//! real-time one is queued with its value, up to RLIMIT_SIGPENDING (`ulimit -i`) per
//! user: beyond it sigqueue fails with EAGAIN.
//!
//! Stands alone: copy it with nix's feature "signal" (and libc).

use std::ffi::{c_int, c_void};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// kill(2) `signo` to the process `pid`, real-time numbers included.
///
/// A `pid` above 0 is one process; 0 means "my process group", -1 "every process
/// I may signal", another negative number a process group (`Pid` lets you pass
/// them all, so check the number you got from outside). ESRCH: no such process;
/// EPERM: not ours to signal (another user's).
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
/// use signal_demo::{pending, send};
/// use std::time::Duration;
/// let rt = send::rtmin() + 1;
/// let set = pending::set_of(&[rt]);
/// let before = pending::block(&set).unwrap(); // blocked first: it waits for us
/// send::sigqueue(nix::unistd::getpid(), rt, 42).unwrap();
/// let got = pending::take(&set, Duration::from_secs(5)).unwrap().unwrap();
/// assert_eq!((got.signo, got.value, got.code), (rt, 42, libc::SI_QUEUE));
/// pending::restore(&before).unwrap();
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

/// SIGRTMIN, asked of the C library at run time: 34 with glibc, never hard-code it.
pub fn rtmin() -> c_int {
    libc::SIGRTMIN()
}

/// SIGRTMAX (64 on x86-64 and arm64 Linux; 127 with glibc on MIPS).
pub fn rtmax() -> c_int {
    libc::SIGRTMAX()
}

/// "SIGUSR1", "SIGRTMIN", "SIGRTMIN+2", or "signal N" for a number that is neither.
///
/// # Examples
/// ```
/// use signal_demo::send::{name, rtmin};
/// assert_eq!(name(libc::SIGUSR1), "SIGUSR1");
/// assert_eq!(name(rtmin() + 2), "SIGRTMIN+2");
/// ```
pub fn name(signo: c_int) -> String {
    match Signal::try_from(signo) {
        Ok(sig) => sig.as_str().to_string(),
        Err(_) if signo == rtmin() => "SIGRTMIN".to_string(),
        Err(_) if signo > rtmin() && signo <= rtmax() => format!("SIGRTMIN+{}", signo - rtmin()),
        Err(_) => format!("signal {signo}"),
    }
}

/// A signal's number from its name, with or without SIG, any case: `SIGUSR1`,
/// `usr1`, `RTMIN`, `RTMIN+2`, `SIGRTMAX-1`. An `Err` is one line saying why
/// (`RTMIN+2147483647` is out of range, not an overflow).
///
/// Numbers ("10") are refused: they differ between architectures.
///
/// # Examples
/// ```
/// use signal_demo::send::{parse, rtmin};
/// assert_eq!(parse("usr1"), Ok(libc::SIGUSR1));
/// assert_eq!(parse("RTMIN+3"), Ok(rtmin() + 3));
/// assert!(parse("USR3").is_err());
/// ```
pub fn parse(word: &str) -> Result<c_int, String> {
    let upper = word.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(found) = realtime_number(bare) {
        return found.map_err(|why| format!("{word}: {why}"));
    }
    format!("SIG{bare}")
        .parse::<Signal>()
        .map(|sig| sig as c_int)
        .map_err(|_| {
            format!(
                "{word}: not a signal name (try USR1, SIGUSR2, TERM, RTMIN+1; `kill -l` lists them)"
            )
        })
}

/// `RTMIN`, `RTMIN+N`, `RTMAX`, `RTMAX-N`: None if `bare` is not of that shape.
fn realtime_number(bare: &str) -> Option<Result<c_int, String>> {
    let (min, max) = (rtmin(), rtmax());
    let (base, sign, rest) = if let Some(rest) = bare.strip_prefix("RTMIN") {
        (min, 1, rest)
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        (max, -1, rest)
    } else {
        return None;
    };
    let offset = match rest {
        "" => 0,
        _ => {
            let digits = rest.strip_prefix(if sign > 0 { '+' } else { '-' });
            match digits.and_then(|d| d.parse::<c_int>().ok()) {
                Some(n) => n,
                None => return Some(Err("not a signal name (RTMIN+N or RTMAX-N)".into())),
            }
        }
    };
    // Checked: RTMIN+2147483647 would overflow a c_int.
    let number = offset.checked_mul(sign).and_then(|o| base.checked_add(o));
    Some(
        if let Some(number) = number.filter(|n| (min..=max).contains(n)) {
            Ok(number)
        } else {
            Err(format!(
                "out of range: real-time signals here are RTMIN ({min}) to RTMAX ({max})"
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_sig_in_any_case() {
        for word in ["SIGUSR1", "USR1", "usr1", "SigUsr1"] {
            assert_eq!(parse(word), Ok(libc::SIGUSR1), "{word}");
        }
        assert_eq!(parse("RTMIN"), Ok(rtmin()));
        assert_eq!(parse("SIGRTMIN+2"), Ok(rtmin() + 2));
        assert_eq!(parse("rtmax-1"), Ok(rtmax() - 1));
        for bad in [
            "USR3",
            "SIG",
            "",
            "RTMIN+99",
            "RTMIN-1",
            "RTMAX+1",
            "RTMINx",
            "10",
            "RTMIN+2147483647",
            "RTMAX-2147483647",
            "RTMAX-2147483648",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
