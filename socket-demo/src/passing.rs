//! fdpass: sending an open file descriptor to an unrelated process (SCM_RIGHTS).
//!
//! A Unix socket can carry, beside bytes, "control messages" the kernel acts on. With
//! SCM_RIGHTS the writer names some of its open fds, and the kernel installs new fds in
//! the reader's table that refer to the same open files: same file, same offset, same
//! mode, as if the reader had inherited them across fork. Nothing of the kind exists for
//! pipes or TCP. Two acts:
//!
//! 1. A file: the writer writes the messages into a new file, opens it read-only, and
//!    removes its name (and its private directory) before sending the fd. The reader reads
//!    every line through the fd it received: a file no directory names any more (only the
//!    magic links /proc/PID/fd/N of a process that holds it still reach it, for its owner
//!    or root: not shown here).
//!    (`--file PATH` sends an existing file instead.)
//! 2. Shared memory: the writer makes a memfd (memfd_create: a file that lives only in
//!    memory, with no name in any directory), sends it the same way, and both map it
//!    MAP_SHARED. What one writes into its mapping, the other reads in its own: no send(2)
//!    carries those bytes. One byte on the socket says "look now", each way.
//!    Mapping a file someone else holds is a risk: if they shrink it, touching the lost
//!    pages kills us with SIGBUS. So the writer seals the memfd's size (F_SEAL_SHRINK,
//!    F_SEAL_GROW, then F_SEAL_SEAL so no one can change the seals) before sending it, and
//!    the reader checks the seals (F_GET_SEALS) before it maps, and refuses a memfd
//!    without them.
//!
//! Notes (共享内存): 拿出一块虚拟地址空间来，映射到相同的物理内存中 (a piece of each
//! address space mapped to the same physical memory): act 2 does it between two unrelated
//! processes, with no name anywhere, not even in /dev/shm.
//! Run: `cargo run -p socket-demo -- fdpass`; two terminals: `socket-demo reader fdpass
//! --path /tmp/f`, then `socket-demo writer fdpass --path /tmp/f --file /etc/hostname`.
//! Watch for: `/proc/self/fd/N -> ... (deleted)` in the reader's lines.
//! Who does this for real: systemd's fd store (sd_pid_notify_with_fds; socket activation
//! itself hands fds down by inheritance, not SCM_RIGHTS), Wayland buffers, Chrome's sandbox.
//! In production: `ipc-channel` (fd passing and shared memory), `memmap2` for the mapping.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, fstat};
use socket_demo::fdpass::{self, SharedPage};

use crate::args::{Flavour, Meet, Workload};
use crate::demo::{WriterChild, start_writer};
use crate::meeting as unix;
use crate::reader::{accept, finish, listening_at};
use crate::signals::{TICK, block};
use crate::stream::{LineReader, read_full, write_all};
use crate::workload::Summary;

const READER: &str = "reader";
const WRITER: &str = "writer";
/// The one byte of data that goes with each fd (a control message needs at least one),
/// and the "look now" bytes of act 2.
const FILE_TAG: u8 = b'F';
const MEMFD_TAG: u8 = b'M';
const WRITTEN: u8 = b'W';
const ANSWERED: u8 = b'A';
/// The shared memory: one page.
const PAGE: usize = 4096;

/// The reader (the server). `start`: the default run, with the writer's messages or file.
pub fn reader(path: Option<&Path>, start: Option<(&[String], Option<&Path>)>) -> Result<()> {
    let (listener, file) = unix::listen(path)?;
    listening_at(file.path(), "SOCK_STREAM", "listen(2)");
    let writer = match start {
        Some((messages, sent_file)) => Some(start_writer(
            Flavour::Fdpass,
            &Meet::Path(file.path().into()),
            &Workload::Text(messages.to_vec()),
            sent_file,
            None,
        )?),
        None => None,
    };
    let served = receive(listener, writer.as_ref());
    finish(served, writer, Some(file))
}

