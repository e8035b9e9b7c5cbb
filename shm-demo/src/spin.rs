//! A spinning ring's two indices: spin a bounded while, then sleep, so that a waiting
//! side costs no system call when the other is quick and no CPU when it is slow.
//!
//! A ring of `n` slots in shared memory has two [`Index`]es: `head`, the messages the
//! writer has published, stored only by the writer, and `tail`, the messages the reader
//! has finished with, stored only by the reader. Both only grow. The writer may fill
//! slot `head % n` while `head - tail < n`; the reader may read slot `tail % n` while
//! `tail < head`. Each side waits for the other's index with [`Index::wait_until`] and
//! moves its own with [`Index::publish`], or, cheaper, [`Index::advance`] with an
//! [`Index::waiter_asleep`] every [`WAKE_EVERY`] messages and before it waits itself.
//!
//! Memory ordering, which a copier must keep:
//! - `advance` (and `publish`) store with Release and `load`/`wait_until` read with
//!   Acquire: the slot's bytes, written with plain stores before the writer's
//!   `advance(head)`, are visible to a reader that has seen that `head`; and the reader's
//!   reads of a slot are done before its `advance(tail)` lets the writer reuse it.
//!   Relaxed on either side would let a reader see the new index and old bytes.
//! - Going to sleep is a Dekker handshake: the waiter stores "asleep" then loads the
//!   index; the publisher stores the index then loads "asleep". Release/Acquire does not
//!   keep a store before a later load (store buffers reorder exactly that), so each side
//!   puts a SeqCst fence between the two: at least one side sees the other's store, and
//!   either the waiter sees the new index or the publisher sees the waiter asleep and
//!   wakes it. Without the fences a wake-up can be lost, and the waiter sleeps on.
//! - That full barrier waits for the publisher's stores to drain, a 4 KiB copy's too: on
//!   x86-64 a SeqCst store (`xchg`) per message cost about a quarter of the spinning
//!   ring's throughput at 4 KiB (measured here, 2 vCPUs). So [`Index::advance`] stores
//!   with Release alone and [`Index::waiter_asleep`] does the fence and the look. A waiter may then sleep
//!   through a few `advance`s until the publisher's next look: the wake-up is late by
//!   at most [`WAKE_EVERY`] messages, never lost, provided the publisher also looks
//!   before it waits for the other index itself (else both could sleep for good).
//!
//! The sleep and the wake-up are the caller's: a semaphore (shm-demo: `sem_timedwait`
//! and `sem_post`, or System V `semtimedop`), or a futex (not shown here). A sleep may
//! come back with nothing new (a post for an earlier sleep that did not happen):
//! `wait_until` then looks again. One waiter per index is assumed: one writer, one reader.
//!
//! Each `Index` has 128 bytes to itself, two cache lines: the writer's stores of `head`
//! do not take away the line the reader keeps storing `tail` into, nor its neighbour,
//! which the L2 adjacent-line prefetcher fetches with it (Intel documents one; on this
//! AMD EPYC VM, 128 instead of 64 gave the 4 KiB ring 12 % more). Zeroed memory is a
//! valid `Index` (0, nobody asleep), as a fresh `ftruncate`d or `shmget` segment is.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a waiter spins before it sleeps, unless the caller says otherwise: a few
/// times what a wake-up costs (a few µs), short enough that a slow peer costs little.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// How many [`Index::advance`]s a publisher may make between two
/// [`Index::waiter_asleep`] looks: a sleeping waiter is woken that many messages late
/// at worst. A quarter of shm-demo's 16-slot ring.
pub const WAKE_EVERY: u64 = 4;

/// One index of the ring, with its waiter's "asleep" flag, alone in 128 bytes.
#[repr(C, align(128))]
#[derive(Default)]
pub struct Index {
    value: AtomicU64,
    /// 1 while the side waiting for this index is (about to be) asleep.
    asleep: AtomicU32,
}

