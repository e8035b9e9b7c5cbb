//! POSIX shared memory, `shm_open` + `ftruncate` + `mmap`, and unnamed POSIX semaphores
//! (`sem_init` with pshared=1) placed inside the mapping. The calls in the order a
//! program makes them:
//!
//! 1. the creator: [`create_object`] (O_CREAT|O_EXCL, mode 0600, and an [`Unlink`] guard
//!    for the name), [`set_size`] (ftruncate + posix_fallocate), [`Mapping::new`];
//!    the opener: [`open_object`] (waits for the creator up to a deadline), then
//!    [`Mapping::new`] with the size it returns;
//! 2. the semaphores in the mapping: [`Sem::init`] (creator, once), [`Sem::post`],
//!    [`Sem::wait_for`] (a real deadline), [`Sem::try_wait`], [`Sem::destroy`];
//! 3. the way out: [`Mapping::unmap`] and [`Unlink::remove`], or just drop them.
//!
//! Traps avoided here:
//! - a page past the end of the object (mapping more than was `ftruncate`d, or a full
//!   tmpfs) is not an error but SIGBUS on first touch: [`set_size`] reserves the pages
//!   with `posix_fallocate` (a full /dev/shm gives ENOSPC now), and [`open_object`]
//!   returns the object's real size (fstat) to map exactly that;
//! - `shm_unlink` removes the name at once, but the memory lives on until the last
//!   mapping and the last fd of it go: an opener may finish with an object its
//!   creator already removed;
//! - an opener started before the creator: `shm_open` fails with ENOENT, and between
//!   the creator's `shm_open` and its `ftruncate` the object has 0 bytes;
//!   [`open_object`] waits for both up to its deadline.
//!
//! A trap NOT avoided: any process of the same uid can `ftruncate` the object smaller
//! under both mappings, and the next touch past the new end is a SIGBUS (a POSIX shm
//! object cannot be sealed; a memfd with F_SEAL_SHRINK can). `crate::sigbus` (sigbus.rs)
//! at least removes the name as the process dies of it.
//!
//! Why a `sem_t` inside the mapping works across two processes that map it at two
//! addresses: with pshared=1 the kernel's futex for a MAP_SHARED page is keyed by the
//! page itself (file and offset), so a post at one address wakes a waiter at the other.
//! Its rule: a `sem_t` never moves, and it is initialised once, before anyone else uses it.
//!
//! Needs: nix with features `mman`, `fs`, `process`; `libc`; `anyhow`.

use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use nix::errno::Errno;
use nix::fcntl::{OFlag, posix_fallocate};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{Pid, ftruncate, getpid};

/// Where the objects live: `shm_open("/x")` is the file `/dev/shm/x` (tmpfs).
pub const SHM_DIR: &str = "/dev/shm";

/// How often [`open_object`] looks again while it waits for the creator.
const RETRY: Duration = Duration::from_millis(10);

/// `Err(text)` if `len` bytes could never fit in /dev/shm (its whole size, by statvfs):
/// a check for bad usage before creating anything. Ok if /dev/shm cannot be measured.
pub fn check_size(len: usize) -> Result<(), String> {
    let Ok(fs) = nix::sys::statvfs::statvfs(SHM_DIR) else {
        return Ok(()); // no /dev/shm to measure: shm_open will say what is wrong
    };
    let total = fs.blocks() as u128 * fs.fragment_size() as u128;
    if len as u128 > total {
        return Err(format!(
            "a segment of {len} bytes does not fit in {SHM_DIR} ({total} bytes in all): use a smaller --size"
        ));
    }
    Ok(())
}

/// Creates the object `name` ("/x"), new or an error (O_CREAT|O_EXCL, mode 0600: never
/// someone else's), and returns its fd and the guard that removes the name. EEXIST
/// comes back as an `Errno` the caller can `downcast_ref`.
///
/// # Examples
/// ```
/// let name = format!("/doc-create-{}", std::process::id());
/// let (fd, name_guard) = shm_demo::posix::create_object(&name)?;
/// shm_demo::posix::set_size(&fd, 4096)?;
/// let map = shm_demo::posix::Mapping::new(&fd, 4096)?;
/// assert_eq!(map.len(), 4096);
/// drop(map);
/// name_guard.remove()?; // or let it drop
/// assert!(!std::path::Path::new(&format!("/dev/shm{name}")).exists());
/// # anyhow::Ok(())
/// ```
pub fn create_object(name: &str) -> Result<(OwnedFd, Unlink)> {
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR;
    let fd = shm_open(name, flags, Mode::S_IRUSR | Mode::S_IWUSR)
        .with_context(|| format!("shm_open {name} (O_CREAT|O_EXCL)"))?;
    let guard = Unlink {
        name: Some(name.to_string()),
        owner: getpid(),
    };
    Ok((fd, guard))
}

