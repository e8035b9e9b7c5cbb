//! fifo-demo: two unrelated processes talk through a named pipe (a FIFO).
//!
//! A FIFO is a pipe with a name. `mkfifo` puts a file of type `p` in the filesystem;
//! any process that can reach that name opens it, one for reading, one for writing,
//! and the bytes flow through a kernel buffer exactly as in an anonymous pipe. Nothing
//! is stored on disk: the file is only a meeting point.
//!
//! The notes (命名管道) claim:
//! - 对于命名管道，它可以在不相关的进程间也能相互通信 (a named pipe lets even
//!   unrelated processes talk): here the reader and the writer are started as two
//!   separate programs that share no file descriptor, only a path;
//! - 提前创建了一个类型为管道的设备文件 (a file of type pipe is created in advance):
//!   the reader creates it with mkfifo(3) and prints it the way `ls -l` would: `prw-------`.
//!
//! Run:
//! - `cargo run -p fifo-demo` runs both sides, narrated; then, in act 2, main reads two
//!   writers at once from one FIFO and checks PIPE_BUF's promise on every line.
//!   `cargo run -p fifo-demo -- hello world` sends your own messages.
//! - Two terminals: `cargo run -p fifo-demo -- reader` prints the FIFO it made; in the
//!   other, `cargo run -p fifo-demo -- writer --path P hi there`, or just `echo hi > P`.
//!   The other way round: `mkfifo P; cat P &` then `fifo-demo writer --path P hi`.
//! - Workloads for the tests and the benchmark: `--count 1000 --size 65536` (bulk, every
//!   byte checked) and `--ping 1000` (round trips through P and `P.reply`).
//!
//! Watch for: the `p` in `prw-------` and its size 0; the reader asleep in open(2)
//! until a writer opens (a FIFO's open is the rendezvous); EOF only once every writer
//! has closed; in act 2, where the two writers took turns, and every 4000-byte line
//! arriving whole, never mixed (the tally at the end).
//!
//! In production: the `interprocess` crate (FIFOs and local sockets behind one API), or
//! a Unix socket (`std::os::unix::net`), which is two-way and tells each client apart.
//!
//! This file: which role runs. The lesson lives in `reader.rs`, `writer.rs`, `demo.rs`
//! (act 1) and `server.rs` (act 2); the command line in `args.rs`. Every FIFO call they
//! make goes through the library half, `src/lib.rs` (crate `fifo_demo`): copy from there.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

/// Narrates one event on stdout as `[ROLE PID] ...`. A closed stdout (`| head`) must not
/// turn into a panic, so the write error is dropped.
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

mod args;
mod children;
mod demo;
mod reader;
mod server;
mod wire;
mod workload;
mod writer;

use args::{Parsed, Role};
use fifo_demo::stop;

fn main() -> ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Help) => {
            // Not print!, which panics on a closed stdout (`fifo-demo --help | true`).
            let _ = std::io::stdout().lock().write_all(args::USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => args,
        Err(what) => {
            to_stderr(&format!("error: {what}\n\n{}", args::USAGE));
            return ExitCode::from(2);
        }
    };
    let installed = stop::install().context("sigaction SIGINT, SIGTERM, SIGHUP");
    let result = installed.and_then(|()| match &args.role {
        Role::Both => demo::run(&args.workload, args.cpus),
        Role::Reader(path) => reader::run(path.as_deref(), &args.workload),
        Role::Writer(path) => writer::run(path, &args.workload),
    });
    match (result, stop::caught()) {
        (Ok(()), _) => ExitCode::SUCCESS,
        // Whatever failed after a SIGINT/SIGTERM/SIGHUP is its consequence: the role has cleaned
        // up and said so. Die of the signal, so the shell knows we were stopped.
        (Err(_), Some(sig)) => stop::die_of(sig),
        (Err(e), None) => {
            to_stderr(&format!("error: {e:#}\n"));
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stderr in one write(2). `eprintln!` writes a formatted line in
/// pieces, so the error lines of two processes sharing a terminal could interleave; and
/// it panics if stderr is closed, where we have nothing better to do than go on.
fn to_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
