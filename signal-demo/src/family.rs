//! Parent and child: fork, the child's exit, and waiting for the child with a deadline.
//!
//! waitpid(2) has no timeout, and a parent that waits forever for a stuck child hangs
//! too. So the parent blocks SIGCHLD before fork (the kernel sends it each time a
//! child stops, continues or ends) and sleeps in sigtimedwait(2) for it, with a
//! timeout, between two waitpid(WNOHANG) looks. Blocked, a SIGCHLD that comes before
//! the parent starts waiting stays pending, so the wake-up is never missed; several
//! child events may merge into one SIGCHLD (a standard signal is one pending bit),
//! which is why each wake-up looks with waitpid again rather than count signals. Signals telling a parent about
//! its children: the oldest use of the mechanism.
//!
//! Ctrl+C must not leave a zombie either. The parent keeps SIGINT, SIGTERM and SIGHUP blocked
//! too and takes them in the same waits; then it passes the signal on to the child,
//! reaps it, and only then dies of the signal (main.rs). A `Kid` dropped before it was
//! reaped (an error path) is killed and reaped by its `Drop`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigmaskHow, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::catch::{self, Stopped};
use crate::{ffi, say};

/// The child, as its parent sees it.
pub struct Kid {
    pid: Pid,
    /// Its end, once waitpid has reported it (then it is reaped: no second look).
    ended: Option<WaitStatus>,
}

/// Which process we are after `fork`.
pub enum Side {
    Parent(Kid),
    Child,
}

/// Forks. Both processes return from here with a copy of everything: memory, open
/// file descriptors, signal handlers and the signal mask.
///
/// The parent's waits take SIGCHLD, SIGINT, SIGTERM and SIGHUP, so they are blocked
/// before fork: one that comes at once stays pending. The child gets back the mask we
/// had before: these four are the parent's business. And since the parent ends it by
/// passing SIGINT, SIGTERM or SIGHUP on, the child gives those three their default
/// action (end), even if we were started with them ignored.
pub fn fork() -> Result<Side> {
    let before = (catch::stop_signals() | Signal::SIGCHLD)
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .context("sigprocmask SIGCHLD SIGINT SIGTERM")?;
    // A line still in our stdout buffer would be copied into the child and printed
    // twice.
    let _ = std::io::stdout().flush();
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that some other thread held at the moment of fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Parent { child } => Ok(Side::Parent(Kid {
            pid: child,
            ended: None,
        })),
        ForkResult::Child => {
            before.thread_set_mask().context("sigprocmask")?;
            for sig in catch::stop_signals().iter() {
                catch::default_action(sig).with_context(|| format!("sigaction {sig}"))?;
            }
            Ok(Side::Child)
        }
    }
}

