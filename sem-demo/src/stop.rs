//! Ctrl+C (SIGINT), SIGTERM and SIGHUP: note them, so that waits can stop and
//! guards can run, then die of the signal.
//!
//! Nothing here runs until you call [`install`], once, early in `main`: it replaces
//! the process's handlers for these three signals (a process has one handler per
//! signal, shared by all its threads). The handler only stores the signal's number
//! in a static atomic, about all a handler may safely do (signal-safety(7)); the
//! program asks [`caught`] in the "stop?" callbacks it gives the waits of
//! [`crate::posix`] and [`crate::sysv`]. A sleeping sem_timedwait, semop or
//! semtimedop returns EINTR at once when the handler has run (whatever SA_RESTART
//! says; installed without it, so that any other blocking call the program makes,
//! an untimed sem_wait, a read, comes back with EINTR too); a signal that lands
//! just before a sleep only sets the flag, which is why those waits sleep in
//! slices. Forked children inherit the handler (and exec resets it to SIG_DFL).
//!
//! Needs nix with the feature "signal".

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};

/// The last SIGINT/SIGTERM/SIGHUP received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
}

/// Installs the noting handler for SIGINT, SIGTERM and SIGHUP, without SA_RESTART.
/// SIGHUP too: closing the terminal sends it, and its default action would end a
/// sleeping process with its semaphores left behind.
///
/// # Examples
/// ```
/// use nix::sys::signal::{Signal, raise};
/// sem_demo::stop::install().unwrap();
/// raise(Signal::SIGTERM).unwrap(); // noted, not fatal
/// assert_eq!(sem_demo::stop::caught(), Some(Signal::SIGTERM));
/// ```
pub fn install() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(remember),
        SaFlags::empty(), // no SA_RESTART: any sleeping call comes back with EINTR
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `remember` only stores into an atomic, which is async-signal-safe;
        // the caller asked for these handlers to be replaced.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<Signal> {
    Signal::try_from(CAUGHT.load(Ordering::SeqCst)).ok()
}

/// Dies of `signal` with its default action, as if no handler had been installed,
/// so the shell sees "killed by SIGINT". Call it once the guards have dropped.
pub fn die_of(signal: Signal) -> std::process::ExitCode {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours, so no handler can race with anything.
    let _ = unsafe { sigaction(signal, &default) };
    let _ = raise(signal);
    // Not reached for SIGINT/SIGTERM/SIGHUP, whose default action ends the process;
    // the shell's convention for "killed by signal N" is the fallback.
    std::process::ExitCode::from(128 + signal as u8)
}
