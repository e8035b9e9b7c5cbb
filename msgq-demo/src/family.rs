//! Parent and children in the default run: fork a side, let it finish, reap it.
//!
//! `spawn` forks a child that runs one side (writer or reader) and exits, never
//! returning into the parent's code; `reap` and `reap_both` wait for children so none
//! lingers as a zombie, say how each ended, and stop a survivor whose partner died (it
//! could otherwise wait forever on a queue nobody will touch again).
//!
//! The parent owns the queue. If it is killed (SIGKILL: no guard runs), the kernel
//! tells each child with SIGTERM (PR_SET_PDEATHSIG); the child then says so, names the
//! queue the parent left behind with the command that removes it (`owns`), and exits 1.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, getpid, getppid};

use crate::{say, signals};

/// Forks a child that runs `work` as `role`, then exits with its outcome. Returns the
/// child's pid to the parent.
pub fn spawn(role: &'static str, work: impl FnOnce() -> Result<()>) -> Result<Pid> {
    let parent = getpid();
    // A line still in our stdout buffer would be copied into the child and printed twice.
    let _ = std::io::stdout().flush();
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock
    // (stdout's, the allocator's) that some other thread held at the moment of fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Child => {
            signals::forget_ticker_after_fork();
            let outcome = die_with_parent(parent).and_then(|()| work());
            exit_child(role, parent, outcome)
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Asks the kernel to send us SIGTERM if the parent dies (prctl PR_SET_PDEATHSIG): a
/// parent killed with SIGKILL cannot stop us itself, and a writer asleep on a full
/// queue would otherwise sleep forever.
fn die_with_parent(parent: Pid) -> Result<()> {
    // Assumption: one thread. PR_SET_PDEATHSIG fires when the parent *thread* that
    // forked ends (prctl(2)), not the process.
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).context("prctl PR_SET_PDEATHSIG")?;
    if getppid() != parent {
        bail!("the parent {parent} died before I could start"); // too late for the signal
    }
    Ok(())
}

/// What this process owns and a SIGKILL would leave behind, each as the command that
/// removes it by hand (`ipcrm -q 5`, `rm /dev/mqueue/q`). A forked child has a copy: if
/// its parent is killed, it names them (see `exit_child`).
static OWNED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records a queue this process just created, with the command that removes it.
pub fn owns(removal: String) {
    OWNED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(removal);
}

/// The queue is removed: a dead owner would no longer leave it behind.
pub fn released(removal: &str) {
    let mut owned = OWNED.lock().unwrap_or_else(|e| e.into_inner());
    owned.retain(|c| c != removal);
}

