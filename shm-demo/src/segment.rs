//! What lies inside the segment: the same layout for both flavours.
//!
//! ```text
//! offset 0      Header (one page): how the reader set the segment up, who is attached,
//!               the POSIX flavour's four semaphores, the two spin counters, the
//!               spinning ring's two indices
//! offset 4096   slot 0: [len: u64][data: stride - 8 bytes]
//!               slot 1, ... slot n-1        (n = `slots`, each `stride` bytes)
//! ```
//!
//! The slots are a ring: the writer fills slot k % n, the reader empties it, and two
//! counting semaphores say how many are free and how many are filled (`sync.rs`). A
//! ping uses slot 0 for the request and slot 1 for the answer.
//!
//! Only offsets are stored in the segment, never pointers: each process maps it at its
//! own address, so a pointer valid in one would point at nothing in the other.
//!
//! Every field of the header is an atomic or an `UnsafeCell`: two processes share this
//! memory, so Rust must never assume that one `&Header` is the only way to reach it.
//!
//! The slots are different: their bytes are plain memory, and what keeps the two
//! processes from touching one slot at once is the semaphore protocol, which no Rust
//! type can see. So the `Ring` calls that read or write a slot's bytes (`store`,
//! `bytes`, `copy`) are `unsafe fn`: each caller says, in a `// SAFETY:` line, why it
//! holds the slot (after its P, before its V). A `&[u8]` from `bytes` must be dropped
//! before that V: after it, the other process may overwrite the bytes under it.
//!
//! A header is read from memory any process of the same uid can write, so the writer
//! checks every field before using it (`published_layout`): a slot count of 0, or a
//! size that overflows, is an error, never a division by zero or a panic.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use anyhow::{Result, bail};

use crate::Workload;

/// The header's page; the slots start right after it.
pub const HEADER_LEN: usize = 4096;
/// Segment sizes are rounded up to this (the page size on x86-64 and most others).
const PAGE: usize = 4096;
/// Written last by the reader, once everything else is in place: "ready".
const MAGIC: u64 = u64::from_le_bytes(*b"shmdemo1");
/// A slot whose length is END is the writer's "that was all".
pub const END: u64 = u64::MAX;
/// The bytes before a slot's data: its length.
const SLOT_HEAD: usize = 8;
/// Text messages: four slots of one page each.
const TEXT_SLOTS: usize = 4;
/// The most a text message may hold: one page minus the length.
pub const TEXT_CAPACITY: usize = 4096 - SLOT_HEAD;
/// Bulk: as many slots as fit in about 1 MiB, between 2 and 16.
const RING_BYTES: usize = 1 << 20;
/// Every layout has at least 2 slots (a ping uses slot 0 and slot 1), at most 16.
const MIN_SLOTS: usize = 2;
const MAX_SLOTS: usize = 16;

/// Which workload the reader set the segment up for. The writer must run the same.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(u32)]
pub enum Kind {
    Text = 1,
    Bulk = 2,
    Ping = 3,
    Spin = 4,
    /// Bulk through the spinning ring (`--count --spin`).
    SpinBulk = 5,
}

impl Kind {
    fn from_u32(n: u32) -> Option<Kind> {
        [
            Kind::Text,
            Kind::Bulk,
            Kind::Ping,
            Kind::Spin,
            Kind::SpinBulk,
        ]
        .into_iter()
        .find(|k| *k as u32 == n)
    }
}

/// The shape of the segment, chosen by the reader from its workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub kind: Kind,
    /// Messages (bulk, ping); 0 for text, whose end the writer decides.
    pub count: u64,
    /// Bytes per message (bulk, ping); the most a message may hold (text).
    pub size: usize,
    pub slots: usize,
    /// Bytes from one slot to the next, a multiple of 64 (a cache line).
    pub stride: usize,
}

impl Layout {
    pub fn for_workload(workload: &Workload) -> Layout {
        let (kind, count, size, slots) = match *workload {
            Workload::Text(_) => (Kind::Text, 0, TEXT_CAPACITY, TEXT_SLOTS),
            Workload::Bulk { count, size, spin } => (
                if spin { Kind::SpinBulk } else { Kind::Bulk },
                count,
                size,
                (RING_BYTES / size).clamp(MIN_SLOTS, MAX_SLOTS),
            ),
            Workload::Ping { count, size, spin } => {
                let kind = if spin { Kind::Spin } else { Kind::Ping };
                (kind, count, size, 2)
            }
        };
        Layout {
            kind,
            count,
            size,
            slots,
            stride: (SLOT_HEAD + size).next_multiple_of(64),
        }
    }

