//! `signal-demo signalfd` and `signal-demo reader signalfd`: the same signals, taken
//! as data from a file descriptor (signalfd(2)), with no handler at all.
//!
//! Notes, section 信号: 信号是进程间通信机制中唯一的异步通信机制 (the only asynchronous
//! mechanism). True of delivery to a handler: it interrupts the program wherever it
//! is. Linux also lets a program turn it synchronous: block the signals, open a
//! signalfd for them, and each one waits in the fd until the program read(2)s it, as
//! a 128-byte `signalfd_siginfo` (signal, `ssi_code`, sender's pid and uid, the
//! sigqueue(3) value). The fd is readable while one is pending, so one poll(2) waits
//! for signals and for data on a pipe together: this is how event loops take
//! signals. Safer, because the code that reacts is no handler: it runs between two
//! polls, where it may print, allocate and lock (a handler may only make the
//! async-signal-safe calls of signal-safety(7)), and it cannot interrupt the
//! program half-way through anything.
//!
//! The default run: the parent (writer) forks the reader, which blocks SIGUSR1,
//! SIGUSR2, SIGRTMIN, SIGINT, SIGTERM and SIGHUP and polls its signalfd beside a pipe
//! from the writer. The writer reads the reader's fd from the kernel's side
//! (/proc/PID/fdinfo: `sigmask`, /proc/PID/status: blocked, not caught), then sends
//! SIGUSR1 with kill(2), SIGRTMIN with sigqueue(3) and the value 42, a line through
//! the pipe, and SIGTERM, which the reader takes as data like the others and answers
//! by finishing on its own terms (exit 0). The reader acks each step on a second
//! pipe, so the output comes in one order.
//!
//! What does not change: a standard signal is one pending bit (1000 sent before the
//! reader reads are one read; not shown here, see the default run's act 3b), and
//! SIGKILL and SIGSTOP cannot be blocked, so no fd ever reads them.
//!
//! Two terminals: `signal-demo reader signalfd` prints its pid and polls its signalfd
//! beside stdin (type a line); from the other, `signal-demo writer pidfd --pid PID
//! USR1 TERM`, `signal-demo writer --pid PID RTMIN+1` or `kill -USR1 PID`. Ctrl+Z
//! stops it as it stops any program (SIGTSTP is not in its set: its default action
//! runs), `fg` resumes it and it reads the SIGCONT, Ctrl+C ends it.
//!
//! In production: a signalfd in your poll/epoll loop, with the signals blocked
//! before any thread starts (tokio's signal support, through signal-hook-registry,
//! uses a handler that writes to a pipe instead, which works beyond Linux too).

use std::ffi::c_int;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::{Pid, getpid};
use signal_demo::signalfd::Signals;
use signal_demo::{Caught, pending, ready, send};

use crate::family::{Kid, Side, describe, exit_child, fork};
use crate::say;
use crate::stop::{self, Origin as _};

const WRITER: &str = "writer";
const READER: &str = "reader";
/// How long either side waits for the other before it gives up on it.
const PATIENCE: Duration = Duration::from_secs(10);
/// The value act 2's sigqueue(3) carries.
const VALUE: i32 = 42;
/// The line act 3 writes into the pipe.
const LINE: &str = "hello through the pipe";

pub fn run() -> Result<()> {
    let (data_r, data_w) = std::io::pipe().context("pipe")?; // writer → reader: the other fd
    let (ack_r, ack_w) = std::io::pipe().context("pipe")?; // reader → writer: "done"
    let writer_pid = getpid();
    match fork()? {
        Side::Child => {
            // Only the writer writes `data`: with a copy kept here, the reader would
            // never see its end (EOF) when the writer dies.
            drop((data_w, ack_r));
            exit_child(reader(data_r, ack_w, writer_pid))
        }
        Side::Parent(mut kid) => {
            drop((data_r, ack_w));
            let (mut data_w, ack_r) = (data_w, ack_r);
            say!(
                WRITER,
                "forked the reader, pid {}; it acks each step on a pipe",
                kid.pid()
            );
            // Both pipes stay open until the reader is reaped: closed, they would
            // end the reader's loop (EOF, EPIPE: "the writer is gone") before a
            // signal we pass on could.
            match writer(&mut kid, &mut data_w, &ack_r) {
                Ok(()) => kid.reap(WRITER, PATIENCE),
                Err(e) => {
                    kid.end_and_reap(WRITER, &e, PATIENCE);
                    Err(e)
                }
            }
        }
    }
}

// ---- the writer: the parent -------------------------------------------------------

