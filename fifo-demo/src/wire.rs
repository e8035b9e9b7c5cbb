//! The narrated binary's glue around the library (`fifo_demo::io`): the "stop?" callback
//! every wait gets (a SIGINT, SIGTERM or SIGHUP noted by `fifo_demo::stop`), the
//! sentences for a peer that left, and what `ls -l` would show of a FIFO.

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use nix::errno::Errno;

use fifo_demo::io;

/// The "stop?" callback of every wait: did a SIGINT, SIGTERM or SIGHUP arrive?
pub fn stop() -> bool {
    fifo_demo::stop::caught().is_some()
}

/// Writes all of `bytes` (`io::write_all`); EPIPE becomes a sentence naming the `peer`.
pub fn write_all(fd: impl AsFd, bytes: &[u8], peer: &str) -> Result<()> {
    io::write_all(fd, bytes, &stop).map_err(|e| match io::errno(&e) {
        Some(Errno::EPIPE) => {
            anyhow!("the {peer} is gone (EPIPE): nobody has the FIFO open for reading any more")
        }
        _ => e,
    })
}

/// `io::read_full`, stopped by our signals.
pub fn read_full(fd: impl AsFd, buf: &mut [u8]) -> Result<usize> {
    io::read_full(fd, buf, &stop)
}

/// `io::wait_readable`; EPIPE (nobody reads `to`) becomes a sentence naming the `peer`.
pub fn wait_readable(from: impl AsFd, to: impl AsFd, peer: &str) -> Result<()> {
    io::wait_readable(from, to, &stop).map_err(|e| match io::errno(&e) {
        Some(Errno::EPIPE) => {
            anyhow!("the {peer} is gone: nobody has the FIFO open for reading any more")
        }
        _ => e,
    })
}

/// The second FIFO of the ping workload, `P.reply`: the answers travel back through it.
pub fn reply_path(path: &Path) -> PathBuf {
    let mut reply = path.as_os_str().to_owned();
    reply.push(".reply");
    PathBuf::from(reply)
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
