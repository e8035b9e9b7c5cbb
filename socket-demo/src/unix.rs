//! The Unix family (AF_UNIX): sockets that meet at a file, and the kernel vouching for
//! who is at the other end.
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
//! Notes (命名管道): 提前创建了一个类型为管道的设备文件 (a file of type pipe is created in
//! advance): a Unix socket's file is the same kind of meeting point, of type `s`.
//! Run: `socket-demo reader unix --path /tmp/s`, then in another terminal `socket-demo writer
//! unix --path /tmp/s hi` or `socat - UNIX-CONNECT:/tmp/s`; `ss -xlp` lists the socket.
//! In production: `std::os::unix::net`, or the `interprocess` crate's local sockets.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use nix::sys::socket::{UnixCredentials, getsockopt, sockopt};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Pid, getpid, mkdtemp};

use crate::args::Flavour;

/// What the guards removed on their way out, for the "interrupted by SIGINT: removed ..."
/// line that `main` prints once they have all dropped.
static REMOVED: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn removed_so_far() -> Vec<String> {
    REMOVED.lock().map(|r| r.clone()).unwrap_or_default()
}

/// A file this process created (a socket file, or the file fdpass sends), and the private
/// directory it lives in if we made one. Dropping it unlinks both, but only in the process
/// that created them: a child made by fork(2) holds a copy of this guard and must not
/// remove its parent's socket.
pub struct OwnedFile {
    /// "socket file" or "file", for the narration.
    what: &'static str,
    path: PathBuf,
    dir: Option<PathBuf>,
    /// The file exists, and we made it: ours to remove.
    made: bool,
    owner: Pid,
}

