//! Anonymous shared memory: `memfd_create` + `ftruncate` + seals, mapped with
//! [`crate::posix::Mapping`]. The calls in the order a program makes them:
//!
//! 1. [`create`]: `memfd_create(name, MFD_ALLOW_SEALING | MFD_CLOEXEC)`, a file with no
//!    name in any directory: nothing appears in /dev/shm, and nothing can be left there
//!    by a crash; the memory goes when the last fd and the last mapping of it go;
//! 2. [`set_size`] (ftruncate + posix_fallocate), then [`seal_size`] (F_SEAL_SHRINK |
//!    F_SEAL_GROW) and [`seal_seals`] (F_SEAL_SEAL); [`create_sealed`] does all three;
//! 3. share the fd: across `fork` (the child inherits it, and any mapping), or with an
//!    unrelated process over a Unix socket with SCM_RIGHTS (socket-demo `fdpass`);
//!    the other side checks [`seals`] before it trusts the size, then maps [`size`] bytes.
//!
//! Traps avoided here:
//! - a POSIX object (`shm_open`) can be shrunk by any process of its uid, and the next
//!   touch of a page past the new end is SIGBUS. With F_SEAL_SHRINK, `ftruncate` to a
//!   smaller size fails with EPERM ([`resize`] shows it), so a mapping of the sealed
//!   size never loses its pages that way; F_SEAL_SEAL keeps anyone from changing the
//!   seals afterwards (F_ADD_SEALS: EPERM);
//! - a page the kernel cannot provide at its first touch (a memfd's pages are
//!   accounted as they are touched: under strict overcommit, vm.overcommit_memory=2,
//!   that can fail) is SIGBUS, not an error: [`set_size`] reserves the pages with
//!   `posix_fallocate`, so that failure is an error there (ENOSPC or ENOMEM); before
//!   F_SEAL_GROW, which refuses a fallocate past the end (within it, it is allowed).
//!
//! Not avoided: the other side can still change the bytes (F_SEAL_WRITE would stop
//! every writer, us included, and is refused with EBUSY while a writable shared
//! mapping exists; F_SEAL_FUTURE_WRITE, Linux 5.1, refuses new writes and new writable
//! mappings while the mappings made before it keep writing; neither is shown here). The name given to `memfd_create` only
//! shows in /proc/PID/fd and /proc/PID/maps (`/memfd:NAME (deleted)`): several memfds
//! may share it, and nothing can open one by it.
//!
//! Needs: nix with features `fs` (memfd, fcntl, fstat, posix_fallocate), `mman` (for
//! [`crate::posix::Mapping`]); `anyhow`.

use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result, anyhow};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl, posix_fallocate};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::fstat;
use nix::unistd::ftruncate;

/// `memfd_create(name, MFD_ALLOW_SEALING | MFD_CLOEXEC)`: a new, empty, unnamed file in
/// memory. `name` is for debugging only (the `memfd:NAME` of /proc/PID/fd). Without
/// MFD_ALLOW_SEALING the file starts with F_SEAL_SEAL and can never be sealed;
/// MFD_CLOEXEC: an `exec` does not leak it (a `fork` still shares it).
///
/// # Examples
/// ```
/// let fd = shm_demo::memfd::create("doc-create")?;
/// assert_eq!(shm_demo::memfd::size(&fd)?, 0);
/// assert!(shm_demo::memfd::seals(&fd)?.is_empty()); // sealable, not sealed yet
/// drop(fd); // the memory is gone: no name anywhere to remove
/// # anyhow::Ok(())
/// ```
pub fn create(name: &str) -> Result<OwnedFd> {
    memfd_create(name, MFdFlags::MFD_ALLOW_SEALING | MFdFlags::MFD_CLOEXEC)
        .with_context(|| format!("memfd_create {name:?} (MFD_ALLOW_SEALING|MFD_CLOEXEC)"))
}

/// Gives the new file its size: `ftruncate` (zero-filled), then `posix_fallocate`, so
/// a lack of memory is an error here (ENOSPC, ENOMEM) rather than SIGBUS on the first
/// touch of a page.
pub fn set_size(fd: &OwnedFd, len: usize) -> Result<()> {
    ftruncate(fd, len as i64).with_context(|| format!("ftruncate memfd to {len} bytes"))?;
    posix_fallocate(fd, 0, len as i64).map_err(|e| match e {
        Errno::ENOSPC => anyhow!("no memory for a memfd of {len} bytes (posix_fallocate: ENOSPC)"),
        e => anyhow!("posix_fallocate {len} bytes: {e}"),
    })
}

