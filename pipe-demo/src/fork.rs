//! A parent and the child it forks, joined by pipes: fork with a role, each process
//! closing the ends it does not use; the child telling its parent's death from a
//! clean EOF; the parent waiting for exactly its child.
//!
//! An anonymous pipe has no name: the only way to share it is that fork(2) copies
//! every open fd into the child. After the fork both processes hold both ends of
//! every pipe, and each must close the ones it will not use. A reader that keeps
//! its copy of the write end never sees EOF; a writer that keeps a read end never
//! sees EPIPE. The `fork_*` functions here do those closes, in both processes.
//!
//! Needs only std and nix (features "process"), and [`wait`] from `pipeline.rs`.

use nix::unistd::{ForkResult, Pid, getpid, getppid};
use std::io::{Result, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Which process we are after a fork, with the pipe ends it kept.
pub enum Forked<P, C> {
    /// The parent, with the child's pid and the parent's ends.
    Parent {
        /// The child: wait for it with [`wait`].
        child: Pid,
        /// The ends the parent kept.
        ends: P,
    },
    /// The child, with the parent's pid from before the fork and the child's ends.
    /// It must end with `std::process::exit` or `_exit`, never by returning into
    /// the parent's code.
    Child {
        /// Not getppid() in the child: a parent killed right after the fork has
        /// already made the child an orphan, and getppid() names its new parent.
        parent: Pid,
        /// The ends the child kept.
        ends: C,
    },
}

/// Each side's two ends when there is a pipe each way ([`fork_both_ways`]).
pub struct TwoWay {
    /// The write end of the pipe towards the other process.
    pub to_peer: OwnedFd,
    /// The read end of the pipe from the other process.
    pub from_peer: OwnedFd,
}

/// Forks; the parent keeps the write end of each pipe in `pipes` (given as
/// `(read_end, write_end)`, as [`crate::pipe::create`] makes them), the child the
/// read end, in the same order. Each process closes the other ends at once, so the
/// child sees EOF when the parent closes its write end (or dies), and the parent
/// sees EPIPE once the child has closed its read end (or died).
///
/// Flushes stdout first: a line still in its buffer would be copied into the child
/// and printed twice.
///
/// # Safety
/// Only in a single-threaded program: the child goes on running your Rust code
/// (allocating, locking stdout), and with one thread only; a lock another thread held
/// at the moment of fork (the allocator's, stdout's) stays locked in it forever. A
/// child that only execs needs no such care: use [`crate::pipeline`].
///
/// # Examples
/// ```
/// use pipe_demo::{fork::{self, Forked}, pipe};
/// // SAFETY: a doctest runs in a process of its own, with one thread.
/// match unsafe { fork::fork_parent_writes([pipe::create()?]) }? {
///     Forked::Child { ends: [from_parent], .. } => {
///         let mut got = [0u8; 2];
///         let ok = pipe::read_exact(&from_parent, &mut got).is_ok_and(|some| some)
///             && &got == b"hi"
///             && !pipe::read_exact(&from_parent, &mut got).unwrap_or(true); // EOF
///         std::process::exit(if ok { 0 } else { 1 })
///     }
///     Forked::Parent { child, ends: [to_child] } => {
///         pipe::write_all(&to_child, b"hi")?;
///         drop(to_child); // the child's EOF: it closed its own copy, so ours was the last
///         let status = fork::wait(child)?;
///         assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub unsafe fn fork_parent_writes<const N: usize>(
    pipes: [(OwnedFd, OwnedFd); N],
) -> Result<Forked<[OwnedFd; N], [OwnedFd; N]>> {
    // SAFETY: the caller promises one thread.
    Ok(match unsafe { fork() }? {
        Forked::Parent { child, .. } => Forked::Parent {
            child,
            ends: pipes.map(|(_read_end, write_end)| write_end),
        },
        Forked::Child { parent, .. } => Forked::Child {
            parent,
            ends: pipes.map(|(read_end, _write_end)| read_end),
        },
    })
}

