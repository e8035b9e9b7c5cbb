//! The narrated default run: the parent (writer) signals the child it forks (reader).
//!
//! 1. Asynchronous (唯一的异步通信机制): the reader is busy, blocked in read(2) on a
//!    pipe. SIGUSR1 comes: the read returns EINTR, the reader finds what its handler
//!    noted, reads again, and the work goes on.
//! 2. Ctrl+Z (停止该进程，但还未结束): SIGTSTP. The reader reports it, then really stops;
//!    the writer, like a shell, sees it stopped (waitpid, state T), then sends SIGCONT,
//!    what `fg` sends, and the reader runs on.
//! 3. Not a data channel: 1000 SIGUSR1 as fast as kill(2) goes can run the handler
//!    fewer times (printed: it varies); 1000 more while the reader keeps SIGUSR1 blocked run
//!    it exactly once: a standard signal is pending or not, there is no count.
//! 4. Real-time signals queue: 1000 SIGRTMIN sent with sigqueue(3), carrying 0..999,
//!    all arrive, in order, each with its value.
//!
//! The reader answers each step with SIGUSR2 ("done, go on"), which the writer keeps
//! blocked and takes with sigtimedwait(2), so each act starts when the reader is ready
//! for it. Every wait on either side has a timeout: a stuck or dead peer is noticed.
//!
//! The reader runs in a process group of its own, as a shell puts each job in one.
//! The kernel lets SIGTSTP stop a process only if someone could resume it: a member
//! of its group must have a parent in another group of the same session (a
//! job-control shell; for the reader's group, the writer). Under `setsid`, `ssh host
//! cmd` or as a container's PID 1, our own group has no such parent: it is
//! "orphaned", and SIGTSTP sent to it is thrown away. The price: Ctrl+C in a terminal
//! goes to the foreground group only, the writer's; the writer takes it in its waits,
//! passes it on to the reader, reaps it, and dies of it. Ctrl+Z stops the writer only;
//! the reader waits for it (`fg` within 10 s, and the run goes on).

