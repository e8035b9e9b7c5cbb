//! sem-demo: semaphores, the P and V operations, POSIX and System V.
//!
//! A semaphore is a counter changed only by two atomic operations: P (wait: take
//! one unit, sleeping while there is none) and V (post: give one back, waking a
//! sleeper). System V keeps the counter in the kernel; a POSIX semaphore is a
//! counter in shared memory that glibc changes with atomics, entering the kernel
//! (futex(2)) only to sleep or to wake a sleeper. The notes, section 信号量:
//! - 信号量其实是一个整型的计数器，主要用于实现进程间的互斥与同步，而不是用于缓存进程间
//!   通信的数据 (a semaphore is an integer counter for mutual exclusion and
//!   synchronisation, not a buffer for data): so this demo moves no bytes, and a bulk
//!   workload is refused;
//! - 信号初始化为 1，就代表着是互斥信号量 (initialised to 1, it is a mutex): act 3;
//! - 信号初始化为 0，就代表着是同步信号量，它可以保证进程 A 应在进程 B 之前执行
//!   (initialised to 0, it makes process A run before process B): act 4.
//!
//! Run:
//!   cargo run -p sem-demo                  POSIX named semaphores (sem_open), five acts
//!   cargo run -p sem-demo -- sysv          the same with a System V set (semget/semop)
//!   cargo run -p sem-demo -- eventfd       eventfd(EFD_SEMAPHORE): counter in fdinfo, pollable
//!   cargo run -p sem-demo -- --loops 10000 fewer increments in the race and mutex acts
//!   cargo run -p sem-demo -- --ping 10000  P/V round trips between two processes
//! Two terminals:
//!   cargo run -p sem-demo -- reader                   prints its name, sleeps in P
//!   cargo run -p sem-demo -- writer --name /NAME      does V: the reader wakes up
//!   (System V: `reader sysv`, then `writer sysv --key KEY`)
//! Watch with: `ls -l /dev/shm/sem.*`, `ipcs -s`, `ipcs -s -i ID`, and
//! `cat /proc/PID/wchan` for a process asleep in P.
//!
//! Watch for: the notes' count going negative while Linux keeps the value at 0 and
//! counts the sleepers apart (System V's kernel; for POSIX, glibc); the race
//! losing updates and the mutex not; B always after A; a dead holder's mutex freed
//! by System V's SEM_UNDO and never by POSIX.
//!
//! In production: between threads, `std::sync::Mutex`/`Condvar`; between
//! processes, prefer POSIX semaphores (or a process-shared robust pthread mutex,
//! or an `flock` lock the kernel drops when its holder dies) over System V, and a
//! socket or pipe when there is data to carry anyway. No maintained crate wraps
//! System V semaphores.
//!
//! Copy from: the library half, `src/lib.rs` (crate `sem_demo`): `posix.rs` (named
//! POSIX semaphores), `sysv.rs` (System V sets), `procfs.rs` (is the peer alive,
//! asleep?), `process.rs`, `shared.rs`, `stop.rs`; `cargo doc -p sem-demo --open`.
//! This file: the command line and which act runs. The lesson lives in `acts.rs`
//! (the default run), `roles.rs` (reader, writer), `workload.rs` (ping), `run_posix.rs`,
//! `run_sysv.rs` and `run_eventfd.rs` (each flavour's objects, narrated), all calling the
//! library (`eventfd.rs`: an eventfd as a semaphore).

mod acts;
mod args;
mod family;
mod page;
mod roles;
mod run_eventfd;
mod run_posix;
mod run_sysv;
mod semaphore;
mod signals;
mod workload;

use std::io::Write;
use std::process::ExitCode;

use args::{Flavour, Parsed};

/// Prints one line of narration, `[ROLE PID] ...`, as DESIGN §4 asks.
///
/// Not `println!`: that panics when stdout is a closed pipe (`sem-demo | head`).
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
    // args_os: a non-UTF-8 argument is bad usage, not the panic std::env::args gives.
    let argv: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let parsed = match argv {
        Ok(argv) => args::parse(argv),
        Err(bad) => Err(format!("argument {bad:?} is not valid UTF-8")),
    };
    // write_all with the error dropped: print! would panic into a closed pipe.
    let request = match parsed {
        Ok(Parsed::Help) => {
            let _ = std::io::stdout().write_all(args::USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(request)) => request,
        Err(problem) => {
            let text = format!("error: {problem}\n\n{}\n", args::USAGE);
            let _ = std::io::stderr().write_all(text.as_bytes());
            return ExitCode::from(2);
        }
    };
    let result = signals::install().and_then(|()| match request.flavour {
        Flavour::Posix => run_posix::run(&request),
        Flavour::Sysv => run_sysv::run(&request),
        Flavour::Eventfd => run_eventfd::run(&request),
    });
    match (result, signals::caught()) {
        (Ok(()), _) => ExitCode::SUCCESS,
        // Whatever failed after SIGINT/SIGTERM/SIGHUP is its consequence, and the role has
        // already said what it removed. Die of the signal, so the shell knows.
        (Err(_), Some(signal)) => signals::die_of(signal),
        (Err(e), None) => {
            _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
