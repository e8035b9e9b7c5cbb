//! What both flavours share: the P and V operations, and two ways to look at a
//! semaphore's count.
//!
//! The notes define the operations on a count that may go negative:
//! - P 操作，这个操作会把信号量减去 1，相减后如果信号量 < 0，则表明资源已被占用，进程需
//!   阻塞等待 (P subtracts 1; below 0, the resource is taken and the process blocks);
//! - V 操作，这个操作会把信号量加上 1，相加后如果信号量 <= 0，则表明当前有阻塞中的进程，
//!   于是会将该进程唤醒运行 (V adds 1; at 0 or below, a process is blocked: wake it).
//!
//! Linux does not store that count. Its value never goes below 0: a P that finds 0
//! does not subtract, it puts the process to sleep, and the sleepers are counted
//! apart: by the kernel for System V (semctl GETNCNT reports it), by glibc inside
//! the `sem_t` for POSIX (no call reports it; /proc/PID/wchan shows each sleeper,
//! which is how this program counts its own). The two views agree through one
//! line: the notes' count = Linux's value − the processes asleep in P. `View`
//! prints both, and says where its count of sleepers comes from.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::errno::Errno;
use nix::unistd::Pid;

use crate::signals;

pub use sem_demo::procfs::is_alive;
use sem_demo::procfs::{self, asleep_in};

/// How long a look at GETNCNT may wait for a sleeper that stepped out of the
/// kernel's queue at the end of a slice (see `count_sleepers`).
pub const STEPPED_OUT: Duration = Duration::from_millis(500);
/// How long a process waits for a V its peer should do: far longer than a busy
/// machine pauses, so running out means the peer is gone.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(20);

/// A semaphore of either flavour.
pub trait Semaphore {
    /// How the narration names it: `/sem-demo-42-mutex`, `set 3 #0`.
    fn label(&self) -> &str;
    /// One P that sleeps at most `slice`: `Ok(true)` if it took a unit,
    /// `Ok(false)` if the time ran out, `Err(EINTR)` if a signal woke it.
    fn p_within(&self, slice: Duration) -> nix::Result<bool>;
    /// The library's P: at most `limit` (`None`: no limit), in slices, asking
    /// `stop()` before each. `Ok(None)`: `stop()` said yes.
    fn p_until(
        &self,
        limit: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<Option<Took>>;
    /// V: give one unit back, waking a sleeper if there is one.
    fn v(&self) -> Result<()>;
    /// The value as Linux keeps it: never below 0.
    fn value(&self) -> Result<i32>;
    /// The processes asleep in P as the kernel counts them, where the API can tell
    /// (System V's GETNCNT); `None` for POSIX.
    fn sleepers(&self) -> Result<Option<i32>>;
    /// Part of the kernel function a process asleep in P shows in /proc/PID/wchan.
    fn sleeps_in(&self) -> &'static str;
    /// True if the kernel gives back the units a process took when it dies
    /// (System V's SEM_UNDO); a POSIX semaphore has no such thing.
    fn undone_at_exit(&self) -> bool;
    /// What an error of P means for this flavour, in a sentence (EIDRM: the set
    /// was removed; for POSIX, sem_unlink never takes an open semaphore away).
    fn why_failed(&self, e: Errno) -> String {
        e.to_string()
    }
    /// Removes the semaphore (System V: the set; POSIX: its name and file) on behalf
    /// of its creator, which died without a chance to (SIGKILL). Already gone is
    /// fine.
    fn remove_for_dead_creator(&self) -> Result<()>;
    /// False for a semaphore that dies with the last process holding it (an
    /// eventfd): nothing to remove for a dead creator, so nothing is said.
    fn outlives_its_processes(&self) -> bool {
        true
    }
}

/// How a P ended: with the unit, or without it once the time limit ran out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Took {
    Yes,
    TimedOut,
}

