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
use std::io::{IoSlice, Write};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Context, Result, bail};
use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::ftruncate;

use crate::args::{Flavour, Meet, Workload};
use crate::demo::{WriterChild, start_writer};
use crate::reader::{accept, finish, listening_at};
use crate::signals::{TICK, block};
use crate::stream::{LineReader, read_full, write_all};
use crate::unix;
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
        page.len,
        page.ptr
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
    let memfd = memfd_create(
        "socket-demo",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .context("memfd_create")?;
    ftruncate(&memfd, PAGE as i64).context("ftruncate")?;
    say!(
        WRITER,
        "memfd_create: fd {}, {PAGE} bytes of memory that is a file with no name in any \
         directory: /proc/self/fd/{} -> {}",
        memfd.as_raw_fd(),
        memfd.as_raw_fd(),
        fd_target(&memfd)
    );
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(&memfd, FcntlArg::F_ADD_SEALS(seals)).context("fcntl F_ADD_SEALS")?;
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
        page.ptr
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
    conn.set_read_timeout(Some(TICK))
        .and_then(|()| conn.set_write_timeout(Some(TICK)))
        .context("setsockopt SO_RCVTIMEO/SO_SNDTIMEO")
}

/// sendmsg(2) with one byte of data and an SCM_RIGHTS control message naming `fd`.
fn send_fd(conn: &UnixStream, fd: BorrowedFd, tag: u8) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    let data = [tag];
    let iov = [IoSlice::new(&data)];
    let raw = conn.as_raw_fd();
    match block(|| sendmsg::<()>(raw, &iov, &control, MsgFlags::empty(), None).map_err(Into::into))?
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => bail!(
            "the reader is gone: sendmsg failed with {e} (nobody reads this connection any more)"
        ),
        Err(e) => Err(e).context("sendmsg SCM_RIGHTS"),
    }
}

