//! Measurement machinery, not the lesson: the bulk data, its check, and the summary line
//! both sides end with (DESIGN §3, §4), around the same library calls as the text run.
//!
//! Bulk message k of S bytes: its first min(8, S) bytes are k as a little-endian u64
//! (cut short if S < 8), byte i ≥ 8 is `i % 251`. A lost, repeated or swapped message
//! breaks the sequence number; a changed byte breaks the pattern. The writer builds one
//! such buffer and only rewrites the sequence number; the reader compares each slot,
//! where it lies in the segment, with one precomputed expected buffer. Nothing is
//! allocated per message.

use anyhow::{Result, bail};
use std::time::Duration;

/// A message of `size` bytes with the bulk pattern (sequence number still 0).
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Writes the sequence number `k` into the head of `message`.
pub fn stamp(message: &mut [u8], k: u64) {
    let head = message.len().min(8);
    message[..head].copy_from_slice(&k.to_le_bytes()[..head]);
}

/// Checks message `k` against the pattern, naming the first difference.
pub fn check(message: &[u8], expected: &[u8], k: u64) -> Result<()> {
    if message.len() != expected.len() {
        bail!(
            "message {k} has {} bytes, expected {}: the data was corrupted",
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

/// ` mib_per_s=X`, for the bulk summary.
pub fn throughput(count: u64, size: usize, elapsed: Duration) -> String {
    let mib = (count as f64 * size as f64) / (1024.0 * 1024.0);
    format!(" mib_per_s={:.1}", mib / elapsed.as_secs_f64().max(1e-9))
}

/// ` rtt_p50_us=X rtt_p99_us=Y` from the round-trip times (sorted here).
pub fn percentiles(rtts: &mut [Duration]) -> String {
    rtts.sort_unstable();
    format!(
        " rtt_p50_us={:.2} rtt_p99_us={:.2}",
        percentile_us(rtts, 50),
        percentile_us(rtts, 99)
    )
}

/// The nearest-rank percentile of sorted round-trip times, in microseconds.
fn percentile_us(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1e6
}

/// What a side moved, printed as its last line once everything else is said (the
/// cleanup narration comes before it).
pub struct Tally {
    pub messages: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The workload's own figures, each ` key=value`, placed before ` ok`.
    pub extra: String,
}

impl Tally {
    /// `[ROLE PID] summary: messages=N bytes=B elapsed_us=T ... ok` (DESIGN §4).
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
        assert!(check(&message(7, 299), &expected, 7).is_err());
    }

    #[test]
    fn short_messages_carry_a_truncated_sequence_number() {
        let expected = pattern(2);
        assert!(check(&message(258, 2), &expected, 258).is_ok());
        assert!(check(&message(259, 2), &expected, 258).is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut rtts: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(percentiles(&mut rtts), " rtt_p50_us=50.00 rtt_p99_us=99.00");
        assert_eq!(percentile_us(&rtts[..1], 99), 1.0);
    }
}
