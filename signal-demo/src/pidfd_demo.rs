//! `signal-demo pidfd` and `signal-demo writer pidfd --pid PID`: a process by
//! handle, not by number.
//!
//! Notes, section 信号: a signal is sent to a process by its pid (`kill -9 PID`). A pid
//! is only a number, which the kernel hands out again once its process has ended
//! and its parent has reaped it: kill(2) with a pid kept from earlier can reach
//! whatever process has the number since. A pidfd (pidfd_open(2), Linux 5.3) is a
//! file descriptor for one process: pidfd_send_signal(2) through it reaches that
//! process or fails with ESRCH, never another; and it becomes readable when the
//! process terminates, so poll(2) waits for a child's end with no SIGCHLD, and for
//! the end of a process that is not our child at all.
//!
//! The default run: the writer forks a reader, which opens a pidfd on its parent
//! (checked with getppid(2) after the open) and sleeps in poll(2) on it, so it
//! notices the writer's death, SIGKILL included, at once. The writer opens a pidfd
//! on the reader, sends it SIGTERM through it, sees the fd readable (a zombie: ended,
//! not reaped), reaps it, and then tries again: ESRCH. Then the race itself: as root,
//! it asks the kernel to hand the same pid to a new child (writing the previous
//! number to /proc/sys/kernel/ns_last_pid, which needs CAP_SYS_ADMIN or
//! CAP_CHECKPOINT_RESTORE, and puts the counter back right after the fork), and
//! shows kill(2) with the old number reaching the new child, our own stand-in for
//! a stranger, while the old pidfd still says ESRCH.
//! As an ordinary user that step is not shown, and says so.
//!
//! Two terminals: `signal-demo reader signalfd` (or any process of yours), then
//! `signal-demo writer pidfd --pid PID USR1 TERM`: signals through a pidfd, then a
//! wait on it until that process exits.
//!
//! In production: a pidfd wherever a pid is kept for later (supervisors, process
//! managers: systemd uses them), waitid(P_PIDFD) to reap by it, and in Rust the
//! `rustix` crate's `pidfd_open`/`pidfd_send_signal` (std's own
//! `std::os::linux::process` pidfds are nightly-only).

use std::ffi::c_int;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::sys::wait::WaitStatus;
use nix::unistd::{Pid, getpid};
use signal_demo::pidfd::PidFd;
use signal_demo::signalfd::Signals;
use signal_demo::{pending, ready, send};

use crate::family::{Kid, Side, describe, exit_child, fork};
use crate::say;
use crate::signalfd_demo::fdinfo_field;
use crate::stop;

const WRITER: &str = "writer";
const READER: &str = "reader";
/// How long the writer waits for a reader before it gives up on it.
const PATIENCE: Duration = Duration::from_secs(10);
/// Where the kernel keeps the last pid it handed out (in this pid namespace).
const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
/// How many times the writer tries to get the old pid back for its second child.
const TRIES: usize = 3;

pub fn run() -> Result<()> {
    let me = getpid();
    // Our own SIGINT, SIGTERM, SIGHUP, taken as data, polled beside each pidfd.
    let stop = Signals::open(&stop::stop_signals()).context("signalfd")?;
    let (mut first, first_fd) = start_reader(me, &stop)?;
    let old = first.pid();
    match by_handle(&mut first, &first_fd, &stop) {
        Ok(()) => {}
        Err(e) => {
            first.end_and_reap(WRITER, &e, PATIENCE);
            return Err(e);
        }
    }
    drop(first); // reaped: its `Drop` does nothing
    reuse(me, old, &first_fd, &stop)
}

