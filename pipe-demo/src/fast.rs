//! The fast paths of a pipe for bulk data: a pipe sized to the message, so writer
//! and reader overlap, and `vmsplice(2)` on the writer's side, so the writer's copy
//! into the kernel goes away.
//!
//! What each saves, on Linux as of 6.x:
//! - [`size_for_messages`]: with the default 64 KiB pipe, each 64 KiB write fills the
//!   whole pipe, so the writer sleeps on every message until the reader has emptied
//!   it: the two take turns instead of running at once on two CPUs. A pipe a few
//!   messages deep lets the writer fill the next one while the reader reads this one.
//!   A pipe that deep already (the default 64 KiB holds four 16 KiB messages) is kept.
//! - [`SpliceRing`]: `write(2)` copies the bytes from the writer's memory into
//!   pages the pipe owns, and `read(2)` copies them out again: two copies. Plain
//!   `vmsplice(2)` into a pipe (no flags) copies nothing: the pipe keeps
//!   references to the writer's own pages. The reader's `read(2)` still copies them
//!   into its buffer: one copy in all, not zero. A reader that must look at every
//!   byte cannot avoid that one in a pipe: `splice(2)` onward (to a file, a socket,
//!   another pipe) moves page references without the reader ever seeing the bytes
//!   (not shown here); reading them in place takes shared memory (shm-demo).
//!
//! The price of references: until the reader has read a page, the writer's pages
//! ARE the data in the pipe. A write to them changes what the reader gets, and a
//! page the writer frees and reuses (the allocator hands it out again) does too.
//! [`SpliceRing`] keeps that rule for its user: it writes a buffer again only
//! once the pipe can no longer hold it, and the caller keeps the ring alive
//! until the reader is done.
//!
//! `SPLICE_F_GIFT` is not used: vmsplice(2) says gifted pages must never be
//! modified again (they are the kernel's), and a gift only helps a later splice(2)
//! with SPLICE_F_MOVE, which splice(2) documents as a no-op since Linux 2.6.21.
//!
//! Standalone with `pipe.rs` beside it: std and nix (features "fs", "feature",
//! "zerocopy").

use crate::pipe;
use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, vmsplice};
use nix::unistd::{SysconfVar, sysconf};
use std::io::{Error, ErrorKind, IoSlice, Result};
use std::os::fd::AsFd;

/// How many messages deep [`size_for_messages`] makes a pipe: enough that the
/// writer is still filling while the reader drains.
pub const DEPTH: usize = 4;

/// The page size (sysconf(_SC_PAGESIZE)): a pipe counts its capacity in slots of
/// one page each.
pub fn page_size() -> usize {
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as usize,
        _ => 4096,
    }
}

/// The capacity [`size_for_messages`] asks for: [`DEPTH`] messages, rounded up to
/// a power-of-two number of pages (what F_SETPIPE_SZ gives anyway), at most
/// `max_size` (rounded down to a power-of-two number of pages), at least one page.
///
/// # Examples
/// ```
/// use pipe_demo::fast::capacity_for;
/// assert_eq!(capacity_for(65536, 4096, 1 << 20), 256 << 10); // 4 × 64 KiB
/// assert_eq!(capacity_for(1 << 20, 4096, 1 << 20), 1 << 20); // capped
/// assert_eq!(capacity_for(100, 4096, 1 << 20), 4096); // one page
/// ```
pub fn capacity_for(message: usize, page: usize, max_size: usize) -> usize {
    let pages = message.saturating_mul(DEPTH).div_ceil(page).max(1);
    let wanted = pages.checked_next_power_of_two().unwrap_or(usize::MAX);
    let max_pages = (max_size / page).max(1);
    // The largest power of two not above max_pages.
    let cap = 1usize << (usize::BITS - 1 - max_pages.leading_zeros());
    wanted.min(cap) * page
}

/// Grows a pipe for messages of `message` bytes (F_SETPIPE_SZ through
/// [`pipe::set_capacity`]) to [`capacity_for`] with the system's pipe-max-size,
/// and returns the capacity it has then.
///
/// Only grows: a pipe that already holds that much (the default 64 KiB is 16
/// messages of 4 KiB) is left as it is. Shrinking one is slower, not faster: in
/// this repository's bench on a 2-vCPU VM, 4 KiB messages through a pipe cut to
/// 16 KiB moved 861 MiB/s, against 7368 through the default 64 KiB.
///
/// The limits of [`pipe::set_capacity`] apply: past pipe-user-pages-soft an
/// unprivileged process may not grow a pipe (EPERM). That error is returned; the
/// pipe then keeps its old capacity and still works, only slower.
pub fn size_for_messages(end: impl AsFd, message: usize) -> Result<usize> {
    let now = pipe::capacity(&end)?;
    let wanted = capacity_for(message, page_size(), pipe::limits()?.max_size);
    if wanted <= now {
        return Ok(now);
    }
    pipe::set_capacity(end, wanted)
}

