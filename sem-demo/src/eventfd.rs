//! An eventfd(2) made with `EFD_SEMAPHORE`: a counting semaphore that is a file
//! descriptor. V is a `write(2)` of 1 (the kernel adds it to a 64-bit counter);
//! P is a `read(2)` that takes 1 when the counter is above 0 and otherwise sleeps
//! (a blocking eventfd) or fails with EAGAIN (`EFD_NONBLOCK`, as here).
//!
//! What it adds to the notes' semaphore (信号量): it is pollable. poll(2), select(2)
//! and epoll(7) say it is readable while the counter is above 0, so one wait can
//! cover the semaphore and a socket or pipe, with a deadline; neither a System V
//! set nor a POSIX `sem_t` is a file descriptor, so no poll can wait on them.
//! And it has no name: nothing to remove, nothing left behind; the kernel frees it
//! when the last descriptor to it is closed, by any exit, SIGKILL included. The
//! other side is a process that inherited it through fork (or received it over a
//! Unix socket with SCM_RIGHTS: socket-demo `fdpass`, not shown here).
//!
//! The counter can be read without taking a unit: [`count_of`] reads
//! `eventfd-count` from /proc/PID/fdinfo/FD (a hex number, proc(5)).
//!
//! Needs only [`crate::posix::Took`] from this crate. In production: an eventfd
//! is how event loops (mio's `Waker` under tokio, glib's main loop) wake a thread
//! or count jobs; for a lock, `flock(2)` or a robust pthread mutex (not shown here).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::unistd::Pid;

pub use crate::posix::Took;

/// The longest a P sleeps in one poll before it asks `stop()` again.
pub const SLICE: Duration = Duration::from_millis(200);

/// An eventfd in semaphore mode, non-blocking, closed on exec.
///
/// Non-blocking so that every P can have a deadline: a read at 0 returns EAGAIN
/// at once and [`EventSemaphore::p`] sleeps in poll(2) instead. `O_NONBLOCK`
/// belongs to the open file description, which a forked child shares: setting
/// it in one process (fcntl F_SETFL) would change it under the other too, so it
/// is chosen once, here, at creation.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sem_demo::eventfd::{EventSemaphore, Took, count_of};
///
/// let sem = EventSemaphore::new(2)?;
/// assert_eq!(count_of(nix::unistd::getpid(), sem.raw_fd())?, 2);
/// assert!(sem.try_p()?);
/// sem.v()?;
/// assert_eq!(sem.p(Some(Duration::MAX), &|| false)?, Took::Yes); // no panic
/// assert_eq!(sem.p(Some(Duration::ZERO), &|| false)?, Took::Yes);
/// // The counter is 0: P with no time to wait says so.
/// assert_eq!(sem.p(Some(Duration::ZERO), &|| false)?, Took::TimedOut);
/// drop(sem); // closes the fd: nothing to remove
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct EventSemaphore {
    fd: EventFd,
}

impl EventSemaphore {
    /// eventfd(value, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC). 1 makes a mutex
    /// (互斥信号量), 0 a sync semaphore (同步信号量).
    pub fn new(value: u32) -> nix::Result<EventSemaphore> {
        let flags = EfdFlags::EFD_SEMAPHORE | EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        Ok(EventSemaphore {
            fd: EventFd::from_value_and_flags(value, flags)?,
        })
    }

    /// The descriptor's number, for /proc/PID/fdinfo/FD.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// V: write(2) of the 8-byte number 1. EAGAIN only if the counter stands at
    /// its maximum, 2^64 - 2 (eventfd(2)).
    pub fn v(&self) -> nix::Result<()> {
        self.fd.write(1).map(drop)
    }

