//! System V message queues (svipc(7)): `msgget`, `msgsnd`, `msgrcv`, `msgctl`.
//!
//! A queue is found by a number, its key, and named by the id `msgget` returns (`ipcs
//! -q` lists both); it lives in the kernel until `msgctl(IPC_RMID)`, which removes it
//! at once and wakes its sleepers with EIDRM. Each message carries a type, a number > 0
//! the sender picks, and a receive selects by it: `msgtyp` 0 takes the oldest message,
//! `msgtyp` > 0 the oldest of exactly that type, `msgtyp` < 0 the oldest of the lowest
//! type up to |msgtyp|. The limits are in /proc/sys/kernel: msgmax bytes a message,
//! msgmnb bytes a queue (its `msg_qbytes`).
//!
//! Copy this file as a module; it needs nix (feature `process`, for getpid) and libc:
//! nix has no System V IPC, so each call is wrapped once below in a small safe
//! function. It installs no handler and arms no timer.
//!
//! Waiting, and the trade-off: `msgsnd`/`msgrcv` have no timed form. With `timeout:
//! None`, [`Queue::send`] and [`Queue::receive`] sleep in the kernel, woken at once by
//! room or a message, and by a signal whose handler ran (EINTR: signal(7) lists these
//! calls as never restarted), after which they ask `stop`; with no signal coming, `stop`
//! is never asked. With `timeout: Some(..)` they try with IPC_NOWAIT and sleep
//! [`POLL_SLICE`] between tries, asking `stop` each time: bounded without any timer, but
//! up to one slice late, waking a hundred times a second, and a polling sender can be
//! overtaken by one the kernel keeps asleep in line.

use std::ffi::{c_int, c_long};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::{Pid, getpid};

/// The largest message text a [`Queue`]'s buffer holds. msgmax is 8192 unless someone
/// raised it.
pub const MAX_TEXT: usize = 64 * 1024;

/// How long a timed wait sleeps between two IPC_NOWAIT tries.
pub const POLL_SLICE: Duration = Duration::from_millis(10);

/// The C `struct msgbuf`: a `long` type, then the text. The size given to msgsnd and
/// msgrcv counts the text only.
#[repr(C)]
struct MsgBuf {
    mtype: c_long,
    mtext: [u8; MAX_TEXT],
}

/// A queue as one process uses it: its id and a message buffer. Dropping it removes
/// nothing (that is [`Remove`]'s job): a System V queue has no descriptor to close.
pub struct Queue {
    id: c_int,
    buffer: Box<MsgBuf>,
    /// The text length of the last message received into `buffer`.
    received: usize,
}

/// Removes the queue when dropped (`msgctl(IPC_RMID)`), in the process that made the
/// guard only: a child forked after [`create`] has a copy and must leave its parent's
/// queue alone.
pub struct Remove {
    id: c_int,
    owner: Pid,
    done: bool,
}

impl Remove {
    /// The id of the queue this guard removes.
    pub fn id(&self) -> c_int {
        self.id
    }

    /// Whether this process is the one that made the guard (and so removes the queue).
    pub fn is_owner(&self) -> bool {
        getpid() == self.owner
    }

    /// Removes the queue now, with any message still in it, to see the outcome; a copy
    /// in a forked child does nothing.
    pub fn remove(mut self) -> nix::Result<()> {
        self.done = true;
        if !self.is_owner() {
            return Ok(());
        }
        remove(self.id)
    }
}

impl Drop for Remove {
    fn drop(&mut self) {
        if !self.done && self.is_owner() {
            let _ = remove(self.id);
        }
    }
}

/// Creates the queue for `key`, only if none exists (IPC_EXCL: EEXIST otherwise; [`open`]
/// with `Duration::ZERO` then finds its id for `ipcrm -q ID`), mode 0600. The [`Remove`]
/// guard exists from the moment the queue does. ENOSPC: msgmni queues exist already.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let key = 0x4d00_0000 | std::process::id() as i32; // 'M' then the pid
/// let (remove, mut queue) = msgq_demo::sysv::create(key)?;
/// queue.send(1, b"first", None, &|| false)?;
/// queue.send(2, b"urgent", None, &|| false)?;
/// let (text, mtype) = queue.receive(2, Some(Duration::ZERO), &|| false)?; // type 2 only
/// assert_eq!((text, mtype), (&b"urgent"[..], 2));
/// assert_eq!(queue.stat()?.msg_qnum, 1);
/// remove.remove()?; // gone at once, "first" with it; dropping the guard would do it too
/// # Ok::<(), nix::Error>(())
/// ```
pub fn create(key: i32) -> nix::Result<(Remove, Queue)> {
    // SAFETY: plain integers in and out, no memory is shared with the kernel.
    let id = Errno::result(unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })?;
    let remove = Remove {
        id,
        owner: getpid(),
        done: false,
    };
    Ok((remove, Queue::new(id)))
}