impl OwnedFile {
    /// Where the socket will be: `at`, or `NAME` inside a fresh private directory.
    fn place(at: Option<&Path>, name: &str, what: &'static str) -> Result<OwnedFile> {
        let (path, dir) = match at {
            Some(path) => (path.to_path_buf(), None),
            None => {
                // mkdtemp makes a directory nobody else has, mode 0700, in one step: a
                // socket at a guessable path in /tmp could be taken first by anyone. The
                // pid in the name says whose it is, if one is ever left behind.
                let template =
                    std::env::temp_dir().join(format!("socket-demo-{}-XXXXXX", getpid()));
                let dir = mkdtemp(&template)
                    .with_context(|| format!("mkdtemp {}", template.display()))?;
                (dir.join(name), Some(dir))
            }
        };
        Ok(OwnedFile {
            what,
            path,
            dir,
            made: false,
            owner: getpid(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file at `path()` now exists, made by us: the guard will remove it.
    pub fn made(&mut self) {
        self.made = true;
    }

    /// Unlinks the file (and the private directory) now, and says so. After Ctrl+C, `main`
    /// says it instead, in its one "interrupted" line.
    pub fn remove(mut self, role: &str) {
        let removed = self.take();
        if !removed.is_empty() && crate::signals::caught().is_none() {
            say!(role, "removed {}", removed.join(" and "));
        }
    }

    /// Removes what is ours, notes it for `removed_so_far`, and returns it; leaves `Drop`
    /// nothing to do.
    fn take(&mut self) -> Vec<String> {
        let mut removed = Vec::new();
        if getpid() != self.owner {
            return removed;
        }
        if std::mem::take(&mut self.made) && std::fs::remove_file(&self.path).is_ok() {
            removed.push(format!("the {} {}", self.what, self.path.display()));
        }
        if let Some(dir) = self.dir.take() {
            if std::fs::remove_dir(&dir).is_ok() {
                removed.push(format!("its directory {}", dir.display()));
            }
        }
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

/// Binds a new Unix socket at `at` (or in a private directory) with `bind`, mode 0600.
/// The file is ours from here on: the guard removes it.
fn bind<S>(
    at: Option<&Path>,
    name: &str,
    make: impl FnOnce(&Path) -> io::Result<S>,
) -> Result<(S, OwnedFile)> {
    let mut file = OwnedFile::place(at, name, "socket file")?;
    // bind creates the file with mode 0777 less the umask. Who may connect is decided by
    // write permission on it, so make it 0600 from the start (no window where it is not).
    // Changing the umask is safe here: this program is single-threaded.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = make(&file.path);
    umask(old);
    match bound {
        Ok(socket) => {
            file.made();
            Ok((socket, file))
        }
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Err(already_there(&file.path)),
        Err(e) => Err(e).with_context(|| format!("bind {}", file.path.display())),
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

/// True if some socket is bound to `path`: the kernel lists every bound Unix socket, with
/// its path, in /proc/net/unix, and a socket leaves that list when it is closed, even by
/// the death of its process, while its file stays. Connecting to find out would be taken
/// for a writer.
pub fn is_live(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return true; // cannot tell: assume the careful answer
    };
    let wanted = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    table.lines().skip(1).any(|line| {
        path_field(line).is_some_and(|p| {
            let p = Path::new(p);
            // A relative path was bound from a working directory we do not know: the
            // same file name counts, the careful answer (a live reader is never declared
            // dead; a writer watching it would give up on it).
            p == path
                || (p.file_name() == path.file_name()
                    && (p.is_relative() || std::fs::canonicalize(p).is_ok_and(|c| c == wanted)))
        })
    })
}

/// The path in a line of /proc/net/unix (`Num RefCount Protocol Flags Type St Inode Path`):
/// everything after the seventh field, as given to bind(2); it may hold spaces.
fn path_field(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..7 {
        rest = rest.trim_start(); // the inode is padded with spaces
        rest = &rest[rest.find(' ')?..];
    }
    rest.strip_prefix(' ').filter(|p| !p.is_empty())
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

/// The reader's stream socket: bound, listening, 0600.
pub fn listen(at: Option<&Path>) -> Result<(UnixListener, OwnedFile)> {
    bind(at, "socket", |p| UnixListener::bind(p))
}

/// The reader's datagram socket, bound and 0600.
pub fn bind_datagram(at: Option<&Path>) -> Result<(UnixDatagram, OwnedFile)> {
    bind(at, "socket", |p| UnixDatagram::bind(p))
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
    connect(path, flavour, |p| UnixStream::connect(p))
}

/// A datagram socket whose default destination is the reader's socket. `own` first binds
/// it to a file of its own, in a private directory, so the reader can answer (a ping needs
/// that: an unbound Unix datagram socket has no address to reply to).
pub fn connect_datagram(path: &Path, own: bool) -> Result<(UnixDatagram, Option<OwnedFile>)> {
    let (socket, file) = if own {
        let (socket, file) = bind(None, "writer.socket", |p| UnixDatagram::bind(p))?;
        (socket, Some(file))
    } else {
        (UnixDatagram::unbound().context("socket")?, None)
    };
    connect(path, Flavour::UnixDgram, |p| socket.connect(p))?;
    Ok((socket, file))
}

/// A private directory for a writer's own file (the ping writer's socket, the fdpass
/// writer's file), removed with it.
pub fn private_file(name: &str) -> Result<OwnedFile> {
    OwnedFile::place(None, name, "file")
}

/// SO_PEERCRED: who connected, as the kernel recorded it at connect(2).
pub fn peer_credentials(socket: impl AsFd) -> Result<UnixCredentials> {
    getsockopt(&socket, sockopt::PeerCredentials).context("getsockopt SO_PEERCRED")
}

/// `pid 4242 uid 1000 gid 1000`
pub fn describe(cred: &UnixCredentials) -> String {
    format!("pid {} uid {} gid {}", cred.pid(), cred.uid(), cred.gid())
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

    #[test]
    fn a_path_is_quoted_for_the_shell_when_it_needs_to_be() {
        assert_eq!(shell_quoted("/tmp/s"), "/tmp/s");
        assert_eq!(shell_quoted("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quoted("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
