//! The `sysv` flavour, narrated: a System V semaphore set (semget, semop, semctl).
//!
//! System V semaphores live entirely in the kernel, in sets found by a numeric key
//! (`ipcs -s` lists them, /proc/sysvipc/sem too). Every P and V is a system call,
//! semop(2), which is what lets the kernel do what POSIX cannot: report the
//! processes asleep in P (semctl GETNCNT), name the last process that changed a
//! semaphore (GETPID), and, with SEM_UNDO, remember what each process took so it
//! can give it back when the process dies, however it dies. In two-terminal mode
//! each side raises a presence semaphore of its own with SEM_UNDO, so the other
//! notices its death (see `Presence`).
//!
//! Notes (信号量): 控制信号量的方式有两种原子操作 (two atomic operations control it):
//! semop with sem_op -1 is P, +1 is V, and the kernel does each one whole.
//!
//! Run: `cargo run -p sem-demo -- sysv` (the five acts); two terminals:
//! `cargo run -p sem-demo -- reader sysv`, then
//! `cargo run -p sem-demo -- writer sysv --key KEY`.
//! Watch for: `ipcs -s -i ID` while it runs (each semaphore's value, ncount,
//! zcount, and the pid of its last operation); in act 5, C going on once B is
//! killed, thanks to SEM_UNDO; in act 3, the time the mutex costs: a V here hands
//! the unit straight to the sleeper, so A and B take turns, a switch per increment.
//!
//! In production: prefer POSIX semaphores (simpler, no global key namespace, no
//! system call when nobody sleeps). No maintained Rust crate wraps System V IPC.
//!
//! This file narrates around the library's calls (`sem_demo::sysv`: the traps of
//! the C API, `union semun`, semtimedop, are met there). SEM_UNDO goes on the mutex
//! and on the two-terminal presence semaphores, never on a sync semaphore: there
//! the kernel would undo a writer's V at its exit.

use std::ffi::{c_int, c_ushort};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::unistd::{Pid, getpid};
use sem_demo::sysv::{self, SemSet, Undo};

use crate::acts::{self, Stage};
use crate::args::{Meeting, Request, Role};
use crate::roles;
use crate::say;
use crate::semaphore::{Peer, Semaphore, Took};
use crate::signals;
use crate::workload;

/// semget with IPC_CREAT|IPC_EXCL, mode 0600, then SETVAL for each semaphore
/// (`SemSet::create`), narrated.
fn create(key: libc::key_t, values: &[(&str, c_int)], role: &str) -> Result<SemSet> {
    let numbers: Vec<c_int> = values.iter().map(|(_, value)| *value).collect();
    let set = SemSet::create(key, &numbers).map_err(|e| match e {
        Errno::EEXIST => match SemSet::open(key) {
            Ok(old) => anyhow!(
                "a semaphore set with key {key:#x} already exists (id {}, left by a killed \
                 run?): remove it with ipcrm -s {}",
                old.id(),
                old.id()
            ),
            Err(_) => anyhow!("a semaphore set with key {key:#x} already exists"),
        },
        e => anyhow!("semget key {key:#x} (create), then SETVAL: {e}"),
    })?;
    let id = set.id();
    let listing: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(num, (what, value))| format!("#{num} {what}={value}"))
        .collect();
    say!(
        role,
        "created semaphore set id {id} at key {key:#x}: {}; the kernel lists it in \
         /proc/sysvipc/sem ({}); see it with ipcs -s -i {id}",
        listing.join(", "),
        proc_line(id)
    );
    Ok(set)
}

/// semget without IPC_CREAT: the reader's set, or a clear error. Not
/// `open_waiting`: a writer started before its reader is told so at once.
fn open(key: libc::key_t) -> Result<SemSet> {
    SemSet::open(key).map_err(|e| match e {
        Errno::ENOENT => anyhow!(
            "no semaphore set with key {key:#x}: start the reader first \
             (sem-demo reader sysv --key {key:#x})"
        ),
        Errno::EACCES => anyhow!("semget key {key:#x}: permission denied (another user's?)"),
        e => anyhow!("semget key {key:#x}: {e}"),
    })
}

