//! Opening a FIFO, reading and writing it: the calls in the order a program makes them,
//! each one system call at a time, so that a "stop?" callback can end any wait.
//!
//! - open: [`open_for_reading`] sleeps until a writer opens (the rendezvous);
//!   [`open_for_writing`] waits for a reader up to a deadline and gives up when the
//!   reader published in `P.pid` has died; [`open_for_reading_now`] never waits.
//! - write: [`write_all`]; a write of at most PIPE_BUF bytes is atomic ([`pipe_buf`]).
//! - read: [`LineReader`] (lines, capped at [`MAX_LINE`]), [`read_full`] (fixed sizes);
//!   [`peer_closed`] and [`wait_readable`] look at the other side with poll(2).
//!
//! Every fd is O_CLOEXEC: a child that inherited a write end would keep the reader from
//! ever seeing EOF. std's `read_exact`, `write_all` and `read_line` retry EINTR by
//! themselves, so Ctrl+C could not stop them; these ask `stop` after every EINTR and
//! return EINTR when it says so. A call sleeping in the kernel only comes back with
//! EINTR if a signal handler installed without SA_RESTART ran (as [`crate::stop::install`]
//! does); a signal that lands just before the call only sets the flag (not shown here:
//! production code closes that window with ppoll(2) or a signalfd).
//!
//! Errors are `anyhow::Error`s with the errno in the chain: [`errno`] gets it back
//! (EINTR: `stop` said stop; ETIMEDOUT: the deadline passed; EPIPE: no reader left).
//! Needs nix with the features "fs", "feature" (fpathconf) and "poll", and
//! [`crate::fifo`] for `P.pid`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;
use nix::unistd::{PathconfVar, fpathconf, pathconf};

use crate::fifo::reader_of;

/// How long a writer waiting for a reader sleeps between two tries of open(2), and the
/// longest a poll(2) here sleeps before asking `stop` again.
pub const RETRY: Duration = Duration::from_millis(10);

/// The errno behind `e`, if a system call's failure is in its chain.
pub fn errno(e: &anyhow::Error) -> Option<Errno> {
    e.downcast_ref::<Errno>().copied()
}

/// Makes `call` again after EINTR, unless `stop` says stop: then EINTR.
fn retrying<T>(
    stop: &dyn Fn() -> bool,
    mut call: impl FnMut() -> nix::Result<T>,
) -> nix::Result<T> {
    loop {
        if stop() {
            return Err(Errno::EINTR);
        }
        match call() {
            Err(Errno::EINTR) => continue,
            done => return done,
        }
    }
}

fn open(path: &Path, flags: OFlag, stop: &dyn Fn() -> bool) -> nix::Result<OwnedFd> {
    retrying(stop, || {
        nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
    })
}

/// Opens the FIFO for reading, sleeping in open(2) until a writer opens it: that is
/// where the two sides meet. Any writer will do (`echo hi > P` too), so no writer's
/// death can leave this waiting in vain. `&|| false` for a plain blocking open.
pub fn open_for_reading(path: &Path, stop: &dyn Fn() -> bool) -> Result<OwnedFd> {
    open(path, OFlag::O_RDONLY, stop)
        .with_context(|| format!("open {} for reading", path.display()))
}

/// Opens the FIFO for reading without waiting: with O_NONBLOCK that open succeeds at
/// once, writer or not (fifo(7)); O_NONBLOCK is then cleared, so reads block. Until a
/// writer has opened, read(2) returns 0 as at EOF: wait with [`wait_readable`] first.
pub fn open_for_reading_now(path: &Path) -> Result<OwnedFd> {
    let fd = open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, &|| false)
        .with_context(|| format!("open {} for reading", path.display()))?;
    clear_nonblock(&fd)?;
    Ok(fd)
}

/// One try at opening the FIFO for writing: `None` while no process has it open for
/// reading (ENXIO: with O_NONBLOCK, open(2) fails instead of sleeping). No O_CREAT:
/// where P is missing, that would make a regular file and the lines would land in it.
pub fn try_open_for_writing(path: &Path) -> Result<Option<OwnedFd>> {
    match open(path, OFlag::O_WRONLY | OFlag::O_NONBLOCK, &|| false) {
        Ok(fd) => {
            clear_nonblock(&fd)?; // writes block while the pipe is full
            Ok(Some(fd))
        }
        Err(Errno::ENXIO) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("open {} for writing", path.display())),
    }
}