/// Forks a reader (it watches us through a pidfd), opens a pidfd on it, and waits
/// until it says it is ready.
fn start_reader(me: Pid, stop: &Signals) -> Result<(Kid, PidFd)> {
    let (ack_r, ack_w) = std::io::pipe().context("pipe")?;
    match fork()? {
        Side::Child => {
            drop(ack_r);
            // fork copied our mask, with SIGINT, SIGTERM, SIGHUP blocked for our
            // signalfd: unblocked again, SIGTERM ends the reader (its default action).
            let unblocked = pending::restore(stop.mask_before()).context("sigprocmask");
            exit_child(unblocked.and_then(|()| watch_parent(ack_w, me)))
        }
        Side::Parent(mut kid) => {
            drop(ack_w);
            say!(WRITER, "forked a reader, pid {}", kid.pid());
            // Opened before we reap it: until then the number cannot be reused, so
            // the handle is surely our child's.
            let handle = match PidFd::open(kid.pid()) {
                Ok(h) => h,
                Err(e) => {
                    let e = anyhow!("pidfd_open({}): {e}", kid.pid());
                    kid.end_and_reap(WRITER, &e, PATIENCE);
                    return Err(e);
                }
            };
            match await_ready(&mut kid, &handle, &ack_r, stop) {
                Ok(()) => Ok((kid, handle)),
                Err(e) => {
                    kid.end_and_reap(WRITER, &e, PATIENCE);
                    Err(e)
                }
            }
        }
    }
}

/// Acts 1 to 3: signal by handle, see the exit by poll, reap, then ESRCH.
fn by_handle(kid: &mut Kid, handle: &PidFd, stop: &Signals) -> Result<()> {
    let pid = kid.pid();
    say!(
        WRITER,
        "pidfd_open({pid}) gave fd {}: /proc/self/fdinfo/{} says Pid {}; poll says it is {}",
        handle.raw(),
        handle.raw(),
        my_fdinfo_pid(handle),
        if handle.has_exited()? {
            "readable: ended"
        } else {
            "not readable: alive"
        }
    );
    say!(
        WRITER,
        "act 1: SIGTERM through the pidfd: pidfd_send_signal(2)"
    );
    handle
        .send_signal(libc::SIGTERM)
        .map_err(|e| anyhow!("pidfd_send_signal SIGTERM to the reader {pid}: {e}"))?;
    await_exit(kid, handle, stop)?;
    say!(
        WRITER,
        "act 2: poll(2): the pidfd is readable: the reader has terminated (no SIGCHLD \
         needed); /proc/{pid}/stat says state {}: a zombie, not reaped yet",
        state_of(pid)
    );
    let zombie = handle.send_signal(0);
    say!(
        WRITER,
        "pidfd_send_signal(signal 0) to the zombie: {}: until it is reaped the process \
         still exists, as it does for kill(2)",
        outcome(zombie)
    );
    let status = reap(kid)?;
    say!(
        WRITER,
        "waitpid: reaped reader {pid}: {}; /proc/self/fdinfo/{} now says Pid {}",
        describe(status),
        handle.raw(),
        my_fdinfo_pid(handle)
    );
    say!(
        WRITER,
        "act 3: SIGTERM through the same pidfd again: {}: the process it names is gone \
         for good, and the fd can never name another",
        outcome(handle.send_signal(libc::SIGTERM))
    );
    Ok(())
}

/// Act 4: the pid given out again, and kill(2) with the old number reaching the new
/// process, while the old pidfd still refuses.
fn reuse(me: Pid, old: Pid, old_handle: &PidFd, stop: &Signals) -> Result<()> {
    say!(
        WRITER,
        "act 4, the race a pidfd closes: pid {old} is free now; the kernel hands it out again \
         once its counter comes round (pid_max is {} here)",
        std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    );
    // The counter as it is now, to put back after our fork: set back to `old`, it
    // would also hand out again, sooner than usual, the numbers after `old` that
    // other processes had and freed since.
    let counter = std::fs::read_to_string(NS_LAST_PID).unwrap_or_default();
    for attempt in 1..=TRIES {
        if let Err(e) = std::fs::write(NS_LAST_PID, format!("{}", old.as_raw() - 1)) {
            say!(
                WRITER,
                "to show it I would write {} to {NS_LAST_PID} (the next fork then gets {old}); \
                 that needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, and here it failed ({e}): \
                 the reuse is not shown here. kill(2) of pid {old} with signal 0 now says {}; any fork on this \
                 machine may be given {old} once the counter wraps",
                old.as_raw() - 1,
                outcome(send::kill(old, 0))
            );
            return Ok(());
        }
        let started = start_reader(me, stop);
        let put_back = std::fs::write(NS_LAST_PID, counter.trim());
        let (mut second, second_fd) = started?;
        say!(
            WRITER,
            "wrote {} to {NS_LAST_PID} before that fork; after it, put the counter back to {} \
             (so others' numbers go on as before): {}",
            old.as_raw() - 1,
            counter.trim(),
            match put_back {
                Ok(()) => "done".to_string(),
                Err(e) => format!("failed: {e}"),
            }
        );
        if second.pid() == old {
            let shown = stranger(&mut second, &second_fd, old_handle, stop);
            if let Err(e) = shown {
                second.end_and_reap(WRITER, &e, PATIENCE);
                return Err(e);
            }
            return Ok(());
        }
        say!(
            WRITER,
            "try {attempt}: some other fork on this machine took pid {old} first (mine got {}); \
             ending that reader",
            second.pid()
        );
        second_fd
            .send_signal(libc::SIGTERM)
            .map_err(|e| anyhow!("pidfd_send_signal SIGTERM to {}: {e}", second.pid()))?;
        await_exit(&second, &second_fd, stop)?;
        reap(&mut second)?;
    }
    say!(
        WRITER,
        "pid {old} was taken by someone else {TRIES} times: the reuse is not shown this run"
    );
    Ok(())
}

