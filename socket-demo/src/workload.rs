//! The measured workloads' data (DESIGN §3) and the summary line every side ends with (§4).
//!
//! Bulk message k of S bytes: its first min(8, S) bytes are k as a little-endian u64, byte
//! i ≥ 8 is `i % 251`. The sequence number catches a lost, repeated or reordered message,
//! the pattern a changed byte. Each side builds one buffer once and only re-stamps the
//! header: nothing is allocated per message.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::unistd::Pid;

/// Pins this process to one CPU (`sched_setaffinity`), if asked: `--cpus`.
pub fn run_on_cpu(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}

/// A buffer holding bulk message 0 of `size` bytes; `stamp` turns it into message k.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Writes message number `k` into the header (cut to the message's length).
pub fn stamp(message: &mut [u8], k: u64) {
    let head = message.len().min(8);
    message[..head].copy_from_slice(&k.to_le_bytes()[..head]);
}

/// The sequence number in a message's header.
pub fn sequence(message: &[u8]) -> u64 {
    let head = message.len().min(8);
    let mut k = [0u8; 8];
    k[..head].copy_from_slice(&message[..head]);
    u64::from_le_bytes(k)
}

/// Checks the body of message `k` (everything after the header) against the pattern,
/// naming the first differing byte.
pub fn check_body(message: &[u8], expected: &[u8], k: u64) -> Result<()> {
    let head = message.len().min(8);
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

/// Checks message `k` of an ordered stream: the header must be k, the body the pattern.
pub fn check(message: &[u8], expected: &[u8], k: u64) -> Result<()> {
    let got = sequence(message);
    let head = message.len().min(8);
    if message[..head] != k.to_le_bytes()[..head] {
        bail!(
            "message {k} carries sequence number {got}: a message was lost, repeated or reordered"
        );
    }
    check_body(message, expected, k)
}

/// The tally a side prints as its last line.
#[derive(Debug)]
pub struct Summary {
    pub messages: u64,
    pub bytes: u64,
    started: Instant,
    /// The time the data took, fixed by `stop` when it stopped moving: what comes after
    /// (reaping the writer, removing the socket file) does not count.
    stopped: Option<Duration>,
    /// Workload figures, each ` key=value`, placed before ` ok`.
    pub extra: String,
}

/// A side that moved data, then found it incomplete or wrong. Its summary, ending in
/// `failed` instead of `ok`, is still the side's last line: `reader::finish` prints it
/// after saying what it cleaned up. Then the error.
#[derive(Debug)]
pub struct Failed {
    pub summary: Summary,
    why: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for Failed {}

impl Summary {
    pub fn start() -> Summary {
        Summary {
            messages: 0,
            bytes: 0,
            started: Instant::now(),
            stopped: None,
            extra: String::new(),
        }
    }

    /// The data has stopped moving: the clock stops here.
    pub fn stop(&mut self) {
        if self.stopped.is_none() {
            self.stopped = Some(self.started.elapsed());
        }
    }

    fn elapsed(&self) -> Duration {
        self.stopped.unwrap_or_else(|| self.started.elapsed())
    }

    /// The run failed its check (`why`): an error that carries this summary.
    pub fn failed(mut self, why: String) -> anyhow::Error {
        self.stop();
        Failed { summary: self, why }.into()
    }

    pub fn count(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }

    /// Adds the throughput figure (bulk).
    pub fn with_throughput(mut self) -> Summary {
        self.stop();
        let secs = self.elapsed().as_secs_f64().max(1e-9);
        let mib_per_s = self.bytes as f64 / secs / (1024.0 * 1024.0);
        // One decimal, but three below 1 MiB/s: a small run on a busy machine would
        // otherwise print 0.0, as if nothing had moved.
        let decimals = if mib_per_s < 1.0 { 3 } else { 1 };
        self.extra = format!(" mib_per_s={mib_per_s:.decimals$}{}", self.extra);
        self
    }

    /// Adds the round-trip percentiles (ping), from the unsorted times.
    pub fn with_round_trips(mut self, rtts: &mut [Duration]) -> Summary {
        self.stop();
        rtts.sort_unstable();
        self.extra = format!(
            " rtt_p50_us={:.2} rtt_p99_us={:.2}",
            percentile_us(rtts, 50),
            percentile_us(rtts, 99)
        );
        self
    }

    /// `[ROLE PID] summary: messages=N bytes=B elapsed_us=T ... ok`
    pub fn print(&self, role: &str) {
        self.print_ending(role, "ok");
    }

    /// The same line for a run that failed its check: it does not end in `ok`.
    pub fn print_ending(&self, role: &str, verdict: &str) {
        say!(
            role,
            "summary: messages={} bytes={} elapsed_us={}{} {verdict}",
            self.messages,
            self.bytes,
            self.elapsed().as_micros(),
            self.extra
        );
    }
}

/// The nearest-rank percentile of sorted round-trip times, in microseconds.
fn percentile_us(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
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
        assert_eq!(sequence(&message(258, 2)), 258);
    }

    #[test]
    fn a_slow_rate_keeps_three_decimals_instead_of_rounding_to_zero() {
        let mut summary = Summary::start();
        summary.count(6000);
        summary.stopped = Some(Duration::from_millis(200)); // 0.0286 MiB/s
        assert_eq!(summary.with_throughput().extra, " mib_per_s=0.029");
        let mut summary = Summary::start();
        summary.count(3 << 20);
        summary.stopped = Some(Duration::from_secs(2));
        assert_eq!(summary.with_throughput().extra, " mib_per_s=1.5");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let rtts: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&rtts, 50), 50.0);
        assert_eq!(percentile_us(&rtts, 99), 99.0);
        assert_eq!(percentile_us(&rtts[..1], 99), 1.0);
    }
}