use std::ffi::c_int;
use std::io::{PipeReader, PipeWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{Pid, getpid, getppid, setpgid};
use signal_demo::catch::{self, Restart};
use signal_demo::{Caught, pending, send};

use crate::family::{Kid, Side, describe, exit_child, fork};
use crate::say;
use crate::stop::{self, Origin};

const WRITER: &str = "writer";
const READER: &str = "reader";
/// How many signals acts 3 and 4 send in a burst.
const BURST: usize = 1000;
/// How long either side waits for the other before it gives up on it.
const PATIENCE: Duration = Duration::from_secs(10);
/// How often a waiting reader checks that the writer is still there.
const SLICE: Duration = Duration::from_millis(200);

pub fn run() -> Result<()> {
    let (pipe_r, mut pipe_w) = std::io::pipe().context("pipe")?;
    // The reader's answers (SIGUSR2) stay pending until we take them: none is lost,
    // not even one that comes before we wait for it.
    pending::block(&SigSet::from(Signal::SIGUSR2)).context("sigprocmask SIGUSR2")?;
    let writer_pid = getpid();
    match fork()? {
        Side::Child => {
            drop(pipe_w); // only the writer writes: with a copy, we would never see EOF
            exit_child(own_group().and_then(|()| reader(pipe_r, writer_pid)))
        }
        Side::Parent(mut kid) => {
            drop(pipe_r);
            // The child does the same: whichever of us runs first, the group exists
            // before either relies on it. An error means the child is gone already,
            // which the first wait for its answer reports.
            let _ = setpgid(kid.pid(), kid.pid());
            say!(
                WRITER,
                "forked the reader, pid {}; it answers each step with SIGUSR2",
                kid.pid()
            );
            // The pipe stays open until the reader has ended: closed first, it would
            // end the reader's read(2) (EOF) before our signal (Ctrl+C passed on)
            // reaches it. No deadlock: the signal ends it, SIGKILL at worst.
            match writer(&mut kid, &mut pipe_w) {
                Ok(()) => kid.reap(WRITER, PATIENCE),
                Err(e) => {
                    kid.end_and_reap(WRITER, &e, PATIENCE);
                    Err(e)
                }
            }
        }
    }
}

/// The child's first step: a process group of its own, so that SIGTSTP can stop it
/// (see the top of this file).
fn own_group() -> Result<()> {
    setpgid(Pid::from_raw(0), Pid::from_raw(0)).context("setpgid")?;
    // A background group writing to a terminal set with `stty tostop` is stopped by
    // SIGTTOU, unless it blocks that signal: then the write goes through.
    pending::block(&SigSet::from(Signal::SIGTTOU))
        .map(drop)
        .context("sigprocmask SIGTTOU")
}

// ---- the writer: the parent -------------------------------------------------------

fn writer(kid: &mut Kid, pipe: &mut PipeWriter) -> Result<()> {
    let reader = kid.pid();
    await_answer(kid)?; // its handlers are in place

    say!(
        WRITER,
        "act 1 (唯一的异步通信机制): the reader is busy, blocked reading a pipe I have not written to"
    );
    let wchan = wait_until_asleep(kid, "pipe_read")?;
    say!(
        WRITER,
        "/proc/{reader}/wchan says {wchan}: it sleeps in the kernel; sending SIGUSR1 now"
    );
    send(reader, Signal::SIGUSR1)?;
    await_answer(kid)?;
    say!(WRITER, "writing \"back to work\" into the pipe");
    pipe.write_all(b"back to work\n")
        .context("writing to the reader's pipe")?;
    await_answer(kid)?;

    say!(
        WRITER,
        "act 2 (Ctrl+Z): sending SIGTSTP, then waiting like a shell for its job: waitpid(WUNTRACED)"
    );
    send(reader, Signal::SIGTSTP)?;
    match kid.wait_change(WRITER, PATIENCE)? {
        WaitStatus::Stopped(_, sig) => say!(
            WRITER,
            "waitpid: the reader was stopped by {sig}; /proc/{reader}/stat says state {}: \
             stopped, not ended (停止该进程，但还未结束)",
            state_of(reader)
        ),
        other => bail!("the reader should have stopped, but it {}", describe(other)),
    }
    say!(WRITER, "sending SIGCONT, as `fg` does");
    send(reader, Signal::SIGCONT)?;
    match kid.wait_change(WRITER, PATIENCE)? {
        WaitStatus::Continued(_) => say!(
            WRITER,
            "waitpid(WCONTINUED): the reader runs again (state {})",
            state_of(reader)
        ),
        other => bail!(
            "the reader should have continued, but it {}",
            describe(other)
        ),
    }
    await_answer(kid)?;

    say!(
        WRITER,
        "act 3 (a signal is not data): {BURST} SIGUSR1 as fast as kill(2) goes, then SIGUSR2 to say that was all"
    );
    let took = burst(reader)?;
    say!(WRITER, "sent {BURST} SIGUSR1 in {took} µs");
    await_answer(kid)?;
    say!(
        WRITER,
        "act 3b: {BURST} SIGUSR1 again, while the reader keeps SIGUSR1 blocked, then SIGUSR2"
    );
    let took = burst(reader)?;
    say!(WRITER, "sent {BURST} SIGUSR1 in {took} µs");
    await_answer(kid)?;

    say!(
        WRITER,
        "act 4: {BURST} SIGRTMIN (signal {}) with sigqueue(3), carrying the values 0 to {}, as fast as it goes",
        send::rtmin(),
        BURST - 1
    );
    let started = Instant::now();
    for k in 0..BURST {
        send::sigqueue(reader, send::rtmin(), k as i32).map_err(|e| match e {
            Errno::EAGAIN => anyhow::anyhow!(
                "sigqueue SIGRTMIN number {k}: EAGAIN: the kernel's queue of pending signals \
                 is full (RLIMIT_SIGPENDING, `ulimit -i`)"
            ),
            e => anyhow::anyhow!("sigqueue SIGRTMIN number {k} to the reader {reader}: {e}"),
        })?;
    }
    say!(
        WRITER,
        "queued {BURST} SIGRTMIN in {} µs",
        started.elapsed().as_micros()
    );
    await_answer(kid)?;
    say!(
        WRITER,
        "all acts done: waiting for the reader to exit, to reap it"
    );
    Ok(())
}

fn send(reader: Pid, sig: Signal) -> Result<()> {
    send::kill(reader, sig as c_int).with_context(|| format!("kill {sig} to the reader {reader}"))
}

/// Act 3: BURST SIGUSR1, then SIGUSR2. Returns how long the SIGUSR1 took, in µs.
fn burst(reader: Pid) -> Result<u128> {
    let started = Instant::now();
    for _ in 0..BURST {
        send(reader, Signal::SIGUSR1)?;
    }
    let took = started.elapsed().as_micros();
    send(reader, Signal::SIGUSR2)?;
    Ok(took)
}

/// Takes the reader's next answer (SIGUSR2) with sigtimedwait, or says why none came:
/// the reader ended (SIGCHLD, then waitpid tells how), it is silent too long, or we
/// were asked to stop (SIGINT, SIGTERM, SIGHUP).
fn await_answer(kid: &mut Kid) -> Result<()> {
    let answers = stop::stop_signals() | Signal::SIGUSR2 | Signal::SIGCHLD;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "the reader (pid {}) has not answered within {PATIENCE:?}: is it stuck?",
                kid.pid()
            );
        }
        match pending::take(&answers, left).context("sigtimedwait")? {
            Some(c) if c.is(Signal::SIGUSR2) && c.pid == kid.pid().as_raw() => return Ok(()),
            Some(c) if c.is(Signal::SIGCHLD) => {
                if let Some(status) = kid.has_ended()? {
                    bail!(
                        "the reader (pid {}) ended before it answered: {}",
                        kid.pid(),
                        describe(status)
                    );
                }
            }
            // SIGINT, SIGTERM or SIGHUP: stop. A SIGUSR2 from some other process: ignored.
            Some(c) => stop::stop_if_asked(WRITER, &c)?,
            None => {} // a timeout slice
        }
    }
}

