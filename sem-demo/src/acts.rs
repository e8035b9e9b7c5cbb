//! The default run: five acts on the notes' section 信号量, for either flavour.
//!
//! 1. P and V, as the notes define them (quoted on screen), with both views after
//!    each step: the notes' count, which goes to -1 when B blocks, and Linux's
//!    value, which stays at 0 while B is counted among the sleepers (by the kernel
//!    for System V; for POSIX, glibc's count is unreadable, so A counts B asleep
//!    in /proc/PID/wchan, and says which it printed).
//! 2. A race without a semaphore: A and B each add 1 to a counter in shared memory
//!    N times; updates get lost (printed, never assumed: it depends on the timing).
//! 3. A mutex semaphore, value 1 (互斥信号量): the same counting, each increment
//!    between P and V: the total is exact.
//! 4. A sync semaphore, value 0 (同步信号量): B sleeps in P until A has done its step
//!    and V, so A's step always comes first; timestamps show it.
//! 5. A holder that dies: B takes the mutex and is killed. System V's SEM_UNDO
//!    gives its unit back and C goes on; a POSIX semaphore stays taken, and C's
//!    timed wait gives up.
//!
//! A is the parent; it forks B (and C) for each act and reaps them. A wait for a V
//! watches the process that should do it (by its pid, in /proc) and has a time
//! limit besides; B's in act 5 ends when A's end of a pipe closes; so a process
//! whose peer died says so instead of hanging. A child that outlives a SIGKILLed A
//! removes A's semaphores, which A no longer can.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sched::CpuSet;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::family::{Side, exit_child, fork};
use crate::page::SharedPage;
use crate::say;
use crate::semaphore::{
    PEER_TIMEOUT, Process, Semaphore, Took, View, is_alive, p, p_from, p_watching,
    wait_until_asleep,
};
use crate::signals;

pub const A: &str = "A";
const B: &str = "B";
const C: &str = "C";
/// Act 5, POSIX: how long C waits for a mutex whose holder is dead.
const GIVE_UP_AFTER: Duration = Duration::from_secs(2);

/// The semaphores of the run, created by the flavour.
pub struct Stage<'a> {
    /// Value 1 at the start of acts 1, 3 and 5.
    pub mutex: &'a dyn Semaphore,
    /// Value 0 at the start of act 4.
    pub sync: &'a dyn Semaphore,
    /// Increments per process in acts 2 and 3.
    pub loops: u64,
}

pub fn run(stage: &Stage) -> Result<()> {
    let page = SharedPage::map()?;
    let clock = Instant::now();
    // Taken before any fork: a child's getppid() would name whoever adopted it
    // once A is dead.
    let cast = Cast {
        stage,
        a: nix::unistd::getpid(),
    };
    p_and_v(&cast)?;
    let unprotected = race(&cast, &page)?;
    mutex(&cast, &page, unprotected)?;
    sync(&cast, &page, clock)?;
    dead_holder(&cast)
}

/// Acts 2 to 4 only (the race, the mutex, the sync semaphore): what needs nothing
/// but P and V, for a flavour that narrates acts 1 and 5 its own way (eventfd).
pub fn race_mutex_sync(stage: &Stage) -> Result<()> {
    let page = SharedPage::map()?;
    let clock = Instant::now();
    let cast = Cast {
        stage,
        a: nix::unistd::getpid(),
    };
    let unprotected = race(&cast, &page)?;
    mutex(&cast, &page, unprotected)?;
    sync(&cast, &page, clock)
}

/// The stage and A's pid, which every child watches.
struct Cast<'a> {
    stage: &'a Stage<'a>,
    a: Pid,
}

impl Cast<'_> {
    /// Ends a child of A (B or C). If A has died (SIGKILL runs no guard of its),
    /// the child removes the semaphores A made, so the run leaves nothing behind.
    fn end_child(&self, role: &str, outcome: Result<()>) -> ! {
        if !is_alive(self.a) {
            let named = [self.stage.mutex, self.stage.sync];
            for sem in named.into_iter().filter(|sem| sem.outlives_its_processes()) {
                match sem.remove_for_dead_creator() {
                    Ok(()) => say!(
                        role,
                        "A (pid {}) died without removing {}: removed it",
                        self.a,
                        sem.label()
                    ),
                    Err(e) => say!(role, "could not remove {}: {e:#}", sem.label()),
                }
            }
        }
        exit_child(outcome)
    }
}

