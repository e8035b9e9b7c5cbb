//! System V shared memory and semaphores: `shmget`/`shmat`/`shmdt`/`shmctl(IPC_RMID)`
//! and `semget`/`semop`/`semtimedop`/`semctl`. The calls in the order a program makes
//! them:
//!
//! 1. the creator: [`ShmId::create`] (IPC_CREAT|IPC_EXCL, 0600; its Drop marks the
//!    segment for removal), [`SemSet::create`] (then SETALL: POSIX leaves a new set's
//!    values undefined; Linux makes them 0, rarely the values wanted); the opener: [`find_segment`] and [`SemSet::find`], both waiting for the
//!    creator up to a deadline;
//! 2. [`Attached::new`] (`shmat`, the kernel picks the address; Drop: `shmdt`);
//! 3. [`SemSet::post`], [`SemSet::wait_for`] (semtimedop: a real deadline),
//!    [`SemSet::try_wait`];
//! 4. the way out: drop, or [`remove_segment`]/[`remove_sem_set`] by id for what a
//!    killed creator left.
//!
//! Traps, each met here:
//! - `shmctl(IPC_RMID)` does not remove a segment, it marks it: the memory stays until
//!   the last process detaches (`nattch`, [`stat`]), and the key is free at once;
//! - neither glibc nor `libc` defines `union semun` for `semctl`: defined here, as
//!   semctl(2) asks the caller to;
//! - `libc` 0.2 declares no `semtimedop`: called with `libc::syscall`;
//! - no SEM_UNDO: a V meant for the other process must outlive its poster.
//!
//! Keys are one global namespace any process of the machine can collide with; prefer
//! POSIX shared memory in new code.
//!
//! Needs: nix with feature `process`; `libc`; `anyhow`; `crate::page_size` (lib.rs).

use std::ffi::{c_int, c_short, c_ushort, c_void};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::unistd::{Pid, getpid};

/// How often the finders look again while they wait for the creator.
const RETRY: Duration = Duration::from_millis(10);

/// A key as `ipcs` prints it and `ipcrm -M` takes it: 0x5300abcd.
pub fn hex_key(key: i32) -> String {
    format!("{:#010x}", key as u32)
}

