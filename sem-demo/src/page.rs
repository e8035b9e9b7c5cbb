//! What the acts keep in the page A and B share (`sem_demo::shared`): the counter,
//! the note, and the starting line.
//!
//! The page is mapped MAP_SHARED | MAP_ANONYMOUS *before* fork, so parent and
//! child hold the same physical page (what shm-demo shows in detail); a store by
//! one is seen by the other with no system call. That is the notes' starting point
//! for this section: 如果多个进程同时修改同一个共享内存，很有可能就冲突了 (processes
//! changing the same shared memory at once are likely to collide).
//!
//! The counter is an `AtomicU64`, and an increment is two atomic steps: a load,
//! a moment's work, then a store of what was loaded plus 1. Each step alone is
//! atomic, so there is no data race (no undefined behaviour: plain or volatile
//! accesses from two processes at once would be one); but nothing joins the two
//! steps. Between them, the other process may store its own increment, which our
//! store then overwrites: a lost update. That is the bug the act shows, and what a
//! read-modify-write does without a lock. `fetch_add` would lose nothing: it is
//! one atomic step (`lock xadd` on x86), the CPU's own tiny mutex; a semaphore is
//! the tool when the work between reading and writing is bigger than one add.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sem_demo::shared::SharedAtomics;

use crate::signals;

/// Acts 2 and 3: the counter both processes increment.
const COUNTER: usize = 0;
/// Act 4: what A leaves for B to read. An atomic, so that no order of calls can be
/// a data race (undefined behaviour), not only the right one.
const NOTE: usize = 1;
/// Processes at the starting line, so both start counting at once.
const AT_THE_START: usize = 2;
/// Processes done counting: a peer that is gone after finishing did not die.
const FINISHED: usize = 3;

/// The acts' shared page; each process unmaps its own mapping on drop.
pub struct SharedPage {
    page: SharedAtomics,
}

impl SharedPage {
    pub fn map() -> Result<SharedPage> {
        let page = SharedAtomics::map().context("mmap MAP_SHARED|MAP_ANONYMOUS")?;
        Ok(SharedPage { page })
    }

    fn counter_cell(&self) -> &AtomicU64 {
        self.page.slot(COUNTER)
    }

    /// The counter's current value.
    pub fn counter(&self) -> u64 {
        self.counter_cell().load(Ordering::Relaxed)
    }

    /// counter = counter + 1, as two separate steps: load, then store. Relaxed is
    /// enough: the lesson is not about ordering but about the gap between the two
    /// steps. (In act 3, P and V are acquire/release operations, POSIX requires
    /// sem_wait/sem_post and semop to synchronize memory, so everything inside the
    /// critical section is ordered; an uncontended POSIX P or V is not even a
    /// system call.)
    pub fn add_one(&self) {
        let counter = self.counter_cell();
        let seen = counter.load(Ordering::Relaxed);
        think();
        // The other process may have stored in between: this store erases it.
        // (`counter.fetch_add(1, ...)` would not: it loads and stores in one step.)
        counter.store(seen + 1, Ordering::Relaxed);
    }

    fn note_cell(&self) -> &AtomicU64 {
        self.page.slot(NOTE)
    }

    /// The note. Relaxed: that B sees A's 42 is not this load's doing but the sync
    /// semaphore's: A stores before its V, B loads after its P, and V/P synchronize
    /// memory. A load at another moment is still no data race: it may see 0 or 42.
    pub fn note(&self) -> u64 {
        self.note_cell().load(Ordering::Relaxed)
    }

    /// Sets the note (see `note` for why Relaxed).
    pub fn set_note(&self, value: u64) {
        self.note_cell().store(value, Ordering::Relaxed)
    }

    fn at_the_start(&self) -> &AtomicU64 {
        self.page.slot(AT_THE_START)
    }

    fn finished_cell(&self) -> &AtomicU64 {
        self.page.slot(FINISHED)
    }

    /// How many processes have finished counting.
    pub fn finished(&self) -> u64 {
        self.finished_cell().load(Ordering::SeqCst)
    }

    /// Says this process has finished counting.
    pub fn finish(&self) {
        self.finished_cell().fetch_add(1, Ordering::SeqCst);
    }

    /// Resets the counter, the starting line and the finish, before forking the
    /// counters.
    pub fn reset(&self) {
        self.counter_cell().store(0, Ordering::Relaxed);
        self.at_the_start().store(0, Ordering::SeqCst);
        self.finished_cell().store(0, Ordering::SeqCst);
    }

    /// Waits (spinning, a few microseconds) until `processes` have arrived here, so
    /// they count at the same time: without it, a fresh child may start only after
    /// its parent has finished, and nothing would collide. `other_alive` tells
    /// whether the process we wait for still runs.
    pub fn start_together(
        &self,
        processes: u64,
        limit: Duration,
        other_alive: impl Fn() -> bool,
    ) -> Result<()> {
        let start = self.at_the_start();
        start.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        while start.load(Ordering::SeqCst) < processes {
            if Instant::now() >= deadline {
                bail!("the other process never reached the starting line: is it stuck?");
            }
            if !other_alive() {
                bail!("the other process died before the starting line");
            }
            signals::check()?;
            std::hint::spin_loop();
        }
        Ok(())
    }
}

/// A moment's work between reading the counter and writing it back, standing for
/// the computation real code does there. It widens the window in which the other
/// process's increment gets lost, so the race shows on every run, not only when
/// the two loops of a few microseconds happen to overlap.
fn think() {
    for _ in 0..THINK_SPINS {
        std::hint::spin_loop();
    }
}

/// How long `think` lasts: a few hundred nanoseconds on current CPUs.
const THINK_SPINS: u32 = 20;
