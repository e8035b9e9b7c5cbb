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
//!
//! All of it is one library call, `pipe_demo::pipeline::Pipeline` (the file to copy
//! for `ls | wc -l`): its header says why the children allocate nothing between fork
//! and exec, and end with `_exit(2)` when exec fails. Here we narrate around it and
//! judge each child's end as a shell would.

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use pipe_demo::pipeline::{Argv, EXEC_NOT_EXECUTABLE, EXEC_NOT_FOUND, Pipeline};

use crate::family::tell_reaped;
use crate::say;

const SHELL: &str = "shell";

pub fn run() -> Result<()> {
    say!(
        SHELL,
        "rebuilding `ps auxf | grep ps`: one pipe, two children, dup2, exec"
    );
    // Both argv built now, before any fork: the children only call exec.
    let ps_argv = Argv::new(&["ps", "auxf"]).context("argv")?;
    let grep_argv = Argv::new(&["grep", "ps"]).context("argv")?;
    // pipe2 with O_CLOEXEC: the two fds close by themselves when a child execs. So
    // `ps` is left with one end of the pipe, as its stdout, and `grep` with the
    // other, as its stdin (dup2's copy does not inherit the flag). Without it, grep
    // would inherit a write end and never see EOF (the classic hanging pipeline).
    let pipeline = Pipeline::spawn(&ps_argv, &grep_argv).context("starting the pipeline")?;
    let [ps, grep] = pipeline.pids();
    say!(
        SHELL,
        "forked {ps} for `ps auxf`: its stdout becomes the write end"
    );
    say!(
        SHELL,
        "forked {grep} for `grep ps`: its stdin becomes the read end"
    );
    // The shell itself must close both ends: while it holds a write end, grep
    // would wait for more input forever. Pipeline::spawn did, after the second fork.
    say!(
        SHELL,
        "closed both ends in the shell; waiting for the two children"
    );

    let [ps_done, grep_done] = pipeline.wait().context("waitpid")?;
    tell_reaped(SHELL, "`ps auxf`", ps_done);
    tell_reaped(SHELL, "`grep ps`", grep_done);
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