/// Gives a new object its size: `ftruncate` (zero-filled), then `posix_fallocate`, so
/// a full /dev/shm is ENOSPC here rather than SIGBUS on the first touch of a page.
pub fn set_size(fd: &OwnedFd, len: usize) -> Result<()> {
    ftruncate(fd, len as i64).with_context(|| format!("ftruncate to {len} bytes"))?;
    posix_fallocate(fd, 0, len as i64).map_err(|e| match e {
        Errno::ENOSPC => {
            anyhow!("{SHM_DIR} is full: no room for {len} bytes (posix_fallocate: ENOSPC)")
        }
        e => anyhow!("posix_fallocate {len} bytes: {e}"),
    })
}

/// Opens the existing object `name` read-write and returns its fd and size, waiting up
/// to `within` for a creator that has not made it yet (ENOENT) or not sized it yet
/// (fewer than `min_len` bytes; 0 takes any size). `Duration::ZERO` tries once; a
/// `within` too large to add to now (`Duration::MAX`) waits with no deadline. The error
/// after the deadline keeps the `Errno` (ENOENT) for `downcast_ref`. No O_CREAT: an
/// opener never makes the object, so it never has to remove it.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let name = format!("/doc-open-{}", std::process::id());
/// let (fd, _name_guard) = shm_demo::posix::create_object(&name)?;
/// shm_demo::posix::set_size(&fd, 4096)?;
/// let (fd2, len) = shm_demo::posix::open_object(&name, 1, Duration::from_secs(1))?;
/// assert_eq!(len, 4096);
/// # drop(fd2);
/// // Duration::MAX is "no deadline", not an overflow.
/// assert_eq!(shm_demo::posix::open_object(&name, 1, Duration::MAX)?.1, 4096);
///
/// // An opener started with (or before) its creator waits for the name and the size.
/// let late = format!("/doc-open-late-{}", std::process::id());
/// let creator = {
///     let late = late.clone();
///     std::thread::spawn(move || -> anyhow::Result<_> {
///         let (fd, name_guard) = shm_demo::posix::create_object(&late)?;
///         shm_demo::posix::set_size(&fd, 8192)?;
///         Ok(name_guard)
///     })
/// };
/// let opened = shm_demo::posix::open_object(&late, 8192, Duration::from_secs(5));
/// let _late_guard = creator.join().unwrap()?; // removes the name at the end
/// assert_eq!(opened?.1, 8192);
///
/// // Nothing to wait for: with Duration::ZERO, ENOENT at once.
/// let e = shm_demo::posix::open_object("/doc-open-none-x", 1, Duration::ZERO).unwrap_err();
/// assert_eq!(e.downcast_ref::<nix::errno::Errno>(), Some(&nix::errno::Errno::ENOENT));
/// # anyhow::Ok(())
/// ```
pub fn open_object(name: &str, min_len: usize, within: Duration) -> Result<(OwnedFd, usize)> {
    let deadline = Instant::now().checked_add(within); // None: no deadline
    let passed = || deadline.is_some_and(|deadline| Instant::now() >= deadline);
    loop {
        match shm_open(name, OFlag::O_RDWR, Mode::empty()) {
            Ok(fd) => {
                let len = fstat(&fd).with_context(|| format!("fstat {name}"))?.st_size as usize;
                if len >= min_len {
                    return Ok((fd, len));
                }
                if passed() {
                    return Err(anyhow!(
                        "{name} has {len} bytes, fewer than {min_len}: its creator has not sized it"
                    ));
                }
            }
            Err(Errno::ENOENT) if !passed() => {}
            Err(e) => return Err(e).with_context(|| format!("shm_open {name}")),
        }
        let left = deadline.map_or(RETRY, |d| d.saturating_duration_since(Instant::now()));
        std::thread::sleep(RETRY.min(left));
    }
}

/// The object's name. Its Drop (or [`Unlink::remove`]) calls `shm_unlink`, in the
/// process that created it only: a forked child's copy leaves it to its parent.
pub struct Unlink {
    name: Option<String>,
    owner: Pid,
}

