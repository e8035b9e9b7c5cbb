//! Named POSIX semaphores: sem_open, sem_timedwait (P), sem_post (V), sem_unlink.
//!
//! A named semaphore `/x` is a `sem_t` in the file /dev/shm/sem.x (a tmpfs), which
//! glibc maps into every process that opens it. P and V are atomics on that shared
//! word: a P that finds a unit, and a V that finds no waiter, never enter the
//! kernel; a P that finds 0 sleeps in futex(2), and a V that finds a waiter makes a
//! futex(2) call to wake one (glibc's; another C library may differ). The kernel
//! does not know who took a unit, so nothing gives back the unit of a holder that
//! died (SIGKILL, a crash):
//! every P here has a deadline, and a wait that must end when its peer dies can ask
//! "stop?" between slices (see [`crate::procfs`] to find the peer).
//!
//! In order: [`NamedSemaphore::create`] (one process) or [`NamedSemaphore::open`] /
//! [`NamedSemaphore::open_waiting`] (the others); [`NamedSemaphore::p`] and
//! [`NamedSemaphore::v`]; the creator's drop (or [`NamedSemaphore::remove`]) unlinks.
//!
//! Needs `libc`, and nix with the features "time" and "process" (Pid, getpid);
//! nothing else of this crate.

use std::ffi::{CString, c_uint};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime};
use nix::unistd::{Pid, getpid};

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// P took a unit.
    Yes,
    /// The time limit ran out first.
    TimedOut,
    /// The caller's "stop?" said yes (looked at between slices, and after a signal).
    Stopped,
}

/// The longest one sleep lasts before [`NamedSemaphore::p`] asks "stop?" again.
pub const SLICE: Duration = Duration::from_millis(200);

/// The longest slice [`NamedSemaphore::try_p_for`] takes (about 68 years): now plus
/// a longer one would overflow the deadline's time_t (a wrapped, past deadline, or
/// a panic in nix's TimeSpec arithmetic).
pub const MAX_SLICE: Duration = Duration::from_secs(i32::MAX as u64);

/// A named semaphore this process has open. Drop closes it (sem_close), and also
/// unlinks the name if this process created it: a forked child's copy never does.
///
/// # Examples
/// A mutex (value 1) around a critical section, with a deadline on P, so a holder
/// that died is an error and not a hang:
/// ```
/// use sem_demo::posix::{NamedSemaphore, Took};
/// use std::time::Duration;
///
/// let name = format!("/doctest-mutex-{}", std::process::id());
/// let mutex = NamedSemaphore::create(&name, 1)?; // unlinked when dropped
/// let other = NamedSemaphore::open(&name)?; // what a second process would do
/// assert_eq!(other.p(Some(Duration::MAX), &|| false)?, Took::Yes); // no panic
/// // ... the critical section: one process at a time ...
/// other.v()?;
/// assert_eq!(mutex.value()?, 1);
/// drop(mutex);
/// assert!(!std::path::Path::new(&format!("/dev/shm/sem.{}", &name[1..])).exists());
/// # Ok::<(), nix::Error>(())
/// ```
pub struct NamedSemaphore {
    sem: NonNull<libc::sem_t>,
    name: CString,
    /// The pid that unlinks the name on drop, if any.
    remover: Option<Pid>,
}

impl NamedSemaphore {
    /// sem_open with O_CREAT|O_EXCL, mode 0600, and `value` units: a new semaphore,
    /// never one that was there before (EEXIST: an old one, maybe with a dead
    /// holder or a stranger at its other end). Unlinked when dropped in this process.
    pub fn create(name: &str, value: u32) -> nix::Result<NamedSemaphore> {
        let c_name = CString::new(name).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `c_name` is a valid C string; with O_CREAT, sem_open reads two more
        // arguments, the mode and the value, passed as c_uint as the C default
        // argument promotions require.
        let sem = unsafe {
            libc::sem_open(
                c_name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL,
                0o600 as c_uint,
                value as c_uint,
            )
        };
        NamedSemaphore::opened(sem, c_name, Some(getpid()))
    }

