//! The `posix` flavour: named POSIX semaphores (sem_open, sem_timedwait, sem_post).
//!
//! A named semaphore is a `sem_t` in a small file of the tmpfs /dev/shm: the name
//! `/x` becomes /dev/shm/sem.x, which glibc maps into every process that opens it.
//! P and V are user-space atomics on that shared memory: a P that finds 0 sleeps
//! in futex(2), and a V that finds sleepers wakes one with futex(2); with nobody
//! asleep neither enters the kernel. So `cat /proc/PID/wchan` of a sleeper shows a
//! futex function. The kernel keeps the page, and while someone sleeps the futex's
//! queue of sleepers; what the word means, and who took a unit, only glibc's code
//! knows, so nothing can undo a dead holder's P.
//! glibc does count the sleepers, in the `sem_t` beside the value (its `nwaiters`,
//! which lets sem_post skip the system call when it is 0), but no call reads that
//! count; on x86-64 glibc 2.36, `xxd /dev/shm/sem.x` shows the value in bytes 0-3
//! and nwaiters in bytes 4-7 (glibc's private layout, not an interface).
//!
//! Notes (信号量): 信号量其实是一个整型的计数器 (an integer counter): here it is one
//! 32-byte file you can `ls -l`.
//!
//! Run: `cargo run -p sem-demo` (the five acts); two terminals:
//! `cargo run -p sem-demo -- reader`, then `cargo run -p sem-demo -- writer --name /NAME`.
//! Watch for: `ls -l /dev/shm/sem.*` while it runs; in act 5, the waiter giving up,
//! because nothing releases a POSIX semaphore whose holder died.
//!
//! In production: POSIX semaphores are the right tool between processes on one
//! machine; for a lock that must survive a crashed holder, a robust process-shared
//! pthread mutex (EOWNERDEAD) or `flock(2)`.
//!
//! The unsafe FFI is all in this file (nix has no semaphores), each call wrapped
//! once: `NamedSemaphore::{create, open, remove}` and the `Semaphore` methods.

use std::ffi::{CString, c_uint};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::ptr::NonNull;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime};
use nix::unistd::{Pid, getpid};

use crate::acts::{self, Stage};
use crate::args::{Meeting, Request, Role};
use crate::roles;
use crate::say;
use crate::semaphore::{Peer, Semaphore};
use crate::signals;

/// A named semaphore this process has open. Closed on drop; removed on drop too if
/// this process created it (and is not a forked copy of its creator).
pub struct NamedSemaphore {
    sem: NonNull<libc::sem_t>,
    name: String,
    c_name: CString,
    creator: Option<Pid>,
}

impl NamedSemaphore {
    /// sem_open with O_CREAT|O_EXCL, mode 0600: a new semaphore, never one that
    /// was there before (someone else's could have someone else at its other end).
    pub fn create(name: &str, value: u32, role: &str) -> Result<NamedSemaphore> {
        let c_name = CString::new(name).context("a name with a NUL byte")?;
        // SAFETY: `c_name` is a valid C string; with O_CREAT, sem_open reads two
        // more arguments, the mode and the value, passed as c_uint as the C
        // default argument promotions require.
        let sem = unsafe {
            libc::sem_open(
                c_name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL,
                0o600 as c_uint,
                value as c_uint,
            )
        };
        if sem == libc::SEM_FAILED {
            return Err(match Errno::last() {
                Errno::EEXIST => anyhow::anyhow!(
                    "semaphore {name} already exists (left by a killed run?): remove it with \
                     rm {}",
                    file_of(name)
                ),
                e => anyhow::anyhow!("sem_open {name} (create): {e}"),
            });
        }
        let sem = NamedSemaphore {
            sem: NonNull::new(sem).context("sem_open returned NULL")?,
            name: name.to_string(),
            c_name,
            creator: Some(getpid()),
        };
        say!(
            role,
            "created semaphore {name}, value {value}: a sem_t in the file {} (a tmpfs page \
             the kernel holds; glibc changes the value in it)",
            describe_file(name)
        );
        Ok(sem)
    }

