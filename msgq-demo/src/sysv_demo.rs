//! The narrated System V queue: the acts of `msgq-demo sysv` and its two-terminal
//! reader and writer, around the calls of the library module `sysv.rs` (`msgget`,
//! `msgsnd`, `msgrcv`, `msgctl`), which is the file to copy from.
//!
//! The notes' 消息队列 section, as this file shows it: the writer returns once its
//! message is in the queue (A只需要把数据放在对应的消息队列后就可以正常返回了); the
//! kernel keeps the list (消息队列是保存在内核中的消息链表) and deletes what is read;
//! msgmax limits each message (每个消息体都有一个最大长度的限制); every message is
//! copied into the kernel and out (用户态与内核态之间的数据拷贝).
//!
//! Run: `cargo run -p msgq-demo -- sysv` (the narrated acts); in two terminals,
//! `cargo run -p msgq-demo -- reader sysv --key 0x7100` and then
//! `cargo run -p msgq-demo -- writer sysv --key 0x7100 hello`; `ipcs -q` meanwhile.
//! Watch for: msg_qnum going up and down; `msgtyp` picking type 2 first; EINVAL at
//! msgmax + 1 bytes; the writer asleep in `do_msgsnd` once msgmnb bytes are queued.
//! In production: there is no maintained Rust wrapper for System V queues: prefer POSIX
//! queues, or a Unix socket.
//!
//! What the demo adds to the library: narration, a side that watches its peer by
//! msg_lspid/msg_lrpid while it waits, and waits that sleep in the kernel itself
//! (`timeout: None`, so that /proc shows `do_msgsnd`), bounded by the SIGALRM ticker
//! of signals.rs, which is the binary's, not the library's.

use std::cell::Cell;
use std::ffi::{c_int, c_long};
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use msgq_demo::sysv::{self, MAX_TEXT};
use nix::errno::Errno;
use nix::unistd::getpid;

use crate::acts;
use crate::args::{Capacity, Cpus, Workload};
use crate::channel::{self, Channel, kernel_limit, stoppable};
use crate::family::{reap, spawn};
use crate::workload;
use crate::{PARENT, READER, WRITER, say, signals};

/// The text messages' type (the wire format), and ping's replies' type.
const TEXT_TYPE: c_long = 1;
const REPLY_TYPE: c_long = 2;

/// The kernel's limits for System V queues, from /proc/sys/kernel.
pub struct Limits {
    msgmax: u64,
    msgmnb: u64,
    msgmni: u64,
}

impl Limits {
    pub fn read() -> Result<Limits> {
        Ok(Limits {
            msgmax: kernel_limit("/proc/sys/kernel/msgmax")?,
            msgmnb: kernel_limit("/proc/sys/kernel/msgmnb")?,
            msgmni: kernel_limit("/proc/sys/kernel/msgmni")?,
        })
    }

    /// The largest message we can send: msgmax, or our buffer if that is smaller.
    fn largest(&self) -> usize {
        (self.msgmax as usize).min(MAX_TEXT)
    }

    pub fn capacity(&self) -> Capacity {
        Capacity {
            message: self.largest(),
            message_limit: "/proc/sys/kernel/msgmax",
            messages: self.msgmnb, // a queue also takes at most msg_qbytes messages
            bytes: self.msgmnb,
        }
    }

    fn show(&self, role: &str) {
        say!(
            role,
            "the kernel's limits (/proc/sys/kernel): msgmax={} bytes a message \
             (每个消息体都有一个最大长度的限制), msgmnb={} bytes a queue, msgmni={} queues",
            self.msgmax,
            self.msgmnb,
            self.msgmni
        );
    }
}

/// The key when none is given: 'm' (0x6d) then the pid, which is below 2^22 on Linux,
/// so each run has its own.
fn default_key() -> i32 {
    0x6d00_0000 | getpid().as_raw()
}

/// How to remove queue `id` by hand (ipcrm is in util-linux).
fn removal_command(id: c_int) -> String {
    format!("`ipcrm -q {id}`")
}