fn receive(listener: UnixListener, writer: Option<&WriterChild>) -> Result<Summary> {
    let conn = UnixStream::from(accept(&listener)?);
    drop(listener);
    set_timeouts(&conn)?;
    let cred = unix::peer_credentials(&conn)?;
    let mine = match writer {
        Some(w) if w.pid().as_raw() == cred.pid() => " (the writer I started)",
        _ => "",
    };
    say!(
        READER,
        "accepted a connection; SO_PEERCRED: the writer is {}{mine}",
        unix::describe(&cred)
    );

    // Act 1: a file, through its fd.
    let file = receive_fd(&conn, FILE_TAG)?;
    say!(
        READER,
        "recvmsg(2) brought fd {} with SCM_RIGHTS: the kernel put the writer's open file in \
         my fd table; \
         /proc/self/fd/{} -> {}",
        file.as_raw_fd(),
        file.as_raw_fd(),
        fd_target(&file)
    );
    let summary = read_lines(file)?;

    // Act 2: a memfd, mapped by both.
    let memfd = receive_fd(&conn, MEMFD_TAG)?;
    say!(
        READER,
        "recvmsg(2) brought fd {} with SCM_RIGHTS: {}",
        memfd.as_raw_fd(),
        fd_target(&memfd)
    );
    let page = SharedPage::map(&memfd)?;
    say!(
        READER,
        "mmap(MAP_SHARED) of its {} bytes at {:p}: the same physical memory as the writer's \
         mapping, at an address of my own",
        page.len(),
        page.addr()
    );
    expect_byte(&conn, WRITTEN, "the writer's \"look now\"")?;
    say!(
        READER,
        "the writer says look: my mapping holds {:?}, and no send(2) carried it",
        page.read_text()
    );
    let answer = format!("and hello back from reader {}", std::process::id());
    page.write_text(&answer);
    write_all(&conn, &[ANSWERED], "writer")?;
    say!(
        READER,
        "wrote {answer:?} into my mapping, and sent one byte to say so"
    );
    let mut end = [0u8; 1];
    if read_full(&conn, &mut end)? != 0 {
        bail!("the writer sent more than expected after act 2");
    }
    say!(READER, "EOF: the writer closed the connection");
    Ok(summary)
}

/// Act 1, the reader's side: print each line of the file, read through the fd only.
fn read_lines(file: OwnedFd) -> Result<Summary> {
    let mut lines = LineReader::new(File::from(file));
    let mut summary = Summary::start();
    while let Some(line) = lines.next()? {
        say!(
            READER,
            "received {} ({} bytes), read from the file through the passed fd",
            crate::stream::shown(line),
            line.len()
        );
        summary.count(line.len());
    }
    say!(
        READER,
        "end of the file: {} lines, and I never opened it by name",
        summary.messages
    );
    Ok(summary)
}

/// The writer (the client): send a file's fd, then a memfd's.
pub fn writer(path: &Path, messages: &[String], existing: Option<&Path>) -> Result<()> {
    // Act 1. The file first: a --file that cannot be opened is said before we connect.
    let (file, summary) = match existing {
        Some(existing) => open_existing(existing)?,
        None => write_nameless_file(messages)?,
    };
    let conn = unix::connect_stream(path, Flavour::Fdpass)?;
    set_timeouts(&conn)?;
    say!(WRITER, "connected to {}", path.display());
    send_fd(&conn, file.as_fd(), FILE_TAG)?;
    say!(
        WRITER,
        "sent my fd {} with SCM_RIGHTS (and one byte of data, {:?})",
        file.as_raw_fd(),
        FILE_TAG as char
    );
    drop(file);
    say!(
        WRITER,
        "closed my fd: the file lives on, held by the one in flight and then by the reader's"
    );

    // Act 2.
    share_memory(&conn)?;
    drop(conn);
    say!(WRITER, "closed the connection");
    summary.print(WRITER);
    Ok(())
}

/// Writes the messages into a new file in a private directory, opens it read-only, then
/// removes its name: what is sent is an fd to a file no path leads to any more.
fn write_nameless_file(messages: &[String]) -> Result<(OwnedFd, Summary)> {
    let messages: Vec<String> = if messages.is_empty() {
        read_stdin_lines()?
    } else {
        messages.to_vec()
    };
    let mut name = unix::private_file("messages.txt")?;
    let mut summary = Summary::start();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true) // O_EXCL: never someone else's file
        .open(name.path())
        .with_context(|| format!("create {}", name.path().display()))?;
    name.made();
    for text in &messages {
        writeln!(out, "{text}").with_context(|| format!("write {}", name.path().display()))?;
        summary.count(text.len());
    }
    drop(out);
    // A fresh open file, at offset 0: the reader shares this offset with us.
    let file = nix::fcntl::open(
        name.path(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {}", name.path().display()))?;
    say!(
        WRITER,
        "wrote {} lines into {}, and opened it read-only: fd {}",
        messages.len(),
        name.path().display(),
        file.as_raw_fd()
    );
    name.remove(WRITER);
    say!(
        WRITER,
        "no directory names that file any more (only /proc/PID/fd links of its holders reach \
         it); my fd still reads it: /proc/self/fd/{} -> {}",
        file.as_raw_fd(),
        fd_target(&file)
    );
    Ok((file, summary))
}

fn read_stdin_lines() -> Result<Vec<String>> {
    let mut lines = Vec::new();
    crate::stream::each_message(&[], |line| {
        lines.push(line.to_string());
        Ok(())
    })?;
    Ok(lines)
}

fn open_existing(path: &Path) -> Result<(OwnedFd, Summary)> {
    let file = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .with_context(|| format!("open {}", path.display()))?;
    let stat = fstat(&file).context("fstat")?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        bail!(
            "{} is not a regular file (a device, pipe or directory could be endless or not \
             lines at all): --file sends regular files only",
            path.display()
        );
    }
    let size = stat.st_size;
    say!(
        WRITER,
        "opened {} read-only: fd {}, {size} bytes",
        path.display(),
        file.as_raw_fd()
    );
    let mut summary = Summary::start();
    summary.count(size as usize); // one file
    Ok((file, summary))
}

