//! The narrated POSIX queue: the acts of `msgq-demo` (posix) and its two-terminal
//! reader and writer, around the calls of the library module `posix.rs` (`mq_open`,
//! `mq_timedsend`, `mq_timedreceive`, `mq_notify`, `mq_unlink`), which is the file to
//! copy from.
//!
//! The notes' 消息队列 section, as this file shows it: the writer only puts its message
//! in the queue and returns (A只需要把数据放在对应的消息队列后就可以正常返回了); the
//! queue is a list kept in the kernel (消息队列是保存在内核中的消息链表) whose messages
//! are deleted as they are read, each no longer than a limit (每个消息体都有一个最大长度
//! 的限制), and copied into the kernel and out again (用户态与内核态之间的数据拷贝).
//!
//! Run: `cargo run -p msgq-demo` (the narrated acts below); in two terminals,
//! `cargo run -p msgq-demo -- reader --name /q` and then
//! `cargo run -p msgq-demo -- writer --name /q hello there`.
//! Watch for: the counts from mq_getattr going up and down; priority 9 overtaking, the
//! two of priority 5 in the order sent; EMSGSIZE at mq_msgsize + 1 bytes; the writer
//! asleep in `wq_sleep` when the queue holds mq_maxmsg messages; SIGUSR1 from
//! mq_notify, once per registration.
//! In production: the `posixmq` crate (RAII, mio support; stable but dormant), or a
//! Unix datagram socket, which also keeps message boundaries.
//!
//! What the demo adds to the library: narration, a side that watches its peer's lock
//! (`Peer`) and the queue's name while it waits, and the choice of sizes (the kernel's
//! maxima, to show the limits).

use std::cell::Cell;
use std::ffi::c_int;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use msgq_demo::posix;
use nix::errno::Errno;
use nix::mqueue::MQ_OFlag;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};
use nix::unistd::{Pid, getpid};

use crate::acts::{self, ASLEEP_DEADLINE};
use crate::args::{Capacity, Cpus, Workload};
use crate::channel::{self, Channel, kernel_limit, stoppable};
use crate::family::{reap, reap_both, spawn, wait_until_asleep};
use crate::workload;
use crate::{PARENT, READER, WRITER, say, signals};

/// The kernel's limits for POSIX queues, from /proc/sys/fs/mqueue.
pub struct Limits {
    msg_max: u64,
    msgsize_max: u64,
    queues_max: u64,
}

impl Limits {
    pub fn read() -> Result<Limits> {
        Ok(Limits {
            msg_max: kernel_limit("/proc/sys/fs/mqueue/msg_max")?,
            msgsize_max: kernel_limit("/proc/sys/fs/mqueue/msgsize_max")?,
            queues_max: kernel_limit("/proc/sys/fs/mqueue/queues_max")?,
        })
    }

    /// What one queue made by this demo can carry, to check the command line against.
    pub fn capacity(&self) -> Capacity {
        Capacity {
            message: self.msgsize_max as usize,
            message_limit: "/proc/sys/fs/mqueue/msgsize_max",
            messages: self.msg_max,
            bytes: self.msg_max * self.msgsize_max,
        }
    }

    fn show(&self, role: &str) {
        say!(
            role,
            "the kernel's limits (/proc/sys/fs/mqueue): msg_max={} messages a queue, \
             msgsize_max={} bytes a message (每个消息体都有一个最大长度的限制), queues_max={}",
            self.msg_max,
            self.msgsize_max,
            self.queues_max
        );
    }
}

/// The queue's name when none is given: fresh for each run.
fn default_name() -> String {
    format!("/msgq-demo-{}", getpid())
}

/// Ping's second queue, for the replies: a queue carries messages one way only, to
/// whoever receives first.
fn reply_name(name: &str) -> String {
    format!("{name}-reply")
}

/// A queue as the demo's sides use it: the library's queue, a buffer as large as its
/// messages can be, and what this side watches while it waits.
pub struct Queue {
    queue: posix::Queue,
    name: String,
    buffer: Vec<u8>,
    /// Two-terminal mode: the peer's lock to watch while we wait (see `peer_gone`).
    peer: Option<Peer>,
    /// Ping's other queue, made and owned by the same reader.
    partner: Option<String>,
}