/// Hands all of `buf` to the pipe with `vmsplice(2)`, retrying EINTR and partial
/// splices (vmsplice returns once it has put in what fits, like a write). EPIPE as
/// in [`pipe::write_all`]: the reader is gone.
///
/// The pipe now refers to the pages of `buf` instead of holding a copy: do not
/// write to them, or free them, until the reader has read them. Use [`SpliceRing`]
/// unless you can tell that yourself.
pub fn vmsplice_all(end: impl AsFd, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match vmsplice(end.as_fd(), &[IoSlice::new(buf)], SpliceFFlags::empty()) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE) => {
                return Err(Error::new(
                    ErrorKind::BrokenPipe,
                    "the reader is gone: vmsplice failed with EPIPE (no process has the read end open)",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Page-aligned message buffers used in turn with [`vmsplice_all`], enough of them
/// that the one about to be filled again is no longer in the pipe.
///
/// Why that holds: each buffer starts on a page, so a message of `size` bytes
/// takes `p = ceil(size / page)` of the pipe's `S = capacity / page` slots
/// (vmsplice gives each page a slot of its own: they are never merged). The
/// reader frees slots in order, and a page's slot only after reading all of it.
/// With `R = ceil(S / p) + 1` buffers, filling buffer `i` again comes after the
/// `R - 1` messages after it have all gone into the pipe: `(R - 1) · p ≥ S` slots,
/// so if any slot of buffer `i` were still there, the pipe would hold more than
/// `S`. Assumes that nobody grows the pipe (F_SETPIPE_SZ) while the ring is in
/// use, and that only this ring writes into it.
///
/// When done: drop the ring only once the reader has read everything (it has
/// exited, say): the last `R - 1` messages may still be in the pipe, as
/// references to these pages.
///
/// # Examples
/// ```
/// use pipe_demo::{fast::SpliceRing, pipe};
/// let (read_end, write_end) = pipe::create()?;
/// let mut ring = SpliceRing::new(b"hello", pipe::capacity(&write_end)?);
/// ring.send(&write_end, |_| {})?; // as it is
/// ring.send(&write_end, |buf| buf[0] = b'j')?; // the next buffer, changed
/// let mut got = [0u8; 10];
/// assert!(pipe::read_exact(&read_end, &mut got)?);
/// assert_eq!(&got, b"hellojello");
/// drop(ring); // after the read: the pipe no longer refers to its pages
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SpliceRing {
    memory: Vec<u8>,
    /// Where the first page-aligned buffer starts in `memory`.
    start: usize,
    /// Bytes from one buffer's start to the next: `size` rounded up to pages.
    stride: usize,
    size: usize,
    buffers: usize,
    next: usize,
}

impl SpliceRing {
    /// A ring for messages of `template.len()` bytes into a pipe of `capacity`
    /// bytes ([`pipe::capacity`]), every buffer starting as a copy of `template`
    /// (what stays the same in every message is written only once). It takes
    /// about `capacity + 2 · size` bytes of memory.
    pub fn new(template: &[u8], capacity: usize) -> SpliceRing {
        let size = template.len();
        let page = page_size();
        let stride = size.div_ceil(page).max(1) * page;
        let buffers = capacity.div_ceil(stride) + 1;
        // One page more than needed, so that a page boundary falls inside: the
        // first buffer starts there (no unsafe aligned allocation needed).
        let mut memory = vec![0u8; buffers * stride + page];
        let start = memory.as_ptr().align_offset(page);
        for i in 0..buffers {
            let at = start + i * stride;
            memory[at..at + size].copy_from_slice(template);
        }
        SpliceRing {
            memory,
            start,
            stride,
            size,
            buffers,
            next: 0,
        }
    }

    /// How many buffers the ring turns through.
    pub fn buffers(&self) -> usize {
        self.buffers
    }

    /// Lets `fill` change the next buffer (it gets `size` bytes, holding what it
    /// held `buffers()` messages ago, or the template) and vmsplices it into `end`.
    pub fn send(&mut self, end: impl AsFd, fill: impl FnOnce(&mut [u8])) -> Result<()> {
        let at = self.start + self.next * self.stride;
        let buf = &mut self.memory[at..at + self.size];
        fill(buf);
        vmsplice_all(end, buf)?;
        self.next = (self.next + 1) % self.buffers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule the ring exists for: a vmspliced page is referenced, not copied,
    /// so a write to it before the reader reads changes what the reader gets.
    /// (If a kernel ever copied instead, this would fail, and the ring's rule
    /// would be a needless precaution rather than a wrong one.)
    #[test]
    fn vmsplice_puts_references_not_copies_in_the_pipe() {
        let (read_end, write_end) = pipe::create().unwrap();
        let page = page_size();
        let mut memory = vec![b'a'; 2 * page];
        let start = memory.as_ptr().align_offset(page);
        vmsplice_all(&write_end, &memory[start..start + page]).unwrap();
        memory[start] = b'b'; // after vmsplice returned, before the read
        let mut got = vec![0u8; page];
        assert!(pipe::read_exact(&read_end, &mut got).unwrap());
        assert_eq!(got[0], b'b', "the reader saw the page as it is now");
    }

    #[test]
    fn the_ring_has_enough_buffers_to_outlast_the_pipe() {
        let page = page_size();
        // 16 slots, messages of 1 page: 17 buffers.
        assert_eq!(SpliceRing::new(&vec![0; page], 16 * page).buffers(), 17);
        // A message of 1.5 pages takes 2 slots: 8 of them fill the pipe, plus one.
        assert_eq!(
            SpliceRing::new(&vec![0; page + page / 2], 16 * page).buffers(),
            9
        );
        // A message bigger than the pipe: two buffers, used in turn.
        assert_eq!(SpliceRing::new(&vec![0; 32 * page], 16 * page).buffers(), 2);
    }

    #[test]
    fn capacity_for_rounds_to_a_power_of_two_of_pages_under_the_cap() {
        assert_eq!(capacity_for(3 * 4096, 4096, 1 << 20), 16 * 4096);
        assert_eq!(capacity_for(1 << 20, 4096, 3 << 19), 1 << 20); // max 1.5 MiB → 1 MiB
        assert_eq!(capacity_for(usize::MAX, 4096, 1 << 20), 1 << 20);
    }
}
