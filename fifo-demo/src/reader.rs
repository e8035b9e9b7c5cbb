//! `fifo-demo reader [--path P]`: write our pid to `P.pid`, make the FIFO, wait in
//! open(2) until a writer opens it, print every line that arrives until EOF, then remove
//! the FIFO and `P.pid`, on every way out but SIGKILL (then a waiting writer names them).
//!
//! 对于命名管道，它可以在不相关的进程间也能相互通信: a writer finds this process by
//! the path alone, whoever started it (`fifo-demo writer`, `echo hi > P`, any program).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fifo_demo::fifo::{self, Fifo, PrivateDir};
use fifo_demo::io::{self, LineReader};
use fifo_demo::stop;

use crate::args::Workload;
use crate::wire::{self, describe, reply_path};
use crate::workload::{self, Summary};

const ROLE: &str = "reader";

pub fn run(path: Option<&Path>, workload: &Workload) -> Result<()> {
    let (dir, path) = match path {
        Some(path) => (None, path.to_path_buf()),
        None => {
            let dir = PrivateDir::create("fifo-demo")?;
            say!(
                ROLE,
                "made the private directory {} (mode 0700) to hold the FIFO",
                dir.path().display()
            );
            let path = dir.path().join("fifo");
            (Some(dir), path)
        }
    };
    // The pid file first, then P.reply, then P: a writer that finds P finds the others.
    let mut fifo = Fifo::publish(&path, dir.as_ref().map(PrivateDir::path))?;
    let pid_file = fifo::pid_path(&path);
    say!(
        ROLE,
        "wrote our pid to {}: a writer waiting for us checks there that we still run",
        pid_file.display()
    );
    let reply = match workload {
        Workload::Ping { .. } => Some(Fifo::create(&reply_path(&path))?),
        _ => None,
    };
    if let Some(reply) = &reply {
        say_made(reply.path())?;
    }
    fifo.make()?;
    say_made(&path)?;
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
    if let Some(reply) = &reply {
        gone.push(reply.path().display().to_string());
    }
    gone.push(pid_file.display().to_string());
    let mut removed = fifo.remove(); // P, then P.pid
    if let Some(reply) = reply {
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
                "removed {gone}: the names are gone, and no message was ever on disk"
            );
            summary.print(ROLE);
            Ok(())
        }
        Err(e) => {
            match stop::caught() {
                Some(sig) => say!(ROLE, "interrupted by {sig}: removed {gone}"),
                None if removed.is_ok() => say!(
                    ROLE,
                    "removed {gone}, all of it ours (a writer makes nothing here, so a dead one leaves nothing)"
                ),
                None => {}
            }
            Err(e)
        }
    }
}

/// Shows the FIFO mkfifo made the way `ls -l` would: the `p` is the file type "pipe".
fn say_made(path: &Path) -> Result<()> {
    say!(
        ROLE,
        "created {} with mkfifo: {} (a file of type p: a name in the filesystem, no data on disk)",
        path.display(),
        describe(path)?
    );
    Ok(())
}

/// Opens the FIFO (the rendezvous), then receives whatever the workload says.
fn receive(path: &Path, workload: &Workload) -> Result<Summary> {
    let shown = path.display();
    say!(
        ROLE,
        "opening {shown} for reading: open blocks until a writer opens it"
    );
    let asked = Instant::now();
    // This open waits for any writer, not a particular one, so no peer's death can leave
    // it waiting in vain: a writer that died before opening is simply not the one we
    // meet; the next one (or `echo hi > P`) is. Ctrl+C stops the wait.
    let fifo = io::open_for_reading(path, &wire::stop)?;
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
            let reply = open_reply(path, &fifo)?;
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
    while let Some(line) = lines.next_line(&wire::stop).context("read the FIFO")? {
        say!(
            ROLE,
            "received {} ({} bytes)",
            crate::writer::shown(line),
            line.len()
        );
        summary.count(line.len());
    }
    say!(
        ROLE,
        "EOF: every writer has closed its end (a writer that exits, or is killed even by SIGKILL, \
         closes it too: EOF cannot tell which)"
    );
    Ok(summary.finish())
}

/// The answers go back through a second FIFO: one FIFO carries bytes one way only. The
/// writer opens P.reply for reading before it opens P, so it is normally open already.
/// If not, open(2) with O_NONBLOCK fails with ENXIO and we try again, watching `fifo`:
/// POLLHUP there means every writer of P is gone (exited or killed), and nobody will
/// open P.reply. A blocking open would sleep forever then.
fn open_reply(path: &Path, fifo: &OwnedFd) -> Result<OwnedFd> {
    let reply: PathBuf = reply_path(path);
    let shown = reply.display();
    say!(
        ROLE,
        "opening {shown} for writing: the answers go back through a second FIFO"
    );
    if let Some(fd) = io::try_open_for_writing(&reply)? {
        return Ok(fd);
    }
    say!(
        ROLE,
        "nobody has {shown} open for reading yet (ENXIO): trying every {} ms while a writer holds {} open",
        io::RETRY.as_millis(),
        path.display()
    );
    let writer_gone = || io::peer_closed(fifo).unwrap_or(true);
    let stop = || wire::stop() || writer_gone();
    match io::open_for_writing(&reply, Duration::MAX, &stop) {
        Err(_) if !wire::stop() && writer_gone() => bail!(
            "the writer closed {} before opening {shown}: it exited or was killed (a FIFO cannot tell which)",
            path.display()
        ),
        opened => opened,
    }
}