/// A POSIX queue keeps no pid of its users, so each side of the two-terminal mode
/// marks itself with a lock the kernel drops when the process dies, SIGKILL included
/// (`posix::Queue::mark`): byte 0 for the reader, byte 1 for a writer. The other side
/// asks (`marked_by_other`) whether that byte is still locked. A peer that takes no
/// lock (another program) is never seen, so it is never declared dead either.
struct Peer {
    byte: i64,
    who: &'static str,
    /// Its lock was seen once: only then does a missing lock mean it died.
    seen: Cell<bool>,
}

pub const READER_BYTE: i64 = 0;
pub const WRITER_BYTE: i64 = 1;

/// The library's unlink guard, narrated: says what it removed, and stops naming the
/// queue as something a killed parent would leave behind.
pub struct Unlink {
    guard: Option<posix::Unlink>,
    role: &'static str,
}

impl Drop for Unlink {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        if !guard.is_owner() {
            return; // a forked child's copy: the parent's queue is not ours
        }
        let name = guard.name().to_string();
        crate::family::released(&removal_command(&name));
        match (guard.unlink(), signals::caught()) {
            (Ok(()), Some(sig)) => say!(self.role, "interrupted by {sig}: removed queue {name}"),
            (Ok(()), None) => say!(
                self.role,
                "removed queue {name} (mq_unlink): the name is gone, and the kernel frees the \
                 queue once the last descriptor on it is closed"
            ),
            (Err(e), _) => _ = writeln!(std::io::stderr(), "error: mq_unlink {name}: {e}"),
        }
    }
}

/// Creates the queue `name`, exclusively, readable and writable by us only. The guard
/// is made the moment the queue exists, so every way out after this removes it.
pub fn create(name: &str, role: &'static str, limits: &Limits) -> Result<(Unlink, Queue)> {
    // The most these limits allow: msg_max messages of msgsize_max bytes. (A program
    // with many queues would size each for what it carries: RLIMIT_MSGQUEUE counts them
    // all.)
    let (msg_max, msgsize_max) = (limits.msg_max as usize, limits.msgsize_max as usize);
    let (guard, queue) = match posix::create(name, msg_max, msgsize_max) {
        Ok(made) => made,
        Err(Errno::EEXIST) => bail!(
            "queue {name} already exists, perhaps left behind by a run that was killed: \
             remove it with {}",
            removal_command(name)
        ),
        Err(Errno::EMFILE) => bail!(
            "mq_open {name}: EMFILE: this user's queues use up RLIMIT_MSGQUEUE (ulimit -q), \
             or this process has too many files open"
        ),
        Err(Errno::ENOSPC) => bail!(
            "mq_open {name}: ENOSPC: the system already has queues_max ({}) queues",
            limits.queues_max
        ),
        Err(e) => bail!("mq_open {name} (O_CREAT|O_EXCL, 0600): {e}"),
    };
    let unlink = Unlink {
        guard: Some(guard),
        role,
    };
    crate::family::owns(removal_command(name));
    let queue = Queue::new(queue, name);
    queue.mark(READER_BYTE); // see `Peer`; watched only in two-terminal mode
    say!(
        role,
        "created queue {name}: mq_open(O_CREAT|O_EXCL|O_RDWR, 0600, mq_maxmsg={}, mq_msgsize={}); \
         it lives in the kernel, not in any process",
        limits.msg_max,
        limits.msgsize_max
    );
    Ok((unlink, queue))
}

/// How to remove a queue by hand: the mqueue filesystem shows each queue as a file.
fn removal_command(name: &str) -> String {
    let file = format!("/dev/mqueue{name}");
    if Path::new(&file).exists() {
        format!("`rm {file}`")
    } else {
        format!(
            "`rm {file}`, once the queue filesystem is mounted \
             (`mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue`)"
        )
    }
}

