//! `pipe_demo`: the copyable half of pipe-demo. Every pipe call the demo makes,
//! narration-free, in the order a program makes them:
//!
//! 1. make a pipe: [`pipe::create`] (pipe2 with O_CLOEXEC: `(read_end, write_end)`);
//! 2. fork with a role, each process closing the ends it does not use (the trap: a
//!    reader that keeps its copy of the write end never sees EOF):
//!    [`fork::fork_parent_writes`] (one way), [`fork::fork_both_ways`] (a pipe each way);
//! 3. move bytes: [`pipe::write_all`] (EPIPE named: the reader is gone),
//!    [`pipe::read_exact`] (EOF between messages, or an error in the middle of one),
//!    both retrying EINTR; [`pipe::wait_readable`] (a read's deadline, poll);
//!    [`pipe::set_nonblocking`] and [`pipe::try_write`] (EAGAIN
//!    once full); [`pipe::capacity`] (F_GETPIPE_SZ: 16 page-sized slots by default),
//!    [`pipe::set_capacity`] (F_SETPIPE_SZ) and [`pipe::limits`] (/proc/sys/fs/pipe-*);
//! 4. end: the child tells its parent's death from a clean EOF ([`fork::parent_died`],
//!    by the parent's pid kept from before the fork); the parent waits for exactly
//!    its child ([`fork::wait`], waitpid on that pid);
//! 5. or run programs joined by a pipe, `ls | wc -l`: [`pipeline::run`],
//!    [`pipeline::Pipeline`], [`pipeline::spawn`], [`pipeline::Argv`] (dup2 + exec,
//!    argv built before fork, `_exit` after a failed exec; safe with threads);
//! 6. bulk, faster: [`fast::size_for_messages`] (a pipe a few messages deep, so
//!    writer and reader overlap), [`fast::SpliceRing`] and [`fast::vmsplice_all`]
//!    (vmsplice: the pipe refers to the writer's pages instead of copying them).
//!
//! `pipeline.rs` stands alone (copy that one file for `ls | wc -l`); `pipe.rs` too;
//! `fork.rs` takes `wait` from `pipeline.rs`; `fast.rs` needs `pipe.rs`.
//!
//! Nothing here installs a signal handler or keeps process-wide state. The `fork_*`
//! functions are `unsafe`: their child goes on running Rust code, which is sound only
//! in a single-threaded program.
//!
//! In production: `std::process::Command` with `Stdio::piped()` for a child's
//! stdin/stdout, `std::io::pipe()` for a bare pipe.

#![warn(missing_docs)]

pub mod fast;
pub mod fork;
pub mod pipe;
pub mod pipeline;