    /// sem_open without O_CREAT: the reader's semaphore, or a clear error.
    pub fn open(name: &str) -> Result<NamedSemaphore> {
        let c_name = CString::new(name).context("a name with a NUL byte")?;
        // SAFETY: `c_name` is a valid C string; without O_CREAT sem_open reads no
        // further arguments.
        let sem = unsafe { libc::sem_open(c_name.as_ptr(), 0) };
        if sem == libc::SEM_FAILED {
            return Err(match Errno::last() {
                Errno::ENOENT => anyhow::anyhow!(
                    "no semaphore {name}: start the reader first (sem-demo reader --name {name})"
                ),
                Errno::EACCES => {
                    anyhow::anyhow!("sem_open {name}: permission denied (another user's?)")
                }
                e => anyhow::anyhow!("sem_open {name}: {e}"),
            });
        }
        Ok(NamedSemaphore {
            sem: NonNull::new(sem).context("sem_open returned NULL")?,
            name: name.to_string(),
            c_name,
            creator: None,
        })
    }

    /// Removes the name now, reporting a failure (`Drop` can only ignore it).
    /// Processes that still have it open keep using it; only the name goes.
    pub fn remove(mut self, role: &str) -> Result<()> {
        self.creator = None; // leaves `Drop` only the sem_close
        self.unlink()
            .with_context(|| format!("sem_unlink {}", self.name))?;
        say!(
            role,
            "removed semaphore {} (sem_unlink: {} is gone)",
            self.name,
            file_of(&self.name)
        );
        Ok(())
    }

    /// sem_unlink: the name and its file in /dev/shm go.
    fn unlink(&self) -> nix::Result<()> {
        // SAFETY: `c_name` is a valid C string.
        Errno::result(unsafe { libc::sem_unlink(self.c_name.as_ptr()) }).map(drop)
    }
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        if self.creator == Some(getpid()) {
            let _ = self.unlink();
        }
        // SAFETY: `sem` came from sem_open and is closed once, here; nothing uses
        // it after this.
        unsafe { libc::sem_close(self.sem.as_ptr()) };
    }
}

impl Semaphore for NamedSemaphore {
    fn label(&self) -> &str {
        &self.name
    }

    fn p_within(&self, slice: Duration) -> nix::Result<bool> {
        // sem_timedwait takes an absolute time on CLOCK_REALTIME, not a duration.
        let deadline = clock_gettime(ClockId::CLOCK_REALTIME)? + TimeSpec::from_duration(slice);
        // SAFETY: `sem` is open (it lives as long as `self`) and the sem_t it points
        // to, mapped by glibc from /dev/shm, never moves.
        if unsafe { libc::sem_timedwait(self.sem.as_ptr(), deadline.as_ref()) } == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::ETIMEDOUT => Ok(false),
            e => Err(e),
        }
    }

    fn v(&self) -> Result<()> {
        // SAFETY: as in `p_within`.
        if unsafe { libc::sem_post(self.sem.as_ptr()) } != 0 {
            bail!("sem_post {}: {}", self.name, Errno::last());
        }
        Ok(())
    }

    fn value(&self) -> Result<i32> {
        let mut value = 0;
        // SAFETY: as in `p_within`; `value` is a valid place for the result.
        if unsafe { libc::sem_getvalue(self.sem.as_ptr(), &mut value) } != 0 {
            bail!("sem_getvalue {}: {}", self.name, Errno::last());
        }
        Ok(value)
    }

    fn sleepers(&self) -> Result<Option<i32>> {
        // POSIX allows sem_getvalue to return minus the sleepers; glibc returns 0
        // (sem_getvalue(3)). Its own count of them (nwaiters) no call returns.
        Ok(None)
    }

    fn sleeps_in(&self) -> &'static str {
        "futex"
    }

    fn undone_at_exit(&self) -> bool {
        false
    }

    fn remove_for_dead_creator(&self) -> Result<()> {
        match self.unlink() {
            Ok(()) | Err(Errno::ENOENT) => Ok(()), // ENOENT: already gone
            Err(e) => bail!("sem_unlink {}: {e}", self.name),
        }
    }
}

