//! Signals as data: a signalfd(2), read like a file, polled beside other fds.
//!
//! Block the signals (the mask), then open a signalfd for them: each one that comes
//! stays pending, and a read(2) of the fd takes it and returns its description, a
//! 128-byte `struct signalfd_siginfo` (signal, `ssi_code`, sender's pid and uid, the
//! sigqueue(3) value). No handler runs; the code that reacts is ordinary code in your
//! loop, so it may print, allocate and take locks, which a handler may not
//! (signal-safety(7)). And since the fd is readable while one is pending, poll(2)
//! waits for signals and for data in one call ([`crate::ready::readable`]).
//!
//! What does not change: a standard signal pending twice is still one (one bit), a
//! real-time one queues with its value; SIGKILL and SIGSTOP cannot be blocked, and
//! signalfd(2) silently leaves them out of its mask; the fd reads the same pending set that
//! sigtimedwait(2) takes from, and a signal unblocked is delivered, not read. The
//! mask is the calling thread's: in a threaded program block the set before the
//! first thread starts, or another thread that has it unblocked takes it (by its
//! handler, or its default action). A child made by fork(2) inherits the fd (it then
//! reads its own signals, not ours) and the mask; across execve(2) the mask survives
//! but our CLOEXEC fd does not, so block only what the new program expects.
//!
//! Stands alone with `pending.rs` beside it (for `Caught` and the mask); nix's
//! features "signal" and "poll" (for `ready.rs`, if you poll).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd, siginfo};

use crate::pending::{self, Caught};

/// The size of one `struct signalfd_siginfo`, what each read(2) takes: 128 bytes.
pub const SIGINFO_BYTES: usize = std::mem::size_of::<siginfo>();

/// An open signalfd and the mask from before it (its signals are blocked).
///
/// Dropping it closes the fd but leaves the signals blocked: unblocking would
/// deliver whatever is pending (for most signals with no handler: the end of the
/// process). Put the mask back yourself with [`Signals::mask_before`] when that is
/// what you want.
///
/// # Examples
/// ```
/// use nix::sys::signal::{SigSet, Signal};
/// use signal_demo::{ready, send, signalfd::Signals};
/// use std::os::fd::AsFd;
/// let signals = Signals::open(&SigSet::from(Signal::SIGUSR2)).unwrap();
/// assert_eq!(signals.take().unwrap(), None); // nothing pending: EAGAIN
/// send::kill(nix::unistd::getpid(), libc::SIGUSR2).unwrap(); // stays pending
/// assert_eq!(ready::readable(&[signals.as_fd()], None).unwrap(), vec![true]);
/// let got = signals.take().unwrap().unwrap();
/// assert!(got.is(Signal::SIGUSR2) && got.code == libc::SI_USER);
/// assert_eq!(got.pid as u32, std::process::id());
/// signal_demo::pending::restore(signals.mask_before()).unwrap();
/// ```
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
    before: SigSet,
}

impl Signals {
    /// Blocks `set` (sigprocmask, this thread) and opens a signalfd for it,
    /// non-blocking (a read with nothing pending fails with EAGAIN: poll first) and
    /// close-on-exec. Block first: a signal that comes between the two calls then
    /// waits in the fd instead of ending the process.
    pub fn open(set: &SigSet) -> nix::Result<Signals> {
        let before = pending::block(set)?;
        match SignalFd::with_flags(set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
            Ok(fd) => Ok(Signals { fd, before }),
            Err(e) => {
                let _ = pending::restore(&before);
                Err(e)
            }
        }
    }

    /// Takes one pending signal of the set: one read(2) of one `signalfd_siginfo`.
    /// None when none is pending. Lowest number first, as for delivery, but those
    /// sent to this thread (raise(3), tgkill) before those sent to the process
    /// (kill(2)): the kernel empties the thread's pending set first.
    pub fn take(&self) -> nix::Result<Option<Caught>> {
        Ok(self.fd.read_signal()?.map(|info| from_siginfo(&info)))
    }

    /// The thread's mask from before [`Signals::open`], for `pending::restore`.
    pub fn mask_before(&self) -> &SigSet {
        &self.before
    }

    /// The fd's number, for /proc/PID/fdinfo/N (its `sigmask:` line is the set).
    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The fields of a `signalfd_siginfo` that [`Caught`] keeps: `ssi_signo`,
/// `ssi_code`, `ssi_pid`, `ssi_uid`, and `ssi_int` (the sigqueue(3) value, for
/// SI_QUEUE; for other codes, ignore it).
pub fn from_siginfo(info: &siginfo) -> Caught {
    Caught {
        signo: info.ssi_signo as i32,
        code: info.ssi_code,
        pid: info.ssi_pid as i32,
        uid: info.ssi_uid,
        value: info.ssi_int,
    }
}
