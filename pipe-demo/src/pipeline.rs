//! `ls | wc -l` built the way a shell builds it: one pipe, two children, dup2, exec,
//! and a waitpid for each child.
//!
//! A shell makes one pipe, forks twice, and in each child moves one end of the pipe
//! onto standard output or standard input (dup2) before replacing itself with the
//! program (exec). Neither program needs to know a pipe is involved: they write to
//! fd 1 and read from fd 0. Then the shell closes both ends: while any process holds
//! a write end, the reader never sees EOF and the pipeline never ends.
//!
//! Between fork and exec a child allocates nothing and makes only system calls
//! (dup2, sigaction, sigprocmask, then execvp): the argv and its array of pointers
//! are built before the fork, and a failed exec ends the child with `_exit(127)` or
//! `_exit(126)`, as shells do, after one line formatted on the stack. That makes
//! [`spawn`] safe in a threaded program too (another thread may hold the allocator's
//! lock at the moment of fork; fork(2), signal-safety(7)), with one assumption:
//! execvp(3) is not on POSIX's async-signal-safe list (its PATH search is library
//! code); glibc's and musl's build the candidate paths on the stack, without malloc. Not `std::process::exit`: it would run the
//! exit-time clean-up the child inherited, flushing its copy of the parent's stdout
//! buffer (output printed twice) and any C `atexit` handler.
//!
//! Standalone: this file needs only std, libc and nix (features "process", "fs",
//! "signal"). For everyday use, `std::process::Command` with `Stdio::from(fd)` does all
//! of this.

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, signal, sigprocmask};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, dup2_stdin, dup2_stdout, pipe2};
use std::ffi::{CStr, CString};
use std::io::{Error, ErrorKind, Result, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// The exit status of a child whose exec found no such program (ENOENT...), as in
/// shells: a status the program itself would rarely give.
pub const EXEC_NOT_FOUND: i32 = 127;
/// The exit status of a child whose exec found the program but may not run it
/// (EACCES, EPERM, ENOEXEC), as in shells.
pub const EXEC_NOT_EXECUTABLE: i32 = 126;

/// A program's argv as execvp(3) wants it: the words as C strings, and the array of
/// pointers to them that ends with a null pointer. Build it before the fork, so that
/// the child allocates nothing. `argv[0]` is looked up on PATH.
pub struct Argv {
    words: Vec<CString>,
    pointers: Vec<*const libc::c_char>,
}

impl Argv {
    /// `words[0]` is the program. An error if there is none, or if a word holds a
    /// NUL byte (a C string cannot).
    ///
    /// # Examples
    /// ```
    /// let ls = pipe_demo::pipeline::Argv::new(&["ls", "-l"])?;
    /// assert_eq!(ls.program().to_bytes(), b"ls");
    /// assert!(pipe_demo::pipeline::Argv::new(&["a\0b"]).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(words: &[&str]) -> Result<Argv> {
        if words.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput, "an empty argv"));
        }
        let words = words
            .iter()
            .map(|w| CString::new(*w))
            .collect::<std::result::Result<Vec<CString>, _>>()?;
        // Pointers into the CStrings' own heap buffers, which moving `words` into the
        // struct does not move.
        let pointers = words
            .iter()
            .map(|w| w.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(Argv { words, pointers })
    }

    /// The program, `argv[0]`.
    pub fn program(&self) -> &CStr {
        &self.words[0]
    }
}