/// IPC_RMID now (`SemSet::remove`), and says so.
fn remove(set: SemSet, key: libc::key_t, role: &str) -> Result<()> {
    let id = set.id();
    set.remove()
        .with_context(|| format!("semctl IPC_RMID set {id}"))?;
    say!(
        role,
        "removed semaphore set id {id} (IPC_RMID: key {key:#x} is free again)"
    );
    Ok(())
}

/// The set's line in /proc/sysvipc/sem, the fields `ipcs -s` shows.
fn proc_line(id: c_int) -> String {
    let table = std::fs::read_to_string("/proc/sysvipc/sem").unwrap_or_default();
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&id.to_string().as_str()))
        .map(|f| {
            header
                .iter()
                .zip(&f)
                .take(4)
                .map(|(h, v)| format!("{h}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "not listed?".to_string())
}

/// Semaphore `num` of `set`; `undo`: take and give with SEM_UNDO.
fn sem(set: &SemSet, num: c_ushort, undo: Undo) -> SysvSem<'_> {
    SysvSem {
        set,
        num,
        undo,
        label: format!("set {} #{num}", set.id()),
    }
}

/// One semaphore of a set.
pub struct SysvSem<'a> {
    set: &'a SemSet,
    num: c_ushort,
    undo: Undo,
    label: String,
}

impl Semaphore for SysvSem<'_> {
    fn label(&self) -> &str {
        &self.label
    }

    fn p_within(&self, slice: Duration) -> nix::Result<bool> {
        self.set.try_p_for(self.num, self.undo, slice)
    }

    fn p_until(
        &self,
        limit: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<Option<Took>> {
        Ok(match self.set.p(self.num, self.undo, limit, stop)? {
            sysv::Took::Yes => Some(Took::Yes),
            sysv::Took::TimedOut => Some(Took::TimedOut),
            sysv::Took::Stopped => None,
        })
    }

    fn v(&self) -> Result<()> {
        self.set
            .v(self.num, self.undo)
            .with_context(|| format!("semop V on {}", self.label))
    }

    fn value(&self) -> Result<i32> {
        self.set
            .value(self.num)
            .with_context(|| format!("semctl GETVAL {}", self.label))
    }

    fn sleepers(&self) -> Result<Option<i32>> {
        let n = self
            .set
            .sleepers(self.num)
            .with_context(|| format!("semctl GETNCNT {}", self.label))?;
        Ok(Some(n))
    }

    fn sleeps_in(&self) -> &'static str {
        "semtimedop"
    }

    fn undone_at_exit(&self) -> bool {
        self.undo == Undo::Yes
    }

    fn why_failed(&self, e: Errno) -> String {
        match e {
            Errno::EIDRM => "the set was removed (IPC_RMID) while I waited".to_string(),
            Errno::EINVAL => format!("set {} no longer exists (removed)", self.set.id()),
            e => e.to_string(),
        }
    }

    fn remove_for_dead_creator(&self) -> Result<()> {
        match sysv::remove_id(self.set.id()) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::EIDRM) => Ok(()), // already gone
            Err(e) => bail!("semctl IPC_RMID set {}: {e}", self.set.id()),
        }
    }
}

/// Two-terminal mode: where each side says it is there. The reader's set holds,
/// besides the semaphores it waits on, one presence semaphore per side. Each side
/// raises its own by 1 with SEM_UNDO, so the kernel lowers it again when that
/// process ends, however it ends (SIGKILL included), and semctl GETPID names the
/// last process that changed it: that side. Value 0 after a GETPID of someone else
/// means that side has come and gone. (SEM_UNDO does here what it does for act 5's
/// mutex: it makes the kernel act at a death no code of ours sees.)
const SYNC: c_ushort = 0;
const READER_HERE: c_ushort = 1;
const WRITER_HERE: c_ushort = 2;
/// With `--ping`: the answers.
const PONG: c_ushort = 3;

