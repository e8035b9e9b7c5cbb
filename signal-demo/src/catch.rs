//! The one handler: it notes each signal in a fixed array of atomics; the main flow
//! reads the notes.
//!
//! A handler can interrupt the program anywhere: in the middle of a `println!`, while
//! the allocator holds its lock. So it may only do what is async-signal-safe
//! (signal-safety(7)). Ours copies the siginfo (signal, how it was sent, sender's pid
//! and uid, value) into a slot of a static array of atomics, and returns. Printing,
//! deciding and stopping happen in the main flow.
//!
//! The log is the process's, like the handlers themselves: one [`install`] per
//! process (calling it again for more signals is fine: they share the log), and
//! nothing else in the program may install its own handler for those signals.
//!
//! The main flow keeps the caught signals blocked and lets them in only while it
//! waits, with ppoll(2) ([`wait`]), which swaps in a mask that lets them in and
//! sleeps, in one step: a signal that comes just before the wait is not missed, as
//! it would be with "check a flag, then pause()". And while they are blocked no
//! handler runs, so [`take`] reads the log with nobody writing it. That holds for a
//! single-threaded program; in a threaded one block them before the first thread
//! starts (see the crate's top).
//!
//! Needs `pending.rs` beside it, and nix with the features "signal" and "poll".

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::time::TimeSpec;

use crate::pending::{self, Caught};

/// Whether a blocking call that a caught signal interrupts fails or restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// No SA_RESTART: read(2), write(2), waits... fail with EINTR, so the program
    /// hears about the signal. Every such call must then handle EINTR.
    No,
    /// SA_RESTART: read(2) and write(2) on slow devices (pipes, terminals), wait(2),
    /// open(2) of a FIFO and others restart silently, but not all calls: poll,
    /// ppoll, sigtimedwait, nanosleep, semop and others still fail with EINTR
    /// (signal(7) lists both). And a restarted read(2) that no data reaches stays
    /// blocked: the signal cannot wake it.
    Yes,
}

/// What the handler noted since the last look.
#[derive(Debug, Default)]
pub struct Batch {
    /// In the order the handler ran.
    pub caught: Vec<Caught>,
    /// Handler runs that found the log full (more than `LOG_SIZE` between two looks).
    pub unlogged: usize,
}

/// Room for a burst of 1000 real-time signals between two looks, and then some.
pub const LOG_SIZE: usize = 1024;

struct Entry {
    signo: AtomicI32,
    code: AtomicI32,
    pid: AtomicI32,
    uid: AtomicU32,
    value: AtomicI32,
}

#[allow(clippy::declare_interior_mutable_const)] // each array slot gets its own copy
const EMPTY: Entry = Entry {
    signo: AtomicI32::new(0),
    code: AtomicI32::new(0),
    pid: AtomicI32::new(0),
    uid: AtomicU32::new(0),
    value: AtomicI32::new(0),
};

/// The handler's notes: slot i holds the i-th signal caught since the last look.
static LOG: [Entry; LOG_SIZE] = [EMPTY; LOG_SIZE];
/// How many times the handler ran since the main flow last emptied the log.
static LOGGED: AtomicUsize = AtomicUsize::new(0);

/// The handler: note the signal in the log, nothing else (atomics only).
extern "C" fn note(signo: c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
    let slot = LOGGED.fetch_add(1, SeqCst);
    if let Some(entry) = LOG.get(slot) {
        // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t for this signal.
        let caught = Caught::from_siginfo(signo, unsafe { &*info });
        entry.signo.store(caught.signo, SeqCst);
        entry.code.store(caught.code, SeqCst);
        entry.pid.store(caught.pid, SeqCst);
        entry.uid.store(caught.uid, SeqCst);
        entry.value.store(caught.value, SeqCst);
    }
}

