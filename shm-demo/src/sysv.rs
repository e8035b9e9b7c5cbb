//! The `sysv` flavour: `shmget` + `shmat`, and a System V semaphore set with the same key.
//!
//! System V IPC names its objects by a number, the key. `shmget(key, size,
//! IPC_CREAT|IPC_EXCL|0600)` makes a segment of kernel memory and returns its id;
//! `shmat(id)` attaches it to our address space, where the kernel picks. Another
//! process that attaches the same id gets the same pages at an address of its own.
//!
//! The semaphores: a System V set of four (`semget` with the same key; segments and
//! semaphore sets have separate key spaces, so one key names both). Why not unnamed
//! POSIX ones in the segment, as the posix flavour does? To stay in one family: `ipcs`
//! lists the segment and the set side by side, `ipcrm` removes both, and the demo
//! shows both APIs of the notes' era. Their price: each P and V is a system call, even
//! when nobody has to sleep (a POSIX semaphore enters the kernel only to sleep, or to
//! wake a sleeper).
//!
//! Notes, 共享内存: 拿出一块虚拟地址空间来，映射到相同的物理内存中 — here one segment of
//! kernel memory, attached by the reader and by the writer at two different addresses.
//!
//! Run: `cargo run -p shm-demo -- sysv`, or in two terminals `shm-demo reader sysv
//! --key 0x1234` and `shm-demo writer sysv --key 0x1234 hello`. While the reader
//! waits: `ipcs -m -s` (the segment, nattch 1, and the set of 4 semaphores).
//!
//! Watch for: `shmctl(IPC_RMID)` reporting the processes still attached (the reader
//! itself among them: it marks before it detaches), and the segment freed only at the
//! last `shmdt`; in /proc/PID/maps, `/SYSV<key> (deleted)`.
//!
//! In production: prefer POSIX shared memory (or memfd) and the `memmap2` crate; no
//! maintained Rust wrapper for System V IPC exists, and its keys are a global namespace
//! that any process can collide with.
//!
//! Traps, each met below:
//! - `shmctl(IPC_RMID)` does not remove a segment, it marks it: the memory stays until
//!   the last process detaches (`nattch` counts them). The narration shows the count.
//! - Neither glibc nor the `libc` crate defines `union semun` for `semctl`: it is
//!   defined here, as semctl(2) asks the caller to.
//! - The `libc` crate (0.2) declares no `semtimedop`, though glibc has one: it is
//!   called with `libc::syscall`.
//! - The key is free for reuse as soon as the segment is marked, even while attached.

use std::ffi::{c_int, c_short, c_ushort, c_void};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::unistd::{Pid, getpid};

use crate::segment::{HEADER_LEN, Layout, Segment};
use crate::sync::{Sem, Semaphores, initial_values};

/// Bad usage if the kernel's limits could never allow the segment (checked before
/// creating): SHMMAX bytes for one segment, SHMALL pages for all of them.
pub fn check_size(len: usize) -> Result<(), String> {
    let limit = |name: &str| -> Option<u128> {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if let Some(shmmax) = limit("shmmax") {
        if len as u128 > shmmax {
            return Err(format!(
                "a segment of {len} bytes is over the kernel's limit SHMMAX ({shmmax}): use a smaller --size"
            ));
        }
    }
    if let Some(shmall) = limit("shmall") {
        let pages = len.div_ceil(crate::memory::page_size()) as u128;
        if pages > shmall {
            return Err(format!(
                "a segment of {pages} pages is over the kernel's limit SHMALL ({shmall} pages)"
            ));
        }
    }
    Ok(())
}

/// How keys are printed, and typed back into --key and ipcrm: 0x5300abcd.
pub fn hex_key(key: i32) -> String {
    format!("{:#010x}", key as u32)
}

/// What the reader makes: segment and semaphore set, the segment attached. Dropping it
/// removes the set, marks the segment for removal, then detaches (which frees it).
pub struct Created {
    sems: SemSet,
    segment: SegmentId,
    attachment: Attachment,
}

/// The reader's side: create the segment, attach it, create and set the semaphores.
pub fn create(key: i32, layout: &Layout) -> Result<Created> {
    let role = "reader";
    let len = layout.len();
    let segment = create_segment(key, len)?;
    let attachment = attach(segment.id, len, role)?;
    let sems = create_semaphores(key, initial_values(layout.slots))?;
    Ok(Created {
        sems,
        segment,
        attachment,
    })
}

impl Created {
    pub fn segment(&self) -> Segment<'_> {
        self.attachment.segment()
    }

    pub fn sems(&self) -> &SemSet {
        &self.sems
    }

    /// What removing it removes, for the interrupted message.
    pub fn describe(&self) -> String {
        format!(
            "segment shmid {} and semaphore set semid {} (key {})",
            self.segment.id,
            self.sems.id,
            hex_key(self.segment.key)
        )
    }
}