    /// The whole segment, header included, in whole pages: a mapping is made of
    /// pages, and a page that is only partly inside the object is a trap best avoided.
    /// Panics on overflow, which only a layout that `checked_len` refused can reach.
    pub fn len(&self) -> usize {
        self.checked_len()
            .expect("a layout the size of the address space")
    }

    /// `len`, or None if it overflows (a header from another program can say anything).
    fn checked_len(&self) -> Option<usize> {
        self.slots
            .checked_mul(self.stride)?
            .checked_add(HEADER_LEN)?
            .checked_next_multiple_of(PAGE)
    }
}

/// The first page of the segment.
#[repr(C)]
pub struct Header {
    magic: AtomicU64,
    kind: AtomicU32,
    slots: AtomicU32,
    count: AtomicU64,
    size: AtomicU64,
    stride: AtomicU64,
    reader_pid: AtomicI32,
    /// 0 until a writer claims the segment.
    writer_pid: AtomicI32,
    /// Set by the reader on its way out, whatever the reason: a writer stops waiting.
    reader_left: AtomicU32,
    /// Set by the writer once it will never wait on a semaphore again.
    writer_done: AtomicU32,
    /// The reader's own address for the segment. Only for narration: the writer prints
    /// it beside its own; it must never be used as a pointer (see the top of the file).
    reader_addr: AtomicU64,
    /// The POSIX flavour's unnamed semaphores (sem_init with pshared=1) live here,
    /// inside the shared page, and never move. System V leaves this unused: its
    /// semaphores live in the kernel.
    pub posix_sems: [UnsafeCell<MaybeUninit<libc::sem_t>>; 4],
    /// `--spin`: the writer's request number and the reader's answer number, each on
    /// its own cache line so that the two sides do not fight over one line.
    pub ping_seq: CacheLine,
    pub pong_seq: CacheLine,
    /// `--count --spin`: the messages the writer has put in the ring, and those the
    /// reader is done with (`shm_demo::spin`), each in 128 bytes of its own.
    pub ring_head: shm_demo::spin::Index,
    pub ring_tail: shm_demo::spin::Index,
}

#[repr(C, align(64))]
pub struct CacheLine(pub AtomicU64);

const _: () = assert!(size_of::<Header>() <= HEADER_LEN);

impl Header {
    pub fn reader_pid(&self) -> i32 {
        self.reader_pid.load(Ordering::Acquire)
    }

    pub fn writer_pid(&self) -> i32 {
        self.writer_pid.load(Ordering::Acquire)
    }

    pub fn reader_addr(&self) -> usize {
        self.reader_addr.load(Ordering::Relaxed) as usize
    }

    /// The writer takes the segment: only one writer at a time. `Err(pid)` names the
    /// writer that already has it.
    pub fn claim_for_writer(&self, pid: i32) -> Result<(), i32> {
        self.writer_pid
            .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
    }

    pub fn mark_reader_left(&self) {
        self.reader_left.store(1, Ordering::Release);
    }

    pub fn reader_left(&self) -> bool {
        self.reader_left.load(Ordering::Acquire) != 0
    }

    pub fn mark_writer_done(&self) {
        self.writer_done.store(1, Ordering::Release);
    }

    pub fn writer_done(&self) -> bool {
        self.writer_done.load(Ordering::Acquire) != 0
    }
}

/// One process's mapping of the segment: where it starts, how long it is. The flavour's
/// own guard (posix `Mapping`, sysv `Attachment`) unmaps it; `'a` borrows that guard.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    base: NonNull<u8>,
    len: usize,
    _mapping: PhantomData<&'a ()>,
}