fn writer(kid: &mut Kid, data: &mut PipeWriter, acks: &PipeReader) -> Result<()> {
    // Our own SIGINT, SIGTERM, SIGHUP, as data too: polled beside the acks.
    let stop = Signals::open(&stop::stop_signals()).context("signalfd")?;
    let reader = kid.pid();
    let ready = await_ack(kid, acks, &stop)?;
    let fd: c_int = ready
        .strip_prefix("ready ")
        .and_then(|n| n.parse().ok())
        .context("the reader's first ack should be `ready FD`")?;
    say!(
        WRITER,
        "the kernel's side: /proc/{reader}/fd/{fd} -> {}, /proc/{reader}/fdinfo/{fd} sigmask {}",
        link_of(reader, fd),
        fdinfo_field(reader, fd, "sigmask").unwrap_or_else(|| "?".into())
    );
    say!(
        WRITER,
        "/proc/{reader}/status: {}",
        blocked_not_caught(reader, &reader_set())?
    );

    say!(
        WRITER,
        "act 1: SIGUSR1 with kill(2); no need to wait until the reader sleeps: blocked, \
         it waits in the fd"
    );
    send::kill(reader, libc::SIGUSR1).context("kill SIGUSR1 to the reader")?;
    await_ack(kid, acks, &stop)?;

    say!(
        WRITER,
        "act 2: SIGRTMIN with sigqueue(3), carrying the value {VALUE}"
    );
    send::sigqueue(reader, send::rtmin(), VALUE).context("sigqueue SIGRTMIN to the reader")?;
    await_ack(kid, acks, &stop)?;

    say!(WRITER, "act 3: a line through the pipe: {LINE:?}");
    data.write_all(format!("{LINE}\n").as_bytes())
        .context("writing to the reader's pipe")?;
    await_ack(kid, acks, &stop)?;

    say!(
        WRITER,
        "act 4: SIGTERM with kill(2): blocked and read from the fd, it cannot end the \
         reader by itself; the reader's loop decides what it means"
    );
    send::kill(reader, libc::SIGTERM).context("kill SIGTERM to the reader")?;
    say!(WRITER, "waiting for the reader to exit, to reap it");
    Ok(())
}

/// Waits for the reader's next ack line, polling the ack pipe beside our own
/// signalfd (SIGINT, SIGTERM, SIGHUP). The reader gone (EOF: it closed its end by
/// ending) or silent for PATIENCE is an error.
fn await_ack(kid: &mut Kid, acks: &PipeReader, stop: &Signals) -> Result<String> {
    let ready = ready::readable(&[acks.as_fd(), stop.as_fd()], Some(PATIENCE)).context("poll")?;
    if ready[1] {
        while let Some(c) = stop.take().context("read(2) of the signalfd")? {
            stop::stop_if_asked(WRITER, &c)?;
        }
    }
    if !ready[0] {
        bail!(
            "the reader (pid {}) has not answered within {PATIENCE:?}: is it stuck?",
            kid.pid()
        );
    }
    let mut buf = [0u8; 64];
    let n = (&*acks)
        .read(&mut buf)
        .context("reading the reader's ack")?;
    if n == 0 {
        // Its end of the pipe closed: it has ended, or is ending. Wait to say how.
        let status = loop {
            match kid.wait_change(WRITER, PATIENCE)? {
                ended @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break ended,
                _ => continue,
            }
        };
        bail!(
            "the reader (pid {}) ended before it answered: {}",
            kid.pid(),
            describe(status)
        );
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
}

/// The target of /proc/PID/fd/FD: `anon_inode:[signalfd]` for a signalfd.
fn link_of(pid: Pid, fd: c_int) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|l| l.display().to_string())
        .unwrap_or_else(|e| format!("? ({e})"))
}