/// Act 2, the writer's side.
fn share_memory(conn: &UnixStream) -> Result<()> {
    // MFD_ALLOW_SEALING: without it, a memfd takes no seals.
    let memfd = fdpass::sealed_memfd("socket-demo", PAGE)
        .context("memfd_create, ftruncate, F_ADD_SEALS")?;
    say!(
        WRITER,
        "memfd_create: fd {}, {PAGE} bytes of memory that is a file with no name in any \
         directory: /proc/self/fd/{} -> {}",
        memfd.as_raw_fd(),
        memfd.as_raw_fd(),
        fd_target(&memfd)
    );
    say!(
        WRITER,
        "sealed its size (F_SEAL_SHRINK, F_SEAL_GROW) and the seals themselves \
         (F_SEAL_SEAL): nobody, me included, can shrink it under the reader's mapping"
    );
    let page = SharedPage::map(&memfd)?;
    send_fd(conn, memfd.as_fd(), MEMFD_TAG)?;
    say!(
        WRITER,
        "sent the memfd with SCM_RIGHTS; my mapping is at {:p}",
        page.addr()
    );
    let text = format!(
        "hello from writer {}, through shared memory",
        std::process::id()
    );
    page.write_text(&text);
    write_all(conn, &[WRITTEN], "reader")?;
    say!(
        WRITER,
        "wrote {text:?} into my mapping, and sent one byte to say \"look now\""
    );
    expect_byte(conn, ANSWERED, "the reader's answer")?;
    say!(
        WRITER,
        "the reader says it answered: my mapping now holds {:?}",
        page.read_text()
    );
    Ok(())
}

fn set_timeouts(conn: &UnixStream) -> Result<()> {
    socket_demo::wait::set_timeouts(conn, TICK).context("setsockopt SO_RCVTIMEO/SO_SNDTIMEO")
}

/// The library's send_fd, stoppable by Ctrl+C, with a gone reader put in words.
fn send_fd(conn: &UnixStream, fd: BorrowedFd, tag: u8) -> Result<()> {
    match block(|| fdpass::send_fd(conn, fd, tag))? {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => bail!(
            "the reader is gone: sendmsg failed with {e} (nobody reads this connection any more)"
        ),
        Err(e) => Err(e).context("sendmsg SCM_RIGHTS"),
    }
}

/// The library's recv_one_fd (every fd that came is closed unless it is exactly one,
/// with `tag`), stoppable by Ctrl+C.
fn receive_fd(conn: &UnixStream, tag: u8) -> Result<OwnedFd> {
    match block(|| fdpass::recv_one_fd(conn, tag))? {
        Ok(fd) => Ok(fd),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            bail!("the writer closed the connection before sending its fd: is it gone?")
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(e.into()),
        Err(e) => Err(e).context("recvmsg"),
    }
}

fn expect_byte(conn: &UnixStream, want: u8, what: &str) -> Result<()> {
    let mut byte = [0u8; 1];
    if read_full(conn, &mut byte)? == 0 {
        bail!("the other side closed the connection before {what}: is it gone?");
    }
    if byte[0] != want {
        bail!(
            "expected {what} ({:?}), got {:?}",
            want as char,
            byte[0] as char
        );
    }
    Ok(())
}

/// What an fd refers to, as the kernel shows it in /proc/self/fd.
fn fd_target(fd: &impl AsRawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|t| t.display().to_string())
        .unwrap_or_else(|e| format!("? ({e})"))
}
