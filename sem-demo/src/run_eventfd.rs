//! The `eventfd` flavour, narrated: the notes' counting semaphore (信号量其实是一个
//! 整型的计数器) as an eventfd(2) made with EFD_SEMAPHORE, between a parent and the
//! children it forks (the library half: `eventfd.rs`).
//!
//! 1. A counting semaphore: V is a write of 1, P a read that takes 1; the counter
//!    read from /proc/PID/fdinfo (`eventfd-count`) after each step, and B asleep
//!    once it reaches 0, until A's V.
//! 2. to 4. The race, the mutex semaphore (value 1), the sync semaphore (value 0),
//!    the same acts as the other flavours (`acts.rs`).
//! 5. Pollable: B waits in one poll(2) for the semaphore and a pipe, with a
//!    deadline, which no System V or POSIX semaphore allows (neither is an fd).
//!
//! There are no reader and writer for two terminals: an eventfd has no name, so
//! only a process that inherits it (fork) or receives it (SCM_RIGHTS, socket-demo
//! `fdpass`, not shown here) can use it. Nothing is ever left to remove.
//!
//! In production: eventfd is how event loops (mio's `Waker` under tokio, glib's
//! main loop) wake a loop or count jobs beside their sockets; between unrelated
//! processes, a POSIX semaphore.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::unistd::{Pid, getpid};

use sem_demo::eventfd::{self, EventSemaphore, count_of, fdinfo_lines};

use crate::acts::{self, A, Stage};
use crate::args::Request;
use crate::family::{Side, exit_child, fork};
use crate::roles::WRITER;
use crate::say;
use crate::semaphore::{PEER_TIMEOUT, Process, Semaphore, Took, p_watching, wait_until_asleep};
use crate::{signals, workload};

const B: &str = "B";
/// What a process asleep in P shows in /proc/PID/wchan: our P sleeps in poll(2)
/// (`poll_schedule_timeout` on Linux 6.18).
const ASLEEP_IN: &str = "poll";
/// Act 5: the deadline of B's first poll, which nothing will end sooner.
const DEADLINE: Duration = Duration::from_millis(300);
/// What the narration says on Ctrl+C, where the other flavours name what they removed.
const NOTHING: &str = "nothing: an eventfd has no name, and its fds closed with the processes";

/// The library's semaphore, with a label for the narration.
struct Eventfd {
    sem: EventSemaphore,
    label: String,
}

impl Eventfd {
    fn new(what: &str, value: u32) -> Result<Eventfd> {
        let sem = EventSemaphore::new(value)
            .with_context(|| format!("eventfd({value}, EFD_SEMAPHORE) for {what}"))?;
        let label = format!("{what} (eventfd, fd {})", sem.raw_fd());
        Ok(Eventfd { sem, label })
    }

    /// The counter as process `pid` sees it through its fd: the same number in
    /// every process, as they share one eventfd.
    fn count_in(&self, pid: Pid) -> Result<u64> {
        count_of(pid, self.sem.raw_fd())
            .with_context(|| format!("/proc/{pid}/fdinfo/{}", self.sem.raw_fd()))
    }
}

impl Semaphore for Eventfd {
    fn label(&self) -> &str {
        &self.label
    }

    fn p_within(&self, slice: Duration) -> nix::Result<bool> {
        Ok(self.sem.p(Some(slice), &|| false)? == eventfd::Took::Yes)
    }

    fn p_until(
        &self,
        limit: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<Option<Took>> {
        Ok(match self.sem.p(limit, stop)? {
            eventfd::Took::Yes => Some(Took::Yes),
            eventfd::Took::TimedOut => Some(Took::TimedOut),
            eventfd::Took::Stopped => None,
        })
    }

    fn v(&self) -> Result<()> {
        self.sem
            .v()
            .map_err(|e| anyhow!("write(1) to {}: {e}", self.label))
    }

    fn value(&self) -> Result<i32> {
        let count = self.count_in(getpid())?;
        i32::try_from(count).map_err(|_| anyhow!("{}: counter {count} is past i32", self.label))
    }

    fn sleepers(&self) -> Result<Option<i32>> {
        // The kernel keeps its pollers and readers on the eventfd's wait queue;
        // fdinfo does not show how many.
        Ok(None)
    }

    fn sleeps_in(&self) -> &'static str {
        ASLEEP_IN
    }

    fn undone_at_exit(&self) -> bool {
        false
    }

    fn remove_for_dead_creator(&self) -> Result<()> {
        Ok(()) // nothing has a name: the kernel frees it with its last fd
    }

    fn outlives_its_processes(&self) -> bool {
        false
    }
}