/// The library's removal guard, narrated: says what it removed, and stops naming the
/// queue as something a killed parent would leave behind.
pub struct Remove {
    guard: Option<sysv::Remove>,
    key: i32,
    role: &'static str,
}

impl Drop for Remove {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        if !guard.is_owner() {
            return; // a forked child's copy: the parent's queue is not ours
        }
        let (id, key) = (guard.id(), self.key);
        crate::family::released(&removal_command(id));
        match (guard.remove(), signals::caught()) {
            (Ok(()), Some(sig)) => say!(
                self.role,
                "interrupted by {sig}: removed queue {id} (key {key:#x})"
            ),
            (Ok(()), None) => say!(
                self.role,
                "removed queue {id} (key {key:#x}) with msgctl(IPC_RMID): gone at once, with \
                 any message still in it"
            ),
            (Err(e), _) => _ = writeln!(std::io::stderr(), "error: msgctl IPC_RMID {id}: {e}"),
        }
    }
}

/// What a side watches while it waits: Ctrl+C, and in two-terminal mode its peer.
struct Watch {
    id: c_int,
    key: i32,
    /// Two-terminal mode: the other side's role, to watch for its death while we wait
    /// (see `peer_gone`); and its pid, once seen.
    who: Option<&'static str>,
    peer: Cell<Option<i32>>,
}

/// A System V queue as one side uses it: the library's queue, the message type this
/// side sends and receives, and what it watches.
pub struct Queue {
    queue: sysv::Queue,
    mtype: c_long,
    watch: Watch,
}

/// Creates the queue for `key`, exclusively, readable and writable by us only. The guard
/// is made the moment the queue exists, so every way out after this removes it.
fn create(key: i32, role: &'static str) -> Result<(Remove, Queue)> {
    let (guard, queue) = match sysv::create(key) {
        Ok(made) => made,
        Err(Errno::EEXIST) => match sysv::open(key, Duration::ZERO, &|| false) {
            Ok(queue) => bail!(
                "a queue with key {key:#x} already exists (id {}), perhaps left behind by a \
                 run that was killed: remove it with `ipcrm -q {}`",
                queue.id(),
                queue.id()
            ),
            Err(_) => bail!(
                "a queue with key {key:#x} already exists: remove it with `ipcrm -Q {key:#x}`"
            ),
        },
        Err(Errno::ENOSPC) => {
            bail!("msgget: ENOSPC: the system already has msgmni queues (ipcs -q lists them)")
        }
        Err(e) => bail!("msgget key {key:#x} (IPC_CREAT|IPC_EXCL, 0600): {e}"),
    };
    let id = guard.id();
    let remove = Remove {
        guard: Some(guard),
        key,
        role,
    };
    crate::family::owns(removal_command(id));
    say!(
        role,
        "created queue {id}: msgget(key {key:#x}, IPC_CREAT|IPC_EXCL|0600); it lives in the \
         kernel, not in any process (ipcs -q lists it)"
    );
    Ok((remove, Queue::new(queue, key, TEXT_TYPE)))
}

/// Finds the queue a reader created with `key`. No waiting for it: the reader is to be
/// started first, and the error says so.
fn open(key: i32) -> Result<Queue> {
    match sysv::open(key, Duration::ZERO, &|| false) {
        Ok(queue) => Ok(Queue::new(queue, key, TEXT_TYPE)),
        Err(Errno::ENOENT) => bail!(
            "no queue with key {key:#x}: start the reader first (msgq-demo reader sysv --key {key:#x})"
        ),
        Err(Errno::EACCES) => bail!(
            "queue with key {key:#x}: permission denied (the reader made it 0600: only its user \
             may use it)"
        ),
        Err(e) => bail!("msgget key {key:#x}: {e}"),
    }
}

