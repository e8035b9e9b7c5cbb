//! The default run's second process: the reader starts the writer as a separate program.
//!
//! Not fork(2): the writer is this same binary, run again with `writer` and the address the
//! reader just bound, exactly what you would type in a second terminal. It inherits no
//! socket (std opens everything with O_CLOEXEC, and exec closes those), so the only thing
//! the two processes share is the meeting point: a file name, or an address and port.
//! That is the difference from a pipe or a socketpair, which have no name: another process
//! gets one only as inherited fds (a child) or as fds passed over a Unix socket (`fdpass`).
//!
//! The reader waits for its child, on every way out, and says how it ended.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::args::{Cpus, Flavour, Meet, Workload};
use crate::signals::{self, Interrupted};

const READER: &str = "reader";
/// How long the reader waits for its writer to exit before it gives up on it.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// The messages of the default run when none are given.
pub const DEFAULT_MESSAGES: [&str; 3] = ["hello", "through a socket", "via the kernel"];

/// The writer process the default run started; reaped on every way out.
pub struct WriterChild {
    child: Child,
    pid: Pid,
    status: Option<ExitStatus>,
}

/// Runs `socket-demo writer FLAVOUR --path P ...` (or `--addr`), the default run's writer.
pub fn start_writer(
    flavour: Flavour,
    meet: &Meet,
    workload: &Workload,
    file: Option<&Path>,
    cpus: Option<Cpus>,
) -> Result<WriterChild> {
    let mut args: Vec<OsString> = vec!["writer".into(), flavour.name().into()];
    let by = match meet {
        Meet::Path(path) => {
            args.extend(["--path".into(), path.into()]);
            if crate::meeting::is_abstract(path) {
                "the abstract name"
            } else {
                "the socket file's name"
            }
        }
        Meet::Addr(addr) => {
            args.extend(["--addr".into(), addr.to_string().into()]);
            "the address and port"
        }
    };
    if let Some(cpus) = cpus {
        args.extend([
            "--cpus".into(),
            format!("{},{}", cpus.writer, cpus.reader).into(),
        ]);
    }
    match (workload, file) {
        (_, Some(file)) => args.extend(["--file".into(), file.into()]),
        (Workload::Bulk { count, size }, None) => args.extend(
            ["--count", &count.to_string(), "--size", &size.to_string()].map(OsString::from),
        ),
        (Workload::Ping { count, size }, None) => args.extend(
            ["--ping", &count.to_string(), "--size", &size.to_string()].map(OsString::from),
        ),
        (Workload::Text(messages), None) => {
            args.push("--".into());
            if messages.is_empty() {
                args.extend(DEFAULT_MESSAGES.map(OsString::from));
            } else {
                args.extend(messages.iter().map(OsString::from));
            }
        }
    }
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(' ') || a.is_empty() {
                format!("{a:?}")
            } else {
                a.into_owned()
            }
        })
        .collect();
    say!(
        READER,
        "starting the writer as a separate program: socket-demo {}",
        shown.join(" ")
    );
    let exe = std::env::current_exe().context("finding my own program (current_exe)")?;
    let _ = std::io::stdout().flush(); // our lines first, then the writer's
    let child = Command::new(&exe)
        .args(&args)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting the writer {}", exe.display()))?;
    let pid = Pid::from_raw(child.id() as i32);
    say!(
        READER,
        "the writer is pid {pid}: it inherited no socket from me, it finds mine by {by} alone"
    );
    signals::watch(pid);
    Ok(WriterChild {
        child,
        pid,
        status: None,
    })
}

impl WriterChild {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits (at most `limit`) until the writer has sent everything and exited, then reaps
    /// it. Returns false if it is still running at the deadline.
    pub fn wait_until_exited(&mut self, limit: Duration) -> Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(sig) = signals::caught() {
                return Err(Interrupted(sig).into());
            }
            if let Some(status) = self.child.try_wait().context("waitpid")? {
                self.reaped(status);
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the writer to exit (killing it if it has not within a deadline), and
    /// says how it ended. An `Err` unless it exited with status 0.
    pub fn reap(mut self) -> Result<()> {
        let status = self.wait_or_kill()?;
        if status.success() {
            Ok(())
        } else {
            bail!("the writer (pid {}) failed: {}", self.pid, describe(status))
        }
    }

    fn wait_or_kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let deadline = Instant::now() + EXIT_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().context("waitpid")? {
                self.reaped(status);
                return Ok(status);
            }
            if Instant::now() > deadline {
                say!(
                    READER,
                    "the writer {} has not exited {EXIT_DEADLINE:?} after the end: killing it",
                    self.pid
                );
                let _ = kill(self.pid, Signal::SIGKILL);
                let status = self.child.wait().context("waitpid")?;
                self.reaped(status);
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn reaped(&mut self, status: ExitStatus) {
        say!(READER, "reaped writer {}: {}", self.pid, describe(status));
        self.status = Some(status);
    }
}

impl Drop for WriterChild {
    /// On an error or Ctrl+C the reader's sockets are closed by now, so the writer sees
    /// EOF, EPIPE or ECONNREFUSED and exits: wait for it, so it is not left a zombie.
    fn drop(&mut self) {
        let _ = self.wait_or_kill();
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => format!("{status}"),
    }
}
