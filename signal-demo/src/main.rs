//! signal-demo: signals, the one asynchronous way to tell a process something.
//!
//! A signal is a number the kernel marks as pending on a process. Unless the process
//! has blocked that number (then it stays pending until unblocked), the next time the
//! process returns from the kernel to its own code, whatever it was doing, the kernel
//! runs its handler for that number, or the default action (end it, stop it, ignore
//! the signal). A signal carries no bytes and no count of repeats; the kernel adds who
//! sent it and how (the siginfo: sender's pid and uid, `si_code`), and sigqueue(3)
//! one int.
//!
//! Notes, section 信号:
//! - 对于异常情况下的工作模式，就需要用「信号」的方式来通知进程 (for the exceptional case,
//!   a process is notified with a signal): `signal-demo reader` reports each signal it
//!   gets, who sent it and how (kill(2), sigqueue(3), or the kernel for a terminal key).
//! - Ctrl+C 产生 SIGINT 信号，表示终止该进程；Ctrl+Z 产生 SIGTSTP 信号，表示停止该进程，
//!   但还未结束 (Ctrl+C ends the process; Ctrl+Z stops it without ending it): in a
//!   terminal the reader reports Ctrl+C and ends; it reports Ctrl+Z and really stops (a
//!   shell job, state T), and `fg` resumes it.
//! - 信号是进程间通信机制中唯一的异步通信机制 (the only asynchronous mechanism): the default
//!   run signals a child blocked in read(2); the call returns EINTR, the handler's note is
//!   seen, and the work goes on.
//!
//! What the notes leave out, shown by the default run: a signal is not a data channel.
//! 1000 SIGUSR1 sent as fast as possible can run the handler fewer times (standard signals
//! coalesce: pending is one bit), exactly once if blocked while sent; 1000 real-time
//! signals sent with sigqueue(3) all arrive, in order, each with its value.
//!
//! Run:
//!   cargo run -p signal-demo                      both sides, narrated (fork: parent writes, child reads)
//!   cargo run -p signal-demo -- reader            terminal 1: prints its pid, reports every signal
//!   cargo run -p signal-demo -- writer --pid PID USR1 USR2 RTMIN+1     terminal 2 (or kill -USR1 PID)
//!   then, in terminal 1: Ctrl+Z (stops), fg (resumes), Ctrl+C (ends)
//!   cargo run -p signal-demo -- --ping 10000      round trips of SIGUSR1, p50 and p99
//!   cargo run -p signal-demo -- signalfd          the signals read(2) as data from a signalfd, polled beside a pipe
//!   cargo run -p signal-demo -- pidfd             a child by pidfd: poll for its exit, pidfd_send_signal, ESRCH after reaping, the pid reused (root)
//!   cargo run -p signal-demo -- reader signalfd   terminal 1: a signalfd polled beside stdin
//!   cargo run -p signal-demo -- writer pidfd --pid PID USR1 TERM   terminal 2: through a pidfd, then waits for PID's exit
//!   strace -f -e trace=kill,rt_sigqueueinfo,rt_sigprocmask,ppoll,read,rt_sigtimedwait cargo run -q -p signal-demo
//!
//! Watch for: "read(2) returned EINTR"; the child in state T between Ctrl+Z and fg;
//! how many of the 1000 SIGUSR1 ran the handler; `grep Sig /proc/PID/status` on the
//! reader (SigBlk, SigCgt, and ShdPnd while a signal waits).
//!
//! In production: the `signal-hook` crate (flags set by a handler, an iterator of
//! signals, async adapters), or a signalfd in your poll loop; and never signals for
//! data: a pipe, a socket or a queue carries bytes, in order, without loss.
//!
//! Copy from: the library half, `lib.rs` and its modules (crate `signal_demo`):
//! `pending` (the mask; sigtimedwait up to a deadline; the siginfo, `Caught`),
//! `catch` (the one handler, installed explicitly; ppoll), `send` (names, kill,
//! sigqueue), `child` (fork, and a child waited for with a deadline), `signalfd`
//! (signals as data from an fd), `pidfd` (a process by handle), `ready` (poll). `cargo doc -p signal-demo --open` is its reference.
//!
//! This file: which role runs. The lesson, narrated around library calls:
//! `demo.rs` (the default run), `reader.rs`, `writer.rs`; `signalfd_demo.rs`,
//! `pidfd_demo.rs` (the two flavours past the textbook, and their two-terminal sides); `family.rs` and `stop.rs`
//! (the parent's side, and "stop"); `workload.rs` (--ping, measurement machinery);
//! `args.rs` (the command line).

mod args;
mod demo;
mod family;
mod pidfd_demo;
mod reader;
mod signalfd_demo;
mod stop;
mod workload;
mod writer;

use std::io::Write as _;
use std::process::ExitCode;

/// Narrates one event on stdout as `[ROLE PID] ...` (DESIGN §4).
///
/// Not `println!`: that panics when stdout is closed (`signal-demo reader | head -1`).
/// A narrator with no audience just goes on.
macro_rules! say {
    ($role:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout().lock(),
            "[{} {}] {}",
            $role,
            std::process::id(),
            format_args!($($arg)*)
        );
    }};
}
pub(crate) use say;

fn main() -> ExitCode {
    let request = match args::parse(std::env::args_os().skip(1)) {
        Ok(args::Parsed::Help) => {
            // Not print!: that panics when stdout is a closed pipe (`--help | true`).
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(args::USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(args::Parsed::Run(request)) => request,
        Err(problem) => {
            _ = write!(std::io::stderr(), "error: {problem}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match request {
        args::Request::Demo => demo::run(),
        args::Request::Ping(options) => workload::both(&options),
        args::Request::Reader => reader::run(),
        args::Request::ReaderPing(options) => workload::reader(&options),
        args::Request::Writer { pid, signals } => writer::run(pid, &signals),
        args::Request::WriterPing { pid, ping } => workload::writer(pid, &ping),
        args::Request::SignalfdDemo => signalfd_demo::run(),
        args::Request::SignalfdReader => signalfd_demo::reader_alone(),
        args::Request::PidfdDemo => pidfd_demo::run(),
        args::Request::PidfdWriter { pid, signals } => pidfd_demo::writer(pid, &signals),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<stop::Stopped>() {
            // Asked to stop (SIGINT, SIGTERM, SIGHUP): the role has said so. Die of that signal,
            // so the shell sees why we ended, as it would without a handler.
            Some(stop::Stopped(sig)) => signal_demo::catch::die_of(*sig),
            None => {
                _ = writeln!(std::io::stderr(), "error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
