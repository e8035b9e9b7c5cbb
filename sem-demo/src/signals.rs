//! Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal closed) while asleep in P or
//! busy counting: wake up, clean up, then die of it.
//!
//! The handler only stores the signal's number, about all a handler may safely
//! do. It is installed without SA_RESTART, so a sleeping sem_timedwait returns
//! EINTR (with SA_RESTART glibc's sem_timedwait would be restarted; semop and
//! semtimedop return EINTR whatever the flag, signal(7)); the wait loop (`semaphore::p`) sees the number and returns
//! `Interrupted`, which travels up like any error while every guard on the way
//! drops (semaphores removed, children reaped). Last, `main` calls `die_of`, so the
//! shell sees we were killed by the signal, as it would without a handler.
//!
//! A signal that lands between the check and the system call only sets the flag:
//! the call still sleeps. That is why every wait here is a timed wait in short
//! slices that re-check the flag.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};

use crate::say;

/// The last SIGINT/SIGTERM/SIGHUP received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, without SA_RESTART.
/// Children forked later inherit it. SIGHUP too: closing the terminal sends it, and
/// its default action would end a sleeping reader with its semaphore left behind.
pub fn install() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(remember),
        SaFlags::empty(), // no SA_RESTART: sem_timedwait must come back with EINTR
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `remember` only stores into an atomic, which is async-signal-safe,
        // and no other handler for these signals exists in this program.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("sigaction {signal}"))?;
    }
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<Signal> {
    Signal::try_from(CAUGHT.load(Ordering::SeqCst)).ok()
}

/// Returns `Interrupted` if SIGINT/SIGTERM/SIGHUP has arrived: called before every
/// sleep, and every few thousand steps of a long loop.
pub fn check() -> Result<(), Interrupted> {
    match caught() {
        Some(signal) => Err(Interrupted(signal)),
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

/// After a role's kernel objects are gone: if a signal is why it stopped, say so,
/// naming what was removed. Called once the guards have dropped.
pub fn narrate_interruption(role: &str, result: &Result<()>, removed: &str) {
    if let (Err(_), Some(signal)) = (result, caught()) {
        say!(role, "interrupted by {signal}: removed {removed}");
    }
}

/// Dies of `signal` with its default action, as if no handler had been installed.
pub fn die_of(signal: Signal) -> std::process::ExitCode {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours, so no handler can race with anything.
    let _ = unsafe { sigaction(signal, &default) };
    let _ = raise(signal);
    // Not reached for SIGINT/SIGTERM/SIGHUP, whose default action ends the process; the
    // shell's convention for "killed by signal N" is the fallback.
    std::process::ExitCode::from(128 + signal as u8)
}
