//! A process by handle, not by number: pidfd_open(2), poll(2) for its exit,
//! pidfd_send_signal(2).
//!
//! A pid is a number the kernel hands out again once its process has ended and been
//! reaped. kill(2) with a pid kept from earlier can therefore reach a stranger that
//! was given the same number since. A pidfd is a file descriptor that refers to one
//! process, the one alive when it was opened: once that process has been reaped,
//! pidfd_send_signal(2) on it fails with ESRCH, whatever process has the number now.
//! It is readable (poll, epoll) once the process has terminated, so a parent needs no
//! SIGCHLD to hear of its child's end, and any process may watch one that is not its
//! child (reaping stays the parent's: waitpid, or waitid(P_PIDFD) since Linux 5.4).
//!
//! The one window left is the open itself: pidfd_open(pid) may name a recycled pid
//! too. Open it while the number surely names your process: your own child before
//! you reap it, or a parent checked with getppid(2) after the open
//! ([`PidFd::open_parent`]).
//!
//! Linux 5.3 or later (pidfd_open, 5.3; pidfd_send_signal, 5.1). nix wraps
//! neither, so both are raw syscall(2)s here, as pidfd_open(2)'s own synopsis has it.
//!
//! Stands alone: copy it with nix's features "poll" (for `ready.rs`, beside it) and
//! "process" (getppid).

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::unistd::{Pid, getppid};

use crate::ready;

/// A handle on one process. Dropping it closes the fd (the process is untouched).
///
/// # Examples
/// ```
/// use nix::errno::Errno;
/// use nix::sys::signal::SigSet;
/// use signal_demo::child::{self, Change, Forked};
/// use signal_demo::pidfd::PidFd;
/// use std::time::Duration;
/// // SAFETY: this doctest is single-threaded; the child only calls pause.
/// let mut kid = match unsafe { child::fork(&SigSet::empty()) }.unwrap() {
///     Forked::Child => loop {
///         unsafe { libc::pause() };
///     },
///     Forked::Parent(kid) => kid,
/// };
/// let handle = PidFd::open(kid.pid()).unwrap(); // before the reap: it is our child
/// assert!(!handle.has_exited().unwrap());
/// handle.send_signal(libc::SIGTERM).unwrap();
/// assert!(handle.wait_exit(Some(Duration::from_secs(10))).unwrap());
/// kid.wait(&SigSet::empty(), Duration::from_secs(10)).unwrap(); // reaped
/// assert_eq!(handle.send_signal(libc::SIGTERM), Err(Errno::ESRCH));
/// ```
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: Pid,
}

impl PidFd {
    /// pidfd_open(2): a handle on the process `pid` names now (close-on-exec).
    /// ESRCH: no such process; EINVAL: `pid` is not valid; ENOSYS: a kernel
    /// before 5.3.
    pub fn open(pid: Pid) -> nix::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags (0) by value, and returns a new
        // fd or -1 with errno set; no pointer is involved.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        let raw = Errno::result(rc)? as c_int;
        // SAFETY: the kernel just gave us this fd; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(PidFd { fd, pid })
    }

    /// A handle on our parent, `expected` (its pid, noted before the fork), or None
    /// if it is gone already. The trick: open by number, then ask getppid(2) again.
    /// A parent that died before the open made us an orphan (getppid changes at that
    /// moment) and its number may name another process by now; if getppid() still
    /// says `expected` after the open, the parent was alive through the open, so the
    /// handle is its.
    pub fn open_parent(expected: Pid) -> nix::Result<Option<PidFd>> {
        if getppid() != expected {
            return Ok(None);
        }
        let handle = match PidFd::open(expected) {
            Ok(h) => h,
            Err(Errno::ESRCH) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok((getppid() == expected).then_some(handle))
    }

    /// The pid it was opened for (the number may name another process by now).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// pidfd_send_signal(2): `signo` to this process, as kill(2) would send it (the
    /// receiver's siginfo says SI_USER, our pid and uid). ESRCH once the process
    /// has been reaped, even if its number names a new process by then; EPERM: not
    /// ours to signal.
    pub fn send_signal(&self, signo: c_int) -> nix::Result<()> {
        let no_info: *const libc::siginfo_t = std::ptr::null();
        // SAFETY: the fd is open and ours; a null info means "as kill(2)", which
        // the kernel then fills in itself; flags must be 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signo,
                no_info,
                0,
            )
        };
        Errno::result(rc).map(drop)
    }

    /// Whether the process has terminated (its pidfd is readable), without waiting.
    /// A zombie counts: terminated, not reaped yet.
    pub fn has_exited(&self) -> nix::Result<bool> {
        self.wait_exit(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` (None: no limit) for the process to terminate: true
    /// if it did. Poll the fd yourself ([`ready::readable`]) to wait for other
    /// things at the same time.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> nix::Result<bool> {
        Ok(ready::readable(&[self.fd.as_fd()], timeout)?[0])
    }

    /// The fd's number, for /proc/PID/fdinfo/N (its `Pid:` line names the process,
    /// -1 once it has been reaped).
    pub fn raw(&self) -> c_int {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