/// The `eventfd` flavour's entry point (args.rs refuses reader and writer).
pub fn run(request: &Request) -> Result<()> {
    let result = match request.ping {
        Some(count) => ping_both(count, request.cpus),
        None => narrated(request.loops),
    };
    let role = if request.ping.is_some() { WRITER } else { A };
    signals::narrate_interruption(role, &result, NOTHING);
    result
}

fn narrated(loops: u64) -> Result<()> {
    say!(
        A,
        "eventfd(2) with EFD_SEMAPHORE: a counter in the kernel behind a file descriptor; \
         V is write(2) of 1, P a read(2) that takes 1; no name, so nothing in /dev/shm or \
         ipcs, and nothing to remove: the kernel frees it when its last fd closes"
    );
    counting()?;
    let mutex = Eventfd::new("mutex", 1)?;
    let sync = Eventfd::new("sync", 0)?;
    acts::race_mutex_sync(&Stage {
        mutex: &mutex,
        sync: &sync,
        loops,
    })?;
    pollable()?;
    say!(A, "done: closing the fds is all the cleanup there is");
    Ok(())
}

/// The eventfd's lines of /proc/PID/fdinfo/FD, on one line.
fn fdinfo(sem: &Eventfd, pid: Pid) -> Result<String> {
    let lines = fdinfo_lines(pid, sem.sem.raw_fd())
        .with_context(|| format!("/proc/{pid}/fdinfo/{}", sem.sem.raw_fd()))?;
    Ok(lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Act 1: A does V three times; B takes the three units, then sleeps until A's V.
fn counting() -> Result<()> {
    say!(
        A,
        "--- act 1: a counting semaphore: V = write 1, P = read 1, the counter in \
         /proc/PID/fdinfo ---"
    );
    let jobs = Eventfd::new("jobs", 0)?;
    let a = getpid();
    say!(
        A,
        "created {}: /proc/{a}/fdinfo/{}: {}",
        jobs.label(),
        jobs.sem.raw_fd(),
        fdinfo(&jobs, a)?
    );
    for _ in 0..3 {
        jobs.v()?;
        say!(A, "V: wrote 1, eventfd-count {}", jobs.count_in(a)?);
    }
    let b = match fork(B)? {
        Side::Child => exit_child(take_all_then_sleep(&jobs, a)),
        Side::Parent(b) => b,
    };
    let wchan = wait_until_asleep(b.pid(), ASLEEP_IN, PEER_TIMEOUT)?;
    say!(
        A,
        "B is asleep in P (/proc/{}/wchan: {wchan}); B's fd says eventfd-count {}",
        b.pid(),
        jobs.count_in(b.pid())?
    );
    jobs.v()?;
    say!(A, "V: wrote 1, and the kernel woke B");
    b.reap_ok(A)?;
    say!(
        A,
        "while B slept the value was 0, not the notes' -1: Linux keeps the sleeper \
         apart, on the eventfd's wait queue | eventfd-count {}",
        jobs.count_in(a)?
    );
    Ok(())
}

/// Act 1, B's part: three P that find a unit, and a fourth that sleeps.
fn take_all_then_sleep(jobs: &Eventfd, a: Pid) -> Result<()> {
    let me = getpid();
    for _ in 0..3 {
        take_from(jobs, a)?;
        say!(
            B,
            "P: read took 1 (EFD_SEMAPHORE: one unit a read, not the whole count), \
             eventfd-count {}",
            jobs.count_in(me)?
        );
    }
    say!(
        B,
        "P at eventfd-count 0: the read says EAGAIN (the fd is EFD_NONBLOCK, so that P \
         can have a deadline), and I sleep in poll(2) until the fd is readable"
    );
    take_from(jobs, a)?;
    say!(
        B,
        "woke up and took the unit A wrote, eventfd-count {}",
        jobs.count_in(me)?
    );
    Ok(())
}

/// P that waits for `who` (alive, pid `pid`) to do V, for at most PEER_TIMEOUT.
fn take_from(sem: &Eventfd, pid: Pid) -> Result<()> {
    let peer = Process { pid, who: "A" };
    match p_watching(sem, Some(PEER_TIMEOUT), Some(&peer))? {
        Took::Yes => Ok(()),
        Took::TimedOut => bail!("P on {}: no V within {PEER_TIMEOUT:?}", sem.label()),
    }
}

/// Act 5: B polls the semaphore and a pipe at once, first with a deadline that
/// passes, then until the pipe, then the semaphore, becomes readable.
fn pollable() -> Result<()> {
    say!(
        A,
        "--- act 5: pollable: one poll(2) waits for the semaphore and a pipe, with a \
         deadline; sem_timedwait and semtimedop wait for one semaphore only ---"
    );
    let work = Eventfd::new("work", 0)?;
    let ready = Eventfd::new("ready", 0)?;
    let (from_a, to_b) = nix::unistd::pipe().context("pipe")?;
    let a = getpid();
    let b = match fork(B)? {
        Side::Child => {
            drop(to_b);
            exit_child(poll_both(&work, &ready, &from_a, a))
        }
        Side::Parent(b) => b,
    };
    drop(from_a);
    // B says "my timed poll is over" with a V: only then is its next sleep the one
    // that the pipe, then the semaphore, must end.
    let peer = Process {
        pid: b.pid(),
        who: "B",
    };
    if p_watching(&ready, Some(PEER_TIMEOUT), Some(&peer))? != Took::Yes {
        bail!("B did not finish its timed poll within {PEER_TIMEOUT:?}");
    }
    let wchan = wait_until_asleep(b.pid(), ASLEEP_IN, PEER_TIMEOUT)?;
    say!(
        A,
        "B is asleep in poll ({wchan}): writing a line into the pipe"
    );
    nix::unistd::write(&to_b, b"hello\n").context("write to the pipe")?;
    if p_watching(&ready, Some(PEER_TIMEOUT), Some(&peer))? != Took::Yes {
        bail!("B did not read the pipe within {PEER_TIMEOUT:?}");
    }
    let wchan = wait_until_asleep(b.pid(), ASLEEP_IN, PEER_TIMEOUT)?;
    say!(
        A,
        "B is asleep in poll again ({wchan}): V on {}",
        work.label()
    );
    work.v()?;
    b.reap_ok(A)?;
    say!(
        A,
        "an event loop takes a semaphore's V like any other input: no thread blocked in \
         sem_wait, no signal to wake it"
    );
    Ok(())
}

/// Act 5, B's part. `from_a`: the pipe's read end; A holds the write end, so if A
/// dies the same poll reports POLLHUP.
fn poll_both(work: &Eventfd, ready: &Eventfd, from_a: &OwnedFd, a: Pid) -> Result<()> {
    say!(
        B,
        "poll on {} and the pipe, deadline {DEADLINE:?}",
        work.label()
    );
    match wait_for_either(work, from_a, DEADLINE)? {
        None => say!(
            B,
            "poll returned 0 after {DEADLINE:?}: neither ready, deadline kept, no unit taken"
        ),
        Some(_) => bail!("poll found an fd readable before anything was sent"),
    }
    ready.v()?;
    let mut pending = 2;
    while pending > 0 {
        match wait_for_either(work, from_a, PEER_TIMEOUT)? {
            None => bail!("nothing came from A (pid {a}) within {PEER_TIMEOUT:?}"),
            Some(Ready::Pipe) => {
                let mut line = [0u8; 64];
                let n = nix::unistd::read(from_a, &mut line).context("read from the pipe")?;
                if n == 0 {
                    bail!("A (pid {a}) is gone: its end of the pipe closed (POLLHUP)");
                }
                say!(
                    B,
                    "poll: the pipe is readable: read {:?}",
                    String::from_utf8_lossy(&line[..n]).trim_end()
                );
                ready.v()?;
            }
            Some(Ready::Semaphore) => {
                if !work.sem.try_p().context("read from the eventfd")? {
                    continue; // nobody else reads it here, but a P may find 0: poll again
                }
                say!(
                    B,
                    "poll: {} is readable: P took the unit, eventfd-count {}",
                    work.label(),
                    work.count_in(getpid())?
                );
            }
        }
        pending -= 1;
    }
    Ok(())
}

/// Which of act 5's two fds poll found readable.
enum Ready {
    Semaphore,
    Pipe,
}

/// One poll on both (the library's `poll_beside`), for at most `limit`,
/// restarted after a signal that was not Ctrl+C. `None`: the deadline passed.
fn wait_for_either(work: &Eventfd, pipe: &OwnedFd, limit: Duration) -> Result<Option<Ready>> {
    loop {
        signals::check()?;
        match work.sem.poll_beside(pipe.as_fd(), limit) {
            Ok(None) => return Ok(None),
            // The pipe first: its POLLHUP (A gone) must not wait behind the semaphore.
            Ok(Some(ready)) if ready.other => return Ok(Some(Ready::Pipe)),
            Ok(Some(_)) => return Ok(Some(Ready::Semaphore)),
            Err(Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
        }
    }
}

/// `--ping N` in one run, over two eventfds the child inherits.
fn ping_both(count: u64, cpus: Option<(usize, usize)>) -> Result<()> {
    let ping = Eventfd::new("ping", 0)?;
    let pong = Eventfd::new("pong", 0)?;
    let summary = workload::ping_both(&ping, &pong, count, cpus)?;
    drop((ping, pong));
    summary.print();
    Ok(())
}
