//! Unix stream sockets (AF_UNIX, SOCK_STREAM): bind in a private directory, listen,
//! accept, connect, and who is calling (SO_PEERCRED).
//!
//! In the order a program makes the calls:
//! 1. [`listen`] (`Some(path)` for a path you choose): socket, bind, listen. The file
//!    bind(2) creates is only a name to find the socket by, and the kernel never removes
//!    it: the returned [`OwnedPath`] does, on drop, in the process that made it.
//! 2. [`accept`]: one accept4(2) with SOCK_CLOEXEC, EINTR and EAGAIN handed back (std's
//!    `accept` retries EINTR and would not let Ctrl+C stop it). Many clients at once:
//!    [`crate::server::Server`].
//! 3. [`peer_cred`]: SO_PEERCRED, the pid, uid and gid the kernel recorded at connect(2):
//!    the client states nothing. A snapshot: the pid may have exited and been reused since.
//! 4. [`connect_within`]: a client that waits for the server to appear, up to a deadline.
//! 5. [`is_bound`]: whether a socket is still bound at a path, from /proc/net/unix: tells
//!    a stale file (its server was SIGKILLed and ran no guard) from a live server.
//!
//! Abstract names (Linux only): [`abstract_name`] reads `@NAME`, the way ss(8) and
//! /proc/net/unix show one, and [`abstract_addr`] makes the address for std's `bind_addr`
//! and `connect_addr`. No file is made, so there is nothing to remove: the name is
//! free again once the socket bound to it is closed, even by a SIGKILL. But there are no
//! permission bits either: any process in the same network namespace may connect, so a
//! server checks [`peer_cred`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{SockFlag, UnixCredentials, accept4, getsockopt, sockopt};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Pid, getpid, mkdtemp};

/// A path this process creates (a socket file, a file to pass), and the private 0700
/// directory it is in if [`OwnedPath::private`] made one. Dropping it unlinks both, but
/// only in the process that made them: a child made by fork(2) holds a copy of this guard
/// and must not remove its parent's socket. A SIGKILL runs no drop: see [`is_bound`].
#[derive(Debug)]
pub struct OwnedPath {
    path: PathBuf,
    dir: Option<PathBuf>,
    made: bool,
    owner: Pid,
}

impl OwnedPath {
    /// `NAME` in a new directory `$TMPDIR/PREFIX-PID-XXXXXX` that mkdtemp(3) makes,
    /// mode 0700, in one step: nobody else can reach a file in it, where a guessable path
    /// in /tmp could be taken first by anyone. Nothing is at the path yet.
    pub fn private(prefix: &str, name: &str) -> io::Result<OwnedPath> {
        let template = std::env::temp_dir().join(format!("{prefix}-{}-XXXXXX", getpid()));
        let dir = mkdtemp(&template)?;
        Ok(OwnedPath {
            path: dir.join(name),
            dir: Some(dir),
            made: false,
            owner: getpid(),
        })
    }

    /// `path` itself, no directory of ours: removed on drop once [`OwnedPath::made`].
    pub fn at(path: &Path) -> OwnedPath {
        OwnedPath {
            path: path.to_path_buf(),
            dir: None,
            made: false,
            owner: getpid(),
        }
    }

    /// Where the file is (or will be).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The private directory, if this guard made one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The file at [`OwnedPath::path`] now exists, made by us: ours to remove.
    pub fn made(&mut self) {
        self.made = true;
    }

    /// Removes the file (if made) and the directory now; returns what it removed, the
    /// file first. Nothing in a process other than the one that made the guard.
    pub fn remove(&mut self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        if getpid() != self.owner {
            return removed;
        }
        if std::mem::take(&mut self.made) && std::fs::remove_file(&self.path).is_ok() {
            removed.push(self.path.clone());
        }
        if let Some(dir) = self.dir.take() {
            if std::fs::remove_dir(&dir).is_ok() {
                removed.push(dir);
            }
        }
        removed
    }
}

impl Drop for OwnedPath {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Binds with `make` at `at`, or at `NAME` in a private directory, the file mode 0600.
/// Connecting needs write permission on the file, so 0600 means "this user only".
/// - Private directory: bind, then chmod 0600; no one else (but root) can reach the file
///   in the 0700 directory meanwhile, so there is no window. Safe with threads.
/// - `at`: the file is made 0600 from the start by clearing the umask's group and other
///   bits around bind(2). The umask is process-wide: only in a single-threaded program
///   (another thread's files made meanwhile would get mode & !0177).
///
/// EADDRINUSE: something is at the path already; bind(2) never reuses a file (see
/// [`is_bound`] to tell a stale one).
pub fn bind_with<S>(
    at: Option<&Path>,
    prefix: &str,
    name: &str,
    make: impl FnOnce(&Path) -> io::Result<S>,
) -> io::Result<(S, OwnedPath)> {
    let mut file = match at {
        Some(path) => OwnedPath::at(path),
        None => OwnedPath::private(prefix, name)?,
    };
    let socket = if at.is_some() {
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = make(file.path());
        umask(old);
        bound?
    } else {
        let socket = make(file.path())?;
        file.made();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600))?;
        socket
    };
    file.made();
    Ok((socket, file))
}

