//! Whole messages over a byte stream, one system call at a time.
//!
//! A pipe is a stream of bytes with no message boundaries: a `read` returns whatever
//! is there, up to the buffer's length, and a `write` larger than the pipe's free
//! space may be split. These two loops turn that into "send these bytes" and "give
//! me exactly this many", and turn the kernel's errors into sentences.

use anyhow::{Result, bail};
use nix::errno::Errno;
use nix::unistd::{read, write};
use std::os::fd::AsFd;

/// Writes all of `buf`. A reader that is gone is reported as such: the kernel
/// answers EPIPE, and since Rust ignores SIGPIPE (a C program would have been
/// killed silently by it) we get the chance to say so.
pub fn write_all(fd: impl AsFd, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match write(fd.as_fd(), buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE) => bail!(
                "the reader is gone: write failed with EPIPE (no process has the read end open)"
            ),
            Err(e) => bail!("write: {e}"),
        }
    }
    Ok(())
}

/// Fills all of `buf`. `Ok(false)` if the stream ended before the first byte (a
/// clean end between messages); an error if it ended in the middle of one.
pub fn read_exact(fd: impl AsFd, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match read(fd.as_fd(), &mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => bail!(
                "the writer closed the pipe {filled} bytes into a {}-byte message",
                buf.len()
            ),
            Ok(n) => filled += n,
            Err(Errno::EINTR) => continue,
            Err(e) => bail!("read: {e}"),
        }
    }
    Ok(true)
}
