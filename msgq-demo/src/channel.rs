//! What both kinds of queue offer the sides, and the text conversation over them.
//!
//! A `Channel` is one direction of a queue: a POSIX queue, or the messages of one type
//! in a System V queue. Sending puts one whole message in the kernel; receiving takes
//! the next one out, and the kernel deletes it (读取了消息体，内核就会把这个消息体删除).
//!
//! The wire format (DESIGN §3), so a program in another language can be either side:
//! a message is the text's bytes, nothing added (System V: `mtype` 1), and the writer
//! says it is done with one zero-length message, the end marker.
//!
//! Also the narrator (`say!`, the role names) and `stoppable`, which turns the reason a
//! side stops waiting into the library's "stop?" callback.

use std::io::BufRead;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Prints one line of narration, `[ROLE PID] ...`, as DESIGN §4 asks.
///
/// Not `println!`: that panics when stdout is a closed pipe (`msgq-demo | head -1`). A
/// narrator with no audience just goes on.
macro_rules! say {
    ($role:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout().lock(),
            "[{} {}] {}",
            $role,
            std::process::id(),
            format_args!($($arg)*)
        );
    }};
}
pub(crate) use say;

/// The roles as they appear in the narration.
pub const PARENT: &str = "parent";
pub const WRITER: &str = "writer";
pub const READER: &str = "reader";

/// One direction of a queue, as the acts and workloads use it (a demo type: the
/// library's queues have no such trait).
pub trait Channel {
    /// Sends one message, sleeping while the queue is full.
    fn send(&mut self, message: &[u8]) -> Result<()>;
    /// Takes the next message out of the queue into this side's buffer, sleeping while
    /// there is none.
    fn receive(&mut self) -> Result<&[u8]>;
    /// How many messages wait in the queue now, as the kernel counts them.
    fn count(&self) -> Result<u64>;
    /// For a workload's whole loop: whatever bounds this queue's waits, kept ready
    /// until the guard drops (System V: its timer, see signals.rs; POSIX: nothing).
    fn hold_ticker(&self) -> Result<Option<crate::signals::Ticking>> {
        Ok(None)
    }
}

/// The end marker: a message with no bytes at all.
pub const END: &[u8] = b"";

/// The lines of `input` (bytes up to each '\n', which need not be UTF-8), each at
/// most `cap` bytes, the largest message the queue takes. A longer line is an error
/// as soon as it passes the cap, not once its '\n' comes: `split(b'\n')` would first
/// hold the whole line in memory, and `cat /dev/zero` has none.
pub fn capped_lines(input: impl BufRead, cap: usize) -> CappedLines<impl BufRead> {
    CappedLines { input, cap }
}

/// The iterator `capped_lines` returns.
pub struct CappedLines<R> {
    input: R,
    cap: usize,
}

impl<R: BufRead> Iterator for CappedLines<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        loop {
            let available = match self.input.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if available.is_empty() {
                // EOF: the last line may lack its '\n'.
                return (!line.is_empty()).then_some(Ok(line));
            }
            let (take, ends) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..take]);
            self.input.consume(take);
            let text = line.len() - usize::from(ends);
            if text > self.cap {
                return Some(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "a line longer than {} bytes, the most a message of this queue holds: \
                         it cannot be sent as one message, so I stop here rather than hold it",
                        self.cap
                    ),
                )));
            }
            if ends {
                return Some(Ok(line));
            }
        }
    }
}

/// Sends each text as one message, then the end marker, saying how full the queue is
/// after each. Returns (messages, bytes) of text sent.
///
/// A text is bytes, not a `String`: a message is the text's bytes (DESIGN §3), and a
/// line of standard input need not be UTF-8 to be sent.
pub fn send_texts(
    queue: &mut impl Channel,
    role: &str,
    texts: impl Iterator<Item = std::io::Result<impl AsRef<[u8]>>>,
) -> Result<(u64, u64)> {
    let (mut count, mut bytes) = (0, 0);
    for text in texts {
        let text = text.context("reading standard input")?;
        let text = text.as_ref();
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        if text.is_empty() {
            say!(
                role,
                "skipped an empty line: a zero-length message would mean \"the end\""
            );
            continue;
        }
        queue
            .send(text)
            .with_context(|| format!("sending {}", preview(text)))?;
        count += 1;
        bytes += text.len() as u64;
        say!(
            role,
            "sent {} ({} bytes): {} in the queue",
            preview(text),
            text.len(),
            queue.count()?
        );
    }
    queue.send(END).context("sending the end marker")?;
    // From now on a reader at work may take the marker and remove the queue at any
    // moment (a System V queue is gone at once, and counting it fails): the count is
    // narration, not a reason to fail a writer that has sent everything.
    match queue.count() {
        Ok(n) => say!(
            role,
            "sent the end marker (a zero-length message): {n} in the queue"
        ),
        Err(_) => say!(
            role,
            "sent the end marker (a zero-length message): the reader has already taken it \
             and removed the queue"
        ),
    }
    Ok((count, bytes))
}

