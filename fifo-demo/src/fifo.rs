//! The FIFO as a file: made, published, watched, removed. The open, read and write
//! calls are in [`crate::io`].
//!
//! - [`Fifo`]: mkfifo(3) with mode 0600, never reusing a name that exists; its guard
//!   unlinks the FIFO, its pid file and its private directory, on success, on an error
//!   and after Ctrl+C alike (once the waits return: see [`crate::stop`]; not after
//!   SIGKILL, which runs no code of ours).
//!   [`Fifo::create_private`] is the usual way: a fresh 0700 directory from mkdtemp(3),
//!   the pid file, then the FIFO in it.
//! - `P.pid` beside the FIFO P: the reader's pid and start time, published before P is
//!   made. A writer waiting for a reader asks [`reader_of`] whether that process still
//!   runs ([`ReaderGone`] if not): a reader killed by SIGKILL leaves P behind and nobody will ever open it, so a
//!   writer that waited on the name alone would wait forever. The kernel is asked (via
//!   /proc/PID/stat), not the name; the file is only where the pid is published.
//!
//! Needs nix with the features "fs" (mkfifo, Mode) and "feature" (mkdtemp).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::{mkdtemp, mkfifo};

/// A private directory (mode 0700, from mkdtemp), removed with all in it when dropped.
///
/// A guessable name in /tmp can be taken in advance by anyone: then our mkfifo fails
/// (EEXIST), or a writer given that path talks to whoever made the FIFO there. Inside
/// this directory only our user (and root) can reach it.
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Makes `$TMPDIR/PREFIX-XXXXXX`: mkdtemp picks a name nobody has and creates it
    /// with mode 0700 in one step, so there is no moment when it is open to others.
    pub fn create(prefix: &str) -> Result<PrivateDir> {
        let template = std::env::temp_dir().join(format!("{prefix}-XXXXXX"));
        let path = mkdtemp(&template).with_context(|| format!("mkdtemp {}", template.display()))?;
        Ok(PrivateDir { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and all in it now, reporting a failure (`Drop` ignores it).
    pub fn remove(mut self) -> Result<()> {
        let path = std::mem::take(&mut self.path); // leaves `Drop` nothing to do
        std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // remove_dir_all, not remove_dir: a FIFO left by a killed peer goes too.
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A FIFO this process made, with its pid file and private directory if it has them;
/// the guard removes all three when dropped. Removing the name does not end a pipe
/// that is open: processes holding it keep reading and writing; only the name goes.
///
/// # Examples
/// ```
/// use fifo_demo::fifo::{Fifo, reader_of};
/// let fifo = Fifo::create_private("doc-fifo").unwrap();
/// let dir = fifo.dir().unwrap().to_path_buf();
/// assert_eq!(reader_of(fifo.path()).unwrap(), Some(std::process::id()));
/// drop(fifo); // unlinks the FIFO and P.pid, removes the directory
/// assert!(!dir.exists());
/// ```
pub struct Fifo {
    path: PathBuf,
    made: bool, // false between `publish` and `make`
    pid_file: Option<PathBuf>,
    dir: Option<PrivateDir>,
}

impl Fifo {
    /// The usual way: a private directory `$TMPDIR/PREFIX-XXXXXX`, our pid in
    /// `DIR/fifo.pid` (naming the directory, for a survivor to remove), then the FIFO
    /// `DIR/fifo`. Call it in the process that will read the FIFO.
    pub fn create_private(prefix: &str) -> Result<Fifo> {
        let dir = PrivateDir::create(prefix)?;
        let mut fifo = Fifo::create_published(&dir.path().join("fifo"), Some(dir.path()))?;
        fifo.dir = Some(dir);
        Ok(fifo)
    }

    /// [`Fifo::publish`], then [`Fifo::make`].
    pub fn create_published(path: &Path, dir: Option<&Path>) -> Result<Fifo> {
        let mut fifo = Fifo::publish(path, dir)?;
        fifo.make()?; // on an error, `fifo` drops and unlinks P.pid
        Ok(fifo)
    }

    /// Publishes our pid in `P.pid`, exclusively, mode 0600, before P exists: a writer
    /// that finds P finds `P.pid` too, so make P ([`Fifo::make`]) after anything else a
    /// writer needs (a second FIFO). Call it in the process that will read P. `dir`, if
    /// given, goes into `P.pid` as the directory a survivor should remove if we are
    /// killed (not ours to remove here: whoever made it removes it). A `P.pid` that
    /// exists is an error naming what is there: one someone else left is never trusted.
    pub fn publish(path: &Path, dir: Option<&Path>) -> Result<Fifo> {
        let pid_file = publish_pid(path, dir)?;
        Ok(Fifo {
            path: path.to_path_buf(),
            made: false,
            pid_file: Some(pid_file),
            dir: None,
        })
    }

    /// Makes the FIFO that [`Fifo::publish`] announced: mkfifo(3), mode 0600 (less
    /// what the umask clears). EEXIST (in the chain) if the name exists, even if this
    /// guard made it: a file is never reused.
    pub fn make(&mut self) -> Result<()> {
        make_fifo(&self.path)?;
        self.made = true;
        Ok(())
    }

    /// mkfifo(3) at `path`, nothing else (for a FIFO whose reader is watched some other
    /// way). Never reuses a file: if the name exists, that is an error (EEXIST), because
    /// a FIFO someone else made could have someone else at its other end.
    pub fn create(path: &Path) -> Result<Fifo> {
        let (path, pid_file, dir) = (path.to_path_buf(), None, None);
        let mut fifo = Fifo {
            path,
            made: false,
            pid_file,
            dir,
        };
        fifo.make()?;
        Ok(fifo)
    }

    /// The FIFO's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The private directory made for this FIFO, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(PrivateDir::path)
    }

    /// Removes the FIFO, then `P.pid`, then the directory now, reporting the first
    /// failure (`Drop` can only ignore it).
    pub fn remove(mut self) -> Result<()> {
        let mut done = Ok(());
        if std::mem::take(&mut self.made) {
            // `made` false: leaves `Drop` nothing to do
            let path = &self.path;
            done = std::fs::remove_file(path).with_context(|| format!("unlink {}", path.display()));
        }
        if let Some(pid_file) = self.pid_file.take() {
            let unlinked = std::fs::remove_file(&pid_file);
            done = done.and(unlinked.with_context(|| format!("unlink {}", pid_file.display())));
        }
        if let Some(dir) = self.dir.take() {
            done = done.and(dir.remove());
        }
        done
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(pid_file) = &self.pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
        // then `dir`, a field, drops: the directory goes last
    }
}

fn make_fifo(path: &Path) -> Result<()> {
    let shown = path.display();
    match mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => Err(anyhow::Error::from(Errno::EEXIST).context(format!(
            "create FIFO {shown}: {shown} already exists (left by a killed run?): \
             remove it with rm {shown}"
        ))),
        Err(e) => Err(e).with_context(|| format!("mkfifo {shown}")),
    }
}

/// `P.pid`, beside the FIFO P: where the process that reads P publishes its pid.
pub fn pid_path(fifo: &Path) -> PathBuf {
    let mut pid = fifo.as_os_str().to_owned();
    pid.push(".pid");
    PathBuf::from(pid)
}

/// Writes `P.pid` exclusively, mode 0600: first line `PID STARTTIME` (the start time,
/// field 22 of /proc/PID/stat in clock ticks since boot, tells us from a later process
/// that got the same pid, unless both started in the same tick), second line `dir` if
/// given.
fn publish_pid(fifo: &Path, dir: Option<&Path>) -> Result<PathBuf> {
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
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let left = leftovers(fifo).join(" ");
            bail!(
                "create {shown}: it already exists (left by a killed run?): remove what is there with rm {left}"
            )
        }
        Err(e) => return Err(e).with_context(|| format!("create {shown}")),
    };
    let written = file.write_all(text.as_bytes());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e).with_context(|| format!("write {shown}"));
    }
    Ok(path)
}