/// What the writer opens: the reader's segment attached, and its semaphore set.
pub struct Opened {
    key: i32,
    sems: SemSet,
    attachment: Attachment,
}

/// The writer's side: find the segment and the set by key; attach the segment whole.
pub fn open(key: i32) -> Result<Opened> {
    let role = "writer";
    // SAFETY: plain system call; size 0 and no flags: find an existing segment.
    let id = unsafe { libc::shmget(key, 0, 0) };
    if id < 0 {
        return match Errno::last() {
            Errno::ENOENT => bail!(
                "no System V segment with key {k}: start the reader first (shm-demo reader sysv --key {k})",
                k = hex_key(key)
            ),
            e => Err(e).with_context(|| format!("shmget key {}", hex_key(key))),
        };
    }
    let (len, _) = stat(id)?;
    say!(
        role,
        "shmget({}, 0, 0): shmid {id}, no IPC_CREAT: the reader made it; IPC_STAT says {len} bytes",
        hex_key(key)
    );
    if len < HEADER_LEN {
        bail!("segment {id} has {len} bytes, less than its header: not one of ours?");
    }
    let attachment = attach(id, len, role)?;
    // SAFETY: plain system call; nsems 0 and no flags: find an existing set.
    let sem_id = unsafe { libc::semget(key, 0, 0) };
    if sem_id < 0 {
        return match Errno::last() {
            Errno::ENOENT => bail!(
                "segment {} has no semaphore set beside it yet: is its reader still starting?",
                hex_key(key)
            ),
            e => Err(e).with_context(|| format!("semget key {}", hex_key(key))),
        };
    }
    say!(
        role,
        "semget({}, 0, 0): semid {sem_id}, the reader's four semaphores",
        hex_key(key)
    );
    Ok(Opened {
        key,
        sems: SemSet {
            id: sem_id,
            owner: None,
        },
        attachment,
    })
}

impl Opened {
    pub fn segment(&self) -> Segment<'_> {
        self.attachment.segment()
    }

    pub fn sems(&self) -> &SemSet {
        &self.sems
    }

    /// The command that removes what a killed reader left, by id.
    pub fn remedy(&self) -> String {
        format!("ipcrm -m {} -s {}", self.attachment.id, self.sems.id)
    }

    /// The writer's cleanup for a reader that was killed: its segment and set are
    /// still there. Removed by the ids we opened, not by the key: the key is free for
    /// anyone once the reader is dead, and a new reader may already use it.
    pub fn remove_leftovers(&self) -> Result<String> {
        let (shm, sem) = (self.attachment.id, self.sems.id);
        let mut removed = Vec::new();
        // SAFETY: plain system call; IPC_RMID takes no buffer. We stay attached: the
        // segment is only marked, and our shmdt frees it.
        if unsafe { libc::shmctl(shm, libc::IPC_RMID, std::ptr::null_mut()) } == 0 {
            removed.push(format!("segment shmid {shm}"));
        }
        // SAFETY: plain system call; IPC_RMID takes no fourth argument.
        if unsafe { libc::semctl(sem, 0, libc::IPC_RMID) } == 0 {
            removed.push(format!("semaphore set semid {sem}"));
        }
        if removed.is_empty() {
            removed.push("nothing (already gone)".into());
        }
        Ok(format!(
            "{} (key {})",
            removed.join(" and "),
            hex_key(self.key)
        ))
    }
}

/// shmget with IPC_CREAT|IPC_EXCL: a new segment or an error, never someone else's.
fn create_segment(key: i32, len: usize) -> Result<SegmentId> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
    // SAFETY: plain system call, no pointers.
    let id = unsafe { libc::shmget(key, len, flags) };
    if id < 0 {
        return match Errno::last() {
            Errno::EEXIST => bail!(
                "a System V segment with key {k} already exists: another reader is using it, or one \
                 was killed before it could clean up (remove it with: ipcrm -M {k})",
                k = hex_key(key)
            ),
            e => Err(e).with_context(|| format!("shmget key {} ({len} bytes)", hex_key(key))),
        };
    }
    say!(
        "reader",
        "shmget({}, {len}, IPC_CREAT|IPC_EXCL|0600): shmid {id}, {len} bytes of kernel memory, all zero",
        hex_key(key)
    );
    Ok(SegmentId {
        id,
        key,
        owner: getpid(),
    })
}

