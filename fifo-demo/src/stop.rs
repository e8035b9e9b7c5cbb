//! Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal closed): note them, so that waits
//! can stop and guards can run; then die of the signal.
//!
//! Nothing here runs until you call [`install`], once, early in `main`: it replaces the
//! process's handlers for these three signals (one handler per signal, shared by all
//! threads). The handler only stores the signal's number in a static atomic, about all
//! a handler may safely do (signal-safety(7)); give `&|| stop::caught().is_some()` as
//! the "stop?" callback of the waits in [`crate::io`]. Installed without SA_RESTART, a
//! sleeping open(2), read(2) or write(2) on a FIFO comes back with EINTR, and the wait
//! asks its callback. Children started with `Command` get the default actions back at
//! exec (a handled signal is reset by execve(2)).
//!
//! Needs nix with the feature "signal".

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};

/// The last SIGINT/SIGTERM/SIGHUP received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
}

/// Installs the noting handler for SIGINT, SIGTERM and SIGHUP, without SA_RESTART,
/// except for a SIGINT or SIGHUP we were started with ignored, which stays ignored: a
/// non-interactive shell starts `cmd &` with SIGINT ignored (so a Ctrl+C meant for the
/// foreground job does not stop it), `nohup` starts its command with SIGHUP ignored,
/// and a program is expected to keep that choice. SIGTERM, `kill`'s "stop now", is
/// always ours.
///
/// # Examples
/// ```
/// use nix::sys::signal::{Signal, raise};
/// fifo_demo::stop::install().unwrap();
/// raise(Signal::SIGTERM).unwrap(); // noted, not fatal
/// assert_eq!(fifo_demo::stop::caught(), Some(Signal::SIGTERM));
/// ```
pub fn install() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(remember),
        SaFlags::empty(), // no SA_RESTART: a blocked call must come back with EINTR
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `remember` only stores into an atomic, which is async-signal-safe;
        // the caller asked for these handlers to be replaced.
        let old = unsafe { sigaction(sig, &action) }?;
        if sig != Signal::SIGTERM && matches!(old.handler(), SigHandler::SigIgn) {
            let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
            // SAFETY: SIG_IGN runs no code of ours.
            unsafe { sigaction(sig, &ignore) }?;
        }
    }
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<Signal> {
    Signal::try_from(CAUGHT.load(Ordering::SeqCst)).ok()
}

/// Dies of `sig` with its default action, as if no handler had been installed, so the
/// shell sees "killed by SIGINT". Call it once the guards have dropped.
pub fn die_of(sig: Signal) -> std::process::ExitCode {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours, so no handler can race with anything.
    let _ = unsafe { sigaction(sig, &default) };
    let _ = raise(sig);
    // Not reached for SIGINT/SIGTERM/SIGHUP, whose default action ends the process; the
    // shell's convention for "killed by signal N" is the fallback.
    std::process::ExitCode::from(128 + sig as u8)
}