    /// One P that never sleeps: `Ok(true)` if the read took a unit, `Ok(false)` if
    /// the counter was 0 (EAGAIN). In semaphore mode each read takes exactly 1
    /// (without EFD_SEMAPHORE a read would take the whole count at once).
    pub fn try_p(&self) -> nix::Result<bool> {
        match self.fd.read() {
            Ok(_one) => Ok(true),
            Err(Errno::EAGAIN) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// P: takes one unit, sleeping in poll(2) while the counter is 0, for at most
    /// `limit` (`None`: no limit), in slices of at most [`SLICE`], asking `stop()`
    /// before each. Several processes may wait: poll wakes them all at a V, one
    /// read takes the unit, and the others find EAGAIN and sleep again.
    /// A signal that cuts a poll short (EINTR) only makes it ask `stop()` again:
    /// the limit is kept, as in [`crate::posix::NamedSemaphore::p`].
    pub fn p(&self, limit: Option<Duration>, stop: &dyn Fn() -> bool) -> nix::Result<Took> {
        // Too far to represent (Duration::MAX): no limit, not a panic.
        let deadline = limit.and_then(|d| Instant::now().checked_add(d));
        loop {
            if self.try_p()? {
                return Ok(Took::Yes);
            }
            if stop() {
                return Ok(Took::Stopped);
            }
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            if slice.is_zero() {
                return Ok(Took::TimedOut);
            }
            match readable_within(self.fd.as_fd(), slice) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What one poll found ready: the semaphore (a P would take a unit now, unless
/// another process takes it first), the other fd (readable, or hung up: a pipe
/// whose writers are all gone), or both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ready {
    /// POLLIN on the semaphore.
    pub semaphore: bool,
    /// Any event on the other fd (POLLIN, POLLHUP, POLLERR).
    pub other: bool,
}

impl EventSemaphore {
    /// One poll(2) on the semaphore and `other` together, for at most `limit`:
    /// what neither a System V set nor a POSIX `sem_t` can do, as neither is an
    /// fd. `Ok(None)`: the deadline passed. Takes no unit (call [`Self::try_p`]).
    /// `Err(EINTR)` if a signal interrupted it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use std::time::Duration;
    /// use sem_demo::eventfd::{EventSemaphore, Ready};
    ///
    /// let sem = EventSemaphore::new(0)?;
    /// let (r, w) = nix::unistd::pipe()?;
    /// assert_eq!(sem.poll_beside(r.as_fd(), Duration::from_millis(10))?, None);
    /// nix::unistd::write(&w, b"x")?;
    /// let both = Ready { semaphore: true, other: true };
    /// sem.v()?;
    /// assert_eq!(sem.poll_beside(r.as_fd(), Duration::ZERO)?, Some(both));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll_beside(&self, other: BorrowedFd, limit: Duration) -> nix::Result<Option<Ready>> {
        let mut fds = [
            PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(other, PollFlags::POLLIN),
        ];
        if poll(&mut fds, millis(limit))? == 0 {
            return Ok(None);
        }
        let hit = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        Ok(Some(Ready {
            semaphore: hit(&fds[0]),
            other: hit(&fds[1]),
        }))
    }
}

impl AsFd for EventSemaphore {
    /// For a poll of your own, beside other descriptors: POLLIN means a P would
    /// take a unit now (unless another process takes it first).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sleeps in poll(2) until `fd` is readable or `limit` passes: `Ok(true)` if it
/// became readable.
fn readable_within(fd: BorrowedFd, limit: Duration) -> nix::Result<bool> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    Ok(poll(&mut fds, millis(limit))? > 0)
}

/// `limit` as poll's timeout, rounded up so a short wait is not a busy loop.
pub fn millis(limit: Duration) -> PollTimeout {
    let ms = limit.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// The counter of the eventfd that process `pid` has open as `fd`, read from
/// `eventfd-count:` in /proc/PID/fdinfo/FD without taking a unit. Another
/// process's fdinfo needs ptrace access to it (proc(5)): as a rule, your own
/// user's processes.
pub fn count_of(pid: Pid, fd: RawFd) -> std::io::Result<u64> {
    let path = format!("/proc/{pid}/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path)?;
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path}: no eventfd-count"),
        )
    };
    let hex = text
        .lines()
        .find_map(|line| line.strip_prefix("eventfd-count:"))
        .ok_or_else(bad)?;
    u64::from_str_radix(hex.trim(), 16).map_err(|_| bad())
}

/// The `eventfd-count:` line and the ones after it as the kernel prints them
/// (recent kernels add `eventfd-id` and `eventfd-semaphore`), for showing.
pub fn fdinfo_lines(pid: Pid, fd: RawFd) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("eventfd"))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    static HANDLED: AtomicBool = AtomicBool::new(false);

    extern "C" fn note(_signo: std::ffi::c_int) {
        HANDLED.store(true, SeqCst);
    }

    /// Waits until thread `tid` of this process sleeps in poll, or `done` is set.
    fn until_in_poll_or(tid: nix::unistd::Pid, done: &AtomicBool) {
        let wchan = format!("/proc/self/task/{tid}/wchan");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done.load(SeqCst)
            && !std::fs::read_to_string(&wchan)
                .unwrap_or_default()
                .contains("poll")
        {
            assert!(Instant::now() < deadline, "the waiter never slept in poll");
            std::thread::yield_now();
        }
    }

    /// A signal whose handler runs while P sleeps in poll (a SIGCHLD or SIGWINCH
    /// handler of the program's own, installed without SA_RESTART) cut the whole P
    /// short with `Err(EINTR)`, its limit thrown away. It must only ask `stop()`
    /// again and go on waiting: here the V that comes once it sleeps again is taken.
    #[test]
    fn a_signal_during_p_does_not_end_the_wait() {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let action = SigAction::new(SigHandler::Handler(note), SaFlags::empty(), SigSet::empty());
        // SAFETY: `note` only stores into an atomic, which is async-signal-safe; no
        // other test of this binary uses SIGUSR1.
        unsafe { sigaction(Signal::SIGUSR1, &action) }.unwrap();
        let sem = Arc::new(EventSemaphore::new(0).unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let waiter_tid = nix::unistd::gettid();
        // SAFETY: pthread_self has no preconditions.
        let waiter = unsafe { libc::pthread_self() };
        let (giver, finished) = (Arc::clone(&sem), Arc::clone(&done));
        let helper = std::thread::spawn(move || {
            until_in_poll_or(waiter_tid, &finished);
            // SAFETY: `waiter` is the test's thread, alive until it joins us.
            assert_eq!(unsafe { libc::pthread_kill(waiter, libc::SIGUSR1) }, 0);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !HANDLED.load(SeqCst) {
                assert!(Instant::now() < deadline, "the handler never ran");
                std::thread::yield_now();
            }
            // The handler ran, so that poll has returned: a V only after the waiter
            // sleeps again (or has given up), not one poll could see first.
            until_in_poll_or(waiter_tid, &finished);
            giver.v().unwrap();
        });
        let took = sem.p(Some(Duration::from_secs(10)), &|| false);
        done.store(true, SeqCst);
        helper.join().unwrap();
        assert_eq!(took, Ok(Took::Yes));
    }
}