    /// sem_open without O_CREAT: an existing semaphore, or ENOENT at once (EACCES:
    /// another user's). glibc builds a new semaphore in a temporary file and
    /// link(2)s it into place, so a name that exists is always initialised.
    pub fn open(name: &str) -> nix::Result<NamedSemaphore> {
        let c_name = CString::new(name).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `c_name` is a valid C string; without O_CREAT sem_open reads no
        // further arguments.
        let sem = unsafe { libc::sem_open(c_name.as_ptr(), 0) };
        NamedSemaphore::opened(sem, c_name, None)
    }

    /// [`open`](Self::open) that waits for the creator: retries ENOENT every 10 ms
    /// until `limit` has passed (then ENOENT) or `stop()` says yes (then EINTR). Two
    /// programs started together need not know which one is first.
    ///
    /// # Examples
    /// ```
    /// use sem_demo::posix::{self, NamedSemaphore};
    /// use std::time::Duration;
    ///
    /// let name = format!("/doctest-late-{}", std::process::id());
    /// # // Unlinks on every way out, a panic included (the creator disowns it).
    /// # struct Unlink(String);
    /// # impl Drop for Unlink { fn drop(&mut self) { let _ = posix::unlink(&self.0); } }
    /// # let _unlink = Unlink(name.clone());
    /// let late = name.clone();
    /// let creator = std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(50)); // the creator comes second
    ///     let mut sem = NamedSemaphore::create(&late, 1).unwrap();
    ///     sem.disown(); // the opener removes it
    /// });
    /// let opened = NamedSemaphore::open_waiting(&name, Duration::MAX, &|| false);
    /// creator.join().unwrap();
    /// let _ = posix::unlink(&name); // removed whatever happened above
    /// assert_eq!(opened?.value()?, 1);
    /// # Ok::<(), nix::Error>(())
    /// ```
    pub fn open_waiting(
        name: &str,
        limit: Duration,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<NamedSemaphore> {
        // Capped at 136 years: `Instant + Duration::MAX` would panic.
        let deadline = Instant::now() + limit.min(Duration::from_secs(u32::MAX as u64));
        loop {
            match NamedSemaphore::open(name) {
                Err(Errno::ENOENT) if Instant::now() < deadline => {}
                other => return other,
            }
            if stop() {
                return Err(Errno::EINTR);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn opened(
        sem: *mut libc::sem_t,
        name: CString,
        remover: Option<Pid>,
    ) -> nix::Result<NamedSemaphore> {
        if sem == libc::SEM_FAILED {
            return Err(Errno::last());
        }
        let sem = NonNull::new(sem).ok_or(Errno::EINVAL)?;
        Ok(NamedSemaphore { sem, name, remover })
    }

    /// The name, `/x`.
    pub fn name(&self) -> &str {
        self.name.to_str().unwrap_or("?") // made from a &str
    }

    /// The file glibc keeps it in: `/x` is /dev/shm/sem.x (`ls -l` shows it).
    pub fn file(&self) -> String {
        file_of(self.name())
    }

    /// One P that sleeps at most `slice`: `Ok(true)` if it took a unit, `Ok(false)`
    /// if the time ran out, `Err(EINTR)` if a signal handler ran, with SA_RESTART or
    /// without (measured on Linux 6.18 with glibc 2.36; signal(7) lists
    /// sem_timedwait among the calls SA_RESTART restarts, which holds for the
    /// untimed sem_wait only).
    ///
    /// sem_timedwait takes an absolute time on CLOCK_REALTIME, made here from now +
    /// `slice` (a slice past [`MAX_SLICE`] is cut to it): a clock set back while it
    /// sleeps lengthens this sleep by as much.
    pub fn try_p_for(&self, slice: Duration) -> nix::Result<bool> {
        let slice = TimeSpec::from_duration(slice.min(MAX_SLICE));
        let deadline = clock_gettime(ClockId::CLOCK_REALTIME)? + slice;
        // SAFETY: `sem` is open for as long as `self` lives, and the sem_t it points
        // to, mapped by glibc, never moves.
        if unsafe { libc::sem_timedwait(self.sem.as_ptr(), deadline.as_ref()) } == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::ETIMEDOUT => Ok(false),
            e => Err(e),
        }
    }

    /// P: takes one unit, sleeping while there is none, for at most `limit` (`None`:
    /// no limit). Sleeps in slices of at most [`SLICE`] and asks `stop()` before
    /// each (a Ctrl+C flag, "is my peer dead?"), so a wait never outlives its reason.
    /// An EINTR only makes it ask again; the limit is kept on the monotonic clock.
    pub fn p(&self, limit: Option<Duration>, stop: &dyn Fn() -> bool) -> nix::Result<Took> {
        // Too far to represent (Duration::MAX): no limit, not a panic.
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        loop {
            if stop() {
                return Ok(Took::Stopped);
            }
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            match self.try_p_for(slice) {
                Ok(true) => return Ok(Took::Yes),
                Ok(false) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Ok(Took::TimedOut);
                }
                Ok(false) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// V: gives one unit back, waking a sleeper if there is one. Never blocks.
    pub fn v(&self) -> nix::Result<()> {
        // SAFETY: as in `try_p_for`.
        Errno::result(unsafe { libc::sem_post(self.sem.as_ptr()) }).map(drop)
    }

    /// The value, never below 0: glibc returns 0, not minus the sleepers, when some
    /// are asleep in P (sem_getvalue(3)), and no call tells how many sleep.
    pub fn value(&self) -> nix::Result<i32> {
        let mut value = 0;
        // SAFETY: as in `try_p_for`; `value` is a valid place for the result.
        Errno::result(unsafe { libc::sem_getvalue(self.sem.as_ptr(), &mut value) })?;
        Ok(value)
    }

    /// Leaves the unlinking to someone else (last one out, say): drop only closes.
    pub fn disown(&mut self) {
        self.remover = None;
    }

    /// Unlinks the name now, reporting a failure (drop can only ignore it). Processes
    /// that have it open go on using it; a later open finds no such name.
    pub fn remove(mut self) -> nix::Result<()> {
        self.remover = None; // leaves drop only the sem_close
        unlink(self.name())
    }
}

/// sem_unlink `name`: the name and its file go; the semaphore itself lives on until
/// the last process that has it open closes it or dies. To remove a semaphore whose
/// creator died (SIGKILL runs no drop); ENOENT if it is gone already.
pub fn unlink(name: &str) -> nix::Result<()> {
    let c_name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c_name` is a valid C string.
    Errno::result(unsafe { libc::sem_unlink(c_name.as_ptr()) }).map(drop)
}

/// The file behind a name: `/x` is /dev/shm/sem.x (glibc's choice, where /dev/shm is
/// mounted, as on every mainstream distribution).
pub fn file_of(name: &str) -> String {
    format!("/dev/shm/sem.{}", name.trim_start_matches('/'))
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        if self.remover == Some(getpid()) {
            let _ = unlink(self.name());
        }
        // SAFETY: `sem` came from sem_open and is closed once, here; nothing uses it
        // after this.
        unsafe { libc::sem_close(self.sem.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    /// Duration::MAX as a slice wrapped to a deadline one second in the past, so
    /// the "longest" wait returned at once, as if it had timed out (a larger
    /// wrap, 2^63 s, panics in nix's TimeSpec arithmetic). Now it is a long wait,
    /// ended here by a V once the waiter sleeps in futex.
    #[test]
    fn a_huge_slice_is_a_long_wait() {
        let name = format!("/unit-huge-slice-{}", std::process::id());
        let sem = NamedSemaphore::create(&name, 0).unwrap();
        let waiter = nix::unistd::gettid();
        let done = Arc::new(AtomicBool::new(false));
        let finished = Arc::clone(&done);
        let giver_name = name;
        let giver = std::thread::spawn(move || {
            let wchan = format!("/proc/self/task/{waiter}/wchan");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !finished.load(SeqCst)
                && !std::fs::read_to_string(&wchan)
                    .unwrap_or_default()
                    .contains("futex")
            {
                assert!(Instant::now() < deadline, "the waiter never slept in futex");
                std::thread::yield_now();
            }
            NamedSemaphore::open(&giver_name).unwrap().v().unwrap();
        });
        let took = sem.try_p_for(Duration::MAX);
        done.store(true, SeqCst);
        giver.join().unwrap();
        assert_eq!(took, Ok(true));
    }
}