impl<'a> Segment<'a> {
    /// # Safety
    /// `base` starts a `MAP_SHARED` read-write mapping of `len` bytes, page-aligned,
    /// that stays mapped for `'a`, and `len` is at least `HEADER_LEN`.
    pub unsafe fn new(base: NonNull<std::ffi::c_void>, len: usize) -> Segment<'a> {
        assert!(len >= HEADER_LEN, "a segment holds at least its header");
        Segment {
            base: base.cast(),
            len,
            _mapping: PhantomData,
        }
    }

    /// The virtual address where this process sees the segment.
    pub fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    pub fn header(&self) -> &'a Header {
        // SAFETY: `new` guarantees a live, page-aligned mapping of at least HEADER_LEN
        // bytes, enough for a Header. The memory starts all zero (ftruncate and shmget
        // both zero-fill), a valid value for every field (atomics, MaybeUninit); after
        // that, every field is only touched through atomics or UnsafeCell.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// The reader's last step of setting up: write the layout, then MAGIC with Release,
    /// so a writer that sees MAGIC (Acquire) also sees everything written before it.
    pub fn publish(&self, layout: &Layout, reader_pid: i32) {
        let h = self.header();
        h.kind.store(layout.kind as u32, Ordering::Relaxed);
        h.slots.store(layout.slots as u32, Ordering::Relaxed);
        h.count.store(layout.count, Ordering::Relaxed);
        h.size.store(layout.size as u64, Ordering::Relaxed);
        h.stride.store(layout.stride as u64, Ordering::Relaxed);
        h.reader_pid.store(reader_pid, Ordering::Relaxed);
        h.reader_addr.store(self.addr() as u64, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
    }

    /// The writer's first look: the layout the reader published, checked against the
    /// segment's real length (a slot past the end would be a SIGBUS, not an error).
    pub fn published_layout(&self) -> Result<Layout> {
        let h = self.header();
        if h.magic.load(Ordering::Acquire) != MAGIC {
            bail!(
                "the segment is not set up yet (no ready mark in its header): \
                 is its reader still starting, or was it made by another program?"
            );
        }
        let kind = h.kind.load(Ordering::Relaxed);
        let Some(kind) = Kind::from_u32(kind) else {
            bail!(
                "the segment's header names workload kind {kind}, which no reader of ours writes"
            );
        };
        let l = Layout {
            kind,
            count: h.count.load(Ordering::Relaxed),
            size: usize::try_from(h.size.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
            slots: h.slots.load(Ordering::Relaxed) as usize,
            stride: usize::try_from(h.stride.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
        };
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&l.slots) {
            bail!(
                "the segment's header says {} slots: a reader of ours makes {MIN_SLOTS} to \
                 {MAX_SLOTS} (was it made by another program?)",
                l.slots
            );
        }
        // Each slot starts with an AtomicU64: the stride keeps every slot 64-aligned.
        let fits = l.size.checked_add(SLOT_HEAD).is_some_and(|n| n <= l.stride)
            && l.stride.is_multiple_of(64)
            && l.checked_len().is_some_and(|len| len <= self.len);
        if !fits {
            bail!(
                "the segment's header describes slots that do not fit in it \
                 ({} slots of {} bytes, stride {}, in {} bytes)",
                l.slots,
                l.size,
                l.stride,
                self.len
            );
        }
        if h.reader_pid() <= 0 {
            bail!(
                "the segment's header names no reader process (pid {})",
                h.reader_pid()
            );
        }
        Ok(l)
    }

    /// The slots after the header, as the reader laid them out.
    pub fn ring(&self, layout: &Layout) -> Ring<'a> {
        assert!(layout.len() <= self.len, "the ring fits in the segment");
        Ring {
            // SAFETY: HEADER_LEN < len, so the result stays inside the mapping.
            first: unsafe { self.base.add(HEADER_LEN) },
            slots: layout.slots,
            stride: layout.stride,
            _mapping: PhantomData,
        }
    }
}

/// The ring of slots. Who may touch which slot when is the semaphores' business; this
/// type only keeps every access inside the segment, and leaves the rest to the callers
/// of its `unsafe fn`s (see the top of the file).
pub struct Ring<'a> {
    first: NonNull<u8>,
    slots: usize,
    stride: usize,
    _mapping: PhantomData<&'a ()>,
}

