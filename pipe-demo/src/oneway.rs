//! The `oneway` flavour: the parent writes, the child reads, in three acts.
//!
//! 1. Messages and EOF: lines go one way through one pipe, in the order sent, and
//!    the child sees EOF only once every write end is closed, its own copy included.
//! 2. A bounded kernel buffer: the parent fills a pipe until the kernel refuses
//!    more, then writes once more and falls asleep until the child drains it.
//! 3. No reader left: once the child has exited, a write fails with EPIPE.
//!
//! The parent narrates as `writer`, the child as `reader`.

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::{Pid, getppid, pipe2, write};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::family::{Side, exit_child, fork, parent_died, reap};
use crate::say;
use crate::stream::{read_exact, write_all};
use crate::summary::Summary;

const WRITER: &str = "writer";
const READER: &str = "reader";
const DEFAULT_MESSAGES: [&str; 3] = ["hello", "through a pipe", "one way only"];
/// The writes that fill the pipe in act 2: 4096 bytes, PIPE_BUF on Linux, and one
/// page on x86-64 (arm64 and ppc64 may have 16 or 64 KiB pages). It divides every
/// page size, so these writes fill the pipe to exactly its F_GETPIPE_SZ.
const CHUNK: usize = 4096;
/// How long the reader looks for the writer asleep before it drains anyway.
const ASLEEP_DEADLINE: Duration = Duration::from_secs(10);

pub fn run(messages: &[String]) -> Result<()> {
    let messages: Vec<String> = if messages.is_empty() {
        DEFAULT_MESSAGES.iter().map(|m| m.to_string()).collect()
    } else {
        messages.to_vec()
    };
    // Both pipes exist before fork, so the child inherits both. O_CLOEXEC: a program
    // this process might exec later should not inherit them (a habit worth having).
    let (messages_r, messages_w) = pipe2(OFlag::O_CLOEXEC).context("pipe2 (messages)")?;
    let (buffer_r, buffer_w) = pipe2(OFlag::O_CLOEXEC).context("pipe2 (buffer)")?;
    say!(
        WRITER,
        "pipe(2) gave two fds: {} is the read end, {} the write end; a second pipe ({}, {}) is for act 2",
        messages_r.as_raw_fd(),
        messages_w.as_raw_fd(),
        buffer_r.as_raw_fd(),
        buffer_w.as_raw_fd()
    );

    match fork()? {
        Side::Child { parent } => {
            // The child inherited the write ends too. If it kept them, its reads
            // would never see EOF: the kernel gives EOF only once EVERY write end
            // is closed, and the child's own copy would still be open.
            drop(messages_w);
            drop(buffer_w);
            exit_child(reader(messages_r, buffer_r, parent))
        }
        Side::Parent { child } => {
            drop(messages_r); // only the child reads
            drop(buffer_r);
            say!(
                WRITER,
                "fork(2) made the reader, pid {child}: it holds copies of all four fds"
            );
            let started = Instant::now();
            let outcome = send_messages_then_fill(messages_w, buffer_w, &messages);
            // Whatever happened, wait for the child, or it would stay a zombie.
            // (On an error both write ends are closed by now, so it cannot be
            // waiting for us.)
            let reaped = reap(WRITER, child, "reader");
            let (buffer_w, sent_bytes) = outcome?;
            reaped?;
            write_with_no_reader(buffer_w)?;
            Summary {
                role: WRITER,
                messages: messages.len() as u64,
                bytes: sent_bytes as u64,
                elapsed: started.elapsed(),
                extra: String::new(),
            }
            .print();
            Ok(())
        }
    }
}

/// Acts 1 and 2, the writer's side. Returns the buffer pipe's write end for act 3,
/// and the bytes of text sent.
fn send_messages_then_fill(
    messages_w: OwnedFd,
    buffer_w: OwnedFd,
    messages: &[String],
) -> Result<(OwnedFd, usize)> {
    let sent_bytes = send_messages(messages_w, messages)?;
    fill_until_the_writer_blocks(&buffer_w)?;
    Ok((buffer_w, sent_bytes))
}

/// Act 1: one line per message, then close the write end so the reader sees EOF.
fn send_messages(write_end: OwnedFd, messages: &[String]) -> Result<usize> {
    let mut line = Vec::new();
    let mut bytes = 0;
    for text in messages {
        line.clear();
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n'); // on a byte stream, the newline is what ends a message
        write_all(&write_end, &line).with_context(|| format!("sending {text:?}"))?;
        say!(WRITER, "sent {text:?} ({} bytes)", text.len());
        bytes += text.len();
    }
    drop(write_end);
    say!(
        WRITER,
        "closed the write end: the reader gets EOF once it has read the rest"
    );
    Ok(bytes)
}

