//! The Unix family (AF_UNIX), narrated: sockets that meet at a file, and the kernel
//! vouching for who is at the other end. The calls are `socket_demo::unix`'s; this file
//! names what they removed and puts their failures in words.
//!
//! - `OwnedFile`: bind(2) on a Unix socket creates a file of type `s` (`srw-------` in
//!   `ls -l`). It is only a name to find the socket by, no data ever goes through the
//!   disk, and the kernel does not remove it when the socket closes: that is the
//!   server's job, done here by a guard, on every way out. A file left by a killed run
//!   makes the next bind fail with EADDRINUSE; we tell such a stale file from a live
//!   server with the kernel's own list, /proc/net/unix, and say how to remove it.
//! - `peer_credentials`: SO_PEERCRED, the pid, uid and gid of the process that connected,
//!   a snapshot the kernel took at connect(2): the client says nothing, the kernel does,
//!   which is what lets a server (systemd, D-Bus, the X server) decide what a caller may
//!   do. A snapshot: the client may have exited since, and its pid gone to another process
//!   (SO_PEERPIDFD gives a pidfd, which names that one process for good).
//!
//! - Abstract names (`--path @NAME`, Linux only): the address starts with a NUL byte, and
//!   the kernel keeps the name in a table of its own, with no file: nothing to remove, on
//!   any way out, SIGKILL included: the name is free again as soon as the socket bound to
//!   it is closed, so nothing can be stale either (connections accepted from it still show
//!   the name in /proc/net/unix while they are open, but hold nobody off it). `ss -xl` and /proc/net/unix show it as `@NAME`. The
//!   price: no permission bits, so any process in the same network namespace may connect
//!   (a server that cares checks SO_PEERCRED), and a name is per network namespace.
//!
//! Notes (命名管道): 提前创建了一个类型为管道的设备文件 (a file of type pipe is created in
//! advance): a Unix socket's file is the same kind of meeting point, of type `s`.
//! Run: `socket-demo reader unix --path /tmp/s`, then in another terminal `socket-demo writer
//! unix --path /tmp/s hi` or `socat - UNIX-CONNECT:/tmp/s`; `ss -xlp` lists the socket.
//! In production: `std::os::unix::net`, or the `interprocess` crate's local sockets.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::socket::{UnixAddr, UnixCredentials};
use socket_demo::seqpacket;
pub use socket_demo::unix::is_bound as is_live;
use socket_demo::unix::{self as lib, OwnedPath};

use crate::args::Flavour;

/// What the guards removed on their way out, for the "interrupted by SIGINT: removed ..."
/// line that `main` prints once they have all dropped.
static REMOVED: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn removed_so_far() -> Vec<String> {
    REMOVED.lock().map(|r| r.clone()).unwrap_or_default()
}

/// The library's guard (a file we made, and its private directory), with the narration's
/// name for it and a note, for `removed_so_far`, of what it removed.
pub struct OwnedFile {
    /// "socket file" or "file", for the narration.
    what: &'static str,
    inner: OwnedPath,
    /// An abstract name (`@NAME`): `inner` is only its name, there is no file to remove.
    is_abstract: bool,
}

impl OwnedFile {
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// The file at `path()` now exists, made by us: the guard will remove it.
    pub fn made(&mut self) {
        self.inner.made();
    }

    /// Unlinks the file (and the private directory) now, and says so. After Ctrl+C, `main`
    /// says it instead, in its one "interrupted" line. An abstract name: says there is
    /// nothing to unlink (the caller has closed the socket by now).
    pub fn remove(mut self, role: &str) {
        let removed = self.take();
        if crate::signals::caught().is_some() {
            return;
        }
        if self.is_abstract && !is_live(self.path()) {
            say!(
                role,
                "nothing to unlink: the abstract name {} went with my socket (/proc/net/unix \
                 and `ss -xl` no longer list it)",
                self.path().display()
            );
        } else if self.is_abstract {
            say!(
                role,
                "nothing to unlink: the abstract name {} is free again; /proc/net/unix still \
                 shows it on a socket that is open elsewhere (a connection accepted from it)",
                self.path().display()
            );
        } else if !removed.is_empty() {
            say!(role, "removed {}", removed.join(" and "));
        }
    }

    /// Removes what is ours, notes it for `removed_so_far`, and returns it in words.
    fn take(&mut self) -> Vec<String> {
        if self.is_abstract {
            return Vec::new();
        }
        let removed: Vec<String> = self
            .inner
            .remove()
            .iter()
            .enumerate()
            .map(|(i, p)| match (i, p.as_path() == self.inner.path()) {
                (_, true) => format!("the {} {}", self.what, p.display()),
                _ => format!("its directory {}", p.display()),
            })
            .collect();
        if let Ok(mut log) = REMOVED.lock() {
            log.extend(removed.iter().cloned());
        }
        removed
    }
}

impl Drop for OwnedFile {
    fn drop(&mut self) {
        self.take();
    }
}

