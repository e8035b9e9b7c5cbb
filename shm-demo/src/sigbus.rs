//! A SIGBUS handler that removes a shared memory object's name as the process dies of
//! the SIGBUS: the one death no guard survives. A page of a mapping past the end of its
//! file faults with SIGBUS; with `shm_open`, any process of the same uid can
//! `ftruncate` the object smaller under our mapping. Process-wide state (one static
//! path, one handler), installed only when the caller asks.
//!
//! Needs: nix with feature `signal`; `libc`; `anyhow`.

use std::ffi::{CString, c_char, c_int};
use std::sync::atomic::{AtomicPtr, Ordering};

use anyhow::{Context, Result};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// The path the SIGBUS handler unlinks: a leaked C string, or null for none.
static SIGBUS_UNLINKS: AtomicPtr<c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Opt-in, process-wide: installs a SIGBUS handler that removes `path` with unlink(2)
/// (async-signal-safe), writes one line to stderr, and lets the process die of the
/// SIGBUS. A SIGBUS from a mapping means the object was shrunk under it: no guard will
/// run. One path at a time. Drop the returned guard just before removing the name the
/// normal way, so a later SIGBUS does not unlink someone else's new object.
pub fn unlink_on_sigbus(path: &str) -> Result<UnlinkOnSigbus> {
    let owned = path.to_string();
    let path = CString::new(path).context("a path with NUL")?;
    free(SIGBUS_UNLINKS.swap(path.into_raw(), Ordering::SeqCst));
    let action = SigAction::new(
        SigHandler::Handler(on_sigbus),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: `on_sigbus` only makes async-signal-safe calls (unlink, write, signal, raise).
    unsafe { sigaction(Signal::SIGBUS, &action) }.context("sigaction SIGBUS")?;
    Ok(UnlinkOnSigbus { path: owned })
}

/// From [`unlink_on_sigbus`]: its Drop takes the path back from the handler.
pub struct UnlinkOnSigbus {
    path: String,
}

impl Drop for UnlinkOnSigbus {
    fn drop(&mut self) {
        forget(&self.path);
    }
}

/// The handler's path is `want`: take it back (the handler then unlinks nothing).
fn forget(want: &str) {
    let current = SIGBUS_UNLINKS.load(Ordering::SeqCst);
    if current.is_null() {
        return;
    }
    // SAFETY: a live C string from CString::into_raw (freed only once swapped out).
    let same = unsafe { std::ffi::CStr::from_ptr(current) }.to_bytes() == want.as_bytes();
    if same
        && SIGBUS_UNLINKS
            .compare_exchange(
                current,
                std::ptr::null_mut(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    {
        free(current);
    }
}

fn free(path: *mut c_char) {
    if !path.is_null() {
        // SAFETY: a pointer from CString::into_raw, swapped out so no handler sees it.
        drop(unsafe { CString::from_raw(path) });
    }
}

extern "C" fn on_sigbus(_: c_int) {
    const SAID: &[u8] = b"error: SIGBUS: a page of the shared memory object is gone \
(another process shrank it with ftruncate?); removed its name from /dev/shm, dying of SIGBUS\n";
    let path = SIGBUS_UNLINKS.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: unlink, write, signal and raise are async-signal-safe (signal-safety(7)); `path`
    // is null or a live C string that nothing frees once swapped out here.
    unsafe {
        if !path.is_null() {
            libc::unlink(path);
        }
        libc::write(2, SAID.as_ptr().cast(), SAID.len());
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
        // Pending until the handler returns (SIGBUS is blocked while it runs), then
        // fatal: the same death for a fault and for a `kill -BUS`.
        libc::raise(libc::SIGBUS);
    }
}