/// Polls /proc until `pid` sleeps in a kernel function whose name contains `wchan`
/// (`cat /proc/PID/wchan` shows the same), so the signal surely finds it blocked.
/// A reader that died meanwhile (SIGKILL: no word from it) is noticed at the next look.
fn wait_until_asleep(kid: &mut Kid, wchan: &str) -> Result<String> {
    let pid = kid.pid();
    let deadline = Instant::now() + PATIENCE;
    let stop = stop::stop_signals();
    loop {
        if let Some(status) = kid.has_ended()? {
            bail!("the reader (pid {pid}) ended: {}", describe(status));
        }
        let sleeping_in = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if state_of(pid) == 'S' && sleeping_in.contains(wchan) {
            return Ok(sleeping_in);
        }
        if Instant::now() > deadline {
            bail!("the reader (pid {pid}) was not seen asleep in {wchan} within {PATIENCE:?}");
        }
        // Look again in 1 ms, unless Ctrl+C comes first.
        if let Some(c) = pending::take(&stop, Duration::from_millis(1)).context("sigtimedwait")? {
            stop::stop_if_asked(WRITER, &c)?;
        }
    }
}

/// The state letter of `pid` in /proc/PID/stat (R running, S asleep, T stopped...).
fn state_of(pid: Pid) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')')?.1.trim_start().chars().next())
        .unwrap_or('?')
}

// ---- the reader: the child ---------------------------------------------------------

fn reader(pipe: PipeReader, writer: Pid) -> Result<()> {
    // No SA_RESTART: act 1's read(2) must return EINTR, not restart.
    let caught = [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGTSTP,
        libc::SIGCONT,
        send::rtmin(),
    ];
    catch::install(&caught, Restart::No).context("sigaction")?;
    say!(
        READER,
        "handlers installed for SIGUSR1, SIGUSR2, SIGTSTP, SIGCONT and SIGRTMIN: each only \
         notes the signal in an array of atomics; they stay blocked except while I wait"
    );
    answer(writer)?;
    interrupted_read(&pipe, writer)?;
    stopped_and_resumed(writer)?;
    coalesced(writer)?;
    coalesced_while_blocked(writer)?;
    queued(writer)?;
    say!(READER, "done: exiting with status 0");
    Ok(())
}

