//! `sem_demo`: the copyable half of sem-demo. Every semaphore call the demo makes,
//! narration-free, in the order a program makes them:
//!
//! 1. create or open: [`posix::NamedSemaphore::create`] (O_CREAT|O_EXCL, 0600, a
//!    value) or [`posix::NamedSemaphore::open_waiting`] (waits for the creator up to
//!    a deadline); System V: [`sysv::SemSet::create`] (semget + SETVAL) or
//!    [`sysv::SemSet::open_waiting`];
//! 2. P with a deadline and a "stop?" callback: [`posix::NamedSemaphore::p`],
//!    [`sysv::SemSet::p`] (with an explicit [`sysv::Undo`]); V:
//!    [`posix::NamedSemaphore::v`], [`sysv::SemSet::v`];
//! 3. is the peer alive? A semaphore has no end of file. [`procfs::is_alive`] for a
//!    pid you know; System V: a presence semaphore with SEM_UNDO
//!    ([`sysv::SemSet::announce`], [`sysv::SemSet::came_and_went`]); POSIX: who has
//!    the semaphore's file mapped ([`procfs::find_mapper`], [`procfs::maps`]);
//! 4. remove: the creator's guard does it on drop (sem_unlink, IPC_RMID), or
//!    [`posix::unlink`] / [`sysv::remove_id`] for a creator that died.
//!
//! The `eventfd` flavour: [`eventfd::EventSemaphore`] (V a write of 1, P a read, pollable),
//! [`eventfd::count_of`] (its counter from /proc/PID/fdinfo); no name, nothing to remove.
//!
//! Beside them, for parent and child: [`process::fork`] and [`process::Child`]
//! (reaped on every way out), [`shared::SharedAtomics`] (a page both see), and
//! [`stop`] (Ctrl+C noted by a handler you install yourself).
//!
//! Each module names what it needs beside it; `posix.rs` needs nothing else of this
//! crate. In production: POSIX semaphores between processes; for a lock that must
//! survive a crashed holder, a robust process-shared pthread mutex (EOWNERDEAD) or
//! `flock(2)` (not shown here).

#![warn(missing_docs)]

pub mod eventfd;
pub mod posix;
pub mod process;
pub mod procfs;
pub mod shared;
pub mod stop;
pub mod sysv;
