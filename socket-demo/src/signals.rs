//! Ctrl+C (SIGINT), SIGTERM, and SIGHUP (the terminal closed) while blocked in accept(2),
//! recv(2), send(2): stop, clean up, then die of the signal.
//!
//! The handler only stores the signal's number: about all a handler may safely do. It is
//! installed without SA_RESTART, so a blocked call returns EINTR. Two traps remain:
//! - std's `accept` retries EINTR by itself (and so do `read_exact`, `write_all`,
//!   `read_line`): the demo calls nix's `accept4`, `read`, `write`, `send`, `recv` and
//!   `recvmsg`, and std's single-call `recv`/`send`, which all hand EINTR back to us.
//! - A signal that lands after we looked at the flag but before the call enters the kernel
//!   only sets the flag, and the call would sleep on. Two ways out, one per kind of socket:
//!   - A connected Unix stream or seqpacket socket: while [`shut_on_signal`] is armed, the
//!     handler also calls shutdown(2) (async-signal-safe) on it. That state stays: a call
//!     that has not yet entered the kernel returns at once (read: 0, write: EPIPE), and
//!     `block` looks at the flag after every call, so it reports the signal, not the EOF.
//!     No timeout on these sockets: SO_RCVTIMEO arms a kernel timer at every sleep, and that
//!     cost ~5 % of a one-CPU round trip (11.46 → 12.04 µs in the C anchor, 2 vCPUs).
//!   - Every other socket (listeners, datagrams, TCP) has a receive and a send timeout
//!     (SO_RCVTIMEO/SO_SNDTIMEO) of one `TICK`: a call that waited that long returns
//!     EAGAIN, `block` looks at the flag again and goes back to waiting.
//!
//! Once `block` returns `Interrupted`, the error travels up like any other, every RAII
//! guard on the way drops (socket files unlinked, directories removed), and `main` calls
//! `die_of`, so the shell sees the process was killed by the signal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use socket_demo::wait::{input_or_peer_gone, poll_for};

/// How long a blocked socket call sleeps before it comes back to look at the flag.
pub const TICK: Duration = Duration::from_millis(250);

/// The last SIGINT/SIGTERM/SIGHUP received, 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);
/// The writer the default run started, 0 for none: if it has exited, waiting for it is
/// pointless.
static WATCHED: AtomicI32 = AtomicI32::new(0);

/// The connection `shut_on_signal` armed, -1 for none.
static SHUT_ON_SIGNAL: AtomicI32 = AtomicI32::new(-1);

extern "C" fn remember(signo: std::ffi::c_int) {
    CAUGHT.store(signo, Ordering::SeqCst);
    let fd = SHUT_ON_SIGNAL.load(Ordering::SeqCst);
    if fd >= 0 {
        // shutdown(2) is async-signal-safe (signal-safety(7)), and nix's wrapper only
        // calls it. `fd` is open: `Armed` borrows the socket and disarms before it can be
        // closed. errno is put back, so the interrupted code sees its own.
        let errno = nix::errno::Errno::last_raw();
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        nix::errno::Errno::set_raw(errno);
    }
}

/// While this lives, a SIGINT/SIGTERM/SIGHUP also shuts the connection down (see the top).
pub struct Armed<'a>(std::marker::PhantomData<BorrowedFd<'a>>);

/// Arms the handler to shut `conn` down: a connected Unix stream or seqpacket socket with
/// no timeouts, whose blocking calls all go through `block`. One connection at a time.
pub fn shut_on_signal(conn: BorrowedFd<'_>) -> Armed<'_> {
    SHUT_ON_SIGNAL.store(conn.as_raw_fd(), Ordering::SeqCst);
    // A signal that came before the store found nothing to shut down: do it now.
    if caught().is_some() {
        let _ = nix::sys::socket::shutdown(conn.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
    Armed(std::marker::PhantomData)
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        SHUT_ON_SIGNAL.store(-1, Ordering::SeqCst);
    }
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, without SA_RESTART. SIGHUP too:
/// closing the terminal must not leave the socket file behind.
pub fn install() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(remember),
        SaFlags::empty(), // no SA_RESTART: a blocked call must come back with EINTR
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `remember` only stores into an atomic, which is async-signal-safe, and
        // nothing else in this program has a handler for these signals to replace.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("sigaction {sig}"))?;
    }
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<Signal> {
    Signal::try_from(CAUGHT.load(Ordering::SeqCst)).ok()
}

/// After SIGINT/SIGTERM/SIGHUP, once the guards have dropped: one line saying what they
/// removed, then death by the signal, so the shell knows we were stopped.
pub fn say_removed_and_die(role: &str, sig: Signal) -> std::process::ExitCode {
    let removed = crate::meeting::removed_so_far();
    let removed = if removed.is_empty() {
        "nothing of mine to remove".to_string()
    } else {
        format!("removed {}", removed.join(" and "))
    };
    say!(role, "interrupted by {sig}: {removed}");
    die_of(sig)
}

/// Dies of `sig` with its default action, as if no handler had ever been installed.
pub fn die_of(sig: Signal) -> std::process::ExitCode {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours, so no handler can race with anything.
    let _ = unsafe { sigaction(sig, &default) };
    let _ = raise(sig);
    // Not reached for SIGINT/SIGTERM/SIGHUP, whose default action ends the process.
    std::process::ExitCode::from(128 + sig as u8)
}

/// A blocking call was stopped by SIGINT, SIGTERM or SIGHUP.
#[derive(Debug)]
pub struct Interrupted(pub Signal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The default run's writer exited while we waited for more from it.
#[derive(Debug)]
pub struct WriterGone(pub i32);

impl std::fmt::Display for WriterGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the writer (pid {}) has exited and nothing more came from it",
            self.0
        )
    }
}