/// socket + bind + listen: a stream listener at `at` or in a private `PREFIX-PID-XXXXXX`
/// directory (as `socket`), mode 0600, removed when the guard drops.
///
/// # Examples
/// ```
/// use std::os::unix::net::UnixStream;
/// let (listener, file) = socket_demo::unix::listen(None, "doctest-listen").unwrap();
/// let client = UnixStream::connect(file.path()).unwrap();
/// let conn = socket_demo::unix::accept(&listener).unwrap();
/// let cred = socket_demo::unix::peer_cred(&conn).unwrap();
/// assert_eq!(cred.pid(), std::process::id() as i32); // the kernel says who connected
/// let (path, dir) = (file.path().to_owned(), file.dir().unwrap().to_owned());
/// drop((client, listener, file));
/// assert!(!path.exists() && !dir.exists()); // the guard removed both
/// ```
pub fn listen(at: Option<&Path>, prefix: &str) -> io::Result<(UnixListener, OwnedPath)> {
    bind_with(at, prefix, "socket", |p| UnixListener::bind(p))
}

/// A Unix datagram socket bound like [`listen`]'s, file `name`.
pub fn bind_datagram(
    at: Option<&Path>,
    prefix: &str,
    name: &str,
) -> io::Result<(UnixDatagram, OwnedPath)> {
    bind_with(at, prefix, name, |p| UnixDatagram::bind(p))
}

/// One accept4(2) with SOCK_CLOEXEC (a program started later must not inherit the
/// connection), on any stream listener (a `TcpListener` too: wrap the result in the
/// stream type you need). EINTR comes back as `Interrupted`, and, on a listener with SO_RCVTIMEO or
/// O_NONBLOCK, "nobody yet" as `WouldBlock`: the caller decides whether to go on waiting.
pub fn accept(listener: impl AsFd) -> io::Result<OwnedFd> {
    let fd = accept4(listener.as_fd().as_raw_fd(), SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: accept4 just returned this descriptor: it is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SO_PEERCRED: the pid, uid and gid of the process that connected `conn`, as the kernel
/// recorded them at connect(2) (or at socketpair(2)).
pub fn peer_cred(conn: impl AsFd) -> io::Result<UnixCredentials> {
    Ok(getsockopt(&conn, sockopt::PeerCredentials)?)
}

/// connect(2) to `path`, retrying while no server is there yet (ENOENT: no file;
/// ECONNREFUSED: a file, nobody listening) for at most `patience`: the client need not be
/// started second. Other errors, or the last of those two at the deadline, come back as
/// they are; `Interrupted` once `stop()` says so.
pub fn connect_within(
    path: &Path,
    patience: Duration,
    stop: &dyn Fn() -> bool,
) -> io::Result<UnixStream> {
    let deadline = Instant::now() + patience;
    loop {
        match UnixStream::connect(path) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                if stop() {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

/// True if some socket is bound to `path` (or to the abstract name `@NAME`, listed as
/// such). The kernel lists every bound Unix socket,
/// with the path given to bind(2), in /proc/net/unix, and a socket leaves that list when
/// it is closed, even by the death of its process, while its file stays: a file with no
/// entry is stale. Connecting to find out would look like a client to the server.
/// A relative path in the table was bound from a directory we do not know: the same file
/// name counts (the careful answer: a live server is never declared dead). If the table
/// cannot be read, true.
pub fn is_bound(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return true;
    };
    let wanted = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    table.lines().skip(1).any(|line| {
        path_field(line).is_some_and(|p| {
            let p = Path::new(p);
            p == path
                || (p.file_name() == path.file_name()
                    && (p.is_relative() || std::fs::canonicalize(p).is_ok_and(|c| c == wanted)))
        })
    })
}

/// `@NAME` (an abstract name, as ss(8) and /proc/net/unix print it): `NAME`'s bytes.
/// A path, or a lone `@`, is `None`.
///
/// # Examples
/// ```
/// use std::os::unix::net::{UnixListener, UnixStream};
/// use std::path::Path;
/// use socket_demo::unix::{abstract_addr, abstract_name, is_bound};
/// let shown = format!("@socket-demo-doctest-{}", std::process::id());
/// let name = abstract_name(Path::new(&shown)).unwrap();
/// let listener = UnixListener::bind_addr(&abstract_addr(name).unwrap()).unwrap();
/// assert!(is_bound(Path::new(&shown))); // /proc/net/unix lists it as @NAME
/// let _client = UnixStream::connect_addr(&abstract_addr(name).unwrap()).unwrap();
/// drop(listener);
/// assert!(!is_bound(Path::new(&shown))); // gone with its socket: nothing to unlink
/// assert_eq!(abstract_name(Path::new("/tmp/s")), None);
/// ```
pub fn abstract_name(shown: &Path) -> Option<&[u8]> {
    use std::os::unix::ffi::OsStrExt;
    shown
        .as_os_str()
        .as_bytes()
        .strip_prefix(b"@")
        .filter(|name| !name.is_empty())
}

/// The address of the abstract name `name` (without the `@`; the kernel's leading NUL
/// byte is added here), for `UnixListener::bind_addr`, `UnixDatagram::bind_addr`,
/// `UnixStream::connect_addr`, `UnixDatagram::connect_addr`. At most 107 bytes.
pub fn abstract_addr(name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

/// The path in a line of /proc/net/unix (`Num RefCount Protocol Flags Type St Inode Path`):
/// everything after the seventh field; it may hold spaces.
fn path_field(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..7 {
        rest = rest.trim_start(); // the inode is padded with spaces
        rest = &rest[rest.find(' ')?..];
    }
    rest.strip_prefix(' ').filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_of_a_proc_net_unix_line_may_hold_spaces() {
        let line = "0000000000000000: 00000002 00000000 00010000 0001 01  1234 /tmp/a b/s";
        assert_eq!(path_field(line), Some("/tmp/a b/s"));
        let unnamed = "0000000000000000: 00000003 00000000 00000000 0001 03 56789";
        assert_eq!(path_field(unnamed), None);
    }
}