/// Forks a child that puts `stdin` on its fd 0 and `stdout` on its fd 1 (where
/// given), gives SIGPIPE its default action back, unblocks every signal, and execs
/// `argv`. Returns its pid: wait for it with [`wait`].
///
/// Give O_CLOEXEC ends (as [`pipe2`] with O_CLOEXEC makes them): exec then closes
/// them, and the program keeps only its dup2 copies; any other fd you hold without
/// O_CLOEXEC stays open in the program (a write end kept there means its reader
/// never sees EOF). Rust starts with SIGPIPE ignored, and an ignored signal stays
/// ignored across exec: without the reset, in `yes | head -1` GNU `yes` gets EPIPE
/// once `head` is gone, prints "yes: standard output: Broken pipe" and exits 1,
/// where a shell's `yes` dies quietly of SIGPIPE. The signal mask survives exec
/// too: a parent that blocks SIGINT or SIGTERM (for sigtimedwait or a signalfd)
/// would start a program that Ctrl+C cannot end, so the child empties it first.
/// Other signals the parent ignores stay ignored (not reset here).
///
/// If dup2 or exec fails, the child says why in one line on stderr and ends with
/// [`EXEC_NOT_FOUND`] or [`EXEC_NOT_EXECUTABLE`] (exec failed) or 1 (dup2 failed),
/// so that its status cannot pass for the program's own. Safe with any number of
/// threads: the child allocates nothing (see the top of this file).
///
/// # Examples
/// ```
/// use nix::sys::wait::WaitStatus;
/// use pipe_demo::pipeline::{Argv, EXEC_NOT_FOUND, spawn, wait};
/// let (read_end, write_end) = pipe_demo::pipe::create()?; // both O_CLOEXEC
/// let echo = spawn(&Argv::new(&["echo", "hi"])?, None, Some(&write_end))?;
/// drop(write_end); // ours: the only write end left is echo's stdout
/// let mut got = [0u8; 3];
/// assert!(pipe_demo::pipe::read_exact(&read_end, &mut got)?);
/// assert_eq!(&got, b"hi\n");
/// assert_eq!(wait(echo)?, WaitStatus::Exited(echo, 0));
///
/// let missing = spawn(&Argv::new(&["no-such-program-here"])?, None, None)?;
/// assert_eq!(wait(missing)?, WaitStatus::Exited(missing, EXEC_NOT_FOUND));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn(argv: &Argv, stdin: Option<&OwnedFd>, stdout: Option<&OwnedFd>) -> Result<Pid> {
    // So that what we printed comes before the program's output: a partial line
    // would wait in our buffer. (The child's copy of the buffer dies with exec.)
    let _ = std::io::stdout().flush();
    // SAFETY: the child makes only async-signal-safe calls (dup2, fcntl, sigaction,
    // sigprocmask, write, _exit) and execvp, which glibc and musl do without malloc
    // (see the top of this file), and allocates nothing before exec or _exit.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => exec_or_exit(argv, stdin, stdout),
    }
}

/// Waits for `child` to end (waitpid on its pid, never -1: other children are not
/// ours to reap), retrying EINTR, and returns how it ended.
pub fn wait(child: Pid) -> Result<WaitStatus> {
    loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// Two programs joined by a pipe, `first | second`, running. [`Pipeline::wait`]
/// reaps both. Dropped before that (an early `?` of yours), it kills (SIGKILL) and
/// reaps whichever is left: no zombie and no program left running. Killing by pid is
/// safe here: until its parent reaps it, a child's pid cannot be reused. That holds
/// while nothing else in the program reaps children behind its back: a
/// `waitpid(-1)` elsewhere, or SIGCHLD set to SIG_IGN (the kernel then reaps them
/// itself).
///
/// # Examples
/// ```
/// use pipe_demo::pipeline::{Argv, Pipeline};
/// let pipeline = Pipeline::spawn(&Argv::new(&["sleep", "100"])?, &Argv::new(&["cat"])?)?;
/// let [sleep, cat] = pipeline.pids();
/// drop(pipeline); // both killed and reaped: their pids are gone at once
/// for pid in [sleep, cat] {
///     assert_eq!(nix::sys::signal::kill(pid, None), Err(nix::errno::Errno::ESRCH));
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Pipeline {
    /// The pids of `first` and `second`.
    pids: [Pid; 2],
    /// Which of the two are not reaped yet.
    running: [bool; 2],
}

impl Pipeline {
    /// Starts `first | second`: makes the pipe (O_CLOEXEC), spawns `first` with its
    /// stdout on the write end and `second` with its stdin on the read end, then
    /// closes both ends here, so `second` sees EOF once `first` is done.
    ///
    /// If the second fork fails, the first child is already running: it is killed
    /// and reaped before the error returns.
    ///
    /// # Examples
    /// ```
    /// use nix::sys::wait::WaitStatus;
    /// use pipe_demo::pipeline::{Argv, Pipeline};
    /// let (echo, wc) = (Argv::new(&["echo", "a b c"])?, Argv::new(&["wc", "-w"])?);
    /// let pipeline = Pipeline::spawn(&echo, &wc)?; // wc prints 3
    /// let [first, second] = pipeline.pids();
    /// let statuses = pipeline.wait()?;
    /// assert_eq!(statuses, [WaitStatus::Exited(first, 0), WaitStatus::Exited(second, 0)]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn spawn(first: &Argv, second: &Argv) -> Result<Pipeline> {
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
        let writer = spawn(first, None, Some(&write_end))?;
        let reader = spawn(second, Some(&read_end), None);
        // Ours must go: while this process holds a write end, `second` never sees EOF.
        drop(read_end);
        drop(write_end);
        match reader {
            Ok(reader) => Ok(Pipeline {
                pids: [writer, reader],
                running: [true, true],
            }),
            Err(e) => {
                kill_and_reap(writer);
                Err(e)
            }
        }
    }

    /// The pids of `first` and `second`.
    pub fn pids(&self) -> [Pid; 2] {
        self.pids
    }

    /// Waits for both children, `first` then `second`, and returns how each ended.
    /// A shell judges the pipeline by the last status; `first` killed by SIGPIPE
    /// means `second` stopped reading early (`| head`), no error.
    pub fn wait(mut self) -> Result<[WaitStatus; 2]> {
        let mut statuses = [WaitStatus::StillAlive; 2];
        for (i, status) in statuses.iter_mut().enumerate() {
            self.running[i] = false;
            *status = wait(self.pids[i])?;
        }
        Ok(statuses)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for (pid, running) in self.pids.iter().zip(self.running) {
            if running {
                kill_and_reap(*pid);
            }
        }
    }
}

