//! `signal_demo`: the copyable half of signal-demo. Every signal call the demo makes,
//! narration-free, in the order a program makes them:
//!
//! 1. name a signal: [`send::parse`] (`"USR1"`, `"RTMIN+3"`), [`send::name`],
//!    [`send::rtmin`];
//! 2. block it: [`mask::block`] (sigprocmask), so one that comes early stays pending;
//! 3. either take it like a message, no handler at all: [`take::take`]
//!    (sigtimedwait(2) up to a deadline), or install the one handler, explicitly:
//!    [`catch::install`] (it notes each signal in a fixed array of atomics), and wait
//!    for it with [`catch::wait`] (ppoll(2) with a timeout);
//! 4. send: [`send::kill`], [`send::sigqueue`] (one int travels with it), from any
//!    process (`kill -USR1 PID` too);
//! 5. a child process waited for with a deadline: [`child::fork`], [`child::Child`]
//!    (SIGCHLD taken with sigtimedwait, waitpid on that child's pid; `Drop` kills
//!    and reaps it);
//! 6. end: [`catch::die_of`], die of the signal once your guards have run.
//!
//! Nothing here installs a handler or changes the mask unless you call the function
//! that says so. Every mask change is the calling thread's (pthread_sigmask): in a
//! threaded program block these signals before the first thread starts, since
//! threads inherit the mask and the kernel hands a process-directed signal to any
//! thread that has it unblocked.
//!
//! In production: the `signal-hook` crate, or a signalfd in your poll loop.

#![warn(missing_docs)]

use std::ffi::c_int;

use nix::sys::signal::Signal;

pub mod catch;
pub mod child;
pub mod mask;
pub mod send;
pub mod take;

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
    /// The int sigqueue(3) attached, for SI_QUEUE (0 otherwise, meaningless).
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

    /// "SIGUSR1", "SIGRTMIN+2": [`send::name`].
    pub fn name(&self) -> String {
        send::name(self.signo)
    }
}