/// Binds a new Unix socket at `at` (or in a private directory), mode 0600 (the library's
/// `bind_with`), and puts EADDRINUSE in words.
fn bind<S>(
    at: Option<&Path>,
    name: &str,
    make: impl FnOnce(Option<&Path>) -> io::Result<(S, OwnedPath)>,
) -> Result<(S, OwnedFile)> {
    match make(at) {
        Ok((socket, inner)) => Ok((
            socket,
            OwnedFile {
                what: "socket file",
                inner,
                is_abstract: false,
            },
        )),
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
            Err(already_there(at.unwrap_or(Path::new(name))))
        }
        Err(e) => Err(e).with_context(|| match at {
            Some(p) => format!("bind {}", p.display()),
            None => "bind in a private directory (mkdtemp)".to_string(),
        }),
    }
}

/// Binds a new socket at the abstract name `shown` (`@NAME`) with `make`. Nothing is
/// made in the file system; the guard has nothing to remove.
fn bind_abstract<S>(
    shown: &Path,
    name: &[u8],
    make: impl FnOnce(&[u8]) -> io::Result<S>,
) -> Result<(S, OwnedFile)> {
    match make(name) {
        Ok(socket) => Ok((
            socket,
            OwnedFile {
                what: "abstract name",
                inner: OwnedPath::at(shown),
                is_abstract: true,
            },
        )),
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => bail!(
            "bind {0}: a live socket holds the abstract name {0} (EADDRINUSE): an abstract \
             name is never stale, it is free again once the socket bound to it closes; see \
             who holds it with `ss -xlp` and pick another --path",
            shown.display()
        ),
        Err(e) => Err(e).with_context(|| format!("bind the abstract name {}", shown.display())),
    }
}

/// bind(2) never reuses an existing file. Say what is there and what to do about it.
fn already_there(path: &Path) -> anyhow::Error {
    let shown = path.display();
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return anyhow::anyhow!(
            "bind {shown}: {shown} already exists and is not a socket: pick another --path"
        );
    }
    if is_live(path) {
        anyhow::anyhow!(
            "bind {shown}: another reader is using {shown} (EADDRINUSE): pick another --path"
        )
    } else {
        anyhow::anyhow!(
            "bind {shown}: {shown} is a stale socket file (EADDRINUSE): no socket is bound to it \
             any more (see /proc/net/unix), it was left by a killed run. Remove it with: rm {}",
            shell_quoted(&path.to_string_lossy())
        )
    }
}

/// What a peer killed by SIGKILL could not remove: its socket file, if one is still at
/// `path` with no socket bound to it, as "; it could not remove its socket file: rm PATH".
/// Empty otherwise.
pub fn left_behind(path: &Path) -> String {
    if lib::abstract_name(path).is_some() {
        return String::new(); // an abstract name has no file; it went with its socket
    }
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket || is_live(path) {
        return String::new();
    }
    let file = shell_quoted(&path.to_string_lossy());
    // A default run's socket is in a private directory of its own: that is left too.
    match path.parent().filter(|dir| {
        dir.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("socket-demo-"))
    }) {
        Some(dir) => format!(
            "; it could not remove its socket file, which is stale now, nor its private \
             directory: rm {file} && rmdir {}",
            shell_quoted(&dir.to_string_lossy())
        ),
        None => format!("; it could not remove its socket file, which is stale now: rm {file}"),
    }
}

