//! msgq_demo: message queues between processes, POSIX (`mq_*`) and System V (`msg*`),
//! as a small library to copy from. The narrated lesson is the `msgq-demo` binary
//! (`src/main.rs`), which makes every queue call through these two modules.
//!
//! - [`posix`]: [`posix::create`] (exclusive, 0600, with the attributes you choose),
//!   [`posix::open`] (waits for the creator up to a deadline), [`posix::Queue::send`] and
//!   [`posix::Queue::receive`] with a real timeout and a "stop?" callback,
//!   [`posix::Queue::notify`] (`mq_notify`), [`posix::poll_queues`] (`poll(2)` on several
//!   queues at once, with a deadline: on Linux a queue descriptor is an fd), and
//!   [`posix::Unlink`], the guard that removes the name.
//! - [`sysv`]: [`sysv::create`], [`sysv::open`], [`sysv::Queue::send`] and
//!   [`sysv::Queue::receive`] by message type (`msgtyp`), with IPC_NOWAIT and a timeout
//!   made of short sleeps (no timer, no signal handler), [`sysv::Queue::stat`] for
//!   `msg_qnum`, `msg_lspid`, `msg_lrpid`, and [`sysv::Remove`], the `IPC_RMID` guard.
//!
//! Each module stands alone: copy `posix.rs` or `sysv.rs` into your program as a module;
//! it needs `nix` (features `mqueue`, `fs`, `signal`, `time`, `poll` for POSIX; `process` for
//! System V) and `libc`, nothing else. Nothing here installs a signal handler, arms a
//! timer or keeps global state: a wait is bounded by the `Duration` you give, and ends
//! early when your "stop?" callback says so.
//!
//! Errors are `nix::Result`, the errno of the call that failed, so that a caller can
//! tell EEXIST from EACCES and say what to do about each; a wait that timed out is
//! ETIMEDOUT, one that your callback stopped is EINTR.

#![warn(missing_docs)]

pub mod posix;
pub mod sysv;
