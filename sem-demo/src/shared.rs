//! Memory a parent and its children share: an anonymous MAP_SHARED page of atomics.
//!
//! Mapped MAP_SHARED | MAP_ANONYMOUS *before* fork, the page is the same physical
//! memory in parent and child, and a store by one is seen by the other with no
//! system call. Every slot is an `AtomicU64`: two processes touching plain memory
//! at once would be a data race (undefined behaviour); atomics make each load and
//! store whole. A load followed by a store is still two steps, and that gap is what
//! a semaphore protects. (Between unrelated processes, map a shm_open object
//! instead: not shown here.)
//!
//! Needs nix with the feature "mman".

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// The size of one mapping: 4096 bytes, 512 slots (a page on x86-64 and most
/// arm64 kernels; the kernel rounds a mapping up to whole pages anyway).
const BYTES: usize = 4096;

/// A shared page of [`AtomicU64`] slots, all 0 at first. Each process unmaps its
/// own mapping on drop.
///
/// # Examples
/// ```
/// use std::sync::atomic::Ordering;
/// let page = sem_demo::shared::SharedAtomics::map()?;
/// page.slot(0).fetch_add(1, Ordering::SeqCst); // a forked child would see it
/// assert_eq!(page.slot(0).load(Ordering::SeqCst), 1);
/// # Ok::<(), nix::Error>(())
/// ```
pub struct SharedAtomics {
    page: NonNull<AtomicU64>,
}

impl SharedAtomics {
    /// How many slots the page has.
    pub const SLOTS: usize = BYTES / size_of::<AtomicU64>();

    /// mmap one anonymous shared page. Map it before fork: a page mapped after is
    /// the mapping process's alone.
    pub fn map() -> nix::Result<SharedAtomics> {
        let len = NonZeroUsize::new(BYTES).expect("4096 is not zero");
        // SAFETY: an anonymous mapping touches no existing memory; the kernel picks
        // the address and fills the page with zeros, a valid array of AtomicU64.
        let addr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(SharedAtomics { page: addr.cast() })
    }

    /// Slot `index` (panics at [`SLOTS`](Self::SLOTS) or more).
    pub fn slot(&self, index: usize) -> &AtomicU64 {
        assert!(index < Self::SLOTS, "slot {index} of {}", Self::SLOTS);
        // SAFETY: the slot is inside our mapping for as long as `self` lives, and
        // every process touches it only through atomic operations.
        unsafe { &*self.page.as_ptr().add(index) }
    }
}

impl Drop for SharedAtomics {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, BYTES long, and nothing borrows it any more.
        let _ = unsafe { munmap(self.page.cast(), BYTES) };
    }
}