/// Of P, any FIFO `P.*` beside it (a second FIFO such as `P.reply`) and `P.pid`: the
/// ones that exist.
fn leftovers(fifo: &Path) -> Vec<String> {
    let mut files = vec![fifo.to_path_buf()];
    let prefix = format!(
        "{}.",
        fifo.file_name().unwrap_or_default().to_string_lossy()
    );
    let siblings = fifo.parent().and_then(|dir| std::fs::read_dir(dir).ok());
    for entry in siblings.into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_fifo = entry.file_type().is_ok_and(|t| t.is_fifo());
        if name.starts_with(&prefix) && is_fifo {
            files.push(entry.path());
        }
    }
    files.push(pid_path(fifo));
    files
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.display().to_string())
        .collect()
}

/// The reader named in `P.pid` is gone (or a zombie) and did not remove its files: it
/// was killed by a signal no handler sees (SIGKILL), or crashed. It will never open P.
#[derive(Debug)]
pub struct ReaderGone {
    /// The FIFO it made.
    pub fifo: PathBuf,
    /// Its pid.
    pub pid: u32,
    /// The shell command that removes what it left: `rm -r DIR`, or `rm P P.pid`.
    pub remove: String,
}

impl std::fmt::Display for ReaderGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (pid, fifo) = (self.pid, self.fifo.display());
        write!(
            f,
            "the reader {pid} that made {fifo} is gone and did not remove it (killed by SIGKILL, \
             or crashed: its cleanup never ran); remove what it left with: {}",
            self.remove
        )
    }
}

impl std::error::Error for ReaderGone {}

/// Reads `P.pid` and asks the kernel whether that process still runs: `Ok(Some(pid))`
/// if it does (a stopped one too: SIGSTOP is not death), `Ok(None)` if no readable
/// `P.pid` names one (a FIFO made by `mkfifo`: nothing tells whether a reader will
/// come), [`ReaderGone`] if it died. Assumes /proc shows it: the same user or hidepid
/// off, and the same pid namespace.
pub fn reader_of(path: &Path) -> Result<Option<u32>, ReaderGone> {
    let Ok(text) = std::fs::read_to_string(pid_path(path)) else {
        return Ok(None);
    };
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(Ok(pid)), Some(Ok(start))) = (
        first.next().map(str::parse::<u32>),
        first.next().map(str::parse::<u64>),
    ) else {
        return Ok(None); // half written, or not ours
    };
    if start_time(pid) == Some(start) {
        return Ok(Some(pid));
    }
    let remove = match lines.next() {
        Some(dir) => format!("rm -r {dir}"),
        None => format!("rm {}", leftovers(path).join(" ")),
    };
    let fifo = path.to_path_buf();
    Err(ReaderGone { fifo, pid, remove })
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