/// Opens the FIFO for writing once it exists and a reader has it open, trying every
/// [`RETRY`]: the writer may start first (ENOENT: its creator is still coming). A
/// blocking open(2) would sleep until a reader came: forever, if the reader was killed
/// after making P (P stays, nobody will open it). So between tries this asks the kernel
/// whether the reader published in `P.pid` still runs ([`crate::fifo::ReaderGone`] if
/// not; with no `P.pid` it just waits), then `stop` (EINTR), then the clock: ETIMEDOUT
/// after `deadline` (`Duration::MAX`: no deadline). O_NONBLOCK is cleared once open.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use fifo_demo::{fifo::Fifo, io};
/// use nix::errno::Errno;
/// let fifo = Fifo::create_private("doc-open").unwrap();
/// // Nobody reads it, or nobody made it: the wait ends at the deadline, with ETIMEDOUT.
/// let short = Duration::from_millis(30);
/// let e = io::open_for_writing(fifo.path(), short, &|| false).unwrap_err();
/// assert_eq!(io::errno(&e), Some(Errno::ETIMEDOUT));
/// let missing = fifo.path().with_file_name("nobody-made-it");
/// let e = io::open_for_writing(&missing, short, &|| false).unwrap_err();
/// assert_eq!(io::errno(&e), Some(Errno::ETIMEDOUT));
/// // With a reader (here ourselves, not waiting), the open succeeds.
/// let _reader = io::open_for_reading_now(fifo.path()).unwrap();
/// let writer = io::open_for_writing(fifo.path(), Duration::from_secs(5), &|| false).unwrap();
/// io::write_all(&writer, b"hi\n", &|| false).unwrap();
/// ```
pub fn open_for_writing(
    path: &Path,
    deadline: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<OwnedFd> {
    let until = Instant::now().checked_add(deadline);
    let shown = path.display();
    loop {
        let missing = match try_open_for_writing(path) {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => false,                                  // no reader yet
            Err(e) if errno(&e) == Some(Errno::ENOENT) => true, // no FIFO yet
            Err(e) => return Err(e),
        };
        reader_of(path)?; // Err(ReaderGone) once the reader is dead
        if stop() {
            return Err(Errno::EINTR).with_context(|| format!("open {shown} for writing: stopped"));
        }
        if until.is_some_and(|t| Instant::now() >= t) {
            let what = if missing {
                "nobody made it"
            } else {
                "no reader opened it"
            };
            return Err(Errno::ETIMEDOUT)
                .with_context(|| format!("open {shown} for writing: {what} within {deadline:?}"));
        }
        std::thread::sleep(RETRY);
    }
}

fn clear_nonblock(fd: &OwnedFd) -> Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).context("fcntl F_GETFL")?);
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).context("fcntl F_SETFL")?;
    Ok(())
}

/// Whether the other ends of a FIFO we hold are all closed, asked without waiting:
/// poll(2) reports POLLHUP on a read end once every writer has closed (on Linux, only
/// once a writer had opened it), POLLERR on a write end once every reader has closed.
/// A process that dies, of SIGKILL too, closes its ends like one that closes them.
pub fn peer_closed(fd: impl AsFd) -> Result<bool> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    retrying(&|| false, || poll(&mut fds, PollTimeout::ZERO)).context("poll")?;
    let gone = PollFlags::POLLHUP | PollFlags::POLLERR;
    Ok(fds[0].revents().is_some_and(|r| r.intersects(gone)))
}

/// Waits until `from` (a read end from [`open_for_reading_now`]) has data, or a writer
/// opened and closed it again, while watching `to`, a write end to the same peer:
/// EPIPE once nobody reads `to` any more (the peer is gone). On Linux a read end opened
/// with O_NONBLOCK reports no POLLHUP before a writer has been seen (fs/pipe.c), so
/// "nobody has opened it yet" is not taken for EOF. `stop` is asked every [`RETRY`].
pub fn wait_readable(from: impl AsFd, to: impl AsFd, stop: &dyn Fn() -> bool) -> Result<()> {
    let slice = PollTimeout::try_from(RETRY).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [
            PollFd::new(from.as_fd(), PollFlags::POLLIN),
            PollFd::new(to.as_fd(), PollFlags::empty()),
        ];
        retrying(stop, || poll(&mut fds, slice)).context("poll")?;
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
        {
            return Err(Errno::EPIPE).context("nobody has the FIFO open for reading any more");
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(());
        }
    }
}

/// PIPE_BUF for an open FIFO: a write(2) of at most this many bytes (4096 on Linux;
/// POSIX promises at least 512) goes into the pipe in one piece, never interleaved with
/// another writer's bytes, so a line that short is one whole message to the reader. A
/// longer write may be split anywhere and mixed with others' (pipe(7)).
pub fn pipe_buf(fd: impl AsFd) -> Result<usize> {
    as_size(fpathconf(fd, PathconfVar::PIPE_BUF).context("fpathconf PIPE_BUF")?)
}

/// PIPE_BUF for the FIFO at `path`, before anyone opens it.
pub fn pipe_buf_at(path: &Path) -> Result<usize> {
    as_size(pathconf(path, PathconfVar::PIPE_BUF).context("pathconf PIPE_BUF")?)
}