/// Opens the queue a reader created. `flags` says how (O_WRONLY, O_RDONLY, O_NONBLOCK);
/// `reader` is the command that creates it, for the error. No waiting for it: the
/// reader is to be started first, and the error says so.
fn open(name: &str, flags: MQ_OFlag, reader: &str) -> Result<Queue> {
    match posix::open(name, flags, Duration::ZERO, &|| false) {
        Ok(queue) => Ok(Queue::new(queue, name)),
        Err(Errno::ENOENT) => bail!("no queue {name}: start the reader first ({reader})"),
        Err(Errno::EACCES) => bail!(
            "queue {name}: permission denied (the reader made it 0600: only its user may open it)"
        ),
        Err(e) => bail!("mq_open {name}: {e}"),
    }
}

impl Queue {
    fn new(queue: posix::Queue, name: &str) -> Queue {
        Queue {
            buffer: queue.buffer(), // mq_receive wants at least mq_msgsize
            queue,
            name: name.to_string(),
            peer: None,
            partner: None,
        }
    }

    /// Marks this descriptor as `byte`'s side, until our death (see `Peer`). Best
    /// effort: a second writer finds byte 1 taken, and goes unmarked.
    fn mark(&self, byte: i64) {
        let _ = self.queue.mark(byte);
    }

    /// Whether some other descriptor holds a lock on `byte`; None if we cannot tell.
    fn marked(&self, byte: i64) -> Option<bool> {
        self.queue.marked_by_other(byte).ok()
    }

    /// From now on, while waiting, watch the peer whose lock is on `byte`.
    pub fn watch(&mut self, byte: i64, who: &'static str) {
        let seen = self.marked(byte) == Some(true);
        self.peer = Some(Peer {
            byte,
            who,
            seen: seen.into(),
        });
    }

    /// Until the peer's lock has been seen, look for it after each message received
    /// (one fcntl, then none): a writer that starts, fills the queue and dies while we
    /// were busy or stopped is then still noticed.
    fn notice_peer(&self) {
        if let Some(peer) = &self.peer
            && !peer.seen.get()
            && self.marked(peer.byte) == Some(true)
        {
            peer.seen.set(true);
        }
    }

    /// Called each `posix::SLICE` we wait: has the peer we watch died (its lock is gone)?
    fn peer_gone(&self) -> Result<()> {
        let Some(peer) = &self.peer else {
            return Ok(());
        };
        let (byte, who) = (peer.byte, peer.who);
        match (self.marked(byte), peer.seen.get()) {
            (Some(true), _) => {
                peer.seen.set(true);
                Ok(())
            }
            (Some(false), true) if who == "reader" => {
                // Ping's two queues are both the dead reader's: name both.
                let mut left = vec![removal_command(&self.name)];
                left.extend(self.partner.as_deref().map(removal_command));
                bail!(
                    "the reader of queue {} died without removing it (its lock on the queue \
                     is gone): nobody will take messages or answer; it is left behind: \
                     remove it with {}",
                    self.name,
                    left.join(" and ")
                )
            }
            (Some(false), true) => bail!(
                "the writer died before its end marker (its lock on queue {} is gone): no \
                 more messages will come",
                self.name
            ),
            _ => Ok(()),
        }
    }

    /// The largest message this queue takes (`mq_msgsize`).
    fn msgsize(&self) -> usize {
        self.queue.message_size()
    }

    /// Why this side should stop waiting, if it should: Ctrl+C (see signals.rs), the
    /// queue unlinked, or the peer dead.
    pub fn reason_to_stop(&self) -> Result<()> {
        signals::check()?;
        self.still_named()?;
        self.peer_gone()
    }

    /// Sends one message with `priority`, sleeping while the queue is full, until a
    /// reason to stop comes (Ctrl+C, the queue removed, the reader dead).
    fn send_with_priority(&self, message: &[u8], priority: u32) -> Result<()> {
        signals::check()?;
        let sent = stoppable(
            || self.reason_to_stop(),
            |stop| self.queue.send(message, priority, None, stop),
        )?;
        match sent {
            Ok(()) => Ok(()),
            Err(Errno::EMSGSIZE) => bail!(
                "a message of {} bytes does not fit queue {}: its messages are at most \
                 {} bytes (mq_msgsize)",
                message.len(),
                self.name,
                self.msgsize()
            ),
            Err(e) => bail!("mq_timedsend {}: {e}", self.name),
        }
    }