/// The segment's size and how many processes have it attached (IPC_STAT).
fn stat(id: c_int) -> Result<(usize, u64)> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a writable shmid_ds for IPC_STAT to fill in.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) } != 0 {
        return Err(Errno::last()).with_context(|| format!("shmctl IPC_STAT shmid {id}"));
    }
    // SAFETY: IPC_STAT succeeded, so it filled `ds` in.
    let ds = unsafe { ds.assume_init() };
    Ok((ds.shm_segsz, ds.shm_nattch))
}

/// The segment, by id. Its Drop marks it for removal, in the creating process only.
struct SegmentId {
    id: c_int,
    key: i32,
    owner: Pid,
}

impl Drop for SegmentId {
    fn drop(&mut self) {
        if getpid() != self.owner {
            return; // a forked copy: the segment is its parent's to remove
        }
        let attached = stat(self.id).map(|(_, n)| n).unwrap_or(0);
        // SAFETY: plain system call; IPC_RMID takes no buffer.
        if unsafe { libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) } != 0 {
            say!("reader", "shmctl(IPC_RMID) failed: {}", Errno::last());
            return;
        }
        say!(
            "reader",
            "shmctl({}, IPC_RMID): only MARKED for removal: {attached} process(es) still attached \
             (nattch, me included), so the memory stays until the last shmdt; the key is free \
             again already",
            self.id
        );
    }
}

/// The segment attached in this process; its Drop detaches it.
struct Attachment {
    base: NonNull<c_void>,
    len: usize,
    id: c_int,
    role: &'static str,
}

/// shmat(id, NULL, 0): the kernel picks the address, read-write.
fn attach(id: c_int, len: usize, role: &'static str) -> Result<Attachment> {
    // SAFETY: NULL address: the kernel picks a free range, which overlaps nothing of ours.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if addr as isize == -1 {
        return Err(Errno::last()).with_context(|| format!("shmat shmid {id}"));
    }
    let base = NonNull::new(addr).context("shmat returned NULL")?;
    say!(
        role,
        "shmat({id}, NULL, 0) = {:#x}: the segment, in my address space (in /proc/PID/maps: \
         a file /SYSV<key> that no directory holds, marked deleted, whose inode is the shmid)",
        addr as usize
    );
    Ok(Attachment {
        base,
        len,
        id,
        role,
    })
}

impl Attachment {
    fn segment(&self) -> Segment<'_> {
        // SAFETY: shmat attached the whole segment (`len` bytes, as IPC_STAT or our
        // own shmget says) read-write, page-aligned; it stays until self drops; both
        // `create` and `open` ensure len ≥ HEADER_LEN.
        unsafe { Segment::new(self.base, self.len) }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let addr = self.base.as_ptr() as usize;
        // SAFETY: the address shmat returned; nothing borrows the segment any more,
        // since every Segment borrows this Attachment.
        if unsafe { libc::shmdt(self.base.as_ptr()) } != 0 {
            say!(self.role, "shmdt failed: {}", Errno::last());
            return;
        }
        let what = match stat(self.id) {
            Ok((_, n)) => format!("{n} process(es) still attached"),
            Err(_) => {
                "that was the last attachment of a marked segment: the kernel freed it".into()
            }
        };
        say!(self.role, "shmdt({addr:#x}): detached; {what}");
    }
}

/// semctl's fourth argument. libc does not define it: the caller must (semctl(2)).
#[repr(C)]
#[allow(dead_code)] // `val` and `buf` are for the commands this demo does not use
union Semun {
    val: c_int,
    buf: *mut libc::semid_ds,
    array: *mut c_ushort,
}

/// A semaphore set. `owner`: the process whose Drop removes it (the reader's).
pub struct SemSet {
    id: c_int,
    owner: Option<Pid>,
}

