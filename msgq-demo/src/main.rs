//! msgq-demo: message queues, POSIX (`mq_*`) and System V (`msg*`), between processes.
//!
//! A message queue is a list of messages kept by the kernel. A writer puts a message
//! in and goes on; a reader takes the oldest (or the most urgent) out, and the kernel
//! deletes it. Neither has to wait for the other, unless the queue is empty or full.
//!
//! The notes (消息队列) claim, and the narrated run shows:
//! - A只需要把数据放在对应的消息队列后就可以正常返回了 (the writer just puts its data
//!   in the queue and returns): the writer sends and EXITS before the reader is even
//!   forked; the reader then finds every message waiting.
//! - 消息队列是保存在内核中的消息链表 … 读取了消息体，内核就会把这个消息体删除 (a
//!   queue is a list of messages in the kernel; a message read is deleted): the count
//!   of messages, as the kernel reports it, after every send and every receive; and
//!   message boundaries: three sends of three lengths are three receives of the same.
//! - The order is the kernel's: POSIX priorities (highest first), System V types
//!   (`msgtyp` picks one type, or the lowest types first).
//! - 每个消息体都有一个最大长度的限制 (each message has a maximum length): the limits
//!   read from /proc, and a message one byte too long refused (EMSGSIZE / EINVAL). A
//!   full queue puts the writer to sleep until a reader makes room.
//! - 存在用户态与内核态之间的数据拷贝开销 (data is copied between user and kernel
//!   space): every send copies the message into the kernel and every receive copies it
//!   out again; the bulk and ping workloads (and the benchmark) measure what that costs.
//! - Beyond the notes: `mq_notify` lets a POSIX reader be told of a message instead of
//!   sleeping for it (one-shot: it must re-register each time); and on Linux a POSIX
//!   queue descriptor is a file descriptor, so `poll` waits on two queues at once, with
//!   a deadline (`poll`, poll_demo.rs).
//!
//! Run:
//!   cargo run -p msgq-demo                   POSIX queue, narrated (`posix`)
//!   cargo run -p msgq-demo -- sysv           System V queue, narrated
//!   cargo run -p msgq-demo -- sysv one two   your own messages
//!   cargo run -p msgq-demo -- poll           one reader, two queues, one poll(2)
//!   two terminals: `cargo run -p msgq-demo -- reader --name /q`, then
//!     `cargo run -p msgq-demo -- writer --name /q hello there` (or lines on stdin);
//!     `reader sysv --key 0x7100` and `writer sysv --key 0x7100 hi` for System V.
//!     Start the writer with the reader stopped (Ctrl+Z) to see messages wait.
//!   cargo run -p msgq-demo -- --count 10000 --size 8192     bulk, every byte checked
//!   cargo run -p msgq-demo -- sysv --ping 10000             round trips
//!
//! Watch for: the reader's pid appearing only after the writer was reaped; the counts
//! going up with each send and down with each receive; priority 9 before 5 before 1,
//! and two of priority 5 in the order sent; the writer asleep in the kernel
//! (`wq_sleep`, `do_msgsnd`) on a full queue; a second SIGUSR1 only because the reader
//! re-armed mq_notify. Meanwhile `ipcs -q` lists the System V queue, and
//! `ls /dev/mqueue` the POSIX one where the mqueue filesystem is mounted.
//!
//! In production: for messages between processes on one machine, a Unix socket
//! (`std::os::unix::net::UnixDatagram` keeps boundaries too) or the `ipc-channel`
//! crate; for POSIX queues in Rust, the `posixmq` crate (stable but dormant); System V
//! queues have no maintained wrapper, so prefer POSIX, or sockets.
//!
//! To copy from: the library half of this package, `src/posix.rs` and `src/sysv.rs`
//! (crate `msgq_demo`, `cargo doc -p msgq-demo --open`): every queue call is there.
//! This file: which role runs, in order. The narration is in `posix_demo.rs`,
//! `sysv_demo.rs` and `poll_demo.rs`; what both share in `channel.rs`, `acts.rs`; the measured workloads
//! in `workload.rs`; the command line in `args.rs`.