    /// Takes the next message, the oldest of the highest priority, sleeping while the
    /// queue is empty. Returns it with its priority.
    fn receive_with_priority(&mut self) -> Result<(&[u8], u32)> {
        signals::check()?;
        let mut buffer = std::mem::take(&mut self.buffer);
        let got = stoppable(
            || self.reason_to_stop(),
            |stop| self.queue.receive(&mut buffer, None, stop),
        );
        self.buffer = buffer;
        match got? {
            Ok((len, priority)) => {
                self.notice_peer();
                Ok((&self.buffer[..len], priority))
            }
            Err(e) => bail!("mq_timedreceive {}: {e}", self.name),
        }
    }

    /// While we wait, the reader may remove the queue (Ctrl+C, or the end of its run).
    /// Our descriptor still works, but nobody can open the name any more, so nobody
    /// will ever make room or send: say so instead of waiting forever. (System V wakes
    /// the sleepers on a removed queue itself, with EIDRM.)
    fn still_named(&self) -> Result<()> {
        match posix::exists(&self.name) {
            Ok(false) => bail!(
                "queue {} was removed while I waited: its reader is gone",
                self.name
            ),
            Ok(true) | Err(_) => Ok(()), // there, or cannot tell: keep waiting
        }
    }

    /// The library's queue, for `posix::poll_queues`.
    pub fn library(&self) -> &posix::Queue {
        &self.queue
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message if one is there, without sleeping whatever the descriptor's
    /// O_NONBLOCK flag (mq_timedreceive with a deadline of now); None if the queue is
    /// empty (someone else took what poll saw).
    pub fn receive_now(&mut self) -> Result<Option<&[u8]>> {
        match self
            .queue
            .receive(&mut self.buffer, Some(Duration::ZERO), &|| false)
        {
            Ok((len, _)) => {
                self.notice_peer();
                Ok(Some(&self.buffer[..len]))
            }
            Err(Errno::ETIMEDOUT) => Ok(None),
            Err(e) => bail!("mq_timedreceive {}: {e}", self.name),
        }
    }

    /// For a queue opened with O_NONBLOCK: the next message, or None at once if the
    /// queue is empty (EAGAIN) where a blocking receive would sleep.
    fn try_receive(&mut self) -> Result<Option<(&[u8], u32)>> {
        match self.queue.try_receive(&mut self.buffer) {
            Ok(Some((len, priority))) => Ok(Some((&self.buffer[..len], priority))),
            Ok(None) => Ok(None),
            Err(e) => bail!("mq_receive {}: {e}", self.name),
        }
    }
}

impl Channel for Queue {
    fn send(&mut self, message: &[u8]) -> Result<()> {
        self.send_with_priority(message, 0)
    }

    fn receive(&mut self) -> Result<&[u8]> {
        Ok(self.receive_with_priority()?.0)
    }

