//! The `memfd` flavour, narrated: anonymous shared memory with no name, sealed so its
//! size is fixed, shared with a child through `fork`. Every memfd call is the
//! library's (`shm_demo::memfd`, src/memfd.rs); the ring, the semaphores inside the
//! segment and the workloads are the posix flavour's, unchanged.
//!
//! Notes, 共享内存: 拿出一块虚拟地址空间来，映射到相同的物理内存中. The posix flavour
//! finds that memory by a name in /dev/shm, which a crash can leave behind and which
//! any process of the same uid can open and `ftruncate` smaller under the reader (the
//! reader's next touch past the new end: SIGBUS). Linux has had a way out since 3.17:
//! - `memfd_create` makes the file with no name in any directory: nothing appears in
//!   /dev/shm (the reader checks: no entry there has its inode), nothing can be left
//!   there, and its memory goes when the last fd and the last mapping go, SIGKILL or not;
//! - seals: F_SEAL_SHRINK | F_SEAL_GROW fix the size, then F_SEAL_SEAL fixes the seals.
//!   The writer tries `ftruncate` to 0 and to twice the size, and F_ADD_SEALS, and is
//!   refused each time with EPERM: the SIGBUS of a shrunk POSIX object cannot happen
//!   to a mapping of this one (of at most the sealed size, as both mappings here are).
//!
//! With no name, how does the other process find it? By holding the fd. Here the
//! writer is a child forked after the memfd exists: it inherits the fd (and the
//! reader's mapping) and maps the fd again itself, at another address. An unrelated
//! process gets the fd over a Unix socket with SCM_RIGHTS: see `socket-demo fdpass`
//! (not shown here). So this flavour has no `reader`/`writer` for two terminals.
//!
//! Run: `cargo run -p shm-demo -- memfd` (or `memfd --count 1000 --size 65536`, bulk).
//! While it runs: `ls /dev/shm` (nothing of ours), `grep memfd /proc/PID/maps`
//! (`/memfd:shm-demo (deleted)`, in both processes, one inode), `ls -l /proc/PID/fd`.
//!
//! Watch for: `links 0` and no /dev/shm entry; the refused `ftruncate` (EPERM); two
//! addresses, one inode; nothing to unlink at the end, on any way out.
//!
//! In production: `memfd_create` + seals is how Wayland clients (wl_shm pools) and
//! systemd-journald hand memory to another process; `memmap2` over the fd, passed with SCM_RIGHTS
//! (the `sendfd` crate, or `std::os::unix::net` ancillary data where stable), and the
//! receiver checking F_GET_SEALS before it maps.

use std::cell::Cell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::SealFlag;
use nix::unistd::{ForkResult, Pid, getppid};
use shm_demo::memfd;
use shm_demo::posix::Mapping;

use crate::posix::{PosixSems, destroy_semaphores, init_semaphores};
use crate::segment::{HEADER_LEN, Layout, Segment};
use crate::signals::Interrupted;
use crate::sync::{PeerGone, initial_values};
use crate::{Cpus, Meeting, Workload, demo, reader, writer};

/// The name memfd_create is given: it shows only in /proc/PID/fd and /proc/PID/maps.
const DEBUG_NAME: &str = "shm-demo";