/// Tells the writer this step is done.
fn answer(writer: Pid) -> Result<()> {
    match send::kill(writer, libc::SIGUSR2) {
        Err(Errno::ESRCH) => bail!("the writer (pid {writer}) is gone: kill(2) says ESRCH"),
        done => done.context("answering the writer (kill SIGUSR2)"),
    }
}

/// Act 1: a blocked read(2), broken off by SIGUSR1, then resumed.
fn interrupted_read(pipe: &PipeReader, writer: Pid) -> Result<()> {
    let usr1 = SigSet::from(Signal::SIGUSR1);
    let mut buf = [0u8; 64];
    say!(
        READER,
        "act 1: busy: blocked in read(2) on an empty pipe, SIGUSR1 let in"
    );
    // The writer signals only once it sees us asleep in the read. A signal landing
    // between the unblock and the read would run the handler and leave the read
    // blocked: the race that ppoll (`catch::wait`) closes for plain waiting.
    pending::unblock(&usr1).context("sigprocmask SIG_UNBLOCK")?;
    let first = nix::unistd::read(pipe, &mut buf);
    pending::block(&usr1).context("sigprocmask SIG_BLOCK")?;
    match first {
        Err(Errno::EINTR) => {}
        Ok(0) => bail!(
            "the writer (pid {writer}) closed the pipe before act 1 (read(2) returned 0, \
             end of file): is it gone?"
        ),
        Ok(n) => bail!("read(2) returned {n} bytes before any signal"),
        Err(e) => bail!("read: {e}"),
    }
    let noted = catch::take().caught;
    let usr1 = noted
        .iter()
        .find(|c| c.is(Signal::SIGUSR1))
        .context("read(2) returned EINTR, yet my handler noted no SIGUSR1")?;
    say!(
        READER,
        "read(2) returned EINTR: the kernel broke off the blocked call to run my handler for {} {}",
        usr1.name(),
        usr1.origin()
    );
    say!(
        READER,
        "back in my own code I find {} in the handler's notes, and carry on: read(2) again",
        usr1.name()
    );
    answer(writer)?;
    let n = loop {
        match nix::unistd::read(pipe, &mut buf) {
            Ok(0) => bail!(
                "the writer (pid {writer}) closed the pipe (read(2) returned 0, end of \
                 file): is it gone?"
            ),
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(e) => bail!("read: {e}"),
        }
    };
    let text = String::from_utf8_lossy(&buf[..n]);
    let text = text.trim_end_matches('\n');
    say!(
        READER,
        "read(2) resumed and returned {text:?} ({} bytes): the work goes on",
        text.len()
    );
    answer(writer)
}

/// Act 2: SIGTSTP, reported, then a real stop until SIGCONT.
fn stopped_and_resumed(writer: Pid) -> Result<()> {
    say!(READER, "act 2: waiting, SIGTSTP and SIGCONT let in");
    let noted = collect(&[libc::SIGTSTP, libc::SIGCONT], writer, |c| {
        c.is(Signal::SIGTSTP)
    })?;
    let tstp = noted.last().context("no SIGTSTP noted")?;
    say!(
        READER,
        "received SIGTSTP {}: stopping for real: its default action back, raised, let in",
        tstp.origin()
    );
    let stopped_for = catch::stop_self().context("stopping (SIGTSTP)")?;
    let after = catch::take();
    let cont = after
        .caught
        .iter()
        .find(|c| c.is(Signal::SIGCONT))
        .context(
            "SIGTSTP did not stop me: the kernel discards it when the process group is \
             orphaned (no job-control shell could resume it)",
        )?;
    say!(
        READER,
        "received SIGCONT {}: resumed after {} µs stopped; my SIGTSTP handler is back",
        cont.origin(),
        stopped_for.as_micros()
    );
    answer(writer)
}

/// Act 3: count the handler's runs for BURST SIGUSR1 sent as fast as possible.
fn coalesced(writer: Pid) -> Result<()> {
    say!(
        READER,
        "act 3: SIGUSR1 and SIGUSR2 let in; counting my handler's runs for SIGUSR1 until SIGUSR2"
    );
    let noted = collect(&[libc::SIGUSR1, libc::SIGUSR2], writer, |c| {
        c.is(Signal::SIGUSR2)
    })?;
    let ran = noted.iter().filter(|c| c.is(Signal::SIGUSR1)).count();
    say!(
        READER,
        "my handler ran {ran} times for the {BURST} SIGUSR1 sent: {} merged into one already \
         pending (a standard signal is one pending bit, not a count)",
        BURST - ran
    );
    answer(writer)
}

