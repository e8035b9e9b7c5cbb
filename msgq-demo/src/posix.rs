//! POSIX message queues (mq_overview(7)): create, open, send, receive, notify, unlink.
//!
//! A queue has a name like `/q` and lives in the kernel until it is unlinked (then
//! until its last descriptor is closed), whether or not anyone has it open. Each
//! message has a priority; a receive takes the oldest message of the highest priority.
//! A queue is made with two limits, `mq_maxmsg` messages of at most `mq_msgsize` bytes,
//! capped by /proc/sys/fs/mqueue/msg_max and msgsize_max for a process without
//! CAP_SYS_RESOURCE; all of a user's queues together count against RLIMIT_MSGQUEUE
//! (`ulimit -q`, 819200 bytes by default), so size a queue for what it carries.
//!
//! Copy this file as a module; it needs nix (features `mqueue`, `fs`, `signal`, `time`, `poll`)
//! and libc. It installs no handler and arms no timer: a wait is bounded by the
//! `Duration` you pass, and asks your `stop` callback every [`SLICE`] whether to give up.
//!
//! Traps this file steps around: `mq_open` with O_CREAT must be given the attributes
//! (nix's `None` calls the two-argument C form, and glibc then reads a mode and
//! attributes that were never passed: undefined behaviour, EINVAL at best); nix's
//! `MqdT` has no `Drop`, so [`Queue`] closes it; `mq_receive` refuses a buffer smaller
//! than `mq_msgsize` (EMSGSIZE) even for a short message; nix has no `mq_timedsend` and
//! no `mq_notify`, so those two come from libc.
//!
//! On Linux a queue descriptor is a file descriptor (mq_overview(7); POSIX does not
//! require it): [`Queue`] is `AsFd`, and [`poll_queues`] waits on several queues at
//! once with `poll(2)`, with a deadline, taking no signal and arming no timer. Not
//! portable: on other systems an `mqd_t` need not be an fd.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::mqueue::{
    MQ_OFlag, MqAttr, MqdT, mq_close, mq_getattr, mq_open, mq_receive, mq_timedreceive, mq_unlink,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigEvent, SigevNotify, Signal};
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime};
use nix::unistd::{Pid, getpid};

/// The longest a wait sleeps in the kernel before it asks `stop` again: also the most
/// a signal that lands just before the call goes to sleep can be noticed late.
pub const SLICE: Duration = Duration::from_millis(200);

/// How often [`open`] looks for a queue that does not exist yet.
const OPEN_SLICE: Duration = Duration::from_millis(10);

/// An open queue descriptor; `Drop` closes it (`mq_close`), leaving the queue itself
/// alone (that is [`Unlink`]'s job).
pub struct Queue {
    mqd: MqdT,
    msgsize: usize,
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: a second handle on our own open descriptor, given to mq_close once,
        // here; `self.mqd` has no Drop of its own, so the descriptor is closed only once.
        let _ = mq_close(unsafe { MqdT::from_raw_fd(self.mqd.as_raw_fd()) });
    }
}

/// The descriptor, for `poll(2)`/`epoll(7)` beside other fds (Linux: an mqd_t is an fd).
/// Readable (POLLIN): a message waits; writable (POLLOUT): there is room for one.
impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mqd.as_fd()
    }
}

