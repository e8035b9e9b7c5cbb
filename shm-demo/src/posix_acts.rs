//! The `posix` flavour, narrated: `shm_open` + `ftruncate` + `mmap`, and unnamed POSIX
//! semaphores (`sem_init` with pshared=1) placed inside the segment itself. Every call
//! is the library's (`shm_demo::posix`, src/posix.rs); this file says what each did.
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
//! Traps, each avoided (in the library):
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
//! reader's SIGBUS handler (`shm_demo::sigbus::unlink_on_sigbus`) removes the name, says so on stderr,
//! and lets the process die of the SIGBUS; a writer that maps it dies of SIGBUS too.
//! A POSIX shm object cannot be sealed. Only a memfd sealed with F_SEAL_SHRINK
//! (memfd_create + fcntl F_ADD_SEALS: `shm-demo memfd`, and socket-demo fdpass) rules
//! it out; with shm_open, trust only objects of your own uid.

use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::time::Duration;

use anyhow::{Result, bail};
use nix::errno::Errno;
use shm_demo::posix::{self, Mapping, SHM_DIR, Sem as PSem, Unlink};
use shm_demo::sigbus::{UnlinkOnSigbus, unlink_on_sigbus};

use crate::segment::{HEADER_LEN, Layout, Segment};
use crate::signals;
use crate::sync::{Sem, Semaphores, initial_values};

pub use shm_demo::posix::check_size;

/// What the reader makes: the object, mapped, with its semaphores initialised.
/// Dropping it undoes all three, in this order: semaphores, mapping, name.
pub struct Created {
    mapping: Narrated,
    sigbus: Option<UnlinkOnSigbus>,
    name: Option<Unlink>,
}

/// The reader's side: create the object, size it, map it, set up the semaphores.
pub fn create(name: &str, layout: &Layout) -> Result<Created> {
    let role = "reader";
    let (fd, unlink) = posix::create_object(name).map_err(|e| match e.downcast_ref::<Errno>() {
        Some(Errno::EEXIST) => anyhow::anyhow!(
            "{SHM_DIR}{name} already exists: another reader is using it, or one was killed \
                 before it could clean up (remove it with: rm {SHM_DIR}{name})"
        ),
        _ => e,
    })?;
    say!(
        role,
        "shm_open({name:?}, O_CREAT|O_EXCL|O_RDWR, 0600): fd {}, the file {SHM_DIR}{name} (tmpfs: memory, not disk)",
        fd.as_raw_fd()
    );
    let mut created = Created {
        mapping: Narrated { map: None, role },
        sigbus: None,
        name: Some(unlink),
    };
    let len = layout.len();
    posix::set_size(&fd, len)?;
    say!(
        role,
        "ftruncate(fd {}, {len}) + posix_fallocate: the object has {len} bytes ({} pages), all zero",
        fd.as_raw_fd(),
        len.div_ceil(shm_demo::page_size())
    );
    created.sigbus = Some(unlink_on_sigbus(&format!("{SHM_DIR}{name}"))?);
    created.mapping = map(fd, len, role)?;
    init_semaphores(&created.segment(), initial_values(layout.slots))?;
    Ok(created)
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
        let name = self.name.as_ref().map_or("", |n| n.name());
        format!("{SHM_DIR}{name}")
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.mapping.map.is_some() {
            destroy_semaphores(&self.mapping.segment());
        }
        if let Some(m) = self.mapping.map.take() {
            self.mapping.unmap(m);
        }
        drop(self.sigbus.take()); // a later SIGBUS must not unlink a new object of that name
        let Some(name) = self.name.take() else { return };
        let shown = name.name().to_string();
        if !name.owned_here() {
            return; // a forked copy: the object is its parent's to remove
        }
        match name.remove() {
            Ok(()) => say!(
                "reader",
                "shm_unlink({shown:?}): the name is gone from {SHM_DIR}; the memory goes with the last mapping"
            ),
            Err(e) => say!("reader", "shm_unlink({shown:?}) failed: {:#}", e),
        }
    }
}

/// What the writer opens: the reader's object, mapped at an address of our own.
pub struct Opened {
    mapping: Narrated,
}

/// The writer's side: open the existing object and map exactly its size. No waiting
/// (Duration::ZERO): the narrated protocol starts the reader first.
pub fn open(name: &str) -> Result<Opened> {
    let role = "writer";
    let (fd, len) = match posix::open_object(name, 0, Duration::ZERO) {
        Ok(found) => found,
        Err(e) if e.downcast_ref::<Errno>() == Some(&Errno::ENOENT) => bail!(
            "no shared memory object {name} ({SHM_DIR}{name} does not exist): \
             start the reader first (shm-demo reader posix --name {name})"
        ),
        Err(e) => return Err(e),
    };
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

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(m) = self.mapping.map.take() {
            self.mapping.unmap(m);
        }
    }
}

