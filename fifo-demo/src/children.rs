//! The default run's children: `fifo-demo reader` and `fifo-demo writer` started afresh
//! from our own binary with `Command`, which execs it in the new process (not a fork(2)
//! that goes on running our code). Every fd of ours is O_CLOEXEC, so they share no open
//! FIFO, only its path: two unrelated programs, as if typed into two terminals.
//!
//! `Children` watches them: it reaps each one and says how it ended, stops the others if
//! one fails, passes on a SIGINT/SIGTERM/SIGHUP we receive, and puts a deadline on every wait,
//! so the default run never hangs and never leaves a process behind. If main itself dies
//! of SIGKILL, the kernel sends a reader SIGTERM (PR_SET_PDEATHSIG): waiting for a writer
//! that main will never start, it cleans up and ends. A writer needs no such signal: it
//! watches its reader by pid (`P.pid`), and says what a dead one left.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fifo_demo::{process, stop};
use nix::sys::signal::Signal;

const ROLE: &str = "main";
/// How often we look at the children. Polling keeps this file short; a supervisor in
/// production would sleep in poll(2) on pidfds and a signalfd instead.
const TICK: Duration = Duration::from_millis(1);
/// How long a child may take to reach open(2), or to finish once its peer has exited.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a child we stop gets to clean up (unlink the FIFO) before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

struct Child {
    role: &'static str,
    process: std::process::Child,
    status: Option<ExitStatus>,
}

impl Child {
    fn pid(&self) -> u32 {
        self.process.id()
    }
}

pub struct Children {
    list: Vec<Child>,
}

impl Children {
    pub fn new() -> Children {
        Children { list: Vec::new() }
    }

    /// Runs `fifo-demo ROLE ARGS...`. Its stdout is ours, so its lines appear as it
    /// prints them; its stdin is /dev/null.
    pub fn spawn(&mut self, role: &'static str, args: &[String]) -> Result<u32> {
        self.start(role, args, None)
    }

    /// Runs `fifo-demo ROLE ARGS... < INPUT`: a writer with no MESSAGE sends each line
    /// of its standard input.
    pub fn spawn_with_input(
        &mut self,
        role: &'static str,
        args: &[String],
        input: &Path,
    ) -> Result<u32> {
        self.start(role, args, Some(input))
    }

