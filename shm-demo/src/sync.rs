//! Shared memory needs synchronisation: the semaphores and the waits both flavours use.
//!
//! The notes, section 信号量: 用了共享内存通信方式，带来新的问题 (shared memory brings a
//! new problem): nothing tells the reader that the data is there, nor the writer that a
//! slot may be reused. Four semaphores do:
//!
//! - `free` (starts at the number of slots) and `filled` (starts at 0), for the ring:
//!   the writer does P(free), fills a slot, V(filled); the reader does P(filled),
//!   reads the slot in place, V(free). A full ring puts the writer to sleep, an empty
//!   one the reader: no polling loop, no sleep(3).
//! - `ping` and `pong` (both 0), for round trips: the writer's V(ping) wakes the
//!   reader, the reader's V(pong) wakes the writer.
//!
//! A wait must also end when Ctrl+C arrives or the other process dies, so every P is a
//! timed one (sem_timedwait, semtimedop) in a loop: after each timeout the loop checks
//! the signal flag and whether the peer is still alive, then waits again. A peer that
//! looks gone gets one last non-blocking P (sem_trywait, IPC_NOWAIT): it may have
//! posted just before it exited.
//!
//! `--spin` replaces the round trip's semaphores by two counters in the segment, read
//! and written with Acquire/Release atomics: no system call at all per round trip,
//! at the price of a CPU kept busy while waiting. The fast path, not the default.
//! With `--count`, `--spin` is the spinning ring (`shm_demo::spin`): head and tail
//! counters in the segment, each side spinning up to 50 µs before it sleeps on `filled`
//! or `free`, posted only to wake a side that sleeps; the writer's last call is a
//! V(ping), after which the reader may destroy the semaphores.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::unistd::Pid;

use crate::segment::{CacheLine, Header};
use crate::signals;

/// How long one timed wait lasts before the loop looks at the signal flag and the peer.
pub const TICK: Duration = Duration::from_millis(100);

/// The four semaphores, by their index in the POSIX array or the System V set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sem {
    Free = 0,
    Filled = 1,
    Ping = 2,
    Pong = 3,
}

impl Sem {
    pub fn name(self) -> &'static str {
        match self {
            Sem::Free => "free",
            Sem::Filled => "filled",
            Sem::Ping => "ping",
            Sem::Pong => "pong",
        }
    }
}

/// The starting values: `free` = the number of slots, the others 0.
pub fn initial_values(slots: usize) -> [u32; 4] {
    [slots as u32, 0, 0, 0]
}

/// P and V, as each flavour provides them.
pub trait Semaphores {
    /// V: add one, waking a process asleep in P on this semaphore.
    fn post(&self, sem: Sem) -> Result<()>;
    /// P for at most `limit`: true if we took one; false if the time ran out or a
    /// signal interrupted the wait (the caller's loop then decides).
    fn wait_at_most(&self, sem: Sem, limit: Duration) -> Result<bool>;
    /// P without waiting: true if we took one, false if there was none to take.
    fn try_take(&self, sem: Sem) -> Result<bool>;
    /// The calls behind P and V, for narration.
    fn wait_call(&self) -> &'static str;
    fn post_call(&self) -> &'static str;
}

/// P, until it succeeds, Ctrl+C arrives or the peer is gone.
pub fn wait(sems: &impl Semaphores, sem: Sem, peer: &Peer) -> Result<()> {
    loop {
        signals::check()?;
        match sems.wait_at_most(sem, TICK) {
            Ok(true) => return Ok(()),
            // Timed out or interrupted: look around, then wait again.
            Ok(false) => {
                if let Err(gone) = peer.check() {
                    // The classic check-then-act window: the peer may have posted and
                    // exited after our wait timed out and before we looked. What it
                    // posted is still there: take it if so, and only then call it gone
                    // (an error here, a removed set, also means there is nothing to take).
                    if matches!(sems.try_take(sem), Ok(true)) {
                        return Ok(());
                    }
                    return Err(gone.into());
                }
            }
            Err(e) => {
                peer.check()?; // a peer that has gone explains a failed wait best
                return Err(e);
            }
        }
    }
}

