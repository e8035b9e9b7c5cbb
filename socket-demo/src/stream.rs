//! Byte streams (Unix stream sockets, TCP, a socketpair): messages, bulk and ping.
//!
//! A stream socket is a pipe that goes both ways: bytes come out in the order they went in,
//! but with no message boundaries. One read(2) returns whatever has arrived, up to the
//! buffer's length: two writes can come out of one read, one write out of two reads. So a
//! text message is a line ending in '\n' (DESIGN §3), and a bulk message is exactly `size`
//! bytes, read with as many read(2) calls as it takes.
//!
//! Notes (管道): 所谓的管道，就是内核里面的一串缓存 (a pipe is a buffer in the kernel): a
//! stream socket is two such buffers, one per direction.
//! Run: `cargo run -p socket-demo` (unix) or `-- tcp`. Watch for: "3 messages came out of
//! that one read(2)".
//! In production: frame the stream yourself, with lines or a length prefix (tokio-util's
//! `LinesCodec`, `LengthDelimitedCodec`); never assume one read is one message.
//!
//! Every call goes through `signals::block`, so Ctrl+C stops it and a dead default-run
//! writer is noticed; std's `read_exact`/`write_all` would retry EINTR and not stop.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::unistd::{read, write};
use socket_demo::server::{LineBuf, MAX_LINE};

use crate::signals::{block, wait_readable, wait_readable_watching};
use crate::workload::{Summary, check, pattern, stamp};

const READER: &str = "reader";
const WRITER: &str = "writer";

fn read_once(fd: BorrowedFd, buf: &mut [u8]) -> Result<usize> {
    match block(|| read(fd, buf).map_err(io::Error::from))? {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => bail!(
            "read: the connection was reset (ECONNRESET): the other side closed it with \
             data unread, or died"
        ),
        Err(e) => Err(e).context("read"),
    }
}

