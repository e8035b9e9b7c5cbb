//! Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal was closed): stop a blocked wait,
//! remove what we made, then die of the signal.
//!
//! The handler only stores the signal's number: about all a handler may safely do.
//! It is installed without SA_RESTART, so a process asleep in sem_timedwait(3) or in
//! read(2) of a terminal or pipe comes back with EINTR (with SA_RESTART those would
//! restart); semtimedop(2) returns EINTR whatever the flag (semop(2), signal(7)). Every wait in this demo runs in a loop that
//! calls `check` first, which turns the stored number into an `Interrupted` error. That
//! error travels up like any other while the RAII guards on the way drop (semaphores
//! destroyed, segment unmapped and removed). Last, `main` calls `die_of`, so the shell
//! (or the test) sees the process was killed by the signal, as it would without a
//! handler.
//!
//! Why the waits also have a timeout: a signal landing after `check` but before the
//! wait enters the kernel only sets the flag, and an untimed wait would then sleep on.
//! With a timed wait, the loop looks at the flag again a moment later.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Result;
use nix::sys::signal::Signal;

/// The last SIGINT/SIGTERM/SIGHUP received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, without SA_RESTART (the
/// library's `catch_without_restart`). Assumes one thread: a signal goes to any thread
/// that does not block it, and only the one it interrupts comes back with EINTR.
pub fn install() -> Result<()> {
    // SIGHUP too: closing the terminal must not leave the segment behind.
    // SAFETY: `remember` only stores into an atomic, which is async-signal-safe, and no
    // other handler for these signals exists in this program to replace.
    unsafe {
        shm_demo::catch_without_restart(
            &[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP],
            remember,
        )
    }
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<Signal> {
    Signal::try_from(CAUGHT.load(Ordering::SeqCst)).ok()
}

/// `Err(Interrupted)` once SIGINT, SIGTERM or SIGHUP has arrived: every wait loop calls this.
pub fn check() -> Result<(), Interrupted> {
    match caught() {
        Some(sig) => Err(Interrupted(sig)),
        None => Ok(()),
    }
}

/// A wait was stopped by SIGINT, SIGTERM or SIGHUP.
#[derive(Debug)]
pub struct Interrupted(pub Signal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

pub use shm_demo::die_of;
