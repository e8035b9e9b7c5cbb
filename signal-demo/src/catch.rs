//! Catching signals: a handler that only writes atomics, a main flow that reads them.
//!
//! A handler can interrupt the program anywhere: in the middle of a `println!`, while
//! the allocator holds its lock. So it may only do what is async-signal-safe. Ours,
//! `log_signal`, copies what the kernel tells it (which signal, how it was sent, by
//! whom, the value it carries) into a fixed array of atomics, and returns. Printing,
//! deciding and stopping all happen in the main flow.
//!
//! The main flow keeps the caught signals blocked: the kernel keeps them pending. It
//! lets them in only while it waits, with ppoll(2), which swaps in a mask that lets
//! them in and sleeps, in one step. A signal that comes just before the wait is not
//! missed, as it would be with "check a flag, then pause()". And since no handler can
//! run while they are blocked, the main flow reads the log with nobody writing to it.
//! That holds because this program is single-threaded: pthread_sigmask (nix's
//! `thread_block`) blocks for the calling thread only, and the kernel delivers a
//! process-directed signal to any thread that has it unblocked. In a threaded program,
//! block these signals before starting any thread (threads inherit the mask), or use a
//! signalfd or the signal-hook crate.
//!
//! Installed without SA_RESTART: a blocking call that a caught signal interrupts fails
//! with EINTR instead of restarting silently, so the program hears about it.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};
use nix::sys::time::TimeSpec;

use crate::ffi;

/// One signal as the kernel described it to the handler (or to sigtimedwait).
#[derive(Debug, Clone, Copy)]
pub struct Caught {
    pub signo: c_int,
    /// siginfo's `si_code`: SI_USER (kill), SI_QUEUE (sigqueue), SI_KERNEL...
    pub code: c_int,
    /// The sender's pid, for SI_USER, SI_QUEUE and SI_TKILL.
    pub pid: i32,
    /// The value sigqueue(3) attached, for SI_QUEUE.
    pub value: i32,
}

/// What the handlers logged since the last look.
pub struct Batch {
    pub caught: Vec<Caught>,
    /// Handler runs that found the log full (more than LOG_SIZE between two looks).
    pub unlogged: usize,
}

/// Room for a burst of 1000 real-time signals between two looks, and then some.
const LOG_SIZE: usize = 1024;

struct Entry {
    signo: AtomicI32,
    code: AtomicI32,
    pid: AtomicI32,
    value: AtomicI32,
}

impl Entry {
    const fn new() -> Entry {
        Entry {
            signo: AtomicI32::new(0),
            code: AtomicI32::new(0),
            pid: AtomicI32::new(0),
            value: AtomicI32::new(0),
        }
    }
}

/// The handler's notes: slot i holds the i-th signal caught since the last look.
static LOG: [Entry; LOG_SIZE] = [const { Entry::new() }; LOG_SIZE];
/// How many times a handler ran since the main flow last emptied the log.
static LOGGED: AtomicUsize = AtomicUsize::new(0);

/// The handler for every caught signal: note it in the log, nothing else.
extern "C" fn log_signal(signo: c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
    let slot = LOGGED.fetch_add(1, SeqCst);
    if let Some(entry) = LOG.get(slot) {
        // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t for this signal.
        let caught = ffi::caught(signo, unsafe { &*info });
        entry.signo.store(caught.signo, SeqCst);
        entry.code.store(caught.code, SeqCst);
        entry.pid.store(caught.pid, SeqCst);
        entry.value.store(caught.value, SeqCst);
    }
}

/// Blocks `standard` and the real-time signals `realtime`, then installs `log_signal`
/// for each. Blocked first, so one that comes in between waits for our first look.
pub fn install(standard: &[Signal], realtime: &[c_int]) -> Result<()> {
    block_all(standard, realtime)?;
    for &sig in standard {
        handle(sig)?;
    }
    for &signo in realtime {
        ffi::install_realtime(signo, log_signal)
            .with_context(|| format!("sigaction {}", ffi::signal_name(signo)))?;
    }
    Ok(())
}

fn block_all(standard: &[Signal], realtime: &[c_int]) -> Result<()> {
    let mut set: SigSet = standard.iter().copied().collect();
    for &signo in realtime {
        set = ffi::with(&set, signo);
    }
    set.thread_block().context("sigprocmask SIG_BLOCK")
}

