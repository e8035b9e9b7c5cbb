//! Measurement machinery: the `--ping N` workload and every side's summary line,
//! built on the same library calls as the lesson (through `semaphore::Semaphore`).
//!
//! Ping: the writer does V on `ping` and P on `pong`; the reader P on `ping`, V on
//! `pong`; N times, then one last V on `ping` says "done". Two semaphores, because
//! each says one thing ("your turn"), and no data moves, so this times the bare
//! cost of the hand-off: when the other side is asleep, a wake-up and a sleep
//! through the kernel, up to twice per round trip (System V: every P and V is a
//! system call; POSIX: only a P that finds 0 and a V that finds a sleeper are). The
//! summary says messages=N bytes=0.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::unistd::getpid;

use crate::acts::run_on;
use crate::family::{Side, exit_child, fork};
use crate::roles::{READER, WRITER};
use crate::say;
use crate::semaphore::{PEER_TIMEOUT, Peer, Process, Semaphore, Took, is_alive, p_watching};

/// A side's last line (DESIGN §4), printed once its semaphores are removed.
pub struct Summary {
    pub role: &'static str,
    pub messages: u64,
    pub elapsed: Duration,
    /// The ping side's round-trip times, sorted.
    pub rtts: Option<Vec<Duration>>,
}

impl Summary {
    pub fn print(&self) {
        let extra = match &self.rtts {
            Some(rtts) => format!(
                " rtt_p50_us={:.2} rtt_p99_us={:.2}",
                percentile_us(rtts, 50),
                percentile_us(rtts, 99)
            ),
            None => String::new(),
        };
        say!(
            self.role,
            "summary: messages={} bytes=0 elapsed_us={}{extra} ok",
            self.messages,
            self.elapsed.as_micros()
        );
    }
}

/// `--ping N` in one run: forks the answering reader, pings from the parent, and
/// returns the parent's summary (the child prints its own).
pub fn ping_both(
    ping: &dyn Semaphore,
    pong: &dyn Semaphore,
    count: u64,
    cpus: Option<(usize, usize)>,
) -> Result<Summary> {
    // Taken before fork: the child's getppid() would name whoever adopted it if we
    // were already dead by the time it runs.
    let writer = getpid();
    match fork("reader")? {
        Side::Child => {
            let peer = Process {
                pid: writer,
                who: "the writer",
            };
            let answered = run_on(cpus.map(|(_, r)| r))
                .and_then(|()| answer_pings(ping, pong, count, Some(&peer), Some(PEER_TIMEOUT)));
            if answered.is_err() && !is_alive(writer) {
                remove_for_dead_writer(&[ping, pong]);
            }
            exit_child(answered.map(|s| s.print()))
        }
        Side::Parent(reader) => {
            say!(
                WRITER,
                "{count} round trips of V then P with reader {} over {} and {}",
                reader.pid(),
                ping.label(),
                pong.label()
            );
            let peer = Process {
                pid: reader.pid(),
                who: "the reader",
            };
            let timed = run_on(cpus.map(|(w, _)| w))
                .and_then(|()| time_round_trips(ping, pong, count, Some(&peer)));
            let reaped = reader.reap_ok(WRITER);
            let summary = timed?;
            reaped?;
            Ok(summary)
        }
    }
}

/// The writer that created the semaphores was killed (SIGKILL leaves a process no
/// chance to clean up): the survivor removes them, so the run leaves nothing.
fn remove_for_dead_writer(sems: &[&dyn Semaphore]) {
    for sem in sems.iter().filter(|sem| sem.outlives_its_processes()) {
        match sem.remove_for_dead_creator() {
            Ok(()) => say!(
                READER,
                "the writer died without cleaning up: removed {}",
                sem.label()
            ),
            Err(e) => say!(READER, "could not remove {}: {e:#}", sem.label()),
        }
    }
}

/// The ping side: V on `ping`, then P on `pong`, timed, `count` times. `peer`: the
/// answering process, watched so that its death ends the wait at once.
pub fn time_round_trips(
    ping: &dyn Semaphore,
    pong: &dyn Semaphore,
    count: u64,
    peer: Option<&dyn Peer>,
) -> Result<Summary> {
    let mut rtts = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for k in 0..count {
        let sent_at = Instant::now();
        ping.v()?;
        if p_watching(pong, Some(PEER_TIMEOUT), peer)? == Took::TimedOut {
            bail!(
                "round trip {k} of {count}: no V on {} within {PEER_TIMEOUT:?}: is the reader \
                 gone, or waiting for fewer pings?",
                pong.label()
            );
        }
        rtts.push(sent_at.elapsed());
    }
    let elapsed = started.elapsed();
    // One more V says "done": the reader removes the semaphores only after it,
    // when we no longer use them (a System V set vanishes even under a user).
    ping.v()?;
    rtts.sort_unstable();
    Ok(Summary {
        role: WRITER,
        messages: count,
        elapsed,
        rtts: Some(rtts),
    })
}

/// The answering side: P on `ping`, then V on `pong`, `count` times. `peer`: the
/// pinging process, watched by every wait. `first_limit`: how long the first P
/// may wait (`None` for a writer started by hand, maybe in an hour); the later
/// ones wait at most PEER_TIMEOUT, the last resort for a peer never seen.
pub fn answer_pings(
    ping: &dyn Semaphore,
    pong: &dyn Semaphore,
    count: u64,
    peer: Option<&dyn Peer>,
    first_limit: Option<Duration>,
) -> Result<Summary> {
    if p_watching(ping, first_limit, peer)? == Took::TimedOut {
        bail!(
            "no ping came on {} within {PEER_TIMEOUT:?}: is the writer gone?",
            ping.label()
        );
    }
    let started = Instant::now();
    pong.v()?;
    for k in 1..count {
        if p_watching(ping, Some(PEER_TIMEOUT), peer)? == Took::TimedOut {
            bail!(
                "ping {k} of {count}: no V on {} within {PEER_TIMEOUT:?}: is the writer gone?",
                ping.label()
            );
        }
        pong.v()?;
    }
    let elapsed = started.elapsed();
    if p_watching(ping, Some(PEER_TIMEOUT), peer)? == Took::TimedOut {
        bail!(
            "the writer did not say it was done within {PEER_TIMEOUT:?}: did it send more \
             pings than the {count} expected, or is it gone?"
        );
    }
    Ok(Summary {
        role: READER,
        messages: count,
        elapsed,
        rtts: None,
    })
}

/// The nearest-rank percentile of sorted durations, in microseconds.
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
