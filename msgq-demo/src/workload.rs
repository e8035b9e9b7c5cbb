//! The measured workloads (DESIGN §3), the same over both kinds of queue.
//!
//! Bulk: the writer sends `count` messages of `size` bytes, then the end marker; the
//! reader checks every byte and the order. Message k starts with k as a little-endian
//! u64 (cut to `size` bytes if shorter), then byte i is `i % 251`: a lost, repeated or
//! reordered message breaks the sequence number, a changed byte breaks the pattern. A
//! queue keeps boundaries, so a message of the wrong length is an error too.
//!
//! Ping: the writer sends `size` bytes, the reader sends them back, `count` times; the
//! writer times each round trip. Each way is its own channel, since one queue carries
//! messages to whoever receives first: two POSIX queues, or two message types in one
//! System V queue. Every message is copied into the kernel by the send and out again by
//! the receive (用户态与内核态之间的数据拷贝开销): the figures include those copies.
//!
//! Both paths reuse one buffer per side: nothing is allocated per message.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::channel::{Channel, END, summary};

/// What a side did, for its summary line, printed once the side has cleaned up.
pub struct Done {
    pub messages: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub extra: String,
}

impl Done {
    pub fn print(&self, role: &str) {
        summary(role, self.messages, self.bytes, self.elapsed, &self.extra);
    }
}

/// The bulk writer: `count` messages from one buffer, only the head rewritten each time.
pub fn send_bulk(queue: &mut impl Channel, count: u64, size: usize) -> Result<Done> {
    let _ticking = queue.hold_ticker()?; // disarmed on every way out
    let mut message = pattern(size);
    let started = Instant::now();
    for k in 0..count {
        stamp(&mut message, k);
        queue
            .send(&message)
            .with_context(|| format!("sending message {k} of {count}"))?;
    }
    queue.send(END).context("sending the end marker")?;
    let elapsed = started.elapsed();
    Ok(done(count, size, elapsed, throughput(count, size, elapsed)))
}

/// The bulk reader: checks every message, then that the end marker comes next.
pub fn receive_bulk(queue: &mut impl Channel, count: u64, size: usize) -> Result<Done> {
    let _ticking = queue.hold_ticker()?; // disarmed on every way out
    let expected = pattern(size);
    let started = Instant::now();
    for k in 0..count {
        let message = queue
            .receive()
            .with_context(|| format!("receiving message {k} of {count}"))?;
        if message.is_empty() {
            bail!("the end marker came after {k} of {count} messages: messages are missing");
        }
        check(message, &expected, k)?;
    }
    let extra = queue.receive().context("receiving the end marker")?.len();
    if extra != 0 {
        bail!("a message of {extra} bytes came after the {count} expected, not the end marker");
    }
    let elapsed = started.elapsed();
    Ok(done(count, size, elapsed, throughput(count, size, elapsed)))
}

/// The timing side of ping: `down` carries the pings, `up` the replies.
pub fn time_round_trips(
    down: &mut impl Channel,
    up: &mut impl Channel,
    count: u64,
    size: usize,
) -> Result<Done> {
    let _ticking = down.hold_ticker()?; // disarmed on every way out
    let mut message = pattern(size);
    let mut rtts = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for k in 0..count {
        stamp(&mut message, k);
        let sent_at = Instant::now();
        down.send(&message)
            .with_context(|| format!("sending ping {k}"))?;
        let reply = up
            .receive()
            .with_context(|| format!("receiving reply {k}"))?;
        rtts.push(sent_at.elapsed());
        if reply != message {
            bail!(
                "reply {k} differs from what was sent ({} bytes back for {size})",
                reply.len()
            );
        }
    }
    let elapsed = started.elapsed();
    down.send(END).context("sending the end marker")?;
    rtts.sort_unstable();
    let extra = format!(
        " rtt_p50_us={:.2} rtt_p99_us={:.2}",
        percentile_us(&rtts, 50),
        percentile_us(&rtts, 99)
    );
    Ok(done(count, size, elapsed, extra))
}

/// The echo side of ping: sends back each message until the end marker.
pub fn echo(
    down: &mut impl Channel,
    up: &mut impl Channel,
    count: u64,
    size: usize,
) -> Result<Done> {
    let _ticking = down.hold_ticker()?; // disarmed on every way out
    let mut echoed = 0;
    let mut started = None;
    loop {
        let message = down.receive().context("receiving a ping")?;
        if message.is_empty() {
            break;
        }
        started.get_or_insert_with(Instant::now); // time from the first ping, not from our start
        up.send(message).context("sending a reply")?;
        echoed += 1;
    }
    if echoed != count {
        bail!("the writer said it was done after {echoed} of {count} round trips");
    }
    let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    Ok(done(count, size, elapsed, String::new()))
}

fn done(messages: u64, size: usize, elapsed: Duration, extra: String) -> Done {
    Done {
        messages,
        bytes: messages * size as u64,
        elapsed,
        extra,
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
    if message.len() != expected.len() {
        bail!(
            "message {k} is {} bytes, expected {}: not what this reader was told to expect",
            message.len(),
            expected.len()
        );
    }
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

fn throughput(count: u64, size: usize, elapsed: Duration) -> String {
    let mib = (count as f64 * size as f64) / (1024.0 * 1024.0);
    format!(" mib_per_s={:.1}", mib / elapsed.as_secs_f64().max(1e-9))
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
        let expected = pattern(8192);
        assert!(check(&message(7, 8192), &expected, 7).is_ok());
        let skipped = check(&message(8, 8192), &expected, 7)
            .unwrap_err()
            .to_string();
        assert!(skipped.contains("sequence number 8"), "{skipped}");
        let mut corrupted = message(7, 8192);
        corrupted[5000] ^= 1;
        let corrupted = check(&corrupted, &expected, 7).unwrap_err().to_string();
        assert!(corrupted.contains("byte 5000"), "{corrupted}");
        let short = check(&message(7, 100), &expected, 7)
            .unwrap_err()
            .to_string();
        assert!(short.contains("is 100 bytes, expected 8192"), "{short}");
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