mod acts;
mod args;
mod channel;
mod family;
mod poll_demo;
mod posix_demo;
mod signals;
mod sysv_demo;
mod workload;

use std::io::Write as _;
use std::process::ExitCode;

use args::{Flavour, Parsed, Role};
pub(crate) use channel::{PARENT, READER, WRITER, say};

/// The kernel's limits for the chosen flavour.
enum Limits {
    Posix(posix_demo::Limits),
    Sysv(sysv_demo::Limits),
}

fn main() -> ExitCode {
    let args = match args::from_env() {
        Ok(Parsed::Help) => {
            // Not print!: it panics when stdout is a closed pipe.
            let _ = std::io::stdout().write_all(args::USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => args,
        Err(what) => return bad_usage(&what),
    };
    // The limits come before anything is created: a size the kernel cannot carry is
    // bad usage, not a half-done run.
    let limits = match args.flavour {
        Flavour::Posix | Flavour::Poll => posix_demo::Limits::read().map(Limits::Posix),
        Flavour::Sysv => sysv_demo::Limits::read().map(Limits::Sysv),
    };
    let limits = match limits {
        Ok(limits) => limits,
        Err(e) => {
            _ = writeln!(
                std::io::stderr(),
                "error: {e:#}: does this kernel have message queues?"
            );
            return ExitCode::FAILURE;
        }
    };
    let capacity = match &limits {
        Limits::Posix(l) => l.capacity(),
        Limits::Sysv(l) => l.capacity(),
    };
    if let Err(what) = args::check_sizes(&args, &capacity) {
        return bad_usage(&what);
    }

    // The writer creates nothing, so Ctrl+C may simply end it; the sides that own a
    // queue catch it, to remove the queue first.
    let owns_queues = args.role != Role::Writer;
    let installed = if owns_queues {
        signals::install()
    } else {
        Ok(())
    };
    let result = installed.and_then(|()| match (&limits, args.role) {
        (Limits::Posix(l), Role::Both) if args.flavour == Flavour::Poll => {
            poll_demo::narrated(args.name.as_deref(), args.workload.messages(), l)
        }
        (Limits::Posix(l), Role::Reader) if args.flavour == Flavour::Poll => {
            poll_demo::reader(args.name.as_deref(), l)
        }
        (Limits::Posix(l), Role::Both) => {
            posix_demo::narrated(args.name.as_deref(), &args.workload, l, args.cpus)
        }
        (Limits::Posix(l), Role::Reader) => {
            posix_demo::reader(args.name.as_deref(), &args.workload, l)
        }
        (Limits::Posix(_), Role::Writer) => {
            posix_demo::writer(args.name.as_deref().unwrap_or_default(), &args.workload)
        }
        (Limits::Sysv(l), Role::Both) => {
            sysv_demo::narrated(args.key, &args.workload, l, args.cpus)
        }
        (Limits::Sysv(l), Role::Reader) => sysv_demo::reader(args.key, &args.workload, l),
        (Limits::Sysv(_), Role::Writer) => {
            sysv_demo::writer(args.key.unwrap_or_default(), &args.workload)
        }
    });
    match (result, signals::caught()) {
        (Ok(()), _) => ExitCode::SUCCESS,
        // Whatever failed after a SIGINT/SIGTERM is its consequence: the guards have
        // removed the queue and said so. Die of the signal, so the shell knows.
        (Err(_), Some(sig)) => signals::die_of(sig),
        (Err(e), None) => {
            _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bad_usage(what: &str) -> ExitCode {
    _ = write!(std::io::stderr(), "error: {what}\n\n{}", args::USAGE);
    ExitCode::from(2)
}
