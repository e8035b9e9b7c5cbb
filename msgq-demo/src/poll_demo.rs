//! The `poll` flavour, narrated: one reader waits on two POSIX queues at once with
//! `poll(2)`, with a deadline, and takes whichever has a message. The call is the
//! library's (`msgq_demo::posix::poll_queues`, src/posix.rs); the queues, their guards
//! and the peer's lock are the posix flavour's (`posix_demo.rs`).
//!
//! Notes, 消息队列: a queue is a list kept in the kernel (消息队列是保存在内核中的消息
//! 链表) that a reader sleeps on until a message comes. One queue per sleep, so far: a
//! reader of two queues asleep in mq_receive on one takes nothing from the other until
//! that sleep ends. Linux goes further: a POSIX queue descriptor is a file descriptor
//! (mq_overview(7); not portable, POSIX does not require it), readable (POLLIN) while
//! a message waits, so `poll`, `select` and `epoll` wait on many queues (and sockets,
//! pipes, a signalfd) in one sleep, with a deadline (a System V queue is an id, not an
//! fd: no poll for it). Beside the posix flavour's `mq_notify` (act 4), which tells one
//! registered process by a signal, one queue per registration, once: poll needs no
//! signal handler and no re-arming, and any number of processes may poll.
//!
//! Run: `cargo run -p msgq-demo -- poll` (a forked writer sends to one queue or the
//! other, each time the reader sleeps in poll). Two terminals:
//! `msgq-demo reader poll --name /q` (creates /q-a and /q-b), then plain POSIX writers:
//! `msgq-demo writer --name /q-b hello` and `msgq-demo writer --name /q-a there`.
//! Watch for: the deadline passing with both queues empty (poll returns 0); the reader
//! asleep in poll (`cat /proc/PID/wchan`: a poll function, poll_schedule_timeout on
//! recent kernels) on both at once; each message
//! taken from the queue poll said was readable, in the order the writer chose.
//!
//! In production: the descriptor in your event loop (`mio`/`tokio` `AsyncFd` over the
//! `AsFd` the library's `Queue` implements), or the `posixmq` crate, which does this.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use msgq_demo::posix;
use nix::errno::Errno;
use nix::mqueue::MQ_OFlag;
use nix::unistd::{Pid, getpid};

use crate::acts::{self, ASLEEP_DEADLINE};
use crate::channel::{self, Channel, END, stoppable};
use crate::family::{alive, reap, spawn, wait_until_asleep};
use crate::posix_demo::{Limits, Queue, Unlink, WRITER_BYTE, create, open_watched};
use crate::{READER, WRITER, say, signals};

/// How long the first poll waits on two empty queues: the deadline, seen to pass.
const DEADLINE: Duration = Duration::from_millis(300);

/// The messages of the default run, each with the queue it goes to.
const DEFAULT_MESSAGES: [&str; 4] = [
    "first, on queue b",
    "then one on queue a",
    "b again",
    "a last time",
];

/// The two queues' names: NAME-a and NAME-b.
fn names(name: &str) -> [String; 2] {
    [format!("{name}-a"), format!("{name}-b")]
}

/// Creates the two queues for this reader (the posix flavour's `create`: exclusive,
/// 0600, a guard that removes each on every way out).
fn create_both(name: &str, limits: &Limits) -> Result<[(Unlink, Queue); 2]> {
    let [a, b] = names(name);
    let first = create(&a, READER, limits)?;
    let second = create(&b, READER, limits)?; // on error, `first` drops: /q-a goes
    Ok([first, second])
}

/// `msgq-demo poll`: the reader (this process) and a forked writer.
pub fn narrated(name: Option<&str>, messages: &[String], limits: &Limits) -> Result<()> {
    let name = name.map_or_else(|| format!("/msgq-demo-{}", getpid()), str::to_string);
    let [(unlink_a, a), (unlink_b, b)] = create_both(&name, limits)?;
    let mut queues = [a, b];
    let quiet = stoppable(
        || signals::check().map_err(Into::into),
        |stop| {
            let both = [queues[0].library(), queues[1].library()];
            posix::poll_queues(&both, Some(DEADLINE), stop)
        },
    )?;
    match quiet {
        Err(Errno::ETIMEDOUT) => say!(
            READER,
            "poll on both queues' descriptors (POLLIN), {} ms deadline: it passed, both \
             empty; no signal and no timer needed for that, unlike mq_notify",
            DEADLINE.as_millis()
        ),
        other => bail!("poll on two empty queues returned {other:?}"),
    }
    let texts: Vec<String> = if messages.is_empty() {
        DEFAULT_MESSAGES.map(String::from).to_vec()
    } else {
        messages.to_vec()
    };
    let reader = getpid();
    let [na, nb] = names(&name);
    let writer = spawn(WRITER, || send_to_either(&na, &nb, &texts, reader))?;
    say!(
        READER,
        "forked writer {writer}; now poll with no deadline: one sleep on both queues"
    );
    let outcome = take_whichever(&mut queues, None, Some(writer));
    if outcome.is_err() {
        acts::stop(writer, "writer");
    }
    let reaped = reap(READER, writer, "writer");
    let (count, bytes, elapsed) = outcome?;
    reaped?;
    drop(queues);
    drop((unlink_a, unlink_b)); // the summary is the last line
    channel::summary(READER, count, bytes, elapsed, "");
    Ok(())
}

