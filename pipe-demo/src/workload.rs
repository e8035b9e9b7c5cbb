//! The measured workloads (DESIGN §3): bulk over one pipe, ping over two.
//!
//! Bulk: the parent sends `count` messages of `size` bytes; the child checks every
//! byte and the order. Message k starts with k as a little-endian u64 (cut to
//! `size` bytes if shorter), then byte i is `i % 251`: a lost, repeated or swapped
//! message breaks the sequence number, a changed byte breaks the pattern.
//!
//! Ping: the parent sends `size` bytes down one pipe, the child sends them back up
//! the other, `count` times; the parent times each round trip. Two pipes because a
//! pipe is one-way. Each exchange costs two system calls a side and two wake-ups.
//! The notes call pipes unfit for frequent exchange (不适合进程间频繁地交换数据),
//! but message queues and sockets pay the same, and measure about the same (see
//! the README's benchmark); only shared memory with a spin handshake avoids it.
//!
//! Both paths reuse one buffer per side: nothing is allocated per message.
//!
//! Bulk's fast paths (`pipe_demo::fast`): `--pipe-size` sizes the pipe first;
//! `--vmsplice` has the writer vmsplice from a ring of buffers instead of writing.
//! The reader is the same in every case: it reads and checks every byte.
//!
//! Measurement machinery, not the lesson: it is built on the same library calls
//! (`pipe_demo::pipe`, `pipe_demo::fork`) as the narrated flavours.

use anyhow::{Context, Result, anyhow, bail};
use nix::unistd::Pid;
use pipe_demo::fast::{self, SpliceRing};
use pipe_demo::fork::{self, Forked, TwoWay};
use pipe_demo::pipe::{self, read_exact, write_all};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::args::{Cpus, FastPath, PipeSize};
use crate::family::{exit_child, reap};
use crate::say;
use crate::summary::Summary;

const WRITER: &str = "writer";
const READER: &str = "reader";

pub fn bulk(count: u64, size: usize, cpus: Option<Cpus>, fast: FastPath) -> Result<()> {
    let one_way = pipe::create().context("pipe2")?;
    // Sized before fork: the buffer is the pipe's, whichever end asks.
    let capacity = size_the_pipe(&one_way.1, size, fast.pipe_size)?;
    // The child closes its write end (or EOF would never come), the parent its read end.
    // SAFETY: this program is single-threaded.
    match unsafe { fork::fork_parent_writes([one_way]) }.context("fork")? {
        Forked::Child {
            parent,
            ends: [read_end],
        } => {
            let writer = parent;
            let checked = run_on_cpu(cpus.map(|c| c.reader))
                .and_then(|()| receive_and_check(read_end, count, size, writer));
            exit_child(checked.map(|summary| summary.print()))
        }
        Forked::Parent {
            child,
            ends: [write_end],
        } => {
            say!(
                WRITER,
                "sending {count} messages of {size} bytes to reader {child}"
            );
            // The ring, if any, lives until the reader is reaped: the pipe may still
            // refer to its pages until the reader has read them.
            let mut ring = fast.vmsplice.then(|| ring_for(size, capacity));
            let sent = run_on_cpu(cpus.map(|c| c.writer))
                .and_then(|()| send_bulk(write_end, count, size, ring.as_mut()));
            // Reap on every path (the write end is closed by now, so the child ends).
            let reaped = reap(WRITER, child, "reader");
            drop(ring);
            let summary = sent?;
            reaped?;
            summary.print();
            Ok(())
        }
    }
}

/// `--pipe-size`: F_SETPIPE_SZ as asked, narrated. Returns the pipe's capacity.
fn size_the_pipe(end: &OwnedFd, size: usize, asked: Option<PipeSize>) -> Result<usize> {
    let before = pipe::capacity(end).context("fcntl F_GETPIPE_SZ")?;
    let capacity = match asked {
        None => return Ok(before),
        Some(PipeSize::Auto) => fast::size_for_messages(end, size),
        Some(PipeSize::Bytes(bytes)) => pipe::set_capacity(end, bytes),
    }
    .context("fcntl F_SETPIPE_SZ (limits: /proc/sys/fs/pipe-max-size, pipe-user-pages-soft)")?;
    let depth = capacity as f64 / size.max(1) as f64;
    let so = if depth >= 2.0 {
        "I can write the next while the reader reads this one"
    } else {
        "each message fills it, so I sleep until the reader has emptied it"
    };
    let how = if matches!(asked, Some(PipeSize::Auto)) && capacity == before {
        "no F_SETPIPE_SZ: the pipe is deep enough already (auto only grows a pipe)"
    } else {
        "F_SETPIPE_SZ"
    };
    say!(
        WRITER,
        "{how}: the pipe holds {capacity} bytes, {depth:.1} messages: {so}"
    );
    Ok(capacity)
}

