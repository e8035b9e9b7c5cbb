//! Measurement machinery, not the lesson: the workloads (DESIGN §3) and the summary
//! line both sides end with (§4), built on the same library calls (`fifo_demo::io`,
//! through `wire.rs`) as the narrated runs.
//!
//! - bulk (`--count N --size S`): N messages of S bytes; the reader checks every byte
//!   and the order. Message k: its first min(8, S) bytes are k (little-endian u64), byte
//!   i ≥ 8 is i % 251, a period that no power-of-two size lines up with.
//! - ping (`--ping N --size S`): the writer sends S bytes through P, the reader sends
//!   them back through `P.reply`, N times. A FIFO carries bytes one way only, so an
//!   answer needs a second one.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::wire::{read_full, wait_readable, write_all};

/// The tally a side prints as its last line.
pub struct Summary {
    pub messages: u64,
    pub bytes: u64,
    started: Instant,
    elapsed: Duration,
    /// Workload figures, each ` key=value`, placed before ` ok`.
    pub extra: String,
}

impl Summary {
    pub fn start() -> Summary {
        Summary {
            messages: 0,
            bytes: 0,
            started: Instant::now(),
            elapsed: Duration::ZERO,
            extra: String::new(),
        }
    }

    pub fn count(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }

    /// Stops the clock: the last message has moved.
    pub fn finish(mut self) -> Summary {
        self.elapsed = self.started.elapsed();
        self
    }

    /// Stops the clock and adds the throughput figure (bulk).
    pub fn with_throughput(self) -> Summary {
        let mut summary = self.finish();
        let secs = summary.elapsed.as_secs_f64().max(1e-9);
        let mib_per_s = summary.bytes as f64 / secs / (1024.0 * 1024.0);
        summary.extra = format!(" mib_per_s={mib_per_s:.1}");
        summary
    }

    /// `[ROLE PID] summary: messages=N bytes=B elapsed_us=T ... ok`
    pub fn print(&self, role: &str) {
        say!(
            role,
            "summary: messages={} bytes={} elapsed_us={}{} ok",
            self.messages,
            self.bytes,
            self.elapsed.as_micros(),
            self.extra
        );
    }
}

/// A buffer holding bulk message 0 of `size` bytes; `stamp` turns it into message k.
fn bulk_buffer(size: usize) -> Vec<u8> {
    let mut buf: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    stamp(&mut buf, 0);
    buf
}

/// Writes message number `k` into the header (the first 8 bytes, fewer if the message
/// is shorter). Only the header changes from one message to the next.
fn stamp(buf: &mut [u8], k: u64) {
    let head = buf.len().min(8);
    buf[..head].copy_from_slice(&k.to_le_bytes()[..head]);
}

/// Writer side of bulk: one buffer, built once, re-stamped per message.
pub fn send_bulk(fifo: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = bulk_buffer(size);
    let mut summary = Summary::start();
    for k in 0..count {
        stamp(&mut message, k);
        write_all(fifo.as_fd(), &message, "reader")
            .with_context(|| format!("send message {k} of {count}"))?;
        summary.count(size);
    }
    Ok(summary.with_throughput())
}

/// Reader side of bulk: reads exactly `size` bytes per message into one buffer and
/// compares it with what message k must be. Then the stream must end.
pub fn check_bulk(fifo: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut got = vec![0; size];
    let mut want = bulk_buffer(size);
    let mut summary = Summary::start();
    for k in 0..count {
        let n = read_full(fifo.as_fd(), &mut got)?;
        if n < size {
            let part = match n {
                0 => String::new(),
                n => format!(" and {n} bytes of the next one"),
            };
            bail!(
                "the writer closed the FIFO after {k} of {count} messages{part} \
                 (it exited or was killed: EOF cannot tell which)"
            );
        }
        stamp(&mut want, k);
        if got != want {
            let at = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(0);
            bail!(
                "message {k} of {count} is wrong at byte {at} (stream offset {}): got {:#04x}, \
                 expected {:#04x}: data lost, repeated, reordered or corrupted",
                k * size as u64 + at as u64,
                got[at],
                want[at]
            );
        }
        summary.count(size);
    }
    let extra = read_full(fifo.as_fd(), &mut got[..1])?;
    if extra > 0 {
        bail!("the writer sent more than {count} messages: extra bytes after the last one");
    }
    Ok(summary.with_throughput())
}

/// Writer side of ping: send, wait for the echo, time it; N times.
pub fn ping(to: impl AsFd, from: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = bulk_buffer(size);
    let mut reply = vec![0; size];
    let mut rtts = Vec::with_capacity(count as usize); // no allocation while timing
    let mut summary = Summary::start();
    for k in 0..count {
        stamp(&mut message, k);
        let sent = Instant::now();
        write_all(to.as_fd(), &message, "reader")
            .with_context(|| format!("send ping {k} of {count}"))?;
        if k == 0 {
            // P.reply was opened without waiting for the reader: until the reader has
            // opened it too, a read would return 0 as at EOF. So the first answer is
            // awaited with poll(2), which also sees the reader die (P's POLLERR). Round
            // trip 0 therefore includes the reader's open of P.reply: one system call, as
            // our writer holds P.reply open before it opens P.
            wait_readable(from.as_fd(), to.as_fd(), "reader")
                .with_context(|| format!("wait for the answer to ping 0 of {count}"))?;
        }
        if read_full(from.as_fd(), &mut reply)? < size {
            bail!(
                "the reader closed the reply FIFO after {k} of {count} round trips \
                 (it exited or was killed: EOF cannot tell which)"
            );
        }
        rtts.push(sent.elapsed());
        if reply != message {
            bail!("round trip {k} of {count}: the answer differs from what was sent");
        }
        summary.count(size);
    }
    let mut summary = summary.finish();
    rtts.sort_unstable();
    summary.extra = format!(
        " rtt_p50_us={:.2} rtt_p99_us={:.2}",
        micros(percentile(&rtts, 0.50)),
        micros(percentile(&rtts, 0.99))
    );
    Ok(summary)
}

/// Reader side of ping: read a message from P, send it back through P.reply.
pub fn echo(from: impl AsFd, to: impl AsFd, count: u64, size: usize) -> Result<Summary> {
    let mut message = vec![0; size];
    let mut summary = Summary::start();
    for k in 0..count {
        if read_full(from.as_fd(), &mut message)? < size {
            bail!(
                "the writer closed the FIFO after {k} of {count} round trips \
                 (it exited or was killed: EOF cannot tell which)"
            );
        }
        write_all(to.as_fd(), &message, "writer")
            .with_context(|| format!("answer ping {k} of {count}"))?;
        summary.count(size);
    }
    if read_full(from.as_fd(), &mut message[..1])? > 0 {
        bail!("the writer sent more than {count} pings");
    }
    Ok(summary.finish())
}

/// The value below which a fraction `q` of the sorted samples lie (nearest rank).
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