impl Watch {
    /// Two-terminal mode: a side whose peer was killed (SIGKILL runs no guard) would
    /// otherwise sleep forever on a full or empty queue. The kernel keeps the pids of
    /// the last sender and receiver (msg_lspid, msg_lrpid; 0 until the first send or
    /// receive): one that is not us is the peer, and we remember it, since in ping both
    /// fields can be ours for a while (we sent the ping and received the last reply).
    /// Checked each `TICK` we wait. (Not in the narrated run, where those pids may be
    /// children of an earlier act; there the parent watches its children.)
    fn peer_gone(&self) -> Result<()> {
        let Some(who) = self.who else {
            return Ok(());
        };
        self.notice_peer();
        let Some(pid) = self.peer.get() else {
            return Ok(()); // not seen yet
        };
        if crate::family::alive(pid) {
            return Ok(());
        }
        let (id, key) = (self.id, self.key);
        if who == READER {
            bail!(
                "the reader (pid {pid}, by msg_lrpid/msg_lspid) died without removing queue \
                 {id} (key {key:#x}): nobody will take messages or answer; it is left \
                 behind: remove it with {}",
                removal_command(id)
            );
        }
        bail!(
            "the writer (pid {pid}, by msg_lspid/msg_lrpid) died before its end marker: no \
             more messages will come"
        );
    }

    /// Looks for the peer's pid in msg_lrpid/msg_lspid (one msgctl), and remembers the
    /// latest one that is not ours. Called on each tick we wait, and after each message
    /// until the peer is known: a ping writer that never waited a whole tick would
    /// otherwise not know its reader once both fields name itself (it sent the last
    /// ping and received the last reply).
    fn notice_peer(&self) {
        if self.who.is_none() {
            return;
        }
        let Ok(stat) = sysv::stat(self.id) else {
            return; // removed: the next call says so (EIDRM)
        };
        let me = getpid().as_raw();
        for pid in [stat.msg_lrpid, stat.msg_lspid] {
            if pid != 0 && pid != me {
                self.peer.set(Some(pid));
            }
        }
    }

    /// After a message went through: learn the peer, if it is not known yet.
    fn notice_peer_once(&self) {
        if self.peer.get().is_none() {
            self.notice_peer();
        }
    }

    /// Why a side asleep in msgsnd/msgrcv, woken by a signal, should stop waiting.
    fn reason_to_stop(&self) -> Result<()> {
        signals::check()?;
        self.peer_gone()
    }
}

impl Queue {
    fn new(queue: sysv::Queue, key: i32, mtype: c_long) -> Queue {
        let id = queue.id();
        Queue {
            queue,
            mtype,
            watch: Watch {
                id,
                key,
                who: None,
                peer: None.into(),
            },
        }
    }

    /// The same queue, seen through another message type (ping's replies).
    fn with_type(&self, mtype: c_long) -> Queue {
        let mut other = Queue::new(self.queue.another(), self.watch.key, mtype);
        other.watch.who = self.watch.who;
        other.watch.peer = self.watch.peer.clone();
        other
    }

    /// Sends one message of type `mtype`, sleeping while the queue is full.
    fn send_typed(&mut self, message: &[u8], mtype: c_long) -> Result<()> {
        if message.len() > MAX_TEXT {
            bail!(
                "a message of {} bytes is more than this demo's buffer ({MAX_TEXT})",
                message.len()
            );
        }
        // First without sleeping (one IPC_NOWAIT try): most sends find room, and need
        // no timer (unless a workload holds it already: then straight to the call that
        // may sleep).
        signals::check()?;
        if !signals::ticking() {
            match self
                .queue
                .send(mtype, message, Some(Duration::ZERO), &|| false)
            {
                Err(Errno::ETIMEDOUT) => {} // full: sleep below
                Ok(()) => {
                    self.watch.notice_peer_once();
                    return Ok(());
                }
                Err(e) => return Err(self.failure("msgsnd", e, message.len())),
            }
        }
        let _ticking = signals::Ticking::start()?; // disarmed on every way out
        let watch = &self.watch;
        let sent = stoppable(
            || watch.reason_to_stop(),
            |stop| self.queue.send(mtype, message, None, stop),
        )?;
        match sent {
            Ok(()) => {
                self.watch.notice_peer_once();
                Ok(())
            }
            Err(e) => Err(self.failure("msgsnd", e, message.len())),
        }
    }

