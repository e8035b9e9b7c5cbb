//! Parent and child, narrated: the library's `child::fork` and `Child` (which wait
//! for the child with a deadline, by SIGCHLD and waitpid on its pid), plus what this
//! demo decides around them.
//!
//! Ctrl+C must not leave a zombie either. The parent keeps SIGINT, SIGTERM and SIGHUP
//! blocked too and takes them in the same waits; then it passes the signal on to the
//! child, reaps it, and only then dies of the signal (main.rs). A `Kid` dropped
//! before it was reaped (an error path) is killed and reaped by the library's `Drop`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use signal_demo::catch;
use signal_demo::child::{self, Change, Child, Forked};

use crate::say;
use crate::stop::{self, Stopped};

/// The child, as its parent sees it.
pub struct Kid(Child);

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
    let stop = stop::stop_signals();
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that some other thread held at the moment of fork.
    match unsafe { child::fork(&stop) }.context("fork")? {
        Forked::Parent(kid) => Ok(Side::Parent(Kid(kid))),
        Forked::Child => {
            for sig in stop.iter() {
                catch::default_action(sig as i32).with_context(|| format!("sigaction {sig}"))?;
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
        self.0.pid()
    }

    /// A look without waiting: how it ended, if it has (it is then reaped).
    pub fn has_ended(&mut self) -> Result<Option<WaitStatus>> {
        self.0.try_wait().context("waitpid")
    }

    /// Waits up to `limit` for the child to stop, continue or end, as a shell waits
    /// for its job (waitpid with WUNTRACED and WCONTINUED). SIGINT, SIGTERM or
    /// SIGHUP meanwhile: `Stopped`, after `role` says so.
    pub fn wait_change(&mut self, role: &str, limit: Duration) -> Result<WaitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .0
                .wait_change(&stop::stop_signals(), left)
                .context("waitpid")?
            {
                Change::Child(status) => return Ok(status),
                Change::Signal(c) => stop::stop_if_asked(role, &c)?,
                Change::TimedOut => bail!(
                    "the reader (pid {}) did not stop, continue or end within {limit:?}",
                    self.pid()
                ),
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
                        self.0.end(sig);
                        asked_to_stop = Some(sig);
                    }
                    None => return Err(e), // it did not end in time: `Drop` kills it
                },
            }
        };
        let pid = self.pid();
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
        self.0.end(sig);
        let _ = self.reap(role, limit);
    }
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