/// The new reader has the old number: the old pidfd refuses, kill(2) does not.
fn stranger(kid: &mut Kid, handle: &PidFd, old_handle: &PidFd, stop: &Signals) -> Result<()> {
    let pid = kid.pid();
    say!(
        WRITER,
        "my new reader got pid {pid}, the number of the reaped one (here my own child \
         stands in for a stranger)"
    );
    say!(
        WRITER,
        "the old pidfd (fd {}): pidfd_send_signal SIGTERM: {}: it names the old process, \
         not the number",
        old_handle.raw(),
        outcome(old_handle.send_signal(libc::SIGTERM))
    );
    say!(
        WRITER,
        "kill(2) SIGTERM to pid {pid}, the old way with the number kept from before: {}",
        outcome(send::kill(pid, libc::SIGTERM))
    );
    await_exit(kid, handle, stop)?;
    let status = reap(kid)?;
    say!(
        WRITER,
        "waitpid: reaped the new reader {pid}: {}: kill(2) ended a process that had \
         nothing to do with the first one",
        describe(status)
    );
    Ok(())
}

// ---- waiting, by poll ---------------------------------------------------------------

/// Waits for the reader's "ready" on `acks`, polling its pidfd and our signalfd too:
/// a reader that ends first, SIGINT/SIGTERM/SIGHUP, or PATIENCE without a word, is
/// an error.
fn await_ready(kid: &mut Kid, handle: &PidFd, acks: &PipeReader, stop: &Signals) -> Result<()> {
    let fds = [acks.as_fd(), handle.as_fd(), stop.as_fd()];
    let ready = ready::readable(&fds, Some(PATIENCE)).context("poll")?;
    take_stop(ready[2], stop)?;
    if ready[0] {
        let mut buf = [0u8; 16];
        if (&*acks)
            .read(&mut buf)
            .context("reading the reader's ack")?
            > 0
        {
            return Ok(());
        }
    }
    if ready[0] || ready[1] {
        let status = reap(kid)?;
        bail!(
            "the reader (pid {}) ended before it was ready: {}",
            kid.pid(),
            describe(status)
        );
    }
    bail!(
        "the reader (pid {}) was not ready within {PATIENCE:?}: is it stuck?",
        kid.pid()
    )
}

/// Waits until `handle`'s process has terminated (its pidfd is readable).
fn await_exit(kid: &Kid, handle: &PidFd, stop: &Signals) -> Result<()> {
    let ready = ready::readable(&[stop.as_fd(), handle.as_fd()], Some(PATIENCE)).context("poll")?;
    take_stop(ready[0], stop)?;
    if !ready[1] {
        bail!(
            "the reader (pid {}) did not end within {PATIENCE:?} of SIGTERM",
            kid.pid()
        );
    }
    Ok(())
}

/// If the signalfd is `readable`: SIGINT, SIGTERM or SIGHUP become `Stopped`.
fn take_stop(readable: bool, stop: &Signals) -> Result<()> {
    if readable {
        while let Some(c) = stop.take().context("read(2) of the signalfd")? {
            stop::stop_if_asked(WRITER, &c)?;
        }
    }
    Ok(())
}

