//! The `posix` flavour: `shm_open` + `ftruncate` + `mmap`, and unnamed POSIX semaphores
//! (`sem_init` with pshared=1) placed inside the segment itself.
//!
//! A POSIX shared memory object is a file in a memory-only filesystem: `shm_open("/x")`
//! opens `/dev/shm/x` on tmpfs, `ftruncate` gives it a size, `mmap(MAP_SHARED)` makes
//! its pages part of our address space. Another process that maps the same file gets
//! the same pages (the same physical memory) at an address of its own choosing.
//!
//! The semaphores: why unnamed ones inside the segment rather than named `sem_open`
//! ones? They travel with the memory they guard: nothing more to name, find or remove,
//! and nothing left behind by a crash that the segment's own removal does not take
//! along. Their rule: a `sem_t` must never move. Ours cannot, it lives in the mapping;
//! and although each process sees it at a different virtual address, the kernel's
//! futex for a MAP_SHARED page is keyed by the page itself (file and offset), so a
//! post at the writer's address wakes the reader asleep at its own. (sem-demo shows
//! the named kind, `/dev/shm/sem.NAME`.)
//!
//! Notes, 共享内存: 拿出一块虚拟地址空间来，映射到相同的物理内存中 — here the same tmpfs
//! pages, mapped by the reader and by the writer at two different addresses.
//!
//! Run: `cargo run -p shm-demo` (posix is the default flavour), or in two terminals
//! `shm-demo reader --name /demo` and `shm-demo writer --name /demo hello`. While the
//! reader waits: `ls -l /dev/shm/demo` (mode `-rw-------`, the segment's size) and
//! `grep demo /proc/PID/maps`.
//!
//! Watch for: the same inode in both processes' maps lines; the semaphores at the same
//! offset of the segment at both addresses; `shm_unlink` while the writer may still
//! have the memory mapped.
//!
//! In production: `memmap2::MmapMut` over the `shm_open` fd (or a `memfd_create` fd
//! passed over a Unix socket, which needs no name at all), and a tested concurrent
//! structure on top rather than a hand-made ring.
//!
//! Traps, each avoided below:
//! - a page past the end of the file (mapping more than was `ftruncate`d, or a full
//!   tmpfs) is not an error but SIGBUS on first touch: the reader reserves the pages
//!   with `posix_fallocate` (a full /dev/shm gives ENOSPC now), and the writer maps
//!   exactly the object's size, as `fstat` reports it;
//! - `shm_unlink` removes the name at once, but the memory lives on until the last
//!   mapping goes: the writer can finish with a segment its reader already removed.
//!
//! A trap NOT avoided: any process that can open the object (the same uid, with mode
//! 0600) can `ftruncate` it smaller under both mappings, and the next touch of a page
//! past the new end kills with SIGBUS (shrunk to 0: the reader's own look at the
//! header every 100 ms), which no guard survives. What this demo does about it: the
//! reader's SIGBUS handler (`unlink_on_sigbus`) removes the name, says so on stderr,
//! and lets the process die of the SIGBUS; a writer that maps it dies of SIGBUS too.
//! A POSIX shm object cannot be sealed. Only a memfd sealed with F_SEAL_SHRINK
//! (memfd_create + fcntl F_ADD_SEALS; see socket-demo fdpass) rules it out; with
//! shm_open, trust only objects of your own uid.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{OFlag, posix_fallocate};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{Pid, ftruncate, getpid};

use crate::segment::{HEADER_LEN, Layout, Segment};
use crate::sync::{Sem, Semaphores, initial_values};

/// Where the objects live: shm_open("/x") is the file /dev/shm/x.
const SHM_DIR: &str = "/dev/shm";

/// Bad usage if the segment could never fit in /dev/shm (checked before creating).
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

/// What the reader makes: the object, mapped, with its semaphores initialised.
/// Dropping it undoes all three, in this order: semaphores, mapping, name.
pub struct Created {
    mapping: Mapping,
    object: ShmObject,
}

