//! One anonymous pipe: create it, move whole buffers through it, ask or change its
//! capacity (and read the limits on that), switch O_NONBLOCK.
//!
//! A pipe is a byte stream with no message boundaries: a read returns whatever is
//! there, up to the buffer's length, and a write larger than the free space may be
//! split. [`write_all`] and [`read_exact`] turn that into "send these bytes" and
//! "give me exactly this many", retry EINTR, and name the two ends a stream can
//! meet: EPIPE (no reader left) and EOF (no writer left).
//!
//! Standalone: needs only std and nix (features "fs", "poll").

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::{pipe2, read, write};
use std::io::{Error, ErrorKind, Result};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Makes a pipe: `(read_end, write_end)`, both O_CLOEXEC.
///
/// O_CLOEXEC: a program this process (or a child of it) execs later does not inherit
/// them. An inherited write end is the classic hang: a reader sees EOF only once
/// every write end in every process is closed, and a program that never heard of
/// the pipe never closes its copy. A `dup2` copy does not inherit the flag, so the
/// end you move onto a child's stdin or stdout stays open across exec.
///
/// # Examples
/// ```
/// let (read_end, write_end) = pipe_demo::pipe::create()?;
/// pipe_demo::pipe::write_all(&write_end, b"hello")?;
/// drop(write_end); // the last write end: the reader gets EOF after the data
/// let mut got = [0u8; 5];
/// assert!(pipe_demo::pipe::read_exact(&read_end, &mut got)?);
/// assert_eq!(&got, b"hello");
/// assert!(!pipe_demo::pipe::read_exact(&read_end, &mut got)?); // EOF
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn create() -> Result<(OwnedFd, OwnedFd)> {
    Ok(pipe2(OFlag::O_CLOEXEC)?)
}