/// Forks with a pipe each way: `down` (parent → child) and `up` (child → parent),
/// each given as `(read_end, write_end)`. A pipe carries data one way only, so
/// talking both ways takes two. Each process keeps one end of each and closes the
/// other two at once, so every EOF and every EPIPE arrives.
///
/// Flushes stdout first, as [`fork_parent_writes`].
///
/// # Safety
/// As [`fork_parent_writes`]: only in a single-threaded program.
///
/// # Examples
/// ```
/// use pipe_demo::{fork::{self, Forked, TwoWay}, pipe};
/// // SAFETY: a doctest runs in a process of its own, with one thread.
/// match unsafe { fork::fork_both_ways(pipe::create()?, pipe::create()?) }? {
///     Forked::Child { ends: TwoWay { to_peer, from_peer }, .. } => {
///         let mut byte = [0u8; 1]; // echo one byte back, in capitals
///         let ok = pipe::read_exact(&from_peer, &mut byte).is_ok_and(|some| some)
///             && pipe::write_all(&to_peer, &byte.to_ascii_uppercase()).is_ok();
///         std::process::exit(if ok { 0 } else { 1 })
///     }
///     Forked::Parent { child, ends: TwoWay { to_peer, from_peer } } => {
///         pipe::write_all(&to_peer, b"a")?;
///         let mut reply = [0u8; 1];
///         assert!(pipe::read_exact(&from_peer, &mut reply)?);
///         assert_eq!(&reply, b"A");
///         assert_eq!(fork::wait(child)?, nix::sys::wait::WaitStatus::Exited(child, 0));
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub unsafe fn fork_both_ways(
    down: (OwnedFd, OwnedFd),
    up: (OwnedFd, OwnedFd),
) -> Result<Forked<TwoWay, TwoWay>> {
    let ((down_r, down_w), (up_r, up_w)) = (down, up);
    // SAFETY: the caller promises one thread.
    Ok(match unsafe { fork() }? {
        Forked::Parent { child, .. } => Forked::Parent {
            child,
            ends: TwoWay {
                to_peer: down_w,
                from_peer: up_r,
            },
        },
        Forked::Child { parent, .. } => Forked::Child {
            parent,
            ends: TwoWay {
                to_peer: up_w,
                from_peer: down_r,
            },
        },
    })
}

/// fork(2), keeping the parent's pid from before it; both processes hold every fd.
///
/// # Safety
/// As [`fork_parent_writes`].
unsafe fn fork() -> Result<Forked<(), ()>> {
    let _ = std::io::stdout().flush();
    let parent = getpid();
    // SAFETY: the caller promises one thread.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent { child, ends: () }),
        ForkResult::Child => Ok(Forked::Child { parent, ends: () }),
    }
}

/// Waits for `child` to end (waitpid on its pid, never -1), as in [`crate::pipeline`]:
/// a child that is never waited for stays a zombie until its parent ends.
pub use crate::pipeline::wait;

/// In a child: has `parent` (its pid from before the fork) died? Something the
/// kernel keeps tells, even after a SIGKILL that ran none of the parent's code: an
/// orphan is re-parented (to init or a subreaper), so getppid(2) changes.
pub fn parent_gone(parent: Pid) -> bool {
    getppid() != parent
}

/// In a child that just read EOF from `parent`: did the parent die (the kernel closed
/// its fds), or close its end on purpose and go on? A live parent soon sleeps in the
/// kernel function its code waits in next: `waits_in` is matched as a part of what
/// /proc/PID/wchan shows ("pipe_write" matches the anon_pipe_write of recent
/// kernels; "do_wait" a parent in waitpid). The kernel closes a dying process's fds
/// a moment before it re-parents its children, so this looks for up to `limit` (the
/// demo gives it two seconds); a parent neither dead nor asleep there by then
/// (stopped, say) counts as alive.
pub fn parent_died(parent: Pid, waits_in: &str, limit: Duration) -> bool {
    // Capped at 136 years: `Instant + Duration::MAX` would panic.
    let deadline = Instant::now() + limit.min(Duration::from_secs(u32::MAX as u64));
    while Instant::now() < deadline {
        if parent_gone(parent) {
            return true;
        }
        match proc_state(parent) {
            Some(('S', wchan)) if wchan.contains(waits_in) => return false,
            Some(('Z' | 'X', _)) | None => return true,
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    false
}

/// What the kernel shows of process `pid`: its state letter from /proc/PID/stat
/// (R running, S asleep, T stopped, Z zombie...) and the kernel function it sleeps
/// in, from /proc/PID/wchan ("0" or empty when running). `None` if there is no such
/// process. What `ps -o state,wchan` shows.
pub fn proc_state(pid: Pid) -> Option<(char, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces and ')': the state follows
    // the last ')'.
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    Some((state, wchan))
}