/// The reader's side: create the object, size it, map it, set up the semaphores.
pub fn create(name: &str, layout: &Layout) -> Result<Created> {
    let role = "reader";
    let fd = create_object(name)?;
    let object = ShmObject {
        name: name.to_string(),
        owner: getpid(),
    };
    let len = layout.len();
    ftruncate(&fd, len as i64).with_context(|| format!("ftruncate {name} to {len} bytes"))?;
    posix_fallocate(&fd, 0, len as i64).map_err(|e| match e {
        Errno::ENOSPC => {
            anyhow::anyhow!("{SHM_DIR} is full: no room for {len} bytes (posix_fallocate: ENOSPC)")
        }
        e => anyhow::anyhow!("posix_fallocate {name}: {e}"),
    })?;
    say!(
        role,
        "ftruncate(fd {}, {len}) + posix_fallocate: the object has {len} bytes ({} pages), all zero",
        fd.as_raw_fd(),
        len.div_ceil(crate::memory::page_size())
    );
    unlink_on_sigbus(name)?;
    let mapping = map(fd, len, role)?;
    init_semaphores(&mapping.segment(), initial_values(layout.slots))?;
    Ok(Created { mapping, object })
}

impl Created {
    pub fn segment(&self) -> Segment<'_> {
        self.mapping.segment()
    }

    pub fn sems(&self) -> PosixSems<'_> {
        PosixSems::in_segment(self.mapping.segment())
    }

    /// What removing it removes, for the interrupted message.
    pub fn describe(&self) -> String {
        format!("{SHM_DIR}{}", self.object.name)
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        // The fields drop after this: the mapping (munmap), then the name (shm_unlink).
        destroy_semaphores(&self.mapping.segment());
    }
}

/// shm_open with O_CREAT|O_EXCL: a new object or an error, never someone else's.
fn create_object(name: &str) -> Result<OwnedFd> {
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR;
    match shm_open(name, flags, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(fd) => {
            say!(
                "reader",
                "shm_open({name:?}, O_CREAT|O_EXCL|O_RDWR, 0600): fd {}, the file {SHM_DIR}{name} (tmpfs: memory, not disk)",
                fd.as_raw_fd()
            );
            Ok(fd)
        }
        Err(Errno::EEXIST) => bail!(
            "{SHM_DIR}{name} already exists: another reader is using it, or one was killed \
             before it could clean up (remove it with: rm {SHM_DIR}{name})"
        ),
        Err(e) => Err(e).with_context(|| format!("shm_open {name} (O_CREAT|O_EXCL)")),
    }
}

/// What the writer opens: the reader's object, mapped at an address of our own.
pub struct Opened {
    mapping: Mapping,
}

/// The writer's side: open the existing object and map exactly its size.
pub fn open(name: &str) -> Result<Opened> {
    let role = "writer";
    let fd = match shm_open(name, OFlag::O_RDWR, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => bail!(
            "no shared memory object {name} ({SHM_DIR}{name} does not exist): \
             start the reader first (shm-demo reader posix --name {name})"
        ),
        Err(e) => return Err(e).with_context(|| format!("shm_open {name}")),
    };
    let len = fstat(&fd).with_context(|| format!("fstat {name}"))?.st_size as usize;
    say!(
        role,
        "shm_open({name:?}, O_RDWR): fd {}, no O_CREAT: the reader made it; fstat says {len} bytes",
        fd.as_raw_fd()
    );
    if len < HEADER_LEN {
        bail!("{name} has {len} bytes, less than its header: is its reader still starting?");
    }
    let mapping = map(fd, len, role)?;
    let sems = mapping.segment().header().posix_sems.as_ptr() as usize;
    say!(
        role,
        "the reader's four sem_t are in the segment: for me at {sems:#x}; I post and wait \
         on them where they lie, the same memory at another address"
    );
    Ok(Opened { mapping })
}

impl Opened {
    pub fn segment(&self) -> Segment<'_> {
        self.mapping.segment()
    }

    /// The reader's semaphores, where they lie in the segment. Only once the header's
    /// ready mark has been seen: before that they may not be initialised.
    pub fn sems(&self) -> PosixSems<'_> {
        PosixSems::in_segment(self.mapping.segment())
    }
}

/// The writer's cleanup for a reader that was killed: the name is still there.
pub fn remove_leftovers(name: &str) -> Result<String> {
    match shm_unlink(name) {
        Ok(()) | Err(Errno::ENOENT) => Ok(format!("{SHM_DIR}{name}")),
        Err(e) => Err(e).with_context(|| format!("shm_unlink {name}")),
    }
}

/// The name in /dev/shm. Its Drop unlinks it, in the process that created it only.
struct ShmObject {
    name: String,
    owner: Pid,
}

