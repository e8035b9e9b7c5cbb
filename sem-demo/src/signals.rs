//! Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal closed) while asleep in P or
//! busy counting: wake up, clean up, then die of it (the handler is
//! `sem_demo::stop`'s; this file is the binary's side of it).
//!
//! The handler only stores the signal's number, about all a handler may safely
//! do. A sleeping sem_timedwait, semop or semtimedop returns EINTR when it has run,
//! whatever SA_RESTART says (for sem_timedwait measured on Linux 6.18 with glibc
//! 2.36, though signal(7) lists it among the calls SA_RESTART restarts: that holds
//! for the untimed sem_wait); it is installed without SA_RESTART all the same, so
//! that act 5's read of a pipe and a parent's waitpid come back with EINTR too.
//! The library's waits ask `stopped` before every slice and after an EINTR;
//! `semaphore::p_watching` turns a yes into `Interrupted`, which travels up like
//! any error while every guard on the way drops (semaphores removed, children
//! reaped). Last, `main` calls `die_of`, so the shell sees we were killed by the
//! signal, as it would without a handler.
//!
//! A signal that lands between the check and the system call only sets the flag:
//! the call still sleeps. That is why every wait here is a timed wait in short
//! slices that re-check the flag.

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use crate::say;

/// Installs sem_demo's noting handler for SIGINT, SIGTERM and SIGHUP, without
/// SA_RESTART. Children forked later inherit it.
pub fn install() -> Result<()> {
    sem_demo::stop::install().context("sigaction SIGINT/SIGTERM/SIGHUP")
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<Signal> {
    sem_demo::stop::caught()
}

/// The "stop?" every library wait of this program asks.
pub fn stopped() -> bool {
    caught().is_some()
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
    sem_demo::stop::die_of(signal)
}