    /// Takes the message `msgtyp` selects, sleeping while there is none. Returns it
    /// with its type.
    fn receive_typed(&mut self, msgtyp: c_long) -> Result<(&[u8], c_long)> {
        // First without sleeping, as in `send_typed`.
        signals::check()?;
        let ticking = signals::ticking();
        let _ticking = if ticking {
            None
        } else {
            match self.queue.receive(msgtyp, Some(Duration::ZERO), &|| false) {
                Err(Errno::ETIMEDOUT) => {} // empty: sleep below
                Ok(_) => {
                    self.watch.notice_peer_once();
                    let (text, mtype) = self.queue.last_received();
                    return Ok((text, mtype));
                }
                Err(e) => return Err(self.failure("msgrcv", e, 0)),
            }
            Some(signals::Ticking::start()?) // disarmed on every way out
        };
        let watch = &self.watch;
        let got = stoppable(
            || watch.reason_to_stop(),
            |stop| {
                self.queue
                    .receive(msgtyp, None, stop)
                    .map(|(text, _)| text.len())
            },
        )?;
        match got {
            Ok(_) => {
                self.watch.notice_peer_once();
                Ok(self.queue.last_received())
            }
            Err(e) => Err(self.failure("msgrcv", e, 0)),
        }
    }

    /// Says why a call failed, in terms of this queue.
    fn failure(&self, call: &str, e: Errno, len: usize) -> anyhow::Error {
        let (id, key) = (self.watch.id, self.watch.key);
        let msgmax = kernel_limit("/proc/sys/kernel/msgmax").unwrap_or(0);
        match e {
            Errno::EINVAL if len as u64 > msgmax => anyhow::anyhow!(
                "{call}: a message of {len} bytes is more than msgmax ({msgmax} bytes, \
                 /proc/sys/kernel/msgmax)"
            ),
            Errno::EIDRM | Errno::EINVAL => anyhow::anyhow!(
                "{call}: queue {id} (key {key:#x}) was removed while I waited: its reader is gone"
            ),
            Errno::E2BIG => anyhow::anyhow!(
                "{call}: a message in queue {id} is larger than my {MAX_TEXT}-byte buffer"
            ),
            e => anyhow::anyhow!("{call} on queue {id} (key {key:#x}): {e}"),
        }
    }
}

impl Channel for Queue {
    fn send(&mut self, message: &[u8]) -> Result<()> {
        self.send_typed(message, self.mtype)
    }

    /// Receives the next message of this side's type (ping's two directions share a
    /// queue, each with its type).
    fn receive(&mut self) -> Result<&[u8]> {
        Ok(self.receive_typed(self.mtype)?.0)
    }

    /// System V waits are bounded by the SIGALRM timer: hold it for the whole workload.
    fn hold_ticker(&self) -> Result<Option<signals::Ticking>> {
        signals::Ticking::start().map(Some)
    }

    fn count(&self) -> Result<u64> {
        let id = self.watch.id;
        let stat = self
            .queue
            .stat()
            .with_context(|| format!("msgctl IPC_STAT {id}"))?;
        Ok(stat.msg_qnum)
    }
}

