//! System V semaphores: semget, semctl, semop/semtimedop, IPC_RMID.
//!
//! A set of semaphores lives in the kernel, found by a numeric key (`ipcs -s` lists
//! it). Every P and V is a system call, which lets the kernel count the sleepers
//! (GETNCNT), name the last process that changed a semaphore (GETPID) and, with
//! SEM_UNDO, give back what a process took when it dies, however it dies.
//!
//! In order: [`SemSet::create`] (one process; values set with SETVAL) or
//! [`SemSet::open`] / [`SemSet::open_waiting`]; [`SemSet::p`] and [`SemSet::v`],
//! each with an explicit [`Undo`]; the creator's drop (or [`SemSet::remove`])
//! removes the set. [`SemSet::announce`] and [`SemSet::came_and_went`] tell a peer's
//! death from a presence semaphore.
//!
//! Traps met here: libc has no `union semun` (semctl(2): "the calling program must
//! define this union"), nor a `semtimedop` function (we make the system call, which
//! answers EAGAIN on timeout); `sem_flg` is a `c_short`. A set made by semget has
//! every value 0 until SETVAL (on Linux; POSIX leaves them indeterminate), and an
//! opener between the two sees those 0s: [`SemSet::open_waiting`] waits for the set
//! to exist, not for its values, so let the creator tell the others when it is
//! ready (a sync semaphore, or its first semop setting `sem_otime`: not shown here).
//!
//! Needs `libc`, and nix with the feature "process" (Pid, getpid); and
//! [`crate::procfs::is_alive`] with the `state` it calls (a dozen lines): copy them
//! along, or the whole of `procfs.rs`.

use std::ffi::{c_int, c_short, c_ushort};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::{Pid, getpid};

use crate::procfs::is_alive;

/// Whether the kernel undoes an operation when the process that made it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// SEM_UNDO: for a mutex (a dead holder's unit comes back) and a presence
    /// semaphore. Never for a sync semaphore: the kernel would take back a V at the
    /// exit of the process that did it.
    Yes,
    /// No undo: the operation stays, whoever ends.
    No,
}

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

/// The longest one sleep lasts before [`SemSet::p`] asks "stop?" again.
pub const SLICE: Duration = Duration::from_millis(200);

/// The fourth argument of semctl.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)] // `buf` and `array` give the union its C size
union Semun {
    val: c_int,
    buf: *mut libc::semid_ds,
    array: *mut c_ushort,
}

/// semctl for the commands that take an int or nothing (SETVAL, GETVAL, GETNCNT,
/// GETPID, IPC_RMID): the union passed by value, as the variadic C function expects.
fn semctl(id: c_int, num: c_ushort, cmd: c_int, val: c_int) -> nix::Result<c_int> {
    // SAFETY: none of these commands reads a pointer from the union; `val` is the
    // field they use, and the union is passed whole, by value, as in C.
    Errno::result(unsafe { libc::semctl(id, c_int::from(num), cmd, Semun { val }) })
}

