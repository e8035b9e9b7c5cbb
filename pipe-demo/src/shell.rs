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
//! Between `fork` and `exec` the child allocates nothing and makes only system
//! calls (dup2, sigaction, execve through execvp): the argv and its array of pointers
//! are built before the fork, and a failed exec ends the child with `_exit(2)` after
//! one line formatted on the stack. Not `std::process::exit`, which would first run
//! the exit-time clean-up the child inherited from its parent: flushing its copy of
//! the parent's stdout buffer (output printed twice) and any C `atexit` handler. Here
//! the program is single-threaded, so allocating in the child would be safe too; in a
//! threaded one it is not (another thread may have held the allocator's lock at the
//! fork), which is why such a child must stick to async-signal-safe calls (fork(2),
//! signal-safety(7)).

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{dup2_stdin, dup2_stdout, pipe2};
use std::ffi::CString;
use std::io::Write as _;
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
    // Both argv built now, before any fork: the children only call exec.
    let ps_argv = Argv::new(&["ps", "auxf"]);
    let grep_argv = Argv::new(&["grep", "ps"]);

    let ps = match fork()? {
        Side::Child { .. } => exec_or_exit(&write_end, Stdio::Out, &ps_argv),
        Side::Parent { child } => child,
    };
    say!(
        SHELL,
        "forked {ps} for `ps auxf`: its stdout becomes the write end"
    );
    let grep = match fork()? {
        Side::Child { .. } => exec_or_exit(&read_end, Stdio::In, &grep_argv),
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
/// returns into the parent's code, and allocates nothing (see the top of this file).
fn exec_or_exit(end: &OwnedFd, stdio: Stdio, argv: &Argv) -> ! {
    if let Err((call, err)) = prepare(end, stdio) {
        complain_and_exit(format_args!("error: {call}: {err}"), 1)
    }
    // Not nix's execvp: it collects the pointer array into a fresh Vec, here, after
    // the fork. Ours was made before it.
    // SAFETY: `argv.pointers` holds pointers to the NUL-terminated strings of
    // `argv.words`, which outlive this call, and ends with a null pointer, as
    // execvp(3) requires. execvp returns only on failure.
    unsafe { libc::execvp(argv.pointers[0], argv.pointers.as_ptr()) };
    let err = Errno::last();
    let code = match err {
        Errno::EACCES | Errno::EPERM | Errno::ENOEXEC => EXEC_NOT_EXECUTABLE,
        _ => EXEC_NOT_FOUND,
    };
    complain_and_exit(format_args!("error: exec {:?}: {err}", argv.words[0]), code)
}

/// In a child whose exec failed: one line on stderr, then `_exit(code)`. The line is
/// formatted into a buffer on the stack and written with one write(2), so it cannot
/// interleave with the parent's errors; a longer line is cut.
fn complain_and_exit(line: std::fmt::Arguments, code: i32) -> ! {
    let mut buffer = [0u8; 512];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let _ = cursor.write_fmt(line);
    let len = (cursor.position() as usize).min(buffer.len() - 1);
    buffer[len] = b'\n';
    let _ = nix::unistd::write(std::io::stderr(), &buffer[..=len]);
    // SAFETY: _exit ends the process at once and touches no memory of ours; it runs
    // no exit handler and flushes nothing, which is the point.
    unsafe { libc::_exit(code) }
}

/// Which standard stream a child's pipe end replaces.
enum Stdio {
    In,
    Out,
}

/// Puts `end` on stdin or stdout, and gives SIGPIPE its default action back. An error
/// names the call that failed; it allocates nothing.
fn prepare(end: &OwnedFd, stdio: Stdio) -> Result<(), (&'static str, Errno)> {
    match stdio {
        Stdio::In => dup2_stdin(end).map_err(|e| ("dup2 onto stdin", e))?,
        Stdio::Out => dup2_stdout(end).map_err(|e| ("dup2 onto stdout", e))?,
    }
    // Rust ignores SIGPIPE, and an ignored signal stays ignored across exec. Give
    // the program the default back: `ps` should die quietly if grep stops reading.
    // SAFETY: installs no handler, only restores the default action.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map_err(|e| ("reset SIGPIPE", e))?;
    Ok(())
}

/// A program's argv as execvp(3) wants it: the words as C strings, and the array of
/// pointers to them that ends with a null pointer. Made before the fork, so that the
/// child allocates nothing.
struct Argv {
    words: Vec<CString>,
    pointers: Vec<*const libc::c_char>,
}

impl Argv {
    fn new(words: &[&str]) -> Argv {
        let words: Vec<CString> = words
            .iter()
            .map(|w| CString::new(*w).expect("our argv has no NUL byte"))
            .collect();
        // Pointers into the CStrings' own heap buffers, which moving `words` into the
        // struct does not move.
        let pointers = words
            .iter()
            .map(|w| w.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Argv { words, pointers }
    }
}