/// The narrated run (no role given): the parent creates the queue and forks the sides.
///
/// Who owns the queue: here the parent, not the reader. Act 1 needs the writer to be
/// finished before the reader exists, so neither child can be the one that removes the
/// queue; the parent creates it before the first fork, keeps it across all the acts,
/// and removes it (its `Remove` guard) on every way out, after reaping every child. The
/// children end with `std::process::exit`, and their copies of the guard check the pid.
///
/// The queue is the one with `key` if one was given, else a fresh key.
pub fn narrated(
    key: Option<i32>,
    workload: &Workload,
    limits: &Limits,
    cpus: Option<Cpus>,
) -> Result<()> {
    let key = key.unwrap_or_else(default_key);
    match workload {
        Workload::Text(messages) => {
            limits.show(PARENT);
            let (_remove, mut queue) = create(key, PARENT)?;
            say!(
                PARENT,
                "the parent owns the queue; the counts below are the kernel's (msgctl \
                 IPC_STAT: msg_qnum); every send copies the message into the kernel, every \
                 receive copies it out (用户态与内核态之间的数据拷贝)"
            );
            acts::writer_returns_at_once(&mut queue, messages)?;
            order_and_size_limit(&mut queue, limits)?;
            let qbytes = queue.queue.stat().context("msgctl IPC_STAT")?.msg_qbytes;
            let size = limits.largest().min(qbytes as usize);
            let capacity = (qbytes / size as u64).max(1);
            let why = format!(
                "msg_qbytes is {qbytes} (msgmnb): {capacity} messages of {size} bytes fill it"
            );
            acts::full_queue_blocks_the_writer(&mut queue, capacity, size, &why, "do_msgsnd")?;
            no_notification(&mut queue)
        }
        Workload::Bulk { count, size } => {
            let (_remove, mut queue) = create(key, PARENT)?;
            acts::bulk_in_two_children(&mut queue, *count, *size, cpus)
        }
        Workload::Ping { count, size } => {
            let (_remove, mut down) = create(key, PARENT)?;
            let mut up = down.with_type(REPLY_TYPE);
            say!(
                PARENT,
                "one queue, two directions: pings are type {TEXT_TYPE}, replies type {REPLY_TYPE}"
            );
            acts::ping_in_two_children(&mut down, &mut up, *count, *size, cpus)
        }
    }
}

/// Act 2: the reader picks messages by type, and a message one byte over msgmax is
/// refused.
fn order_and_size_limit(queue: &mut Queue, limits: &Limits) -> Result<()> {
    say!(
        PARENT,
        "act 2: the reader, not the order of sending, decides what comes out next: it \
         selects by message type (msgtyp)"
    );
    const TYPED: [(&str, c_long); 3] = [
        ("type 1, sent first", 1),
        ("type 3, sent second", 3),
        ("type 2, sent last", 2),
    ];
    let writer = spawn(WRITER, || {
        for (text, mtype) in TYPED {
            queue.send_typed(text.as_bytes(), mtype)?;
            say!(
                WRITER,
                "sent {text:?} as type {mtype}: {} in the queue",
                queue.count()?
            );
        }
        send_one_byte_too_many(queue, limits)
    })?;
    reap(PARENT, writer, "writer")?;
    let reader = spawn(READER, || {
        for (msgtyp, why) in [
            (
                2,
                "only type 2 will do, so it overtakes the two sent before it",
            ),
            (-3, "the lowest type up to 3 first"),
            (-3, "the lowest type up to 3 first"),
        ] {
            let (message, mtype) = queue.receive_typed(msgtyp)?;
            let text = String::from_utf8_lossy(message).into_owned();
            say!(
                READER,
                "msgrcv(msgtyp {msgtyp}) took {text:?} (type {mtype}): {why}; {} left",
                queue.count()?
            );
        }
        Ok(())
    })?;
    reap(PARENT, reader, "reader")
}

/// Tries a message of msgmax + 1 bytes: the kernel must refuse it.
fn send_one_byte_too_many(queue: &mut Queue, limits: &Limits) -> Result<()> {
    let len = limits.msgmax as usize + 1;
    if len > MAX_TEXT {
        say!(
            WRITER,
            "msgmax ({}) is beyond this demo's buffer: not trying a message over it",
            limits.msgmax
        );
        return Ok(());
    }
    let too_big = vec![b'x'; len];
    // One IPC_NOWAIT try: the kernel refuses an oversized message before it looks for room.
    match queue
        .queue
        .send(TEXT_TYPE, &too_big, Some(Duration::ZERO), &|| false)
    {
        Err(Errno::EINVAL) => {
            say!(
                WRITER,
                "tried a message of {len} bytes, one more than msgmax ({}): msgsnd failed with \
                 EINVAL, as the kernel takes no message longer than msgmax; nothing was queued \
                 ({} in the queue)",
                limits.msgmax,
                queue.count()?
            );
            Ok(())
        }
        Ok(()) => bail!("the kernel took a message longer than msgmax"),
        Err(e) => bail!("a message over msgmax: expected EINVAL, got {e}"),
    }
}