/// Act 3b: the same burst while SIGUSR1 stays blocked: exactly one is delivered.
fn coalesced_while_blocked(writer: Pid) -> Result<()> {
    say!(
        READER,
        "act 3b: SIGUSR1 stays blocked while the writer sends {BURST} more; only SIGUSR2 let in"
    );
    collect(&[libc::SIGUSR2], writer, |c| c.is(Signal::SIGUSR2))?;
    say!(
        READER,
        "SIGUSR2 came; /proc/self/status: {}",
        pending_usr1()?
    );
    pending::let_in(&SigSet::from(Signal::SIGUSR1)).context("sigprocmask")?;
    let ran = catch::take()
        .caught
        .iter()
        .filter(|c| c.is(Signal::SIGUSR1))
        .count();
    say!(
        READER,
        "let SIGUSR1 in: my handler ran exactly {ran} time{} for the {BURST} sent while it was blocked",
        if ran == 1 { "" } else { "s" }
    );
    answer(writer)
}

/// The kernel's own view of our pending signals (ShdPnd: sent to the process),
/// one bit per signal: bit N-1 for signal N.
fn pending_usr1() -> Result<String> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .map(str::trim)
        .context("no ShdPnd line in /proc/self/status")?;
    let bits = u64::from_str_radix(hex, 16).context("ShdPnd is not hex")?;
    let set = bits & (1 << (libc::SIGUSR1 - 1)) != 0;
    Ok(format!(
        "ShdPnd {hex}: SIGUSR1's bit is {}, one bit however many were sent",
        if set { "set" } else { "clear" }
    ))
}

/// Act 4: BURST SIGRTMIN, each with its value, checked one by one.
fn queued(writer: Pid) -> Result<()> {
    let rtmin = send::rtmin();
    say!(
        READER,
        "act 4: SIGRTMIN let in: real-time signals queue, one entry per signal sent, with its value"
    );
    let mut seen = 0;
    let noted = collect(&[rtmin], writer, |c| {
        seen += usize::from(c.signo == rtmin);
        seen == BURST
    })?;
    for (k, c) in noted.iter().filter(|c| c.signo == rtmin).enumerate() {
        if c.code != libc::SI_QUEUE || c.pid != writer.as_raw() || c.value != k as i32 {
            bail!(
                "SIGRTMIN number {k} came {}, not from the writer with value {k}: \
                 real-time signals should arrive in the order sent",
                c.origin()
            );
        }
    }
    say!(
        READER,
        "all {BURST} SIGRTMIN arrived, in order, each with its value: 0, 1, 2 ... {}",
        BURST - 1
    );
    answer(writer)
}

/// Waits with the signals `allowed` let in, until `done` says so for one of them, and
/// returns all that was noted. The writer gone (we were re-parented) or silent for
/// PATIENCE is an error: no hang.
fn collect(
    allowed: &[c_int],
    writer: Pid,
    mut done: impl FnMut(&Caught) -> bool,
) -> Result<Vec<Caught>> {
    let mut noted = Vec::new();
    let mut quiet_since = Instant::now();
    loop {
        let batch = catch::wait(allowed, Some(SLICE)).context("ppoll")?;
        if batch.unlogged > 0 {
            bail!(
                "{} signals came faster than I could note them",
                batch.unlogged
            );
        }
        let mut finished = false;
        for c in batch.caught {
            finished |= done(&c);
            noted.push(c);
            quiet_since = Instant::now();
        }
        if finished {
            return Ok(noted);
        }
        if getppid() != writer {
            bail!(
                "the writer (pid {writer}) is gone: I was re-parented to pid {}",
                getppid()
            );
        }
        if quiet_since.elapsed() > PATIENCE {
            bail!("the writer (pid {writer}) sent nothing for {PATIENCE:?}: is it stuck?");
        }
    }
}
