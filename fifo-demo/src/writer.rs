//! `fifo-demo writer --path P [MESSAGE...]`: open the FIFO a reader made and send each
//! message as one line, or each line of standard input when no MESSAGE is given.
//!
//! It never creates P: the reader owns the FIFO. Any program can take this side
//! (`echo hi > P`), and this one works against any reader (`mkfifo P; cat P &`).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::args::Workload;
use crate::fifo;
use crate::signals;
use crate::wire::{self, LineReader};
use crate::workload::{self, Summary};

const ROLE: &str = "writer";

pub fn run(path: &Path, workload: &Workload) -> Result<()> {
    let result = send(path, workload);
    if let (Err(_), Some(sig)) = (&result, signals::caught()) {
        say!(
            ROLE,
            "interrupted by {sig}: nothing to remove, the FIFO is the reader's"
        );
    }
    let summary = result?;
    summary.print(ROLE);
    Ok(())
}

fn send(path: &Path, workload: &Workload) -> Result<Summary> {
    let shown = path.display();
    let fifo = open_fifo(path).with_context(|| format!("open {shown} for writing"))?;
    let summary = match *workload {
        Workload::Text(ref messages) => {
            send_lines(&fifo, messages).with_context(|| format!("send to {shown}"))?
        }
        Workload::Bulk { count, size } => {
            say!(ROLE, "sending {count} messages of {size} bytes");
            workload::send_bulk(&fifo, count, size).with_context(|| format!("send to {shown}"))?
        }
        Workload::Ping { count, size } => {
            let reply = open_reply(path)?;
            say!(ROLE, "timing {count} round trips of {size} bytes");
            workload::ping(&fifo, &reply, count, size).with_context(|| format!("ping {shown}"))?
        }
    };
    drop(fifo);
    say!(
        ROLE,
        "closed {shown}: the reader sees EOF once every writer has closed"
    );
    Ok(summary)
}

/// Opens an existing FIFO for writing: blocks until a reader has it open.
fn open_fifo(path: &Path) -> Result<OwnedFd> {
    let shown = path.display();
    // Look before opening: open(2) would fail on a missing name anyway, but on a regular
    // file it would succeed, and our messages would land in that file.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_fifo(path)),
        Err(e) => return Err(e).with_context(|| format!("stat {shown}")),
        Ok(meta) if !meta.file_type().is_fifo() => bail!(
            "{shown} is not a FIFO ({}): the reader makes one with mkfifo",
            fifo::describe(path)?
        ),
        Ok(_) => {}
    }
    say!(
        ROLE,
        "opening {shown} for writing: open blocks until a reader opens it"
    );
    let asked = Instant::now();
    // No O_CREAT, ever: making the name is the reader's job.
    let fd = match wire::open(path, OFlag::O_WRONLY)? {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(no_fifo(path)), // removed since we looked
        Err(e) => return Err(e.into()),
    };
    say!(
        ROLE,
        "a reader opened {shown} after {:.1} ms",
        asked.elapsed().as_secs_f64() * 1e3
    );
    Ok(fd)
}

fn no_fifo(path: &Path) -> anyhow::Error {
    let p = path.display();
    anyhow!("no FIFO at {p}: start the reader first (fifo-demo reader --path {p})")
}

/// Sends each message as `text\n` with one write(2).
fn send_lines(fifo: impl AsFd, messages: &[String]) -> Result<Summary> {
    let pipe_buf = fifo::pipe_buf(fifo.as_fd())?;
    let mut source = if messages.is_empty() {
        say!(
            ROLE,
            "no MESSAGE given: sending each line of standard input until EOF (Ctrl+D)"
        );
        Source::Stdin(LineReader::new(std::io::stdin()))
    } else {
        Source::Args(messages.iter())
    };
    let mut line = Vec::new(); // reused: text + '\n'
    let mut summary = Summary::start();
    while let Some(text) = source.next()? {
        line.clear();
        line.extend_from_slice(text);
        line.push(b'\n');
        if line.len() > pipe_buf {
            say!(
                ROLE,
                "warning: this message is {} bytes with its newline, more than PIPE_BUF ({pipe_buf}): \
                 with several writers at once its bytes may be interleaved with theirs",
                line.len()
            );
        }
        // One write(2) for the whole line: the kernel puts a write of at most PIPE_BUF
        // bytes into the pipe in one piece, so lines from several writers never mix.
        wire::write_all(fifo.as_fd(), &line, "reader")
            .with_context(|| format!("message {}", summary.messages))?;
        say!(ROLE, "sent {} ({} bytes)", shown(text), text.len());
        summary.count(text.len());
    }
    Ok(summary.finish())
}

/// How a sent text appears in the narration: quoted in full up to SHOWN characters; a
/// longer one (act 2 sends lines of 4000 bytes) as its first SHOWN characters, quoted,
/// then `…` after the quote, the way strace shows a long buffer. The byte count printed
/// beside it is always the whole text's.
pub fn shown(text: &[u8]) -> String {
    const SHOWN: usize = 40;
    let text = String::from_utf8_lossy(text);
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Where the messages come from: the command line, or standard input line by line.
enum Source<'a> {
    Args(std::slice::Iter<'a, String>),
    Stdin(LineReader<std::io::Stdin>),
}

impl Source<'_> {
    fn next(&mut self) -> Result<Option<&[u8]>> {
        match self {
            Source::Args(args) => Ok(args.next().map(|text| text.as_bytes())),
            Source::Stdin(lines) => lines.next_line().context("read standard input"),
        }
    }
}

/// Ping's answers come back through `P.reply`, opened after P, in the reader's order.
fn open_reply(path: &Path) -> Result<OwnedFd> {
    let reply = fifo::reply_path(path);
    say!(
        ROLE,
        "opening {} for reading: the answers come back through a second FIFO",
        reply.display()
    );
    wire::open(&reply, OFlag::O_RDONLY)?
        .with_context(|| format!("open {} for reading", reply.display()))
}