/// A peer found in /proc: the process other than us that has a semaphore's file
/// mapped. A POSIX semaphore keeps no pid of its users, but glibc's sem_open maps
/// /dev/shm/sem.NAME into every process that opens it, and /proc/PID/maps lists
/// that mapping, with the file's inode, until the process closes it or dies,
/// SIGKILL included. (We can read the maps of our own user's processes only; the
/// file is 0600, so no other user's process, root aside, has it open.)
///
/// The mapping is matched by device and inode, not by path: glibc creates a
/// semaphore in a file of a temporary name and link(2)s it into place, so its
/// creator's maps show `/dev/shm/sem.XXXXXX (deleted)`, and everyone's do once
/// the name is unlinked.
pub struct Mapper {
    file: String,
    /// The file's device as /proc/PID/maps prints it (`00:1b`), and its inode.
    device: String,
    inode: u64,
    who: &'static str,
    /// What the peer leaves behind if it dies, and the command that removes it.
    leaves: Option<String>,
    /// The role that watches, for the narration.
    watcher: &'static str,
    /// The peer's pid, once found.
    found: std::cell::Cell<Option<Pid>>,
    /// Set once we took a V: a peer existed, even if we never saw its pid.
    came: std::cell::Cell<bool>,
    /// When we last looked through all of /proc for it.
    scanned: std::cell::Cell<Option<std::time::Instant>>,
}

/// How often a wait looks through all of /proc for a peer it has not found yet (a
/// few hundred files, so not at every slice); once found, its own maps file is
/// read at every slice.
const RESCAN: Duration = Duration::from_secs(1);

impl Mapper {
    /// Watches, from now on, whoever else has `name`'s file mapped.
    fn of(
        name: &str,
        watcher: &'static str,
        who: &'static str,
        leaves: Option<String>,
    ) -> Result<Mapper> {
        let file = file_of(name);
        let meta = std::fs::metadata(&file).with_context(|| format!("stat {file}"))?;
        let device = format!(
            "{:02x}:{:02x}",
            libc::major(meta.dev()),
            libc::minor(meta.dev())
        );
        Ok(Mapper {
            file,
            device,
            inode: meta.ino(),
            who,
            leaves,
            watcher,
            found: None.into(),
            came: false.into(),
            scanned: None.into(),
        })
    }

    /// True if process `pid`'s /proc/PID/maps shows our file: a line
    /// `ADDR PERMS OFFSET DEVICE INODE PATH` with our device and inode.
    fn maps_it(&self, pid: &str) -> bool {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return false; // gone, or not ours to read
        };
        maps.lines().any(|line| {
            let mut fields = line.split_whitespace().skip(3);
            fields.next() == Some(self.device.as_str())
                && fields.next().and_then(|i| i.parse::<u64>().ok()) == Some(self.inode)
        })
    }

    /// Looks through every /proc/PID for a process other than us with the file
    /// mapped, and remembers it.
    fn look(&self) -> Option<Pid> {
        if let Some(pid) = self.found.get() {
            return Some(pid);
        }
        self.scanned.set(Some(std::time::Instant::now()));
        let me = std::process::id().to_string();
        let dir = std::fs::read_dir("/proc").ok()?;
        let pid = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.bytes().all(|b| b.is_ascii_digit()) && *name != me)
            .find(|pid| self.maps_it(pid))?;
        let pid = Pid::from_raw(pid.parse().ok()?);
        self.found.set(Some(pid));
        say!(
            self.watcher,
            "the {} is pid {pid}: /proc/{pid}/maps maps {} (device {}, inode {}); I watch it",
            self.who,
            self.file,
            self.device,
            self.inode
        );
        Some(pid)
    }

    /// The writer's first step: the reader must be there, or it died without
    /// removing its semaphore and no V of ours would ever be taken.
    fn require(&self) -> Result<Pid> {
        match self.look() {
            Some(pid) => Ok(pid),
            None => bail!(
                "no process has {} mapped (/proc/*/maps): the {} that made it died without \
                 removing {}",
                self.file,
                self.who,
                self.leaves.as_deref().unwrap_or("it")
            ),
        }
    }
}

