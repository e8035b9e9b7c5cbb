//! Sequenced packets (AF_UNIX, SOCK_SEQPACKET), narrated: a connection that keeps message
//! boundaries. The calls are `socket_demo::seqpacket`'s.
//!
//! A stream hands out whatever has arrived (three writes can come out of one read(2)); a
//! datagram socket keeps each message whole but has no connection, so nothing says "the
//! writer is gone" (the demo ends with a zero-length datagram and watches pids). A
//! seqpacket socket has both: listen/accept/connect and EOF as on a stream, SO_PEERCRED as
//! on a Unix stream, and one recv(2) per message, whole, as on a datagram socket. Here the
//! wire format is one message per send(2), no newline, and the end is EOF.
//!
//! What unix(7) and recv(2) say about the edges, and what this shows:
//! - a message longer than the buffer is cut, the rest of it dropped, and recvmsg(2)
//!   reports MSG_TRUNC; asked for with MSG_TRUNC (Linux 3.4 and later), recv(2) returns
//!   the message's real length. The reader's buffer here is as large as a message can be
//!   (the send buffer, less 32 bytes), so nothing it reads is cut; one a peer with a
//!   larger SO_SNDBUF sent would be refused, never handed out as whole. The library's
//!   doctest (`seqpacket::listen`) shows a cut message.
//! - MSG_EOR: on a Unix seqpacket socket Linux accepts it on send(2) and changes nothing,
//!   since every send(2) already ends a record; recvmsg(2) does not set it (as seen on
//!   Linux 6.18; not shown here).
//! - a zero-length message reads as 0, like EOF: the writer never sends one.
//!
//! Notes (消息队列): 消息队列是保存在内核中的消息链表，在发送数据时，会分成一个一个独立的数据块
//! (a message queue is a list of messages kept in the kernel; what is sent is split into
//! separate blocks): a seqpacket connection keeps such separate blocks too, one queue per
//! direction between two connected processes, and adds what a queue lacks: EOF when the
//! other one is gone.
//! Run: `socket-demo seqpacket`; two terminals: `socket-demo reader seqpacket --path @demo`,
//! then `socket-demo writer seqpacket --path @demo one two three`.
//! Watch for: "recv(2) returned one message, whole", three times, where `unix` prints "3
//! messages came out of that one read(2)"; then "EOF".
//! In production: the `uds` crate's `UnixSeqpacketConn`, or `tokio-seqpacket` for async
//! code (std has no SOCK_SEQPACKET type).

use std::io;
use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};
use socket_demo::seqpacket::{self, Packet};

use crate::signals::block;
use crate::stream::{each_message_watching, shown};
use crate::workload::{Summary, check, pattern, stamp};

const READER: &str = "reader";
const WRITER: &str = "writer";

/// One send(2) of one whole message; a peer that is gone is said in words.
fn send_one(fd: impl AsFd, message: &[u8], peer: &str) -> Result<()> {
    match block(|| seqpacket::send(&fd, message))? {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => bail!(
            "the {peer} is gone: send failed with {e} (nobody reads this connection any more)"
        ),
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => bail!(
            "send: a message of {} bytes is too big for one seqpacket message (EMSGSIZE): it \
             must fit the send buffer",
            message.len()
        ),
        Err(e) => Err(e).context("send"),
    }
}

/// One recv(2): one message, refused if it was cut (MSG_TRUNC).
fn recv_one(fd: impl AsFd, buf: &mut [u8]) -> Result<usize> {
    let got: Packet = match block(|| seqpacket::recv(&fd, buf))? {
        Ok(got) => got,
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => bail!(
            "recv: the connection was reset (ECONNRESET): the other side closed it with \
             messages unread, or died"
        ),
        Err(e) => return Err(e).context("recv"),
    };
    if got.truncated {
        bail!(
            "a message of {} bytes, longer than my {}-byte buffer: the kernel cut it to fit \
             and dropped the rest (MSG_TRUNC)",
            got.whole,
            buf.len()
        );
    }
    Ok(got.len)
}

/// The largest message this side will take: the send buffer's default, less 32 bytes.
fn max_message() -> usize {
    crate::args::max_unix_datagram()
}

