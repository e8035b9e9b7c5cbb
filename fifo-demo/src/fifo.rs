//! The things this demo creates in the filesystem, each owned by a guard that removes it.
//!
//! - `PrivateDir`: a fresh 0700 directory from mkdtemp(3). A guessable name in /tmp can
//!   be taken in advance by anyone: our mkfifo then fails (EEXIST), and a writer given
//!   that path would talk to whoever made the FIFO there. Inside this directory only our
//!   user can reach it.
//! - `Fifo`: the file of type `p` itself (提前创建了一个类型为管道的设备文件), made with
//!   mkfifo(3), mode 0600, and unlinked when its guard drops: on success, on an error
//!   and after Ctrl+C alike.
//! - `PidFile`: `P.pid`, the reader's pid and start time, so that a writer waiting for
//!   the reader can tell a reader that is coming from one that was killed (SIGKILL: no
//!   guard runs, P stays and nobody will ever open it). The file is only where the pid is
//!   published; whether that process lives is asked of the kernel (/proc/PID/stat).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::{PathconfVar, fpathconf, mkdtemp, mkfifo, pathconf};

/// A private directory, removed with everything in it when dropped.
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Makes `$TMPDIR/fifo-demo-XXXXXX`: mkdtemp picks a name nobody has and creates it
    /// with mode 0700 in one step, so there is no moment when it is open to others.
    pub fn create() -> Result<PrivateDir> {
        let template = std::env::temp_dir().join("fifo-demo-XXXXXX");
        let path = mkdtemp(&template).with_context(|| format!("mkdtemp {}", template.display()))?;
        Ok(PrivateDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory now, reporting a failure (`Drop` can only ignore it).
    pub fn remove(mut self) -> Result<()> {
        let path = std::mem::take(&mut self.path); // leaves `Drop` nothing to do
        std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // remove_dir_all, not remove_dir: a FIFO left by a killed reader goes too.
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A FIFO this process created; unlinked when dropped.
pub struct Fifo {
    path: PathBuf,
}

impl Fifo {
    /// mkfifo(3) with mode 0600. It never reuses a file: if the name exists, that is an
    /// error, because a FIFO someone else made could have someone else at its other end.
    pub fn create(path: &Path) -> Result<Fifo> {
        let shown = path.display();
        match mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(()) => Ok(Fifo {
                path: path.to_path_buf(),
            }),
            Err(Errno::EEXIST) => bail!(
                "create FIFO {shown}: {shown} already exists (left by a killed run?): \
                 remove it with rm {shown}"
            ),
            Err(e) => Err(e).with_context(|| format!("mkfifo {shown}")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unlinks the FIFO now, reporting a failure (`Drop` can only ignore it). Processes
    /// that still have it open keep their pipe: only the name goes.
    pub fn remove(mut self) -> Result<()> {
        let path = std::mem::take(&mut self.path); // leaves `Drop` nothing to do
        std::fs::remove_file(&path).with_context(|| format!("unlink {}", path.display()))
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What `ls -l` would say about `path`: `prw------- st_mode=010600 size=0`.
pub fn describe(path: &Path) -> Result<String> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    let kind = match meta.file_type() {
        t if t.is_fifo() => 'p',
        t if t.is_dir() => 'd',
        t if t.is_file() => '-',
        _ => '?',
    };
    let perms = meta.permissions().mode();
    let rwx: String = (0..9)
        .map(|bit| match perms & (0o400 >> bit) {
            0 => '-',
            _ => ['r', 'w', 'x'][bit % 3],
        })
        .collect();
    Ok(format!(
        "{kind}{rwx} st_mode={:06o} size={}",
        meta.mode(),
        meta.size()
    ))
}

/// PIPE_BUF for an open FIFO: the largest write(2) the kernel promises to put into the
/// pipe in one piece, never interleaved with another writer's bytes.
pub fn pipe_buf(fd: impl AsFd) -> Result<usize> {
    as_size(fpathconf(fd, PathconfVar::PIPE_BUF).context("fpathconf PIPE_BUF")?)
}

/// PIPE_BUF for the FIFO at `path`, before anyone opens it.
pub fn pipe_buf_at(path: &Path) -> Result<usize> {
    as_size(pathconf(path, PathconfVar::PIPE_BUF).context("pathconf PIPE_BUF")?)
}

fn as_size(limit: Option<std::ffi::c_long>) -> Result<usize> {
    let limit = limit.context("PIPE_BUF: the kernel reports no limit")?;
    usize::try_from(limit).context("PIPE_BUF: not a size")
}

/// The second FIFO of the ping workload, `P.reply`: the answers travel back through it.
pub fn reply_path(path: &Path) -> PathBuf {
    let mut reply = path.as_os_str().to_owned();
    reply.push(".reply");
    PathBuf::from(reply)
}

/// `P.pid`, beside the FIFO P: the pid file of the process that reads P.
pub fn pid_path(path: &Path) -> PathBuf {
    let mut pid = path.as_os_str().to_owned();
    pid.push(".pid");
    PathBuf::from(pid)
}

/// `P.pid`, written by the process that reads P before it makes P, removed when dropped.
/// Its first line is `PID STARTTIME` (the start time, field 22 of /proc/PID/stat in clock
/// ticks since boot, tells this process from a later one that got the same pid, unless
/// both started in the same tick); a second line, if any, is the
/// directory that process made around P, for a survivor to name.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn create(fifo: &Path, dir: Option<&Path>) -> Result<PidFile> {
        let path = pid_path(fifo);
        let shown = path.display();
        let me = std::process::id();
        let start = start_time(me).context("read our own /proc/self/stat")?;
        let mut text = format!("{me} {start}\n");
        if let Some(dir) = dir {
            text.push_str(&format!("{}\n", dir.display()));
        }
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true) // never trust a pid file someone else left
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A killed reader leaves P and P.reply too: name all that is there.
                let left: Vec<String> = [fifo.to_path_buf(), reply_path(fifo), path.clone()]
                    .iter()
                    .filter(|p| std::fs::symlink_metadata(p).is_ok())
                    .map(|p| p.display().to_string())
                    .collect();
                bail!(
                    "create {shown}: it already exists (left by a killed run?): remove what is there with rm {}",
                    left.join(" ")
                )
            }
            Err(e) => return Err(e).with_context(|| format!("create {shown}")),
        };
        let guard = PidFile { path: path.clone() };
        file.write_all(text.as_bytes())
            .with_context(|| format!("write {shown}"))?;
        Ok(guard)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file now, reporting a failure (`Drop` can only ignore it).
    pub fn remove(mut self) -> Result<()> {
        let path = std::mem::take(&mut self.path); // leaves `Drop` nothing to do
        std::fs::remove_file(&path).with_context(|| format!("unlink {}", path.display()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a writer can learn about the reader of the FIFO `path`.
pub enum ReaderOf {
    /// No `P.pid`: a FIFO made by `mkfifo`, not by `fifo-demo reader`. Nothing tells
    /// whether a reader will come.
    Unknown,
    /// The process named in `P.pid` is running.
    Alive(u32),
    /// The process named in `P.pid` is gone (or a zombie) and did not remove its files:
    /// it was killed by a signal no handler sees (SIGKILL), or crashed. `remove` is the
    /// command that removes what it left.
    Dead { pid: u32, remove: String },
}

/// Reads `P.pid` and asks the kernel whether that process still runs. Assumes /proc
/// shows it (same user; `hidepid` hides only other users' processes).
pub fn reader_of(path: &Path) -> ReaderOf {
    let Ok(text) = std::fs::read_to_string(pid_path(path)) else {
        return ReaderOf::Unknown;
    };
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(Ok(pid)), Some(Ok(start))) = (
        first.next().map(str::parse::<u32>),
        first.next().map(str::parse::<u64>),
    ) else {
        return ReaderOf::Unknown; // half written, or not ours
    };
    if start_time(pid) == Some(start) {
        return ReaderOf::Alive(pid);
    }
    let remove = match lines.next() {
        Some(dir) => format!("rm -r {dir}"),
        None => {
            let mut files = vec![path.to_path_buf()];
            let reply = reply_path(path);
            if reply.exists() {
                files.push(reply);
            }
            files.push(pid_path(path));
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            format!("rm {}", files.join(" "))
        }
    };
    ReaderOf::Dead { pid, remove }
}

/// The start time of a running process (field 22 of /proc/PID/stat, in clock ticks
/// since boot), or None if there is no such process or it is a zombie (state Z, X):
/// a zombie has died, it only waits for its parent to read its exit status.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?; // field 3
    if matches!(state, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok() // field 22
}