    fn start(&mut self, role: &'static str, args: &[String], input: Option<&Path>) -> Result<u32> {
        let exe = std::env::current_exe().context("find our own binary")?;
        let stdin = match input {
            Some(path) => {
                Stdio::from(File::open(path).with_context(|| format!("open {}", path.display()))?)
            }
            None => Stdio::null(),
        };
        let mut command = Command::new(&exe);
        command.arg(role).args(args).stdin(stdin);
        if role == "reader" {
            // Main has one thread, so "the thread that started it exits" is main dying.
            process::die_with_parent(&mut command, Signal::SIGTERM);
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {} {role}", exe.display()))?;
        let pid = child.id();
        let mut shown: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
        if let Some(path) = input {
            shown.push(format!("< {}", shell_word(&path.display().to_string())));
        }
        say!(
            ROLE,
            "started {role} {pid}: fifo-demo {role} {}",
            shown.join(" ")
        );
        self.list.push(Child {
            role,
            process: child,
            status: None,
        });
        Ok(pid)
    }

    /// Waits until the child `pid` (the reader) is asleep in open(2) on
    /// `fifo`, waiting for the other side to open it. Returns the kernel function it
    /// sleeps in.
    pub fn wait_until_opening(&mut self, pid: u32, fifo: &Path) -> Result<String> {
        self.wait_until_asleep(pid, fifo, "open(2)", "wait_for_partner")
    }

    /// Waits until the writer `pid` is asleep in write(2): the pipe behind `fifo` is
    /// full. The function is `anon_pipe_write` since Linux 6.x, `pipe_write` before.
    pub fn wait_until_writing(&mut self, pid: u32, fifo: &Path) -> Result<String> {
        self.wait_until_asleep(pid, fifo, "write(2)", "pipe_write")
    }

    /// Waits until `pid` is asleep in the kernel in `call`: the FIFO exists,
    /// /proc/PID/stat says S (sleeping) and /proc/PID/wchan, the kernel function it
    /// sleeps in, contains `wchan`. Returns that function's name.
    fn wait_until_asleep(
        &mut self,
        pid: u32,
        fifo: &Path,
        call: &str,
        wchan: &str,
    ) -> Result<String> {
        let deadline = Instant::now() + DEADLINE;
        let role = self
            .list
            .iter()
            .find(|c| c.pid() == pid)
            .map_or("child", |c| c.role);
        loop {
            self.check()?;
            if self
                .list
                .iter()
                .any(|c| c.pid() == pid && c.status.is_some())
            {
                bail!(
                    "the {role} {pid} exited before it was seen in {call} on {}",
                    fifo.display()
                );
            }
            if fifo.exists() {
                match asleep_in(pid) {
                    Some(Some(name)) if name.contains(wchan) => return Ok(name),
                    // No /proc/PID/wchan on this kernel: asleep with the FIFO made will do.
                    Some(None) => return Ok("unknown: no /proc/PID/wchan here".into()),
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                bail!("the {role} {pid} did not reach {call} within {DEADLINE:?}");
            }
            std::thread::sleep(TICK);
        }
    }

    /// Waits until every child whose role `awaited` picks has exited with status 0.
    pub fn wait_for(&mut self, awaited: impl Fn(&str) -> bool) -> Result<()> {
        let mut peer_gone_at = None;
        loop {
            self.check()?;
            let Some(late) = self
                .list
                .iter()
                .find(|c| c.status.is_none() && awaited(c.role))
            else {
                return Ok(());
            };
            // Once one side has exited, the other has nothing left to wait for: it must
            // follow soon (EOF or EPIPE). If it does not, it is stuck: stop it.
            if self.list.iter().any(|c| c.status.is_some()) {
                let since = *peer_gone_at.get_or_insert_with(Instant::now);
                if since.elapsed() > DEADLINE {
                    let what = format!(
                        "the {} {} was still running {DEADLINE:?} after its peer exited",
                        late.role,
                        late.pid()
                    );
                    self.stop_all(Signal::SIGTERM);
                    bail!("{what}: stopped it");
                }
            }
            std::thread::sleep(TICK);
        }
    }

    /// One look: were we told to stop? Has a child exited? If one failed, the others
    /// cannot finish (their peer is gone), so stop them.
    fn check(&mut self) -> Result<()> {
        if let Some(sig) = stop::caught() {
            self.stop_all(sig); // children in our process group got a Ctrl+C too; a `kill` did not
            return Err(anyhow!("interrupted by {sig}"));
        }
        let mut failed = None;
        for child in self.list.iter_mut().filter(|c| c.status.is_none()) {
            if let Some(status) = child.process.try_wait().context("waitpid")? {
                reaped(child, status);
                if !status.success() && failed.is_none() {
                    failed = Some(format!(
                        "the {} {} failed: {}",
                        child.role,
                        child.pid(),
                        how(status)
                    ));
                }
            }
        }
        if let Some(what) = failed {
            self.stop_all(Signal::SIGTERM);
            bail!("{what}");
        }
        Ok(())
    }

    /// Stops every running child with `sig`, the way Ctrl+C would, and reaps it: its
    /// handler cleans up first. The signal is sent again every 100 ms, for a child caught
    /// in the window described in `fifo_demo::io`'s header; after GRACE, SIGKILL.
    fn stop_all(&mut self, sig: Signal) {
        let started = Instant::now();
        let mut last_sent: Option<Instant> = None;
        loop {
            let running: Vec<&mut Child> = self
                .list
                .iter_mut()
                .filter(|c| c.status.is_none())
                .collect();
            if running.is_empty() {
                return;
            }
            let resend = last_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(100));
            let signal = if started.elapsed() > GRACE {
                Signal::SIGKILL
            } else {
                sig
            };
            for child in running {
                match child.process.try_wait() {
                    Ok(Some(status)) => reaped(child, status),
                    Ok(None) if resend => {
                        if last_sent.is_none() || signal == Signal::SIGKILL {
                            say!(
                                ROLE,
                                "stopping {} {} with {signal}",
                                child.role,
                                child.pid()
                            );
                        }
                        // Not reaped yet (try_wait said so): the pid is still this child's.
                        let _ = process::signal(child.pid(), signal);
                    }
                    Ok(None) => {}
                    // ECHILD: already reaped, so there is nothing left to stop.
                    Err(_) => child.status = Some(ExitStatus::from_raw(0)),
                }
            }
            if resend {
                last_sent = Some(Instant::now());
            }
            std::thread::sleep(TICK);
        }
    }
}

impl Drop for Children {
    /// Leaving early (an error in main itself) must not leave children running.
    fn drop(&mut self) {
        self.stop_all(Signal::SIGTERM);
    }
}

fn reaped(child: &mut Child, status: ExitStatus) {
    child.status = Some(status);
    say!(
        ROLE,
        "reaped {} {}: {}",
        child.role,
        child.pid(),
        how(status)
    );
}

/// "exited with status 0", "killed by SIGINT".
fn how(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signo)) => match Signal::try_from(signo) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {signo}"),
        },
        _ => status.to_string(),
    }
}

/// If `pid` is asleep (state S): the kernel function it sleeps in (its wchan), when
/// this kernel shows it. wchan is read first: it says "0" once the process runs, so a
/// name there followed by S in stat means it was, and still is, asleep in that function.
fn asleep_in(pid: u32) -> Option<Option<String>> {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).ok();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state letter follows the command name, which is in parentheses.
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    (state == 'S').then_some(wchan)
}

/// An argument as a shell would need it typed.
fn shell_word(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:".contains(&b))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