/// `--vmsplice`: a ring deep enough for this pipe, every buffer holding the pattern.
fn ring_for(size: usize, capacity: usize) -> SpliceRing {
    let ring = SpliceRing::new(&pattern(size), capacity);
    say!(
        WRITER,
        "vmsplice: {} page-aligned buffers in turn; the pipe refers to their pages (no copy), \
         so each is written again only once the reader has read it",
        ring.buffers()
    );
    ring
}

fn send_bulk(
    write_end: OwnedFd,
    count: u64,
    size: usize,
    mut ring: Option<&mut SpliceRing>,
) -> Result<Summary> {
    let mut message = pattern(size);
    let started = Instant::now();
    for k in 0..count {
        let sent = match ring.as_deref_mut() {
            // The pattern is already there: only the sequence number changes.
            Some(ring) => ring.send(&write_end, |buf| stamp(buf, k)),
            None => {
                stamp(&mut message, k);
                write_all(&write_end, &message)
            }
        };
        sent.with_context(|| format!("sending message {k} of {count}"))?;
    }
    drop(write_end); // the reader's EOF: nothing more is coming
    Ok(summary(WRITER, count, size, started.elapsed()).with_throughput())
}

fn receive_and_check(read_end: OwnedFd, count: u64, size: usize, writer: Pid) -> Result<Summary> {
    let expected = pattern(size);
    let mut message = vec![0u8; size];
    let started = Instant::now();
    for k in 0..count {
        let read =
            read_exact(&read_end, &mut message).with_context(|| format!("reading message {k}"));
        if !read.map_err(|e| anyhow!("{e:#}{}", why_it_ended(writer)))? {
            bail!(
                "the writer closed the pipe after {k} of {count} messages{}",
                why_it_ended(writer)
            );
        }
        check(&message, &expected, k)?;
    }
    let elapsed = started.elapsed();
    if read_exact(&read_end, &mut message[..1]).context("reading past the end")? {
        bail!("more data came after the {count} messages expected");
    }
    Ok(summary(READER, count, size, elapsed).with_throughput())
}

pub fn ping(count: u64, size: usize, cpus: Option<Cpus>) -> Result<()> {
    let down = pipe::create().context("pipe2 (down)")?;
    let up = pipe::create().context("pipe2 (up)")?;
    // SAFETY: this program is single-threaded.
    match unsafe { fork::fork_both_ways(down, up) }.context("fork")? {
        Forked::Child {
            parent,
            ends: TwoWay { to_peer, from_peer },
        } => {
            let writer = parent;
            let echoed = run_on_cpu(cpus.map(|c| c.reader))
                .and_then(|()| echo(from_peer, to_peer, count, size, writer));
            exit_child(echoed.map(|summary| summary.print()))
        }
        Forked::Parent {
            child,
            ends: TwoWay { to_peer, from_peer },
        } => {
            say!(
                WRITER,
                "{count} round trips of {size} bytes with reader {child}, over two pipes"
            );
            let timed = run_on_cpu(cpus.map(|c| c.writer))
                .and_then(|()| time_round_trips(to_peer, from_peer, count, size));
            let reaped = reap(WRITER, child, "reader");
            let summary = timed?;
            reaped?;
            summary.print();
            Ok(())
        }
    }
}

fn time_round_trips(down: OwnedFd, up: OwnedFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = pattern(size);
    let mut reply = vec![0u8; size];
    let mut rtts = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for k in 0..count {
        stamp(&mut message, k);
        let sent_at = Instant::now();
        write_all(&down, &message).with_context(|| format!("sending ping {k}"))?;
        if !read_exact(&up, &mut reply).with_context(|| format!("reading reply {k}"))? {
            bail!("the reader closed its pipe after {k} of {count} round trips");
        }
        rtts.push(sent_at.elapsed());
        if reply != message {
            bail!("reply {k} differs from what was sent");
        }
    }
    let elapsed = started.elapsed();
    drop(down); // the echo side's EOF
    rtts.sort_unstable();
    let mut summary = summary(WRITER, count, size, elapsed);
    summary.extra = format!(
        " rtt_p50_us={:.2} rtt_p99_us={:.2}",
        percentile_us(&rtts, 50),
        percentile_us(&rtts, 99)
    );
    Ok(summary)
}