    fn count(&self) -> Result<u64> {
        self.queue
            .count()
            .with_context(|| format!("mq_getattr {}", self.name))
    }
}

pub fn narrated(
    name: Option<&str>,
    workload: &Workload,
    limits: &Limits,
    cpus: Option<Cpus>,
) -> Result<()> {
    let name = name.map_or_else(default_name, str::to_string);
    match workload {
        Workload::Text(messages) => {
            limits.show(PARENT);
            let (_unlink, mut queue) = create(&name, PARENT, limits)?;
            say!(
                PARENT,
                "the parent owns the queue; the counts below are the kernel's (mq_getattr: \
                 mq_curmsgs); every send copies the message into the kernel, every receive \
                 copies it out (用户态与内核态之间的数据拷贝)"
            );
            acts::writer_returns_at_once(&mut queue, messages)?;
            order_and_size_limit(&mut queue)?;
            let why = format!(
                "mq_maxmsg is {}: message {} has to wait",
                limits.msg_max,
                limits.msg_max + 1
            );
            acts::full_queue_blocks_the_writer(&mut queue, limits.msg_max, 32, &why, "wq_sleep")?;
            notify_instead_of_blocking(&name)
        }
        Workload::Bulk { count, size } => {
            let (_unlink, mut queue) = create(&name, PARENT, limits)?;
            acts::bulk_in_two_children(&mut queue, *count, *size, cpus)
        }
        Workload::Ping { count, size } => {
            let (_unlink, mut down) = create(&name, PARENT, limits)?;
            let (_unlink_reply, mut up) = create(&reply_name(&name), PARENT, limits)?;
            acts::ping_in_two_children(&mut down, &mut up, *count, *size, cpus)
        }
    }
}

/// Act 2: the order is the kernel's (highest priority first), and a message one byte
/// over the limit is refused.
fn order_and_size_limit(queue: &mut Queue) -> Result<()> {
    say!(
        PARENT,
        "act 2: the kernel, not the order of sending, decides what comes out next: the \
         highest priority first"
    );
    const BY_PRIORITY: [(&str, u32); 4] = [
        ("priority 1, sent first", 1),
        ("priority 9, sent second", 9),
        ("priority 5, sent third", 5),
        ("priority 5, sent last", 5),
    ];
    let writer = spawn(WRITER, || {
        for (text, priority) in BY_PRIORITY {
            queue.send_with_priority(text.as_bytes(), priority)?;
            say!(
                WRITER,
                "sent {text:?} with priority {priority}: {} in the queue",
                queue.count()?
            );
        }
        send_one_byte_too_many(queue)
    })?;
    reap(PARENT, writer, "writer")?;
    let reader = spawn(READER, || {
        for _ in BY_PRIORITY {
            let (message, priority) = queue.receive_with_priority()?;
            let text = String::from_utf8_lossy(message).into_owned();
            say!(
                READER,
                "received {text:?} (priority {priority}): {} left",
                queue.count()?
            );
        }
        say!(
            READER,
            "highest priority first, whatever the order of sending; the two of equal \
             priority 5 came out first in, first out (mq_send(3): a new message goes after \
             the others of its priority)"
        );
        Ok(())
    })?;
    reap(PARENT, reader, "reader")
}

/// Tries a message of mq_msgsize + 1 bytes: the kernel must refuse it.
fn send_one_byte_too_many(queue: &Queue) -> Result<()> {
    let too_big = vec![b'x'; queue.msgsize() + 1];
    // No wait: the kernel refuses an oversized message before it looks for room.
    match queue
        .queue
        .send(&too_big, 0, Some(Duration::ZERO), &|| false)
    {
        Err(Errno::EMSGSIZE) => {
            say!(
                WRITER,
                "tried a message of {} bytes, one more than this queue's mq_msgsize ({}): \
                 mq_timedsend failed with EMSGSIZE, as the kernel takes no message longer \
                 than the queue was made for; nothing was queued ({} in the queue)",
                too_big.len(),
                queue.msgsize(),
                queue.count()?
            );
            Ok(())
        }
        Ok(()) => bail!("the kernel took a message longer than mq_msgsize"),
        Err(e) => bail!("a message over mq_msgsize: expected EMSGSIZE, got {e}"),
    }
}

/// Set by the SIGUSR1 handler when the kernel announces a message (act 4).
static NOTIFIED: AtomicBool = AtomicBool::new(false);

extern "C" fn notified(_: c_int) {
    NOTIFIED.store(true, Ordering::SeqCst);
}

/// How many announcements the reader of act 4 waits for.
const NOTIFY_ROUNDS: u32 = 2;

/// Act 4: a reader that does not sleep in mq_receive, but asks to be told.
fn notify_instead_of_blocking(name: &str) -> Result<()> {
    say!(
        PARENT,
        "act 4: instead of sleeping in mq_receive, a reader can ask the kernel to tell it \
         when a message arrives (mq_notify): a queue can be asynchronous too"
    );
    let reader = spawn(READER, || wait_for_announcements(name))?;
    let writer = match spawn(WRITER, || send_while_the_reader_waits(name, reader)) {
        Ok(writer) => writer,
        Err(e) => {
            acts::stop(reader, "reader");
            return Err(e);
        }
    };
    reap_both(PARENT, (reader, "reader"), (writer, "writer"))
}

/// The reader of act 4: registers, waits for SIGUSR1 (doing nothing else here, where a
/// real program would go on with its work), re-registers, reads what came.
fn wait_for_announcements(name: &str) -> Result<()> {
    // Our own descriptor, non-blocking: reading must never sleep here. (The inherited
    // one shares its O_NONBLOCK flag with the parent's, so we leave it alone.)
    let mut queue = open(
        name,
        MQ_OFlag::O_RDONLY | MQ_OFlag::O_NONBLOCK,
        "the parent",
    )?;
    let handler = SigAction::new(
        SigHandler::Handler(notified),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: `notified` only stores into an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGUSR1, &handler) }.context("sigaction SIGUSR1")?;
    // Block SIGUSR1 (and Ctrl+C) except inside sigsuspend, which unblocks them and
    // sleeps in one step: a signal that comes between our check and the sleep waits,
    // pending, and wakes the sleep instead of being missed.
    let mut ours = SigSet::empty();
    for sig in [Signal::SIGUSR1, Signal::SIGINT, Signal::SIGTERM] {
        ours.add(sig);
    }
    let mut before = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ours), Some(&mut before)).context("sigprocmask")?;
    let outcome = announcements(&mut queue, &before);
    // Unblock again, on every way out: a Ctrl+C must still be able to end us.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&before), None).context("sigprocmask")?;
    outcome
}

