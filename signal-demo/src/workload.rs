//! The --ping workload: how long a signal takes to go there and back. Measurement
//! machinery, not the lesson: built on the same library calls (`send::sigqueue`,
//! `pending::take_once`), so the benchmark measures the code people copy.
//!
//! The writer sends SIGUSR1 with sigqueue(3), carrying the round's number k; the
//! reader answers with SIGUSR1 carrying k back. Neither runs a handler: both keep
//! SIGUSR1 blocked and take it with sigtimedwait(2), reading the signal like a
//! message from a queue of one. Blocked before anything is sent, so an answer that
//! comes before its receiver waits stays pending instead of being lost. Every wait has
//! a timeout, so a peer that died is noticed; the number carried back shows that no
//! round was lost or repeated. SIGINT, SIGTERM and SIGHUP are taken the same way, so Ctrl+C
//! ends a wait cleanly: the writer of the default run then reaps its reader first.
//!
//! A round trip is two sends and two wake-ups, as every blocking mechanism needs
//! (compare pipe-demo's ping; shm-demo --spin needs none, and glibc's sigqueue(3) is
//! itself three system calls: getpid, getuid, rt_sigqueueinfo). The summary says bytes=0: a signal carries no data
//! (`--size`, which every demo's ping takes, is accepted and changes nothing).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{Pid, getpid, getppid};
use signal_demo::pending::{self, Waited};
use signal_demo::{Caught, send};

use crate::args::Ping;
use crate::family::{Kid, Side, describe, exit_child, fork};
use crate::say;
use crate::stop::{self, Origin};

const WRITER: &str = "writer";
const READER: &str = "reader";
/// How long a side waits for the other's next signal before it gives up on it.
const PATIENCE: Duration = Duration::from_secs(10);
/// How often a waiting side checks that its peer still exists.
const SLICE: Duration = Duration::from_millis(200);

/// The other side, and how to tell that it is gone.
enum Peer<'a> {
    /// Our parent: gone once we are re-parented.
    Parent(Pid),
    /// Our child: gone once waitpid says it ended.
    Child(&'a mut Kid),
    /// An unrelated process: gone once kill(pid, 0) says ESRCH.
    Other(Pid),
}

impl Peer<'_> {
    fn pid(&self) -> Pid {
        match self {
            Peer::Parent(pid) | Peer::Other(pid) => *pid,
            Peer::Child(kid) => kid.pid(),
        }
    }

    /// Why the peer is gone, or None while it is there.
    fn gone(&mut self) -> Result<Option<String>> {
        Ok(match self {
            Peer::Parent(pid) => (getppid() != *pid).then(|| "is gone: I was re-parented".into()),
            Peer::Child(kid) => kid
                .has_ended()?
                .map(|status| format!("ended: {}", describe(status))),
            // A zombie still takes kill(pid, 0): it is dead, only not yet reaped by
            // its parent (a shell reaps at once; another program may not).
            Peer::Other(pid) if !send::exists(*pid) => Some("is gone (kill(2) says ESRCH)".into()),
            Peer::Other(pid) if state_of(*pid) == Some('Z') => Some("died: it is a zombie".into()),
            Peer::Other(_) => None,
        })
    }
}

/// What both sides take with sigtimedwait, and so keep blocked: the pings, and
/// "stop" (SIGINT, SIGTERM, SIGHUP).
fn waited_for() -> SigSet {
    stop::stop_signals() | Signal::SIGUSR1
}