/// semctl GETPID, with the call named in its error.
fn last_pid(set: &SemSet, num: c_ushort) -> Result<Pid> {
    set.last_pid(num)
        .with_context(|| format!("semctl GETPID set {} #{num}", set.id()))
}

/// The other side of a two-terminal run, seen through its presence semaphore.
struct Presence<'a> {
    set: &'a SemSet,
    num: c_ushort,
    /// The role that watches, for the narration.
    watcher: &'static str,
    who: &'static str,
    /// Set once its pid was said.
    named: std::cell::Cell<bool>,
    /// What it leaves behind if it dies, with the command that removes it.
    leaves: Option<String>,
}

impl Presence<'_> {
    /// The pid of the side that has come and gone, if it has
    /// (`SemSet::came_and_went`: value 0, last changed by a process, not us, that
    /// no longer runs; Linux's SETVAL sets the pid too, so the reader's own creation
    /// names the reader).
    fn gone(&self) -> Result<Option<Pid>> {
        self.set
            .came_and_went(self.num)
            .with_context(|| format!("semctl GETVAL/GETPID set {} #{}", self.set.id(), self.num))
    }
}

impl Peer for Presence<'_> {
    fn death(&self) -> Result<Option<String>> {
        let Some(pid) = self.gone()? else {
            return Ok(None);
        };
        let left = match &self.leaves {
            Some(leaves) => format!("; it died without removing {leaves}"),
            None => String::new(),
        };
        Ok(Some(format!(
            "the {} (pid {pid}) died before its next V (its presence semaphore, set {} #{}, fell \
             back to 0: SEM_UNDO), so no V will come{left}",
            self.who,
            self.set.id(),
            self.num
        )))
    }

    fn notice(&self) {
        // Once: name the peer, as the kernel does (GETPID on its presence semaphore).
        if !self.named.get()
            && let Ok(pid) = self.set.last_pid(self.num)
            && pid != getpid()
        {
            self.named.set(true);
            say!(
                self.watcher,
                "the {} is pid {pid} (semctl GETPID on set {} #{}); I watch it",
                self.who,
                self.set.id(),
                self.num
            );
        }
    }
}

/// The `sysv` flavour's entry point.
pub fn run(request: &Request) -> Result<()> {
    // A fresh key per run: 'S' in the top byte, our pid below (pids fit in 22 bits).
    let fresh = || 0x5300_0000 | std::process::id() as libc::key_t;
    match (request.role, &request.meeting) {
        (Role::Writer, Meeting::Key(key)) => writer(*key, request.ping),
        (Role::Writer, _) => bail!("the writer needs --key KEY"),
        (role, meeting) => {
            let key = match meeting {
                Meeting::Key(key) => *key,
                _ => fresh(),
            };
            match (role, request.ping) {
                (Role::Reader, ping) => reader(key, ping),
                (_, Some(count)) => ping_both(key, count, request.cpus),
                (_, None) => narrated(key, request.loops),
            }
        }
    }
}

/// The five acts, with one set: #0 the mutex (1, SEM_UNDO), #1 the sync semaphore (0).
fn narrated(key: libc::key_t, loops: u64) -> Result<()> {
    say!(
        acts::A,
        "System V semaphores: semget makes a set, semop -1 is P, semop +1 is V"
    );
    let result = (|| {
        let set = create(key, &[("mutex", 1), ("sync", 0)], acts::A)?;
        acts::run(&Stage {
            mutex: &sem(&set, 0, Undo::Yes),
            sync: &sem(&set, 1, Undo::No),
            loops,
        })?;
        remove(set, key, acts::A)
    })();
    signals::narrate_interruption(acts::A, &result, &format!("the set at key {key:#x}"));
    result
}

/// `--ping N` in one run: #0 carries the pings, #1 the answers.
fn ping_both(key: libc::key_t, count: u64, cpus: Option<(usize, usize)>) -> Result<()> {
    let result = (|| {
        let set = create(key, &[("ping", 0), ("pong", 0)], roles::WRITER)?;
        let summary = workload::ping_both(
            &sem(&set, 0, Undo::No),
            &sem(&set, 1, Undo::No),
            count,
            cpus,
        )?;
        remove(set, key, roles::WRITER)?;
        summary.print();
        Ok(())
    })();
    signals::narrate_interruption(roles::WRITER, &result, &format!("the set at key {key:#x}"));
    result
}