impl Drop for ShmObject {
    fn drop(&mut self) {
        if getpid() != self.owner {
            return; // a forked copy: the object is its parent's to remove
        }
        forget_on_sigbus();
        match shm_unlink(self.name.as_str()) {
            Ok(()) => say!(
                "reader",
                "shm_unlink({:?}): the name is gone from {SHM_DIR}; the memory goes with the last mapping",
                self.name
            ),
            Err(e) => say!("reader", "shm_unlink({:?}) failed: {e}", self.name),
        }
    }
}

/// The path the SIGBUS handler unlinks: a leaked C string, or null for none.
static SIGBUS_UNLINKS: AtomicPtr<std::ffi::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// A SIGBUS from our mapping means the object was shrunk under it (see the traps
/// above): no guard will run, so the handler removes the name itself with unlink(2),
/// which is async-signal-safe, writes one line, puts back the default action and
/// raises SIGBUS again, so the process dies of it once the handler returns. Process-wide
/// state: the narrated reader's choice, for one object at a time.
fn unlink_on_sigbus(name: &str) -> Result<()> {
    let path = std::ffi::CString::new(format!("{SHM_DIR}{name}")).context("a name with NUL")?;
    let old = SIGBUS_UNLINKS.swap(path.into_raw(), Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: a pointer from CString::into_raw, swapped out so no handler sees it.
        drop(unsafe { std::ffi::CString::from_raw(old) });
    }
    let action = SigAction::new(
        SigHandler::Handler(on_sigbus),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: `on_sigbus` only makes async-signal-safe calls (unlink, write, signal, raise).
    unsafe { sigaction(Signal::SIGBUS, &action) }.context("sigaction SIGBUS")?;
    Ok(())
}

/// The name is being removed the normal way: a later SIGBUS must not unlink a new
/// object that someone else made under the same name.
fn forget_on_sigbus() {
    let old = SIGBUS_UNLINKS.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: a pointer from CString::into_raw, swapped out so no handler sees it.
        drop(unsafe { std::ffi::CString::from_raw(old) });
    }
}

extern "C" fn on_sigbus(_: std::ffi::c_int) {
    const SAID: &[u8] = b"error: SIGBUS: a page of the shared memory object is gone \
(another process shrank it with ftruncate?); removed its name from /dev/shm, dying of SIGBUS\n";
    let path = SIGBUS_UNLINKS.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: unlink, write, signal and raise are async-signal-safe (signal-safety(7)); `path`
    // is null or a live C string that nothing frees once swapped out here.
    unsafe {
        if !path.is_null() {
            libc::unlink(path);
        }
        libc::write(2, SAID.as_ptr().cast(), SAID.len());
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
        // Pending until the handler returns (SIGBUS is blocked while it runs), then
        // fatal: the same death for a fault and for a `kill -BUS`.
        libc::raise(libc::SIGBUS);
    }
}

/// One mapping of the object in this process; its Drop unmaps it.
struct Mapping {
    base: NonNull<std::ffi::c_void>,
    len: usize,
    role: &'static str,
}

/// mmap the whole object, read-write and shared, then close the fd: the mapping keeps
/// the pages, and the name (until unlinked) keeps the object.
fn map(fd: OwnedFd, len: usize, role: &'static str) -> Result<Mapping> {
    let size = NonZeroUsize::new(len).context("an empty segment")?;
    // SAFETY: a new mapping at an address the kernel picks (None), so it overlaps
    // nothing of ours; `len` is the object's size, so every page is backed by the file.
    let base = unsafe {
        mmap(
            None,
            size,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            &fd,
            0,
        )
    }
    .context("mmap")?;
    say!(
        role,
        "mmap(NULL, {len}, PROT_READ|PROT_WRITE, MAP_SHARED, fd {}, 0) = {:#x}: the segment, in my address space",
        fd.as_raw_fd(),
        base.as_ptr() as usize
    );
    drop(fd);
    say!(
        role,
        "closed the fd: the mapping stays, and so does the object while it has a name"
    );
    Ok(Mapping { base, len, role })
}

impl Mapping {
    fn segment(&self) -> Segment<'_> {
        // SAFETY: our MAP_SHARED read-write mapping of `len` bytes, page-aligned (mmap),
        // mapped until self drops; both `create` and `open` ensure len ≥ HEADER_LEN.
        unsafe { Segment::new(self.base, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap gave us; nothing borrows it any more, since
        // every Segment borrows this Mapping.
        match unsafe { munmap(self.base, self.len) } {
            Ok(()) => say!(
                self.role,
                "munmap({:#x}, {}): the segment is out of my address space",
                self.base.as_ptr() as usize,
                self.len
            ),
            Err(e) => say!(self.role, "munmap failed: {e}"),
        }
    }
}

/// The four semaphores inside the segment, used in place.
pub struct PosixSems<'a> {
    sems: &'a [UnsafeCell<MaybeUninit<libc::sem_t>>; 4],
}