/// One field of /proc/PID/fdinfo/FD (`sigmask` for a signalfd, `Pid` for a pidfd).
pub fn fdinfo_field(pid: Pid, fd: c_int, field: &str) -> Option<String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// "SigBlk has SIGUSR1 ... SigCgt has none of them: no handler": the kernel's
/// view of `set` in /proc/PID/status (bit N-1 for signal N).
fn blocked_not_caught(pid: Pid, set: &[c_int]) -> Result<String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    let mask = |field: &str| -> Result<u64> {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .with_context(|| format!("no {field} line in {path}"))?;
        u64::from_str_radix(hex.trim(), 16).with_context(|| format!("{field} is not hex"))
    };
    let (blocked, caught) = (mask("SigBlk:")?, mask("SigCgt:")?);
    let bit = |signo: c_int| 1u64 << (signo - 1);
    let all_blocked = set.iter().all(|&s| blocked & bit(s) != 0);
    let none_caught = set.iter().all(|&s| caught & bit(s) == 0);
    // Rust's runtime catches SIGSEGV and SIGBUS itself, to report a stack overflow.
    let others: Vec<String> = (1..=64)
        .filter(|&s| caught & bit(s) != 0)
        .map(send::name)
        .collect();
    let runtime = if others == ["SIGBUS", "SIGSEGV"] {
        " (SIGBUS and SIGSEGV: Rust's runtime, to report a stack overflow)"
    } else {
        ""
    };
    Ok(format!(
        "SigBlk {blocked:016x} has {} of them blocked, SigCgt {caught:016x} has {}: \
         no handler; caught: {}{runtime}",
        if all_blocked { "all" } else { "NOT all" },
        if none_caught {
            "none of them"
        } else {
            "SOME of them"
        },
        others.join(" ")
    ))
}

// ---- the reader: the child ---------------------------------------------------------

/// The default run's reader takes these from its signalfd.
fn reader_set() -> Vec<c_int> {
    vec![
        libc::SIGUSR1,
        libc::SIGUSR2,
        send::rtmin(),
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
    ]
}

fn names(set: &[c_int]) -> String {
    set.iter()
        .map(|&s| send::name(s))
        .collect::<Vec<_>>()
        .join(" ")
}

fn reader(data: PipeReader, mut acks: PipeWriter, writer: Pid) -> Result<()> {
    let set = reader_set();
    let signals = Signals::open(&pending::set_of(&set)).context("signalfd")?;
    say!(
        READER,
        "blocked {} and opened a signalfd for them (fd {}): no handler installed; each \
         one waits in the fd until I read(2) it",
        names(&set),
        signals.raw()
    );
    ack(&mut acks, &format!("ready {}", signals.raw()), writer)?;
    say!(
        READER,
        "poll(2): the signalfd (fd {}) and the pipe (fd {}), one wait for both",
        signals.raw(),
        data.as_raw_fd()
    );
    let mut first = true;
    loop {
        let ready =
            ready::readable(&[signals.as_fd(), data.as_fd()], Some(PATIENCE)).context("poll")?;
        if ready == [false, false] {
            bail!("the writer (pid {writer}) sent nothing for {PATIENCE:?}: is it stuck?");
        }
        if ready[0] {
            while let Some(c) = signals.take().context("read(2) of the signalfd")? {
                say!(
                    READER,
                    "poll: the signalfd is readable; read(2) took one signalfd_siginfo ({} \
                     bytes): {}",
                    signal_demo::signalfd::SIGINFO_BYTES,
                    fields(&c)
                );
                if first {
                    say!(
                        READER,
                        "(this line is ordinary code in my loop: in a handler, printing it \
                         would not be async-signal-safe, as stdout's lock and the allocation \
                         are not)"
                    );
                    first = false;
                }
                if c.is(Signal::SIGTERM) && c.pid == writer.as_raw() {
                    say!(
                        READER,
                        "SIGTERM is data here: nothing ran on its own; my loop decides it \
                         means \"finish\": exiting with status 0"
                    );
                    return Ok(());
                }
                stop::stop_if_asked(READER, &c)?; // SIGINT, SIGTERM, SIGHUP from anyone else
                ack(&mut acks, "done", writer)?;
            }
        }
        if ready[1] {
            let mut buf = [0u8; 256];
            let n = (&data).read(&mut buf).context("reading the pipe")?;
            if n == 0 {
                bail!(
                    "the writer (pid {writer}) is gone: the pipe's write end is closed \
                     (read(2) returned 0, end of file)"
                );
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            say!(
                READER,
                "poll: the pipe is readable; read(2) gave {:?} ({n} bytes): data and \
                 signals, one loop",
                text.trim_end()
            );
            ack(&mut acks, "done", writer)?;
        }
    }
}

/// One ack line to the writer. EPIPE: the writer is gone (nobody holds the read end).
fn ack(acks: &mut PipeWriter, what: &str, writer: Pid) -> Result<()> {
    acks.write_all(format!("{what}\n").as_bytes())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => anyhow::anyhow!(
                "the writer (pid {writer}) is gone: its end of the ack pipe is closed (EPIPE)"
            ),
            _ => anyhow::anyhow!("acking to the writer (pid {writer}): {e}"),
        })
}