/// Spins until `counter` holds `want` (or END), and returns what it holds. Every 1024
/// turns it yields the CPU (the peer may be waiting for that very CPU), checks the
/// signal flag, and every TICK whether the peer is still alive. The clock is first read
/// at turn 1024, not on entry: a round trip answered sooner costs no clock read here.
pub fn spin_until(counter: &CacheLine, want: u64, end: u64, peer: &Peer) -> Result<u64> {
    let mut turns: u32 = 0;
    let mut last_check: Option<Instant> = None;
    loop {
        // Acquire: what the other side stored before its Release store of this value
        // (the message in the slot) is visible to us once we see the value.
        let seen = counter.0.load(Ordering::Acquire);
        if seen == want || seen == end {
            return Ok(seen);
        }
        turns = turns.wrapping_add(1);
        if turns.is_multiple_of(1024) {
            signals::check()?;
            let now = Instant::now();
            if now - *last_check.get_or_insert(now) >= TICK {
                if let Err(gone) = peer.check() {
                    // As in `wait`: the peer may have stored its value and exited
                    // since our last look at the counter. Look once more.
                    let seen = counter.0.load(Ordering::Acquire);
                    if seen == want || seen == end {
                        return Ok(seen);
                    }
                    return Err(gone.into());
                }
                last_check = Some(now);
            }
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The process on the other side of the segment, as seen from its header.
pub struct Peer<'a> {
    header: &'a Header,
    is: Role,
    /// The default run's writer: known to the reader before it claims the segment.
    expected: Option<Pid>,
}

enum Role {
    Reader,
    Writer,
}

impl<'a> Peer<'a> {
    /// The reader, watched by the writer.
    pub fn reader(header: &'a Header) -> Peer<'a> {
        Peer {
            header,
            is: Role::Reader,
            expected: None,
        }
    }

    /// The writer, watched by the reader; `expected` if the reader started it itself.
    pub fn writer(header: &'a Header, expected: Option<Pid>) -> Peer<'a> {
        Peer {
            header,
            is: Role::Writer,
            expected,
        }
    }

    /// `Err(PeerGone)` once the peer has left or died.
    pub fn check(&self) -> Result<(), PeerGone> {
        match self.is {
            Role::Reader => {
                let pid = self.header.reader_pid();
                if self.header.reader_left() {
                    return Err(PeerGone::reader(pid, false));
                }
                if is_gone(pid) {
                    return Err(PeerGone::reader(pid, true));
                }
            }
            Role::Writer => {
                let pid = match self.header.writer_pid() {
                    0 => self.expected.map_or(0, Pid::as_raw),
                    pid => pid,
                };
                // 0: no writer yet. The reader waits for one as long as it takes.
                if pid != 0 && is_gone(pid) {
                    return Err(PeerGone::writer(pid));
                }
            }
        }
        Ok(())
    }
}

pub use shm_demo::is_gone;

/// The other side is gone. `died`: without cleaning up (killed), so the objects it
/// owned are still there.
#[derive(Debug)]
pub struct PeerGone {
    pub role: &'static str,
    pub pid: i32,
    pub died: bool,
}

impl PeerGone {
    fn reader(pid: i32, died: bool) -> PeerGone {
        PeerGone {
            role: "reader",
            pid,
            died,
        }
    }

    fn writer(pid: i32) -> PeerGone {
        PeerGone {
            role: "writer",
            pid,
            died: true,
        }
    }
}

impl std::fmt::Display for PeerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (role, pid) = (self.role, self.pid);
        if self.died {
            write!(
                f,
                "the {role} (pid {pid}) is gone: it exited or was killed before it finished"
            )
        } else {
            write!(
                f,
                "the {role} (pid {pid}) has left: it stopped waiting and removed the segment"
            )
        }
    }
}

impl std::error::Error for PeerGone {}