/// `Err(text)` if the kernel's limits could never allow a segment of `len` bytes:
/// SHMMAX bytes for one segment, SHMALL pages for all. A bad-usage check.
pub fn check_size(len: usize) -> Result<(), String> {
    let limit = |name: &str| -> Option<u128> {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if let Some(shmmax) = limit("shmmax") {
        if len as u128 > shmmax {
            return Err(format!(
                "a segment of {len} bytes is over the kernel's limit SHMMAX ({shmmax}): use a smaller --size"
            ));
        }
    }
    if let Some(shmall) = limit("shmall") {
        let pages = len.div_ceil(crate::page_size()) as u128;
        if pages > shmall {
            return Err(format!(
                "a segment of {pages} pages is over the kernel's limit SHMALL ({shmall} pages)"
            ));
        }
    }
    Ok(())
}

/// A segment this process created. Its Drop marks it for removal (IPC_RMID), in the
/// creating process only (a forked child's copy leaves it to its parent).
pub struct ShmId {
    id: c_int,
    owner: Pid,
}

impl ShmId {
    /// `shmget(key, len, IPC_CREAT|IPC_EXCL|0600)`: a new zero-filled segment or an error
    /// (EEXIST as an `Errno` for `downcast_ref`), never someone else's.
    ///
    /// # Examples
    /// ```
    /// use shm_demo::sysv::{Attached, ShmId};
    /// let key = 0x5d00_0000 | (std::process::id() as i32 & 0xffff);
    /// let shm = ShmId::create(key, 4096)?;
    /// let at = Attached::new(shm.id(), 4096)?;
    /// assert_eq!(shm_demo::sysv::stat(shm.id())?.1, 1); // one attachment: ours
    /// assert!(Attached::new(shm.id(), 8192).is_err()); // more than the segment has: refused
    /// drop(at);
    /// drop(shm); // IPC_RMID: gone, nothing attached
    /// # anyhow::Ok(())
    /// ```
    pub fn create(key: i32, len: usize) -> Result<ShmId> {
        // SAFETY: plain system call, no pointers.
        let id = unsafe { libc::shmget(key, len, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        if id < 0 {
            return Err(Errno::last())
                .with_context(|| format!("shmget key {} ({len} bytes)", hex_key(key)));
        }
        Ok(ShmId {
            id,
            owner: getpid(),
        })
    }

    /// The shmid, for [`Attached::new`] and `ipcrm -m`.
    pub fn id(&self) -> c_int {
        self.id
    }

    /// IPC_RMID now, with its result: only a mark while processes are attached.
    pub fn remove(self) -> Result<()> {
        let (id, owner) = (self.id, self.owner);
        std::mem::forget(self);
        if getpid() != owner {
            return Ok(());
        }
        remove_segment(id)
    }
}

impl Drop for ShmId {
    fn drop(&mut self) {
        if getpid() == self.owner {
            let _ = remove_segment(self.id);
        }
    }
}

/// The shmid of the existing segment `key`, waiting up to `within` for its creator
/// (ENOENT until then; the error keeps that `Errno`). `Duration::ZERO` tries once;
/// `Duration::MAX`: no deadline.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use shm_demo::sysv::{ShmId, find_segment};
/// let key = 0x5f00_0000 | (std::process::id() as i32 & 0xffff);
/// let e = find_segment(key, Duration::ZERO).unwrap_err(); // not made yet
/// assert_eq!(e.downcast_ref::<nix::errno::Errno>(), Some(&nix::errno::Errno::ENOENT));
/// let shm = ShmId::create(key, 4096)?; // removed when it drops, even on an error below
/// assert_eq!(find_segment(key, Duration::from_secs(1))?, shm.id());
/// assert_eq!(find_segment(key, Duration::MAX)?, shm.id()); // no deadline, no overflow
/// # anyhow::Ok(())
/// ```
pub fn find_segment(key: i32, within: Duration) -> Result<c_int> {
    retry_enoent(within, || {
        // SAFETY: plain system call; size 0 and no flags: find an existing segment.
        let id = unsafe { libc::shmget(key, 0, 0) };
        if id < 0 { Err(Errno::last()) } else { Ok(id) }
    })
    .with_context(|| format!("shmget key {}", hex_key(key)))
}

/// Calls `f` until it is not ENOENT or `within` has passed (never, if `within` is too
/// large to add to now).
fn retry_enoent(within: Duration, f: impl Fn() -> Result<c_int, Errno>) -> Result<c_int, Errno> {
    let deadline = Instant::now().checked_add(within);
    loop {
        match f() {
            Err(Errno::ENOENT) if deadline.is_none_or(|d| Instant::now() < d) => {
                let left = deadline.map_or(RETRY, |d| d.saturating_duration_since(Instant::now()));
                std::thread::sleep(RETRY.min(left))
            }
            other => return other,
        }
    }
}

/// The segment's size and how many processes have it attached (IPC_STAT).
pub fn stat(id: c_int) -> Result<(usize, u64)> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a writable shmid_ds for IPC_STAT to fill in.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) } != 0 {
        return Err(Errno::last()).with_context(|| format!("shmctl IPC_STAT shmid {id}"));
    }
    // SAFETY: IPC_STAT succeeded, so it filled `ds` in.
    let ds = unsafe { ds.assume_init() };
    Ok((ds.shm_segsz, ds.shm_nattch))
}

/// `shmctl(id, IPC_RMID)`: marks the segment; freed at the last `shmdt`.
pub fn remove_segment(id: c_int) -> Result<()> {
    // SAFETY: plain system call; IPC_RMID takes no buffer.
    if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } != 0 {
        return Err(Errno::last()).with_context(|| format!("shmctl IPC_RMID shmid {id}"));
    }
    Ok(())
}

/// The segment attached in this process; its Drop detaches it (`shmdt`).
pub struct Attached {
    base: NonNull<c_void>,
    len: usize,
}