/// `text` as one word for the shell: as it is if that is safe, else in single quotes.
fn shell_quoted(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `--path @NAME`: the abstract name (without its `@`), and how it was written.
fn abstract_at(at: Option<&Path>) -> Option<(&Path, &[u8])> {
    at.and_then(|p| lib::abstract_name(p).map(|name| (p, name)))
}

/// The line of /proc/net/unix for the abstract name `shown` (`@NAME`), the listening
/// socket's (flag 00010000, __SO_ACCEPTCON) if there is one: the kernel's own word that
/// the name exists with no file.
pub fn proc_net_unix_line(shown: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let want = format!(" {}", shown.display());
    let mut lines = table.lines().filter(|l| l.ends_with(&want));
    let all: Vec<&str> = lines.by_ref().collect();
    all.iter()
        .find(|l| l.contains(" 00010000 "))
        .or(all.first())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// True for `@NAME`: an abstract name, no file.
pub fn is_abstract(path: &Path) -> bool {
    lib::abstract_name(path).is_some()
}

/// The reader's stream socket: bound, listening, 0600 (or at an abstract name).
pub fn listen(at: Option<&Path>) -> Result<(UnixListener, OwnedFile)> {
    if let Some((shown, name)) = abstract_at(at) {
        return bind_abstract(shown, name, |n| {
            UnixListener::bind_addr(&lib::abstract_addr(n)?)
        });
    }
    bind(at, "socket", |at| lib::listen(at, "socket-demo"))
}

/// The reader's datagram socket, bound and 0600 (or at an abstract name).
pub fn bind_datagram(at: Option<&Path>) -> Result<(UnixDatagram, OwnedFile)> {
    if let Some((shown, name)) = abstract_at(at) {
        return bind_abstract(shown, name, |n| {
            UnixDatagram::bind_addr(&lib::abstract_addr(n)?)
        });
    }
    bind(at, "socket", |at| {
        lib::bind_datagram(at, "socket-demo", "socket")
    })
}

/// The reader's SOCK_SEQPACKET socket: bound, listening, 0600 (or at an abstract name).
pub fn listen_seqpacket(at: Option<&Path>) -> Result<(OwnedFd, OwnedFile)> {
    if let Some((shown, name)) = abstract_at(at) {
        return bind_abstract(shown, name, |n| {
            seqpacket::listen(&UnixAddr::new_abstract(n)?)
        });
    }
    bind(at, "socket", |at| {
        lib::bind_with(at, "socket-demo", "socket", |p| {
            seqpacket::listen(&UnixAddr::new(p)?)
        })
    })
}

/// `ls -l`'s first column for the socket file: `srw-------`.
pub fn mode_string(path: &Path) -> String {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return "?".into();
    };
    let kind = if meta.file_type().is_socket() {
        's'
    } else {
        '?'
    };
    let perms = meta.permissions().mode();
    let rwx: String = (0..9)
        .map(|bit| match perms & (0o400 >> bit) {
            0 => '-',
            _ => ['r', 'w', 'x'][bit % 3],
        })
        .collect();
    format!("{kind}{rwx}")
}

/// connect(2) to a reader's socket file, with the two ways it fails put in words.
pub fn connect<S>(
    path: &Path,
    flavour: Flavour,
    connect: impl FnOnce(&Path) -> io::Result<S>,
) -> Result<S> {
    let shown = path.display();
    let start = format!(
        "start the reader first (socket-demo reader {} --path {shown})",
        flavour.name()
    );
    match connect(path) {
        Ok(socket) => Ok(socket),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && is_abstract(path) => bail!(
            "connect {shown}: no socket is bound to the abstract name {shown} \
             (ECONNREFUSED): the reader has exited, or was never started, and its name went \
             with its socket; {start}"
        ),
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => bail!(
            "connect {shown}: the socket there is of another type (EPROTOTYPE): its reader \
             is not a {} reader",
            flavour.name()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("connect {shown}: no socket file at {shown}: {start}")
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => bail!(
            "connect {shown}: nobody is listening at {shown} (ECONNREFUSED): the reader has \
             exited, or was killed and left this stale file; {start}"
        ),
        Err(e) => Err(e).with_context(|| format!("connect {shown}")),
    }
}

pub fn connect_stream(path: &Path, flavour: Flavour) -> Result<UnixStream> {
    connect(path, flavour, |p| match lib::abstract_name(p) {
        Some(name) => UnixStream::connect_addr(&lib::abstract_addr(name)?),
        None => lib::connect_within(p, Duration::ZERO, &|| false),
    })
}

/// connect(2) to a seqpacket reader at a path or an abstract name.
pub fn connect_seqpacket(path: &Path) -> Result<OwnedFd> {
    connect(path, Flavour::Seqpacket, |p| {
        let addr = match lib::abstract_name(p) {
            Some(name) => UnixAddr::new_abstract(name)?,
            None => UnixAddr::new(p)?,
        };
        seqpacket::connect(&addr)
    })
}

/// A datagram socket whose default destination is the reader's socket. `own` first binds
/// it to a file of its own, in a private directory, so the reader can answer (a ping needs
/// that: an unbound Unix datagram socket has no address to reply to).
pub fn connect_datagram(path: &Path, own: bool) -> Result<(UnixDatagram, Option<OwnedFile>)> {
    let (socket, file) = if own {
        let (socket, file) = bind(None, "writer.socket", |_| {
            lib::bind_datagram(None, "socket-demo", "writer.socket")
        })?;
        (socket, Some(file))
    } else {
        (UnixDatagram::unbound().context("socket")?, None)
    };
    connect(path, Flavour::UnixDgram, |p| match lib::abstract_name(p) {
        Some(name) => socket.connect_addr(&lib::abstract_addr(name)?),
        None => socket_demo::dgram::connect(&socket, p),
    })?;
    Ok((socket, file))
}

/// A private directory for a writer's own file (the ping writer's socket, the fdpass
/// writer's file), removed with it.
pub fn private_file(name: &str) -> Result<OwnedFile> {
    let inner = OwnedPath::private("socket-demo", name).context("mkdtemp")?;
    Ok(OwnedFile {
        what: "file",
        inner,
        is_abstract: false,
    })
}

/// SO_PEERCRED: who connected, as the kernel recorded it at connect(2).
pub fn peer_credentials(socket: impl AsFd) -> Result<UnixCredentials> {
    lib::peer_cred(socket).context("getsockopt SO_PEERCRED")
}

/// `pid 4242 uid 1000 gid 1000`
pub fn describe(cred: &UnixCredentials) -> String {
    format!("pid {} uid {} gid {}", cred.pid(), cred.uid(), cred.gid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_quoted_for_the_shell_when_it_needs_to_be() {
        assert_eq!(shell_quoted("/tmp/s"), "/tmp/s");
        assert_eq!(shell_quoted("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quoted("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
