//! Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal closed): stop a blocked FIFO call, clean up, then die of the signal.
//!
//! The handler only stores the signal's number: that is about all a handler may safely
//! do. It is installed without SA_RESTART, so a blocked open(2), read(2) or write(2)
//! returns EINTR; `unless_interrupted` then sees the number and returns `Interrupted`,
//! which travels up like any error while every RAII guard on the way drops (the FIFO is
//! unlinked, the directory removed). Last, `main` calls `die_of`, so the shell sees we
//! were killed by the signal, as it would without a handler.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};

/// The last SIGINT/SIGTERM/SIGHUP received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, without SA_RESTART, except for a SIGINT
/// we were started with ignored, which stays ignored.
pub fn install() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(remember),
        SaFlags::empty(), // no SA_RESTART: a blocked call must come back with EINTR
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `remember` only stores into an atomic, which is async-signal-safe, and
        // nothing else in this program has a handler for these signals to replace.
        let old = unsafe { sigaction(sig, &action) }.with_context(|| format!("sigaction {sig}"))?;
        // A non-interactive shell (a script) starts `cmd &` with SIGINT (and SIGQUIT)
        // ignored, so that a Ctrl+C meant for the foreground job does not stop it. A
        // program is expected to keep that choice: put SIG_IGN back. SIGTERM, the
        // signal for "stop now" from `kill`, stays ours either way.
        // (nohup ignores SIGHUP only; a SIGHUP we were started with ignored stays too.)
        if matches!(sig, Signal::SIGINT | Signal::SIGHUP)
            && matches!(old.handler(), SigHandler::SigIgn)
        {
            let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
            // SAFETY: SIG_IGN runs no code of ours.
            unsafe { sigaction(sig, &ignore) }.with_context(|| format!("sigaction {sig}"))?;
        }
    }
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<Signal> {
    Signal::try_from(CAUGHT.load(Ordering::SeqCst)).ok()
}

/// A blocking call was stopped by SIGINT, SIGTERM or SIGHUP.
#[derive(Debug)]
pub struct Interrupted(pub Signal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Makes a blocking system call that Ctrl+C can stop. Returns the call's own result, or
/// `Interrupted` if one of our signals arrived before or during it. An EINTR with no
/// signal of ours behind it is retried.
///
/// The honest limit: a signal that lands after the check below but before the call
/// enters the kernel only sets the flag, and the call still blocks. A second Ctrl+C
/// then always works. Production code closes that window by blocking the signals and
/// waiting with ppoll(2), or by reading them from a signalfd in the same poll.
pub fn unless_interrupted<T>(
    mut call: impl FnMut() -> nix::Result<T>,
) -> Result<nix::Result<T>, Interrupted> {
    loop {
        if let Some(sig) = caught() {
            return Err(Interrupted(sig));
        }
        match call() {
            Err(Errno::EINTR) => continue,
            done => return Ok(done),
        }
    }
}

/// Dies of `sig` with its default action, as if no handler had ever been installed.
pub fn die_of(sig: Signal) -> std::process::ExitCode {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours, so no handler can race with anything.
    let _ = unsafe { sigaction(sig, &default) };
    let _ = raise(sig);
    // Not reached for SIGINT/SIGTERM, whose default action ends the process; the shell's
    // convention for "killed by signal N" is the fallback.
    std::process::ExitCode::from(128 + sig as u8)
}
