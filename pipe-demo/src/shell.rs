//! The `shell` flavour: `ps auxf | grep ps`, built the way a shell builds it.
//!
//! The notes open with this very line: 命令行的|就是一个管道 (the `|` is a pipe). A
//! shell makes one pipe, forks twice, and in each child moves one end of the pipe
//! onto standard output or standard input (`dup2`) before replacing itself with the
//! program (`exec`). Neither `ps` nor `grep` knows a pipe is involved: they just
//! write to fd 1 and read from fd 0.

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{dup2_stdin, dup2_stdout, execvp, pipe2};
use std::ffi::CString;
use std::os::fd::OwnedFd;

use crate::family::{Side, exit_child, fork, wait_for};
use crate::say;

const SHELL: &str = "shell";

pub fn run() -> Result<()> {
    say!(
        SHELL,
        "rebuilding `ps auxf | grep ps`: one pipe, two children, dup2, exec"
    );
    // O_CLOEXEC: these two fds close by themselves when a child execs. So `ps` is
    // left holding only its stdout, and `grep` only its stdin. Without it, grep
    // would inherit a write end and never see EOF (the classic hanging pipeline).
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).context("pipe2")?;

    let ps = match fork()? {
        Side::Child => exit_child(exec_with(&write_end, Stdio::Out, &["ps", "auxf"])),
        Side::Parent { child } => child,
    };
    say!(
        SHELL,
        "forked {ps} for `ps auxf`: its stdout becomes the write end"
    );
    let grep = match fork()? {
        Side::Child => exit_child(exec_with(&read_end, Stdio::In, &["grep", "ps"])),
        Side::Parent { child } => child,
    };
    say!(
        SHELL,
        "forked {grep} for `grep ps`: its stdin becomes the read end"
    );

    // The shell itself must close both ends: while it holds a write end, grep
    // would wait for more input forever.
    drop(read_end);
    drop(write_end);
    say!(
        SHELL,
        "closed both ends in the shell; waiting for the two children"
    );

    let ps_done = wait_for(SHELL, ps, "`ps auxf`")?;
    let grep_done = wait_for(SHELL, grep, "`grep ps`")?;
    judge("ps auxf", ps_done)?;
    judge("grep ps", grep_done)?;
    say!(
        SHELL,
        "both children reaped: the pipeline is done, nothing left behind"
    );
    Ok(())
}

/// Judges a pipeline member's end the way a shell does: 0 is success; death by SIGPIPE
/// means whoever read its output stopped reading (`| head`), which ends a pipeline
/// early but is no error; grep's status 1 means it found no line.
fn judge(command: &str, status: WaitStatus) -> Result<()> {
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Signaled(_, Signal::SIGPIPE, _) => {
            say!(
                SHELL,
                "`{command}` died of SIGPIPE: its reader stopped reading, so it stopped too"
            );
            Ok(())
        }
        WaitStatus::Exited(_, 1) if command.starts_with("grep") => {
            bail!("`{command}` found no matching line (grep exits 1 then)")
        }
        other => bail!("`{command}` failed: {other:?}"),
    }
}

/// Which standard stream a child's pipe end replaces.
enum Stdio {
    In,
    Out,
}

/// In a child: put `end` on stdin or stdout, then become `argv[0]`. Returns only
/// if exec failed.
fn exec_with(end: &OwnedFd, stdio: Stdio, argv: &[&str]) -> Result<()> {
    match stdio {
        Stdio::In => dup2_stdin(end).context("dup2 onto stdin")?,
        Stdio::Out => dup2_stdout(end).context("dup2 onto stdout")?,
    }
    // Rust ignores SIGPIPE, and an ignored signal stays ignored across exec. Give
    // the program the default back: `ps` should die quietly if grep stops reading.
    // SAFETY: installs no handler, only restores the default action.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.context("reset SIGPIPE")?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(*a))
        .collect::<Result<_, _>>()?;
    let err = execvp(&argv[0], &argv).unwrap_err();
    Err(err).with_context(|| format!("exec {:?}", argv[0]))
}
