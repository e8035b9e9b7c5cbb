//! fifo_demo: a named pipe (FIFO) between unrelated processes, as a small library to
//! copy from. The narrated lesson is the `fifo-demo` binary (`src/main.rs`), which makes
//! every FIFO call through these modules.
//!
//! In the order a program makes the calls:
//! 1. make it (the reader): [`fifo::Fifo::create_private`] (a 0700 directory, the
//!    reader's pid in `P.pid`, the FIFO made 0600, all removed by the guard), or
//!    [`fifo::Fifo::create_published`] at a path you choose;
//! 2. meet: [`io::open_for_reading`] sleeps until a writer opens;
//!    [`io::open_for_writing`] waits for a reader up to a deadline and fails
//!    ([`fifo::ReaderGone`]) when the reader named in `P.pid` has died
//!    ([`fifo::reader_of`]);
//! 3. send and receive: [`io::write_all`] (a line of at most [`io::pipe_buf`] bytes
//!    written in one call arrives whole, never mixed with another writer's),
//!    [`io::LineReader`] (lines capped at 1 MiB), [`io::read_full`];
//! 4. notice the other side: EOF when every writer has closed; EPIPE when no reader is
//!    left; [`io::peer_closed`], [`io::wait_readable`] with poll(2);
//! 5. remove: drop the [`fifo::Fifo`] (or [`fifo::Fifo::remove`] to see an error).
//!
//! Beside them: [`stop`] (Ctrl+C noted by a handler you install yourself, for the
//! "stop?" callbacks) and [`process`] (signal a child, a child that dies with its
//! parent). `fifo.rs` needs nothing else of this crate; `io.rs` needs `fifo.rs`.
//! Nothing here installs a handler or keeps state behind your back.
//!
//! In production: a Unix socket (`std::os::unix::net`), which is two-way and tells
//! each client apart; or the `interprocess` crate.

#![warn(missing_docs)]

pub mod fifo;
pub mod io;
pub mod process;
pub mod stop;
