//! The `sysv` flavour: a System V semaphore set (semget, semop, semctl).
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
//! Traps met here: libc has no `union semun` (we define it and pass it by value to
//! the variadic semctl), no `semtimedop` wrapper (we make the system call, which
//! answers EAGAIN on timeout), and `sem_flg` is a `c_short`. SEM_UNDO goes on the
//! mutex and on the two-terminal presence semaphores, never on a sync semaphore:
//! there the kernel would undo a writer's V at its exit.

use std::ffi::{c_int, c_short, c_ushort};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::unistd::{Pid, getpid};

use crate::acts::{self, Stage};
use crate::args::{Meeting, Request, Role};
use crate::roles;
use crate::say;
use crate::semaphore::{Peer, Semaphore, is_alive};
use crate::signals;

/// The fourth argument of semctl, which C programs must declare themselves
/// (semctl(2): "the calling program must define this union").
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)] // `buf` and `array` are there to give the union its C size
union Semun {
    val: c_int,
    buf: *mut libc::semid_ds,
    array: *mut c_ushort,
}

/// semctl for the commands that take an int or nothing (SETVAL, GETVAL, GETNCNT,
/// IPC_RMID): the union is passed by value, as the variadic C function expects.
fn semctl(id: c_int, num: c_ushort, cmd: c_int, val: c_int) -> nix::Result<c_int> {
    // SAFETY: none of these commands reads a pointer from the union; `val` is the
    // field they use, and the union is passed whole, by value, as in C.
    let r = unsafe { libc::semctl(id, c_int::from(num), cmd, Semun { val }) };
    Errno::result(r)
}