/// The writer's cleanup for a reader that was killed: the name is still there.
pub fn remove_leftovers(name: &str) -> Result<String> {
    posix::remove_leftover(name)
}

/// The library's mapping, with who holds it, for the narration of its munmap.
struct Narrated {
    map: Option<Mapping>,
    role: &'static str,
}

/// mmap the whole object, read-write and shared, then close the fd: the mapping keeps
/// the pages, and the name (until unlinked) keeps the object.
fn map(fd: std::os::fd::OwnedFd, len: usize, role: &'static str) -> Result<Narrated> {
    let map = Mapping::new(&fd, len)?;
    say!(
        role,
        "mmap(NULL, {len}, PROT_READ|PROT_WRITE, MAP_SHARED, fd {}, 0) = {:#x}: the segment, in my address space",
        fd.as_raw_fd(),
        map.as_ptr().as_ptr() as usize
    );
    drop(fd);
    say!(
        role,
        "closed the fd: the mapping stays, and so does the object while it has a name"
    );
    Ok(Narrated {
        map: Some(map),
        role,
    })
}

impl Narrated {
    fn segment(&self) -> Segment<'_> {
        let map = self.map.as_ref().expect("mapped until dropped");
        // SAFETY: the library's MAP_SHARED read-write mapping of `len` bytes,
        // page-aligned (mmap), mapped while self holds it; both `create` and `open`
        // ensure len ≥ HEADER_LEN.
        unsafe { Segment::new(map.as_ptr().cast(), map.len()) }
    }

    fn unmap(&self, map: Mapping) {
        let (addr, len) = (map.as_ptr().as_ptr() as usize, map.len());
        match map.unmap() {
            Ok(()) => say!(
                self.role,
                "munmap({addr:#x}, {len}): the segment is out of my address space"
            ),
            Err(e) => say!(self.role, "munmap failed: {:#}", e),
        }
    }
}

/// The four semaphores inside the segment, used in place.
pub struct PosixSems<'a> {
    segment: Segment<'a>,
}

impl<'a> PosixSems<'a> {
    pub fn in_segment(segment: Segment<'a>) -> PosixSems<'a> {
        PosixSems { segment }
    }

    fn at(&self, sem: Sem) -> NonNull<libc::sem_t> {
        let cell = &self.segment.header().posix_sems[sem as usize];
        NonNull::new(cell.get().cast()).expect("a field's address is not null")
    }

    fn sem(&self, sem: Sem) -> PSem {
        // SAFETY: a sem_t field of the header, in the live mapping `segment` borrows,
        // aligned by the header's repr(C); initialised by `init_semaphores` before the
        // reader publishes the ready mark, which the writer sees before using these.
        unsafe { PSem::at(self.at(sem)) }
    }
}

/// sem_init(pshared=1) each semaphore where it lies in the segment.
pub fn init_semaphores(segment: &Segment, values: [u32; 4]) -> Result<()> {
    let sems = PosixSems::in_segment(*segment);
    for (sem, value) in [Sem::Free, Sem::Filled, Sem::Ping, Sem::Pong]
        .into_iter()
        .zip(values)
    {
        // SAFETY: the sem_t lies in our shared mapping, which outlives its use, and no
        // other process uses it yet: the writer waits for the header's ready mark,
        // which the reader sets only after this.
        unsafe { PSem::init(sems.at(sem), value) }
            .map_err(|e| e.context(format!("sem_init ({})", sem.name())))?;
    }
    say!(
        "reader",
        "sem_init(pshared=1) x4 inside the segment at {:#x}: free={} filled={} ping={} pong={}; \
         a sem_t must never move, and these cannot: they live in the mapping",
        sems.at(Sem::Free).as_ptr() as usize,
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
pub fn destroy_semaphores(segment: &Segment) {
    let header = segment.header();
    let writer = header.writer_pid();
    if writer != 0 && !header.writer_done() && !shm_demo::is_gone(writer) {
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
        unsafe { sems.sem(sem).destroy() };
    }
    say!(
        "reader",
        "sem_destroy x4: no process waits on them any more"
    );
}

impl Semaphores for PosixSems<'_> {
    fn post(&self, sem: Sem) -> Result<()> {
        self.sem(sem)
            .post()
            .map_err(|e| e.context(format!("sem_post ({})", sem.name())))
    }

    fn wait_at_most(&self, sem: Sem, limit: Duration) -> Result<bool> {
        self.sem(sem)
            .wait_for(limit, &|| signals::caught().is_some())
            .map_err(|e| e.context(format!("sem_timedwait ({})", sem.name())))
    }

    fn try_take(&self, sem: Sem) -> Result<bool> {
        self.sem(sem)
            .try_wait()
            .map_err(|e| e.context(format!("sem_trywait ({})", sem.name())))
    }

    fn wait_call(&self) -> &'static str {
        "sem_timedwait"
    }

    fn post_call(&self) -> &'static str {
        "sem_post"
    }
}
