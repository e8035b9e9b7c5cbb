//! `signal-demo reader`: prints its pid, then reports every signal it gets, until
//! SIGINT, SIGTERM or SIGHUP. Start it in a terminal and try the keys: Ctrl+C, Ctrl+Z
//! then `fg`, resizing the window (SIGWINCH); from another terminal,
//! `signal-demo writer --pid PID USR1 RTMIN+1` or `kill -USR1 PID`.
//!
//! Ctrl+Z is the interesting one. A program that catches SIGTSTP has taken the stop
//! away from the shell: to behave like a job, after reporting it must stop itself
//! (the library's `catch::stop_self`), and after `fg` pick up where it was.
//!
//! SIGQUIT (Ctrl+\) is left alone, as a way out that works whatever my handlers do
//! (unless I was started with it ignored, as a script's `cmd &` is); SIGKILL and
//! SIGSTOP cannot be caught at all.

use std::ffi::c_int;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::getpid;

use signal_demo::catch::{self, Batch, Restart};
use signal_demo::send;

use crate::say;
use crate::stop::{Origin, Stopped};

const READER: &str = "reader";

/// The standard signals the reader catches (the real-time ones too, all of them).
const CAUGHT: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGWINCH,
];

pub fn run() -> Result<()> {
    let realtime: Vec<c_int> = (send::rtmin()..=send::rtmax()).collect();
    let mut allowed: Vec<c_int> = CAUGHT.iter().map(|&s| s as c_int).collect();
    allowed.extend(&realtime);
    // No SA_RESTART: a blocked call interrupted by a caught signal returns EINTR.
    catch::install(&allowed, Restart::No).context("sigaction")?;
    let me = getpid();
    let names: Vec<&str> = CAUGHT.iter().map(|s| s.as_str()).collect();
    say!(
        READER,
        "pid {me}: handlers installed for {} and SIGRTMIN..SIGRTMAX; each only notes the \
         signal in an array of atomics",
        names.join(" ")
    );
    say!(
        READER,
        "try: signal-demo writer --pid {me} USR1 RTMIN+1   or: kill -USR1 {me}; \
         here: Ctrl+Z stops me, fg resumes me, Ctrl+C ends me"
    );
    say!(
        READER,
        "waiting for signals (ppoll(2): they are let in only while I wait)"
    );
    let mut received = 0;
    loop {
        let batch = catch::wait(&allowed, None).context("ppoll")?;
        report(batch, &mut received)?;
    }
}

/// Says what each noted signal was, and acts on the ones that mean "stop".
fn report(batch: Batch, received: &mut u64) -> Result<()> {
    if batch.caught.len() > 1 {
        say!(
            READER,
            "{} signals in one wake-up: the kernel stacked a handler call for each one \
             pending, lowest number first, and the top of the stack runs first; so the \
             handlers ran, and my log lists them, highest number first, not in the order sent (one signal number's own real-time \
             signals stay in order)",
            batch.caught.len()
        );
    }
    for c in batch.caught {
        *received += 1;
        match Signal::try_from(c.signo) {
            Ok(sig @ (Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP)) => {
                say!(
                    READER,
                    "received {sig} {}: exiting cleanly ({received} signals received in all)",
                    c.origin()
                );
                return Err(Stopped(sig).into());
            }
            Ok(Signal::SIGTSTP) => {
                say!(
                    READER,
                    "received SIGTSTP {}: stopping for real (its default action back, raised): \
                     `fg` or SIGCONT resumes me",
                    c.origin()
                );
                let stopped_for = catch::stop_self().context("stopping (SIGTSTP)")?;
                resumed(catch::take(), stopped_for.as_secs_f64(), received)?;
            }
            Ok(Signal::SIGCONT) => say!(
                READER,
                "received SIGCONT {}: if I was stopped (by SIGSTOP, which cannot be caught, so I \
                 cannot tell) this resumed me; either way my handler ran",
                c.origin()
            ),
            _ => say!(READER, "received {} {}", c.name(), c.origin()),
        }
    }
    if batch.unlogged > 0 {
        say!(
            READER,
            "and {} more signals my handler had no room to note",
            batch.unlogged
        );
    }
    Ok(())
}

/// After `stop_for_real`: SIGCONT woke us (say so), or we never stopped.
fn resumed(mut after: Batch, stopped_secs: f64, received: &mut u64) -> Result<()> {
    match after.caught.iter().position(|c| c.is(Signal::SIGCONT)) {
        Some(i) => {
            let cont = after.caught.remove(i);
            *received += 1;
            say!(
                READER,
                "received SIGCONT {}: resumed after {stopped_secs:.1} s stopped; my SIGTSTP \
                 handler is back; waiting again",
                cont.origin()
            );
        }
        None => say!(
            READER,
            "SIGTSTP did not stop me: the kernel discards it when the process group is \
             orphaned (no job-control shell could resume it); going on"
        ),
    }
    report(after, received)
}
