//! Parent and child: the three steps around every pipe in this demo.
//!
//! `fork` makes the child (a copy of us, open pipe ends included), `exit_child`
//! makes sure the child never returns into the parent's code, and `reap` waits for
//! the child so it does not linger as a zombie, and says how it ended.

use anyhow::{Context, Result};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, getpid, getppid};
use std::io::Write;

use crate::say;

/// Which process we are after `fork`.
pub enum Side {
    Parent {
        child: Pid,
    },
    /// `parent` is the pid the parent had before fork. Not getppid() in the child:
    /// a parent killed right after fork has already made the child an orphan.
    Child {
        parent: Pid,
    },
}

/// Forks. Both processes return from here, each holding a copy of every open fd.
pub fn fork() -> Result<Side> {
    // A line still in our stdout buffer would be copied into the child and printed
    // twice.
    let _ = std::io::stdout().flush();
    let parent = getpid();
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that some other thread held at the moment of fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Parent { child } => Ok(Side::Parent { child }),
        ForkResult::Child => Ok(Side::Child { parent }),
    }
}

/// Ends the child with the outcome of its work: 0, or 1 after saying what failed.
///
/// The child must not return into `main`: the rest of `main` is the parent's.
pub fn exit_child(outcome: Result<()>) -> ! {
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            crate::complain(&format!("error: {e:#}"));
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Waits for `child` (so it leaves no zombie) and narrates how it ended.
/// An `Err` if it did not exit with status 0.
pub fn reap(role: &str, child: Pid, what: &str) -> Result<()> {
    match wait_for(role, child, what)? {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => {
            anyhow::bail!("the {what} (pid {child}) failed with exit status {code}")
        }
        WaitStatus::Signaled(_, signal, _) => {
            anyhow::bail!("the {what} (pid {child}) was killed by {signal}")
        }
        other => anyhow::bail!("the {what} (pid {child}) ended oddly: {other:?}"),
    }
}

/// Waits for `child`, narrates how it ended, and returns that for the caller to judge.
pub fn wait_for(role: &str, child: Pid, what: &str) -> Result<WaitStatus> {
    let status = waitpid(child, None).with_context(|| format!("waitpid {what} {child}"))?;
    match status {
        WaitStatus::Exited(_, code) => {
            say!(role, "reaped {what} {child}: exited with status {code}")
        }
        WaitStatus::Signaled(_, signal, _) => {
            say!(role, "reaped {what} {child}: killed by {signal}")
        }
        _ => {}
    }
    Ok(status)
}

/// In a child that just read EOF from `parent`: did the parent die (EOF because the
/// kernel closed its fds), or close its end on purpose? A dead parent, even one
/// killed by SIGKILL, is seen by something the kernel keeps: we are re-parented, so
/// getppid(2) changes. A live one soon sleeps where its code waits next (`waits_in`,
/// a kernel function named in /proc/PID/wchan). The kernel closes a dying process's
/// fds a moment before it re-parents its children, so look for up to two seconds; a
/// parent that is neither dead nor asleep there by then (stopped, say) counts as alive.
pub fn parent_died(parent: Pid, waits_in: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        if getppid() != parent {
            return true;
        }
        let stat = std::fs::read_to_string(format!("/proc/{parent}/stat")).unwrap_or_default();
        let wchan = std::fs::read_to_string(format!("/proc/{parent}/wchan")).unwrap_or_default();
        match stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
        {
            Some('S') if wchan.contains(waits_in) => return false,
            Some('Z' | 'X') | None => return true,
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    false
}

/// Pins this process to one CPU (`sched_setaffinity`), if asked: `--cpus`.
pub fn run_on_cpu(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}