/// `msgq-demo reader poll`: make both queues, take from whichever, until both writers
/// have sent their end marker.
pub fn reader(name: Option<&str>, limits: &Limits) -> Result<()> {
    let name = name.map_or_else(|| format!("/msgq-demo-{}", getpid()), str::to_string);
    let [(unlink_a, a), (unlink_b, b)] = create_both(&name, limits)?;
    let mut queues = [a, b];
    for queue in &mut queues {
        queue.watch(WRITER_BYTE, "writer");
    }
    let [na, nb] = names(&name);
    say!(
        READER,
        "polling both; in other terminals: msgq-demo writer --name {na} hello, and \
         msgq-demo writer --name {nb} there (I stop once both have ended)"
    );
    let (count, bytes, elapsed) = take_whichever(&mut queues, Some(READER), None)?;
    drop(queues);
    drop((unlink_a, unlink_b));
    channel::summary(READER, count, bytes, elapsed, "");
    Ok(())
}

/// The poll loop: sleep on every queue whose writer has not ended, take a message from
/// each that poll says is readable. `watching`: say the writers are watched by their
/// locks (two terminals); `child`: the default run's writer, watched as a process (it
/// may die before it takes its lock). Returns the messages, bytes and time from the
/// first message.
fn take_whichever(
    queues: &mut [Queue; 2],
    watching: Option<&str>,
    child: Option<Pid>,
) -> Result<(u64, u64, Duration)> {
    let mut open = vec![0, 1]; // the queues whose writer has not sent its end marker
    let (mut count, mut bytes, mut started) = (0, 0, None);
    if let Some(role) = watching {
        say!(
            role,
            "each writer is watched by its lock on its queue: a killed one is noticed"
        );
    }
    while !open.is_empty() {
        let ready = {
            let watched: Vec<&Queue> = open.iter().map(|&i| &queues[i]).collect();
            let fds: Vec<&posix::Queue> = watched.iter().map(|q| q.library()).collect();
            let reason = || {
                if let Some(pid) = child
                    && !alive(pid.as_raw())
                {
                    bail!("the writer (pid {pid}) is gone before its end markers");
                }
                watched.iter().try_for_each(|q| q.reason_to_stop())
            };
            match stoppable(reason, |stop| posix::poll_queues(&fds, None, stop))? {
                Ok(ready) => ready.into_iter().map(|k| open[k]).collect::<Vec<_>>(),
                Err(e) => bail!("poll on the queues: {e}"),
            }
        };
        let shown: Vec<&str> = ready.iter().map(|&i| queues[i].name()).collect();
        say!(
            READER,
            "poll returned: {} readable (POLLIN)",
            shown.join(" and ")
        );
        for i in ready {
            let queue = &mut queues[i];
            let name = queue.name().to_string();
            let Some(message) = queue.receive_now()? else {
                continue; // someone else took it: poll again
            };
            started.get_or_insert_with(Instant::now);
            if message == END {
                say!(READER, "{name}: the end marker; its writer is done");
                open.retain(|&k| k != i);
                continue;
            }
            let text = String::from_utf8_lossy(message).into_owned();
            say!(
                READER,
                "received {text:?} ({} bytes) from {name}",
                message.len()
            );
            count += 1;
            bytes += message.len() as u64;
        }
    }
    Ok((
        count,
        bytes,
        started.map(|t| t.elapsed()).unwrap_or_default(),
    ))
}

/// The writer of the default run: each message to queue b, a, b, a..., each sent
/// only once the reader sleeps in poll with both queues empty; then both end markers.
fn send_to_either(a: &str, b: &str, texts: &[String], reader: Pid) -> Result<()> {
    let parent = "the parent";
    let mut queues = [
        open_watched(b, MQ_OFlag::O_WRONLY, parent)?,
        open_watched(a, MQ_OFlag::O_WRONLY, parent)?,
    ];
    for (k, text) in texts.iter().enumerate() {
        let empty = || queues.iter().all(|q| matches!(q.count(), Ok(0)));
        match wait_until_asleep(reader, "poll", ASLEEP_DEADLINE, empty) {
            Some(wchan) => say!(
                WRITER,
                "both queues empty, reader {reader} asleep in {} on both",
                wchan.trim()
            ),
            None => say!(
                WRITER,
                "did not see the reader asleep in poll within {ASLEEP_DEADLINE:?}; sending anyway"
            ),
        }
        signals::check()?;
        let queue = &mut queues[k % 2];
        // Said before the send: once the message is in, the reader may print first.
        say!(WRITER, "sending {text:?} to {}", queue.name());
        queue.send(text.as_bytes())?;
    }
    for queue in &mut queues {
        queue.send(END)?;
    }
    say!(WRITER, "sent the end marker to both queues");
    Ok(())
}
