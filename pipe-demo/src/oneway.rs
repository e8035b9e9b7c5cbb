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
use nix::unistd::Pid;
use pipe_demo::fork::{self, Forked};
use pipe_demo::pipe::{self, capacity, read_exact, set_nonblocking, try_write, write_all};
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::family::{exit_child, reap};
use crate::say;
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
/// How long a reader that got EOF looks for its writer dead or asleep (a dying
/// process's fds close a moment before its children are re-parented).
const DEATH_LOOK: Duration = Duration::from_secs(2);

pub fn run(messages: &[String]) -> Result<()> {
    let messages: Vec<String> = if messages.is_empty() {
        DEFAULT_MESSAGES.iter().map(|m| m.to_string()).collect()
    } else {
        messages.to_vec()
    };
    // Both pipes exist before fork, so the child inherits both. O_CLOEXEC: a program
    // this process might exec later should not inherit them (a habit worth having).
    let messages_pipe = pipe::create().context("pipe2 (messages)")?;
    let buffer_pipe = pipe::create().context("pipe2 (buffer)")?;
    let ((messages_r, messages_w), (buffer_r, buffer_w)) = (&messages_pipe, &buffer_pipe);
    say!(
        WRITER,
        "pipe(2) gave two fds: {} is the read end, {} the write end; a second pipe ({}, {}) is for act 2",
        messages_r.as_raw_fd(),
        messages_w.as_raw_fd(),
        buffer_r.as_raw_fd(),
        buffer_w.as_raw_fd()
    );

    // The child inherits all four fds. It closes its copies of the write ends at
    // once: the kernel gives EOF only once EVERY write end is closed, and its own
    // copy would still be open. The parent closes the read ends (only the child reads).
    // SAFETY: this program is single-threaded.
    match unsafe { fork::fork_parent_writes([messages_pipe, buffer_pipe]) }.context("fork")? {
        Forked::Child {
            parent,
            ends: [messages_r, buffer_r],
        } => exit_child(reader(messages_r, buffer_r, parent)),
        Forked::Parent {
            child,
            ends: [messages_w, buffer_w],
        } => {
            say!(
                WRITER,
                "fork(2) made the reader, pid {child}: it got copies of all four fds, and \
                 each of us closed the two it does not use"
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
    let capacity = capacity(write_end).context("fcntl F_GETPIPE_SZ")?;
    say!(
        WRITER,
        "act 2: a pipe is a buffer in the kernel: F_GETPIPE_SZ says {capacity} bytes, \
         counted in page-sized slots (16 by default); a write joins the last page only \
         if it fits there whole, so these {CHUNK}-byte writes fill all {capacity}, where \
         2049-byte ones would fill it at about half (not shown here)"
    );
    let chunk = [b'.'; CHUNK];
    set_nonblocking(write_end, true).context("fcntl O_NONBLOCK on")?;
    let mut filled = 0;
    // None is EAGAIN: the pipe is full, where a blocking write would sleep now.
    while let Some(n) = try_write(write_end, &chunk).context("filling the pipe")? {
        filled += n;
    }
    set_nonblocking(write_end, false).context("fcntl O_NONBLOCK off")?;
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
    match write_all(&write_end, b"anyone there?\n") {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {
            say!(
                WRITER,
                "write failed with EPIPE (broken pipe): data written now could never be read"
            );
            Ok(())
        }
        Ok(()) => bail!("a write with no reader should fail, yet the bytes were taken"),
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
    match write_all(read_end, b"reply?") {
        Err(e) => say!(
            READER,
            "writing into the read end fails with {}: a pipe carries data one way only",
            Errno::from_raw(e.raw_os_error().unwrap_or(0))
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
    if fork::parent_died(writer, "pipe_write", DEATH_LOOK) {
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
    let expected = capacity(&read_end).context("fcntl F_GETPIPE_SZ")? + CHUNK;
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
pub(crate) enum Watched {
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
pub(crate) fn wait_until_asleep(parent: Pid, wchan: &str, limit: Duration) -> Watched {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if fork::parent_gone(parent) {
            return Watched::Dead;
        }
        if let Some(('S', sleeping_in)) = fork::proc_state(parent) {
            if sleeping_in.contains(wchan) {
                return Watched::Asleep(sleeping_in);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Watched::Awake
}