/// A message as an error quotes it: at most its first 40 characters, so that a long
/// line does not bury the reason the error gives.
fn preview(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Receives and prints messages until the end marker. Returns (messages, bytes).
pub fn receive_texts(queue: &mut impl Channel, role: &str) -> Result<(u64, u64)> {
    let mut lengths = Vec::new();
    loop {
        let message = queue.receive()?;
        if message.is_empty() {
            say!(
                role,
                "received the end marker (0 bytes): the writer is done; {} in the queue",
                queue.count()?
            );
            break;
        }
        // Cut like the writer's echo: a message may be as long as the queue allows.
        let (text, len) = (preview(message), message.len());
        lengths.push(len);
        say!(
            role,
            "received {text} ({len} bytes): the kernel deleted it from the queue, {} left",
            queue.count()?
        );
    }
    if !lengths.is_empty() {
        say!(
            role,
            "{n} sends came out as {n} receives of exactly {lengths:?} bytes: the queue keeps \
             each message whole (through a pipe they could run together)",
            n = lengths.len()
        );
    }
    Ok((lengths.len() as u64, lengths.iter().sum::<usize>() as u64))
}

/// The text writer, start to end: what `writer` does, and the default run's writer.
pub fn writer(
    queue: &mut impl Channel,
    role: &str,
    texts: impl Iterator<Item = std::io::Result<impl AsRef<[u8]>>>,
) -> Result<()> {
    let started = Instant::now();
    let (count, bytes) = match send_texts(queue, role, texts) {
        Ok(sent) => sent,
        Err(e) => {
            // The reader waits for the end marker: without it, a writer that fails half
            // way (unreadable input, a line too long for the queue) would leave it
            // waiting forever. So send it anyway, best effort (the queue itself may be
            // what failed), then report the failure.
            if queue.send(END).is_ok() {
                say!(
                    role,
                    "sent the end marker after all, so that the reader does not wait forever"
                );
            }
            return Err(e);
        }
    };
    say!(
        role,
        "done, without waiting for any reader: what is not read yet waits in the kernel"
    );
    summary(role, count, bytes, started.elapsed(), "");
    Ok(())
}

/// The last line of a side that moved data (DESIGN §4); `extra` carries the
/// workload's own figures.
pub fn summary(role: &str, messages: u64, bytes: u64, elapsed: Duration, extra: &str) {
    say!(
        role,
        "summary: messages={messages} bytes={bytes} elapsed_us={}{extra} ok",
        elapsed.as_micros()
    );
}

/// Runs a wait of the library (`posix::Queue::send`, `sysv::Queue::receive`...) with
/// "stop?" = "has `reason` an error to give?". A wait it stopped (EINTR) becomes that
/// error, which says why (Ctrl+C, the queue removed, the peer dead); any other outcome
/// of the call is returned as it came.
pub fn stoppable<T>(
    reason: impl Fn() -> Result<()>,
    call: impl FnOnce(&dyn Fn() -> bool) -> nix::Result<T>,
) -> Result<nix::Result<T>> {
    let why = std::cell::Cell::new(None);
    let stop = || match reason() {
        Ok(()) => false,
        Err(e) => {
            why.set(Some(e));
            true
        }
    };
    match (call(&stop), why.take()) {
        (Err(nix::errno::Errno::EINTR), Some(reason)) => Err(reason),
        (outcome, _) => Ok(outcome),
    }
}

/// Reads one of the kernel's limits, a number in a file under /proc/sys.
pub fn kernel_limit(path: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path} holds {:?}, not a number", text.trim()))
}
