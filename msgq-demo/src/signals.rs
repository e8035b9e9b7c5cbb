//! Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal closed): stop a blocked send or receive, remove the queue, then
//! die of the signal.
//!
//! The handler only stores the signal's number: about all a handler may safely do. It
//! is installed without SA_RESTART, so a process asleep in `mq_timedreceive`, `msgrcv`,
//! `msgsnd` or `waitpid` comes back with EINTR; `check` then turns the stored number into
//! an `Interrupted` error, which travels up like any error while every guard on the way
//! drops (the queue is removed). Last, `main` calls `die_of`, so the shell sees we were
//! killed by the signal, as it would have without a handler.
//!
//! The race: a signal that lands after `check` but before the call goes to sleep only
//! sets the flag, and the call would sleep on. So no wait here is unbounded: POSIX calls
//! get a deadline (`mq_timedreceive`, `mq_timedsend`), and System V, which has no timed
//! `msgrcv`, gets a timer that sends SIGALRM every `TICK` (`tick_while_blocked`): either
//! way the call returns and the loop looks at the flag again.
//!
//! Assumption, before copying this: the ticker is process-wide and never disarmed, so
//! every blocking call anywhere in the process (a library that does not retry EINTR,
//! sleep(3)) fails with EINTR five times a second, and SIGALRM is taken. Fine in this
//! small program, which retries everywhere; elsewhere disarm the timer when the call
//! returns, or use `msgrcv(IPC_NOWAIT)` plus a sleep, or a signalfd loop.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{
    SaFlags, SigAction, SigEvent, SigHandler, SigSet, SigevNotify, Signal, raise, sigaction,
};
use nix::sys::time::TimeSpec;
use nix::sys::timer::{Expiration, Timer, TimerSetTimeFlags};
use nix::time::ClockId;

/// How long a blocking call sleeps at most before it looks at the flag again.
pub const TICK: Duration = Duration::from_millis(200);

/// The last SIGINT/SIGTERM received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
}

/// Does nothing: SIGALRM's only job is to make a blocked call return EINTR.
extern "C" fn wake_up(_: std::ffi::c_int) {}

/// Installs the handler for SIGINT and SIGTERM, without SA_RESTART. Forked children
/// inherit it, so Ctrl+C stops every process of the run the same way.
pub fn install() -> Result<()> {
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set_handler(sig, SigHandler::Handler(remember))?;
    }
    Ok(())
}

fn set_handler(sig: Signal, handler: SigHandler) -> Result<()> {
    // No SA_RESTART: a blocked call must come back with EINTR.
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: our handlers only store into an atomic (or do nothing), which is
    // async-signal-safe, and no other handler for these signals exists to replace.
    unsafe { sigaction(sig, &action) }.with_context(|| format!("sigaction {sig}"))?;
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<Signal> {
    Signal::try_from(CAUGHT.load(Ordering::SeqCst)).ok()
}

/// A blocking call was stopped by SIGINT or SIGTERM.
#[derive(Debug)]
pub struct Interrupted(pub Signal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// `Err(Interrupted)` once SIGINT or SIGTERM has arrived. Every blocking loop calls it
/// before each try.
pub fn check() -> Result<(), Interrupted> {
    match caught() {
        Some(sig) => Err(Interrupted(sig)),
        None => Ok(()),
    }
}

/// An absolute CLOCK_REALTIME deadline `TICK` from now, as `mq_timedreceive` and
/// `mq_timedsend` want it.
pub fn deadline() -> Result<TimeSpec> {
    let now = nix::time::clock_gettime(ClockId::CLOCK_REALTIME).context("clock_gettime")?;
    Ok(now + TimeSpec::from_duration(TICK))
}

/// Whether this process has armed its ticker. A forked child starts without one (timers
/// are not inherited across `fork`): `family::spawn` clears this in the child.
static TICKING: AtomicBool = AtomicBool::new(false);

/// Makes this process's blocked `msgsnd`/`msgrcv` return EINTR every `TICK`: System V
/// has no timed receive, and this closes the race described at the top of this file.
/// Called before every blocking call; after the first, it costs one atomic load and no
/// system call. The timer then lives as long as the process (the kernel deletes it at
/// exit).
pub fn tick_while_blocked() -> Result<()> {
    if TICKING.load(Ordering::Relaxed) {
        return Ok(());
    }
    set_handler(Signal::SIGALRM, SigHandler::Handler(wake_up))?;
    let alarm = SigEvent::new(SigevNotify::SigevSignal {
        signal: Signal::SIGALRM,
        si_value: 0,
    });
    let mut timer = Timer::new(ClockId::CLOCK_MONOTONIC, alarm).context("timer_create")?;
    timer
        .set(
            Expiration::Interval(TimeSpec::from_duration(TICK)),
            TimerSetTimeFlags::empty(),
        )
        .context("timer_settime")?;
    std::mem::forget(timer); // dropping it would delete it
    TICKING.store(true, Ordering::Relaxed);
    Ok(())
}

/// In a child just forked: the parent's timer did not come along.
pub fn forget_ticker_after_fork() {
    TICKING.store(false, Ordering::Relaxed);
}

/// Dies of `sig` with its default action, as if no handler had ever been installed.
pub fn die_of(sig: Signal) -> std::process::ExitCode {
    let _ = set_handler(sig, SigHandler::SigDfl);
    let _ = raise(sig);
    // Not reached for SIGINT/SIGTERM, whose default action ends the process; the
    // shell's convention for "killed by signal N" is the fallback.
    std::process::ExitCode::from(128 + sig as u8)
}