/// Waits until at least one of `queues` holds a message, with `poll(2)` on all their
/// descriptors at once (Linux only: a queue descriptor is an fd there), and returns the
/// indices of those that do, in the order given. For at most `timeout` (then
/// ETIMEDOUT; `None`: no limit; `Some(Duration::ZERO)`: look once), asking `stop`
/// every [`SLICE`] and after each signal handler that ran (then EINTR), as
/// [`Queue::receive`] does.
///
/// Readable means a message was there when poll looked: take it with
/// `receive(.., Some(Duration::ZERO), ..)`, which cannot sleep, since another reader
/// of the same queue may have taken it first (then ETIMEDOUT: poll again). Unlike
/// [`Queue::notify`] it needs no signal and no re-arming, watches any number of
/// queues (and, with your own `poll`, sockets and pipes beside them), and more than
/// one process may wait on the same queue.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let (a, b) = (format!("/msgq-doc-poll-a-{}", std::process::id()), format!("/msgq-doc-poll-b-{}", std::process::id()));
/// let (_unlink_a, qa) = msgq_demo::posix::create(&a, 4, 64)?;
/// let (_unlink_b, qb) = msgq_demo::posix::create(&b, 4, 64)?;
/// let quiet = msgq_demo::posix::poll_queues(&[&qa, &qb], Some(Duration::from_millis(20)), &|| false);
/// assert_eq!(quiet, Err(nix::Error::ETIMEDOUT)); // both empty: the deadline
/// qb.send(b"on b", 0, None, &|| false)?;
/// assert_eq!(msgq_demo::posix::poll_queues(&[&qa, &qb], None, &|| false)?, [1]);
/// let mut buffer = qb.buffer();
/// let (len, _) = qb.receive(&mut buffer, Some(Duration::ZERO), &|| false)?;
/// assert_eq!(&buffer[..len], b"on b");
/// # Ok::<(), nix::Error>(())
/// ```
pub fn poll_queues(
    queues: &[&Queue],
    timeout: Option<Duration>,
    stop: &dyn Fn() -> bool,
) -> nix::Result<Vec<usize>> {
    let end = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = end.map(|end| end.saturating_duration_since(Instant::now()));
        let slice = left.map_or(SLICE, |left| left.min(SLICE));
        let mut fds: Vec<PollFd> = queues
            .iter()
            .map(|q| PollFd::new(q.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = PollTimeout::try_from(slice).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) if left.is_some_and(|left| left <= SLICE) => return Err(Errno::ETIMEDOUT),
            Ok(0) | Err(Errno::EINTR) if stop() => return Err(Errno::EINTR),
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => {
                let readable =
                    |fd: &PollFd| fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
                return Ok((0..fds.len()).filter(|&i| readable(&fds[i])).collect());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes the queue's name when dropped (`mq_unlink`), in the process that made the
/// guard only: a child forked after [`create`] has a copy of this guard and must leave
/// its parent's queue alone. Processes that have it open keep using it until they close
/// it; the name no longer opens it (and is free for a new queue).
pub struct Unlink {
    name: String,
    owner: Pid,
    done: bool,
}

impl Unlink {
    /// The name this guard removes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this process is the one that made the guard (and so removes the name).
    pub fn is_owner(&self) -> bool {
        getpid() == self.owner
    }

    /// Removes the name now, to see the outcome; a copy in a forked child does nothing.
    pub fn unlink(mut self) -> nix::Result<()> {
        self.done = true;
        if !self.is_owner() {
            return Ok(());
        }
        mq_unlink(self.name.as_str())
    }
}

impl Drop for Unlink {
    fn drop(&mut self) {
        if !self.done && self.is_owner() {
            let _ = mq_unlink(self.name.as_str());
        }
    }
}

/// Creates queue `name` (the form is `/somename`, mq_overview(7)), only if it does not exist
/// (O_EXCL: EEXIST otherwise), mode 0600, for reading and writing, holding at most
/// `max_messages` messages of at most `message_size` bytes. The [`Unlink`] guard exists
/// from the moment the queue does, so every way out after this removes it.
///
/// Errors worth telling apart: EEXIST (a run that was killed may have left it: `rm
/// /dev/mqueue/NAME` where the mqueue filesystem is mounted there), EINVAL (a size of 0,
/// or above msg_max / msgsize_max; a process with CAP_SYS_RESOURCE may go past those,
/// up to the kernel's HARD_MSGMAX and HARD_MSGSIZEMAX, but root without that
/// capability, as in many containers, may not), EMFILE
/// (RLIMIT_MSGQUEUE used up by this user's queues, or too many open files), ENOSPC
/// (queues_max queues exist already).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let name = format!("/msgq-doc-create-{}", std::process::id());
/// let (unlink, queue) = msgq_demo::posix::create(&name, 4, 64)?;
/// queue.send(b"hello", 1, Some(Duration::ZERO), &|| false)?;
/// assert_eq!(queue.count()?, 1);
/// drop(queue);
/// unlink.unlink()?; // the name is gone; dropping the guard would do it too
/// # Ok::<(), nix::Error>(())
/// ```
pub fn create(
    name: &str,
    max_messages: usize,
    message_size: usize,
) -> nix::Result<(Unlink, Queue)> {
    let attr = MqAttr::new(0, max_messages as _, message_size as _, 0);
    let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC;
    let mode = Mode::S_IRUSR | Mode::S_IWUSR; // 0600
    // Some(&attr), never None: see the top of this file.
    let mqd = mq_open(name, flags, mode, Some(&attr))?;
    let unlink = Unlink {
        name: name.to_string(),
        owner: getpid(),
        done: false,
    };
    let queue = Queue::new(mqd)?; // on error, `unlink` drops: the queue goes too
    Ok((unlink, queue))
}

/// Opens queue `name`, made by another process, with `flags` (O_RDONLY, O_WRONLY or
/// O_RDWR, and O_NONBLOCK if a receive or send must never sleep; O_CLOEXEC is added).
/// If it does not exist yet, looks again every 10 ms for up to `wait`, so that the two
/// sides may start in either order; `stop` is asked between looks (EINTR if it says
/// so). After `wait`, ENOENT; pass `Duration::ZERO` to fail at once. EACCES: the queue
/// belongs to another user (0600).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nix::mqueue::MQ_OFlag;
/// let name = format!("/msgq-doc-open-{}", std::process::id());
/// let missing = msgq_demo::posix::open(&name, MQ_OFlag::O_WRONLY, Duration::from_millis(30), &|| false);
/// assert_eq!(missing.err(), Some(nix::Error::ENOENT));
/// let (_unlink, _made) = msgq_demo::posix::create(&name, 4, 64)?;
/// let writer = msgq_demo::posix::open(&name, MQ_OFlag::O_WRONLY, Duration::ZERO, &|| false)?;
/// writer.send(b"hi", 0, None, &|| false)?;
/// # Ok::<(), nix::Error>(())
/// ```
pub fn open(
    name: &str,
    flags: MQ_OFlag,
    wait: Duration,
    stop: &dyn Fn() -> bool,
) -> nix::Result<Queue> {
    let end = Instant::now().checked_add(wait);
    loop {
        // Without O_CREAT the two-argument mq_open is right, so `None` is fine here.
        match mq_open(name, flags | MQ_OFlag::O_CLOEXEC, Mode::empty(), None) {
            Ok(mqd) => return Queue::new(mqd),
            Err(Errno::ENOENT) => {
                let left = end.map_or(OPEN_SLICE, |end| {
                    end.saturating_duration_since(Instant::now())
                });
                if left.is_zero() {
                    return Err(Errno::ENOENT);
                }
                if stop() {
                    return Err(Errno::EINTR);
                }
                std::thread::sleep(left.min(OPEN_SLICE));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether queue `name` still exists (a descriptor keeps working after `mq_unlink`, so
/// a side waiting on it may want to know that nobody can open it any more). Needs read
/// permission on the queue; `Err` if the answer is unknown.
pub fn exists(name: &str) -> nix::Result<bool> {
    let flags = MQ_OFlag::O_RDONLY | MQ_OFlag::O_CLOEXEC;
    match mq_open(name, flags, Mode::empty(), None) {
        Ok(mqd) => mq_close(mqd).map(|()| true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The absolute CLOCK_REALTIME time at which the next slice of a wait ends (what
/// mq_timedsend/mq_timedreceive want). `end` is on the monotonic clock, and a slice
/// that times out counts as the last only once that clock has passed `end` ([`passed`]):
/// a forward step of the wall clock during a slice cuts the slice short, never the
/// wait; a backward step stretches that slice, so the wait can end late by the step.
fn next_slice(end: Option<Instant>) -> nix::Result<TimeSpec> {
    let left = end.map(|end| end.saturating_duration_since(Instant::now()));
    let slice = left.map_or(SLICE, |left| left.min(SLICE));
    let now = clock_gettime(ClockId::CLOCK_REALTIME)?;
    Ok(now + TimeSpec::from_duration(slice))
}

/// Whether the monotonic deadline `end` has come (never, for `None`).
fn passed(end: Option<Instant>) -> bool {
    end.is_some_and(|end| Instant::now() >= end)
}

impl Queue {
    fn new(mqd: MqdT) -> nix::Result<Queue> {
        // Into a `Queue` first: its Drop then closes the descriptor if mq_getattr fails.
        let mut queue = Queue { mqd, msgsize: 0 };
        queue.msgsize = queue.attributes()?.msgsize() as usize;
        Ok(queue)
    }

    /// The largest message this queue takes (`mq_msgsize`): a receive buffer must be
    /// at least this long, even for short messages.
    pub fn message_size(&self) -> usize {
        self.msgsize
    }

    /// A buffer [`Queue::receive`] accepts: `mq_msgsize` bytes.
    pub fn buffer(&self) -> Vec<u8> {
        vec![0; self.msgsize]
    }

    /// The queue's attributes now (`mq_getattr`): `maxmsg()`, `msgsize()`, and
    /// `curmsgs()`, the number of messages waiting.
    pub fn attributes(&self) -> nix::Result<MqAttr> {
        mq_getattr(&self.mqd)
    }

    /// How many messages wait in the queue now, as the kernel counts them.
    pub fn count(&self) -> nix::Result<u64> {
        Ok(self.attributes()?.curmsgs() as u64)
    }

    /// Sends `message` with `priority` (0 to 32767 on Linux, 0 to 31 in all of POSIX;
    /// higher comes out first, equal ones in the order sent). While the queue is full it sleeps, for at most
    /// `timeout` (then ETIMEDOUT; `None`: no limit; `Some(Duration::ZERO)`: do not
    /// wait), asking `stop` every [`SLICE`] and after each signal handler that ran
    /// (then EINTR). `stop` is not asked when the message goes in at once. EMSGSIZE: the
    /// message is longer than `mq_msgsize`. EAGAIN: the queue is full and was opened
    /// O_NONBLOCK. EBADF: opened O_RDONLY.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let name = format!("/msgq-doc-send-{}", std::process::id());
    /// let (_unlink, queue) = msgq_demo::posix::create(&name, 1, 64)?;
    /// queue.send(b"fills it", 0, None, &|| false)?;
    /// let full = queue.send(b"no room", 0, Some(Duration::from_millis(20)), &|| false);
    /// assert_eq!(full, Err(nix::Error::ETIMEDOUT));
    /// # Ok::<(), nix::Error>(())
    /// ```
    pub fn send(
        &self,
        message: &[u8],
        priority: u32,
        timeout: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<()> {
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let deadline = next_slice(end)?;
            match timed_send(&self.mqd, message, priority, &deadline) {
                Ok(()) => return Ok(()),
                Err(Errno::ETIMEDOUT) if passed(end) => return Err(Errno::ETIMEDOUT),
                Err(Errno::ETIMEDOUT | Errno::EINTR) if stop() => return Err(Errno::EINTR),
                Err(Errno::ETIMEDOUT | Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the oldest message of the highest priority into `buffer` (at least
    /// [`Queue::message_size`] bytes, else EMSGSIZE) and returns its length and priority.
    /// While the queue is empty it sleeps, for at most `timeout` (then ETIMEDOUT), asking
    /// `stop` as [`Queue::send`] does (then EINTR). EAGAIN: empty, and opened O_NONBLOCK.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let name = format!("/msgq-doc-receive-{}", std::process::id());
    /// let (_unlink, queue) = msgq_demo::posix::create(&name, 4, 64)?;
    /// queue.send(b"low", 1, None, &|| false)?;
    /// queue.send(b"urgent", 9, None, &|| false)?;
    /// let mut buffer = queue.buffer();
    /// let (len, priority) = queue.receive(&mut buffer, None, &|| false)?;
    /// assert_eq!((&buffer[..len], priority), (&b"urgent"[..], 9));
    /// queue.receive(&mut buffer, None, &|| false)?;
    /// let empty = queue.receive(&mut buffer, Some(Duration::from_millis(20)), &|| false);
    /// assert_eq!(empty, Err(nix::Error::ETIMEDOUT));
    /// // No timeout, but a "stop?" that says yes: back after one SLICE with EINTR.
    /// let stopped = queue.receive(&mut buffer, None, &|| true);
    /// assert_eq!(stopped, Err(nix::Error::EINTR));
    /// # Ok::<(), nix::Error>(())
    /// ```
    pub fn receive(
        &self,
        buffer: &mut [u8],
        timeout: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<(usize, u32)> {
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut priority = 0;
        loop {
            let deadline = next_slice(end)?;
            match mq_timedreceive(&self.mqd, buffer, &mut priority, &deadline) {
                Ok(len) => return Ok((len, priority)),
                Err(Errno::ETIMEDOUT) if passed(end) => return Err(Errno::ETIMEDOUT),
                Err(Errno::ETIMEDOUT | Errno::EINTR) if stop() => return Err(Errno::EINTR),
                Err(Errno::ETIMEDOUT | Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// For a queue opened O_NONBLOCK: the next message's length and priority, or `None`
    /// at once if the queue is empty (EAGAIN), where a blocking receive would sleep.
    pub fn try_receive(&self, buffer: &mut [u8]) -> nix::Result<Option<(usize, u32)>> {
        let mut priority = 0;
        match mq_receive(&self.mqd, buffer, &mut priority) {
            Ok(len) => Ok(Some((len, priority))),
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the kernel to send this process `signal` when a message arrives in the
    /// queue while it is empty (`mq_notify`, SIGEV_SIGNAL). One-shot: the signal uses
    /// the registration up, so register again (before reading) to hear of the next one.
    /// One process per queue (EBUSY for a second); no signal if some process is asleep
    /// in a receive: that one gets the message, and the registration stays. The caller
    /// installs the handler (or blocks `signal` and waits for it); this function
    /// installs nothing.
    pub fn notify(&self, signal: Signal) -> nix::Result<()> {
        let event = SigEvent::new(SigevNotify::SigevSignal {
            signal,
            si_value: 0,
        });
        // SAFETY: the sigevent is a valid value the kernel copies during the call.
        let rc = unsafe { libc::mq_notify(self.mqd.as_raw_fd(), &event.sigevent()) };
        Errno::result(rc).map(drop)
    }

    /// A POSIX queue keeps no pid of its users, so a side can mark itself with a lock
    /// the kernel drops when the process dies, SIGKILL included: an open-file-description
    /// lock (F_OFD_SETLK, fcntl(2)) on byte `byte` of this descriptor. It goes when the
    /// last descriptor of that open file description closes: assuming no child forked
    /// after the mark still holds a copy (an exec closes it: queue fds are CLOEXEC, a
    /// fork without exec keeps the lock alive). Needs a descriptor
    /// opened for writing (EBADF otherwise); EAGAIN if another open file description
    /// (another process, or another `mq_open`) holds it already.
    pub fn mark(&self, byte: i64) -> nix::Result<()> {
        fcntl(&self.mqd, FcntlArg::F_OFD_SETLK(&one_byte(byte))).map(drop)
    }

    /// Whether another open file description holds the lock [`Queue::mark`] takes on
    /// `byte`: a peer that marked itself and then died shows as `false`.
    pub fn marked_by_other(&self, byte: i64) -> nix::Result<bool> {
        let mut lock = one_byte(byte);
        fcntl(&self.mqd, FcntlArg::F_OFD_GETLK(&mut lock))?;
        Ok(lock.l_type != libc::F_UNLCK as _)
    }
}

/// A write lock on one byte, as F_OFD_SETLK and F_OFD_GETLK take it (l_pid must be 0).
fn one_byte(byte: i64) -> libc::flock {
    // SAFETY: `flock` is plain data, all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = byte;
    lock.l_len = 1;
    lock
}

/// `mq_timedsend(3)`, which nix lacks: like `mq_send`, but a full queue makes it wait
/// only until `deadline` (ETIMEDOUT).
fn timed_send(mqd: &MqdT, message: &[u8], priority: u32, deadline: &TimeSpec) -> nix::Result<()> {
    // SAFETY: `message` is valid for `message.len()` bytes and `deadline` is a valid
    // timespec; the kernel only reads them, during the call.
    let rc = unsafe {
        libc::mq_timedsend(
            mqd.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            priority,
            deadline.as_ref(),
        )
    };
    Errno::result(rc).map(drop)
}