/// P that waits for `who` (pid `pid`) to do V, for at most PEER_TIMEOUT: its death
/// ends the wait at once, as a semaphore has no end of file.
fn p_from_live(sem: &dyn Semaphore, pid: Pid, who: &str) -> Result<()> {
    match p_watching(sem, Some(PEER_TIMEOUT), Some(&Process { pid, who }))? {
        Took::Yes => Ok(()),
        Took::TimedOut => bail!(
            "P on {}: no V came from {who} (pid {pid}) within {PEER_TIMEOUT:?}",
            sem.label()
        ),
    }
}

/// The notes' count, kept by the notes' rules: P subtracts 1 and blocks below 0,
/// V adds 1 and wakes a sleeper at 0 or below. A wishes to show it beside Linux's.
struct NotesCount(i32);

impl NotesCount {
    fn p(&mut self) -> String {
        let before = self.0;
        self.0 -= 1;
        if self.0 < 0 {
            format!(
                "{before}-1={} < 0: 资源已被占用，进程需阻塞等待 (taken: block)",
                self.0
            )
        } else {
            format!("{before}-1={} >= 0: 还有资源可使用 (free: go on)", self.0)
        }
    }

    fn v(&mut self) -> String {
        let before = self.0;
        self.0 += 1;
        if self.0 <= 0 {
            format!(
                "{before}+1={} <= 0: 有阻塞中的进程，唤醒 (someone blocked: wake it)",
                self.0
            )
        } else {
            format!(
                "{before}+1={} > 0: 没有阻塞中的进程 (nobody blocked)",
                self.0
            )
        }
    }
}

/// Act 1: A takes the mutex, B blocks on it, A's V wakes B, B's V frees it.
fn p_and_v(cast: &Cast) -> Result<()> {
    let mutex = cast.stage.mutex;
    say!(
        A,
        "--- act 1: P and V, as the notes define them and as Linux does them ---"
    );
    say!(
        A,
        "notes: P 操作，这个操作会把信号量减去 1，相减后如果信号量 < 0，则表明资源已被占用，进程需阻塞等待"
    );
    say!(
        A,
        "notes: V 操作，这个操作会把信号量加上 1，相加后如果信号量 <= 0，则表明当前有阻塞中的进程，于是会将该进程唤醒运行"
    );
    say!(
        A,
        "Linux never lets the value go below 0: a P that finds 0 sleeps and is counted apart \
         (System V: by the kernel, GETNCNT; POSIX: by glibc inside the sem_t, where no call \
         reads it, so we look at /proc/PID/wchan), so notes' count = value - asleep_in_P"
    );
    let mut notes = NotesCount(mutex.value()?);
    say!(
        A,
        "{} at the start: {}",
        mutex.label(),
        View::of(mutex, &[])?.both()
    );
    p_from(mutex, PEER_TIMEOUT, "a holder")?;
    let rule = notes.p();
    say!(
        A,
        "P: took the mutex | {} | notes: {rule}",
        View::of(mutex, &[])?
    );

    let b = match fork(B)? {
        Side::Child => cast.end_child(B, b_waits_for_the_mutex(mutex, cast.a)),
        Side::Parent(b) => b,
    };
    let wchan = wait_until_asleep(b.pid(), mutex.sleeps_in(), PEER_TIMEOUT)?;
    let rule = notes.p();
    say!(
        A,
        "B is asleep in the kernel (/proc/{}/wchan: {wchan}) | {} | notes: {rule}",
        b.pid(),
        View::once_asleep(mutex, &[b.pid()])?
    );
    mutex.v()?;
    let rule = notes.v();
    let view = View::of(mutex, &[b.pid()])?;
    let in_flight = if view.value - view.sleepers != notes.0 {
        " (B, woken, has yet to take the unit)"
    } else {
        ""
    };
    say!(
        A,
        "V: the kernel wakes B | {view}{in_flight} | notes: {rule}"
    );
    b.reap_ok(A)?;
    let rule = notes.v(); // B's V, seen from here once B is done
    say!(A, "after B's V | {} | notes: {rule}", View::of(mutex, &[])?);
    Ok(())
}

/// Act 1, B's part: P sleeps while A holds the mutex, then V.
fn b_waits_for_the_mutex(mutex: &dyn Semaphore, a: Pid) -> Result<()> {
    say!(
        B,
        "P on {}: value {}, A holds it, so I sleep",
        mutex.label(),
        mutex.value()?
    );
    p_from_live(mutex, a, "A")?;
    say!(B, "woke up holding the mutex (value {})", mutex.value()?);
    mutex.v()?;
    say!(B, "V: value {}", mutex.value()?);
    Ok(())
}