impl Attached {
    /// `shmat(id, NULL, 0)`: read-write, at an address the kernel picks. `len` is how
    /// much of it the caller will touch, kept for [`Attached::len`]; more than the
    /// segment's size (IPC_STAT's `shm_segsz`, read here) is refused, since a touch past
    /// the segment's last page is SIGSEGV.
    pub fn new(id: c_int, len: usize) -> Result<Attached> {
        let (size, _) = stat(id)?;
        if len > size {
            return Err(Errno::EINVAL)
                .with_context(|| format!("shmid {id} has {size} bytes, fewer than {len}"));
        }
        // SAFETY: NULL address: the kernel picks a free range, which overlaps nothing of ours.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if addr as isize == -1 {
            return Err(Errno::last()).with_context(|| format!("shmat shmid {id}"));
        }
        let base = NonNull::new(addr).context("shmat returned NULL")?;
        Ok(Attached { base, len })
    }

    /// Where this process sees the segment (store offsets in it, never pointers).
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.base.cast()
    }

    /// The segment's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length attachment (which shmget never makes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `shmdt` now, with its result.
    pub fn detach(self) -> Result<()> {
        let base = self.base;
        std::mem::forget(self);
        // SAFETY: the address shmat returned, detached once (self is forgotten).
        if unsafe { libc::shmdt(base.as_ptr()) } != 0 {
            return Err(Errno::last()).context("shmdt");
        }
        Ok(())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: the address shmat returned; whoever borrowed the memory borrowed self.
        unsafe { libc::shmdt(self.base.as_ptr()) };
    }
}

/// semctl's fourth argument. libc does not define it: the caller must (semctl(2)).
#[repr(C)]
#[allow(dead_code)] // `val` and `buf` are for commands not used here
union Semun {
    val: c_int,
    buf: *mut libc::semid_ds,
    array: *mut c_ushort,
}

/// A System V semaphore set. Made by [`SemSet::create`], its Drop removes it (in the
/// creating process only); found by [`SemSet::find`], its Drop leaves it.
pub struct SemSet {
    id: c_int,
    owner: Option<Pid>,
}

