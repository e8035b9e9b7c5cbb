//! `fifo-demo reader [--path P]`: make the FIFO, wait in open(2) until a writer opens
//! it, print every line that arrives until EOF, then remove the FIFO.
//!
//! 对于命名管道，它可以在不相关的进程间也能相互通信: a writer finds this process by
//! the path alone, whoever started it (`fifo-demo writer`, `echo hi > P`, any program).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use nix::fcntl::OFlag;

use crate::args::Workload;
use crate::fifo::{self, Fifo, PrivateDir};
use crate::signals;
use crate::wire::{self, LineReader};
use crate::workload::{self, Summary};

const ROLE: &str = "reader";

pub fn run(path: Option<&Path>, workload: &Workload) -> Result<()> {
    let (dir, path) = match path {
        Some(path) => (None, path.to_path_buf()),
        None => {
            let dir = PrivateDir::create()?;
            say!(
                ROLE,
                "made the private directory {} (mode 0700) to hold the FIFO",
                dir.path().display()
            );
            let path = dir.path().join("fifo");
            (Some(dir), path)
        }
    };
    let fifo = make_fifo(&path)?;
    let reply = match workload {
        Workload::Ping { .. } => Some(make_fifo(&fifo::reply_path(&path))?),
        _ => None,
    };
    if dir.is_some() {
        let p = path.display();
        say!(
            ROLE,
            "from another terminal: fifo-demo writer --path {p} hello   or: echo hello > {p}"
        );
    }

    let outcome = receive(&path, workload);

    // Remove what we made on every way out, the summary (if any) coming last.
    let mut gone = vec![fifo.path().display().to_string()];
    let mut removed = fifo.remove();
    if let Some(reply) = reply {
        gone.push(reply.path().display().to_string());
        removed = removed.and(reply.remove());
    }
    if let Some(dir) = dir {
        gone.push(dir.path().display().to_string());
        removed = removed.and(dir.remove());
    }
    let gone = gone.join(" and ");
    match outcome {
        Ok(summary) => {
            removed?;
            say!(
                ROLE,
                "removed {gone}: the name is gone, and no data was ever on disk"
            );
            summary.print(ROLE);
            Ok(())
        }
        Err(e) => {
            if let Some(sig) = signals::caught() {
                say!(ROLE, "interrupted by {sig}: removed {gone}");
            }
            Err(e)
        }
    }
}

/// mkfifo, then show the result the way `ls -l` would: the `p` is the file type "pipe".
fn make_fifo(path: &Path) -> Result<Fifo> {
    let fifo = Fifo::create(path)?;
    say!(
        ROLE,
        "created {} with mkfifo: {} (a file of type p: a name in the filesystem, no data on disk)",
        path.display(),
        fifo::describe(path)?
    );
    Ok(fifo)
}

/// Opens the FIFO (the rendezvous), then receives whatever the workload says.
fn receive(path: &Path, workload: &Workload) -> Result<Summary> {
    let shown = path.display();
    say!(
        ROLE,
        "opening {shown} for reading: open blocks until a writer opens it"
    );
    let asked = Instant::now();
    let fifo =
        wire::open(path, OFlag::O_RDONLY)?.with_context(|| format!("open {shown} for reading"))?;
    say!(
        ROLE,
        "a writer opened {shown} after {:.1} ms",
        asked.elapsed().as_secs_f64() * 1e3
    );

    let summary = match *workload {
        Workload::Text(_) => print_lines(fifo),
        Workload::Bulk { count, size } => {
            say!(
                ROLE,
                "checking {count} messages of {size} bytes, every byte"
            );
            workload::check_bulk(&fifo, count, size)
        }
        Workload::Ping { count, size } => {
            let reply = open_reply(path)?;
            say!(ROLE, "answering {count} pings of {size} bytes");
            workload::echo(&fifo, &reply, count, size)
        }
    };
    summary.with_context(|| format!("receive from {shown}"))
}

/// One narrated line per message, until every writer has closed its end.
fn print_lines(fifo: OwnedFd) -> Result<Summary> {
    let mut summary = Summary::start();
    let mut lines = LineReader::new(fifo);
    while let Some(line) = lines.next_line().context("read the FIFO")? {
        say!(
            ROLE,
            "received {} ({} bytes)",
            crate::writer::shown(line),
            line.len()
        );
        summary.count(line.len());
    }
    say!(ROLE, "EOF: every writer has closed its end");
    Ok(summary.finish())
}

/// The answers go back through a second FIFO: one FIFO carries bytes one way only. The
/// writer opens P, then P.reply, in the same order as we do, so neither waits forever.
fn open_reply(path: &Path) -> Result<OwnedFd> {
    let reply: PathBuf = fifo::reply_path(path);
    say!(
        ROLE,
        "opening {} for writing: the answers go back through a second FIFO",
        reply.display()
    );
    wire::open(&reply, OFlag::O_WRONLY)?
        .with_context(|| format!("open {} for writing", reply.display()))
}