/// A `signalfd_siginfo`'s fields, in words.
fn fields(c: &Caught) -> String {
    let code = match c.code {
        libc::SI_USER => "SI_USER (kill(2), or pidfd_send_signal(2) with no siginfo)",
        libc::SI_QUEUE => "SI_QUEUE (sigqueue(3))",
        libc::SI_TKILL => "SI_TKILL (tgkill(2), raise(3))",
        libc::SI_KERNEL => "SI_KERNEL (the kernel)",
        _ => "another",
    };
    let mut text = format!(
        "ssi_signo {} ({}), ssi_code {} {code}, ssi_pid {} ({}), ssi_uid {}",
        c.signo,
        c.name(),
        c.code,
        c.pid,
        comm(c.pid),
        c.uid
    );
    if c.code == libc::SI_QUEUE {
        text += &format!(", ssi_int {}", c.value);
    }
    text
}

/// The command name of `pid` (the sender may be gone by now).
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| "already exited".into())
}

// ---- `reader signalfd`: two terminals ----------------------------------------------

/// The two-terminal reader's set: the signals the handler reader catches, minus
/// SIGTSTP (Ctrl+Z keeps its default action here: a plain stop), plus SIGCONT (it
/// resumes us whether blocked or not; blocked, we also read that it did) and every
/// real-time one. SIGINT, SIGTERM, SIGHUP only where not ignored (`nohup`).
fn alone_set() -> Vec<c_int> {
    let mut set = vec![
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGCONT,
        libc::SIGWINCH,
    ];
    set.extend(stop::stop_signals().iter().map(|s| s as c_int));
    set.extend(send::rtmin()..=send::rtmax());
    set
}

pub fn reader_alone() -> Result<()> {
    let set = alone_set();
    let signals = Signals::open(&pending::set_of(&set)).context("signalfd")?;
    let me = getpid();
    say!(
        READER,
        "pid {me}: blocked SIGUSR1 SIGUSR2 SIGALRM SIGCONT SIGWINCH {} and SIGRTMIN..SIGRTMAX, \
         and opened a signalfd for them (fd {}): no handler at all",
        stop::stop_signals()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        signals.raw()
    );
    say!(
        READER,
        "try: signal-demo writer pidfd --pid {me} USR1 TERM   or: kill -USR1 {me}; here: \
         type a line, Ctrl+Z stops me, fg resumes me, Ctrl+C ends me"
    );
    let stdin = std::io::stdin();
    let mut stdin_open = true;
    let mut received = 0u64;
    say!(
        READER,
        "waiting: poll(2) on the signalfd (fd {}) and stdin (fd 0)",
        signals.raw()
    );
    loop {
        let mut fds = vec![signals.as_fd()];
        if stdin_open {
            fds.push(stdin.as_fd());
        }
        let ready = ready::readable(&fds, None).context("poll")?;
        if ready[0] {
            let mut stop_by = None;
            while let Some(c) = signals.take().context("read(2) of the signalfd")? {
                received += 1;
                say!(READER, "signalfd: {}", fields(&c));
                if c.is(Signal::SIGCONT) {
                    say!(
                        READER,
                        "SIGCONT: if I was stopped, it resumed me when it was sent (blocking \
                         it keeps only the notice); waiting again"
                    );
                }
                let asked = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
                    .into_iter()
                    .find(|&s| c.is(s));
                if stop_by.is_none() && asked.is_some() {
                    // Read on first: what else is pending would be lost with us.
                    // Lower numbers come first, so SIGRTMIN+N sent before SIGTERM
                    // is read after it.
                    stop_by = asked;
                }
            }
            if let Some(sig) = stop_by {
                say!(
                    READER,
                    "{sig} taken: exiting cleanly ({received} signals received in all)"
                );
                return Err(stop::Stopped(sig).into());
            }
        }
        if stdin_open && ready[1] {
            stdin_open = echo_stdin(&stdin)?;
        }
    }
}

/// One read(2) of stdin, echoed (cut to 200 characters). False at end of file.
fn echo_stdin(stdin: &std::io::Stdin) -> Result<bool> {
    let mut buf = [0u8; 4096];
    let n = match nix::unistd::read(stdin.as_fd(), &mut buf) {
        Ok(n) => n,
        Err(nix::errno::Errno::EINTR) => return Ok(true),
        Err(e) => return Err(e).context("reading stdin"),
    };
    if n == 0 {
        say!(
            READER,
            "stdin: end of file; polling the signalfd alone from now on"
        );
        return Ok(false);
    }
    let text: String = String::from_utf8_lossy(&buf[..n])
        .trim_end()
        .chars()
        .take(200)
        .collect();
    say!(
        READER,
        "stdin: read(2) gave {text:?} ({n} bytes), in the same loop as the signals"
    );
    Ok(true)
}