/// The default run's ping: the parent times, the child it forks answers. Both stay
/// in one process group: Ctrl+C reaches both, Ctrl+Z stops both and `fg` resumes
/// both, however long they were stopped (`next_from` counts silence only while both
/// run).
pub fn both(ping: &Ping) -> Result<()> {
    let count = ping.count;
    // Before fork, so the child starts with them blocked too: a ping sent before it
    // waits stays pending.
    pending::block(&waited_for()).context("sigprocmask")?;
    let writer_pid = getpid();
    match fork()? {
        Side::Child => {
            let pinned = run_on_cpu(ping.cpus.map(|c| c.reader));
            exit_child(pinned.and_then(|()| echo(&mut Peer::Parent(writer_pid), None, count)))
        }
        Side::Parent(mut kid) => {
            if let Err(e) = run_on_cpu(ping.cpus.map(|c| c.writer)) {
                kid.end_and_reap(WRITER, &e, PATIENCE);
                return Err(e);
            }
            say!(
                WRITER,
                "{count} round trips of SIGUSR1 with reader {}, blocked both ways and taken \
                 with sigtimedwait(2)",
                kid.pid()
            );
            match time_round_trips(&mut Peer::Child(&mut kid), ping) {
                Ok(timed) => {
                    kid.reap(WRITER, PATIENCE)?;
                    timed.summary(); // our last line (DESIGN §4)
                    Ok(())
                }
                Err(e) => {
                    kid.end_and_reap(WRITER, &e, PATIENCE);
                    Err(e)
                }
            }
        }
    }
}

/// `signal-demo reader --ping N`: answers the first process that pings it, N times.
pub fn reader(ping: &Ping) -> Result<()> {
    let count = ping.count;
    let set = waited_for();
    pending::block(&set).context("sigprocmask")?;
    let me = getpid();
    say!(
        READER,
        "pid {me}: waiting for {count} pings: signal-demo writer --pid {me} --ping {count}"
    );
    // Like a server, wait as long as it takes for the first one: it names the writer.
    let first = loop {
        if let Some(c) = pending::take(&set, SLICE).context("sigtimedwait")? {
            break c;
        }
    };
    stop::stop_if_asked(READER, &first)?;
    say!(READER, "first ping {}: answering each one", first.origin());
    echo(
        &mut Peer::Other(Pid::from_raw(first.pid)),
        Some(first),
        count,
    )
}

/// `signal-demo writer --pid PID --ping N`.
pub fn writer(pid: Pid, ping: &Ping) -> Result<()> {
    pending::block(&waited_for()).context("sigprocmask")?;
    say!(
        WRITER,
        "{} round trips of SIGUSR1 with pid {pid}, blocked both ways and taken with \
         sigtimedwait(2)",
        ping.count
    );
    time_round_trips(&mut Peer::Other(pid), ping)?.summary();
    Ok(())
}

/// The timing side's result: how long it all took, and each round trip.
struct Timed {
    elapsed: Duration,
    /// Sorted, shortest first.
    rtts: Vec<Duration>,
}

impl Timed {
    fn summary(&self) {
        say!(
            WRITER,
            "summary: messages={} bytes=0 elapsed_us={} rtt_p50_us={:.2} rtt_p99_us={:.2} ok",
            self.rtts.len(),
            self.elapsed.as_micros(),
            percentile_us(&self.rtts, 50),
            percentile_us(&self.rtts, 99)
        );
    }
}

/// The timing side: send k, wait for k back, `count` times.
fn time_round_trips(peer: &mut Peer, ping: &Ping) -> Result<Timed> {
    let count = ping.count;
    if let Some(size) = ping.size {
        say!(
            WRITER,
            "--size {size}: ignored, a signal carries no bytes (only its number, and the \
             one int sigqueue adds): bytes=0"
        );
    }
    let set = waited_for();
    let mut rtts = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for k in 0..count {
        let sent_at = Instant::now();
        send(peer, k)?;
        let reply = next_from(&set, peer)?;
        rtts.push(sent_at.elapsed());
        stop::stop_if_asked(WRITER, &reply)?;
        check(&reply, k, peer)?;
    }
    let elapsed = started.elapsed();
    rtts.sort_unstable();
    Ok(Timed { elapsed, rtts })
}

/// The answering side: wait for k, send k back, `count` times. `first` is a ping
/// already taken.
fn echo(peer: &mut Peer, mut first: Option<Caught>, count: u64) -> Result<()> {
    let set = waited_for();
    let mut started = None;
    for k in 0..count {
        let ping = match first.take() {
            Some(ping) => ping,
            None => next_from(&set, peer)?,
        };
        stop::stop_if_asked(READER, &ping)?;
        let started = *started.get_or_insert_with(Instant::now);
        check(&ping, k, peer)?;
        send(peer, k)?;
        if k + 1 == count {
            say!(
                READER,
                "summary: messages={count} bytes=0 elapsed_us={} ok",
                started.elapsed().as_micros()
            );
        }
    }
    Ok(())
}