impl SemSet {
    /// `semget(key, values.len(), IPC_CREAT|IPC_EXCL|0600)`, then `semctl(SETALL)`.
    /// Publish "ready" only after this returns: between the two calls the values are
    /// not yet the ones given (0 on Linux; undefined in POSIX).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let key = 0x5e00_0000 | (std::process::id() as i32 & 0xffff);
    /// let set = shm_demo::sysv::SemSet::create(key, &[1])?;
    /// assert!(set.wait_for(0, Duration::from_millis(100), &|| false)?);
    /// assert!(!set.try_wait(0)?);
    /// set.post(0)?;
    /// assert!(set.wait_for(0, Duration::MAX, &|| false)?); // no deadline, no overflow
    /// drop(set); // IPC_RMID
    /// # anyhow::Ok(())
    /// ```
    pub fn create(key: i32, values: &[u16]) -> Result<SemSet> {
        let n = values.len() as c_int;
        // SAFETY: plain system call, no pointers.
        let id = unsafe { libc::semget(key, n, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        if id < 0 {
            return Err(Errno::last()).with_context(|| format!("semget key {}", hex_key(key)));
        }
        let set = SemSet {
            id,
            owner: Some(getpid()),
        };
        let mut array = values.to_vec();
        let arg = Semun {
            array: array.as_mut_ptr(),
        };
        // SAFETY: SETALL reads nsems values from `array`, which lives through the call.
        if unsafe { libc::semctl(id, 0, libc::SETALL, arg) } != 0 {
            return Err(Errno::last()).context("semctl SETALL");
        }
        Ok(set)
    }

    /// The existing set `key`, waiting up to `within` for its creator (ENOENT).
    pub fn find(key: i32, within: Duration) -> Result<SemSet> {
        let id = retry_enoent(within, || {
            // SAFETY: plain system call; nsems 0 and no flags: find an existing set.
            let id = unsafe { libc::semget(key, 0, 0) };
            if id < 0 { Err(Errno::last()) } else { Ok(id) }
        })
        .with_context(|| format!("semget key {}", hex_key(key)))?;
        Ok(SemSet { id, owner: None })
    }

    /// The semid, for `ipcrm -s`.
    pub fn id(&self) -> c_int {
        self.id
    }

    /// V on semaphore `n`: semop +1.
    pub fn post(&self, n: u16) -> Result<()> {
        self.op(n, 1, 0, None).context("semop V")
    }

    /// P on semaphore `n` with a deadline: semtimedop until `limit` from now.
    /// `Ok(false)`: the time ran out, or a signal interrupted the wait and `stop()`
    /// said to give up (otherwise it waits on, for what is left of `limit`). A `limit`
    /// too large to add to now (`Duration::MAX`) is no deadline: a plain semop. A removed
    /// set is an error (EIDRM, or EINVAL once the id is gone).
    pub fn wait_for(&self, n: u16, limit: Duration, stop: &dyn Fn() -> bool) -> Result<bool> {
        let deadline = Instant::now().checked_add(limit);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.op(n, -1, 0, left) {
                Ok(()) => return Ok(true),
                Err(Errno::EAGAIN) => return Ok(false), // timed out
                Err(Errno::EINTR) if stop() => return Ok(false),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("semtimedop P"),
            }
        }
    }

    /// P without waiting (IPC_NOWAIT): `Ok(false)` if the count was 0.
    pub fn try_wait(&self, n: u16) -> Result<bool> {
        match self.op(n, -1, libc::IPC_NOWAIT, None) {
            Ok(()) => Ok(true),
            Err(Errno::EAGAIN) => Ok(false),
            Err(e) => Err(e).context("semop P IPC_NOWAIT"),
        }
    }

    /// One semop on semaphore `n`; `timeout` makes it semtimedop.
    fn op(
        &self,
        n: u16,
        delta: c_short,
        flags: c_int,
        timeout: Option<Duration>,
    ) -> Result<(), Errno> {
        let mut op = libc::sembuf {
            sem_num: n,
            sem_op: delta,
            sem_flg: flags as c_short, // never SEM_UNDO: see the top of the file
        };
        let r = match timeout {
            // SAFETY: `op` is one valid sembuf, alive through the call.
            None => unsafe { libc::semop(self.id, &mut op, 1) },
            Some(limit) => {
                let ts = libc::timespec {
                    tv_sec: limit.as_secs() as libc::time_t,
                    tv_nsec: limit.subsec_nanos() as libc::c_long,
                };
                // Each argument long-sized, as syscall(2) takes them.
                let (id, nsops) = (libc::c_long::from(self.id), 1 as libc::c_long);
                // SAFETY: semtimedop(semid, sops, nsops, timeout) as in semop(2), with
                // one sembuf and a relative timeout, both alive through the call.
                let r = unsafe { libc::syscall(libc::SYS_semtimedop, id, &mut op, nsops, &ts) };
                r as c_int
            }
        };
        if r == 0 { Ok(()) } else { Err(Errno::last()) }
    }

    /// IPC_RMID now (a set goes at once: its sleepers wake with EIDRM), if ours.
    pub fn remove(mut self) -> Result<()> {
        match self.owner.take() {
            Some(owner) if owner == getpid() => remove_sem_set(self.id),
            _ => Ok(()),
        }
    }
}

impl Drop for SemSet {
    fn drop(&mut self) {
        if self.owner == Some(getpid()) {
            let _ = remove_sem_set(self.id);
        }
    }
}

/// `semctl(id, 0, IPC_RMID)`: the set is gone at once.
pub fn remove_sem_set(id: c_int) -> Result<()> {
    // SAFETY: plain system call; IPC_RMID takes no fourth argument.
    if unsafe { libc::semctl(id, 0, libc::IPC_RMID) } != 0 {
        return Err(Errno::last()).with_context(|| format!("semctl IPC_RMID semid {id}"));
    }
    Ok(())
}