/// Ends the child with the outcome of its work: 0, or 1 after saying what failed.
/// Asked to stop (SIGINT, SIGTERM, SIGHUP), it dies of that signal, as `main` does, so the
/// parent sees why. The child must not return into `main`: the rest of `main` is the
/// parent's.
pub fn exit_child(outcome: Result<()>) -> ! {
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            if let Some(&Stopped(sig)) = e.downcast_ref::<Stopped>() {
                catch::die_of(sig); // does not return
            }
            _ = writeln!(std::io::stderr(), "error: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

impl Kid {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// A look without waiting: how it ended, if it has (it is then reaped).
    pub fn has_ended(&mut self) -> Result<Option<WaitStatus>> {
        if self.ended.is_none() {
            let status = waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).context("waitpid")?;
            if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                self.ended = Some(status);
            }
        }
        Ok(self.ended)
    }

    /// Waits up to `limit` for the child to stop, continue or end, as a shell waits
    /// for its job (waitpid with WUNTRACED and WCONTINUED). SIGINT, SIGTERM or
    /// SIGHUP meanwhile: `Stopped`, after `role` says so.
    pub fn wait_change(&mut self, role: &str, limit: Duration) -> Result<WaitStatus> {
        let deadline = Instant::now() + limit;
        let events = catch::stop_signals() | Signal::SIGCHLD;
        loop {
            if let Some(ended) = self.ended {
                return Ok(ended);
            }
            let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
            match waitpid(self.pid, Some(flags)).context("waitpid")? {
                WaitStatus::StillAlive => {}
                status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    self.ended = Some(status);
                }
                change => return Ok(change),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.ended.is_none() {
                if left.is_zero() {
                    bail!(
                        "the reader (pid {}) did not stop, continue or end within {limit:?}",
                        self.pid
                    );
                }
                // Sleep until the kernel says something happened to a child (SIGCHLD),
                // or Ctrl+C.
                if let Some(c) = ffi::sigtimedwait(&events, left).context("sigtimedwait")? {
                    catch::stop_if_asked(role, &c)?;
                }
            }
        }
    }

    /// Waits up to `limit` for the child to end, reaps it (no zombie is left), and
    /// says how it ended. An `Err` if it did not exit with status 0, or if SIGINT or
    /// SIGTERM came meanwhile: the child gets that signal too, and we still reap it.
    pub fn reap(mut self, role: &str, limit: Duration) -> Result<()> {
        let mut asked_to_stop = None;
        let status = loop {
            match self.wait_change(role, limit) {
                Ok(ended @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break ended,
                Ok(_) => continue, // a stop or a continue: not the end yet
                Err(e) => match e.downcast_ref::<Stopped>() {
                    Some(&Stopped(sig)) => {
                        self.end(sig);
                        asked_to_stop = Some(sig);
                    }
                    None => return Err(e), // it did not end in time: `Drop` kills it
                },
            }
        };
        let pid = self.pid;
        // After waitpid the kernel has freed the child's last trace, its /proc entry.
        let gone = if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            String::new() // the pid was reused already: nothing to show
        } else {
            format!("; /proc/{pid} is gone: no zombie left")
        };
        say!(role, "reaped reader {pid}: {}{gone}", describe(status));
        if let Some(sig) = asked_to_stop {
            return Err(Stopped(sig).into());
        }
        match status {
            WaitStatus::Exited(_, 0) => Ok(()),
            _ => bail!("the reader (pid {pid}) {}", describe(status)),
        }
    }

    /// The error path: the parent gives up because of `why`, so it ends the child
    /// (which may be waiting for it, or stopped) and reaps it, rather than leave it
    /// behind. Stopped by SIGINT, SIGTERM or SIGHUP, it passes that signal on, as a terminal
    /// would have; for any other error, SIGKILL.
    pub fn end_and_reap(mut self, role: &str, why: &anyhow::Error, limit: Duration) {
        let sig = match why.downcast_ref::<Stopped>() {
            Some(&Stopped(sig)) => sig,
            None => Signal::SIGKILL,
        };
        self.end(sig);
        let _ = self.reap(role, limit);
    }

    /// Sends `sig` to the child, unless it has ended, then SIGCONT: a stopped process
    /// dies of SIGKILL at once, of another signal only once it runs again.
    fn end(&mut self, sig: Signal) {
        if matches!(self.has_ended(), Ok(None)) {
            let _ = kill(self.pid, sig);
            let _ = kill(self.pid, Signal::SIGCONT);
        }
    }
}

impl Drop for Kid {
    /// A child not reaped yet: some error path gave up on it. SIGKILL (it works on a
    /// stopped process too, and cannot be caught), then a waitpid that blocks: no
    /// zombie and no child left running, whatever happened.
    fn drop(&mut self) {
        if self.ended.is_none() {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Pins this process to one CPU (`sched_setaffinity`), if asked: `--cpus`.
pub fn run_on_cpu(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}

/// How a child ended, in words: "exited with status 0", "killed by SIGKILL".
pub fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
        WaitStatus::Stopped(_, sig) => format!("stopped by {sig}"),
        WaitStatus::Continued(_) => "continued".into(),
        other => format!("{other:?}"),
    }
}