/// Finds the queue for `key`, made by another process. If there is none yet, looks
/// again every [`POLL_SLICE`] for up to `wait`, so that the two sides may start in
/// either order; `stop` is asked between looks (EINTR if it says so). After `wait`,
/// ENOENT; pass `Duration::ZERO` to fail at once. EACCES: another user's queue (0600).
/// EINVAL, before any call: `key` 0 is IPC_PRIVATE, for which `msgget` never finds a
/// queue but makes a new one (mode 0, with no guard to remove it) on every call.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let key = 0x4d40_0000 | std::process::id() as i32; // 'M', bit 22 (no pid has it), the pid
/// let missing = msgq_demo::sysv::open(key, Duration::from_millis(30), &|| false);
/// assert_eq!(missing.err(), Some(nix::Error::ENOENT));
/// let private = msgq_demo::sysv::open(libc::IPC_PRIVATE, Duration::ZERO, &|| false);
/// if let Ok(leaked) = &private {
///     let _ = msgq_demo::sysv::remove(leaked.id()); // what the bug left: clean it up
/// }
/// assert_eq!(private.err(), Some(nix::Error::EINVAL)); // nothing was made
/// let (_remove, made) = msgq_demo::sysv::create(key)?;
/// let mut queue = msgq_demo::sysv::open(key, Duration::ZERO, &|| false)?;
/// assert_eq!(queue.id(), made.id());
/// let empty = queue.receive(0, Some(Duration::from_millis(30)), &|| false);
/// assert_eq!(empty.err(), Some(nix::Error::ETIMEDOUT));
/// let stopped = queue.receive(0, Some(Duration::from_secs(60)), &|| true);
/// assert_eq!(stopped.err(), Some(nix::Error::EINTR)); // asked after the first try
/// # Ok::<(), nix::Error>(())
/// ```
pub fn open(key: i32, wait: Duration, stop: &dyn Fn() -> bool) -> nix::Result<Queue> {
    if key == libc::IPC_PRIVATE {
        return Err(Errno::EINVAL); // msgget(IPC_PRIVATE, 0) would create, not find
    }
    let end = Instant::now().checked_add(wait);
    loop {
        // SAFETY: plain integers in and out, no memory is shared with the kernel.
        match Errno::result(unsafe { libc::msgget(key, 0) }) {
            Ok(id) => return Ok(Queue::new(id)),
            Err(Errno::ENOENT) => {
                let left = end.map_or(POLL_SLICE, |end| {
                    end.saturating_duration_since(Instant::now())
                });
                if left.is_zero() {
                    return Err(Errno::ENOENT);
                }
                if stop() {
                    return Err(Errno::EINTR);
                }
                std::thread::sleep(left.min(POLL_SLICE));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `msgctl(IPC_STAT)` on queue `id`: its bookkeeping. `msg_qnum` messages wait,
/// `msg_cbytes` bytes of `msg_qbytes`; `msg_lspid` and `msg_lrpid` are the pids of the
/// last sender and receiver (0 until the first), which tell a side whether its peer
/// still lives even after a SIGKILL: assuming one writer and one reader, since any
/// process that sends or receives overwrites them, and a pid can be reused once its
/// process is reaped. EIDRM or EINVAL: the queue was removed.
pub fn stat(id: c_int) -> nix::Result<libc::msqid_ds> {
    // SAFETY: msqid_ds is plain integers, for which all zeroes is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one msqid_ds into `ds`, which is exactly that big.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ds)
}

/// `msgctl(IPC_RMID)` on queue `id`: removes it at once; sleepers on it wake with EIDRM.
pub fn remove(id: c_int) -> nix::Result<()> {
    // SAFETY: IPC_RMID reads no buffer, so a null one is allowed.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// Where the wait of a send or receive stands after one try found no room or no message.
fn keep_waiting(end: Option<Instant>, stop: &dyn Fn() -> bool) -> nix::Result<()> {
    if end.is_some_and(|end| Instant::now() >= end) {
        return Err(Errno::ETIMEDOUT);
    }
    if stop() {
        return Err(Errno::EINTR);
    }
    std::thread::sleep(POLL_SLICE);
    Ok(())
}

impl Queue {
    fn new(id: c_int) -> Queue {
        let buffer = Box::new(MsgBuf {
            mtype: 0,
            mtext: [0; MAX_TEXT],
        });
        Queue {
            id,
            buffer,
            received: 0,
        }
    }

    /// The queue's id, as `ipcs -q` shows it and `ipcrm -q` takes it.
    pub fn id(&self) -> c_int {
        self.id
    }

    /// Another handle on the same queue, with its own buffer (say, for the other
    /// direction of a conversation carried by two message types).
    pub fn another(&self) -> Queue {
        Queue::new(self.id)
    }

    /// The queue's bookkeeping: see [`stat`].
    pub fn stat(&self) -> nix::Result<libc::msqid_ds> {
        stat(self.id)
    }

    /// Queues `text` as a message of type `mtype` (> 0, else EINVAL). While the queue
    /// is full it waits as the top of this file says: `timeout` `None` sleeps in msgsnd,
    /// `Some(t)` polls for up to `t` (then ETIMEDOUT; `Some(Duration::ZERO)`: one try).
    /// EINTR: `stop` said so. EINVAL: longer than msgmax, or the queue was removed (EIDRM
    /// too). A text longer than [`MAX_TEXT`] is E2BIG, before any call.
    pub fn send(
        &mut self,
        mtype: c_long,
        text: &[u8],
        timeout: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<()> {
        if text.len() > MAX_TEXT {
            return Err(Errno::E2BIG);
        }
        // msgsnd wants the type in front of the text: one copy into our buffer.
        self.buffer.mtype = mtype;
        self.buffer.mtext[..text.len()].copy_from_slice(text);
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        let flags = if timeout.is_some() {
            libc::IPC_NOWAIT
        } else {
            0
        };
        loop {
            let buf = (&*self.buffer as *const MsgBuf).cast();
            // SAFETY: `buf` is a valid msgbuf whose text holds `text.len()` bytes; the
            // kernel reads the type and those bytes during the call.
            match Errno::result(unsafe { libc::msgsnd(self.id, buf, text.len(), flags) }) {
                Ok(_) => return Ok(()),
                Err(Errno::EAGAIN) => keep_waiting(end, stop)?,
                Err(Errno::EINTR) if stop() => return Err(Errno::EINTR),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the message `msgtyp` selects (see the top of this file) and returns its
    /// text and type. While there is none it waits as [`Queue::send`] does (ETIMEDOUT,
    /// EINTR likewise). E2BIG: the message is longer than [`MAX_TEXT`] (it stays
    /// queued, and with `msgtyp` 0 every later receive meets it first). The queue was
    /// removed: EIDRM if this call was asleep in msgrcv, EINVAL if it was gone before
    /// the call (with a `timeout`, every try is a new call: expect EINVAL).
    pub fn receive(
        &mut self,
        msgtyp: c_long,
        timeout: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> nix::Result<(&[u8], c_long)> {
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        let flags = if timeout.is_some() {
            libc::IPC_NOWAIT
        } else {
            0
        };
        let len = loop {
            let buf = (&mut *self.buffer as *mut MsgBuf).cast();
            // SAFETY: `buf` is a valid msgbuf with MAX_TEXT bytes of text, the size we
            // pass; the kernel writes the type and at most that many bytes during the call.
            match Errno::result(unsafe { libc::msgrcv(self.id, buf, MAX_TEXT, msgtyp, flags) }) {
                Ok(len) => break len as usize,
                Err(Errno::ENOMSG) => keep_waiting(end, stop)?,
                Err(Errno::EINTR) if stop() => return Err(Errno::EINTR),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        };
        self.received = len;
        Ok(self.last_received())
    }

    /// The last message [`Queue::receive`] took, again: its text and type. For a caller
    /// that could not keep the borrow `receive` returned (say, it returned early).
    pub fn last_received(&self) -> (&[u8], c_long) {
        (&self.buffer.mtext[..self.received], self.buffer.mtype)
    }
}
