//! The narrated binary's side of stopping: which signals mean "stop", saying who
//! sent one, and the error that carries it up to `main`, which then dies of it
//! (`signal_demo::catch::die_of`).

use anyhow::Result;
use nix::sys::signal::{SigSet, Signal};
use signal_demo::{Caught, catch, send};

/// SIGINT, SIGTERM and SIGHUP, "stop". A process that takes its signals with
/// sigtimedwait(2) (workload.rs, and a parent waiting for its child) keeps these
/// blocked too and takes them in the same waits: Ctrl+C, `kill`, or the terminal
/// closing then ends a wait like any other event, and the process cleans up (ends and
/// reaps its child) before it dies of it.
///
/// One we were started with ignored (`nohup` ignores SIGHUP; a script's `cmd &`,
/// SIGINT and SIGQUIT) is left out, and so stays ignored: a blocked signal is queued
/// even when its action is SIG_IGN, so taking it with sigtimedwait would undo the
/// caller's choice.
pub fn stop_signals() -> SigSet {
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
        .into_iter()
        .filter(|&sig| !catch::is_ignored(sig))
        .collect()
}

/// SIGINT, SIGTERM or SIGHUP taken from a wait: say so, and return the error that
/// makes `main` die of it. Any other signal: Ok.
pub fn stop_if_asked(role: &str, got: &Caught) -> Result<()> {
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        if got.is(sig) {
            crate::say!(role, "interrupted by {sig} {}: stopping", got.origin());
            return Err(Stopped(sig).into());
        }
    }
    Ok(())
}

/// A signal asked us to stop (SIGINT, SIGTERM, SIGHUP): an error that travels up to
/// `main`, which then dies of that signal.
#[derive(Debug)]
pub struct Stopped(pub Signal);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by {}", self.0)
    }
}

impl std::error::Error for Stopped {}

/// Which signal, who sent it and how, in words, for the narration.
pub trait Origin {
    /// "SIGUSR1", "SIGRTMIN+2".
    fn name(&self) -> String;
    /// "from pid 4242 (bash) with kill(2)", "from the kernel (the terminal: Ctrl+C)"...
    fn origin(&self) -> String;
}

impl Origin for Caught {
    fn name(&self) -> String {
        send::name(self.signo)
    }

    fn origin(&self) -> String {
        let sender = || format!("pid {} ({})", self.pid, command_of(self.pid));
        match self.code {
            libc::SI_USER => format!("from {} with kill(2)", sender()),
            libc::SI_QUEUE => format!("from {} with sigqueue(3), value {}", sender(), self.value),
            libc::SI_TKILL => format!("from {} with tgkill(2) or raise(3)", sender()),
            libc::SI_KERNEL => format!("from the kernel{}", terminal_key(self.signo)),
            code => format!("from the kernel (si_code {code})"),
        }
    }
}

/// The terminal's reason for sending `signo` itself, as the tty driver does.
fn terminal_key(signo: i32) -> &'static str {
    match Signal::try_from(signo) {
        Ok(Signal::SIGINT) => " (the terminal: Ctrl+C)",
        Ok(Signal::SIGTSTP) => " (the terminal: Ctrl+Z)",
        Ok(Signal::SIGQUIT) => " (the terminal: Ctrl+\\)",
        Ok(Signal::SIGWINCH) => " (the terminal changed size)",
        Ok(Signal::SIGHUP) => " (the terminal hung up)",
        _ => "",
    }
}

/// The command name of `pid`, from /proc (the sender may be gone by now).
fn command_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| "already exited".to_string())
}