/// The reader: creates the set (#0 sync, #1 and #2 the presence of reader and
/// writer, #3 for the answers with `--ping`), says it is there, sleeps in P until
/// the writer's V, removes the set. A writer that came and died ends the wait.
fn reader(key: libc::key_t, ping: Option<u64>) -> Result<()> {
    let result = (|| {
        let mut values = vec![("sync", 0), ("reader here", 0), ("writer here", 0)];
        if ping.is_some() {
            values.push(("pong", 0));
        }
        let set = create(key, &values, roles::READER)?;
        set.announce(READER_HERE)
            .with_context(|| format!("semop +1 (SEM_UNDO) on set {} #1", set.id()))?;
        let ping_option = ping.map(|n| format!(" --ping {n}")).unwrap_or_default();
        say!(
            roles::READER,
            "in another terminal: sem-demo writer sysv --key {key:#x}{ping_option}"
        );
        let writer = Presence {
            set: &set,
            num: WRITER_HERE,
            watcher: roles::READER,
            who: "writer",
            named: false.into(),
            leaves: None,
        };
        let sync = sem(&set, SYNC, Undo::No);
        let waited = match ping {
            Some(count) => workload::answer_pings(
                &sync,
                &sem(&set, PONG, Undo::No),
                count,
                Some(&writer),
                None,
            ),
            None => roles::wait_for_writer(&sync, &writer),
        };
        // Removed on every way out, and said so (a guard's drop could only be silent).
        let removed = remove(set, key, roles::READER);
        let summary = waited?; // the wait's error first: it may be why removing failed
        removed?;
        summary.print();
        Ok(())
    })();
    signals::narrate_interruption(roles::READER, &result, &format!("the set at key {key:#x}"));
    result
}

/// The writer: finds the reader's set, checks that its reader is alive, says it is
/// there, and does V on #0 (or pings, watching the reader while it waits).
fn writer(key: libc::key_t, ping: Option<u64>) -> Result<()> {
    let set = open(key)?;
    let reader = Presence {
        set: &set,
        num: READER_HERE,
        watcher: roles::WRITER,
        who: "reader",
        named: true.into(), // our own line names it
        leaves: Some(format!(
            "set {}: remove it with `ipcrm -s {}`",
            set.id(),
            set.id()
        )),
    };
    match reader.gone() {
        Ok(Some(pid)) => bail!(
            "the reader (pid {pid}) died without removing set {} (its presence semaphore #1 \
             is back at 0: SEM_UNDO): remove the set with `ipcrm -s {}`",
            set.id(),
            set.id()
        ),
        Ok(None) => {}
        Err(_) => bail!(
            "the set at key {key:#x} is not a sem-demo reader's (no semaphore #1 for its \
             presence)"
        ),
    }
    if set.announce(WRITER_HERE) == Err(Errno::EAGAIN) {
        bail!(
            "another writer (pid {}) is already at the set at key {key:#x}",
            last_pid(&set, WRITER_HERE)?
        );
    }
    let summary = match ping {
        Some(count) => {
            let pong = sem(&set, PONG, Undo::No);
            if pong.value().is_err() {
                bail!(
                    "the set at key {key:#x} has no semaphore #3 for answers: start the reader \
                     with sem-demo reader sysv --key {key:#x} --ping {count}"
                );
            }
            say!(
                roles::WRITER,
                "{count} round trips of V then P with reader {} over set {} #0 and #3 (its pid \
                 from semctl GETPID on #1)",
                last_pid(&set, READER_HERE)?,
                set.id()
            );
            workload::time_round_trips(&sem(&set, SYNC, Undo::No), &pong, count, Some(&reader))?
        }
        None => roles::post_to_reader(&sem(&set, SYNC, Undo::No))?,
    };
    summary.print();
    Ok(())
}