fn announcements(queue: &mut Queue, unblocked: &SigSet) -> Result<()> {
    queue.queue.notify(Signal::SIGUSR1).context("mq_notify")?;
    say!(
        READER,
        "registered with mq_notify: the kernel will send me SIGUSR1 when a message lands in \
         the empty queue; meanwhile I am free (here I just wait in sigsuspend)"
    );
    for round in 1..=NOTIFY_ROUNDS {
        while !NOTIFIED.swap(false, Ordering::SeqCst) {
            signals::check()?;
            let _ = unblocked.suspend(); // returns (EINTR) once a handler has run
        }
        say!(
            READER,
            "SIGUSR1: a message arrived; that used up my registration (mq_notify is one-shot)"
        );
        if round < NOTIFY_ROUNDS {
            // Re-arm before reading: a message that arrives after the queue is empty
            // again is then announced too. (Accepted, so the old one was indeed gone:
            // a queue takes one registration at a time, EBUSY otherwise.)
            queue
                .queue
                .notify(Signal::SIGUSR1)
                .context("mq_notify (re-arming)")?;
            say!(
                READER,
                "re-armed mq_notify before reading, or the next message would go unannounced"
            );
        }
        while let Some((message, _)) = queue.try_receive()? {
            let text = String::from_utf8_lossy(message).into_owned();
            say!(
                READER,
                "received {text:?} without waiting: {} left",
                queue.count()?
            );
        }
    }
    say!(READER, "not re-arming: I am done");
    Ok(())
}

/// The writer of act 4: each time the reader waits, announced nothing, send one.
fn send_while_the_reader_waits(name: &str, reader: Pid) -> Result<()> {
    let mut queue = open(name, MQ_OFlag::O_WRONLY, "the parent")?;
    for text in ["you have mail", "and more mail"] {
        let empty = || matches!(queue.count(), Ok(0));
        match wait_until_asleep(reader, "sigsuspend", ASLEEP_DEADLINE, empty) {
            Some(_) => say!(
                WRITER,
                "the queue is empty and the reader {reader} waits in sigsuspend, not in the queue"
            ),
            None => say!(
                WRITER,
                "did not see the reader wait within {ASLEEP_DEADLINE:?}; sending anyway"
            ),
        }
        queue.send(text.as_bytes())?;
        say!(
            WRITER,
            "sent {text:?}: it landed in an empty queue with a registration, so the kernel \
             sends the reader SIGUSR1"
        );
    }
    Ok(())
}