/// `fcntl(F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)`: from now on no process, this one
/// included, can make the file smaller or larger (ftruncate, write past the end,
/// fallocate past the end: EPERM).
pub fn seal_size(fd: &OwnedFd) -> Result<()> {
    let size = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    fcntl(fd, FcntlArg::F_ADD_SEALS(size))
        .context("fcntl F_ADD_SEALS F_SEAL_SHRINK|F_SEAL_GROW")?;
    Ok(())
}

/// `fcntl(F_ADD_SEALS, F_SEAL_SEAL)`: the set of seals is final; no one can add one
/// (F_SEAL_WRITE, say, to stop the other side's stores) or, as ever, remove one.
pub fn seal_seals(fd: &OwnedFd) -> Result<()> {
    fcntl(fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SEAL))
        .context("fcntl F_ADD_SEALS F_SEAL_SEAL")?;
    Ok(())
}

/// [`create`], [`set_size`], [`seal_size`], [`seal_seals`]: a memfd of `len` bytes that
/// keeps that size for good.
///
/// # Examples
/// ```
/// use nix::fcntl::SealFlag;
/// let fd = shm_demo::memfd::create_sealed("doc-sealed", 8192)?;
/// let seals = shm_demo::memfd::seals(&fd)?;
/// assert!(seals.contains(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL));
/// // Shrinking or growing is refused, whoever tries:
/// assert_eq!(shm_demo::memfd::resize(&fd, 0), Err(nix::errno::Errno::EPERM));
/// assert_eq!(shm_demo::memfd::resize(&fd, 16384), Err(nix::errno::Errno::EPERM));
/// assert_eq!(shm_demo::memfd::size(&fd)?, 8192);
/// let map = shm_demo::posix::Mapping::new(&fd, 8192)?;
/// drop(fd); // the mapping keeps the memory
/// // SAFETY: our own fresh mapping of 8192 bytes; nobody else has it.
/// unsafe { map.as_ptr().as_ptr().add(8191).write(7) };
/// # anyhow::Ok(())
/// ```
pub fn create_sealed(name: &str, len: usize) -> Result<OwnedFd> {
    let fd = create(name)?;
    set_size(&fd, len)?;
    seal_size(&fd)?;
    seal_seals(&fd)?;
    Ok(fd)
}

/// `fcntl(F_GET_SEALS)`: the seals on the file. EINVAL (an `Errno` for `downcast_ref`):
/// a file on a filesystem without seals. A tmpfs file (`shm_open`) or a memfd made
/// without MFD_ALLOW_SEALING answers F_SEAL_SEAL alone: sealed against sealing, its
/// size free to change. Check for F_SEAL_SHRINK on an fd received from someone else
/// before trusting its size.
pub fn seals(fd: &impl AsFd) -> Result<SealFlag> {
    let bits = fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS).context("fcntl F_GET_SEALS")?;
    Ok(SealFlag::from_bits_truncate(bits))
}

/// `ftruncate(fd, len)`, the call the seals refuse: EPERM for a size other than the
/// sealed one on a memfd sealed with F_SEAL_SHRINK | F_SEAL_GROW.
pub fn resize(fd: &impl AsFd, len: usize) -> nix::Result<()> {
    ftruncate(fd.as_fd(), len as i64)
}

/// `fcntl(F_ADD_SEALS, seal)`, which F_SEAL_SEAL refuses with EPERM.
pub fn add_seal(fd: &impl AsFd, seal: SealFlag) -> nix::Result<()> {
    fcntl(fd.as_fd(), FcntlArg::F_ADD_SEALS(seal)).map(drop)
}

/// The file's size in bytes (fstat): map this much, after [`seals`] says it is fixed.
pub fn size(fd: &impl AsFd) -> Result<usize> {
    Ok(fstat(fd.as_fd()).context("fstat memfd")?.st_size as usize)
}

/// What /proc/self/fd/N says the fd is: `/memfd:NAME (deleted)` for a memfd (it is in
/// no directory). None if /proc is not mounted.
pub fn describe(fd: &impl AsFd) -> Option<String> {
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    std::fs::read_link(link)
        .ok()
        .map(|target| target.display().to_string())
}