/// Ends a child: status 0, or 1 after saying what failed, or death by the signal that
/// stopped it. The child must not return into `main`: the rest of `main` is the
/// parent's, and so is the queue. `parent` is our parent's pid from before the fork:
/// if getppid(2) no longer says so, the parent died and we were re-parented.
fn exit_child(role: &str, parent: Pid, outcome: Result<()>) -> ! {
    let orphaned = getppid() != parent;
    let code = match (outcome, signals::caught()) {
        (Ok(()), _) => 0,
        (Err(_), Some(Signal::SIGTERM)) if orphaned => {
            say_parent_died(parent, "the kernel sent me SIGTERM (PR_SET_PDEATHSIG)");
            1
        }
        (Err(_), Some(sig)) => {
            say!(
                role,
                "interrupted by {sig}: the queue is the parent's to remove, not mine"
            );
            let _ = std::io::stdout().flush();
            let _ = signals::die_of(sig);
            128 + sig as i32
        }
        (Err(e), None) => {
            complain(&format!("error: {e:#}"));
            if orphaned {
                say_parent_died(parent, "I have a new parent (getppid)");
            }
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// One line on stderr: the parent is dead, and what it could not remove, with how.
fn say_parent_died(parent: Pid, how_i_know: &str) {
    let owned = OWNED.lock().unwrap_or_else(|e| e.into_inner());
    let left = if owned.is_empty() {
        String::from("it owned no queue any more")
    } else {
        format!(
            "the queue it owned is left behind: remove it with {}",
            owned.join(" and ")
        )
    };
    complain(&format!(
        "error: the parent (pid {parent}) died without cleaning up ({how_i_know}): {left}"
    ));
}

/// How often the parent looks at its children while it waits for them.
const REAP_SLICE: Duration = Duration::from_millis(10);

/// Writes `line` and a newline to stderr in one write(2): the two children of a run
/// may complain at once, and `writeln!` on unbuffered stderr writes in pieces that
/// would interleave.
fn complain(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Waits until one of `children` has ended and returns its index and how it ended.
/// Each pid is asked in turn with WNOHANG, then we sleep one `REAP_SLICE`: waiting for
/// these pids only, never `waitpid(-1)`, which would reap (and lose the status of)
/// any other child a host program has. A SIGINT/SIGTERM that reached only us is
/// passed on to the children once (`forwarded`), so that they stop and can be reaped.
fn wait_for_one(children: &[(Pid, &str)], forwarded: &mut bool) -> Result<(usize, WaitStatus)> {
    loop {
        for (at, &(pid, what)) in children.iter().enumerate() {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                Ok(status) => return Ok((at, status)),
                Err(e) => bail!("waitpid {what} {pid}: {e}"),
            }
        }
        // Ctrl+C reaches the whole process group, but `kill -INT PARENT` only us.
        if let (Some(sig), false) = (signals::caught(), *forwarded) {
            for &(pid, _) in children {
                let _ = kill(pid, sig);
            }
            *forwarded = true;
        }
        std::thread::sleep(REAP_SLICE);
    }
}

/// Waits for `child` (so it leaves no zombie) and narrates how it ended. An `Err` if it
/// did not exit with status 0, or if we were interrupted meanwhile.
pub fn reap(role: &str, child: Pid, what: &str) -> Result<()> {
    let (_, status) = wait_for_one(&[(child, what)], &mut false)?;
    let ended = report(role, child, what, status);
    signals::check()?;
    ended
}

/// Waits for two children running at the same time, in whatever order they end. If
/// one fails, the other is stopped with SIGTERM: its partner is gone, so it might wait
/// forever (a reader for messages, a writer for room in the queue).
pub fn reap_both(role: &str, first: (Pid, &str), second: (Pid, &str)) -> Result<()> {
    let mut running = vec![first, second];
    let mut outcome = Ok(());
    let mut forwarded = false;
    while !running.is_empty() {
        let (at, status) = wait_for_one(&running, &mut forwarded)?;
        let (pid, what) = running.remove(at);
        let ended = report(role, pid, what, status);
        if ended.is_err() && outcome.is_ok() {
            for &(other, other_what) in &running {
                say!(
                    role,
                    "stopping the {other_what} {other} with SIGTERM: its partner is gone"
                );
                let _ = kill(other, Signal::SIGTERM);
            }
            outcome = ended;
        }
    }
    signals::check()?;
    outcome
}

/// Narrates how `child` ended; `Err` unless it exited with status 0.
fn report(role: &str, child: Pid, what: &str, status: WaitStatus) -> Result<()> {
    match status {
        WaitStatus::Exited(_, 0) => {
            say!(role, "reaped {what} {child}: exited with status 0");
            Ok(())
        }
        WaitStatus::Exited(_, code) => {
            say!(role, "reaped {what} {child}: exited with status {code}");
            bail!("the {what} (pid {child}) failed with exit status {code}")
        }
        WaitStatus::Signaled(_, signal, _) => {
            say!(role, "reaped {what} {child}: killed by {signal}");
            bail!("the {what} (pid {child}) was killed by {signal}")
        }
        other => bail!("the {what} (pid {child}) ended oddly: {other:?}"),
    }
}

/// Polls /proc until `pid` sleeps in a kernel function whose name contains `wchan` and
/// `also()` holds, giving up after `limit`. This is the kernel's own view of
/// "blocked": `ps` shows the same state letter S, `cat /proc/PID/wchan` the same name.
pub fn wait_until_asleep(
    pid: Pid,
    wchan: &str,
    limit: Duration,
    mut also: impl FnMut() -> bool,
) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if signals::caught().is_some() {
            return None; // the caller's next blocking call reports it
        }
        // `also()` first: what it sees has happened before the sleep we then look at.
        if also() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            let sleeping_in =
                std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            if state == 'S' && sleeping_in.contains(wchan) {
                return Some(sleeping_in);
            }
            if state == 'Z' {
                return None; // it died: it will never sleep there
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Whether process `pid` still runs: `kill(pid, 0)` delivers nothing but says whether
/// the pid exists (EPERM: it does, under another user), and /proc tells a zombie (dead,
/// not yet reaped) from a live process. A pid can be reused by an unrelated process
/// after its owner died; that only makes us wait on, as before.
pub fn alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state is the field after the command, which is in parentheses.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    state != Some('Z')
}