/// Writes all of `buf`. A peer that is gone is reported as such: the kernel answers EPIPE
/// (Rust ignores SIGPIPE, which would otherwise have killed us silently) or ECONNRESET.
pub fn write_all(fd: impl AsFd, mut buf: &[u8], peer: &str) -> Result<()> {
    while !buf.is_empty() {
        match block(|| write(fd.as_fd(), buf).map_err(io::Error::from))? {
            Ok(n) => buf = &buf[n..],
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => bail!(
                "the {peer} is gone: write failed with {e} (nobody reads this connection any more)"
            ),
            Err(e) => return Err(e).context("write"),
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends. Returns how many bytes came: fewer than
/// `buf.len()` means EOF came first.
pub fn read_full(fd: impl AsFd, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match read_once(fd.as_fd(), &mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Splits a byte stream into lines (DESIGN §3: a message is a line ending in '\n', the end
/// is EOF), capped at 1 MiB (`socket_demo::server::LineBuf`: input from programs nobody
/// here wrote, nc, socat, `--file /dev/zero`, must not make memory grow without limit),
/// keeping what each read(2) returned so the reader can show it.
pub struct LineReader<F> {
    fd: F,
    /// A terminal or pipe on standard input has no SO_RCVTIMEO: poll it first.
    poll_first: bool,
    /// While waiting on standard input, also watch this connection for its peer's close.
    peer: Option<RawFd>,
    lines: LineBuf,
}

impl<F: AsFd> LineReader<F> {
    pub fn new(fd: F) -> Self {
        LineReader {
            fd,
            poll_first: false,
            peer: None,
            lines: LineBuf::new(MAX_LINE),
        }
    }

    /// One read(2), appended to what is buffered. Returns its size: 0 is EOF.
    pub fn read_more(&mut self) -> Result<usize> {
        match (self.poll_first, self.peer) {
            (true, Some(peer)) => {
                // SAFETY: `peer` is the connection `each_message_watching` borrowed for
                // the whole life of this LineReader, so it is open.
                let peer = unsafe { BorrowedFd::borrow_raw(peer) };
                wait_readable_watching(self.fd.as_fd(), peer)?;
            }
            (true, None) => wait_readable(self.fd.as_fd())?,
            _ => {}
        }
        let fd = self.fd.as_fd();
        let mut failed = None;
        // The cap is checked before the read: a full buffer is an error, not a wait.
        let n = self.lines.fill(|buf| match read_once(fd, buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                failed = Some(e);
                Err(io::ErrorKind::Other.into())
            }
        });
        match (n, failed) {
            (_, Some(e)) => Err(e),
            (Ok(n), None) => Ok(n),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// The bytes the last read(2) returned.
    pub fn last_read(&self) -> &[u8] {
        self.lines.last_read()
    }

    /// The next whole line already buffered, without its '\n'.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        self.lines.next_line()
    }

    /// After EOF: a last line with no '\n' (`printf hi | nc ...`), if any.
    pub fn rest(&mut self) -> Option<&[u8]> {
        self.lines.rest()
    }

    /// The next line, reading as much as it takes; `None` at EOF.
    pub fn next(&mut self) -> Result<Option<&[u8]>> {
        loop {
            if self.lines.has_line() {
                return Ok(self.lines.next_line());
            }
            if self.read_more()? == 0 {
                return Ok(self.lines.rest());
            }
        }
    }
}

/// The writer's messages: the MESSAGE arguments, or else each line of standard input.
pub fn each_message(messages: &[String], send: impl FnMut(&str) -> Result<()>) -> Result<()> {
    each_message_watching(messages, None, send)
}

/// `each_message`, and while it waits for standard input, an error as soon as `peer`'s
/// other end closes.
pub fn each_message_watching(
    messages: &[String],
    peer: Option<BorrowedFd>,
    mut send: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    if !messages.is_empty() {
        return messages.iter().try_for_each(|m| send(m));
    }
    let mut stdin = LineReader::new(io::stdin());
    stdin.poll_first = true;
    stdin.peer = peer.map(|p| p.as_raw_fd());
    while let Some(line) = stdin.next()? {
        send(&String::from_utf8_lossy(line))?;
    }
    Ok(())
}

/// A byte string as the narration echoes it, on both sides: quoted in full up to `SHOWN`
/// characters, a longer one as its first `SHOWN`, quoted, then `…` after the quote (as
/// fifo-demo and msgq-demo do). A peer nobody here wrote may send a megabyte line: the
/// byte count printed beside it is always the whole message's.
pub fn shown(bytes: &[u8]) -> String {
    const SHOWN: usize = 40;
    // Only what can be shown is decoded: a 1 MiB line is not copied to be cut.
    let head = &bytes[..bytes.len().min(SHOWN * 4)];
    let text = String::from_utf8_lossy(head);
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None if head.len() < bytes.len() => format!("{text:?}…"),
        None => format!("{text:?}"),
    }
}

/// Writer, text: one write per message, each a line.
pub fn send_lines(fd: impl AsFd, messages: &[String]) -> Result<Summary> {
    let mut summary = Summary::start();
    let mut line = Vec::new();
    each_message_watching(messages, Some(fd.as_fd()), |text| {
        line.clear();
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n'); // on a byte stream, the newline is what ends a message
        write_all(fd.as_fd(), &line, "reader")
            .with_context(|| format!("sending {}", shown(text.as_bytes())))?;
        say!(
            WRITER,
            "sent {} ({} bytes), one write(2)",
            shown(text.as_bytes()),
            text.len()
        );
        summary.count(text.len());
        Ok(())
    })?;
    Ok(summary)
}

/// Reader, text: narrates each read(2), then the messages it held, until EOF.
pub fn receive_lines(fd: impl AsFd) -> Result<Summary> {
    let mut lines = LineReader::new(fd);
    let mut summary = Summary::start();
    while lines.read_more()? > 0 {
        say!(
            READER,
            "read(2) returned {} bytes: {}",
            lines.last_read().len(),
            shown(lines.last_read())
        );
        let mut in_this_read = 0;
        while let Some(line) = lines.next_line() {
            received(line, &mut summary);
            in_this_read += 1;
        }
        if in_this_read > 1 {
            say!(
                READER,
                "{in_this_read} messages came out of that one read(2): a stream keeps no \
                 message boundaries, only the '\\n' between them tells them apart"
            );
        }
    }
    if let Some(last) = lines.rest() {
        received(last, &mut summary);
    }
    say!(
        READER,
        "EOF: the writer closed its end of the connection, or died: the kernel closes a dead \
         process's sockets just as close(2) would, and lines end with nothing but EOF, so I \
         cannot tell which (the bulk and ping workloads count, and can)"
    );
    Ok(summary)
}

fn received(line: &[u8], summary: &mut Summary) {
    say!(READER, "received {} ({} bytes)", shown(line), line.len());
    summary.count(line.len());
}

/// Writer, bulk: one buffer, re-stamped per message. The caller closes the socket after,
/// which is the reader's EOF.
pub fn send_bulk(fd: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = pattern(size);
    let mut summary = Summary::start();
    for k in 0..count {
        stamp(&mut message, k);
        write_all(fd.as_fd(), &message, "reader")
            .with_context(|| format!("sending message {k} of {count}"))?;
        summary.count(size);
    }
    Ok(summary.with_throughput())
}

/// Reader, bulk: exactly `size` bytes per message into one buffer, checked; then EOF.
pub fn check_bulk(fd: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let expected = pattern(size);
    let mut message = vec![0u8; size];
    let mut summary = Summary::start();
    for k in 0..count {
        let n = read_full(fd.as_fd(), &mut message)?;
        if n < size {
            bail!(
                "the writer closed the connection after {k} of {count} messages \
                 (and {n} bytes of the next one): is it gone?"
            );
        }
        check(&message, &expected, k)?;
        summary.count(size);
    }
    if read_full(fd.as_fd(), &mut message[..1])? > 0 {
        bail!("the writer sent more than {count} messages: extra bytes after the last one");
    }
    Ok(summary.with_throughput())
}

/// Writer, ping: send `size` bytes, wait for them to come back, time it; `count` times.
/// One socket carries both directions.
pub fn ping(fd: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = pattern(size);
    let mut reply = vec![0u8; size];
    let mut rtts = Vec::with_capacity(count as usize); // no allocation while timing
    let mut summary = Summary::start();
    for k in 0..count {
        stamp(&mut message, k);
        let sent = Instant::now();
        write_all(fd.as_fd(), &message, "reader").with_context(|| format!("sending ping {k}"))?;
        if read_full(fd.as_fd(), &mut reply)? < size {
            bail!("the reader closed the connection after {k} of {count} round trips");
        }
        rtts.push(sent.elapsed());
        if reply != message {
            bail!("round trip {k} of {count}: the answer differs from what was sent");
        }
        summary.count(size);
    }
    Ok(summary.with_round_trips(&mut rtts))
}

/// Reader, ping: send each message straight back, until EOF.
pub fn echo(fd: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = vec![0u8; size];
    let mut summary = Summary::start();
    loop {
        let n = read_full(fd.as_fd(), &mut message)?;
        if n == 0 {
            break;
        }
        if n < size {
            bail!(
                "the writer closed the connection in the middle of ping {}",
                summary.messages
            );
        }
        write_all(fd.as_fd(), &message, "writer").context("answering a ping")?;
        summary.count(size);
    }
    if summary.messages != count {
        bail!(
            "the writer closed the connection after {} of {count} round trips: is it gone?",
            summary.messages
        );
    }
    Ok(summary)
}