/// The pipe's capacity (F_GETPIPE_SZ), 65536 bytes by default, counted in page-sized
/// slots (16): a write's tail (its size modulo the page size) joins the last slot only
/// if it fits there, so 16 writes of 4001 bytes fill it (4 KiB pages assumed).
pub fn pipe_capacity(fd: impl AsFd) -> Result<usize> {
    let size = fcntl(fd, FcntlArg::F_GETPIPE_SZ).context("fcntl F_GETPIPE_SZ")?;
    usize::try_from(size).context("F_GETPIPE_SZ: not a size")
}

fn as_size(limit: Option<std::ffi::c_long>) -> Result<usize> {
    let limit = limit.context("PIPE_BUF: the kernel reports no limit")?;
    usize::try_from(limit).context("PIPE_BUF: not a size")
}

/// Writes all of `bytes`. Up to PIPE_BUF bytes ([`pipe_buf`]) this is one write(2),
/// which the kernel does whole (one that fails with EINTR wrote nothing, and is made
/// again): write a line and its `\n` in one call and several writers' lines never mix.
/// A longer one may come back short (after a signal) and is continued, interleaved.
/// Nobody reading any more gives EPIPE: Rust programs start with SIGPIPE ignored, so
/// the kernel's SIGPIPE does not kill us (it would a C program).
pub fn write_all(fd: impl AsFd, mut bytes: &[u8], stop: &dyn Fn() -> bool) -> Result<()> {
    while !bytes.is_empty() {
        let n = retrying(stop, || nix::unistd::write(fd.as_fd(), bytes)).context("write")?;
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Reads until `buf` is full or every writer has closed (EOF), and returns how many
/// bytes came: fewer than `buf.len()` means EOF came first. A pipe hands out whatever
/// it holds, so one message can take several read(2) calls.
pub fn read_full(fd: impl AsFd, buf: &mut [u8], stop: &dyn Fn() -> bool) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match retrying(stop, || nix::unistd::read(fd.as_fd(), &mut buf[got..])).context("read")? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// The longest line a [`LineReader`] accepts, 1 MiB: a writer nobody here wrote
/// (`cat /dev/zero > P`) must not make the reader allocate without bound.
pub const MAX_LINE: usize = 1 << 20;

/// Splits a byte stream into lines ending in `\n`; the end is EOF, when every writer
/// has closed. Its buffer never grows past [`MAX_LINE`] + 2 bytes, whatever arrives.
///
/// # Examples
/// ```
/// use fifo_demo::{fifo::Fifo, io::{self, LineReader}};
/// let fifo = Fifo::create_private("doc-lines").unwrap();
/// let reader = io::open_for_reading_now(fifo.path()).unwrap();
/// let writer = io::try_open_for_writing(fifo.path()).unwrap().unwrap();
/// io::write_all(&writer, b"one\ntwo", &|| false).unwrap();
/// drop(writer); // the last writer closes: EOF after what is in the pipe
/// let mut lines = LineReader::new(reader);
/// assert_eq!(lines.next_line(&|| false).unwrap(), Some(&b"one"[..]));
/// assert_eq!(lines.next_line(&|| false).unwrap(), Some(&b"two"[..])); // no `\n`: still a line
/// assert_eq!(lines.next_line(&|| false).unwrap(), None);
/// ```
pub struct LineReader<F> {
    fd: F,
    buf: Vec<u8>,
    start: usize, // the next line begins here
    end: usize,   // bytes read so far end here
}

impl<F: AsFd> LineReader<F> {
    /// Reads `fd` 64 KiB at a time.
    pub fn new(fd: F) -> Self {
        Self::with_capacity(fd, 64 * 1024)
    }

    /// Each read(2) asks for at most `capacity` bytes (more only for a longer line).
    pub fn with_capacity(fd: F, capacity: usize) -> Self {
        LineReader {
            fd,
            buf: vec![0; capacity.max(1)],
            start: 0,
            end: 0,
        }
    }

    /// The next line without its `\n`, or `None` at EOF. A last line with no `\n`
    /// (`printf hi > P`) still counts. A line longer than [`MAX_LINE`] is an error.
    pub fn next_line(&mut self, stop: &dyn Fn() -> bool) -> Result<Option<&[u8]>> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = self.start..self.start + i;
                self.start += i + 1;
                return Ok(Some(&self.buf[line]));
            }
            // No whole line yet: make room (move the partial line to the front, or grow
            // for a line longer than the buffer), then read more.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end > MAX_LINE {
                bail!("line too long: more than {MAX_LINE} bytes (1 MiB, the cap) with no newline");
            }
            if self.end == self.buf.len() {
                self.buf.resize((self.buf.len() * 2).min(MAX_LINE + 2), 0);
            }
            let free = &mut self.buf[self.end..];
            match retrying(stop, || nix::unistd::read(self.fd.as_fd(), free)).context("read")? {
                0 if self.end == 0 => return Ok(None),
                0 => {
                    let line = 0..self.end;
                    self.start = self.end;
                    return Ok(Some(&self.buf[line]));
                }
                n => self.end += n,
            }
        }
    }
}