impl Unlink {
    /// The name this guard removes.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// True in the process that created the object (false in a forked child).
    pub fn owned_here(&self) -> bool {
        getpid() == self.owner
    }

    /// `shm_unlink` now, with its result. The memory stays until the last munmap and
    /// the last close of an fd of it.
    pub fn remove(mut self) -> Result<()> {
        self.unlink()
    }

    fn unlink(&mut self) -> Result<()> {
        let Some(name) = self.name.take() else {
            return Ok(());
        };
        if getpid() != self.owner {
            return Ok(()); // a forked copy: the object is its parent's to remove
        }
        shm_unlink(name.as_str()).with_context(|| format!("shm_unlink {name}"))
    }
}

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = self.unlink();
    }
}

/// Removes a name that its creator could not (it was killed): the survivor's cleanup.
/// Ok if it is already gone. Returns the path that was removed.
pub fn remove_leftover(name: &str) -> Result<String> {
    match shm_unlink(name) {
        Ok(()) | Err(Errno::ENOENT) => Ok(format!("{SHM_DIR}{name}")),
        Err(e) => Err(e).with_context(|| format!("shm_unlink {name}")),
    }
}

/// One `mmap(MAP_SHARED)` of an object, read-write; its Drop (or [`Mapping::unmap`])
/// unmaps it. The fd may be closed once mapped: the mapping keeps the pages.
pub struct Mapping {
    base: NonNull<std::ffi::c_void>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0 at an address the kernel picks. `len`
    /// must not exceed the object's size (a page past its end is SIGBUS on touch):
    /// pass what [`set_size`] set or [`open_object`] returned; more than fstat says
    /// the object has now is refused (EINVAL). Shrinking it later is not prevented
    /// (see the top of this file).
    ///
    /// # Examples
    /// ```
    /// let name = format!("/doc-map-{}", std::process::id());
    /// let (fd, _name_guard) = shm_demo::posix::create_object(&name)?;
    /// shm_demo::posix::set_size(&fd, 4096)?;
    /// assert!(shm_demo::posix::Mapping::new(&fd, 8192).is_err()); // past the end
    /// assert_eq!(shm_demo::posix::Mapping::new(&fd, 4096)?.len(), 4096);
    /// # anyhow::Ok(())
    /// ```
    pub fn new(fd: &OwnedFd, len: usize) -> Result<Mapping> {
        let size = NonZeroUsize::new(len).context("an empty mapping")?;
        let has = fstat(fd).context("fstat before mmap")?.st_size;
        if len as u64 > has as u64 {
            return Err(Errno::EINVAL)
                .with_context(|| format!("a mapping of {len} bytes of an object of {has}"));
        }
        // SAFETY: a new mapping at an address the kernel picks (None), so it overlaps
        // nothing of ours; the caller passes at most the object's size.
        let base = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .context("mmap")?;
        Ok(Mapping { base, len })
    }

    /// Where this process sees the memory. Store offsets in it, never pointers: the
    /// other process maps it at an address of its own.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.base.cast()
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `munmap` now, with its result.
    pub fn unmap(self) -> Result<()> {
        let (base, len) = (self.base, self.len);
        std::mem::forget(self);
        // SAFETY: exactly the range mmap gave us, forgotten above so it is unmapped once.
        unsafe { munmap(base, len) }.context("munmap")
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap gave us; whoever borrowed it borrowed self.
        let _ = unsafe { munmap(self.base, self.len) };
    }
}

/// An unnamed POSIX semaphore at a fixed place in shared memory (a `sem_t` must never
/// move). Copyable: it is only the address; the memory is the mapping's.
#[derive(Clone, Copy)]
pub struct Sem {
    at: NonNull<libc::sem_t>,
}

impl Sem {
    /// The semaphore at `at`, initialised by [`Sem::init`] (here or in another process).
    ///
    /// # Safety
    /// `at` points into a live MAP_SHARED mapping, aligned for `sem_t`, for as long as
    /// this `Sem` is used, and holds a semaphore that `sem_init` set up before any use.
    pub unsafe fn at(at: NonNull<libc::sem_t>) -> Sem {
        Sem { at }
    }

