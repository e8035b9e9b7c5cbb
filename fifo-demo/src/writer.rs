//! `fifo-demo writer --path P [MESSAGE...]`: open the FIFO a reader made and send each
//! message as one line, or each line of standard input when no MESSAGE is given.
//!
//! It never creates P: the reader owns the FIFO. Any program can take this side
//! (`echo hi > P`), and this one works against any reader (`mkfifo P; cat P &`).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fifo_demo::fifo;
use fifo_demo::io::{self, LineReader};
use fifo_demo::stop;
use nix::errno::Errno;

use crate::args::Workload;
use crate::wire::{self, describe, reply_path};
use crate::workload::{self, Summary};

const ROLE: &str = "writer";

pub fn run(path: &Path, workload: &Workload) -> Result<()> {
    let result = send(path, workload);
    if let (Err(_), Some(sig)) = (&result, stop::caught()) {
        say!(
            ROLE,
            "interrupted by {sig}: nothing to remove, the FIFO is the reader's"
        );
    }
    let summary = match result {
        Ok(summary) => summary,
        Err(e) if stop::caught().is_some() => return Err(e),
        Err(e) => return Err(with_what_the_reader_left(e, path)),
    };
    summary.print(ROLE);
    Ok(())
}

fn send(path: &Path, workload: &Workload) -> Result<Summary> {
    let shown = path.display();
    look(path).with_context(|| format!("open {shown} for writing"))?;
    // Ping opens P.reply first, for reading: that never waits (see `open_reply`), and the
    // reader, once P is open, finds P.reply already open and opens it at once.
    let reply = match workload {
        Workload::Ping { .. } => Some(open_reply(path)?),
        _ => None,
    };
    let fifo = open_fifo(path).with_context(|| format!("open {shown} for writing"))?;
    let summary = match (workload, reply) {
        (Workload::Text(messages), _) => {
            send_lines(&fifo, messages).with_context(|| format!("send to {shown}"))?
        }
        (&Workload::Bulk { count, size }, _) => {
            say!(ROLE, "sending {count} messages of {size} bytes");
            workload::send_bulk(&fifo, count, size).with_context(|| format!("send to {shown}"))?
        }
        (&Workload::Ping { count, size }, reply) => {
            let reply = reply.context("P.reply was not opened")?;
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

/// Look before opening: open(2) would fail on a missing name anyway, but on a regular
/// file it would succeed, and our messages would land in that file.
fn look(path: &Path) -> Result<()> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(no_fifo(path)),
        Err(e) => Err(e).with_context(|| format!("stat {shown}")),
        Ok(meta) if !meta.file_type().is_fifo() => bail!(
            "{shown} is not a FIFO ({}): the reader makes one with mkfifo",
            describe(path)?
        ),
        Ok(_) => Ok(()),
    }
}

/// Opens an existing FIFO for writing, once a reader has it open. A blocking open(2)
/// would sleep until then, forever if the reader was killed after making P (P stays,
/// nobody will open it); so this tries with O_NONBLOCK every 10 ms and, between tries,
/// asks the kernel whether the reader named in `P.pid` still runs.
fn open_fifo(path: &Path) -> Result<OwnedFd> {
    let shown = path.display();
    say!(
        ROLE,
        "opening {shown} for writing with O_NONBLOCK: it fails (ENXIO) while no reader has it open, \
         so we try again every {} ms",
        io::RETRY.as_millis()
    );
    let asked = Instant::now();
    // No O_CREAT, ever: making the name is the reader's job.
    let fd = match io::try_open_for_writing(path) {
        Ok(Some(fd)) => Ok(fd),
        Ok(None) => {
            say_waiting(path);
            // No deadline, as `echo hi > P` has none: only the reader's death ends the
            // wait, or P gone (the reader removed it: nobody can open it any more).
            let gone = || !path.exists();
            match io::open_for_writing(path, Duration::MAX, &|| wire::stop() || gone()) {
                Err(_) if !wire::stop() && gone() => return Err(no_fifo(path)),
                opened => opened,
            }
        }
        Err(e) => Err(e),
    };
    let fd = match fd {
        Err(e) if io::errno(&e) == Some(Errno::ENOENT) => return Err(no_fifo(path)), // removed since we looked
        done => done?,
    };
    say!(
        ROLE,
        "a reader opened {shown} after {:.1} ms",
        asked.elapsed().as_secs_f64() * 1e3
    );
    Ok(fd)
}

/// At the first ENXIO: what we know of the reader we wait for.
fn say_waiting(path: &Path) {
    let shown = path.display();
    let pid_file = fifo::pid_path(path);
    let pid_file = pid_file.display();
    match fifo::reader_of(path) {
        Ok(None) => say!(
            ROLE,
            "no reader has {shown} open yet, and no {pid_file} names one to watch (a FIFO made \
             with mkfifo?): waiting until one opens it, as `echo hi > {shown}` would"
        ),
        Ok(Some(pid)) => say!(
            ROLE,
            "no reader has {shown} open yet; its reader {pid} ({pid_file}) is alive: waiting for it"
        ),
        Err(_) => {} // said by `open_for_writing`'s error next
    }
}

/// After a failure (EPIPE, an early EOF on P.reply): if the reader was killed, say so,
/// with what it left. A reader killed just now may not be a zombie yet when our write
/// fails (the kernel closes a dying process's files before it marks it dead), so this
/// looks again for up to DEATH_NOTICED while `P.pid` names a running process.
fn with_what_the_reader_left(e: anyhow::Error, path: &Path) -> anyhow::Error {
    const DEATH_NOTICED: Duration = Duration::from_secs(2);
    let since = Instant::now();
    loop {
        match fifo::reader_of(path) {
            Err(gone) => {
                let note = gone.to_string();
                let text = format!("{e:#}");
                return match text.contains(&note) {
                    true => e,
                    false => anyhow!("{text}\n{note}"),
                };
            }
            Ok(Some(_)) if since.elapsed() < DEATH_NOTICED => {
                std::thread::sleep(io::RETRY);
            }
            // It runs on (it closed its end), or it cleaned up, or it is not ours.
            _ => return e,
        }
    }
}

fn no_fifo(path: &Path) -> anyhow::Error {
    let p = path.display();
    anyhow!("no FIFO at {p}: start the reader first (fifo-demo reader --path {p})")
}

/// Sends each message as `text\n` with one write(2).
fn send_lines(fifo: impl AsFd, messages: &[String]) -> Result<Summary> {
    let pipe_buf = io::pipe_buf(fifo.as_fd())?;
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
            Source::Stdin(lines) => lines.next_line(&wire::stop).context("read standard input"),
        }
    }
}

/// Ping's answers come back through `P.reply`. Opened for reading with O_NONBLOCK, which
/// returns at once, reader or not: a blocking open would wait for the reader to open
/// P.reply for writing, forever if it died first. `workload::ping` then waits for the
/// first answer with poll(2), watching P for the reader's death.
fn open_reply(path: &Path) -> Result<OwnedFd> {
    let reply = reply_path(path);
    say!(
        ROLE,
        "opening {} for reading with O_NONBLOCK (it returns at once): the answers come back through a second FIFO",
        reply.display()
    );
    io::open_for_reading_now(&reply)
}