/// semget with IPC_CREAT|IPC_EXCL, then SETALL: a new set has no defined values yet.
fn create_semaphores(key: i32, values: [u32; 4]) -> Result<SemSet> {
    // SAFETY: plain system call, no pointers.
    let id = unsafe { libc::semget(key, 4, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    if id < 0 {
        return match Errno::last() {
            Errno::EEXIST => bail!(
                "a System V semaphore set with key {k} already exists: another reader is using it, \
                 or one was killed before it could clean up (remove it with: ipcrm -S {k})",
                k = hex_key(key)
            ),
            e => Err(e).with_context(|| format!("semget key {}", hex_key(key))),
        };
    }
    let set = SemSet {
        id,
        owner: Some(getpid()),
    };
    let mut array = values.map(|v| v as c_ushort);
    let arg = Semun {
        array: array.as_mut_ptr(),
    };
    // SAFETY: SETALL reads nsems (4) values from `array`, which lives through the call.
    if unsafe { libc::semctl(id, 0, libc::SETALL, arg) } != 0 {
        return Err(Errno::last()).context("semctl SETALL");
    }
    say!(
        "reader",
        "semget({}, 4, IPC_CREAT|IPC_EXCL|0600): semid {id}; semctl(SETALL): free={} filled={} ping={} pong={}",
        hex_key(key),
        values[0],
        values[1],
        values[2],
        values[3]
    );
    Ok(set)
}

impl SemSet {
    /// One semop on one semaphore: -1 is P, +1 is V. `flags`: 0, or IPC_NOWAIT for a P
    /// that fails with EAGAIN rather than sleep. `timeout` makes it semtimedop.
    fn op(&self, sem: Sem, delta: c_short, flags: c_int, timeout: Option<Duration>) -> c_int {
        let mut op = libc::sembuf {
            sem_num: sem as c_ushort,
            sem_op: delta,
            // Never SEM_UNDO: a V here is meant for the other process, and must
            // outlive us (sem-demo shows what SEM_UNDO is for).
            sem_flg: flags as c_short,
        };
        match timeout {
            // SAFETY: `op` is one valid sembuf, alive through the call.
            None => unsafe { libc::semop(self.id, &mut op, 1) },
            Some(limit) => {
                let ts = libc::timespec {
                    tv_sec: limit.as_secs() as libc::time_t,
                    tv_nsec: limit.subsec_nanos() as libc::c_long,
                };
                // SAFETY: semtimedop(semid, sops, nsops, timeout) as in semop(2), with
                // one sembuf and a relative timeout, both alive through the call.
                let r =
                    unsafe { libc::syscall(libc::SYS_semtimedop, self.id, &mut op, 1usize, &ts) };
                r as c_int
            }
        }
    }
}

impl Semaphores for SemSet {
    fn post(&self, sem: Sem) -> Result<()> {
        if self.op(sem, 1, 0, None) != 0 {
            return Err(gone_or(Errno::last(), "semop V", sem));
        }
        Ok(())
    }

    fn wait_at_most(&self, sem: Sem, limit: Duration) -> Result<bool> {
        if self.op(sem, -1, 0, Some(limit)) == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::EAGAIN | Errno::EINTR => Ok(false), // timed out, or a signal
            e => Err(gone_or(e, "semtimedop P", sem)),
        }
    }

    fn try_take(&self, sem: Sem) -> Result<bool> {
        if self.op(sem, -1, libc::IPC_NOWAIT, None) == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::EAGAIN => Ok(false), // nothing to take
            e => Err(gone_or(e, "semop P with IPC_NOWAIT", sem)),
        }
    }

    fn wait_call(&self) -> &'static str {
        "semtimedop"
    }

    fn post_call(&self) -> &'static str {
        "semop"
    }
}

fn gone_or(e: Errno, call: &str, sem: Sem) -> anyhow::Error {
    match e {
        Errno::EIDRM | Errno::EINVAL => anyhow::anyhow!(
            "{call} ({}): the semaphore set was removed ({e}): its reader has left, or someone ran ipcrm",
            sem.name()
        ),
        e => anyhow::anyhow!("{call} ({}): {e}", sem.name()),
    }
}

impl Drop for SemSet {
    fn drop(&mut self) {
        if self.owner != Some(getpid()) {
            return; // the writer's handle, or a forked copy: not ours to remove
        }
        // SAFETY: plain system call; IPC_RMID takes no fourth argument.
        if unsafe { libc::semctl(self.id, 0, libc::IPC_RMID) } != 0 {
            say!("reader", "semctl(IPC_RMID) failed: {}", Errno::last());
            return;
        }
        say!(
            "reader",
            "semctl({}, IPC_RMID): the semaphore set is gone at once (a process asleep on it \
             would wake with EIDRM)",
            self.id
        );
    }
}
