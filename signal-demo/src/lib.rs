//! `signal_demo`: the copyable half of signal-demo. Every signal call the demo makes,
//! narration-free, in the order a program makes them:
//!
//! 1. name a signal: [`send::parse`] (`"USR1"`, `"RTMIN+3"`), [`send::name`],
//!    [`send::rtmin`];
//! 2. block it: [`pending::block`] (sigprocmask), so one that comes early stays pending;
//! 3. either take it like a message, no handler at all: [`pending::take`]
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
//! Past the textbook, two file descriptors:
//! - [`signalfd::Signals`]: the signals blocked and read(2) as data from a signalfd
//!   (sender's pid and uid, `si_code`, value), polled beside other fds with
//!   [`ready::readable`]: no handler, so no async-signal-safety rules in the loop;
//! - [`pidfd::PidFd`]: a process by handle (pidfd_open(2)), readable when it
//!   terminates, signalled with pidfd_send_signal(2), which can never reach a
//!   recycled pid (ESRCH once the process has been reaped).
//!
//! Nothing here installs a handler or changes the mask unless you call the function
//! that says so. Every mask change is the calling thread's (pthread_sigmask): in a
//! threaded program block these signals before the first thread starts, since
//! threads inherit the mask and the kernel hands a process-directed signal to any
//! thread that has it unblocked.
//!
//! In production: the `signal-hook` crate, or a signalfd in your poll loop.

#![warn(missing_docs)]

pub mod catch;
pub mod child;
pub mod pending;
pub mod pidfd;
pub mod ready;
pub mod send;
pub mod signalfd;

pub use pending::Caught;
