//! What the kernel shows about a mapping, and the guard page that keeps two mappings
//! apart.
//!
//! - `/proc/self/maps` has one line per mapping: its address range, `rw-s` (the `s` is
//!   MAP_SHARED), and the file behind it, by device and inode. Reader and writer each
//!   find their own line: different addresses, the same inode, which is the same
//!   memory.
//! - `/proc/self/pagemap` has one 8-byte entry per virtual page; for a page that is
//!   present, bits 0-54 are the physical page frame number (PFN). The kernel shows the
//!   PFN only to a process with CAP_SYS_ADMIN (0 to others): where it shows it, both
//!   sides print the same frame, the notes' "相同的物理内存" seen directly.

use std::fs::File;
use std::os::unix::fs::FileExt;

pub use shm_demo::{GuardPage, page_size};

/// This process's line of /proc/self/maps for the mapping that starts at `addr`.
pub fn maps_line(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let start = format!("{addr:x}-");
    maps.lines()
        .find(|line| line.starts_with(&start))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The inode in a line of /proc/PID/maps (its fifth field).
pub fn inode(maps_line: &str) -> Option<&str> {
    maps_line.split_whitespace().nth(4)
}

/// What /proc/self/pagemap says about the page at `addr`.
pub enum Frame {
    /// The physical page frame number.
    Number(u64),
    /// Present, but the kernel hides the number (no CAP_SYS_ADMIN).
    Hidden,
    /// Not in memory yet, or pagemap not readable.
    Unknown,
}

/// The physical frame behind the virtual page at `addr` (touched before, so present).
pub fn frame(addr: usize) -> Frame {
    let Ok(pagemap) = File::open("/proc/self/pagemap") else {
        return Frame::Unknown;
    };
    let mut entry = [0u8; 8];
    let offset = (addr / page_size()) as u64 * 8;
    if pagemap.read_exact_at(&mut entry, offset).is_err() {
        return Frame::Unknown;
    }
    let entry = u64::from_le_bytes(entry);
    let present = entry >> 63 == 1;
    let pfn = entry & ((1 << 55) - 1);
    match (present, pfn) {
        (false, _) => Frame::Unknown,
        (true, 0) => Frame::Hidden,
        (true, pfn) => Frame::Number(pfn),
    }
}

/// The text for the terminal: `bytes` as a quoted string, cut after 200 bytes (with
/// "…"), so a long message from a program nobody here wrote fills no screen.
pub fn quoted(bytes: &[u8]) -> String {
    const SHOWN: usize = 200;
    let text = format!(
        "{:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)])
    );
    if bytes.len() > SHOWN {
        format!("{text}…")
    } else {
        text
    }
}

/// Up to the first 16 bytes of `bytes` in hex, "68 65 6c 6c 6f", "…" if there are more.
pub fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "no bytes".into();
    }
    let mut text: Vec<String> = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 16 {
        text.push("…".into());
    }
    text.join(" ")
}

/// Narrates where this process sees the segment: its address, its line of
/// /proc/PID/maps (the inode is the same for both sides), and the physical frame of
/// its first page where the kernel shows it (the same for both sides too).
pub fn show_mapping(role: &str, segment: &crate::segment::Segment) {
    let addr = segment.addr();
    let pid = std::process::id();
    match maps_line(addr) {
        Some(line) => say!(
            role,
            "my view: the segment at {addr:#x}; /proc/{pid}/maps: {line} (inode {})",
            inode(&line).unwrap_or("?")
        ),
        None => say!(
            role,
            "my view: the segment at {addr:#x} (no line of /proc/{pid}/maps starts there?)"
        ),
    }
    match frame(addr) {
        Frame::Number(pfn) => say!(
            role,
            "page 0 at {addr:#x} is physical frame {pfn:#x} (/proc/self/pagemap)"
        ),
        Frame::Hidden => say!(
            role,
            "page 0 at {addr:#x}: /proc/self/pagemap hides physical frames without \
             CAP_SYS_ADMIN; the shared inode above is the evidence"
        ),
        Frame::Unknown => say!(
            role,
            "page 0 at {addr:#x}: no physical frame to show (/proc/self/pagemap unreadable)"
        ),
    }
}