impl Peer for Mapper {
    fn death(&self) -> Result<Option<String>> {
        let left = match &self.leaves {
            Some(leaves) => format!("; it died without removing {leaves}"),
            None => String::new(),
        };
        let scanned_lately = self.scanned.get().is_some_and(|t| t.elapsed() < RESCAN);
        if self.found.get().is_none() && !self.came.get() && scanned_lately {
            return Ok(None); // not found a moment ago; no need to look so soon
        }
        let Some(pid) = self.look() else {
            // Never seen alive. If it did a V, it existed, and with no process but
            // us mapping the file it can do no more; otherwise it may still come.
            return Ok(self.came.get().then(|| {
                format!(
                    "the {} died before its next V (no process but me maps {} any more, \
                     /proc/*/maps), so no V will come{left}",
                    self.who, self.file
                )
            }));
        };
        if self.maps_it(&pid.to_string()) {
            return Ok(None);
        }
        Ok(Some(format!(
            "the {} (pid {pid}) died before its next V (/proc/{pid}/maps no longer maps {}), so \
             no V will come{left}",
            self.who, self.file
        )))
    }

    fn notice(&self) {
        // Just after a V of its own the peer has the file mapped: find it now, as
        // the waits between two pings may never time out while it lives.
        self.came.set(true);
        let _ = self.look();
    }
}

/// The file behind a name: `/x` → `/dev/shm/sem.x`.
fn file_of(name: &str) -> String {
    format!("/dev/shm/sem.{}", name.trim_start_matches('/'))
}

/// The file as `ls -l` would show it: `/dev/shm/sem.x (rw-------, 32 bytes)`.
fn describe_file(name: &str) -> String {
    let file = file_of(name);
    match std::fs::metadata(&file) {
        Ok(meta) => {
            let mode = meta.permissions().mode();
            let rwx: String = (0..9)
                .map(|bit| match mode & (0o400 >> bit) {
                    0 => '-',
                    _ => ['r', 'w', 'x'][bit % 3],
                })
                .collect();
            format!("{file} ({rwx}, {} bytes)", meta.size())
        }
        Err(e) => format!("{file} (stat failed: {e})"),
    }
}

/// The `posix` flavour's entry point.
pub fn run(request: &Request) -> Result<()> {
    let fresh = || format!("/sem-demo-{}", std::process::id());
    match (request.role, &request.meeting) {
        (Role::Writer, Meeting::Name(name)) => writer(name, request.ping),
        (Role::Writer, _) => bail!("the writer needs --name /NAME"),
        (role, meeting) => {
            let name = match meeting {
                Meeting::Name(name) => name.clone(),
                _ => fresh(),
            };
            match (role, request.ping) {
                (Role::Reader, ping) => reader(&name, ping),
                (_, Some(count)) => ping_both(&name, count, request.cpus),
                (_, None) => narrated(&name, request.loops),
            }
        }
    }
}

/// The five acts, with a mutex semaphore (1) and a sync semaphore (0).
fn narrated(prefix: &str, loops: u64) -> Result<()> {
    say!(
        acts::A,
        "POSIX named semaphores: sem_open creates them, sem_timedwait is P, sem_post is V"
    );
    let mutex_name = format!("{prefix}-mutex");
    let sync_name = format!("{prefix}-sync");
    let result = (|| {
        let mutex = NamedSemaphore::create(&mutex_name, 1, acts::A)?;
        let sync = NamedSemaphore::create(&sync_name, 0, acts::A)?;
        acts::run(&Stage {
            mutex: &mutex,
            sync: &sync,
            loops,
        })?;
        mutex.remove(acts::A)?;
        sync.remove(acts::A)
    })();
    signals::narrate_interruption(acts::A, &result, &format!("{mutex_name} and {sync_name}"));
    result
}