fn handle(sig: Signal) -> Result<()> {
    let action = SigAction::new(
        SigHandler::SigAction(log_signal), // SA_SIGINFO: the handler gets the siginfo
        SaFlags::empty(),                  // no SA_RESTART: blocked calls return EINTR
        SigSet::empty(),
    );
    // SAFETY: `log_signal` only touches atomics (async-signal-safe), and replacing
    // whatever was installed for `sig` is what we mean to do.
    unsafe { sigaction(sig, &action) }.with_context(|| format!("sigaction {sig}"))?;
    Ok(())
}

/// Empties the log. Only while the logged signals are blocked (the main flow's normal
/// state), or a handler could write a slot as we read it.
pub fn take() -> Batch {
    let logged = LOGGED.swap(0, SeqCst);
    let caught = LOG[..logged.min(LOG_SIZE)]
        .iter()
        .map(|e| Caught {
            signo: e.signo.load(SeqCst),
            code: e.code.load(SeqCst),
            pid: e.pid.load(SeqCst),
            value: e.value.load(SeqCst),
        })
        .collect();
    Batch {
        caught,
        unlogged: logged.saturating_sub(LOG_SIZE),
    }
}

/// Lets the signals `allowed` in and sleeps until a handler has run or `timeout` has
/// passed (None: no limit), then blocks them again and returns what was logged
/// (empty after a timeout).
///
/// ppoll(2) with no file descriptor is sigsuspend(2) with a timeout: the kernel sets
/// the wait's mask and sleeps in one step, and puts our mask back on the way out.
pub fn wait(allowed: &[c_int], timeout: Option<Duration>) -> Result<Batch> {
    let mut mask = SigSet::thread_get_mask().context("sigprocmask")?;
    for &signo in allowed {
        mask = ffi::without(&mask, signo);
    }
    match nix::poll::ppoll(&mut [], timeout.map(TimeSpec::from_duration), Some(mask)) {
        Ok(_) | Err(Errno::EINTR) => Ok(take()), // EINTR: a handler ran
        Err(e) => Err(e).context("ppoll"),
    }
}

/// Puts back the kernel's default action for `sig` (end, stop, ignore...), whatever
/// was there: our handler, or SIG_IGN inherited from whoever started us (a shell
/// script, a shell without job control, starts `cmd &` with SIGINT and SIGQUIT ignored).
pub fn default_action(sig: Signal) -> nix::Result<()> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours.
    unsafe { sigaction(sig, &default) }.map(drop)
}

/// Unblocks `sig` for an instant: a pending one is delivered (its handler runs)
/// before sigprocmask returns, then it is blocked again.
pub fn let_in(sig: Signal) -> Result<()> {
    let set = SigSet::from(sig);
    set.thread_unblock().context("sigprocmask SIG_UNBLOCK")?;
    set.thread_block().context("sigprocmask SIG_BLOCK")
}

/// Ctrl+Z for real, after the handler has reported it: what a shell job must do.
///
/// Restores SIGTSTP's default action (stop), raises it, and lets it in together with
/// SIGCONT: the kernel stops the whole process right there, the shell sees its job
/// stopped. When SIGCONT comes (`fg`, `kill -CONT`), the process runs on from that
/// same point; SIGCONT's handler runs first, then our handler for SIGTSTP goes back.
/// Returns how long that took and what was logged meanwhile (SIGCONT, if we stopped).
pub fn stop_for_real() -> Result<(Duration, Batch)> {
    default_action(Signal::SIGTSTP).context("sigaction SIGTSTP SIG_DFL")?;
    raise(Signal::SIGTSTP).context("raise SIGTSTP")?; // pending: still blocked
    let stop_and_cont = SigSet::from(Signal::SIGTSTP) | Signal::SIGCONT;
    let since = Instant::now();
    stop_and_cont
        .thread_unblock()
        .context("sigprocmask SIG_UNBLOCK")?; // stopped in here until SIGCONT
    let stopped_for = since.elapsed();
    stop_and_cont
        .thread_block()
        .context("sigprocmask SIG_BLOCK")?;
    handle(Signal::SIGTSTP)?;
    Ok((stopped_for, take()))
}

