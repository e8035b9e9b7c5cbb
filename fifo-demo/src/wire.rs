//! Opening, reading and writing the FIFO one system call at a time, so Ctrl+C can stop
//! any of them. std's `read_exact`, `write_all` and `read_line` retry EINTR by
//! themselves, and a Ctrl+C would then only take effect once the peer moved; so these
//! call nix's open/read/write through `signals::unless_interrupted`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{Result, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
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

/// Writes all of `bytes`. A write of at most PIPE_BUF bytes is done by the kernel in one
/// piece, so for those this is exactly one write(2); a longer one may come back short
/// (after a signal) and is continued.
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