/// `--ping N` in one run: the parent pings, a forked child answers.
fn ping_both(name: &str, count: u64, cpus: Option<(usize, usize)>) -> Result<()> {
    let pong_name = format!("{name}-pong");
    let result = (|| {
        let ping = NamedSemaphore::create(name, 0, roles::WRITER)?;
        let pong = NamedSemaphore::create(&pong_name, 0, roles::WRITER)?;
        let summary = roles::ping_both(&ping, &pong, count, cpus)?;
        ping.remove(roles::WRITER)?;
        pong.remove(roles::WRITER)?;
        summary.print();
        Ok(())
    })();
    signals::narrate_interruption(roles::WRITER, &result, &format!("{name} and {pong_name}"));
    result
}

/// The reader: creates the sync semaphore (and the answer one for `--ping`),
/// sleeps in P until the writer's V, removes them. A writer it has seen in /proc
/// that dies before its V ends the wait.
fn reader(name: &str, ping: Option<u64>) -> Result<()> {
    let pong_name = format!("{name}-pong");
    let removed = match ping {
        Some(_) => format!("{name} and {pong_name}"),
        None => name.to_string(),
    };
    let result = (|| {
        let sync = NamedSemaphore::create(name, 0, roles::READER)?;
        let pong = match ping {
            Some(_) => Some(NamedSemaphore::create(&pong_name, 0, roles::READER)?),
            None => None,
        };
        let ping_option = ping.map(|n| format!(" --ping {n}")).unwrap_or_default();
        say!(
            roles::READER,
            "in another terminal: sem-demo writer --name {name}{ping_option}"
        );
        let writer = Mapper::of(name, roles::READER, "writer", None)?;
        let waited = match (&pong, ping) {
            (Some(pong), Some(count)) => {
                roles::answer_pings(&sync, pong, count, Some(&writer), None)
            }
            _ => roles::wait_for_writer(&sync, &writer),
        };
        // Removed on every way out, and said so (a guard's drop could only be silent).
        let removed = sync.remove(roles::READER).and_then(|()| match pong {
            Some(pong) => pong.remove(roles::READER),
            None => Ok(()),
        });
        let summary = waited?; // the wait's error first
        removed?;
        summary.print();
        Ok(())
    })();
    signals::narrate_interruption(roles::READER, &result, &removed);
    result
}

/// The writer: opens the reader's semaphore(s), checks in /proc that the reader
/// is alive, and does V (or pings, watching the reader while it waits).
fn writer(name: &str, ping: Option<u64>) -> Result<()> {
    let sync = NamedSemaphore::open(name)?;
    let pong_name = format!("{name}-pong");
    let pong = match ping {
        Some(count) => Some(NamedSemaphore::open(&pong_name).map_err(|_| {
            anyhow::anyhow!(
                "no semaphore {pong_name}: the reader at {name} answers no pings; \
                 start it with sem-demo reader --name {name} --ping {count}"
            )
        })?),
        None => None,
    };
    let mut files = vec![file_of(name)];
    if pong.is_some() {
        files.push(file_of(&pong_name));
    }
    let remedy = format!(
        "{}: remove with `rm {}`",
        files.join(" and "),
        files.join(" ")
    );
    let reader = Mapper::of(name, roles::WRITER, "reader", Some(remedy))?;
    let reader_pid = reader.require()?;
    let summary = match (pong, ping) {
        (Some(pong), Some(count)) => {
            say!(
                roles::WRITER,
                "{count} round trips of V then P with reader {reader_pid} over {name} and \
                 {pong_name} (found in /proc/{reader_pid}/maps)"
            );
            roles::time_round_trips(&sync, &pong, count, Some(&reader))?
        }
        _ => roles::post_to_reader(&sync)?,
    };
    summary.print();
    Ok(())
}
