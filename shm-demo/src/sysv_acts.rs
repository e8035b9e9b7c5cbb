//! The `sysv` flavour, narrated: `shmget` + `shmat`, and a System V semaphore set with the
//! same key. Every call is the library's (`shm_demo::sysv`, src/sysv.rs); this file says
//! what each did.
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
//! Traps, each met (in the library):
//! - `shmctl(IPC_RMID)` does not remove a segment, it marks it: the memory stays until
//!   the last process detaches (`nattch` counts them). The narration shows the count.
//! - Neither glibc nor the `libc` crate defines `union semun` for `semctl`: it is
//!   defined here, as semctl(2) asks the caller to.
//! - The `libc` crate (0.2) declares no `semtimedop`, though glibc has one: it is
//!   called with `libc::syscall`.
//! - The key is free for reuse as soon as the segment is marked, even while attached.

use std::ffi::c_int;
use std::time::Duration;

use anyhow::{Result, bail};
use nix::errno::Errno;
use shm_demo::sysv::{self, Attached, SemSet as Set, ShmId};

use crate::segment::{HEADER_LEN, Layout, Segment};
use crate::signals;
use crate::sync::{Sem, Semaphores, initial_values};

pub use shm_demo::sysv::{check_size, hex_key};

/// What the reader makes: segment and semaphore set, the segment attached. Dropping it
/// removes the set, marks the segment for removal, then detaches (which frees it).
pub struct Created {
    sems: SemSet,
    segment: Option<ShmId>,
    key: i32,
    attachment: Attachment,
}

/// The reader's side: create the segment, attach it, create and set the semaphores.
pub fn create(key: i32, layout: &Layout) -> Result<Created> {
    let role = "reader";
    let len = layout.len();
    let segment = ShmId::create(key, len).map_err(|e| match e.downcast_ref::<Errno>() {
        Some(Errno::EEXIST) => anyhow::anyhow!(
            "a System V segment with key {k} already exists: another reader is using it, or one \
             was killed before it could clean up (remove it with: ipcrm -M {k})",
            k = hex_key(key)
        ),
        _ => e,
    })?;
    say!(
        role,
        "shmget({}, {len}, IPC_CREAT|IPC_EXCL|0600): shmid {}, {len} bytes of kernel memory, all zero",
        hex_key(key),
        segment.id()
    );
    let mut created = Created {
        sems: SemSet { set: None },
        segment: Some(segment),
        key,
        attachment: Attachment {
            at: None,
            id: 0,
            role,
        },
    };
    let id = created.segment.as_ref().map_or(0, ShmId::id);
    created.attachment = attach(id, len, role)?;
    created.sems = create_semaphores(key, initial_values(layout.slots))?;
    Ok(created)
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
            self.segment.as_ref().map_or(-1, ShmId::id),
            self.sems.id(),
            hex_key(self.key)
        )
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        // The set first, then the mark, then the detach that frees the segment.
        if let Some(set) = self.sems.set.take() {
            let id = set.id();
            match set.remove() {
                Ok(()) => say!(
                    "reader",
                    "semctl({id}, IPC_RMID): the semaphore set is gone at once (a process asleep on it \
                     would wake with EIDRM)"
                ),
                Err(e) => say!("reader", "semctl(IPC_RMID) failed: {}", root(&e)),
            }
        }
        if let Some(segment) = self.segment.take() {
            let id = segment.id();
            let attached = sysv::stat(id).map(|(_, n)| n).unwrap_or(0);
            match segment.remove() {
                Ok(()) => say!(
                    "reader",
                    "shmctl({id}, IPC_RMID): only MARKED for removal: {attached} process(es) still attached \
                     (nattch, me included), so the memory stays until the last shmdt; the key is free \
                     again already"
                ),
                Err(e) => say!("reader", "shmctl(IPC_RMID) failed: {}", root(&e)),
            }
        }
    }
}

/// What the writer opens: the reader's segment attached, and its semaphore set.
pub struct Opened {
    key: i32,
    sems: SemSet,
    attachment: Attachment,
}