/// Writes all of `buf`, retrying EINTR and short writes. For a blocking end: on
/// one set to O_NONBLOCK a full pipe is an error (EAGAIN, kind
/// [`ErrorKind::WouldBlock`]) after part of `buf` may have gone; use [`try_write`].
///
/// A reader that is gone (no process has the read end open) comes back as an error
/// of kind [`ErrorKind::BrokenPipe`] that says so. That needs SIGPIPE ignored, as a
/// Rust program has it from the start: with its default action (a C program, or a
/// child that reset it before exec) the kernel kills the writer instead, silently.
///
/// Up to PIPE_BUF (4096 bytes on Linux) one write is atomic: writers sharing a pipe
/// never interleave inside such a buffer. A longer one may reach the reader in
/// pieces, with another writer's bytes between them.
pub fn write_all(fd: impl AsFd, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match write(fd.as_fd(), buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE) => return Err(reader_gone()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One write on an end set to O_NONBLOCK (see [`set_nonblocking`]): `Ok(None)` when
/// the pipe is full (EAGAIN), where a blocking write would sleep; otherwise the
/// bytes taken, maybe fewer than `buf.len()`. EPIPE as in [`write_all`].
pub fn try_write(fd: impl AsFd, buf: &[u8]) -> Result<Option<usize>> {
    loop {
        match write(fd.as_fd(), buf) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::EAGAIN) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE) => return Err(reader_gone()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Fills all of `buf`, retrying EINTR and short reads. `Ok(false)` if the stream
/// ended before the first byte (EOF between messages: every write end is closed);
/// an error of kind [`ErrorKind::UnexpectedEof`] if it ended in the middle.
///
/// EOF comes only once every write end is closed, the reader's own copy included:
/// a process that reads must close the write end it inherited.
pub fn read_exact(fd: impl AsFd, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match read(fd.as_fd(), &mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "the writer closed the pipe {filled} bytes into a {}-byte message",
                        buf.len()
                    ),
                ));
            }
            Ok(n) => filled += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Waits until a read on `end` will not block, at most `timeout`: `Ok(true)` when
/// there is data or EOF (every write end closed: POLLHUP), `Ok(false)` when the
/// deadline passed first. The deadline is computed once, so a signal (EINTR) does
/// not restart the wait.
///
/// A writer that dies, even by SIGKILL, needs no timeout: the kernel closes its
/// end and the reader gets EOF, provided that end was the last one: a child the
/// writer forked still holds a copy (O_CLOEXEC only drops it at exec), and so
/// does the reader if it kept its own. This is for a writer alive but stuck (or
/// stopped), or one whose end lives on elsewhere.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let (read_end, write_end) = pipe_demo::pipe::create()?;
/// assert!(!pipe_demo::pipe::wait_readable(&read_end, Duration::from_millis(10))?);
/// drop(write_end); // EOF: a read no longer blocks
/// assert!(pipe_demo::pipe::wait_readable(&read_end, Duration::from_secs(5))?);
/// assert!(pipe_demo::pipe::wait_readable(&read_end, Duration::MAX)?); // no panic
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait_readable(end: impl AsFd, timeout: Duration) -> Result<bool> {
    // Capped at 136 years: `Instant + Duration::MAX` would panic.
    let deadline = Instant::now() + timeout.min(Duration::from_secs(u32::MAX as u64));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up to whole milliseconds, poll's unit, so it never wakes early.
        let millis = i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(end.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) if Instant::now() >= deadline => return Ok(false),
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The capacity of the kernel buffer behind a pipe, in bytes (F_GETPIPE_SZ).
///
/// Counted in page-sized slots: 16 pages by default (pipe(7); 65,536 bytes with
/// 4 KiB pages), fewer for a user past /proc/sys/fs/pipe-user-pages-soft, and any
/// power-of-two number of pages after F_SETPIPE_SZ. A write joins the last slot only
/// if it fits there whole, so the bytes a full pipe holds depend on the write sizes:
/// 4096-byte writes fill all of it, 2049-byte ones (with 4 KiB pages) about half.
///
/// # Examples
/// ```
/// let (read_end, _write_end) = pipe_demo::pipe::create()?;
/// let bytes = pipe_demo::pipe::capacity(&read_end)?;
/// assert!(bytes >= 4096 && bytes % 4096 == 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn capacity(end: impl AsFd) -> Result<usize> {
    Ok(fcntl(end.as_fd(), FcntlArg::F_GETPIPE_SZ)? as usize)
}

/// Changes the capacity of the kernel buffer behind a pipe (F_SETPIPE_SZ) and
/// returns the one the kernel chose: at least `bytes`, rounded up to a power-of-two
/// number of pages (fcntl(2); 1 MiB stays 1 MiB with 4 KiB pages). Either end will
/// do: the buffer is the pipe's.
///
/// The traps, each an error of its own:
/// - EPERM above /proc/sys/fs/pipe-max-size (1 MiB by default) unless the process
///   has CAP_SYS_RESOURCE: the ceiling an ordinary user meets;
/// - EPERM too when growing while the user's pipes already take
///   pipe-user-pages-soft pages (or the hard limit, if set), for a process with
///   neither CAP_SYS_RESOURCE nor CAP_SYS_ADMIN (pipe(7)); see [`limits`];
/// - EBUSY when shrinking below the bytes the pipe holds now.
///
/// A bigger buffer lets a writer run further ahead of its reader before it sleeps;
/// it does not change PIPE_BUF, the size up to which one write is atomic.
///
/// # Examples
/// ```
/// use pipe_demo::pipe;
/// let (read_end, write_end) = pipe::create()?;
/// // A new pipe: 16 page-sized slots (for a user under pipe-user-pages-soft).
/// let page = pipe::capacity(&read_end)? / 16;
/// // Three pages are rounded up to four: a power of two.
/// assert_eq!(pipe::set_capacity(&write_end, 3 * page)?, 4 * page);
/// assert_eq!(pipe::capacity(&read_end)?, 4 * page);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_capacity(end: impl AsFd, bytes: usize) -> Result<usize> {
    let asked = i32::try_from(bytes).map_err(|_| Error::from(Errno::EINVAL))?;
    Ok(fcntl(end.as_fd(), FcntlArg::F_SETPIPE_SZ(asked))? as usize)
}