impl Caught {
    pub fn name(&self) -> String {
        ffi::signal_name(self.signo)
    }

    pub fn is(&self, sig: Signal) -> bool {
        self.signo == sig as c_int
    }

    /// Who sent it and how, from the siginfo's `si_code`: "from pid 4242 (bash) with
    /// kill(2)", "from the kernel (the terminal: Ctrl+C)"...
    pub fn origin(&self) -> String {
        let sender = || format!("pid {} ({})", self.pid, command_of(self.pid));
        match self.code {
            libc::SI_USER => format!("from {} with kill(2)", sender()),
            libc::SI_QUEUE => format!("from {} with sigqueue(3), value {}", sender(), self.value),
            libc::SI_TKILL => format!("from {} with tgkill(2) or raise(3)", sender()),
            libc::SI_KERNEL => format!("from the kernel{}", terminal_key(self.signo)),
            code => format!("from the kernel (si_code {code})"),
        }
    }
}

/// The terminal's reason for sending `signo` itself, as the tty driver does.
fn terminal_key(signo: c_int) -> &'static str {
    match Signal::try_from(signo) {
        Ok(Signal::SIGINT) => " (the terminal: Ctrl+C)",
        Ok(Signal::SIGTSTP) => " (the terminal: Ctrl+Z)",
        Ok(Signal::SIGQUIT) => " (the terminal: Ctrl+\\)",
        Ok(Signal::SIGWINCH) => " (the terminal changed size)",
        Ok(Signal::SIGHUP) => " (the terminal hung up)",
        _ => "",
    }
}

/// The command name of `pid`, from /proc (the sender may be gone by now).
fn command_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| "already exited".to_string())
}

/// SIGINT, SIGTERM and SIGHUP, "stop". A process that takes its signals with
/// sigtimedwait(2) (ping.rs, and a parent waiting for its child) keeps these blocked
/// too and takes them in the same waits: Ctrl+C, `kill`, or the terminal closing then
/// ends a wait like any other event, and the process cleans up (ends and reaps its
/// child) before it dies of it.
///
/// One we were started with ignored (`nohup` ignores SIGHUP; a script's `cmd &`,
/// SIGINT and SIGQUIT) is left out, and so stays ignored: a blocked signal is queued
/// even when its action is SIG_IGN, so taking it with sigtimedwait would undo the
/// caller's choice.
pub fn stop_signals() -> SigSet {
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
        .into_iter()
        .filter(|&sig| !is_ignored(sig))
        .collect()
}

/// Whether `sig`'s action is SIG_IGN (sigaction(2) asked, nothing changed).
fn is_ignored(sig: Signal) -> bool {
    // SAFETY: all-zero bytes are a valid sigaction struct, which the kernel fills in.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`, ours.
    let rc = unsafe { libc::sigaction(sig as c_int, std::ptr::null(), &mut old) };
    rc == 0 && old.sa_sigaction == libc::SIG_IGN
}

/// SIGINT, SIGTERM or SIGHUP taken from a wait: say so, and return the error that
/// makes `main` die of it. Any other signal: Ok.
pub fn stop_if_asked(role: &str, got: &Caught) -> Result<()> {
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        if got.is(sig) {
            crate::say!(role, "interrupted by {sig} {}: stopping", got.origin());
            return Err(Stopped(sig).into());
        }
    }
    Ok(())
}

/// A signal asked us to stop (SIGINT, SIGTERM, SIGHUP): an error that travels up to
/// `main`, which then dies of that signal.
#[derive(Debug)]
pub struct Stopped(pub Signal);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by {}", self.0)
    }
}

impl std::error::Error for Stopped {}

/// Dies of `sig` with its default action, as if no handler had ever been installed,
/// so a shell (or a test) sees "killed by SIGINT", the convention for Ctrl+C.
pub fn die_of(sig: Signal) -> std::process::ExitCode {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = default_action(sig);
    let _ = raise(sig); // pending while blocked...
    let _ = SigSet::from(sig).thread_unblock(); // ...and delivered here: we end
    // Not reached for SIGINT/SIGTERM/SIGHUP; the shell's code for "killed by N" otherwise.
    std::process::ExitCode::from(128 + sig as u8)
}
