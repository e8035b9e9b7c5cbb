//! Waiting on a socket with a real deadline, and a "stop?" question the caller answers.
//!
//! The trap: std's blocking calls (`accept`, `read_exact`, `write_all`) retry EINTR by
//! themselves, so a Ctrl+C handler that only sets a flag never gets a word in. A signal
//! that lands just before a blocking call enters the kernel is missed by EINTR too. So
//! nothing here sleeps longer than [`SLICE`] without asking `stop()` again; a deadline is
//! measured from the first call, and EINTR does not restart it.
//!
//! Nothing here installs a signal handler: the caller decides what "stop" means (a flag
//! its own handler sets, a counter, a channel).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// The longest sleep between two looks at `stop()`.
pub const SLICE: Duration = Duration::from_millis(100);

/// POLLRDHUP: the peer shut down its writing half, or closed (nix names no such flag).
pub const POLLRDHUP: PollFlags = PollFlags::from_bits_retain(libc::POLLRDHUP);

/// SO_RCVTIMEO and SO_SNDTIMEO: a blocked read, write, accept, recv or send on `socket`
/// returns EAGAIN/EWOULDBLOCK after `every`, so a caller's loop can look at its flag.
pub fn set_timeouts(socket: impl AsFd, every: Duration) -> io::Result<()> {
    let tv = TimeVal::new(every.as_secs() as _, every.subsec_micros() as _);
    setsockopt(&socket, sockopt::ReceiveTimeout, &tv)?;
    setsockopt(&socket, sockopt::SendTimeout, &tv)?;
    Ok(())
}

/// One poll(2) of `fds` for at most `timeout`. Returns how many have events (0: the
/// timeout ran out); EINTR comes back as `Interrupted`.
pub fn poll_for(fds: &mut [PollFd], timeout: Duration) -> io::Result<usize> {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    Ok(poll(fds, PollTimeout::from(ms))?.try_into().unwrap_or(0))
}

/// Waits until `fd` is ready for one of `events` (or has POLLHUP/POLLERR), for at most
/// `within` (`None`: no limit). Returns the events, `Ok(None)` at the deadline, or
/// `Interrupted` as soon as `stop()` says so.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use nix::poll::PollFlags;
/// let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let none = socket_demo::wait::ready(&a, PollFlags::POLLIN, Some(Duration::from_millis(50)), &|| false);
/// assert!(none.unwrap().is_none()); // nothing to read: the deadline
/// std::io::Write::write_all(&mut &b, b"x").unwrap();
/// let got = socket_demo::wait::ready(&a, PollFlags::POLLIN, None, &|| false).unwrap();
/// assert!(got.unwrap().contains(PollFlags::POLLIN));
/// ```
pub fn ready(
    fd: impl AsFd,
    events: PollFlags,
    within: Option<Duration>,
    stop: &dyn Fn() -> bool,
) -> io::Result<Option<PollFlags>> {
    let deadline = within.map(|w| Instant::now() + w);
    loop {
        if stop() {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left.min(SLICE),
                None => return Ok(None),
            },
            None => SLICE,
        };
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll_for(&mut fds, left) {
            Ok(0) => {}
            // nix's revents() is None when a bit it does not know is set (POLLRDHUP).
            Ok(_) => {
                let raw = fds[0].revents().unwrap_or(events | POLLRDHUP);
                return Ok(Some(raw));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One poll(2), for at most `timeout`, of `input` for reading and of `peer` for its
/// close: for a client that waits on standard input for its next line and must not miss
/// that its server died meanwhile. `Ok(None)`: nothing yet; `Ok(Some(true))`: input is
/// readable; `Ok(Some(false))`: the peer closed its end or shut down its writing half
/// (POLLHUP, POLLRDHUP, POLLERR).
pub fn input_or_peer_gone(
    input: BorrowedFd,
    peer: BorrowedFd,
    timeout: Duration,
) -> io::Result<Option<bool>> {
    let mut fds = [
        PollFd::new(input, PollFlags::POLLIN),
        PollFd::new(peer, POLLRDHUP),
    ];
    if poll_for(&mut fds, timeout)? == 0 {
        return Ok(None);
    }
    let gone = PollFlags::POLLHUP | POLLRDHUP | PollFlags::POLLERR;
    // revents() is None when a bit nix does not know is set: POLLRDHUP, here.
    if fds[1].revents().is_none_or(|r| r.intersects(gone)) {
        return Ok(Some(false));
    }
    Ok(Some(true))
}