/// P: takes one unit, sleeping while there is none, for at most `limit` (`None`:
/// until a V comes). Ctrl+C stops the wait with `Interrupted`.
pub fn p(sem: &dyn Semaphore, limit: Option<Duration>) -> Result<Took> {
    p_watching(sem, limit, None)
}

/// The process that should do the V we wait for. A semaphore has no end of file,
/// so a wait looks at the peer itself whenever a slice passes with no V; each
/// flavour finds it by something the kernel keeps (a pid, SEM_UNDO's undo at
/// death, /proc/PID/maps).
pub trait Peer {
    /// `Some(sentence)` once the peer is known to be dead: what happened, why no V
    /// will come, and what it left behind with the command that removes it.
    fn death(&self) -> Result<Option<String>>;
    /// Called after each P that took a unit, while the peer must be alive (it has
    /// just done V): a chance to find a peer not known yet. Nothing by default.
    fn notice(&self) {}
}

/// A peer known by its pid: the parent or the child of a one-run ping.
pub struct Process<'a> {
    pub pid: Pid,
    pub who: &'a str,
}

impl Peer for Process<'_> {
    fn death(&self) -> Result<Option<String>> {
        Ok((!is_alive(self.pid))
            .then(|| format!("{} (pid {}) is gone, so no V will come", self.who, self.pid)))
    }
}

/// P, as `p`, that also gives up with an error once `peer`, the process that
/// should do the V, has died.
pub fn p_watching(
    sem: &dyn Semaphore,
    limit: Option<Duration>,
    peer: Option<&dyn Peer>,
) -> Result<Took> {
    // "Stop?" is asked before every slice: Ctrl+C at once; the peer only once a
    // slice has passed with no V (not before the first, so a ping's round trip
    // reads no /proc file).
    let death: Cell<Option<Result<String>>> = Cell::new(None);
    let first = Cell::new(true);
    let stop = || {
        if signals::stopped() {
            return true;
        }
        let Some(peer) = peer else { return false };
        if first.replace(false) {
            return false;
        }
        match peer.death() {
            Ok(None) => false,
            found => {
                death.set(found.transpose());
                true
            }
        }
    };
    match sem.p_until(limit, &stop) {
        Ok(Some(took)) => {
            if took == Took::Yes
                && let Some(peer) = peer
            {
                peer.notice();
            }
            Ok(took)
        }
        Ok(None) => {
            signals::check()?;
            let why = death.take().unwrap_or_else(|| Ok("stopped".to_string()))?;
            // Its last V may have come just before it ended: take that unit without
            // sleeping before saying nothing will come.
            if sem.p_within(Duration::ZERO) == Ok(true) {
                return Ok(Took::Yes);
            }
            bail!("P on {}: {why}", sem.label());
        }
        Err(e) => bail!("P on {}: {}", sem.label(), sem.why_failed(e)),
    }
}

/// P that must succeed within `limit`: a timeout means the peer that should have
/// done V is gone, which is an error saying who.
pub fn p_from(sem: &dyn Semaphore, limit: Duration, peer: &str) -> Result<()> {
    match p(sem, Some(limit))? {
        Took::Yes => Ok(()),
        Took::TimedOut => bail!(
            "P on {}: no V came within {limit:?}: is {peer} gone?",
            sem.label()
        ),
    }
}

/// Both views of a semaphore at one moment.
pub struct View {
    pub value: i32,
    pub sleepers: i32,
    /// Where the sleepers count comes from: GETNCNT, our own look at /proc, or
    /// nowhere (the program knows none of its processes can be in P).
    pub source: &'static str,
}

impl View {
    /// Looks at `sem` once. `watched`: the processes of ours that may be asleep in P
    /// on it now (in these acts, a futex or semtimedop sleep can only be that P);
    /// empty when the program knows none can be, which the label then says.
    pub fn of(sem: &dyn Semaphore, watched: &[Pid]) -> Result<View> {
        View::look(sem, watched, 0)
    }