/// `msgq-demo reader`: create the queue, take what comes, remove the queue.
pub fn reader(name: Option<&str>, workload: &Workload, limits: &Limits) -> Result<()> {
    let name = name.map_or_else(default_name, str::to_string);
    limits.show(READER);
    match workload {
        Workload::Text(_) => {
            let (unlink, mut queue) = create(&name, READER, limits)?;
            queue.watch(WRITER_BYTE, "writer");
            say!(
                READER,
                "waiting for messages; in another terminal: msgq-demo writer --name {name} hello"
            );
            let started = Instant::now();
            let (count, bytes) = channel::receive_texts(&mut queue, READER)?;
            drop(queue);
            drop(unlink); // the summary is the last line
            channel::summary(READER, count, bytes, started.elapsed(), "");
        }
        Workload::Bulk { count, size } => {
            let (unlink, mut queue) = create(&name, READER, limits)?;
            queue.watch(WRITER_BYTE, "writer");
            say!(
                READER,
                "waiting for {count} messages of {size} bytes: msgq-demo writer --name {name} \
                 --count {count} --size {size}"
            );
            let done = workload::receive_bulk(&mut queue, *count, *size)?;
            drop(queue);
            drop(unlink);
            done.print(READER);
        }
        Workload::Ping { count, size } => {
            let (unlink, mut down) = create(&name, READER, limits)?;
            let (unlink_reply, mut up) = create(&reply_name(&name), READER, limits)?;
            down.watch(WRITER_BYTE, "writer");
            up.watch(WRITER_BYTE, "writer");
            say!(
                READER,
                "waiting for {count} pings on {name}, to echo each back through {}: msgq-demo \
                 writer --name {name} --ping {count} --size {size}",
                reply_name(&name)
            );
            let done = workload::echo(&mut down, &mut up, *count, *size)?;
            drop((down, up));
            drop((unlink, unlink_reply));
            done.print(READER);
        }
    }
    Ok(())
}

/// Opens the reader's queue for a writer, marked and watching the reader (see `Peer`).
pub fn open_watched(name: &str, flags: MQ_OFlag, reader: &str) -> Result<Queue> {
    let mut queue = open(name, flags, reader)?;
    queue.mark(WRITER_BYTE); // needs write access: fails quietly on the O_RDONLY reply queue
    queue.watch(READER_BYTE, "reader");
    Ok(queue)
}

/// `msgq-demo writer`: open the reader's queue, send, and leave.
pub fn writer(name: &str, workload: &Workload) -> Result<()> {
    let reader = format!("msgq-demo reader --name {name}");
    match workload {
        Workload::Text(messages) => {
            let mut queue = open_watched(name, MQ_OFlag::O_WRONLY, &reader)?;
            say!(WRITER, "opened queue {name}");
            if messages.is_empty() {
                // Bytes up to each '\n' (a line need not be UTF-8), capped at the
                // largest message, so an endless line cannot fill our memory.
                let lines = channel::capped_lines(std::io::stdin().lock(), queue.msgsize());
                channel::writer(&mut queue, WRITER, lines)
            } else {
                channel::writer(&mut queue, WRITER, messages.iter().map(Ok))
            }
        }
        Workload::Bulk { count, size } => {
            let reader = format!("{reader} --count {count} --size {size}");
            let mut queue = open_watched(name, MQ_OFlag::O_WRONLY, &reader)?;
            fits(&queue, *size)?;
            workload::send_bulk(&mut queue, *count, *size)?.print(WRITER);
            Ok(())
        }
        Workload::Ping { count, size } => {
            // The reader makes both queues when it is started with --ping.
            let reader = format!("{reader} --ping {count} --size {size}");
            let mut down = open_watched(name, MQ_OFlag::O_WRONLY, &reader)?;
            let mut up = open_watched(&reply_name(name), MQ_OFlag::O_RDONLY, &reader)?;
            down.partner = Some(reply_name(name));
            up.partner = Some(name.to_string());
            fits(&down, *size)?;
            workload::time_round_trips(&mut down, &mut up, *count, *size)?.print(WRITER);
            Ok(())
        }
    }
}

/// A queue made by someone else may take smaller messages than this kernel allows.
fn fits(queue: &Queue, size: usize) -> Result<()> {
    if size > queue.msgsize() {
        bail!(
            "--size {size}: queue {} takes messages of at most {} bytes (its mq_msgsize)",
            queue.name,
            queue.msgsize()
        );
    }
    Ok(())
}
