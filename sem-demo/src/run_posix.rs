//! The `posix` flavour, narrated: named POSIX semaphores (sem_open, sem_timedwait,
//! sem_post).
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
//! This file narrates around the library's calls (`sem_demo::posix`, where the
//! unsafe FFI is, and `sem_demo::procfs` for the peer): what to copy is there.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use nix::errno::Errno;
use nix::unistd::Pid;
use sem_demo::posix::{self, NamedSemaphore, file_of};
use sem_demo::procfs::{self, FileId};

use crate::acts::{self, Stage};
use crate::args::{Meeting, Request, Role};
use crate::roles;
use crate::say;
use crate::semaphore::{Peer, Semaphore, Took};
use crate::signals;
use crate::workload;

/// sem_open with O_CREAT|O_EXCL, mode 0600 (`NamedSemaphore::create`), narrated: a
/// new semaphore, never one that was there before.
fn create(name: &str, value: u32, role: &str) -> Result<NamedSemaphore> {
    let sem = NamedSemaphore::create(name, value).map_err(|e| match e {
        Errno::EEXIST => anyhow!(
            "semaphore {name} already exists (left by a killed run?): remove it with rm {}",
            file_of(name)
        ),
        e => anyhow!("sem_open {name} (create): {e}"),
    })?;
    say!(
        role,
        "created semaphore {name}, value {value}: a sem_t in the file {} (a tmpfs page \
         the kernel holds; glibc changes the value in it)",
        describe_file(name)
    );
    Ok(sem)
}

/// sem_open without O_CREAT: the reader's semaphore, or a clear error. Not
/// `open_waiting`: a writer started before its reader is told so at once.
fn open(name: &str) -> Result<NamedSemaphore> {
    NamedSemaphore::open(name).map_err(|e| match e {
        Errno::ENOENT => {
            anyhow!("no semaphore {name}: start the reader first (sem-demo reader --name {name})")
        }
        Errno::EACCES => anyhow!("sem_open {name}: permission denied (another user's?)"),
        e => anyhow!("sem_open {name}: {e}"),
    })
}

/// Removes the name now (`NamedSemaphore::remove`), and says so.
fn remove(sem: NamedSemaphore, role: &str) -> Result<()> {
    let name = sem.name().to_string();
    sem.remove()
        .map_err(|e| anyhow!("sem_unlink {name}: {e}"))?;
    say!(
        role,
        "removed semaphore {name} (sem_unlink: {} is gone)",
        file_of(&name)
    );
    Ok(())
}

impl Semaphore for NamedSemaphore {
    fn label(&self) -> &str {
        self.name()
    }

    fn p_within(&self, slice: Duration) -> nix::Result<bool> {
        self.try_p_for(slice)
    }

    fn p_until(
        &self,
        limit: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<Option<Took>> {
        Ok(match self.p(limit, stop)? {
            posix::Took::Yes => Some(Took::Yes),
            posix::Took::TimedOut => Some(Took::TimedOut),
            posix::Took::Stopped => None,
        })
    }

    fn v(&self) -> Result<()> {
        NamedSemaphore::v(self).map_err(|e| anyhow!("sem_post {}: {e}", self.name()))
    }

    fn value(&self) -> Result<i32> {
        NamedSemaphore::value(self).map_err(|e| anyhow!("sem_getvalue {}: {e}", self.name()))
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
        match posix::unlink(self.name()) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()), // ENOENT: already gone
            Err(e) => bail!("sem_unlink {}: {e}", self.name()),
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
    /// The file's device and inode, as /proc/PID/maps prints them.
    id: FileId,
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
        let id = FileId::of(&file).map_err(|e| anyhow!("stat {file}: {e}"))?;
        Ok(Mapper {
            file,
            id,
            who,
            leaves,
            watcher,
            found: None.into(),
            came: false.into(),
            scanned: None.into(),
        })
    }

    /// Looks through every /proc/PID for a process other than us with the file
    /// mapped, and remembers it.
    fn look(&self) -> Option<Pid> {
        if let Some(pid) = self.found.get() {
            return Some(pid);
        }
        self.scanned.set(Some(std::time::Instant::now()));
        let pid = procfs::find_mapper(&self.id)?;
        self.found.set(Some(pid));
        say!(
            self.watcher,
            "the {} is pid {pid}: /proc/{pid}/maps maps {} (device {}, inode {}); I watch it",
            self.who,
            self.file,
            self.id.device,
            self.id.inode
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
        if procfs::maps(pid, &self.id) {
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
        let mutex = create(&mutex_name, 1, acts::A)?;
        let sync = create(&sync_name, 0, acts::A)?;
        acts::run(&Stage {
            mutex: &mutex,
            sync: &sync,
            loops,
        })?;
        remove(mutex, acts::A)?;
        remove(sync, acts::A)
    })();
    signals::narrate_interruption(acts::A, &result, &format!("{mutex_name} and {sync_name}"));
    result
}

/// `--ping N` in one run: the parent pings, a forked child answers.
fn ping_both(name: &str, count: u64, cpus: Option<(usize, usize)>) -> Result<()> {
    let pong_name = format!("{name}-pong");
    let result = (|| {
        let ping = create(name, 0, roles::WRITER)?;
        let pong = create(&pong_name, 0, roles::WRITER)?;
        let summary = workload::ping_both(&ping, &pong, count, cpus)?;
        remove(ping, roles::WRITER)?;
        remove(pong, roles::WRITER)?;
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
        let sync = create(name, 0, roles::READER)?;
        let pong = match ping {
            Some(_) => Some(create(&pong_name, 0, roles::READER)?),
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
                workload::answer_pings(&sync, pong, count, Some(&writer), None)
            }
            _ => roles::wait_for_writer(&sync, &writer),
        };
        // Removed on every way out, and said so (a guard's drop could only be silent).
        let removed = remove(sync, roles::READER).and_then(|()| match pong {
            Some(pong) => remove(pong, roles::READER),
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
    let sync = open(name)?;
    let pong_name = format!("{name}-pong");
    let pong = match ping {
        Some(count) => Some(open(&pong_name).map_err(|_| {
            anyhow!(
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
            workload::time_round_trips(&sync, &pong, count, Some(&reader))?
        }
        _ => roles::post_to_reader(&sync)?,
    };
    summary.print();
    Ok(())
}