/// semtimedop(2) on one semaphore: adds `op` (-1 for P, +1 for V), sleeping at most
/// `timeout` if it must. Err(EAGAIN) when the time ran out.
fn semtimedop(
    id: c_int,
    num: c_ushort,
    op: c_short,
    undo: bool,
    timeout: Duration,
) -> nix::Result<()> {
    let mut sop = libc::sembuf {
        sem_num: num,
        sem_op: op,
        sem_flg: if undo { libc::SEM_UNDO as c_short } else { 0 },
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `sop` is one valid sembuf and `ts` a valid timespec, both alive for the
    // call; glibc has this call but libc does not declare it, so we make it directly.
    let r = unsafe {
        libc::syscall(
            libc::SYS_semtimedop,
            id,
            &raw mut sop,
            1usize,
            &raw const ts,
        )
    };
    Errno::result(r).map(drop)
}

/// A semaphore set this process has found or made. Removed (IPC_RMID) on drop if
/// this process created it and is not a forked copy of its creator.
pub struct SemSet {
    id: c_int,
    key: libc::key_t,
    creator: Option<Pid>,
}

impl SemSet {
    /// semget with IPC_CREAT|IPC_EXCL, mode 0600, then SETVAL for each semaphore.
    pub fn create(key: libc::key_t, values: &[(&str, c_int)], role: &str) -> Result<SemSet> {
        let n = values.len() as c_int;
        // SAFETY: semget takes plain integers.
        let id = unsafe { libc::semget(key, n, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        if id < 0 {
            return Err(match Errno::last() {
                Errno::EEXIST => {
                    // SAFETY: as above; nsems 0 and no flags only look the set up.
                    let old = unsafe { libc::semget(key, 0, 0) };
                    anyhow::anyhow!(
                        "a semaphore set with key {key:#x} already exists (id {old}, left by a \
                         killed run?): remove it with ipcrm -s {old}"
                    )
                }
                e => anyhow::anyhow!("semget key {key:#x} (create): {e}"),
            });
        }
        let set = SemSet {
            id,
            key,
            creator: Some(getpid()),
        };
        // Until SETVAL, the values are 0: a writer opening the set in between
        // would see that (System V's classic create-then-initialise race).
        for (num, (_, value)) in values.iter().enumerate() {
            semctl(id, num as c_ushort, libc::SETVAL, *value)
                .with_context(|| format!("semctl SETVAL #{num}"))?;
        }
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

    /// semget without IPC_CREAT: the reader's set, or a clear error.
    pub fn open(key: libc::key_t) -> Result<SemSet> {
        // SAFETY: semget takes plain integers.
        let id = unsafe { libc::semget(key, 0, 0) };
        if id < 0 {
            return Err(match Errno::last() {
                Errno::ENOENT => anyhow::anyhow!(
                    "no semaphore set with key {key:#x}: start the reader first \
                     (sem-demo reader sysv --key {key:#x})"
                ),
                Errno::EACCES => {
                    anyhow::anyhow!("semget key {key:#x}: permission denied (another user's?)")
                }
                e => anyhow::anyhow!("semget key {key:#x}: {e}"),
            });
        }
        Ok(SemSet {
            id,
            key,
            creator: None,
        })
    }

    /// Semaphore `num` of the set; `undo`: take and give with SEM_UNDO.
    pub fn sem(&self, num: c_ushort, undo: bool) -> SysvSem<'_> {
        SysvSem {
            set: self,
            num,
            undo,
            label: format!("set {} #{num}", self.id),
        }
    }

    /// Removes the set now, reporting a failure (`Drop` can only ignore it). Unlike
    /// a POSIX name, the set itself goes: a process asleep on it wakes with EIDRM.
    pub fn remove(mut self, role: &str) -> Result<()> {
        self.creator = None; // leaves `Drop` nothing to do
        semctl(self.id, 0, libc::IPC_RMID, 0)
            .with_context(|| format!("semctl IPC_RMID set {}", self.id))?;
        say!(
            role,
            "removed semaphore set id {} (IPC_RMID: key {:#x} is free again)",
            self.id,
            self.key
        );
        Ok(())
    }
}

impl Drop for SemSet {
    fn drop(&mut self) {
        if self.creator == Some(getpid()) {
            let _ = semctl(self.id, 0, libc::IPC_RMID, 0);
        }
    }
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

/// One semaphore of a set.
pub struct SysvSem<'a> {
    set: &'a SemSet,
    num: c_ushort,
    undo: bool,
    label: String,
}

impl Semaphore for SysvSem<'_> {
    fn label(&self) -> &str {
        &self.label
    }

    fn p_within(&self, slice: Duration) -> nix::Result<bool> {
        match semtimedop(self.set.id, self.num, -1, self.undo, slice) {
            Ok(()) => Ok(true),
            Err(Errno::EAGAIN) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn v(&self) -> Result<()> {
        // A V never sleeps; the timeout is never used.
        semtimedop(self.set.id, self.num, 1, self.undo, Duration::from_secs(1))
            .with_context(|| format!("semop V on {}", self.label))
    }

    fn value(&self) -> Result<i32> {
        semctl(self.set.id, self.num, libc::GETVAL, 0)
            .with_context(|| format!("semctl GETVAL {}", self.label))
    }

    fn sleepers(&self) -> Result<Option<i32>> {
        let n = semctl(self.set.id, self.num, libc::GETNCNT, 0)
            .with_context(|| format!("semctl GETNCNT {}", self.label))?;
        Ok(Some(n))
    }

    fn sleeps_in(&self) -> &'static str {
        "semtimedop"
    }

    fn undone_at_exit(&self) -> bool {
        self.undo
    }

    fn why_failed(&self, e: Errno) -> String {
        match e {
            Errno::EIDRM => "the set was removed (IPC_RMID) while I waited".to_string(),
            Errno::EINVAL => format!("set {} no longer exists (removed)", self.set.id),
            e => e.to_string(),
        }
    }

    fn remove_for_dead_creator(&self) -> Result<()> {
        match semctl(self.set.id, 0, libc::IPC_RMID, 0) {
            Ok(_) | Err(Errno::EINVAL) | Err(Errno::EIDRM) => Ok(()), // EINVAL: already gone
            Err(e) => bail!("semctl IPC_RMID set {}: {e}", self.set.id),
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

impl SemSet {
    /// Raises presence semaphore `num` with SEM_UNDO, only if no one else holds it
    /// (one semop of two operations, done whole or not at all: wait-for-zero without
    /// waiting, then +1). Err(EAGAIN): someone does.
    fn announce(&self, num: c_ushort) -> nix::Result<()> {
        let mut sops = [
            libc::sembuf {
                sem_num: num,
                sem_op: 0,
                sem_flg: libc::IPC_NOWAIT as c_short,
            },
            libc::sembuf {
                sem_num: num,
                sem_op: 1,
                sem_flg: libc::SEM_UNDO as c_short,
            },
        ];
        // SAFETY: `sops` is an array of two valid sembufs, alive for the call.
        Errno::result(unsafe { libc::semop(self.id, sops.as_mut_ptr(), sops.len()) }).map(drop)
    }

    /// semctl GETPID: the last process that changed semaphore `num` (or SETVAL).
    fn last_pid(&self, num: c_ushort) -> Result<Pid> {
        let pid = semctl(self.id, num, libc::GETPID, 0)
            .with_context(|| format!("semctl GETPID set {} #{num}", self.id))?;
        Ok(Pid::from_raw(pid))
    }
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
    /// The pid of the side that has come and gone, if it has: value 0, and the
    /// last change by a process other than us (Linux's SETVAL sets the pid too, so
    /// the reader's own creation names the reader) that no longer runs.
    fn gone(&self) -> Result<Option<Pid>> {
        let value = semctl(self.set.id, self.num, libc::GETVAL, 0)
            .with_context(|| format!("semctl GETVAL set {} #{}", self.set.id, self.num))?;
        let last = self.set.last_pid(self.num)?;
        let came_and_went = last.as_raw() != 0 && last != getpid() && !is_alive(last);
        Ok((value == 0 && came_and_went).then_some(last))
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
            self.who, self.set.id, self.num
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
                self.set.id,
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
        let set = SemSet::create(key, &[("mutex", 1), ("sync", 0)], acts::A)?;
        acts::run(&Stage {
            mutex: &set.sem(0, true),
            sync: &set.sem(1, false),
            loops,
        })?;
        set.remove(acts::A)
    })();
    signals::narrate_interruption(acts::A, &result, &format!("the set at key {key:#x}"));
    result
}

/// `--ping N` in one run: #0 carries the pings, #1 the answers.
fn ping_both(key: libc::key_t, count: u64, cpus: Option<(usize, usize)>) -> Result<()> {
    let result = (|| {
        let set = SemSet::create(key, &[("ping", 0), ("pong", 0)], roles::WRITER)?;
        let summary = roles::ping_both(&set.sem(0, false), &set.sem(1, false), count, cpus)?;
        set.remove(roles::WRITER)?;
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
        let set = SemSet::create(key, &values, roles::READER)?;
        set.announce(READER_HERE)
            .with_context(|| format!("semop +1 (SEM_UNDO) on set {} #1", set.id))?;
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
        let sync = set.sem(SYNC, false);
        let waited = match ping {
            Some(count) => {
                roles::answer_pings(&sync, &set.sem(PONG, false), count, Some(&writer), None)
            }
            None => roles::wait_for_writer(&sync, &writer),
        };
        // Removed on every way out, and said so (a guard's drop could only be silent).
        let removed = set.remove(roles::READER);
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
    let set = SemSet::open(key)?;
    let reader = Presence {
        set: &set,
        num: READER_HERE,
        watcher: roles::WRITER,
        who: "reader",
        named: true.into(), // our own line names it
        leaves: Some(format!(
            "set {}: remove it with `ipcrm -s {}`",
            set.id, set.id
        )),
    };
    match reader.gone() {
        Ok(Some(pid)) => bail!(
            "the reader (pid {pid}) died without removing set {} (its presence semaphore #1 \
             is back at 0: SEM_UNDO): remove the set with `ipcrm -s {}`",
            set.id,
            set.id
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
            set.last_pid(WRITER_HERE)?
        );
    }
    let summary = match ping {
        Some(count) => {
            let pong = set.sem(PONG, false);
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
                set.last_pid(READER_HERE)?,
                set.id
            );
            roles::time_round_trips(&set.sem(SYNC, false), &pong, count, Some(&reader))?
        }
        None => roles::post_to_reader(&set.sem(SYNC, false))?,
    };
    summary.print();
    Ok(())
}