/// The writer's side: find the segment and the set by key; attach the segment whole.
/// No waiting (Duration::ZERO): the narrated protocol starts the reader first.
pub fn open(key: i32) -> Result<Opened> {
    let role = "writer";
    let id = match sysv::find_segment(key, Duration::ZERO) {
        Ok(id) => id,
        Err(e) if e.downcast_ref::<Errno>() == Some(&Errno::ENOENT) => bail!(
            "no System V segment with key {k}: start the reader first (shm-demo reader sysv --key {k})",
            k = hex_key(key)
        ),
        Err(e) => return Err(e),
    };
    let (len, _) = sysv::stat(id)?;
    say!(
        role,
        "shmget({}, 0, 0): shmid {id}, no IPC_CREAT: the reader made it; IPC_STAT says {len} bytes",
        hex_key(key)
    );
    if len < HEADER_LEN {
        bail!("segment {id} has {len} bytes, less than its header: not one of ours?");
    }
    let attachment = attach(id, len, role)?;
    let set = match Set::find(key, Duration::ZERO) {
        Ok(set) => set,
        Err(e) if e.downcast_ref::<Errno>() == Some(&Errno::ENOENT) => bail!(
            "segment {} has no semaphore set beside it yet: is its reader still starting?",
            hex_key(key)
        ),
        Err(e) => return Err(e),
    };
    say!(
        role,
        "semget({}, 0, 0): semid {}, the reader's four semaphores",
        hex_key(key),
        set.id()
    );
    Ok(Opened {
        key,
        sems: SemSet { set: Some(set) },
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
        format!("ipcrm -m {} -s {}", self.attachment.id, self.sems.id())
    }

    /// The writer's cleanup for a reader that was killed: its segment and set are
    /// still there. Removed by the ids we opened, not by the key: the key is free for
    /// anyone once the reader is dead, and a new reader may already use it.
    pub fn remove_leftovers(&self) -> Result<String> {
        let (shm, sem) = (self.attachment.id, self.sems.id());
        let mut removed = Vec::new();
        // We stay attached: the segment is only marked, and our shmdt frees it.
        if sysv::remove_segment(shm).is_ok() {
            removed.push(format!("segment shmid {shm}"));
        }
        if sysv::remove_sem_set(sem).is_ok() {
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

/// The innermost error (the Errno), as the narration has always shown it.
fn root(e: &anyhow::Error) -> String {
    e.root_cause().to_string()
}

/// The library's attachment, with its shmid and who holds it, for the narration.
struct Attachment {
    at: Option<Attached>,
    id: c_int,
    role: &'static str,
}

/// shmat(id, NULL, 0): the kernel picks the address, read-write.
fn attach(id: c_int, len: usize, role: &'static str) -> Result<Attachment> {
    let at = Attached::new(id, len)?;
    say!(
        role,
        "shmat({id}, NULL, 0) = {:#x}: the segment, in my address space (in /proc/PID/maps: \
         a file /SYSV<key> that no directory holds, marked deleted, whose inode is the shmid)",
        at.as_ptr().as_ptr() as usize
    );
    Ok(Attachment {
        at: Some(at),
        id,
        role,
    })
}

impl Attachment {
    fn segment(&self) -> Segment<'_> {
        let at = self.at.as_ref().expect("attached until dropped");
        // SAFETY: shmat attached the whole segment (`len` bytes, as IPC_STAT or our
        // own shmget says) read-write, page-aligned; it stays while self holds it;
        // both `create` and `open` ensure len ≥ HEADER_LEN.
        unsafe { Segment::new(at.as_ptr().cast(), at.len()) }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let Some(at) = self.at.take() else { return };
        let addr = at.as_ptr().as_ptr() as usize;
        if let Err(e) = at.detach() {
            say!(self.role, "shmdt failed: {}", root(&e));
            return;
        }
        let what = match sysv::stat(self.id) {
            Ok((_, n)) => format!("{n} process(es) still attached"),
            Err(_) => {
                "that was the last attachment of a marked segment: the kernel freed it".into()
            }
        };
        say!(self.role, "shmdt({addr:#x}): detached; {what}");
    }
}

/// The four semaphores, a System V set: the library's, once made or found.
pub struct SemSet {
    set: Option<Set>,
}

impl SemSet {
    fn id(&self) -> c_int {
        self.set.as_ref().map_or(-1, Set::id)
    }

    fn set(&self) -> &Set {
        self.set.as_ref().expect("a set until dropped")
    }
}

/// semget with IPC_CREAT|IPC_EXCL, then SETALL: a new set has no defined values yet.
fn create_semaphores(key: i32, values: [u32; 4]) -> Result<SemSet> {
    let set = Set::create(key, &values.map(|v| v as u16)).map_err(|e| {
        match e.downcast_ref::<Errno>() {
            Some(Errno::EEXIST) => anyhow::anyhow!(
                "a System V semaphore set with key {k} already exists: another reader is using it, \
                 or one was killed before it could clean up (remove it with: ipcrm -S {k})",
                k = hex_key(key)
            ),
            _ => e,
        }
    })?;
    say!(
        "reader",
        "semget({}, 4, IPC_CREAT|IPC_EXCL|0600): semid {}; semctl(SETALL): free={} filled={} ping={} pong={}",
        hex_key(key),
        set.id(),
        values[0],
        values[1],
        values[2],
        values[3]
    );
    Ok(SemSet { set: Some(set) })
}

impl Semaphores for SemSet {
    fn post(&self, sem: Sem) -> Result<()> {
        self.set()
            .post(sem as u16)
            .map_err(|e| gone_or(&e, "semop V", sem))
    }

    fn wait_at_most(&self, sem: Sem, limit: Duration) -> Result<bool> {
        self.set()
            .wait_for(sem as u16, limit, &|| signals::caught().is_some())
            .map_err(|e| gone_or(&e, "semtimedop P", sem))
    }

    fn try_take(&self, sem: Sem) -> Result<bool> {
        self.set()
            .try_wait(sem as u16)
            .map_err(|e| gone_or(&e, "semop P with IPC_NOWAIT", sem))
    }

    fn wait_call(&self) -> &'static str {
        "semtimedop"
    }

    fn post_call(&self) -> &'static str {
        "semop"
    }
}

fn gone_or(e: &anyhow::Error, call: &str, sem: Sem) -> anyhow::Error {
    match e.downcast_ref::<Errno>() {
        Some(&e @ (Errno::EIDRM | Errno::EINVAL)) => anyhow::anyhow!(
            "{call} ({}): the semaphore set was removed ({e}): its reader has left, or someone ran ipcrm",
            sem.name()
        ),
        _ => anyhow::anyhow!("{call} ({}): {}", sem.name(), root(e)),
    }
}
