//! Passing open file descriptors over a Unix socket (SCM_RIGHTS), and a sealed memfd to
//! share memory through one.
//!
//! - [`send_fd`]: sendmsg(2) with one byte of data (a control message needs at least one)
//!   and an SCM_RIGHTS control message naming the fd.
//! - [`recv_fds`] / [`recv_one_fd`]: recvmsg(2) with MSG_CMSG_CLOEXEC. The trap: the
//!   kernel installs every fd of the message in our table as it delivers it, wanted or
//!   not, and when they do not all fit the control buffer (MSG_CTRUNC) it installs those
//!   that fit and discards the rest. nix 0.31's `cmsgs()` returns ENOBUFS on MSG_CTRUNC before
//!   handing those out, so they would leak: here the buffer is walked by hand and every
//!   fd is owned at once, so each is closed on every way out.
//! - [`sealed_memfd`] and [`SharedPage`]: memory with no name anywhere, sealed so its
//!   holder cannot shrink it under a mapping (which would kill the mapper with SIGBUS),
//!   checked (F_GET_SEALS) before it is mapped.

use std::io::{self, IoSlice};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::stat::fstat;
use nix::unistd::ftruncate;

/// One sendmsg(2): the byte `tag` and an SCM_RIGHTS message naming `fd`. The receiver
/// gets its own fd for the same open file (same offset, same mode). On a socket with
/// SO_SNDTIMEO a full buffer comes back as `WouldBlock`; EINTR as `Interrupted`.
pub fn send_fd(conn: impl AsFd, fd: BorrowedFd, tag: u8) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    let data = [tag];
    let iov = [IoSlice::new(&data)];
    let raw = conn.as_fd().as_raw_fd();
    sendmsg::<()>(raw, &iov, &control, MsgFlags::empty(), None)?;
    Ok(())
}

/// What one [`recv_fds`] brought: the data byte (`None`: EOF), every fd that came, each
/// owned (closed on drop), and whether the kernel had to drop some (MSG_CTRUNC).
#[derive(Debug)]
pub struct Received {
    /// The one data byte, or `None` at EOF.
    pub byte: Option<u8>,
    /// Every fd the kernel installed for this message.
    pub fds: Vec<OwnedFd>,
    /// MSG_CTRUNC: more fds were sent than fit the control buffer; the kernel closed those.
    pub truncated: bool,
}