/// Installs the noting handler for each of `signos` (real-time numbers included),
/// after blocking them in the calling thread: one that comes in between waits for
/// your first [`wait`]. Replaces whatever handler those signals had.
///
/// Process-wide: handlers belong to the process, not to a thread or a caller.
/// SIGKILL and SIGSTOP cannot be caught (EINVAL).
///
/// # Examples
/// ```
/// use signal_demo::{catch, pending, send};
/// use std::time::Duration;
/// let before = pending::current().unwrap();
/// catch::install(&[libc::SIGUSR1], catch::Restart::No).unwrap();
/// send::kill(nix::unistd::getpid(), libc::SIGUSR1).unwrap(); // pending: blocked
/// let batch = catch::wait(&[libc::SIGUSR1], Some(Duration::MAX)).unwrap(); // no EINVAL
/// assert_eq!(batch.caught[0].signo, libc::SIGUSR1);
/// assert_eq!(batch.caught[0].pid as u32, std::process::id());
/// catch::default_action(libc::SIGUSR1).unwrap();
/// pending::restore(&before).unwrap();
/// ```
pub fn install(signos: &[c_int], restart: Restart) -> nix::Result<()> {
    pending::block(&pending::set_of(signos))?;
    let flags = match restart {
        Restart::No => libc::SA_SIGINFO,
        Restart::Yes => libc::SA_SIGINFO | libc::SA_RESTART,
    };
    // The kernel's sa_sigaction field is an address: the fn pointer, as an integer.
    let handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) = note;
    for &signo in signos {
        set_action(signo, handler as usize, flags)?;
    }
    Ok(())
}

/// sigaction(2) by number (nix's `Signal` cannot name the real-time ones).
fn set_action(signo: c_int, handler: usize, flags: c_int) -> nix::Result<()> {
    // SAFETY: all-zero bytes are a valid sigaction (no handler, no flags, which
    // we then fill in).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = flags;
    // SAFETY: `action.sa_mask` is a valid sigset_t we own; sigemptyset only writes it.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is initialised; the handler is `note` (atomics only, so
    // async-signal-safe), SIG_DFL or SIG_IGN; the old action is not asked for.
    Errno::result(unsafe { libc::sigaction(signo, &action, std::ptr::null_mut()) }).map(drop)
}

/// Empties the log and returns what it held. Call it only while the noted signals
/// are blocked (the state [`install`] and [`wait`] leave them in), or a handler
/// could write a slot as it is read.
pub fn take() -> Batch {
    let logged = LOGGED.swap(0, SeqCst);
    let caught = LOG[..logged.min(LOG_SIZE)]
        .iter()
        .map(|e| Caught {
            signo: e.signo.load(SeqCst),
            code: e.code.load(SeqCst),
            pid: e.pid.load(SeqCst),
            uid: e.uid.load(SeqCst),
            value: e.value.load(SeqCst),
        })
        .collect();
    Batch {
        caught,
        unlogged: logged.saturating_sub(LOG_SIZE),
    }
}

/// Lets `allowed` in and sleeps until a handler has run or `timeout` has passed
/// (None: no limit), then has them blocked again and returns what was noted (empty
/// after a timeout, or when the handler that ran was not ours: a signal outside
/// the log whose handler someone else installed).
///
/// ppoll(2) with no fd is sigsuspend(2) with a timeout: the kernel sets the wait's
/// mask and sleeps in one step, and puts the mask back on the way out.
pub fn wait(allowed: &[c_int], timeout: Option<Duration>) -> nix::Result<Batch> {
    let mut during = pending::current()?;
    for &signo in allowed {
        during = pending::without(&during, signo);
    }
    // Capped at 136 years: a longer one wraps to a negative time_t (EINVAL).
    let timeout =
        timeout.map(|t| TimeSpec::from_duration(t.min(Duration::from_secs(u32::MAX as u64))));
    match nix::poll::ppoll(&mut [], timeout, Some(during)) {
        Ok(_) | Err(Errno::EINTR) => Ok(take()), // EINTR: a handler ran
        Err(e) => Err(e),
    }
}

/// Puts back the kernel's default action for `signo` (end, stop, ignore...), whatever
/// was there: a handler, or SIG_IGN inherited from whoever started us (`nohup`
/// ignores SIGHUP; a shell without job control starts `cmd &` with SIGINT and
/// SIGQUIT ignored).
pub fn default_action(signo: c_int) -> nix::Result<()> {
    set_action(signo, libc::SIG_DFL, 0)
}

