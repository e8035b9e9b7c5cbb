//! The things this demo creates in the filesystem, each owned by a guard that removes it.
//!
//! - `PrivateDir`: a fresh 0700 directory from mkdtemp(3). A FIFO at a guessable path in
//!   /tmp could be opened, or planted in advance, by anyone; inside this directory only
//!   our user can reach it.
//! - `Fifo`: the file of type `p` itself (提前创建了一个类型为管道的设备文件), made with
//!   mkfifo(3), mode 0600, and unlinked when its guard drops: on success, on an error
//!   and after Ctrl+C alike.

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
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
