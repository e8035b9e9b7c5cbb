//! pipe-demo: an anonymous pipe between a parent and the child it forks.
//!
//! Notes, section 管道:
//! - 管道传输数据是单向的 (a pipe carries data one way): `fd[0]` only reads, `fd[1]` only
//!   writes; talking both ways takes two pipes (the `duplex` flavour).
//! - 所谓的管道，就是内核里面的一串缓存 (a pipe is a buffer in the kernel): a bounded
//!   one. We print its size and show the writer falling asleep when it is full.
//! - 对于匿名管道，它的通信范围是存在父子关系的进程 (an anonymous pipe joins a parent and
//!   its child): the pipe has no name, so the only way to share it is that `fork(2)`
//!   copies the parent's file descriptors into the child.
//!
//! Run:
//!   cargo run -p pipe-demo                 one pipe, parent → child, narrated (`oneway`)
//!   cargo run -p pipe-demo -- duplex       request/response over two pipes
//!   cargo run -p pipe-demo -- shell        `ps auxf | grep ps` rebuilt by hand
//!   cargo run -p pipe-demo -- big          F_SETPIPE_SZ: a 1 MiB pipe, its limits
//!   cargo run -p pipe-demo -- --count 1000 --size 65536     bulk transfer, checked
//!   cargo run -p pipe-demo -- --count 1000 --size 65536 --pipe-size auto --vmsplice
//!                                            the same, through the fast paths (fast.rs)
//!   cargo run -p pipe-demo -- --ping 10000                  round trips over two pipes
//!   strace -f -e trace=pipe2,clone,read,write,close target/debug/pipe-demo
//!
//! Watch for: the child closing its copy of the write end (without that it never
//! sees EOF); EBADF when the child writes into the read end; the writer asleep in
//! the kernel once the pipe is full (16 pages: 64 KiB with 4 KiB pages); EPIPE once
//! the reader is gone.
//!
//! In production: `std::process::Command` with `Stdio::piped()` for a child's
//! stdin/stdout, `std::io::pipe()` for a bare pipe, or the `interprocess` crate.
//!
//! Copy from: the library half, `lib.rs` and its modules (crate `pipe_demo`):
//! `pipeline` (`ls | wc -l`: `run`, `Pipeline`, `spawn`, `Argv`; stands alone),
//! `pipe` (`create`, `write_all`, `read_exact`, `capacity`, `set_capacity`, `limits`,
//! `set_nonblocking`, `try_write`), `fast` (`size_for_messages`, `SpliceRing`,
//! `vmsplice_all`), `fork` (`fork_parent_writes`, `fork_both_ways`, `parent_died`,
//! `wait`). `cargo doc -p pipe-demo --open` is its reference.
//!
//! This file: which flavour runs. The lesson, narrated around library calls:
//! `oneway.rs` (the default run, three acts), `duplex.rs`, `shell.rs`, `big.rs`; `family.rs`
//! (a child's exit, the parent's reaping, narrated); `workload.rs` (--count and
//! --ping, measurement machinery); `summary.rs` (the last line); `args.rs`.

mod args;
mod big;
mod duplex;
mod family;
mod oneway;
mod shell;
mod summary;
mod workload;

use std::io::Write;
use std::process::ExitCode;

use args::{Flavour, Request, USAGE, Workload};

/// Prints one line of narration, `[ROLE PID] ...`, as DESIGN §4 asks.
///
/// Not `println!`: that panics when stdout is a closed pipe (`pipe-demo | head -1`),
/// the very EPIPE this demo is about. A narrator with no audience just goes on.
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
        Ok(request) => request,
        Err(problem) => {
            complain(&format!("error: {problem}\n\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    let result = match request {
        Request::Help => {
            // Not print!: it panics when stdout is closed (`pipe-demo --help | true`).
            let _ = std::io::stdout().write_all(USAGE.as_bytes());
            Ok(())
        }
        Request::Run(Flavour::Oneway, Workload::Messages(msgs)) => oneway::run(&msgs),
        Request::Run(Flavour::Duplex, Workload::Messages(msgs)) => duplex::run(&msgs),
        Request::Run(Flavour::Shell, _) => shell::run(),
        Request::Run(Flavour::Big { hold }, _) => big::run(hold),
        Request::Run(
            _,
            Workload::Bulk {
                count,
                size,
                cpus,
                fast,
            },
        ) => workload::bulk(count, size, cpus, fast),
        Request::Run(_, Workload::Ping { count, size, cpus }) => workload::ping(count, size, cpus),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            complain(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` and a newline to stderr in one write(2), so the errors of a parent
/// and its child cannot interleave mid-line (`eprintln!` may write in pieces).
pub fn complain(text: &str) {
    let _ = std::io::stderr().write_all(format!("{text}\n").as_bytes());
}
