//! The `shell` flavour: `ps auxf | grep ps`, built the way a shell builds it.
//!
//! The notes open with this very line: 命令行的|就是一个管道 (the `|` is a pipe). A
//! shell makes one pipe, forks twice, and in each child moves one end of the pipe
//! onto standard output or standard input (`dup2`) before replacing itself with the
//! program (`exec`). Neither `ps` nor `grep` needs to know a pipe is involved: they
//! write to fd 1 and read from fd 0. A program can still ask (`isatty`, `fstat`),
//! and many do: `ps` picks its output width that way, `grep --color=auto` its
//! colours, and C's stdio buffers a pipe fully where it buffers a terminal by line.
//!
//! If `exec` fails (no such program on PATH, or not executable), the child exits
//! 127 or 126, as shells do, so that this status cannot be mistaken for the
//! program's own (grep's 1 means "no line matched").

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{dup2_stdin, dup2_stdout, execvp, pipe2};
use std::ffi::CString;
use std::os::fd::OwnedFd;

use crate::family::{Side, fork, wait_for};
use crate::say;

const SHELL: &str = "shell";

pub fn run() -> Result<()> {
    say!(
        SHELL,
        "rebuilding `ps auxf | grep ps`: one pipe, two children, dup2, exec"
    );
    // O_CLOEXEC: these two fds close by themselves when a child execs. So `ps` is
    // left with one end of the pipe, as its stdout, and `grep` with the other, as
    // its stdin (dup2's copy does not inherit the flag). Without it, grep
    // would inherit a write end and never see EOF (the classic hanging pipeline).
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).context("pipe2")?;

    let ps = match fork()? {
        Side::Child { .. } => exec_or_exit(&write_end, Stdio::Out, &["ps", "auxf"]),
        Side::Parent { child } => child,
    };
    say!(
        SHELL,
        "forked {ps} for `ps auxf`: its stdout becomes the write end"
    );
    let grep = match fork()? {
        Side::Child { .. } => exec_or_exit(&read_end, Stdio::In, &["grep", "ps"]),
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
/// early but is no error; 127 and 126 mean exec failed, so the program never ran;
/// grep's status 1 means it found no line.
fn judge(command: &str, status: WaitStatus) -> Result<()> {
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code @ (EXEC_NOT_FOUND | EXEC_NOT_EXECUTABLE)) => bail!(
            "`{command}` could not be run: exec failed (exit status {code}, as a shell \
             reports it), so the program never started"
        ),
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

/// The child's exit status when exec finds no such program (ENOENT), as in shells.
const EXEC_NOT_FOUND: i32 = 127;
/// The child's exit status when exec finds the program but may not run it.
const EXEC_NOT_EXECUTABLE: i32 = 126;

/// In a child: put `end` on stdin or stdout, then become `argv[0]`. If that fails,
/// say why and end with 127 or 126 (exec failed) or 1 (the set-up failed). Never
/// returns into the parent's code.
fn exec_or_exit(end: &OwnedFd, stdio: Stdio, argv: &[&str]) -> ! {
    if let Err(e) = prepare(end, stdio) {
        crate::complain(&format!("error: {e:#}"));
        std::process::exit(1)
    }
    let err = exec(argv);
    let code = match err {
        Errno::EACCES | Errno::EPERM | Errno::ENOEXEC => EXEC_NOT_EXECUTABLE,
        _ => EXEC_NOT_FOUND,
    };
    crate::complain(&format!("error: exec {:?}: {err}", argv[0]));
    std::process::exit(code)
}

/// Which standard stream a child's pipe end replaces.
enum Stdio {
    In,
    Out,
}

/// Puts `end` on stdin or stdout, and gives SIGPIPE its default action back.
fn prepare(end: &OwnedFd, stdio: Stdio) -> Result<()> {
    match stdio {
        Stdio::In => dup2_stdin(end).context("dup2 onto stdin")?,
        Stdio::Out => dup2_stdout(end).context("dup2 onto stdout")?,
    }
    // Rust ignores SIGPIPE, and an ignored signal stays ignored across exec. Give
    // the program the default back: `ps` should die quietly if grep stops reading.
    // SAFETY: installs no handler, only restores the default action.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.context("reset SIGPIPE")?;
    Ok(())
}

/// Becomes `argv[0]`, found on PATH. Returns only if exec failed, with why.
fn exec(argv: &[&str]) -> Errno {
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(*a).expect("our argv has no NUL byte"))
        .collect();
    match execvp(&argv[0], &argv) {
        Err(e) => e,
    }
}
