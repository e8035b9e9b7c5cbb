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
/// run. One path at a time: a second call replaces the first (whose guard then does
/// nothing). Drop the returned guard just before removing the name the normal way, so a
/// later SIGBUS does not unlink someone else's new object. The handler stays installed
/// after that, unlinking nothing, and says so.
pub fn unlink_on_sigbus(path: &str) -> Result<UnlinkOnSigbus> {
    let path = CString::new(path).context("a path with NUL")?.into_raw();
    free(SIGBUS_UNLINKS.swap(path, Ordering::SeqCst));
    let action = SigAction::new(
        SigHandler::Handler(on_sigbus),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: `on_sigbus` only makes async-signal-safe calls (unlink, write, signal, raise).
    unsafe { sigaction(Signal::SIGBUS, &action) }.context("sigaction SIGBUS")?;
    Ok(UnlinkOnSigbus {
        path: path as usize,
    })
}

/// From [`unlink_on_sigbus`]: its Drop takes the path back from the handler.
pub struct UnlinkOnSigbus {
    /// The address of the C string handed to the handler: compared, never read.
    path: usize,
}

impl Drop for UnlinkOnSigbus {
    fn drop(&mut self) {
        // Take it back only if it is still ours: compare the address and swap in one
        // atomic step, without reading the string, which another thread's
        // `unlink_on_sigbus` may already have swapped out and freed.
        let ours = self.path as *mut c_char;
        let null = std::ptr::null_mut();
        if SIGBUS_UNLINKS
            .compare_exchange(ours, null, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            free(ours);
        }
    }
}

fn free(path: *mut c_char) {
    if !path.is_null() {
        // SAFETY: a pointer from CString::into_raw, swapped out so no handler sees it.
        drop(unsafe { CString::from_raw(path) });
    }
}

extern "C" fn on_sigbus(_: c_int) {
    const GONE: &[u8] = b"error: SIGBUS: a page of the shared memory object is gone \
(another process shrank it with ftruncate?); removed its name from /dev/shm, dying of SIGBUS\n";
    const KEPT: &[u8] = b"error: SIGBUS: a page of the shared memory object is gone \
(another process shrank it with ftruncate?); its name could not be removed, dying of SIGBUS\n";
    const NONE: &[u8] = b"error: SIGBUS: a page of a mapped file is gone (shrunk?), \
or a kill -BUS; no name to remove, dying of SIGBUS\n";
    let path = SIGBUS_UNLINKS.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: unlink, write, signal and raise are async-signal-safe (signal-safety(7)); `path`
    // is null or a live C string that nothing frees once swapped out here.
    unsafe {
        let said = match path.is_null() {
            true => NONE,
            false if libc::unlink(path) == 0 => GONE,
            false => KEPT,
        };
        libc::write(2, said.as_ptr().cast(), said.len());
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
        // Pending until the handler returns (SIGBUS is blocked while it runs), then
        // fatal: the same death for a fault and for a `kill -BUS`.
        libc::raise(libc::SIGBUS);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    /// Runs the test `name` of this binary again in a child with `SIGBUS_CHILD` set to
    /// `path`; returns how the child ended and its stderr.
    fn in_child(name: &str, path: &std::path::Path) -> (Option<i32>, String) {
        let out = Command::new(std::env::current_exe().expect("the test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("SIGBUS_CHILD", path)
            .output()
            .expect("run the test binary again");
        (
            out.status.signal(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("sigbus-{tag}-{}", std::process::id()));
        std::fs::write(&path, b"x").expect("make a scratch file");
        path
    }

    /// The child's half: register the path, drop the guard if asked, die of SIGBUS.
    fn child(drop_guard: bool) {
        let Some(path) = std::env::var_os("SIGBUS_CHILD") else {
            return; // run directly by the harness: nothing to do
        };
        let guard = super::unlink_on_sigbus(path.to_str().unwrap()).unwrap();
        if drop_guard {
            drop(guard);
        }
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGBUS).unwrap();
        unreachable!("SIGBUS kills");
    }

    #[test]
    fn child_registered() {
        child(false);
    }

    #[test]
    fn child_dropped() {
        child(true);
    }

    #[test]
    fn a_sigbus_while_registered_removes_the_path_and_says_so() {
        let path = scratch("registered");
        let (signal, stderr) = in_child("sigbus::tests::child_registered", &path);
        let exists = path.exists();
        let _ = std::fs::remove_file(&path);
        assert_eq!(signal, Some(libc::SIGBUS), "stderr: {stderr}");
        assert!(!exists, "the path was not removed");
        assert!(stderr.contains("removed its name"), "stderr: {stderr}");
    }

    #[test]
    fn a_sigbus_after_the_guard_dropped_removes_nothing_and_says_so() {
        let path = scratch("dropped");
        let (signal, stderr) = in_child("sigbus::tests::child_dropped", &path);
        let exists = path.exists();
        let _ = std::fs::remove_file(&path);
        assert_eq!(signal, Some(libc::SIGBUS), "stderr: {stderr}");
        assert!(exists, "the path was removed after its guard dropped");
        assert!(stderr.contains("no name to remove"), "stderr: {stderr}");
        assert!(!stderr.contains("removed its name"), "stderr: {stderr}");
    }
}