/// recvmsg(2) for one byte of data, `tag`, and the one fd that comes with it.
/// MSG_CMSG_CLOEXEC: the received fd is close-on-exec from its first moment.
///
/// The kernel installs every fd of an SCM_RIGHTS message in our table as it delivers it,
/// whether or not we wanted them, so each one must be owned (and so closed) on every way
/// out. The control buffer is walked by hand with CMSG_FIRSTHDR/CMSG_NXTHDR: when the
/// control data did not fit (MSG_CTRUNC), nix's `cmsgs()` returns ENOBUFS before handing
/// out the fds that did arrive, and they would stay open.
fn receive_fd(conn: &UnixStream, tag: u8) -> Result<OwnedFd> {
    let raw = conn.as_raw_fd();
    let mut data = [0u8; 1];
    // Room for a dozen fds (CMSG_SPACE(12 * 4) = 64 bytes), more than we expect, so a
    // sender of a few is told so plainly; u64s, so a cmsghdr in it is aligned.
    let mut space = [0u64; 8];
    let (n, truncated, mut fds) = block(|| {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: an all-zero msghdr is valid (no name, no iov, no control).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&space) as _;
        // SAFETY: msg points at `iov` (1 byte of `data`) and `space`, all alive and
        // writable for the call; nix's recvmsg would refuse to give out the fds on
        // MSG_CTRUNC, so this is FFI nix lacks.
        let got = unsafe { libc::recvmsg(raw, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if got < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut fds = Vec::new();
        // SAFETY: the kernel set msg_controllen to the bytes it wrote into `space`, whole
        // cmsghdrs only; CMSG_FIRSTHDR/CMSG_NXTHDR stay inside that length, and CMSG_DATA
        // of an SCM_RIGHTS header holds (cmsg_len - CMSG_LEN(0)) / 4 fds, possibly
        // unaligned (hence read_unaligned).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let first = libc::CMSG_DATA(c).cast::<RawFd>();
                    for i in 0..bytes / size_of::<RawFd>() {
                        // The kernel just installed this fd in our table for this
                        // message; nothing else refers to it. Owning it at once means it
                        // is closed on every way out, even if we then reject the message.
                        fds.push(OwnedFd::from_raw_fd(first.add(i).read_unaligned()));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
        Ok((got as usize, truncated, fds))
    })?
    .context("recvmsg")?;
    if n == 0 {
        bail!("the writer closed the connection before sending its fd: is it gone?");
    }
    if data[0] != tag || truncated || fds.len() != 1 {
        let count = fds.len();
        drop(fds); // closed before we say so
        bail!(
            "expected one fd with the byte {:?}, got {count} fds with {:?}{}; I closed every \
             fd that came with it",
            tag as char,
            data[0] as char,
            if truncated {
                " and more that did not fit (control data cut: MSG_CTRUNC)"
            } else {
                ""
            }
        );
    }
    Ok(fds.remove(0))
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

/// A MAP_SHARED mapping of a sealed memfd, holding one NUL-terminated text; unmapped on
/// drop. Nothing stops the other process from writing the page at any time, so it is only
/// ever touched one byte at a time through `AtomicU8` (Relaxed), never through a Rust
/// reference (`&[u8]` would promise that nobody changes those bytes while it lives), and
/// never with plain or volatile accesses (a racing non-atomic access is undefined
/// behaviour; volatile does not change that). The atomics only make each byte race-free;
/// the order (whose text is complete when) comes from the turn-taking on the socket: a
/// byte sent after the writes, received before the reads, and the syscalls in between.
struct SharedPage {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedPage {
    /// Maps all of `fd`, once its seals show it can never shrink under the mapping.
    fn map(fd: impl AsFd) -> Result<SharedPage> {
        let seals = match fcntl(&fd, FcntlArg::F_GET_SEALS) {
            Ok(bits) => SealFlag::from_bits_truncate(bits),
            Err(nix::errno::Errno::EINVAL) => {
                bail!("the fd received is not a memfd (F_GET_SEALS: EINVAL): refusing to map it")
            }
            Err(e) => return Err(e).context("fcntl F_GET_SEALS"),
        };
        if !seals.contains(SealFlag::F_SEAL_SHRINK) {
            bail!(
                "the memfd received is not sealed against shrinking (F_GET_SEALS: {seals:?}): \
                 its sender could cut it under my mapping and kill me with SIGBUS, so I do \
                 not map it (the sender must add F_SEAL_SHRINK)"
            );
        }
        // Read after the seals: from now on the file cannot get smaller than this.
        let len = fstat(&fd).context("fstat")?.st_size as usize;
        let size = NonZeroUsize::new(len).context("the memfd is empty: nothing to map")?;
        // SAFETY: a new mapping at an address the kernel picks, so no existing memory is
        // affected; `len` bytes of the file exist, and F_SEAL_SHRINK keeps them.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .context("mmap")?;
        Ok(SharedPage {
            ptr: ptr.cast(),
            len,
        })
    }

    fn byte(&self, i: usize) -> u8 {
        self.cell(i).load(Ordering::Relaxed)
    }

    fn set_byte(&self, i: usize, value: u8) {
        self.cell(i).store(value, Ordering::Relaxed)
    }

    fn cell(&self, i: usize) -> &AtomicU8 {
        assert!(i < self.len);
        // SAFETY: `i < len`, so the address is inside the mapping, which lives until drop
        // (the returned reference cannot outlive `self`), and whose pages stay
        // (F_SEAL_SHRINK, checked in `map`: no SIGBUS); PROT_READ | PROT_WRITE. An AtomicU8
        // has alignment 1. Every access to the page, here and in the peer (this same
        // code), is atomic, as `from_ptr` requires.
        unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(i)) }
    }

    fn write_text(&self, text: &str) {
        let n = text.len().min(self.len - 1);
        for (i, &b) in text.as_bytes()[..n].iter().enumerate() {
            self.set_byte(i, b);
        }
        self.set_byte(n, 0);
    }

    fn read_text(&self) -> String {
        let bytes: Vec<u8> = (0..self.len)
            .map(|i| self.byte(i))
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: this mapping was made by `map` with this length, and no reference into it
        // exists (the page is only reached through `cell`, borrowed from `self`).
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::OFlag;
    use nix::unistd::{pipe2, read};

    /// Review row 1: three fds in one SCM_RIGHTS are refused, and all three are closed
    /// (each pipe's read end sees EOF, so no copy of its write end is left open here).
    #[test]
    fn three_fds_are_refused_and_closed() {
        refused_and_closed(3, "got 3 fds");
    }

    /// More than fit in the control buffer: MSG_CTRUNC, and still every fd closed.
    #[test]
    fn fourteen_fds_are_cut_refused_and_closed() {
        refused_and_closed(14, "MSG_CTRUNC");
    }

    fn refused_and_closed(count: usize, said: &str) {
        let (a, b) = UnixStream::pair().unwrap();
        let pipes: Vec<_> = (0..count)
            .map(|_| pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap())
            .collect();
        let fds: Vec<RawFd> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
        let control = [ControlMessage::ScmRights(&fds)];
        let iov = [IoSlice::new(b"F")];
        sendmsg::<()>(b.as_raw_fd(), &iov, &control, MsgFlags::empty(), None).unwrap();
        let readers: Vec<OwnedFd> = pipes.into_iter().map(|(r, _w)| r).collect();
        let err = receive_fd(&a, FILE_TAG).unwrap_err().to_string();
        assert!(err.contains(said), "{err}");
        for r in &readers {
            let mut byte = [0u8; 1];
            assert_eq!(
                read(r, &mut byte),
                Ok(0),
                "a write end is still open: {err}"
            );
        }
    }
}
