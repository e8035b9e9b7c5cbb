//! The acts of the narrated run that are the same for both kinds of queue.
//!
//! The parent has created the queue before any of this: it owns it, and each act forks
//! the writer and the reader it needs, reaps them, and moves on. That lets act 1 show
//! the point of a queue: the writer exits before the reader even exists.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::args::Cpus;
use crate::channel::{self, Channel};
use crate::family::{reap, reap_both, spawn, wait_until_asleep};
use crate::workload;
use crate::{PARENT, READER, WRITER, say};

/// What the writer of act 1 sends when the command line gives no messages: three
/// lengths, to show that each comes out as it went in.
const DEFAULT_MESSAGES: [&str; 3] = ["hello", "each send is one message, kept whole", "bye!"];

/// How long a side looks for the other one asleep in the kernel before going on anyway.
pub const ASLEEP_DEADLINE: Duration = Duration::from_secs(10);

/// Act 1: the writer sends and exits; only then is the reader forked, and it finds
/// every message waiting in the kernel, whole, one receive per send.
pub fn writer_returns_at_once(queue: &mut impl Channel, messages: &[String]) -> Result<()> {
    say!(
        PARENT,
        "act 1: the writer puts its messages in the queue and returns at once \
         (A只需要把数据放在对应的消息队列后就可以正常返回了)"
    );
    let defaults = DEFAULT_MESSAGES.map(String::from);
    let messages = if messages.is_empty() {
        &defaults[..]
    } else {
        messages
    };
    let writer = spawn(WRITER, || {
        channel::writer(queue, WRITER, messages.iter().map(Ok))
    })?;
    reap(PARENT, writer, "writer")?;
    say!(
        PARENT,
        "the writer is gone and no reader exists yet, but the queue holds {} messages: \
         they wait in the kernel (消息队列是保存在内核中的消息链表)",
        queue.count()?
    );
    let reader = spawn(READER, || {
        say!(READER, "forked only now, after the writer exited");
        let started = Instant::now();
        let (count, bytes) = channel::receive_texts(queue, READER)?;
        channel::summary(READER, count, bytes, started.elapsed(), "");
        Ok(())
    })?;
    reap(PARENT, reader, "reader")
}

/// Act 3: a writer sends one message more than the queue holds and falls asleep in
/// the kernel; a reader, seeing it asleep, takes one message, which wakes it up.
///
/// `capacity` messages of `size` bytes fill the queue; `why` says which limit that is;
/// `wchan` is the kernel function a blocked sender sleeps in.
pub fn full_queue_blocks_the_writer(
    queue: &mut impl Channel,
    capacity: u64,
    size: usize,
    why: &str,
    wchan: &str,
) -> Result<()> {
    say!(
        PARENT,
        "act 3: a full queue makes the writer sleep until a reader makes room ({why})"
    );
    let total = capacity + 1;
    let writer = spawn(WRITER, || overfill(queue, capacity, size))?;
    let reader = match spawn(READER, || drain_once_asleep(queue, writer, total, wchan)) {
        Ok(reader) => reader,
        Err(e) => {
            stop(writer, "writer"); // no reader will come: it would sleep forever
            return Err(e);
        }
    };
    reap_both(PARENT, (writer, "writer"), (reader, "reader"))
}

/// Stops and reaps a child that has no partner left (used on error paths).
pub fn stop(child: Pid, what: &str) {
    let _ = kill(child, Signal::SIGTERM);
    let _ = reap(PARENT, child, what);
}

/// The writer of act 3: `capacity + 1` messages, the last of which has to wait.
fn overfill(queue: &mut impl Channel, capacity: u64, size: usize) -> Result<()> {
    let total = capacity + 1;
    let mut message = vec![b'.'; size];
    for i in 1..=total {
        let label = format!("message {i} of {total}");
        let n = label.len().min(size);
        message[..n].copy_from_slice(&label.as_bytes()[..n]);
        let waiting = queue.count()?;
        if waiting < capacity {
            queue.send(&message)?;
            say!(
                WRITER,
                "sent message {i} of {total} ({size} bytes): {} in the queue",
                queue.count()?
            );
            continue;
        }
        say!(
            WRITER,
            "the queue is full ({waiting} of {capacity}): sending message {i} sleeps \
             until a reader takes one"
        );
        let asleep_since = Instant::now();
        queue.send(&message)?;
        say!(
            WRITER,
            "woke up: message {i} went in {:.1} ms later, once the reader had made room",
            asleep_since.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The reader of act 3: wait until the writer sleeps, then take everything.
fn drain_once_asleep(queue: &mut impl Channel, writer: Pid, total: u64, wchan: &str) -> Result<()> {
    match wait_until_asleep(writer, wchan, ASLEEP_DEADLINE, || true) {
        Some(wchan) => say!(
            READER,
            "the writer {writer} is asleep in the kernel (/proc/{writer}/wchan: {wchan}): \
             the queue is full and nobody has read yet"
        ),
        None => say!(
            READER,
            "did not see the writer asleep within {ASLEEP_DEADLINE:?}; reading anyway"
        ),
    }
    let first = queue.receive()?.len();
    say!(
        READER,
        "took one message ({first} bytes): there is room again, so the kernel wakes the writer"
    );
    for k in 1..total {
        if queue.receive()?.is_empty() {
            bail!("message {} of {total} was empty", k + 1);
        }
    }
    say!(
        READER,
        "received the other {} messages: {} in the queue",
        total - 1,
        queue.count()?
    );
    Ok(())
}

/// Bulk in the default run: a reader child checks what a writer child sends.
pub fn bulk_in_two_children(
    queue: &mut impl Channel,
    count: u64,
    size: usize,
    cpus: Option<Cpus>,
) -> Result<()> {
    let reader = spawn(READER, || {
        run_on_cpu(cpus.map(|c| c.reader))?;
        workload::receive_bulk(queue, count, size)?.print(READER);
        Ok(())
    })?;
    let writer = match spawn(WRITER, || {
        run_on_cpu(cpus.map(|c| c.writer))?;
        workload::send_bulk(queue, count, size)?.print(WRITER);
        Ok(())
    }) {
        Ok(writer) => writer,
        Err(e) => {
            stop(reader, "reader");
            return Err(e);
        }
    };
    say!(
        PARENT,
        "forked reader {reader} and writer {writer}: {count} messages of {size} bytes, every byte checked"
    );
    reap_both(PARENT, (reader, "reader"), (writer, "writer"))
}

/// Ping in the default run: `down` carries pings to the reader child, which echoes
/// them back up `up`; the writer child times the round trips.
pub fn ping_in_two_children(
    down: &mut impl Channel,
    up: &mut impl Channel,
    count: u64,
    size: usize,
    cpus: Option<Cpus>,
) -> Result<()> {
    let reader = spawn(READER, || {
        run_on_cpu(cpus.map(|c| c.reader))?;
        workload::echo(down, up, count, size)?.print(READER);
        Ok(())
    })?;
    let writer = match spawn(WRITER, || {
        run_on_cpu(cpus.map(|c| c.writer))?;
        workload::time_round_trips(down, up, count, size)?.print(WRITER);
        Ok(())
    }) {
        Ok(writer) => writer,
        Err(e) => {
            stop(reader, "reader");
            return Err(e);
        }
    };
    say!(
        PARENT,
        "forked reader {reader} (it echoes) and writer {writer} (it times): {count} round trips of {size} bytes"
    );
    reap_both(PARENT, (reader, "reader"), (writer, "writer"))
}

/// Pins this process to one CPU (`sched_setaffinity`), if `--cpus` asked.
fn run_on_cpu(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}