/// SIGKILL to a child not yet reaped, then waitpid, so it leaves no zombie.
fn kill_and_reap(child: Pid) {
    let _ = kill(child, Signal::SIGKILL);
    let _ = wait(child);
}

/// Runs `first | second` to the end: [`Pipeline::spawn`], then [`Pipeline::wait`].
///
/// # Examples
/// ```
/// use nix::sys::wait::WaitStatus;
/// use pipe_demo::pipeline::{Argv, run};
/// let [ls, wc] = run(&Argv::new(&["ls", "/"])?, &Argv::new(&["wc", "-l"])?)?;
/// assert!(matches!((ls, wc), (WaitStatus::Exited(_, 0), WaitStatus::Exited(_, 0))));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn run(first: &Argv, second: &Argv) -> Result<[WaitStatus; 2]> {
    Pipeline::spawn(first, second)?.wait()
}

/// In the child: dup2, SIGPIPE back to default, exec; `_exit` if any fails.
fn exec_or_exit(argv: &Argv, stdin: Option<&OwnedFd>, stdout: Option<&OwnedFd>) -> ! {
    if let Err((call, err)) = prepare(stdin, stdout) {
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

/// Puts the given ends on stdin and stdout, gives SIGPIPE its default action back
/// and empties the signal mask. An error names the call that failed; nothing here
/// allocates.
fn prepare(
    stdin: Option<&OwnedFd>,
    stdout: Option<&OwnedFd>,
) -> std::result::Result<(), (&'static str, Errno)> {
    if let Some(end) = stdin {
        dup2_stdin(end).map_err(|e| ("dup2 onto stdin", e))?;
        keep_across_exec(end, 0).map_err(|e| ("fcntl F_SETFD on stdin", e))?;
    }
    if let Some(end) = stdout {
        dup2_stdout(end).map_err(|e| ("dup2 onto stdout", e))?;
        keep_across_exec(end, 1).map_err(|e| ("fcntl F_SETFD on stdout", e))?;
    }
    // SAFETY: installs no handler, only restores the default action.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map_err(|e| ("reset SIGPIPE", e))?;
    // The mask is inherited through fork and kept across exec: the program would
    // start with the parent's blocked signals still blocked.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| ("sigprocmask", e))?;
    Ok(())
}

/// dup2 onto the fd an end already is does nothing, O_CLOEXEC included, so exec
/// would close it: clear the flag in that case (only if fd 0 or 1 was closed when
/// the pipe was made; a Rust program starts with 0-2 open, on /dev/null if need be).
fn keep_across_exec(end: &OwnedFd, target: i32) -> nix::Result<()> {
    if end.as_raw_fd() == target {
        fcntl(end, FcntlArg::F_SETFD(FdFlag::empty()))?;
    }
    Ok(())
}

/// In a child whose set-up or exec failed: one line on stderr, then `_exit(code)`.
/// The line is formatted into a buffer on the stack and written with one write(2), so
/// it cannot interleave with another process's lines; a longer line is cut.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A parent with SIGINT blocked (sigtimedwait, a signalfd) started programs
    /// with SIGINT still blocked, since the mask survives fork and exec: Ctrl+C
    /// could not end them. The child empties the mask before exec.
    #[test]
    fn the_program_starts_with_no_signal_blocked() {
        let int = SigSet::from(Signal::SIGINT);
        let before = int.thread_swap_mask(SigmaskHow::SIG_BLOCK).unwrap();
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let grep = Argv::new(&["grep", "^SigBlk:", "/proc/self/status"]).unwrap();
        let spawned = spawn(&grep, None, Some(&write_end));
        before.thread_set_mask().unwrap();
        let pid = spawned.unwrap();
        drop(write_end);
        let mut line = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut line)
            .unwrap();
        assert_eq!(wait(pid).unwrap(), WaitStatus::Exited(pid, 0));
        assert_eq!(line.trim(), "SigBlk:\t0000000000000000");
    }
}
