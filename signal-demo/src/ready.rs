//! Waiting on several file descriptors at once: poll(2), with a deadline.
//!
//! Both fd flavours end up here: a signalfd is readable when a signal of its set is
//! pending, a pidfd when its process has exited, a pipe when it holds data or every
//! write end is closed. One poll over all of them is an event loop's whole wait.
//!
//! Stands alone: copy it with nix's feature "poll".

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Waits until at least one of `fds` is readable, or `timeout` passes (None: no
/// limit). Returns one flag per fd, in order: all false when the time ran out.
///
/// "Readable" includes the end of a pipe and an error (POLLHUP, POLLERR): a read
/// then returns 0 or the error, so the caller hears about it instead of sleeping
/// on. A poll cut short by a signal (EINTR: a handler ran) goes on for what is
/// left of the timeout. (A stop and SIGCONT with no handler does not cut it short:
/// the kernel restarts poll itself, with the time that was left.)
///
/// # Examples
/// ```
/// use signal_demo::ready;
/// use std::io::Write;
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// let (r, mut w) = std::io::pipe().unwrap();
/// let short = Some(Duration::from_millis(1));
/// assert_eq!(ready::readable(&[r.as_fd()], short).unwrap(), vec![false]);
/// w.write_all(b"x").unwrap();
/// assert_eq!(ready::readable(&[r.as_fd()], short).unwrap(), vec![true]);
/// assert_eq!(ready::readable(&[r.as_fd()], Some(Duration::MAX)).unwrap(), vec![true]);
/// ```
pub fn readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> nix::Result<Vec<bool>> {
    // Too far to represent (Duration::MAX): no limit, not a panic.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut polled: Vec<PollFd> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up: a timeout of 0.4 ms must not become "do not wait".
                let ms = left.as_micros().div_ceil(1000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut polled, wait) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
    Ok(polled
        .iter()
        .map(|p| p.revents().is_some_and(|r| r.intersects(ready)))
        .collect())
}
