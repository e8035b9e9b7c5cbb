//! Unix sequenced-packet sockets (AF_UNIX, SOCK_SEQPACKET): a connection, like a stream,
//! that keeps message boundaries, like a datagram socket. One send(2) is one message; one
//! recv(2) returns one message, whole, however many wait behind it; and when the peer
//! closes (or dies), recv(2) returns 0: EOF, which a datagram socket never gives.
//!
//! In the order a program makes the calls:
//! 1. [`listen`]: socket, bind, listen, at any [`UnixAddr`] (a path: bind it through
//!    [`crate::unix::bind_with`] for the 0600 file and its guard; an abstract name:
//!    [`UnixAddr::new_abstract`], no file at all). std has no SOCK_SEQPACKET type: the
//!    socket is an `OwnedFd`.
//! 2. [`crate::unix::accept`] and [`crate::unix::peer_cred`], exactly as for a stream.
//! 3. [`connect`] on the client's side.
//! 4. [`send`] (MSG_NOSIGNAL: a peer that is gone is EPIPE, not a SIGPIPE that kills the
//!    caller) and [`recv`] (one message; [`Packet::truncated`] if the buffer was too
//!    small: the kernel cut it and dropped the rest of that message, see recv(2) MSG_TRUNC).
//!
//! A message must fit the sender's send buffer (SO_SNDBUF, less 32 bytes the kernel keeps),
//! as a Unix datagram must (EMSGSIZE otherwise). Zero-length messages can be sent, but
//! recv(2) returns 0 for one, exactly as at EOF: a protocol on SOCK_SEQPACKET should not
//! send them. Linux-only in this form (FreeBSD has SOCK_SEQPACKET too; macOS does not).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, bind, socket,
};

/// One received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// How many bytes are in the buffer: 0 is EOF (the peer closed, or died).
    pub len: usize,
    /// The message was longer than the buffer (MSG_TRUNC came back): `len` bytes were kept,
    /// the rest of that one message is gone; the next recv(2) starts at the next message.
    pub truncated: bool,
    /// The message's real length (recv(2) with MSG_TRUNC, Linux 3.4 and later: the
    /// length before it was cut).
    pub whole: usize,
}

/// A new SOCK_SEQPACKET socket, close-on-exec.
fn new_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// socket + bind + listen: a SOCK_SEQPACKET listener at `addr`. At a path, bind(2) makes
/// the socket file (mode from the umask; the kernel never removes it): use
/// [`crate::unix::bind_with`] for a 0600 file and a guard that removes it. At an abstract
/// name nothing is made: the name is free again once this socket is closed.
///
/// # Examples
/// ```
/// use nix::sys::socket::UnixAddr;
/// use socket_demo::seqpacket::{connect, listen, recv, send};
/// let (listener, file) = socket_demo::unix::bind_with(None, "doctest-seqpacket", "socket", |p| {
///     listen(&UnixAddr::new(p)?)
/// })
/// .unwrap();
/// let client = connect(&UnixAddr::new(file.path()).unwrap()).unwrap();
/// let server = socket_demo::unix::accept(&listener).unwrap();
/// for word in ["one", "two", "three"] {
///     send(&client, word.as_bytes()).unwrap();
/// }
/// let mut buf = [0u8; 64]; // room for all three: a stream would hand them out at once
/// let got = recv(&server, &mut buf).unwrap();
/// assert_eq!(&buf[..got.len], b"one"); // one message per recv, whole
/// let mut small = [0u8; 2];
/// let cut = recv(&server, &mut small).unwrap();
/// assert!(cut.truncated && cut.whole == 3 && &small == b"tw"); // the rest of "two" is gone
/// let last = recv(&server, &mut buf).unwrap();
/// assert_eq!(&buf[..last.len], b"three");
/// drop(client);
/// assert_eq!(recv(&server, &mut buf).unwrap().len, 0); // EOF: the peer closed
/// ```
pub fn listen(addr: &UnixAddr) -> io::Result<OwnedFd> {
    let fd = new_socket()?;
    bind(fd.as_raw_fd(), addr)?;
    nix::sys::socket::listen(&fd, Backlog::new(128)?)?;
    Ok(fd)
}

/// socket + connect to a SOCK_SEQPACKET listener at `addr`. ENOENT: no file at that path;
/// ECONNREFUSED: nobody listening there (at an abstract name: nobody bound to it).
/// EPROTOTYPE: what listens there is not SOCK_SEQPACKET (a stream's or a datagram's).
pub fn connect(addr: &UnixAddr) -> io::Result<OwnedFd> {
    let fd = new_socket()?;
    nix::sys::socket::connect(fd.as_raw_fd(), addr)?;
    Ok(fd)
}

/// One send(2) of `message` as one message, with MSG_NOSIGNAL (a peer that is gone is
/// EPIPE). Whole or not at all: the count returned is `message.len()`. EINTR, and EAGAIN
/// under SO_SNDTIMEO, come back as `Interrupted` and `WouldBlock`.
pub fn send(socket: impl AsFd, message: &[u8]) -> io::Result<usize> {
    Ok(nix::sys::socket::send(
        socket.as_fd().as_raw_fd(),
        message,
        MsgFlags::MSG_NOSIGNAL,
    )?)
}

/// One recv(2) with MSG_TRUNC: the next message, whole if it fits `buf` (see [`Packet`]).
/// With that flag (on Unix seqpacket sockets, Linux 3.4 and later) the count is the
/// message's real length, not what was kept, so a count above `buf.len()` says it was
/// cut: what recvmsg(2)'s MSG_TRUNC flag would say, without a msghdr and iovec for the
/// kernel to copy in (in C on a 2-vCPU VM, 100-byte round trips on one CPU were about
/// 7 % faster with send/recv than with sendmsg/recvmsg). EINTR, and EAGAIN under
/// SO_RCVTIMEO, come back as `Interrupted` and `WouldBlock`.
pub fn recv(socket: impl AsFd, buf: &mut [u8]) -> io::Result<Packet> {
    let room = buf.len();
    let whole = nix::sys::socket::recv(socket.as_fd().as_raw_fd(), buf, MsgFlags::MSG_TRUNC)?;
    Ok(Packet {
        len: whole.min(room),
        truncated: whole > room,
        whole,
    })
}