/// Act 2: fill the pipe without blocking until the kernel says EAGAIN, then write
/// once more, blocking, and sleep until the reader makes room.
fn fill_until_the_writer_blocks(write_end: &OwnedFd) -> Result<()> {
    let capacity = pipe_capacity(write_end)?;
    say!(
        WRITER,
        "act 2: a pipe is a buffer in the kernel: F_GETPIPE_SZ says {capacity} bytes, \
         counted in page-sized slots (16 by default); a write joins the last page only \
         if it fits there whole, so these {CHUNK}-byte writes fill all {capacity}, where \
         2049-byte ones would fill it at about half (not shown here)"
    );
    let chunk = [b'.'; CHUNK];
    set_nonblocking(write_end, true)?;
    let mut filled = 0;
    loop {
        match write(write_end, &chunk) {
            Ok(n) => filled += n,
            Err(Errno::EAGAIN) => break, // full: a blocking write would sleep now
            Err(Errno::EPIPE) => bail!(
                "filling the pipe: the reader is gone: write failed with EPIPE (no process \
                 has the read end open)"
            ),
            Err(e) => bail!("filling the pipe: write: {e}"),
        }
    }
    set_nonblocking(write_end, false)?;
    say!(
        WRITER,
        "wrote {filled} bytes with O_NONBLOCK, then the kernel said EAGAIN: the pipe is full"
    );

    // The reader drains capacity + CHUNK bytes in all; top up to exactly that.
    let rest = capacity + CHUNK - filled;
    say!(
        WRITER,
        "writing {rest} more bytes, blocking: this write sleeps until the reader reads"
    );
    let asleep_since = Instant::now();
    for piece in std::iter::repeat_n(&chunk[..], rest / CHUNK) {
        write_all(write_end, piece).context("the blocking write")?;
    }
    write_all(write_end, &chunk[..rest % CHUNK]).context("the blocking write")?;
    say!(
        WRITER,
        "woke up: the write finished {:.1} ms later, once the reader had made room",
        asleep_since.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Act 3: the reader has exited, so nobody holds the read end. The kernel answers
/// a write with EPIPE. A C program would first be killed by SIGPIPE; Rust sets
/// SIGPIPE to "ignore" at startup, so the error reaches us as a plain `Err`.
fn write_with_no_reader(write_end: OwnedFd) -> Result<()> {
    say!(
        WRITER,
        "act 3: the reader has exited, so no process has the read end open"
    );
    match write(&write_end, b"anyone there?\n") {
        Err(Errno::EPIPE) => {
            say!(
                WRITER,
                "write failed with EPIPE (broken pipe): data written now could never be read"
            );
            Ok(())
        }
        Ok(n) => bail!("a write with no reader should fail, yet {n} bytes were taken"),
        Err(e) => bail!("a write with no reader: expected EPIPE, got {e}"),
    }
}

/// The child's whole part: the three acts as the reader sees them.
fn reader(messages_r: OwnedFd, buffer_r: OwnedFd, writer: Pid) -> Result<()> {
    say!(READER, "closed my copies of both write ends: I only read");
    let started = Instant::now();
    show_the_read_end_cannot_write(&messages_r);
    let (count, bytes) = receive_messages(messages_r, writer)?;
    drain_once_the_writer_sleeps(buffer_r, writer)?;
    say!(
        READER,
        "exiting: this closes the last read end of the buffer pipe"
    );
    Summary {
        role: READER,
        messages: count as u64,
        bytes: bytes as u64,
        elapsed: started.elapsed(),
        extra: String::new(),
    }
    .print();
    Ok(())
}

/// One way only: the read end was opened read-only, so the kernel refuses a write.
fn show_the_read_end_cannot_write(read_end: &OwnedFd) {
    match write(read_end, b"reply?") {
        Err(e) => say!(
            READER,
            "writing into the read end fails with {e}: a pipe carries data one way only"
        ),
        Ok(_) => say!(READER, "writing into the read end worked?! (not Linux?)"),
    }
}

/// Act 1: print each line as it comes, until EOF. Returns (messages, bytes).
fn receive_messages(read_end: OwnedFd, writer: Pid) -> Result<(usize, usize)> {
    let mut lines = BufReader::new(File::from(read_end));
    let mut line = String::new();
    let (mut count, mut bytes) = (0, 0);
    loop {
        line.clear();
        if lines.read_line(&mut line).context("read")? == 0 {
            break;
        }
        let text = line.strip_suffix('\n').unwrap_or(&line);
        say!(READER, "received {text:?} ({} bytes)", text.len());
        count += 1;
        bytes += text.len();
    }
    if parent_died(writer, "pipe_write") {
        bail!(
            "EOF after {count} messages because the writer, pid {writer}, died (I am no \
             longer its child): the kernel closed its write end"
        );
    }
    say!(
        READER,
        "EOF: every write end is closed; the {count} messages came in the order sent (先进先出)"
    );
    Ok((count, bytes))
}

/// Act 2, the reader's side: wait until the writer is asleep on the full pipe
/// (the kernel shows it in /proc), then read everything it wrote.
fn drain_once_the_writer_sleeps(read_end: OwnedFd, writer: Pid) -> Result<()> {
    match wait_until_asleep(writer, "pipe_write", ASLEEP_DEADLINE) {
        Watched::Asleep(wchan) => say!(
            READER,
            "the writer {writer} is asleep in the kernel (/proc/{writer}/stat: S, wchan {wchan}): \
             the pipe is full and I have not read yet"
        ),
        Watched::Awake => say!(
            READER,
            "did not see the writer asleep within {ASLEEP_DEADLINE:?}; reading anyway"
        ),
        Watched::Dead => bail!(
            "the writer, pid {writer}, died in act 2: I am no longer its child \
             (getppid(2) changed), so nobody will finish filling the pipe"
        ),
    }
    let expected = pipe_capacity(&read_end)? + CHUNK;
    let mut everything = vec![0u8; expected];
    if !read_exact(&read_end, &mut everything).context("draining the buffer pipe")? {
        bail!("the writer closed the buffer pipe before writing anything");
    }
    let drained = everything.len();
    say!(
        READER,
        "read {drained} bytes: room again, so the writer's blocked write could finish"
    );
    Ok(())
}

/// What `wait_until_asleep` saw of the writer.
enum Watched {
    /// Asleep in the kernel function named.
    Asleep(String),
    /// Alive, but not asleep there before the deadline (stopped, say).
    Awake,
    /// Gone: the kernel has made someone else our parent.
    Dead,
}

/// Polls /proc until `parent` sleeps in a kernel function whose name contains
/// `wchan`, giving up after `limit`. The kernel's own view of "blocked": `ps`
/// shows the same state letter S and `cat /proc/PID/wchan` the same name.
/// A parent killed meanwhile (even by SIGKILL, which runs none of its code) is
/// seen within a millisecond or so: the kernel re-parents us, and getppid(2) changes.
fn wait_until_asleep(parent: Pid, wchan: &str, limit: Duration) -> Watched {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if getppid() != parent {
            return Watched::Dead;
        }
        let stat = std::fs::read_to_string(format!("/proc/{parent}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        let sleeping_in =
            std::fs::read_to_string(format!("/proc/{parent}/wchan")).unwrap_or_default();
        if state == Some('S') && sleeping_in.contains(wchan) {
            return Watched::Asleep(sleeping_in);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Watched::Awake
}

/// The size of the kernel buffer behind a pipe: 16 pages by default (64 KiB with
/// 4 KiB pages), changeable with F_SETPIPE_SZ.
fn pipe_capacity(end: impl AsFd) -> Result<usize> {
    let size = fcntl(end.as_fd(), FcntlArg::F_GETPIPE_SZ).context("fcntl F_GETPIPE_SZ")?;
    Ok(size as usize)
}

/// Turns O_NONBLOCK on or off, leaving the other file status flags (O_APPEND,
/// O_ASYNC...) as they were: F_SETFL replaces them all, so read them first.
/// The flag belongs to the open file description, not to this fd: every dup and
/// every forked copy of it sees the change. Harmless on this pipe, which only we
/// write; on an inherited stdout it would change the flag under the other holders.
fn set_nonblocking(end: impl AsFd, on: bool) -> Result<()> {
    let bits = fcntl(end.as_fd(), FcntlArg::F_GETFL).context("fcntl F_GETFL")?;
    let mut flags = OFlag::from_bits_retain(bits);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(end.as_fd(), FcntlArg::F_SETFL(flags)).context("fcntl F_SETFL")?;
    Ok(())
}