/// The echo side of ping: send back each message until EOF.
fn echo(down: OwnedFd, up: OwnedFd, count: u64, size: usize, writer: Pid) -> Result<Summary> {
    let mut message = vec![0u8; size];
    let started = Instant::now();
    let mut echoed = 0;
    let ping = |message: &mut [u8]| {
        read_exact(&down, message)
            .context("reading a ping")
            .map_err(|e| anyhow!("{e:#}{}", why_it_ended(writer)))
    };
    while ping(&mut message)? {
        write_all(&up, &message).map_err(|e| {
            anyhow!(
                "sending a reply: the writer has closed its read end ({e:#}){}",
                why_it_ended(writer)
            )
        })?;
        echoed += 1;
    }
    if echoed != count {
        bail!(
            "the writer closed the pipe after {echoed} of {count} round trips{}",
            why_it_ended(writer)
        );
    }
    Ok(summary(READER, count, size, started.elapsed()))
}

/// Why the writer's stream ended early, as far as the kernel can tell us.
fn why_it_ended(writer: Pid) -> String {
    if fork::parent_died(writer, "do_wait", Duration::from_secs(2)) {
        format!(": it died (pid {writer} is no longer my parent)")
    } else {
        format!(": the writer, pid {writer}, is alive but closed it")
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

fn summary(role: &'static str, count: u64, size: usize, elapsed: Duration) -> Summary {
    Summary {
        role,
        messages: count,
        bytes: count.saturating_mul(size as u64),
        elapsed,
        extra: String::new(),
    }
}

/// A message of `size` bytes with the bulk pattern (sequence number still 0).
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Writes the sequence number `k` into the head of `message`.
fn stamp(message: &mut [u8], k: u64) {
    let head = message.len().min(8);
    message[..head].copy_from_slice(&k.to_le_bytes()[..head]);
}

/// Checks message `k` against the pattern, naming the first difference.
fn check(message: &[u8], expected: &[u8], k: u64) -> Result<()> {
    let head = message.len().min(8);
    if message[..head] != k.to_le_bytes()[..head] {
        let mut got = [0u8; 8];
        got[..head].copy_from_slice(&message[..head]);
        bail!(
            "message {k} carries sequence number {}: a message was lost, repeated or reordered",
            u64::from_le_bytes(got)
        );
    }
    if message[head..] != expected[head..] {
        // Slices compare with memcmp; only on a mismatch do we look for where.
        let i = (head..message.len())
            .find(|&i| message[i] != expected[i])
            .unwrap_or(head);
        bail!(
            "message {k}, byte {i}: expected {:#04x}, got {:#04x}: the data was corrupted",
            expected[i],
            message[i]
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

    fn message(k: u64, size: usize) -> Vec<u8> {
        let mut m = pattern(size);
        stamp(&mut m, k);
        m
    }

    #[test]
    fn check_accepts_the_right_message_and_names_each_kind_of_damage() {
        let expected = pattern(300);
        assert!(check(&message(7, 300), &expected, 7).is_ok());
        let skipped = check(&message(8, 300), &expected, 7)
            .unwrap_err()
            .to_string();
        assert!(skipped.contains("sequence number 8"), "{skipped}");
        let mut corrupted = message(7, 300);
        corrupted[123] ^= 1;
        let corrupted = check(&corrupted, &expected, 7).unwrap_err().to_string();
        assert!(corrupted.contains("byte 123"), "{corrupted}");
    }

    #[test]
    fn short_messages_carry_a_truncated_sequence_number() {
        let expected = pattern(2);
        assert!(check(&message(258, 2), &expected, 258).is_ok());
        assert!(check(&message(259, 2), &expected, 258).is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let rtts: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&rtts, 50), 50.0);
        assert_eq!(percentile_us(&rtts, 99), 99.0);
        assert_eq!(percentile_us(&rtts[..1], 99), 1.0);
    }
}