/// Writer, text: one send(2) per message, then close: the reader's EOF.
pub fn send_messages(fd: impl AsFd, messages: &[String]) -> Result<Summary> {
    let mut summary = Summary::start();
    each_message_watching(messages, Some(fd.as_fd()), |text| {
        if text.is_empty() {
            say!(
                WRITER,
                "skipped an empty line: a zero-length message would read as EOF"
            );
            return Ok(());
        }
        send_one(&fd, text.as_bytes(), "reader")
            .with_context(|| format!("sending {}", shown(text.as_bytes())))?;
        say!(
            WRITER,
            "sent {} ({} bytes), one send(2), one message",
            shown(text.as_bytes()),
            text.len()
        );
        summary.count(text.len());
        Ok(())
    })?;
    Ok(summary)
}

/// Reader, text: one recv(2) per message, each whole, until EOF.
pub fn receive_messages(fd: impl AsFd) -> Result<Summary> {
    let mut buf = vec![0u8; max_message()];
    let mut summary = Summary::start();
    loop {
        let n = recv_one(&fd, &mut buf)?;
        if n == 0 {
            break;
        }
        say!(
            READER,
            "recv(2) returned one message, whole: {n} bytes, though my buffer holds {}",
            buf.len()
        );
        say!(READER, "received {} ({n} bytes)", shown(&buf[..n]));
        summary.count(n);
    }
    let got = summary.messages;
    say!(
        READER,
        "EOF: recv(2) returned 0: the writer closed its end of the connection, or died (a \
         datagram socket never says either)"
    );
    if got > 1 {
        say!(
            READER,
            "{got} messages, {got} recv(2) calls: each returned exactly one message, whole, \
             where a stream socket hands out everything that has arrived at once"
        );
    }
    Ok(summary)
}

/// Writer, bulk: `count` messages of `size` bytes, one send(2) each; the caller closes.
pub fn send_bulk(fd: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = pattern(size);
    let mut summary = Summary::start();
    for k in 0..count {
        stamp(&mut message, k);
        send_one(&fd, &message, "reader")
            .with_context(|| format!("sending message {k} of {count}"))?;
        summary.count(size);
    }
    Ok(summary.with_throughput())
}

/// Reader, bulk: each recv(2) must be one whole message of `size` bytes, in order; then
/// EOF.
pub fn check_bulk(fd: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let expected = pattern(size);
    // One byte more than a message: a longer one shows as such, not as a cut one.
    let mut message = vec![0u8; size + 1];
    let mut summary = Summary::start();
    for k in 0..count {
        let n = recv_one(&fd, &mut message)?;
        if n == 0 {
            bail!("the writer closed the connection after {k} of {count} messages: is it gone?");
        }
        if n != size {
            bail!("message {k} is {n} bytes, not {size}: a message boundary moved");
        }
        check(&message[..size], &expected, k)?;
        summary.count(size);
    }
    if recv_one(&fd, &mut message)? > 0 {
        bail!("the writer sent more than {count} messages");
    }
    Ok(summary.with_throughput())
}

/// Writer, ping: one message out, the same one back, timed; `count` times.
pub fn ping(fd: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = pattern(size);
    let mut reply = vec![0u8; size + 1];
    let mut rtts = Vec::with_capacity(count as usize); // no allocation while timing
    let mut summary = Summary::start();
    for k in 0..count {
        stamp(&mut message, k);
        let sent = std::time::Instant::now();
        send_one(&fd, &message, "reader").with_context(|| format!("sending ping {k}"))?;
        let n = recv_one(&fd, &mut reply)?;
        rtts.push(sent.elapsed());
        if n == 0 {
            bail!("the reader closed the connection after {k} of {count} round trips");
        }
        if reply[..n] != message[..] {
            bail!("round trip {k} of {count}: the answer differs from what was sent");
        }
        summary.count(size);
    }
    Ok(summary.with_round_trips(&mut rtts))
}

/// Reader, ping: send each message straight back, until EOF.
pub fn echo(fd: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = vec![0u8; size + 1];
    let mut summary = Summary::start();
    loop {
        let n = recv_one(&fd, &mut message)?;
        if n == 0 {
            break;
        }
        send_one(&fd, &message[..n], "writer").context("answering a ping")?;
        summary.count(n);
    }
    if summary.messages != count {
        bail!(
            "the writer closed the connection after {} of {count} round trips: is it gone?",
            summary.messages
        );
    }
    Ok(summary)
}