/// Whether `sig`'s action is SIG_IGN now (asked of sigaction(2), nothing changed).
///
/// Ask before you catch or take a signal your starter chose to ignore: a blocked
/// signal is queued even when its action is SIG_IGN, so taking it with
/// sigtimedwait would undo that choice.
pub fn is_ignored(sig: Signal) -> bool {
    // SAFETY: all-zero bytes are a valid sigaction struct, which the kernel fills in.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`, ours.
    let rc = unsafe { libc::sigaction(sig as c_int, std::ptr::null(), &mut old) };
    rc == 0 && old.sa_sigaction == libc::SIG_IGN
}

/// Ctrl+Z for real, for a program that catches SIGTSTP: what a shell job must do
/// after it has noted the signal. Returns how long it was stopped (near zero if it
/// was not: the kernel discards SIGTSTP for an orphaned process group).
///
/// Puts SIGTSTP's default action (stop) back, raises it, and lets it in together
/// with SIGCONT: the kernel stops the whole process right there. When SIGCONT comes
/// (`fg`, `kill -CONT`) it runs on from that point; SIGCONT's handler, if any, runs
/// first and notes it (then [`take`] has it); the old SIGTSTP action and the
/// thread's mask from before the call go back.
pub fn stop_self() -> nix::Result<Duration> {
    let mask_before = pending::current()?;
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours; the old action is put back below.
    let old = unsafe { sigaction(Signal::SIGTSTP, &dfl) }?;
    nix::sys::signal::raise(Signal::SIGTSTP)?; // pending while blocked
    let stop_and_cont = SigSet::from(Signal::SIGTSTP) | Signal::SIGCONT;
    let since = Instant::now();
    pending::unblock(&stop_and_cont)?; // stopped in here until SIGCONT
    let stopped_for = since.elapsed();
    // Not "block both": a caller that had SIGCONT unblocked keeps it so.
    pending::restore(&mask_before)?;
    // SAFETY: `old` is the action that was installed before, ours or the caller's.
    unsafe { sigaction(Signal::SIGTSTP, &old) }?;
    Ok(stopped_for)
}

/// Dies of `sig` with its default action, as if no handler had been installed, so a
/// shell sees "killed by SIGINT" (the convention for Ctrl+C). Call it last, once
/// your guards have run (drop them first: this does not return).
///
/// Flushes stdout first. Returns only for a signal whose default action is not to
/// end the process (SIGCHLD...): then the shell's code for "killed by N", 128+N.
pub fn die_of(sig: Signal) -> std::process::ExitCode {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = default_action(sig as c_int);
    let _ = nix::sys::signal::raise(sig); // pending while blocked...
    let _ = pending::unblock(&SigSet::from(sig)); // ...and delivered here: we end
    std::process::ExitCode::from(128 + sig as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// stop_self ended by blocking SIGTSTP and SIGCONT, whatever the mask was
    /// before: a caller with SIGCONT unblocked (its handler waiting for `fg`) had
    /// it blocked from then on. The mask from before the call must come back.
    #[test]
    fn stop_self_gives_back_the_mask_it_found() {
        let tstp = SigSet::from(Signal::SIGTSTP);
        let original = pending::block(&tstp).unwrap();
        let before = pending::current().unwrap();
        assert!(!before.contains(Signal::SIGCONT));
        // Whoever resumes us: we stop whole (unless our process group is orphaned,
        // when the kernel discards SIGTSTP and nothing stops).
        let me = std::process::id();
        let mut waker = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "until grep -q '^State:[[:space:]]*T' /proc/{me}/status; do sleep 0.01; done; \
                 kill -CONT {me}"
            ))
            .spawn()
            .unwrap();
        let stopped = stop_self();
        let _ = waker.kill();
        let _ = waker.wait();
        let after = pending::current().unwrap();
        pending::restore(&original).unwrap();
        stopped.unwrap();
        // By membership: the words of a sigset_t past the kernel's 64 bits are
        // whatever the C library left there.
        let members = |set: &SigSet| set.iter().collect::<Vec<Signal>>();
        assert_eq!(members(&after), members(&before));
    }
}
