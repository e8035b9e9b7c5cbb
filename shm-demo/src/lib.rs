//! `shm_demo`: the copyable half of shm-demo. Every shared-memory call the demo makes,
//! narration-free, in the order a program makes them:
//!
//! - [`posix`]: `shm_open` + `ftruncate` + `mmap` and `sem_t`s inside the mapping:
//!   [`posix::create_object`] / [`posix::open_object`] (waits for the creator),
//!   [`posix::set_size`], [`posix::Mapping`], [`posix::Sem`] (timed P with a real
//!   deadline), [`posix::Unlink`]; self-contained: copy that one file.
//! - [`memfd`]: `memfd_create` + seals, no name anywhere: [`memfd::create_sealed`]
//!   (or [`memfd::create`], [`memfd::set_size`], [`memfd::seal_size`],
//!   [`memfd::seal_seals`]), [`memfd::seals`], [`memfd::resize`] (refused: EPERM);
//!   mapped with [`posix::Mapping`].
//! - [`spin`]: a spinning ring's indices, [`spin::Index`]: spin a bounded while on
//!   an atomic counter (Acquire/Release), then sleep on the caller's semaphore.
//! - [`sigbus`]: [`sigbus::unlink_on_sigbus`], the name removed on a SIGBUS death.
//! - [`sysv`]: `shmget`/`shmat` and a semaphore set: [`sysv::ShmId`],
//!   [`sysv::find_segment`], [`sysv::Attached`], [`sysv::SemSet`]; it takes
//!   [`page_size`] from here.
//! - here: [`is_gone`] (is the peer whose pid sits in a header still alive?),
//!   [`page_size`], [`GuardPage`], and for a clean way out on Ctrl+C
//!   [`catch_without_restart`] (the caller's handler) and [`die_of`].
//!
//! Nothing here installs a signal handler or keeps process-wide state behind the
//! caller's back: [`catch_without_restart`] installs the caller's own handler, and
//! [`sigbus::unlink_on_sigbus`] is asked for by name. Waits take a `Duration` and a
//! `stop` closure (asked after EINTR), never a global flag.

#![warn(missing_docs)]

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, raise, sigaction};
use nix::unistd::{Pid, SysconfVar, sysconf};

pub mod memfd;
pub mod posix;
pub mod sigbus;
pub mod spin;
pub mod sysv;

/// The size of a page of memory (4096 on x86-64), from sysconf; 4096 if it says nothing.
pub fn page_size() -> usize {
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as usize,
        _ => 4096,
    }
}

/// True once `pid` has exited: no such process, or a zombie (dead, not yet reaped:
/// `kill(pid, 0)` still succeeds for a zombie, so /proc/PID/stat is read too). Use it on
/// a pid the peer wrote into the shared header: the kernel keeps the process, not a
/// name. Its limit: a pid reused by a new process looks alive (a pidfd does not).
///
/// # Examples
/// ```
/// assert!(!shm_demo::is_gone(std::process::id() as i32));
/// assert!(!shm_demo::is_gone(0)); // not a process: never "gone"
/// ```
pub fn is_gone(pid: i32) -> bool {
    if pid <= 0 {
        return false; // not a process: kill(0) would mean our own process group
    }
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => true,
        Err(_) => false, // EPERM: alive, someone else's
        Ok(()) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| Some(stat.rsplit_once(')')?.1.trim_start().starts_with('Z')))
            .unwrap_or(false),
    }
}

/// One inaccessible page (PROT_NONE, MAP_NORESERVE: no memory behind it); its Drop
/// unmaps it. Mapped just before a segment, it takes the address the kernel would
/// otherwise pick for it, so two processes with the same layout (a fork, or no ASLR),
/// of which only one maps the guard, see the segment at different addresses (assuming
/// no other thread maps something in between).
pub struct GuardPage {
    addr: NonNull<std::ffi::c_void>,
    len: usize,
}

impl GuardPage {
    /// Maps the page.
    pub fn reserve() -> Result<GuardPage> {
        let len = page_size();
        // SAFETY: a fresh anonymous mapping at an address the kernel picks: it cannot
        // overlap anything of ours, and nothing ever reads or writes it.
        let addr = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(len).context("a page is not empty")?,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .context("mmap (guard page)")?;
        Ok(GuardPage { addr, len })
    }

    /// Where the page is.
    pub fn addr(&self) -> usize {
        self.addr.as_ptr() as usize
    }
}

impl Drop for GuardPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping, of exactly this length, never shared with anything.
        let _ = unsafe { munmap(self.addr, self.len) };
    }
}

/// Installs `handler` for each of `signals` without SA_RESTART, so a process asleep in
/// `sem_timedwait` or a `read(2)` of a pipe or terminal comes back with EINTR and can look at what the handler
/// stored (with SA_RESTART those restart; `semtimedop` returns EINTR either way,
/// signal(7)). Process-wide: it replaces any handler for these signals. Assumes one
/// thread: a signal goes to any thread not blocking it, and only that one sees EINTR.
///
/// # Safety
/// `handler` makes only async-signal-safe calls (signal-safety(7)); storing into an
/// atomic is one.
pub unsafe fn catch_without_restart(
    signals: &[Signal],
    handler: extern "C" fn(std::ffi::c_int),
) -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(), // no SA_RESTART: a blocked wait must return EINTR
        SigSet::empty(),
    );
    for &sig in signals {
        // SAFETY: the caller's promise about `handler`.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("sigaction {sig}"))?;
    }
    Ok(())
}

/// Dies of `sig` with its default action, as if no handler had been installed, so the
/// shell sees "killed by signal" (call it after the guards have cleaned up). Falls back
/// to exit(128 + sig) for a signal whose default action does not end the process, or
/// one this thread blocks (as inside that signal's own handler: it stays pending).
pub fn die_of(sig: Signal) -> ! {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours, so no handler can race with anything.
    let _ = unsafe { sigaction(sig, &default) };
    let _ = raise(sig);
    std::process::exit(128 + sig as i32)
}