/// Act 2: both count with nothing protecting the counter. Returns what one
/// unprotected increment cost, for act 3 to compare with.
fn race(cast: &Cast, page: &SharedPage) -> Result<Duration> {
    let loops = cast.stage.loops;
    say!(
        A,
        "--- act 2: no semaphore: A and B each add 1 to one shared counter {loops} times ---"
    );
    say!(
        A,
        "the counter is in a page mapped MAP_SHARED before fork: one physical page for both; \
         an increment is an atomic load, a moment's work, then an atomic store: each step \
         is atomic, the pair is not"
    );
    let (total, took) = count_in_two(cast, page, None)?;
    let expected = 2 * loops;
    say!(
        A,
        "race: expected={expected} actual={total} lost={}",
        expected - total
    );
    if total < expected {
        say!(
            A,
            "each lost update: A and B read the same value and both wrote it back plus 1 \
             (如果多个进程同时修改同一个共享内存，很有可能就冲突了)"
        );
    } else {
        say!(
            A,
            "nothing lost this time: A and B did not overlap (a busy machine?); try again, \
             or a larger --loops"
        );
    }
    Ok(took.div_f64(expected as f64))
}

/// Act 3: the same counting, each increment inside P and V on the mutex.
fn mutex(cast: &Cast, page: &SharedPage, unprotected: Duration) -> Result<()> {
    let (mutex, loops) = (cast.stage.mutex, cast.stage.loops);
    say!(
        A,
        "--- act 3: a mutex semaphore, value 1 (互斥信号量): the same counting, each \
         increment between P and V on {} ---",
        mutex.label()
    );
    let (total, took) = count_in_two(cast, page, Some(mutex))?;
    let expected = 2 * loops;
    say!(
        A,
        "mutex: expected={expected} actual={total} lost={}",
        expected.saturating_sub(total)
    );
    if total != expected {
        bail!("the mutex let a race through: expected {expected}, counted {total}");
    }
    say!(
        A,
        "exact: one process at a time between P and V (它可以保证共享内存在任何时刻只有一个进程\
         在访问); the price: {:.3} us per increment, against {:.3} us without the semaphore",
        took.as_secs_f64() * 1e6 / expected as f64,
        unprotected.as_secs_f64() * 1e6
    );
    Ok(())
}

/// Acts 2 and 3: A and B each add 1 `loops` times, inside P/V on `mutex` if
/// given, each on a CPU of its own when there are two. Returns the counter at the
/// end and how long the counting took.
fn count_in_two(
    cast: &Cast,
    page: &SharedPage,
    mutex: Option<&dyn Semaphore>,
) -> Result<(u64, Duration)> {
    let loops = cast.stage.loops;
    page.reset();
    let cpus = two_cpus()?;
    match cpus {
        Some((a, b)) => say!(
            A,
            "A counts on CPU {a}, B on CPU {b} (sched_setaffinity): truly at the same time"
        ),
        None => say!(
            A,
            "one CPU only: A and B take turns on it, and only a switch in mid-increment can \
             lose an update"
        ),
    }
    let started = Instant::now();
    let b = match fork(B)? {
        Side::Child => {
            let other = Process {
                pid: cast.a,
                who: "A",
            };
            let counted =
                run_on(cpus.map(|(_, b)| b)).and_then(|()| count(B, page, loops, mutex, &other));
            cast.end_child(B, counted)
        }
        Side::Parent(b) => b,
    };
    let mask = nix::sched::sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    let other = Process {
        pid: b.pid(),
        who: "B",
    };
    let counted = run_on(cpus.map(|(a, _)| a)).and_then(|()| count(A, page, loops, mutex, &other));
    let reaped = match counted {
        Ok(()) => b.reap_ok(A),
        Err(_) if !is_alive(b.pid()) => b.reap(A).map(drop), // says how B died
        Err(_) => {
            drop(b); // B would wait for us in vain: the guard kills and reaps it
            Ok(())
        }
    };
    let took = started.elapsed();
    nix::sched::sched_setaffinity(Pid::from_raw(0), &mask).context("sched_setaffinity")?;
    counted?;
    reaped?;
    Ok((page.counter(), took))
}

/// The first two CPUs this process may run on, if it may run on two.
fn two_cpus() -> Result<Option<(usize, usize)>> {
    let mask = nix::sched::sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    let mut allowed = (0..CpuSet::count()).filter(|&cpu| mask.is_set(cpu).unwrap_or(false));
    Ok(allowed.next().zip(allowed.next()))
}