/// Sends round k's SIGUSR1. ESRCH on the very first one means the pid was wrong;
/// later, that the peer died.
fn send(peer: &Peer, k: u64) -> Result<()> {
    let pid = peer.pid();
    match send::sigqueue(pid, libc::SIGUSR1, k as i32) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) if k == 0 && matches!(peer, Peer::Other(_)) => bail!(
            "no process {pid}: sigqueue(3) failed with ESRCH (no such process): start \
             `signal-demo reader --ping N` and pass the pid it prints"
        ),
        Err(Errno::ESRCH) => {
            bail!("the other side (pid {pid}) is gone: sigqueue(3) failed with ESRCH, round {k}")
        }
        Err(e) => bail!("sigqueue SIGUSR1 to {pid}: {e}"),
    }
}

/// Takes the next signal of `set`, checking every SLICE that the peer is still
/// there, and giving up after PATIENCE of silence.
///
/// Silence is counted in slices that ran out while both sides were running, not
/// with a clock: CLOCK_MONOTONIC keeps counting while a process is stopped, so a
/// Ctrl+Z longer than PATIENCE, then `fg`, would look like a dead peer. A slice cut
/// short (sigtimedwait's EINTR once SIGCONT resumes us) does not count, and neither
/// does one that ran out while the peer itself was stopped (state T in /proc).
fn next_from(set: &SigSet, peer: &mut Peer) -> Result<Caught> {
    let mut silent = Duration::ZERO;
    loop {
        let ran_out = match pending::take_once(set, SLICE).context("sigtimedwait")? {
            Waited::Got(c) => return Ok(c),
            Waited::RanOut => true,
            Waited::Interrupted => false, // stopped meanwhile, for who knows how long
        };
        if let Some(why) = peer.gone()? {
            // It may have sent its last signal and ended between the end of our slice
            // and this look: that signal is pending. Take it (a zero timeout) before
            // calling the peer gone, or a run that went well is reported as failed.
            if let Some(c) = pending::take(set, Duration::ZERO).context("sigtimedwait")? {
                return Ok(c);
            }
            bail!("the other side (pid {}) {why}", peer.pid());
        }
        if ran_out && !is_stopped(peer.pid()) {
            silent += SLICE;
        }
        if silent > PATIENCE {
            bail!(
                "no SIGUSR1 from pid {} for {PATIENCE:?} while both of us were running: is it \
                 a `signal-demo reader --ping N` (or writer) with the same N?",
                peer.pid()
            );
        }
    }
}

/// Pins this process to one CPU (`sched_setaffinity`), if asked: `--cpus`.
fn run_on_cpu(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}

/// Whether `pid` is stopped (state T, or t under a tracer).
fn is_stopped(pid: Pid) -> bool {
    matches!(state_of(pid), Some('T' | 't'))
}

/// The state letter of `pid` from /proc/PID/stat (S, R, T, Z...), None if gone.
fn state_of(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may hold
    // spaces or ')' itself: look after the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Round k must bring SIGUSR1 from the peer, sent with sigqueue, carrying k.
fn check(got: &Caught, k: u64, peer: &Peer) -> Result<()> {
    let from_peer = got.pid == peer.pid().as_raw() && got.code == libc::SI_QUEUE;
    if !got.is(Signal::SIGUSR1) || !from_peer || got.value != k as i32 {
        bail!(
            "round {k}: got {} {}, expected SIGUSR1 from pid {} with value {k}: a round was \
             lost or repeated, or another process joined in",
            got.name(),
            got.origin(),
            peer.pid()
        );
    }
    Ok(())
}

/// The nearest-rank percentile of sorted round-trip times, in microseconds.
fn percentile_us(sorted: &[Duration], p: usize) -> f64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let rtts: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&rtts, 50), 50.0);
        assert_eq!(percentile_us(&rtts, 99), 99.0);
        assert_eq!(percentile_us(&rtts[..1], 99), 1.0);
    }
}