/// Act 4: System V has no mq_notify: a reader sleeps in msgrcv, or polls.
fn no_notification(queue: &mut Queue) -> Result<()> {
    say!(
        PARENT,
        "act 4: System V has no notification like mq_notify: a reader sleeps in msgrcv, or polls"
    );
    // A zero timeout is one msgrcv with IPC_NOWAIT: its ENOMSG comes back as ETIMEDOUT.
    match queue.queue.receive(0, Some(Duration::ZERO), &|| false) {
        Err(Errno::ETIMEDOUT) => {
            say!(
                PARENT,
                "msgrcv with IPC_NOWAIT on the empty queue: ENOMSG at once, where without the \
                 flag it would have slept"
            );
            Ok(())
        }
        Ok((text, _)) => bail!(
            "the queue should be empty, yet held a message of {} bytes",
            text.len()
        ),
        Err(e) => bail!("msgrcv IPC_NOWAIT: expected ENOMSG, got {e}"),
    }
}

/// `msgq-demo reader sysv`: create the queue, take what comes, remove the queue.
pub fn reader(key: Option<i32>, workload: &Workload, limits: &Limits) -> Result<()> {
    let key = key.unwrap_or_else(default_key);
    limits.show(READER);
    let (remove, mut queue) = create(key, READER)?;
    queue.watch.who = Some(WRITER);
    match workload {
        Workload::Text(_) => {
            say!(
                READER,
                "waiting for messages; in another terminal: msgq-demo writer sysv --key {key:#x} hello"
            );
            let started = Instant::now();
            let (count, bytes) = channel::receive_texts(&mut queue, READER)?;
            drop(remove); // the summary is the last line
            channel::summary(READER, count, bytes, started.elapsed(), "");
        }
        Workload::Bulk { count, size } => {
            say!(
                READER,
                "waiting for {count} messages of {size} bytes: msgq-demo writer sysv --key \
                 {key:#x} --count {count} --size {size}"
            );
            let done = workload::receive_bulk(&mut queue, *count, *size)?;
            drop(remove);
            done.print(READER);
        }
        Workload::Ping { count, size } => {
            let mut up = queue.with_type(REPLY_TYPE);
            say!(
                READER,
                "waiting for {count} pings of type {TEXT_TYPE}, to echo each back as type \
                 {REPLY_TYPE}: msgq-demo writer sysv --key {key:#x} --ping {count} --size {size}"
            );
            let done = workload::echo(&mut queue, &mut up, *count, *size)?;
            drop(remove);
            done.print(READER);
        }
    }
    Ok(())
}

/// `msgq-demo writer sysv`: find the reader's queue, send, and leave.
pub fn writer(key: i32, workload: &Workload) -> Result<()> {
    let mut queue = open(key)?;
    queue.watch.who = Some(READER);
    match workload {
        Workload::Text(messages) => {
            say!(WRITER, "found queue {} by key {key:#x}", queue.watch.id);
            if messages.is_empty() {
                // Bytes up to each '\n' (a line need not be UTF-8), capped at the
                // largest message, so an endless line cannot fill our memory.
                let lines =
                    channel::capped_lines(std::io::stdin().lock(), Limits::read()?.largest());
                channel::writer(&mut queue, WRITER, lines)
            } else {
                channel::writer(&mut queue, WRITER, messages.iter().map(Ok))
            }
        }
        Workload::Bulk { count, size } => {
            workload::send_bulk(&mut queue, *count, *size)?.print(WRITER);
            Ok(())
        }
        Workload::Ping { count, size } => {
            let mut up = queue.with_type(REPLY_TYPE);
            workload::time_round_trips(&mut queue, &mut up, *count, *size)?.print(WRITER);
            Ok(())
        }
    }
}