/// One recvmsg(2) for one byte and up to a dozen fds (CMSG_SPACE(12 * 4) = 64 bytes),
/// MSG_CMSG_CLOEXEC (each fd close-on-exec from its first moment). Every fd that arrived
/// is in the result, owned, even when the control data was cut. EAGAIN on a socket with
/// SO_RCVTIMEO comes back as `WouldBlock`, EINTR as `Interrupted`.
pub fn recv_fds(conn: impl AsFd) -> io::Result<Received> {
    let raw = conn.as_fd().as_raw_fd();
    let mut data = [0u8; 1];
    let mut space = [0u64; 8]; // u64s, so a cmsghdr in it is aligned
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
    // SAFETY: msg points at `iov` (1 byte of `data`) and `space`, all alive and writable
    // for the call; nix's recvmsg would not give out the fds on MSG_CTRUNC (FFI nix lacks).
    let got = unsafe { libc::recvmsg(raw, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel set msg_controllen to the bytes it wrote into `space`, whole
    // cmsghdrs only; CMSG_FIRSTHDR/CMSG_NXTHDR stay inside that length, and CMSG_DATA of
    // an SCM_RIGHTS header holds (cmsg_len - CMSG_LEN(0)) / 4 fds, maybe unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let first = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..bytes / size_of::<RawFd>() {
                    // The kernel just installed this fd for us; nothing else refers to it.
                    fds.push(OwnedFd::from_raw_fd(first.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        byte: (got > 0).then_some(data[0]),
        fds,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Exactly one fd with the byte `tag`, or an error (`InvalidData`, `UnexpectedEof`) after
/// every fd that came was closed: a sender of two, three or fifty fds cannot make us
/// run out of fds.
///
/// # Examples
/// ```
/// use std::io::{Read, Seek, Write};
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use socket_demo::fdpass::{recv_one_fd, send_fd};
/// let (a, b) = UnixStream::pair().unwrap();
/// let mut file = std::fs::File::from(socket_demo::fdpass::sealed_memfd("doctest", 64).unwrap());
/// file.write_all(b"through the fd").unwrap();
/// file.rewind().unwrap();
/// send_fd(&a, file.as_fd(), b'F').unwrap();
/// let mut got = std::fs::File::from(recv_one_fd(&b, b'F').unwrap());
/// let mut text = [0u8; 14];
/// got.read_exact(&mut text).unwrap(); // the same open file, the same offset
/// assert_eq!(&text, b"through the fd");
/// ```
pub fn recv_one_fd(conn: impl AsFd, tag: u8) -> io::Result<OwnedFd> {
    let Received {
        byte,
        mut fds,
        truncated,
    } = recv_fds(conn)?;
    let Some(byte) = byte else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection before sending its fd",
        ));
    };
    if byte != tag || truncated || fds.len() != 1 {
        let count = fds.len();
        drop(fds); // closed before we say so
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "expected one fd with the byte {:?}, got {count} fds with {:?}{}; every fd \
                 that came with it is closed",
                tag as char,
                byte as char,
                if truncated {
                    " and more that did not fit (control data cut: MSG_CTRUNC)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(fds.remove(0))
}

/// memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING), `len` bytes, then sealed: F_SEAL_SHRINK
/// and F_SEAL_GROW (its size is fixed for everyone, us included) and F_SEAL_SEAL (the
/// seals themselves are fixed). Safe to hand to [`SharedPage::map`] in another process.
pub fn sealed_memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let memfd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    ftruncate(&memfd, len as i64)?;
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(&memfd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(memfd)
}

/// A MAP_SHARED mapping of a sealed memfd, unmapped on drop. The other process may write
/// the page at any time, so it is only touched one byte at a time through `AtomicU8`,
/// never through a `&[u8]` (which promises nobody changes the bytes) nor with plain or
/// volatile accesses (a data race either way). The atomics make each byte race-free;
/// whose text is complete when is for the caller to say (a byte on the socket after the
/// writes, received before the reads).
#[derive(Debug)]
pub struct SharedPage {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedPage {
    /// Maps all of `fd`, once F_GET_SEALS shows it can never shrink under the mapping
    /// (an fd that is not a memfd, or one without F_SEAL_SHRINK, is refused).
    pub fn map(fd: impl AsFd) -> io::Result<SharedPage> {
        let refuse = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        let seals = match fcntl(&fd, FcntlArg::F_GET_SEALS) {
            Ok(bits) => SealFlag::from_bits_truncate(bits),
            Err(nix::errno::Errno::EINVAL) => {
                return Err(refuse(
                    "the fd is not a memfd (F_GET_SEALS: EINVAL): refusing to map it".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if !seals.contains(SealFlag::F_SEAL_SHRINK) {
            return Err(refuse(format!(
                "the memfd is not sealed against shrinking (F_GET_SEALS: {seals:?}): its \
                 holder could cut it under the mapping, and touching it would be SIGBUS \
                 (the sender must add F_SEAL_SHRINK)"
            )));
        }
        // Read after the seals: from now on the file cannot get smaller than this.
        let len = fstat(&fd)?.st_size as usize;
        let size = NonZeroUsize::new(len).ok_or_else(|| refuse("the memfd is empty".into()))?;
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
        }?;
        Ok(SharedPage {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: [`SharedPage::map`] refuses an empty memfd.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the mapping is in this process (each process has its own address for it).
    pub fn addr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn cell(&self, i: usize) -> &AtomicU8 {
        assert!(i < self.len);
        // SAFETY: `i < len`, inside the mapping, which lives until drop (the reference
        // cannot outlive `self`) and whose pages stay (F_SEAL_SHRINK, checked in `map`);
        // PROT_READ | PROT_WRITE; alignment 1; every access to the page, here and in the
        // peer (this same code), is atomic, as `from_ptr` requires.
        unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(i)) }
    }

    /// Writes `text` (cut to fit) and a NUL after it.
    pub fn write_text(&self, text: &str) {
        let n = text.len().min(self.len - 1);
        for (i, &b) in text.as_bytes()[..n].iter().enumerate() {
            self.cell(i).store(b, Ordering::Relaxed);
        }
        self.cell(n).store(0, Ordering::Relaxed);
    }

    /// The text up to the first NUL (or the whole page), lossily decoded.
    pub fn read_text(&self) -> String {
        let bytes: Vec<u8> = (0..self.len)
            .map(|i| self.cell(i).load(Ordering::Relaxed))
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
    use std::os::unix::net::UnixStream;

    /// Three fds in one SCM_RIGHTS are refused, and all three are closed (each pipe's
    /// read end sees EOF, so no copy of its write end is left open here).
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
        let err = recv_one_fd(&a, b'F').unwrap_err().to_string();
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