/// One semop(2)/semtimedop(2) call: all of `sops` done at once, or none. With
/// `timeout`, EAGAIN when it ran out.
fn semtimedop(id: c_int, sops: &mut [libc::sembuf], timeout: Option<Duration>) -> nix::Result<()> {
    let ts = timeout.map(|t| libc::timespec {
        // Saturated: `as` would wrap a huge Duration to a negative time (EINVAL).
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `sops` is a valid array of sembufs and `ts_ptr` null or a valid
    // timespec, both alive for the call; libc declares no semtimedop function.
    let r = unsafe {
        libc::syscall(
            libc::SYS_semtimedop,
            id,
            sops.as_mut_ptr(),
            sops.len(),
            ts_ptr,
        )
    };
    Errno::result(r).map(drop)
}

fn op(num: c_ushort, sem_op: c_short, undo: Undo) -> libc::sembuf {
    let sem_flg = match undo {
        Undo::Yes => libc::SEM_UNDO as c_short,
        Undo::No => 0,
    };
    libc::sembuf {
        sem_num: num,
        sem_op,
        sem_flg,
    }
}

/// A semaphore set. Removed (IPC_RMID) on drop if this process created it; a
/// forked child's copy never removes it.
///
/// # Examples
/// A mutex whose dead holder the kernel releases (SEM_UNDO):
/// ```
/// use sem_demo::sysv::{SemSet, Took, Undo};
/// use std::time::Duration;
///
/// let key = 0x4400_0000 | std::process::id() as libc::key_t;
/// let set = SemSet::create(key, &[1])?; // #0 = 1; removed when dropped
/// assert_eq!(set.p(0, Undo::Yes, Some(Duration::MAX), &|| false)?, Took::Yes); // no panic
/// assert_eq!(set.value(0)?, 0);
/// // ... the critical section ...
/// set.v(0, Undo::Yes)?;
/// let id = set.id();
/// drop(set);
/// assert!(!std::fs::read_to_string("/proc/sysvipc/sem").unwrap()
///     .lines().any(|l| l.split_whitespace().nth(1) == Some(&id.to_string())));
/// # Ok::<(), nix::Error>(())
/// ```
pub struct SemSet {
    id: c_int,
    /// The pid that removes the set on drop, if any.
    remover: Option<Pid>,
}

impl SemSet {
    /// semget with IPC_CREAT|IPC_EXCL, mode 0600, one semaphore per entry of
    /// `values`, then SETVAL for each. EEXIST: a set of that key exists (find it
    /// with [`SemSet::open`]; `ipcrm -s ID` removes it).
    pub fn create(key: libc::key_t, values: &[c_int]) -> nix::Result<SemSet> {
        // SAFETY: semget takes plain integers.
        let id = unsafe {
            libc::semget(
                key,
                values.len() as c_int,
                libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
            )
        };
        let set = SemSet {
            id: Errno::result(id)?,
            remover: Some(getpid()),
        };
        for (num, value) in values.iter().enumerate() {
            semctl(id, num as c_ushort, libc::SETVAL, *value)?; // drop removes on error
        }
        Ok(set)
    }

    /// semget without IPC_CREAT: an existing set, or ENOENT at once (EACCES: another
    /// user's). Its values may still be 0s if its creator has not done SETVAL yet.
    pub fn open(key: libc::key_t) -> nix::Result<SemSet> {
        // SAFETY: semget takes plain integers; nsems 0 and no flags only look it up.
        let id = unsafe { libc::semget(key, 0, 0) };
        Ok(SemSet {
            id: Errno::result(id)?,
            remover: None,
        })
    }

    /// [`open`](Self::open) that waits for the creator: retries ENOENT every 10 ms
    /// until `limit` has passed (then ENOENT) or `stop()` says yes (then EINTR).
    pub fn open_waiting(
        key: libc::key_t,
        limit: Duration,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<SemSet> {
        // Capped at 136 years: `Instant + Duration::MAX` would panic.
        let deadline = Instant::now() + limit.min(Duration::from_secs(u32::MAX as u64));
        loop {
            match SemSet::open(key) {
                Err(Errno::ENOENT) if Instant::now() < deadline => {}
                other => return other,
            }
            if stop() {
                return Err(Errno::EINTR);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The set's id (`ipcs -s -i ID`, `ipcrm -s ID`).
    pub fn id(&self) -> c_int {
        self.id
    }

    /// One P on semaphore `num` that sleeps at most `slice`: `Ok(true)` if it took a
    /// unit, `Ok(false)` if the time ran out, `Err(EINTR)` if a signal handler ran
    /// (whatever SA_RESTART says, signal(7)), `Err(EIDRM)` if the set was removed.
    pub fn try_p_for(&self, num: c_ushort, undo: Undo, slice: Duration) -> nix::Result<bool> {
        match semtimedop(self.id, &mut [op(num, -1, undo)], Some(slice)) {
            Ok(()) => Ok(true),
            Err(Errno::EAGAIN) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// P on semaphore `num`, for at most `limit` (`None`: no limit), in slices of at
    /// most [`SLICE`], asking `stop()` before each; an EINTR only makes it ask again.
    pub fn p(
        &self,
        num: c_ushort,
        undo: Undo,
        limit: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<Took> {
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
            match self.try_p_for(num, undo, slice) {
                Ok(true) => return Ok(Took::Yes),
                Ok(false) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Ok(Took::TimedOut);
                }
                Ok(false) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// V on semaphore `num`: never blocks. Give back with the same [`Undo`] as the
    /// P: the kernel keeps one adjustment per process and semaphore (semadj), which
    /// a P with SEM_UNDO raises by 1 and a V with SEM_UNDO lowers by 1.
    pub fn v(&self, num: c_ushort, undo: Undo) -> nix::Result<()> {
        semtimedop(self.id, &mut [op(num, 1, undo)], None)
    }

    /// GETVAL: the value, never below 0.
    pub fn value(&self, num: c_ushort) -> nix::Result<c_int> {
        semctl(self.id, num, libc::GETVAL, 0)
    }

    /// GETNCNT: how many processes sleep in P on semaphore `num` now. A waiter in
    /// slices is out of the count for an instant between two of them.
    pub fn sleepers(&self, num: c_ushort) -> nix::Result<c_int> {
        semctl(self.id, num, libc::GETNCNT, 0)
    }

    /// GETPID: the last process that changed semaphore `num` by semop (Linux's
    /// SETVAL sets it too); 0 if none has.
    pub fn last_pid(&self, num: c_ushort) -> nix::Result<Pid> {
        semctl(self.id, num, libc::GETPID, 0).map(Pid::from_raw)
    }

    /// Raises presence semaphore `num` by 1 with SEM_UNDO, only if it is 0 (one semop
    /// of two operations, done whole or not at all); EAGAIN if someone holds it. The
    /// kernel lowers it again when this process ends, SIGKILL included, and GETPID
    /// keeps our pid: see [`came_and_went`](Self::came_and_went).
    pub fn announce(&self, num: c_ushort) -> nix::Result<()> {
        let mut wait_zero = op(num, 0, Undo::No);
        wait_zero.sem_flg = libc::IPC_NOWAIT as c_short;
        semtimedop(self.id, &mut [wait_zero, op(num, 1, Undo::Yes)], None)
    }

    /// The pid of the process that [announced](Self::announce) itself on `num` and
    /// has ended since: value 0, and a last pid that is not 0, not ours, and not
    /// alive. `None` while it lives, or before anyone came.
    pub fn came_and_went(&self, num: c_ushort) -> nix::Result<Option<Pid>> {
        let value = self.value(num)?;
        let last = self.last_pid(num)?;
        let gone = last.as_raw() != 0 && last != getpid() && !is_alive(last);
        Ok((value == 0 && gone).then_some(last))
    }

    /// Leaves the removal to someone else: drop does nothing.
    pub fn disown(&mut self) {
        self.remover = None;
    }

    /// IPC_RMID now, reporting a failure (drop can only ignore it). Unlike a POSIX
    /// name, the set itself goes: a process asleep on it wakes with EIDRM.
    pub fn remove(mut self) -> nix::Result<()> {
        self.remover = None;
        remove_id(self.id)
    }
}

/// IPC_RMID on set `id`: for a set whose creator died (SIGKILL runs no drop).
/// EINVAL or EIDRM: it is gone already.
pub fn remove_id(id: c_int) -> nix::Result<()> {
    semctl(id, 0, libc::IPC_RMID, 0).map(drop)
}

impl Drop for SemSet {
    fn drop(&mut self) {
        if self.remover == Some(getpid()) {
            let _ = remove_id(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice too long for a time_t (Duration::MAX) wrapped to a negative
    /// tv_sec, and semtimedop refused it with EINVAL even with a unit there.
    #[test]
    fn a_huge_slice_is_a_long_wait_not_einval() {
        let key = 0x4500_0000 | std::process::id() as libc::key_t;
        let set = SemSet::create(key, &[1]).unwrap();
        assert_eq!(set.try_p_for(0, Undo::No, Duration::MAX), Ok(true));
    }
}