impl Index {
    /// The index now (Acquire: what was written before it was published is visible).
    pub fn load(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Stores `n` (only this index's one owner calls this). True if the other side
    /// is asleep waiting for it: the caller must then wake it (post its semaphore).
    ///
    /// # Examples
    /// ```
    /// let head = shm_demo::spin::Index::default();
    /// assert!(!head.publish(1)); // nobody asleep: no system call needed
    /// assert_eq!(head.load(), 1);
    /// ```
    pub fn publish(&self, n: u64) -> bool {
        self.advance(n);
        self.waiter_asleep()
    }

    /// Stores `n` with Release only (only this index's one owner calls this): what was
    /// written before is visible to whoever sees `n`, but a sleeping waiter is not looked
    /// for. Follow it with [`Index::waiter_asleep`] every [`WAKE_EVERY`] messages, before
    /// waiting yourself, and after the last.
    pub fn advance(&self, n: u64) {
        self.value.store(n, Ordering::Release);
    }

    /// True if the side waiting for this index sleeps, or is about to, and has not been
    /// told yet: the caller must wake it (post its semaphore). Each sleep is reported
    /// once. A SeqCst fence first: the `advance`s before it are seen by a waiter that
    /// checks after raising its flag, or the flag is seen here (see the top of the file).
    pub fn waiter_asleep(&self) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        // The load alone first: the swap, a locked write, only when someone sleeps.
        self.asleep.load(Ordering::Relaxed) != 0 && self.asleep.swap(0, Ordering::AcqRel) != 0
    }

    /// Waits until `ready(index)`, and returns that index: spins with
    /// `std::hint::spin_loop` for up to `spin`, then raises the asleep flag, looks once
    /// more, and calls `sleep` (which returns once woken, or after a timeout of its own)
    /// until the index is ready. `sleep`'s error (a dead peer, a signal) ends the wait,
    /// unless the index became ready meanwhile: a peer may publish and die before its
    /// wake-up.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let tail = shm_demo::spin::Index::default();
    /// tail.publish(3);
    /// let no_sleep = || -> Result<(), ()> { unreachable!("it is ready: no sleep") };
    /// let seen = tail.wait_until(|t| t >= 2, Duration::from_micros(1), no_sleep);
    /// assert_eq!(seen.unwrap(), 3);
    /// ```
    pub fn wait_until<E>(
        &self,
        ready: impl Fn(u64) -> bool,
        spin: Duration,
        mut sleep: impl FnMut() -> Result<(), E>,
    ) -> Result<u64, E> {
        let started = Instant::now();
        let mut turns: u32 = 0;
        loop {
            let seen = self.load();
            if ready(seen) {
                return Ok(seen);
            }
            turns = turns.wrapping_add(1);
            // The clock every 64 turns only: a pause is ~10-150 cycles, a clock read more.
            if turns.is_multiple_of(64) && started.elapsed() >= spin {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            // The store-then-load half of the handshake, waiter side (see the top).
            self.asleep.store(1, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
            let seen = self.load();
            if ready(seen) {
                self.asleep.store(0, Ordering::Relaxed);
                return Ok(seen);
            }
            if let Err(e) = sleep() {
                self.asleep.store(0, Ordering::Relaxed);
                let seen = self.load();
                return if ready(seen) { Ok(seen) } else { Err(e) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn a_sleeping_waiter_is_woken_once_and_then_not_again() {
        let index = Index::default();
        let sleeps = AtomicU32::new(0);
        let err = index.wait_until(
            |n| n > 0,
            Duration::ZERO,
            || {
                sleeps.fetch_add(1, Ordering::Relaxed);
                Err("timed out")
            },
        );
        assert_eq!(err, Err("timed out"));
        assert_eq!(sleeps.load(Ordering::Relaxed), 1);
        // The failed sleep lowered the flag: no wake-up owed.
        assert!(!index.publish(1));
    }

    #[test]
    fn a_publish_after_the_flag_is_raised_asks_for_a_wake_up() {
        let index = Index::default();
        let mut first = true;
        let seen = index.wait_until(
            |n| n == 7,
            Duration::ZERO,
            || -> Result<(), ()> {
                if first {
                    first = false;
                    // The other side publishes while we sleep: it must wake us.
                    assert!(index.publish(7));
                }
                Ok(())
            },
        );
        assert_eq!(seen, Ok(7));
        assert!(!index.publish(8), "one wake-up per sleep");
    }

    /// A counting semaphore for threads, whose wait gives up after 10 s: a lost
    /// wake-up fails the test instead of hanging it.
    #[derive(Default)]
    struct Sema(std::sync::Mutex<u64>, std::sync::Condvar);

    impl Sema {
        fn post(&self) {
            *self.0.lock().unwrap() += 1;
            self.1.notify_one();
        }

        fn wait(&self) -> Result<(), &'static str> {
            let limit = Duration::from_secs(10);
            let count = self.0.lock().unwrap();
            let (mut count, _) = self
                .1
                .wait_timeout_while(count, limit, |n| *n == 0)
                .unwrap();
            if *count == 0 {
                return Err("a wake-up was lost: asleep 10 s with the index moved");
            }
            *count -= 1;
            Ok(())
        }
    }

    /// The ring's protocol between two threads, spinning as little as it can (so that
    /// they sleep often), with `advance` and a look every WAKE_EVERY, as shm-demo does.
    /// It catches a protocol in which both sides can sleep (a look missing before a
    /// wait); a missing fence loses a wake-up too rarely on x86-64 to be caught here
    /// (three runs without the fences passed).
    #[test]
    fn no_wake_up_is_lost_between_a_writer_and_a_reader_that_sleep() {
        const N: u64 = 20_000;
        const SLOTS: u64 = 4;
        let (head, tail) = (Index::default(), Index::default());
        let (filled, free) = (Sema::default(), Sema::default());
        std::thread::scope(|s| {
            s.spawn(|| {
                for k in 0..N {
                    if head.waiter_asleep() {
                        filled.post(); // before we may sleep ourselves
                    }
                    tail.wait_until(|t| k < t + SLOTS, Duration::ZERO, || free.wait())
                        .unwrap();
                    head.advance(k + 1);
                    if (k + 1).is_multiple_of(WAKE_EVERY) && head.waiter_asleep() {
                        filled.post();
                    }
                }
                if head.waiter_asleep() {
                    filled.post(); // after the last
                }
            });
            for k in 0..N {
                if tail.waiter_asleep() {
                    free.post();
                }
                let seen = head.wait_until(|h| h > k, Duration::ZERO, || filled.wait());
                assert!(seen.unwrap() > k);
                tail.advance(k + 1);
                if (k + 1).is_multiple_of(WAKE_EVERY) && tail.waiter_asleep() {
                    free.post();
                }
            }
        });
        assert_eq!((head.load(), tail.load()), (N, N));
    }

    #[test]
    fn a_failed_sleep_still_returns_an_index_published_meanwhile() {
        let index = Index::default();
        let seen = index.wait_until(
            |n| n == 1,
            Duration::ZERO,
            || {
                index.publish(1);
                Err("peer gone")
            },
        );
        assert_eq!(seen, Ok(1));
    }
}
