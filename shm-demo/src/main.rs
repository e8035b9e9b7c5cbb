//! shm-demo: shared memory between two processes, POSIX (`shm_open` + `mmap`) and
//! System V (`shmget` + `shmat`).
//!
//! Notes, section 共享内存:
//! - 共享内存的机制，就是拿出一块虚拟地址空间来，映射到相同的物理内存中 (shared memory
//!   takes a range of virtual addresses and maps it onto the same physical memory). The
//!   reader and the writer are two processes. Each prints the virtual address where it
//!   mapped the segment (they differ), its line of /proc/PID/maps (the same inode), the
//!   physical frame of its first page when the kernel shows it (the same), and the
//!   bytes it sees in a slot (the same).
//! - No copy through the kernel: the writer's plain stores land in the reader's memory;
//!   the reader reads them where they lie, with no read(2), write(2) or copy.
//! - And the new problem the notes' 信号量 section opens with (用了共享内存通信方式，带来
//!   新的问题): nothing says when the data is there. The reader sleeps on a semaphore
//!   until the writer posts it (waking every 100 ms only to notice Ctrl+C or a dead
//!   writer): no polling of the data, no sleep. That leads into sem-demo.
//!
//! Run:
//!   cargo run -p shm-demo                    posix: reader and writer, narrated
//!   cargo run -p shm-demo -- sysv hi there   System V, with your own messages
//!   cargo run -p shm-demo -- memfd           no name anywhere, sealed, shared by fork
//!   cargo run -p shm-demo -- --count 1000 --size 65536    bulk through a ring, checked
//!   cargo run -p shm-demo -- --count 1000 --size 4096 --spin   the spinning ring: spin
//!                                            up to 50 µs on atomic indices, then sleep
//!   cargo run -p shm-demo -- --ping 10000            round trips on two semaphores
//!   cargo run -p shm-demo -- --ping 10000 --spin     the fast path: spinning on atomics
//! Two terminals:
//!   cargo run -p shm-demo -- reader --name /demo     (prints the writer's command)
//!   cargo run -p shm-demo -- writer --name /demo hello there
//!   (sysv: `reader sysv --key 0x1234`, `writer sysv --key 0x1234 hello`; with no
//!   MESSAGE the writer sends each line you type, until Ctrl+D)
//! While the reader waits: `ls -l /dev/shm`, `ipcs -m -s`, `cat /proc/PID/maps`.
//!
//! Watch for: two different addresses, one inode, one physical frame; the writer's
//! bytes appearing in the reader's memory with no system call to carry them; the
//! reader asleep in the semaphore until the writer posts; `shmctl(IPC_RMID)` only
//! marking a segment that is still attached.
//!
//! In production: `memmap2` over an `shm_open` or `memfd_create` fd for the mapping,
//! and a real synchronisation protocol on top (a ring buffer crate, or futex-based
//! primitives); or `ipc-channel`'s `IpcSharedMemory`. Avoid System V in new code.
//!
//! The mechanism, every call of it, is the library half (crate `shm_demo`, the files to
//! copy from): `lib.rs`, `posix.rs`, `sysv.rs`, `sigbus.rs`, `memfd.rs`. This file: which role
//! runs. Then, in reading order: `demo.rs` (the default run), `reader.rs`, `writer.rs`,
//! `segment.rs` (the layout in the segment), `sync.rs` (the semaphores and the waits),
//! `posix_acts.rs`, `sysv_acts.rs`, `memfd_acts.rs` (each flavour's calls, narrated), `args.rs` (the
//! command line), `workload.rs` (bulk and ping: measurement machinery).

use std::io::Write as _;
use std::process::ExitCode;

/// Narrates one event on stdout as `[ROLE PID] ...` (DESIGN §4). Not `println!`, which
/// panics when stdout is closed (`shm-demo | head -1`): the error is dropped instead.
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
mod demo;
mod memfd_acts;
use memfd_acts as memfd;
mod memory;
mod posix_acts;
use posix_acts as posix;
mod reader;
mod segment;
mod signals;
mod sync;
mod sysv_acts;
use sysv_acts as sysv;
mod workload;
mod writer;

pub use args::{Args, Cpus, Meeting, Role, Workload};
use args::{Parsed, USAGE, bad_usage, check_limits, parse};

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1), std::process::id()) {
        Ok(Parsed::Help) => {
            // Not print!, which panics on a closed stdout (`shm-demo --help | true`).
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => args,
        Err(problem) => return bad_usage(&problem),
    };
    // Sizes against the kernel's limits, before anything exists (exit 2, nothing made).
    if args.role != Role::Writer {
        if let Err(problem) = check_limits(&args) {
            return bad_usage(&problem);
        }
    }
    let result = signals::install().and_then(|()| match args.role {
        Role::Both if args.meeting == Meeting::Memfd => memfd::run(&args.workload, args.cpus),
        Role::Both => demo::run(&args.meeting, &args.workload, args.cpus),
        Role::Reader => reader::run(&args.meeting, &args.workload, None, || Ok(None))
            .map(|tally| tally.print(reader::ROLE)),
        Role::Writer => {
            writer::run(&args.meeting, &args.workload).map(|tally| tally.print(writer::ROLE))
        }
    });
    match (result, signals::caught()) {
        (Ok(()), _) => ExitCode::SUCCESS,
        // Whatever failed after a SIGINT/SIGTERM/SIGHUP is its consequence; the role has cleaned
        // up and said so. Die of the signal, so the shell knows we were stopped.
        (Err(_), Some(sig)) => signals::die_of(sig),
        (Err(e), None) => {
            _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