/// The system's limits on pipe buffers, from /proc/sys/fs (pipe(7)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `pipe-max-size`: the most bytes F_SETPIPE_SZ gives a process without
    /// CAP_SYS_RESOURCE.
    pub max_size: usize,
    /// `pipe-user-pages-soft`: once one user's pipes take this many pages, its new
    /// pipes get two pages (one before Linux 5.14, as pipe(7) still says) and
    /// F_SETPIPE_SZ may not grow any (0: no limit).
    pub user_pages_soft: u64,
    /// `pipe-user-pages-hard`: once reached, no new pipe and no growing at all
    /// (0, the default: no limit).
    pub user_pages_hard: u64,
}

/// Reads the three limits. The two per-user ones do not bind a process with
/// CAP_SYS_RESOURCE or CAP_SYS_ADMIN (pipe(7)), root's as a rule.
///
/// # Examples
/// ```
/// let limits = pipe_demo::pipe::limits()?;
/// assert!(limits.max_size >= 4096);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn limits() -> Result<Limits> {
    let read = |name: &str| -> Result<u64> {
        let path = format!("/proc/sys/fs/{name}");
        let text = std::fs::read_to_string(&path)?;
        text.trim()
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidData, format!("{path}: {text:?}")))
    };
    Ok(Limits {
        max_size: read("pipe-max-size")? as usize,
        user_pages_soft: read("pipe-user-pages-soft")?,
        user_pages_hard: read("pipe-user-pages-hard")?,
    })
}

/// Turns O_NONBLOCK on or off, leaving the other file status flags (O_APPEND,
/// O_ASYNC...) as they were: F_SETFL replaces them all, so read them first (F_GETFL).
///
/// The flag belongs to the open file description, not to this fd: every dup and
/// every forked copy sees the change. On an end only you hold that is harmless; on
/// an inherited stdin or stdout it changes the flag under the other holders.
///
/// # Examples
/// ```
/// use pipe_demo::pipe;
/// let (_read_end, write_end) = pipe::create()?;
/// pipe::set_nonblocking(&write_end, true)?;
/// let mut filled = 0;
/// while let Some(n) = pipe::try_write(&write_end, &[0u8; 4096])? {
///     filled += n; // never sleeps: EAGAIN (None) once the pipe is full
/// }
/// assert_eq!(filled, pipe::capacity(&write_end)?);
/// pipe::set_nonblocking(&write_end, false)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_nonblocking(end: impl AsFd, on: bool) -> Result<()> {
    let bits = fcntl(end.as_fd(), FcntlArg::F_GETFL)?;
    let mut flags = OFlag::from_bits_retain(bits);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(end.as_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

fn reader_gone() -> Error {
    Error::new(
        ErrorKind::BrokenPipe,
        "the reader is gone: write failed with EPIPE (no process has the read end open)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review row 14: `F_SETFL` replaces every status flag, so turning O_NONBLOCK off
    /// with a bare `F_SETFL(empty)` also cleared O_DIRECT (packet mode) or O_APPEND.
    /// Read first, change one bit, write back.
    #[test]
    fn set_nonblocking_keeps_the_other_status_flags() {
        let (_read_end, write_end) = create().unwrap();
        fcntl(&write_end, FcntlArg::F_SETFL(OFlag::O_DIRECT)).unwrap();
        set_nonblocking(&write_end, true).unwrap();
        set_nonblocking(&write_end, false).unwrap();
        let flags = OFlag::from_bits_retain(fcntl(&write_end, FcntlArg::F_GETFL).unwrap());
        assert!(flags.contains(OFlag::O_DIRECT), "O_DIRECT lost: {flags:?}");
        assert!(!flags.contains(OFlag::O_NONBLOCK));
    }
}
