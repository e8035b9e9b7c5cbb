//! Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal closed): stop a blocked send or
//! receive, remove the queue, then die of the signal.
//!
//! The handler only stores the signal's number: about all a handler may safely do. It
//! is installed without SA_RESTART, so a process asleep in `mq_timedreceive` or
//! `mq_timedsend` comes back with EINTR (`msgrcv` and `msgsnd` would even with it:
//! signal(7) lists them as never restarted); the parent, which looks at its children
//! every few milliseconds (family.rs), sees the flag at its next look. `check` turns
//! the stored number into an `Interrupted` error, which travels up like any error while
//! every guard on the way drops (the queue is removed). Last, `main` calls `die_of`, so the shell sees we were
//! killed by the signal, as it would have without a handler.
//!
//! The race: a signal that lands after `check` but before the call goes to sleep only
//! sets the flag, and the call would sleep on. So no wait here is unbounded: the
//! library's POSIX waits sleep at most `msgq_demo::posix::SLICE` (200 ms) at a time
//! (`mq_timedreceive`, `mq_timedsend`) and then ask their "stop?" callback, which looks
//! at the flag; System V, which has no timed `msgrcv`/`msgsnd`, first tries the call
//! with IPC_NOWAIT and, only if it would sleep, this binary arms a timer that sends
//! SIGALRM every `TICK` for as long as that one call sleeps (`Ticking`): the call
//! returns EINTR and the library asks "stop?" again. The library itself arms no timer:
//! its own timed System V wait polls instead (`msgq_demo::sysv`), which would not show
//! a writer asleep in `do_msgsnd`, the point of act 3.
//!
//! The timer is disarmed when the call is done, on every way out (the guard's `Drop`),
//! so the rest of the program, a read of standard input say, is never interrupted by it.
//! A workload (bulk, ping) holds it for its whole loop instead, so that its waits cost
//! no timer_settime each: while that loop runs, SIGALRM comes every `TICK`, to calls
//! that all retry EINTR; once it ends, on any way out, the timer is disarmed.
//! Assumptions, before copying this: one thread (a POSIX timer's signal goes to the
//! process, not to the thread that sleeps), and SIGALRM is ours (its handler is
//! installed on first use and stays; `alarm(2)` or `sleep(3)` users elsewhere would
//! clash). A larger program would rather use the library's timed waits
//! (`msgq_demo::sysv`: IPC_NOWAIT plus short sleeps), or a signalfd loop.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI32, Ordering};
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

/// The last SIGINT/SIGTERM/SIGHUP received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
}

/// Does nothing: SIGALRM's only job is to make a blocked call return EINTR.
extern "C" fn wake_up(_: std::ffi::c_int) {}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, without SA_RESTART. Forked children
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

/// A blocking call was stopped by SIGINT, SIGTERM or SIGHUP.
#[derive(Debug)]
pub struct Interrupted(pub Signal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// `Err(Interrupted)` once SIGINT, SIGTERM or SIGHUP has arrived. Every blocking loop calls it
/// before each try.
pub fn check() -> Result<(), Interrupted> {
    match caught() {
        Some(sig) => Err(Interrupted(sig)),
        None => Ok(()),
    }
}

thread_local! {
    /// This process's timer, made on first use and kept (armed only while a `Ticking`
    /// lives). A forked child starts without one: timers are not inherited across
    /// `fork`, so `family::spawn` drops the parent's from the child's copy of memory.
    static TICKER: RefCell<Option<Timer>> = const { RefCell::new(None) };
    /// How many `Ticking` guards live now: the timer is armed while this is above 0.
    static HOLDERS: Cell<u32> = const { Cell::new(0) };
}

/// While this lives, a blocked `msgsnd`/`msgrcv` returns EINTR every `TICK` (System V
/// has no timed wait; this closes the race described at the top of this file). Made
/// just before a call that would sleep, or once for a whole workload (bulk, ping),
/// whose tight loop then pays no timer_settime per wait; the last one dropped disarms
/// the timer.
pub struct Ticking(());

impl Ticking {
    pub fn start() -> Result<Ticking> {
        if HOLDERS.get() == 0 {
            arm(Expiration::Interval(TimeSpec::from_duration(TICK)))?;
        }
        HOLDERS.set(HOLDERS.get() + 1);
        Ok(Ticking(()))
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        HOLDERS.set(HOLDERS.get() - 1);
        if HOLDERS.get() == 0 {
            // A zero expiry disarms the timer (timer_settime(2)).
            let _ = arm(Expiration::OneShot(TimeSpec::from_duration(Duration::ZERO)));
        }
    }
}

/// Whether the timer is armed now: a call may then sleep without arming it again.
pub fn ticking() -> bool {
    HOLDERS.get() > 0
}

/// Sets this process's timer to `expiration`, making it (and SIGALRM's handler) first.
fn arm(expiration: Expiration) -> Result<()> {
    TICKER.with_borrow_mut(|slot| {
        if slot.is_none() {
            set_handler(Signal::SIGALRM, SigHandler::Handler(wake_up))?;
            let alarm = SigEvent::new(SigevNotify::SigevSignal {
                signal: Signal::SIGALRM,
                si_value: 0,
            });
            *slot = Some(Timer::new(ClockId::CLOCK_MONOTONIC, alarm).context("timer_create")?);
        }
        let timer = slot.as_mut().expect("made just above");
        timer
            .set(expiration, TimerSetTimeFlags::empty())
            .context("timer_settime")
    })
}

/// In a child just forked: the parent's timer did not come along. Forgotten, not
/// dropped: its id means nothing here, and deleting it would fail.
pub fn forget_ticker_after_fork() {
    TICKER.with_borrow_mut(|slot| std::mem::forget(slot.take()));
    HOLDERS.set(0);
}

/// Dies of `sig` with its default action, as if no handler had ever been installed.
pub fn die_of(sig: Signal) -> std::process::ExitCode {
    let _ = set_handler(sig, SigHandler::SigDfl);
    let _ = raise(sig);
    // Not reached for SIGINT/SIGTERM/SIGHUP, whose default action ends the process; the
    // shell's convention for "killed by signal N" is the fallback.
    std::process::ExitCode::from(128 + sig as u8)
}