/// Reaps a reader whose pidfd said it has terminated.
fn reap(kid: &mut Kid) -> Result<WaitStatus> {
    loop {
        match kid.wait_change(WRITER, PATIENCE)? {
            ended @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(ended),
            _ => continue,
        }
    }
}

// ---- the reader: watching its parent -----------------------------------------------

/// The reader: a pidfd on its parent, then poll(2) on it until the parent ends
/// (then: exit 1, saying so) or a signal's default action ends us (SIGTERM).
fn watch_parent(mut ack: PipeWriter, writer: Pid) -> Result<()> {
    let Some(parent) = PidFd::open_parent(writer).context("pidfd_open of my parent")? else {
        bail!("the writer (pid {writer}) is gone: I was re-parented before I could open its pidfd");
    };
    say!(
        READER,
        "opened a pidfd on my parent, the writer {writer} (fd {}), and getppid() still says \
         {writer}: it is the writer's; sleeping in poll(2) on it",
        parent.raw()
    );
    ack.write_all(b"ready\n").map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => {
            anyhow!("the writer (pid {writer}) is gone: its end of the ack pipe is closed (EPIPE)")
        }
        _ => anyhow!("telling the writer (pid {writer}) I am ready: {e}"),
    })?;
    parent.wait_exit(None).context("poll")?;
    bail!("the writer (pid {writer}) is gone: its pidfd became readable (it terminated)")
}

// ---- `writer pidfd --pid PID`: two terminals -----------------------------------------

pub fn writer(pid: Pid, signals: &[c_int]) -> Result<()> {
    let stop = Signals::open(&stop::stop_signals()).context("signalfd")?;
    let handle = PidFd::open(pid).map_err(|e| match e {
        Errno::ESRCH => anyhow!(
            "no process {pid}: pidfd_open(2) failed with ESRCH (no such process): start \
             `signal-demo reader signalfd` and pass the pid it prints"
        ),
        e => anyhow!("pidfd_open({pid}): {e}"),
    })?;
    say!(
        WRITER,
        "pidfd_open({pid}) gave fd {}: from now on it names that process, whatever the number \
         comes to mean",
        handle.raw()
    );
    let signals = if signals.is_empty() {
        &[libc::SIGUSR1][..]
    } else {
        signals
    };
    for &signo in signals {
        handle.send_signal(signo).map_err(|e| match e {
            Errno::ESRCH => anyhow!("process {pid} has already ended: pidfd_send_signal(2) ESRCH"),
            Errno::EPERM => anyhow!(
                "not allowed to signal process {pid}: pidfd_send_signal(2) failed with EPERM \
                 (it belongs to another user)"
            ),
            e => anyhow!("pidfd_send_signal to {pid}: {e}"),
        })?;
        say!(
            WRITER,
            "sent {} to {pid} with pidfd_send_signal(2)",
            send::name(signo)
        );
    }
    say!(
        WRITER,
        "waiting for {pid} to exit: poll(2) on its pidfd (it is not my child: waitpid could \
         not wait for it); Ctrl+C stops waiting"
    );
    loop {
        let ready = ready::readable(&[stop.as_fd(), handle.as_fd()], None).context("poll")?;
        take_stop(ready[0], &stop)?;
        if ready[1] {
            break;
        }
    }
    say!(
        WRITER,
        "{pid} has terminated: its pidfd became readable; /proc/self/fdinfo/{} says Pid {} \
         (-1 once its parent has reaped it)",
        handle.raw(),
        my_fdinfo_pid(&handle)
    );
    Ok(())
}

// ---- small words ---------------------------------------------------------------------

/// What a call returned, in words: "0 (success)", "ESRCH (no such process)".
fn outcome(result: nix::Result<()>) -> String {
    match result {
        Ok(()) => "0 (success)".into(),
        Err(e) => format!("{e:?} ({})", e.desc().to_lowercase()),
    }
}

/// The `Pid:` line of our own fdinfo for `handle`.
fn my_fdinfo_pid(handle: &PidFd) -> String {
    fdinfo_field(getpid(), handle.raw(), "Pid").unwrap_or_else(|| "?".into())
}

/// The state letter of `pid` in /proc/PID/stat (R, S, Z...).
fn state_of(pid: Pid) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')')?.1.trim_start().chars().next())
        .unwrap_or('?')
}