impl Ring<'_> {
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The most bytes a slot holds.
    pub fn capacity(&self) -> usize {
        self.stride - SLOT_HEAD
    }

    fn slot(&self, i: usize) -> NonNull<u8> {
        assert!(i < self.slots, "slot {i} of {}", self.slots);
        // SAFETY: i < slots, and `Segment::ring` checked that all the slots fit.
        unsafe { self.first.add(i * self.stride) }
    }

    fn len_cell(&self, i: usize) -> &AtomicU64 {
        // SAFETY: the slot's first 8 bytes, inside the mapping, 64-byte aligned; the
        // length is only ever accessed as an atomic, by both processes.
        unsafe { self.slot(i).cast::<AtomicU64>().as_ref() }
    }

    fn data(&self, i: usize) -> NonNull<u8> {
        // SAFETY: SLOT_HEAD < stride: still inside slot i.
        unsafe { self.slot(i).add(SLOT_HEAD) }
    }

    /// The virtual address of slot i's data, in this process.
    pub fn data_addr(&self, i: usize) -> usize {
        self.data(i).as_ptr() as usize
    }

    /// Copies `bytes` into slot i: plain stores into memory, no system call. The
    /// semaphore post (or the spin counter's Release store) that follows publishes them.
    ///
    /// # Safety
    /// This process holds slot i: it has done its P on the semaphore that hands the
    /// slot over (`free`, or for a ping its turn) and not yet its V, so the other
    /// process neither reads nor writes the slot meanwhile.
    pub unsafe fn store(&self, i: usize, bytes: &[u8]) {
        assert!(bytes.len() <= self.capacity(), "a message fits in its slot");
        // SAFETY: the destination is slot i's data, inside the mapping, and the source
        // a separate buffer of ours; the caller holds slot i (see # Safety).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data(i).as_ptr(), bytes.len())
        };
        self.len_cell(i)
            .store(bytes.len() as u64, Ordering::Relaxed);
    }

    /// Marks slot i as the end of the stream.
    pub fn store_end(&self, i: usize) {
        self.len_cell(i).store(END, Ordering::Relaxed);
    }

    /// The length the writer stored in slot i (END for the end mark).
    pub fn len(&self, i: usize) -> u64 {
        self.len_cell(i).load(Ordering::Relaxed)
    }

    /// The bytes in slot i, read in place: no copy. `Err` if the stored length makes
    /// no sense (only a broken writer could do that).
    ///
    /// # Safety
    /// This process holds slot i (after its P, before its V, as for `store`), and the
    /// slice is dropped before that V: the lifetime ties it to the `Ring`, not to the
    /// protocol, so the compiler cannot catch a slice kept past the post.
    pub unsafe fn bytes(&self, i: usize) -> Result<&[u8]> {
        let len = self.len(i);
        if len > self.capacity() as u64 {
            bail!(
                "slot {i} claims {len} bytes, more than its {}",
                self.capacity()
            );
        }
        // SAFETY: slot i's data, `len` ≤ capacity bytes inside the mapping. The caller
        // holds slot i and drops the slice before its V (see # Safety), so the other
        // process does not write it meanwhile; any byte value is a valid u8.
        Ok(unsafe { std::slice::from_raw_parts(self.data(i).as_ptr(), len as usize) })
    }

    /// Copies slot `from` into slot `to` (the ping's answer): one memcpy in user space.
    ///
    /// # Safety
    /// This process holds both slots, as for `store`.
    pub unsafe fn copy(&self, from: usize, to: usize) -> Result<usize> {
        // SAFETY: the caller holds slot `from`; only its length is kept.
        let len = unsafe { self.bytes(from) }?.len();
        assert_ne!(from, to);
        // SAFETY: two different slots, each inside the mapping, `len` ≤ capacity; the
        // caller holds both (see # Safety).
        unsafe {
            std::ptr::copy_nonoverlapping(self.data(from).as_ptr(), self.data(to).as_ptr(), len)
        };
        self.len_cell(to).store(len as u64, Ordering::Relaxed);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fit_their_workloads() {
        let text = Layout::for_workload(&Workload::Text(vec![]));
        assert_eq!((text.slots, text.stride, text.len()), (4, 4096, 5 * 4096));
        let bulk = Layout::for_workload(&Workload::Bulk {
            count: 1,
            size: 65536,
            spin: false,
        });
        assert_eq!((bulk.slots, bulk.stride), (16, 65536 + 64));
        let big = Layout::for_workload(&Workload::Bulk {
            count: 1,
            size: 4 << 20,
            spin: true,
        });
        assert_eq!((big.kind, big.slots), (Kind::SpinBulk, 2));
        let ping = Layout::for_workload(&Workload::Ping {
            count: 1,
            size: 100,
            spin: true,
        });
        assert_eq!((ping.kind, ping.slots, ping.stride), (Kind::Spin, 2, 128));
        assert_eq!(ping.len(), 2 * 4096, "whole pages");
    }
}
