//! Opening, reading and writing the FIFO one system call at a time, so Ctrl+C can stop
//! any of them. std's `read_exact`, `write_all` and `read_line` retry EINTR by
//! themselves, and a Ctrl+C would then only take effect once the peer moved; so these
//! call nix's open/read/write through `signals::unless_interrupted`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

use crate::signals::unless_interrupted;

/// open(2) that Ctrl+C can stop. On a FIFO, a blocking open for reading sleeps until a
/// writer opens, and the other way round: that is where the two sides meet. O_CLOEXEC so
/// the processes the default run starts do not inherit it (a stray write end would keep
/// the reader from ever seeing EOF).
pub fn open(path: &Path, flags: OFlag) -> Result<nix::Result<OwnedFd>> {
    let flags = flags | OFlag::O_CLOEXEC;
    Ok(unless_interrupted(|| {
        nix::fcntl::open(path, flags, Mode::empty())
    })?)
}

/// How long a writer waiting for a reader sleeps between two tries of open(2).
pub const RETRY: Duration = Duration::from_millis(10);

/// open(2) for writing that does not sleep in the kernel: with O_NONBLOCK, opening a
/// FIFO for writing fails with ENXIO while no process has it open for reading (open(2),
/// fifo(7)), instead of blocking. So we try every RETRY, and between tries
/// `reader_gone` looks at the reader (an `Err` from it ends the wait): a blocking open
/// would sleep forever once the reader has died. `waiting` runs once, at the first
/// ENXIO. Once open, O_NONBLOCK is cleared, so writes block while the pipe is full.
pub fn open_for_writing(
    path: &Path,
    mut waiting: impl FnMut(),
    mut reader_gone: impl FnMut() -> Result<()>,
) -> Result<nix::Result<OwnedFd>> {
    let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK;
    let mut first = true;
    loop {
        match open(path, flags)? {
            Err(Errno::ENXIO) => {
                if std::mem::take(&mut first) {
                    waiting();
                }
                reader_gone()?;
                std::thread::sleep(RETRY); // a signal's flag is seen by the next `open`
            }
            Ok(fd) => {
                clear_nonblock(&fd)?;
                return Ok(Ok(fd));
            }
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// open(2) for reading that never blocks: with O_NONBLOCK a FIFO's open for reading
/// succeeds at once, writer or not (fifo(7)). O_NONBLOCK is then cleared. Until a
/// writer has opened, read(2) returns 0 as at EOF: see `wait_readable`.
pub fn open_for_reading_now(path: &Path) -> Result<nix::Result<OwnedFd>> {
    match open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)? {
        Ok(fd) => {
            clear_nonblock(&fd)?;
            Ok(Ok(fd))
        }
        Err(e) => Ok(Err(e)),
    }
}

fn clear_nonblock(fd: &OwnedFd) -> Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).context("fcntl F_GETFL")?);
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).context("fcntl F_SETFL")?;
    Ok(())
}

/// Whether the other ends of a FIFO we hold are gone, asked without waiting: poll(2)
/// reports POLLHUP on a read end once every writer has closed (on Linux, only once a
/// writer had opened it), and POLLERR on a write end once every reader has closed.
/// A process that dies, of SIGKILL too, closes its ends like one that closes them.
pub fn peer_closed(fd: impl AsFd) -> Result<bool> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    poll(&mut fds, PollTimeout::ZERO).context("poll")?;
    let gone = PollFlags::POLLHUP | PollFlags::POLLERR;
    Ok(fds[0].revents().is_some_and(|r| r.intersects(gone)))
}

/// Waits until `from` (a read end opened with `open_for_reading_now`) has data, or a
/// writer opened it and closed it again, or the readers of `to` are gone. On Linux a
/// read end opened with O_NONBLOCK reports no POLLHUP before a writer has been seen
/// (fs/pipe.c), so this does not mistake "nobody has opened it yet" for EOF. Err if `to`'s readers are gone.
pub fn wait_readable(from: impl AsFd, to: impl AsFd, peer: &str) -> Result<()> {
    loop {
        let mut fds = [
            PollFd::new(from.as_fd(), PollFlags::POLLIN),
            PollFd::new(to.as_fd(), PollFlags::empty()),
        ];
        // poll(2) is never restarted after a signal handler (signal(7)): Ctrl+C gets EINTR.
        unless_interrupted(|| poll(&mut fds, PollTimeout::NONE))?.context("poll")?;
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
        {
            bail!("the {peer} is gone: nobody has the FIFO open for reading any more");
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(());
        }
    }
}

/// Writes all of `bytes`. A write of at most PIPE_BUF bytes is done by the kernel in one
/// piece, so for those one write(2) does it all (one that fails with EINTR wrote
/// nothing, and is repeated); a longer one may come back short (after a signal) and is
/// continued.
///
/// If nobody has the FIFO open for reading any more, the kernel sends SIGPIPE. Rust
/// programs ignore SIGPIPE, so instead of dying we get the error EPIPE, and say who left.
pub fn write_all(fd: impl AsFd, mut bytes: &[u8], peer: &str) -> Result<()> {
    while !bytes.is_empty() {
        match unless_interrupted(|| nix::unistd::write(fd.as_fd(), bytes))? {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EPIPE) => {
                bail!("the {peer} is gone (EPIPE): nobody has the FIFO open for reading any more")
            }
            Err(e) => bail!("write: {e}"),
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the writers are all gone (EOF). Returns how many bytes
/// it got: less than `buf.len()` means EOF came first. A pipe hands out whatever it
/// holds, so one message can take several read(2) calls.
pub fn read_full(fd: impl AsFd, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match unless_interrupted(|| nix::unistd::read(fd.as_fd(), &mut buf[got..]))? {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => bail!("read: {e}"),
        }
    }
    Ok(got)
}

/// The longest line a LineReader accepts: a writer nobody here wrote (`cat /dev/zero > P`)
/// must not make us allocate without bound.
pub const MAX_LINE: usize = 1 << 20;

/// Splits a byte stream into lines, the wire format of text messages (DESIGN §3): each
/// message is a line ending in `\n`, and the end is EOF.
pub struct LineReader<F> {
    fd: F,
    buf: Vec<u8>,
    start: usize, // the next line begins here
    end: usize,   // bytes read so far end here
}

impl<F: AsFd> LineReader<F> {
    pub fn new(fd: F) -> Self {
        Self::with_capacity(fd, 64 * 1024)
    }

    /// Each read(2) asks for at most `capacity` bytes (more only for a longer line).
    pub fn with_capacity(fd: F, capacity: usize) -> Self {
        LineReader {
            fd,
            buf: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// The next line without its `\n`, or `None` at EOF. A last line with no `\n`
    /// (`printf hi > P`) still counts.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>> {
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
            match unless_interrupted(|| nix::unistd::read(self.fd.as_fd(), free))? {
                Ok(0) if self.end == 0 => return Ok(None),
                Ok(0) => {
                    let line = 0..self.end;
                    self.start = self.end;
                    return Ok(Some(&self.buf[line]));
                }
                Ok(n) => self.end += n,
                Err(e) => bail!("read: {e}"),
            }
        }
    }
}