/// Keeps this process on `cpu` from now on (`None`: leaves it where it is).
pub fn run_on(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let mut only = CpuSet::new();
    only.set(cpu).context("CpuSet::set")?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &only)
        .with_context(|| format!("sched_setaffinity CPU {cpu}"))
}

/// How many unprotected increments pass between two looks at the Ctrl+C flag.
const CHECK_EVERY: u64 = 4096;

/// One process's share of the counting. `other`: the process counting with us; if
/// it dies before it has finished, we stop too.
fn count(
    role: &str,
    page: &SharedPage,
    loops: u64,
    mutex: Option<&dyn Semaphore>,
    other: &Process,
) -> Result<()> {
    page.start_together(2, PEER_TIMEOUT, || is_alive(other.pid))?;
    // Now and then (every 4096 increments: microseconds apart), look at the Ctrl+C
    // flag (nothing here sleeps, so no EINTR tells us) and at the other process.
    let look = |k: u64| -> Result<()> {
        if k.is_multiple_of(CHECK_EVERY) {
            signals::check()?;
            if page.finished() == 0 && !is_alive(other.pid) {
                bail!(
                    "{} (pid {}) died before it had finished counting",
                    other.who,
                    other.pid
                );
            }
        }
        Ok(())
    };
    say!(
        role,
        "counting from now on ({loops} times; Ctrl+C stops me)"
    );
    let started = Instant::now();
    match mutex {
        None => {
            for k in 0..loops {
                look(k)?;
                page.add_one();
            }
        }
        Some(mutex) => {
            for k in 0..loops {
                look(k)?;
                p_from_live(mutex, other.pid, other.who)?;
                page.add_one();
                mutex.v()?;
            }
        }
    }
    page.finish();
    say!(
        role,
        "added 1 {loops} times in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Milliseconds since the run began, the same clock in every process (monotonic,
/// and `clock` was copied into the children by fork).
fn t(clock: Instant) -> String {
    format!("t=+{:.3}ms", clock.elapsed().as_secs_f64() * 1e3)
}

/// Act 4: B waits on the sync semaphore; A does its step, then V.
fn sync(cast: &Cast, page: &SharedPage, clock: Instant) -> Result<()> {
    let sync = cast.stage.sync;
    say!(
        A,
        "--- act 4: a sync semaphore, value 0 (同步信号量): B is started first, yet A's step comes first ---"
    );
    page.set_note(0);
    let b = match fork(B)? {
        Side::Child => cast.end_child(B, b_waits_for_a(page, sync, clock, cast.a)),
        Side::Parent(b) => b,
    };
    // Wait until B really sleeps in P, to show that even a B that is ready first
    // cannot go before A's V.
    let wchan = wait_until_asleep(b.pid(), sync.sleeps_in(), PEER_TIMEOUT)?;
    say!(
        A,
        "{} B is asleep in P on {} ({wchan}) | {}",
        t(clock),
        sync.label(),
        View::once_asleep(sync, &[b.pid()])?.both()
    );
    page.set_note(42);
    say!(A, "{} A's step: wrote 42 into the shared page", t(clock));
    sync.v()?;
    say!(
        A,
        "{} V on {}: A's step is done, B may go",
        t(clock),
        sync.label()
    );
    b.reap_ok(A)?;
    say!(
        A,
        "B ran after A, whatever the scheduler preferred (它可以保证进程 A 应在进程 B 之前执行)"
    );
    Ok(())
}

/// Act 4, B's part.
fn b_waits_for_a(page: &SharedPage, sync: &dyn Semaphore, clock: Instant, a: Pid) -> Result<()> {
    say!(
        B,
        "{} P on {}: value {}, so I sleep until A does V",
        t(clock),
        sync.label(),
        sync.value()?
    );
    p_from_live(sync, a, "A")?;
    say!(
        B,
        "{} woke up. B's step: read {} from the shared page, written by A before its V",
        t(clock),
        page.note()
    );
    Ok(())
}

/// Act 5: B takes the mutex and is killed holding it; C waits for it.
fn dead_holder(cast: &Cast) -> Result<()> {
    let (mutex, sync) = (cast.stage.mutex, cast.stage.sync);
    say!(
        A,
        "--- act 5: the holder dies: B takes the mutex and is killed before its V ---"
    );
    // B will sleep in a read on this pipe until it is killed. Only A keeps the
    // write end, and never writes: if A dies first, the kernel closes that end and
    // B's read returns end of file, so B does not hold the mutex forever.
    let (a_alive, a_alive_writer) = nix::unistd::pipe().context("pipe")?;
    let b = match fork(B)? {
        Side::Child => {
            drop(a_alive_writer);
            cast.end_child(B, hold_until_killed(mutex, sync, a_alive))
        }
        Side::Parent(b) => b,
    };
    drop(a_alive);
    // B says "I hold it" with a V on the sync semaphore: act 4's tool again.
    p_from_live(sync, b.pid(), "B")?;
    say!(
        A,
        "B holds the mutex | {}",
        View::of(mutex, &[b.pid()])?.both()
    );
    let c = match fork(C)? {
        Side::Child => cast.end_child(C, c_waits_for_the_mutex(mutex)),
        Side::Parent(c) => c,
    };
    let wchan = wait_until_asleep(c.pid(), mutex.sleeps_in(), PEER_TIMEOUT)?;
    say!(
        A,
        "C is asleep in P ({wchan}) | {}",
        View::once_asleep(mutex, &[c.pid()])?.both()
    );
    say!(
        A,
        "kill -KILL {}: B dies holding the mutex, running no code of its own, so no V",
        b.pid()
    );
    b.kill()?;
    match b.reap(A)? {
        WaitStatus::Signaled(..) => {}
        other => bail!("B should have been killed, it ended: {other:?}"),
    }
    c.reap_ok(A)?;
    if mutex.undone_at_exit() {
        say!(
            A,
            "the kernel released a dead holder's mutex (SEM_UNDO), and C went on | {}",
            View::of(mutex, &[])?.both()
        );
    } else {
        say!(
            A,
            "nothing released it: {} stays taken by a dead process for good | {}",
            mutex.label(),
            View::of(mutex, &[])?.both()
        );
        say!(
            A,
            "a POSIX semaphore is a counter, not an owner: no one knows B took a unit. For a \
             lock that survives its holder: a robust pthread mutex (EOWNERDEAD), or flock(2)"
        );
    }
    Ok(())
}

/// Act 5, B's part: P, tell A, then wait to be killed. `a_alive`: the read end of
/// a pipe whose write end only A holds.
fn hold_until_killed(mutex: &dyn Semaphore, sync: &dyn Semaphore, a_alive: OwnedFd) -> Result<()> {
    p_from(mutex, PEER_TIMEOUT, "the previous holder")?;
    let undo = if mutex.undone_at_exit() {
        " (with SEM_UNDO: the kernel notes it must give this unit back if I die)"
    } else {
        ""
    };
    say!(
        B,
        "P on {}: took it, value {}{undo}; I will never do V",
        mutex.label(),
        mutex.value()?
    );
    sync.v()?;
    // Sleep in one blocking call, not a polling loop: no data ever comes, so the
    // read sleeps until SIGKILL ends us, or returns 0 (end of file) if A is gone.
    // Ctrl+C makes it return EINTR. (A Ctrl+C landing just before the read only
    // sets the flag; A, stopped by it too, then kills us on its way out.)
    let mut byte = [0u8; 1];
    loop {
        signals::check()?;
        match nix::unistd::read(&a_alive, &mut byte) {
            Err(Errno::EINTR) => continue, // the loop re-checks the flag
            Ok(_) => bail!("A is gone (its end of our pipe closed): nobody will kill me"),
            Err(e) => bail!("read from the pipe to A: {e}"),
        }
    }
}

/// Act 5, C's part: P on the mutex a dead process holds.
fn c_waits_for_the_mutex(mutex: &dyn Semaphore) -> Result<()> {
    let limit = if mutex.undone_at_exit() {
        PEER_TIMEOUT
    } else {
        GIVE_UP_AFTER
    };
    say!(
        C,
        "P on {}: value {}, B holds it, so I sleep (for at most {limit:?})",
        mutex.label(),
        mutex.value()?
    );
    let started = Instant::now();
    match p(mutex, Some(limit))? {
        Took::Yes => {
            say!(
                C,
                "woke up holding the mutex after {:.1} ms: B's death gave its unit back",
                started.elapsed().as_secs_f64() * 1e3
            );
            mutex.v()?;
            say!(C, "V: value {}", mutex.value()?);
            Ok(())
        }
        Took::TimedOut if !mutex.undone_at_exit() => {
            say!(
                C,
                "gave up: the timed wait on {} ran out after {limit:?} (ETIMEDOUT), value still {}: \
                 B died holding it and nothing releases a POSIX semaphore when its holder dies",
                mutex.label(),
                mutex.value()?
            );
            Ok(())
        }
        Took::TimedOut => bail!(
            "P on {}: still taken {limit:?} after its holder died: SEM_UNDO did not release it",
            mutex.label()
        ),
    }
}
