//! socketpair(2): two connected Unix stream sockets with no name, for a parent and the
//! child it forks. Each end reads and writes: one socketpair is a channel both ways.
//!
//! The traps: a side that writes everything before reading can sleep in write(2) while
//! the other does the same (each direction's buffer is finite): [`send_nowait`] with
//! poll(2) lets one side read whenever it can; and at EOF a child must tell a parent's
//! half-close (shutdown(SHUT_WR), "done") from its death (both directions closed):
//! [`closed_both_ways`].

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, send, socketpair};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

/// socketpair(AF_UNIX, SOCK_STREAM, SOCK_CLOEXEC): a program either side execs later
/// does not inherit the ends.
pub fn stream_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((UnixStream::from(a), UnixStream::from(b)))
}

/// One send(2) with MSG_DONTWAIT: what fits now, 0 if nothing does (EAGAIN). EPIPE and
/// ECONNRESET (the other end is closed) come back as errors, never as SIGPIPE (the flag
/// MSG_NOSIGNAL is set).
pub fn send_nowait(socket: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    match send(socket.as_fd().as_raw_fd(), buf, flags) {
        Ok(n) => Ok(n),
        Err(Errno::EAGAIN) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// After EOF on `socket`: true if the other end is closed altogether (POLLHUP: both
/// directions), as the kernel does for a process that died, SIGKILL included; false after
/// a mere shutdown(SHUT_WR) of its writing half. Meaningful only while the other side
/// keeps its end open after its half-close until it has read our EOF.
///
/// # Examples
/// ```
/// use std::net::Shutdown;
/// let (child, parent) = socket_demo::pair::stream_pair().unwrap();
/// parent.shutdown(Shutdown::Write).unwrap();
/// assert!(!socket_demo::pair::closed_both_ways(&child).unwrap()); // "done"
/// drop(parent);
/// assert!(socket_demo::pair::closed_both_ways(&child).unwrap()); // gone
/// ```
pub fn closed_both_ways(socket: impl AsFd) -> io::Result<bool> {
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::empty())];
    poll(&mut fds, PollTimeout::ZERO)?;
    // No events asked for: poll reports POLLHUP (and POLLERR, POLLNVAL) regardless.
    Ok(fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLHUP)))
}

/// fork(2). `None` in the child, `Some(pid)` in the parent.
///
/// # Safety
/// The child goes on running Rust code: sound only in a single-threaded program (another
/// thread may hold the allocator's or stdout's lock at the moment of fork, and the child
/// would wait for it for ever). Flush stdout first, or the child prints its copy too; end
/// the child with `std::process::exit`, never by returning into the parent's code.
pub unsafe fn fork_child() -> io::Result<Option<Pid>> {
    // SAFETY: the caller promises a single-threaded process (see # Safety).
    match unsafe { fork() }? {
        ForkResult::Child => Ok(None),
        ForkResult::Parent { child } => Ok(Some(child)),
    }
}

/// waitpid on exactly `child` (never -1: another child of the caller's is not ours to
/// reap), retrying EINTR, until it has exited or been killed.
pub fn wait_child(child: Pid) -> io::Result<WaitStatus> {
    loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(s),
            Ok(_) => continue,
        }
    }
}