    /// `sem_init(pshared=1, value)` at `at`: once, by the creator, before any other
    /// process may use it (publish "ready" only after this).
    ///
    /// # Safety
    /// As for [`Sem::at`], and no process uses the semaphore yet.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let name = format!("/doc-sem-{}", std::process::id());
    /// let (fd, _name_guard) = shm_demo::posix::create_object(&name)?;
    /// shm_demo::posix::set_size(&fd, 4096)?;
    /// let map = shm_demo::posix::Mapping::new(&fd, 4096)?;
    /// // SAFETY: offset 0 of our fresh, page-aligned mapping; nobody else uses it yet.
    /// let sem = unsafe { shm_demo::posix::Sem::init(map.as_ptr().cast(), 0)? };
    /// sem.post()?;
    /// assert!(sem.wait_for(Duration::from_millis(100), &|| false)?);
    /// assert!(!sem.wait_for(Duration::from_millis(10), &|| false)?); // timed out
    /// sem.post()?;
    /// assert!(sem.wait_for(Duration::MAX, &|| false)?); // no deadline, no overflow
    /// // SAFETY: nobody waits on it; it is not used again.
    /// unsafe { sem.destroy() };
    /// # anyhow::Ok(())
    /// ```
    pub unsafe fn init(at: NonNull<libc::sem_t>, value: u32) -> Result<Sem> {
        // SAFETY: the caller's promise (see # Safety).
        if unsafe { libc::sem_init(at.as_ptr(), 1, value) } != 0 {
            return Err(Errno::last()).context("sem_init");
        }
        Ok(Sem { at })
    }

    /// V: `sem_post`, add one, waking one waiter in any process.
    pub fn post(&self) -> Result<()> {
        // SAFETY: an initialised sem_t in a live mapping (`at`/`init`'s promise).
        if unsafe { libc::sem_post(self.at.as_ptr()) } != 0 {
            return Err(Errno::last()).context("sem_post");
        }
        Ok(())
    }

    /// P with a deadline: `sem_timedwait` until `limit` from now. `Ok(true)`: taken;
    /// `Ok(false)`: the time ran out, or a signal interrupted the wait and `stop()`
    /// said to give up (otherwise the wait goes on to the same deadline: EINTR is not
    /// a timeout). Never sleeps forever on a holder that died, for a finite `limit`
    /// (`Duration::MAX`: no deadline). The deadline is a CLOCK_REALTIME time, as
    /// sem_timedwait takes it: a step of the wall clock (settimeofday, NTP) moves it
    /// by as much; `sem_clockwait` with CLOCK_MONOTONIC (glibc 2.30) would not (not
    /// shown here).
    pub fn wait_for(&self, limit: Duration, stop: &dyn Fn() -> bool) -> Result<bool> {
        let deadline = realtime_after(limit);
        loop {
            // SAFETY: as in `post`; `deadline` is a valid timespec for the whole call.
            if unsafe { libc::sem_timedwait(self.at.as_ptr(), &deadline) } == 0 {
                return Ok(true);
            }
            match Errno::last() {
                Errno::ETIMEDOUT => return Ok(false),
                Errno::EINTR if stop() => return Ok(false),
                Errno::EINTR => {}
                e => return Err(e).context("sem_timedwait"),
            }
        }
    }

    /// P without waiting: `sem_trywait`. `Ok(false)` if the count was 0.
    pub fn try_wait(&self) -> Result<bool> {
        // SAFETY: as in `post`.
        if unsafe { libc::sem_trywait(self.at.as_ptr()) } == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::EAGAIN => Ok(false),
            e => Err(e).context("sem_trywait"),
        }
    }

    /// `sem_destroy`. On Linux it frees nothing (the semaphore is just memory).
    ///
    /// # Safety
    /// No process waits on it or will use it again: destroying a semaphore someone
    /// waits on is undefined behaviour.
    pub unsafe fn destroy(self) {
        // SAFETY: the caller's promise.
        unsafe { libc::sem_destroy(self.at.as_ptr()) };
    }
}

/// sem_timedwait takes an absolute CLOCK_REALTIME time: now + `limit`, or the largest
/// time_t for a `limit` too large to add (the kernel takes that as "never").
fn realtime_after(limit: Duration) -> libc::timespec {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = now
        .checked_add(limit)
        .filter(|at| at.as_secs() <= libc::time_t::MAX as u64)
        .unwrap_or(Duration::from_secs(libc::time_t::MAX as u64));
    libc::timespec {
        tv_sec: at.as_secs() as libc::time_t,
        tv_nsec: at.subsec_nanos() as libc::c_long,
    }
}
