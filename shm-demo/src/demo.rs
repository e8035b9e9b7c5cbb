//! The default run: the reader and the writer as two processes, narrated together.
//!
//! This process is the reader. It forks the writer FIRST, before any segment exists,
//! so the child inherits no mapping: like a program started in another terminal, it
//! must open the segment by its name (or key) and map it itself. The child waits on a
//! pipe for the reader's word that the segment is ready (a closed pipe: the reader
//! gave up), then runs the writer. The reader reaps it at the end, on every path.

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, pipe2};
use std::io::Write;
use std::os::fd::OwnedFd;

use crate::signals;
use crate::{Cpus, Meeting, Workload, reader, writer};

/// The messages of a default run given none.
const DEFAULT_MESSAGES: [&str; 3] = [
    "hello",
    "from the writer's stores",
    "read in place by the reader",
];

pub fn run(meeting: &Meeting, workload: &Workload, cpus: Option<Cpus>) -> Result<()> {
    let workload = with_default_messages(workload);
    // O_CLOEXEC: a habit; nothing here execs.
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
    let _ = std::io::stdout().flush(); // or a buffered line would print twice
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that another thread held at the moment of fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Child => {
            drop(go_w); // or the child's own copy would keep it from seeing EOF
            let pinned = run_on_cpu(cpus.map(|c| c.writer));
            exit_child(pinned.and_then(|()| writer_when_told(go_r, meeting, &workload)))
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            if let Err(e) = run_on_cpu(cpus.map(|c| c.reader)) {
                drop(go_w); // the child sees EOF and exits
                let _ = reap(child);
                return Err(e);
            }
            say!(
                reader::ROLE,
                "forked the writer, pid {child}, before creating anything: it inherits no \
                 mapping, and will find the segment as an unrelated process would, by `{}`",
                meeting.args()
            );
            // The closure owns the pipe's write end: called, it writes the word; dropped
            // uncalled (the reader failed early), it closes the pipe and the child sees
            // EOF. Either way the pipe is closed before we wait for the child.
            let outcome = reader::run(meeting, &workload, Some(child), move || {
                // Said before the write: once the byte is on its way, the writer may run
                // and print everything before we get to print anything.
                say!(
                    reader::ROLE,
                    "telling writer {child} to go (a byte on a pipe)"
                );
                nix::unistd::write(&go_w, b"g").context("telling the writer to start")?;
                Ok(None) // the writer it started, already known: `child`
            });
            let reaped = reap(child);
            let tally = outcome?;
            reaped?;
            tally.print(reader::ROLE);
            Ok(())
        }
    }
}

/// The workload, with the default messages if it is text with none.
pub fn with_default_messages(workload: &Workload) -> Workload {
    match workload {
        Workload::Text(messages) if messages.is_empty() => {
            Workload::Text(DEFAULT_MESSAGES.map(String::from).to_vec())
        }
        other => other.clone(),
    }
}

/// The child: wait for the word on the pipe, then be the writer.
fn writer_when_told(go: OwnedFd, meeting: &Meeting, workload: &Workload) -> Result<()> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&go, &mut byte) {
            Ok(1) => break,
            Ok(_) => {
                say!(
                    writer::ROLE,
                    "the reader closed the pipe without a word: nothing to open"
                );
                std::process::exit(1); // the reader reports its own error
            }
            Err(Errno::EINTR) => signals::check()?,
            Err(e) => bail!("reading the go pipe: {e}"),
        }
    }
    drop(go);
    let tally = writer::run(meeting, workload)?;
    tally.print(writer::ROLE);
    Ok(())
}

/// Ends the child; it must never return into `main`, which is the parent's.
pub fn exit_child(outcome: Result<()>) -> ! {
    let _ = std::io::stdout().flush();
    match (outcome, signals::caught()) {
        (Ok(()), _) => std::process::exit(0),
        (Err(_), Some(sig)) => signals::die_of(sig),
        (Err(e), None) => {
            _ = writeln!(std::io::stderr(), "error: {e:#}");
            std::process::exit(1)
        }
    }
}

/// Waits for the writer (so it leaves no zombie) and says how it ended. Retries EINTR:
/// after a Ctrl+C the child got the signal too and is on its way out.
pub fn reap(child: Pid) -> Result<()> {
    let status = loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => break other.with_context(|| format!("waitpid writer {child}"))?,
        }
    };
    let role = reader::ROLE;
    match status {
        WaitStatus::Exited(_, 0) => {
            say!(role, "reaped writer {child}: exited with status 0");
            Ok(())
        }
        WaitStatus::Exited(_, code) => {
            say!(role, "reaped writer {child}: exited with status {code}");
            bail!("the writer (pid {child}) failed with exit status {code}")
        }
        WaitStatus::Signaled(_, signal, _) => {
            say!(role, "reaped writer {child}: killed by {signal}");
            bail!("the writer (pid {child}) was killed by {signal}")
        }
        other => bail!("the writer (pid {child}) ended oddly: {other:?}"),
    }
}

/// Pins this process to one CPU (`sched_setaffinity`), if `--cpus` asked.
pub fn run_on_cpu(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}