/// The default run of the flavour: this process is the reader; it makes the sealed
/// memfd, maps it, and forks the writer once the segment is ready.
pub fn run(workload: &Workload, cpus: Option<Cpus>) -> Result<()> {
    let workload = demo::with_default_messages(workload);
    demo::run_on_cpu(cpus.map(|c| c.reader))?;
    let layout = Layout::for_workload(&workload);
    let role = reader::ROLE;
    let fd = create(layout.len())?;
    let map = Mapping::new(&fd, layout.len())?;
    say!(
        role,
        "mmap(NULL, {}, PROT_READ|PROT_WRITE, MAP_SHARED, fd {}, 0) = {:#x}: the segment, in my address space",
        layout.len(),
        fd.as_raw_fd(),
        map.as_ptr().as_ptr() as usize
    );
    // SAFETY: the library's MAP_SHARED read-write mapping of layout.len() bytes
    // (≥ HEADER_LEN), page-aligned, alive until `map` drops below, after every use.
    let segment = unsafe { Segment::new(map.as_ptr().cast(), map.len()) };
    init_semaphores(&segment, initial_values(layout.slots))?;
    let sems = PosixSems::in_segment(segment);
    let child = Cell::new(None);
    let outcome = reader::serve(
        segment,
        &sems,
        &layout,
        &Meeting::Memfd,
        &workload,
        None,
        || {
            let pid = fork_writer(&fd, &workload, cpus)?;
            child.set(Some(pid));
            Ok(Some(pid))
        },
    );
    let reaped = child.get().map(demo::reap);
    destroy_semaphores(&segment);
    drop(map);
    drop(fd);
    say!(
        role,
        "munmap, close: my last reference is gone; there was no name to unlink, so \
         nothing of this run can remain, whatever way it ended"
    );
    if let Err(e) = &outcome {
        if let Some(Interrupted(sig)) = e.downcast_ref::<Interrupted>() {
            say!(
                role,
                "interrupted by {sig}: nothing to remove (the memfd had no name)"
            );
        }
    }
    let tally = outcome?;
    if let Some(reaped) = reaped {
        reaped?;
    }
    tally.print(role);
    Ok(())
}

/// memfd_create, sized, sealed, each step narrated with what the kernel shows.
fn create(len: usize) -> Result<OwnedFd> {
    let role = reader::ROLE;
    let fd = memfd::create(DEBUG_NAME)?;
    let meta = std::fs::File::from(fd.try_clone().context("dup the memfd")?).metadata();
    let (dev, inode, links) = meta
        .map(|m| (m.dev(), m.ino(), m.nlink()))
        .unwrap_or((0, 0, 1));
    say!(
        role,
        "memfd_create({DEBUG_NAME:?}, MFD_ALLOW_SEALING|MFD_CLOEXEC): fd {}, /proc/self/fd/{} -> {}; \
         fstat: inode {inode}, links {links}: a file in no directory",
        fd.as_raw_fd(),
        fd.as_raw_fd(),
        memfd::describe(&fd).unwrap_or_else(|| "? (no /proc)".into())
    );
    match in_dev_shm(dev, inode) {
        Some(path) => bail!("{path} has the memfd's inode {inode}: a memfd should have no name"),
        None => say!(
            role,
            "no entry of /dev/shm has inode {inode}: nothing there to see, or to be left behind"
        ),
    }
    memfd::set_size(&fd, len)?;
    say!(
        role,
        "ftruncate(fd {}, {len}) + posix_fallocate: {len} bytes ({} pages), all zero",
        fd.as_raw_fd(),
        len.div_ceil(shm_demo::page_size())
    );
    memfd::seal_size(&fd)?;
    say!(
        role,
        "fcntl(fd {}, F_ADD_SEALS, F_SEAL_SHRINK|F_SEAL_GROW): the size is fixed at {len}, for every process",
        fd.as_raw_fd()
    );
    memfd::seal_seals(&fd)?;
    say!(
        role,
        "fcntl(fd {}, F_ADD_SEALS, F_SEAL_SEAL): no seal can be added now; F_GET_SEALS = {}",
        fd.as_raw_fd(),
        seal_names(memfd::seals(&fd)?)
    );
    Ok(fd)
}

/// The /dev/shm entry that is this file (device and inode), if any: a POSIX object
/// would have one.
fn in_dev_shm(dev: u64, inode: u64) -> Option<String> {
    let entries = std::fs::read_dir(shm_demo::posix::SHM_DIR).ok()?;
    entries
        .flatten()
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| (m.dev(), m.ino()) == (dev, inode))
        })
        .map(|e| e.path().display().to_string())
}

fn seal_names(seals: SealFlag) -> String {
    let names: Vec<&str> = [
        (SealFlag::F_SEAL_SHRINK, "F_SEAL_SHRINK"),
        (SealFlag::F_SEAL_GROW, "F_SEAL_GROW"),
        (SealFlag::F_SEAL_WRITE, "F_SEAL_WRITE"),
        (SealFlag::F_SEAL_SEAL, "F_SEAL_SEAL"),
    ]
    .into_iter()
    .filter(|(flag, _)| seals.contains(*flag))
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join("|")
    }
}