impl std::error::Error for WriterGone {}

/// The peer named by a signal-free way (no connection to close, no EOF): how it went, if
/// it is gone, and how long to wait after that before giving up on it.
struct PeerWatch {
    gone: Box<dyn Fn() -> Option<String> + Send>,
    grace: Duration,
}

static PEER: Mutex<Option<PeerWatch>> = Mutex::new(None);

/// The peer a datagram side waits for has gone (`watch_peer` told how to see it).
#[derive(Debug)]
pub struct PeerGone(pub String);

impl std::fmt::Display for PeerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerGone {}

/// From now on, every wait that times out (each `TICK`) also asks `gone` whether the peer
/// is still there, and fails with `PeerGone` once it has been gone for `grace`. For
/// datagram sockets, where nothing tells one side that the other died: `gone` looks at
/// something the kernel keeps (the sender's pid, its port, the reader's bound socket).
pub fn watch_peer(grace: Duration, gone: impl Fn() -> Option<String> + Send + 'static) {
    if let Ok(mut peer) = PEER.lock() {
        *peer = Some(PeerWatch {
            gone: Box::new(gone),
            grace,
        });
    }
}

/// How the watched peer went, and the grace, if it is gone.
fn watched_peer_gone() -> Option<(String, Duration)> {
    let peer = PEER.lock().ok()?;
    let peer = peer.as_ref()?;
    (peer.gone)().map(|how| (how, peer.grace))
}

/// From now on, a wait that times out also checks whether `writer` (our child) is still
/// alive: the default run must not wait forever for a writer that died.
pub fn watch(writer: Pid) {
    WATCHED.store(writer.as_raw(), Ordering::SeqCst);
}

/// True if the watched writer has exited. WNOWAIT leaves it a zombie, so the default run
/// can still reap it and say how it ended; ECHILD means it was reaped already.
fn watched_writer_gone() -> Option<i32> {
    let pid = WATCHED.load(Ordering::SeqCst);
    if pid == 0 {
        return None;
    }
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(Pid::from_raw(pid)), flags) {
        Ok(nix::sys::wait::WaitStatus::StillAlive) => None,
        _ => Some(pid),
    }
}

/// Makes a blocking socket call that Ctrl+C can stop, on a socket whose timeouts are one
/// `TICK` or that `shut_on_signal` armed. Returns the call's own result, `Interrupted` if
/// a signal of ours arrived, or an error if the default run's writer has died while we
/// waited for it.
pub fn block<T>(call: impl FnMut() -> io::Result<T>) -> Result<io::Result<T>> {
    wait(None, call)
}

/// Like `block`, but gives up after `patience` with the call's result
/// `Err(ErrorKind::TimedOut)`: for datagrams, where a lost one would otherwise leave us
/// waiting forever (and nothing on a datagram socket tells that its peer is gone:
/// `watch_peer` looks at the kernel's tables instead).
pub fn block_at_most<T>(
    patience: Duration,
    call: impl FnMut() -> io::Result<T>,
) -> Result<io::Result<T>> {
    wait(Some(patience), call)
}

fn wait<T>(
    patience: Option<Duration>,
    mut call: impl FnMut() -> io::Result<T>,
) -> Result<io::Result<T>> {
    let started = Instant::now();
    let mut writer_gone = None;
    let mut peer_gone_since: Option<Instant> = None;
    loop {
        if let Some(sig) = caught() {
            return Err(Interrupted(sig).into());
        }
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The socket's timeout ran out: nothing happened for a TICK.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if patience.is_some_and(|p| started.elapsed() >= p) {
                    return Ok(Err(io::ErrorKind::TimedOut.into()));
                }
                // Gone at the previous tick too: whatever it sent has long arrived.
                if let Some(pid) = writer_gone {
                    return Err(WriterGone(pid).into());
                }
                writer_gone = watched_writer_gone();
                match watched_peer_gone() {
                    Some((how, grace)) => {
                        let since = *peer_gone_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= grace {
                            return Err(PeerGone(how).into());
                        }
                    }
                    None => peer_gone_since = None,
                }
            }
            // A signal may have shut the connection down just before the call: the call's
            // EOF or EPIPE is the signal's doing.
            done => match caught() {
                Some(sig) => return Err(Interrupted(sig).into()),
                None => return Ok(done),
            },
        }
    }
}

/// Waits until `fd` is ready for one of `events` and returns what it is ready for: poll(2)
/// with a `TICK` timeout, so Ctrl+C is seen (a terminal has no SO_RCVTIMEO).
pub fn wait_ready(fd: impl AsFd, events: PollFlags) -> Result<PollFlags> {
    block(|| {
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll_for(&mut fds, TICK)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            _ => Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
        }
    })?
    .context("poll")
}

/// Waits until `fd` (standard input) has something to read, or `peer` (the connection
/// the lines go to) is closed at the other end, which is an error: a writer waiting for
/// its next line must not miss that its reader died (POLLHUP, or POLLRDHUP for TCP).
pub fn wait_readable_watching(fd: BorrowedFd, peer: BorrowedFd) -> Result<()> {
    let readable = block(|| match input_or_peer_gone(fd, peer, TICK)? {
        None => Err(io::ErrorKind::WouldBlock.into()),
        Some(readable) => Ok(readable),
    })?
    .context("poll")?;
    if !readable {
        anyhow::bail!(
            "the reader is gone: it closed its end of the connection (or was killed) while \
             I waited for my next line on standard input"
        );
    }
    Ok(())
}

/// Waits until `fd` (standard input) has something to read.
pub fn wait_readable(fd: impl AsFd) -> Result<()> {
    wait_ready(fd, PollFlags::POLLIN).map(drop)
}
