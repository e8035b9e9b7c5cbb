//! Unix datagram sockets (AF_UNIX, SOCK_DGRAM) and who sent each datagram
//! (SCM_CREDENTIALS).
//!
//! A datagram socket keeps message boundaries: one send(2) is one datagram, one recv(2)
//! returns exactly one. There is no connection, so nothing tells a reader that its writer
//! died, or a writer that its reader did: watch the peer by what the kernel keeps
//! ([`process_gone`] on the pid in the credentials, [`crate::unix::is_bound`] on the
//! reader's path).
//!
//! In order: [`crate::unix::bind_datagram`] (the reader's socket, 0600, removed by its
//! guard), [`pass_credentials`], [`recv_from`]; the writer: [`connect`] (with
//! [`crate::unix::bind_datagram`] first if it wants answers: an unbound socket has no
//! address to reply to).

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrLike, UnixAddr, UnixCredentials, recvmsg, setsockopt,
    sockopt,
};
use nix::unistd::Pid;

/// SO_PASSCRED: from now on the kernel attaches each datagram's sender (pid, uid, gid) as
/// an SCM_CREDENTIALS control message: filled in by the kernel, or, if the sender states
/// them, checked (only its own ids, unless it has CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID).
pub fn pass_credentials(socket: &UnixDatagram) -> io::Result<()> {
    Ok(setsockopt(socket, sockopt::PassCred, &true)?)
}

/// Who sent a datagram.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The SCM_CREDENTIALS, if [`pass_credentials`] was on.
    pub cred: Option<UnixCredentials>,
    /// The sender's socket file, if it bound one (an unbound sender cannot be answered).
    pub path: Option<PathBuf>,
}

/// One recvmsg(2): one whole datagram into `buf`, and its sender. A datagram longer than
/// `buf` is an error (`InvalidData`, MSG_TRUNC: the kernel cut it and dropped the rest),
/// never handed out as whole. EAGAIN under SO_RCVTIMEO is `WouldBlock`.
///
/// # Examples
/// ```
/// use std::os::unix::net::UnixDatagram;
/// use socket_demo::dgram::{pass_credentials, recv_from};
/// let (reader, file) = socket_demo::unix::bind_datagram(None, "doctest-dgram", "socket").unwrap();
/// pass_credentials(&reader).unwrap();
/// let writer = UnixDatagram::unbound().unwrap();
/// socket_demo::dgram::connect(&writer, file.path()).unwrap();
/// writer.send(b"one").unwrap();
/// writer.send(b"two").unwrap();
/// let mut buf = [0u8; 16];
/// let (n, from) = recv_from(&reader, &mut buf).unwrap();
/// assert_eq!(&buf[..n], b"one"); // one datagram per recv, boundaries kept
/// assert_eq!(from.cred.unwrap().pid(), std::process::id() as i32);
/// assert!(from.path.is_none()); // an unbound writer
/// ```
pub fn recv_from(socket: &UnixDatagram, buf: &mut [u8]) -> io::Result<(usize, Sender)> {
    let len = buf.len();
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(UnixCredentials);
    let msg = recvmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a datagram longer than the {len}-byte buffer: the kernel cut it to fit and \
                 dropped the rest (MSG_TRUNC)"
            ),
        ));
    }
    let cred = msg.cmsgs().ok().and_then(|mut all| {
        all.find_map(|c| match c {
            ControlMessageOwned::ScmCredentials(c) => Some(c),
            _ => None,
        })
    });
    // An unbound sender's address is just the family, no path (nix's `path()` must not be
    // asked about it).
    let family = std::mem::size_of::<libc::sa_family_t>();
    let path = msg
        .address
        .filter(|a| a.len() as usize > family)
        .and_then(|a| a.path().map(|p| p.to_path_buf()));
    Ok((msg.bytes, Sender { cred, path }))
}

/// connect(2) on a datagram socket: send(2) goes to `path` from now on, and recv(2)
/// hears from that address only. Nothing is sent. ENOENT: no file; ECONNREFUSED: a file
/// nobody is bound to any more.
pub fn connect(socket: &UnixDatagram, path: &Path) -> io::Result<()> {
    socket.connect(path)
}

/// How a process is known to be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// kill(pid, 0) says ESRCH: no such process.
    NoSuchProcess,
    /// /proc/PID/stat says Z: dead, not yet reaped by its parent.
    Zombie,
}

/// Whether process `pid` is gone. A pid names a process only until it is reaped: if
/// another process got the pid since, it passes for alive (a pidfd would not; not shown
/// here). EPERM (another user's process) means it exists.
pub fn process_gone(pid: i32) -> Option<Gone> {
    if let Err(Errno::ESRCH) = kill(Pid::from_raw(pid), None) {
        return Some(Gone::NoSuchProcess);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    (state == "Z").then_some(Gone::Zombie)
}