/// Forks the writer: the child inherits the fd and the mapping, runs the writer, and
/// exits; it never returns here. The parent gets the child's pid.
fn fork_writer(fd: &OwnedFd, workload: &Workload, cpus: Option<Cpus>) -> Result<Pid> {
    use std::io::Write as _;
    let _ = std::io::stdout().flush(); // or a buffered line would print twice
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that another thread held at the moment of fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Child => {
            let pinned = demo::run_on_cpu(cpus.map(|c| c.writer));
            demo::exit_child(pinned.and_then(|()| writer_side(fd, workload)))
        }
        ForkResult::Parent { child } => {
            say!(
                reader::ROLE,
                "forked the writer, pid {child}, after the memfd was ready: it inherits fd {} \
                 and my mapping; that is how it finds memory with no name",
                fd.as_raw_fd()
            );
            Ok(child)
        }
    }
}

/// The child: try to resize the memfd (refused), map the inherited fd, be the writer.
fn writer_side(fd: &OwnedFd, workload: &Workload) -> Result<()> {
    let role = writer::ROLE;
    say!(
        role,
        "forked by reader {}: fd {} is mine too ({}); F_GET_SEALS = {}",
        getppid(),
        fd.as_raw_fd(),
        memfd::describe(fd).unwrap_or_else(|| "?".into()),
        seal_names(memfd::seals(fd)?)
    );
    let len = memfd::size(fd)?;
    try_to_resize(fd, 0, "F_SEAL_SHRINK")?;
    try_to_resize(fd, 2 * len, "F_SEAL_GROW")?;
    match memfd::add_seal(fd, SealFlag::F_SEAL_WRITE) {
        Err(Errno::EPERM) => say!(
            role,
            "fcntl(fd {}, F_ADD_SEALS, F_SEAL_WRITE) = EPERM: F_SEAL_SEAL, the seals are final",
            fd.as_raw_fd()
        ),
        other => bail!("F_ADD_SEALS after F_SEAL_SEAL returned {other:?}, not EPERM"),
    }
    if len < HEADER_LEN {
        bail!("the memfd has {len} bytes, less than its header");
    }
    let map = Mapping::new(fd, len)?;
    say!(
        role,
        "mmap(NULL, {len}, PROT_READ|PROT_WRITE, MAP_SHARED, fd {}, 0) = {:#x}: the inherited \
         fd mapped again, at an address of my own (the inherited mapping stays too); a \
         process given the fd over a socket would do just this (socket-demo fdpass)",
        fd.as_raw_fd(),
        map.as_ptr().as_ptr() as usize
    );
    // SAFETY: the library's MAP_SHARED read-write mapping of the memfd's `len` bytes,
    // page-aligned, ≥ HEADER_LEN (checked above), alive until `map` drops below.
    let segment = unsafe { Segment::new(map.as_ptr().cast(), map.len()) };
    let outcome = writer::session(segment, &PosixSems::in_segment(segment), workload);
    if let Err(e) = &outcome {
        if e.downcast_ref::<PeerGone>().is_some_and(|gone| gone.died) {
            say!(
                role,
                "the reader died: there is nothing to remove, the memfd had no name; its \
                 memory goes as I exit (my fd and mappings are the last)"
            );
        }
        if let Some(Interrupted(sig)) = e.downcast_ref::<Interrupted>() {
            say!(
                role,
                "interrupted by {sig}: nothing to remove (the memfd had no name)"
            );
        }
    }
    drop(map);
    let tally = outcome?;
    tally.print(role);
    Ok(())
}

/// ftruncate to `len`, which the seal `seal` must refuse with EPERM.
fn try_to_resize(fd: &OwnedFd, len: usize, seal: &str) -> Result<()> {
    match memfd::resize(fd, len) {
        Err(Errno::EPERM) => {
            say!(
                writer::ROLE,
                "ftruncate(fd {}, {len}) = EPERM: refused by {seal}{}",
                fd.as_raw_fd(),
                if len == 0 {
                    "; a shrunk POSIX object kills its reader with SIGBUS (shm-demo posix), \
                     a mapping of this memfd cannot lose its pages that way"
                } else {
                    ""
                }
            );
            Ok(())
        }
        other => bail!("ftruncate({len}) of the sealed memfd returned {other:?}, not EPERM"),
    }
}