    /// As `of`, for processes just seen asleep in P: looks again (for at most
    /// STEPPED_OUT) until all of them are counted, as one may be between two
    /// slices of its wait (see `count_sleepers`).
    pub fn once_asleep(sem: &dyn Semaphore, watched: &[Pid]) -> Result<View> {
        View::look(sem, watched, watched.len() as i32)
    }

    fn look(sem: &dyn Semaphore, watched: &[Pid], expected: i32) -> Result<View> {
        let kernel = count_sleepers(sem, expected, STEPPED_OUT)?;
        let (sleepers, source) = match kernel {
            Some(n) => (n, "GETNCNT"),
            // POSIX: glibc counts its waiters inside the sem_t, but no call reads
            // that count; so we count our processes asleep in the kernel.
            None if watched.is_empty() => (0, "assumed: no process of ours is in P"),
            None => (
                count_asleep(watched, sem.sleeps_in(), expected)?,
                "counted here from /proc/PID/wchan",
            ),
        };
        let value = sem.value()?;
        Ok(View {
            value,
            sleepers,
            source,
        })
    }

    /// The count as the notes keep it.
    pub fn notes_count(&self) -> i32 {
        self.value - self.sleepers
    }
}

/// How many of `pids` sleep in the kernel in a function containing `wchan`, looked
/// at again until at least `expected` do, for at most STEPPED_OUT.
fn count_asleep(pids: &[Pid], wchan: &str, expected: i32) -> Result<i32> {
    let deadline = Instant::now() + STEPPED_OUT;
    loop {
        let n = pids
            .iter()
            .filter(|&&pid| asleep_in(pid, wchan).is_some())
            .count() as i32;
        if n >= expected || Instant::now() >= deadline {
            return Ok(n);
        }
        signals::check()?;
        nap();
    }
}

/// The kernel's count of the processes asleep in P (GETNCNT; `None` for POSIX),
/// looked at again until it is at least `expected`, for at most `limit`.
///
/// Why look again: a sleeper wakes up at the end of every slice to check for
/// Ctrl+C (`p_watching`) and calls P again at once. For those few microseconds it
/// is out of the kernel's queue, and a single look could count one sleeper too
/// few. A sleeper is back in the queue almost at once, so waiting for it gives
/// the true count; if it never comes back, we print what the kernel says.
pub fn count_sleepers(sem: &dyn Semaphore, expected: i32, limit: Duration) -> Result<Option<i32>> {
    let deadline = Instant::now() + limit;
    loop {
        let counted = sem.sleepers()?;
        match counted {
            Some(n) if n < expected && Instant::now() < deadline => {
                signals::check()?;
                nap();
            }
            _ => return Ok(counted),
        }
    }
}

impl View {
    /// Both views, for the moments when nothing is in flight between them.
    pub fn both(&self) -> String {
        format!("{self} | notes: count={}", self.notes_count())
    }
}

/// Linux's view: `Linux: value=0 asleep_in_P=1 (GETNCNT)`.
impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Linux: value={} asleep_in_P={} ({})",
            self.value, self.sleepers, self.source
        )
    }
}

/// Waits until `pid` sleeps in the kernel in a function containing `wchan` (the
/// kernel's own word that it is blocked: `ps` shows state S, and
/// `cat /proc/PID/wchan` the function). Returns that function's name.
pub fn wait_until_asleep(pid: Pid, wchan: &str, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        signals::check()?;
        if let Some(sleeping_in) = asleep_in(pid, wchan) {
            return Ok(sleeping_in);
        }
        let state = procfs::state(pid);
        if state.is_none() {
            bail!("process {pid} is gone: it should be asleep in P");
        }
        if state == Some('Z') {
            bail!("process {pid} exited: it should be asleep in P");
        }
        if Instant::now() >= deadline {
            bail!("process {pid} did not fall asleep in P within {limit:?}");
        }
        nap();
    }
}

/// The pause between two looks in a polling loop: short, so that a Ctrl+C (seen
/// at the next look) and the event we wait for are noticed at once.
pub fn nap() {
    std::thread::sleep(Duration::from_millis(1));
}
