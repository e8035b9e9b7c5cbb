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

use anyhow::{Context, Result};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};

/// The last SIGINT/SIGTERM/SIGHUP received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, without SA_RESTART. Assumes
/// one thread: a signal goes to any thread that does not block it, and only the one it
/// interrupts comes back with EINTR.
pub fn install() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(remember),
        SaFlags::empty(), // no SA_RESTART: sem_timedwait and read(2) must return EINTR
        SigSet::empty(),
    );
    // SIGHUP too: closing the terminal must not leave the segment behind.
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `remember` only stores into an atomic, which is async-signal-safe,
        // and no other handler for these signals exists in this program to replace.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("sigaction {sig}"))?;
    }
    Ok(())
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

/// Dies of `sig` with its default action, as if no handler had ever been installed.
pub fn die_of(sig: Signal) -> ! {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours, so no handler can race with anything.
    let _ = unsafe { sigaction(sig, &default) };
    let _ = raise(sig);
    // Not reached for SIGINT/SIGTERM/SIGHUP, whose default action ends the process; the
    // shell's convention for "killed by signal N" is the fallback.
    std::process::exit(128 + sig as i32)
}