impl<'a> PosixSems<'a> {
    fn in_segment(segment: Segment<'a>) -> PosixSems<'a> {
        PosixSems {
            sems: &segment.header().posix_sems,
        }
    }

    fn ptr(&self, sem: Sem) -> *mut libc::sem_t {
        self.sems[sem as usize].get().cast()
    }
}

/// sem_init(pshared=1) each semaphore where it lies in the segment.
fn init_semaphores(segment: &Segment, values: [u32; 4]) -> Result<()> {
    let sems = PosixSems::in_segment(*segment);
    for (sem, value) in [Sem::Free, Sem::Filled, Sem::Ping, Sem::Pong]
        .into_iter()
        .zip(values)
    {
        // SAFETY: the sem_t lies in our shared mapping, which outlives its use, and no
        // other process uses it yet: the writer waits for the header's ready mark,
        // which the reader sets only after this.
        if unsafe { libc::sem_init(sems.ptr(sem), 1, value) } != 0 {
            return Err(Errno::last()).with_context(|| format!("sem_init ({})", sem.name()));
        }
    }
    say!(
        "reader",
        "sem_init(pshared=1) x4 inside the segment at {:#x}: free={} filled={} ping={} pong={}; \
         a sem_t must never move, and these cannot: they live in the mapping",
        sems.sems.as_ptr() as usize,
        values[0],
        values[1],
        values[2],
        values[3]
    );
    Ok(())
}

/// sem_destroy, but only when no writer can be asleep on one: destroying a semaphore
/// that a process waits on is undefined behaviour. (On Linux it frees nothing: the
/// semaphore is just memory, and that goes with the segment.)
fn destroy_semaphores(segment: &Segment) {
    let header = segment.header();
    let writer = header.writer_pid();
    if writer != 0 && !header.writer_done() && !crate::sync::is_gone(writer) {
        say!(
            "reader",
            "left the semaphores as they are: the writer (pid {writer}) may still wait on one"
        );
        return;
    }
    let sems = PosixSems::in_segment(*segment);
    for sem in [Sem::Free, Sem::Filled, Sem::Ping, Sem::Pong] {
        // SAFETY: initialised by sem_init in `create`, in our live mapping, and no
        // process waits on it (checked above).
        unsafe { libc::sem_destroy(sems.ptr(sem)) };
    }
    say!(
        "reader",
        "sem_destroy x4: no process waits on them any more"
    );
}

impl Semaphores for PosixSems<'_> {
    fn post(&self, sem: Sem) -> Result<()> {
        // SAFETY: an initialised sem_t (the caller saw the ready mark) in a live mapping.
        if unsafe { libc::sem_post(self.ptr(sem)) } != 0 {
            return Err(Errno::last()).with_context(|| format!("sem_post ({})", sem.name()));
        }
        Ok(())
    }

    fn wait_at_most(&self, sem: Sem, limit: Duration) -> Result<bool> {
        let deadline = realtime_after(limit);
        // SAFETY: as in `post`; `deadline` is a valid timespec for the whole call.
        if unsafe { libc::sem_timedwait(self.ptr(sem), &deadline) } == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::ETIMEDOUT | Errno::EINTR => Ok(false),
            e => Err(e).with_context(|| format!("sem_timedwait ({})", sem.name())),
        }
    }

    fn try_take(&self, sem: Sem) -> Result<bool> {
        // SAFETY: as in `post`.
        if unsafe { libc::sem_trywait(self.ptr(sem)) } == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::EAGAIN => Ok(false), // nothing to take
            e => Err(e).with_context(|| format!("sem_trywait ({})", sem.name())),
        }
    }

    fn wait_call(&self) -> &'static str {
        "sem_timedwait"
    }

    fn post_call(&self) -> &'static str {
        "sem_post"
    }
}

/// sem_timedwait takes an absolute CLOCK_REALTIME time: now + `limit`.
fn realtime_after(limit: Duration) -> libc::timespec {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + limit;
    libc::timespec {
        tv_sec: at.as_secs() as libc::time_t,
        tv_nsec: at.subsec_nanos() as libc::c_long,
    }
}
