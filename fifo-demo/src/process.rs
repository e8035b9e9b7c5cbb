//! The other processes of a FIFO program: signalling them, and a child that must not
//! outlive its parent. (A FIFO's peers are often unrelated programs; these are for a
//! program that starts its peers itself.)
//!
//! Needs nix with the features "signal", "process" (prctl) and "sched".

use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Sends `sig` to the process `pid` (kill(2)). Use it only on a pid you know is still
/// yours: a child you have not reaped yet. A reaped child's pid can be reused.
pub fn signal(pid: u32, sig: Signal) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
    kill(Pid::from_raw(pid), sig)
}

/// Makes the child that `command` starts receive `sig` when this process dies, SIGKILL
/// too (PR_SET_PDEATHSIG). prctl(2): the signal comes when the *thread* that started
/// the child exits, so spawn it from the thread that lives as long as the process (the
/// main thread); exec keeps it, unless the program is set-user-ID, set-group-ID or has
/// file capabilities. If we died before the child set it, the child does not exec (its
/// pre-exec step fails with ESRCH) rather than live on unwatched.
///
/// # Examples
/// ```
/// use nix::sys::signal::Signal;
/// let mut command = std::process::Command::new("true");
/// fifo_demo::process::die_with_parent(&mut command, Signal::SIGTERM);
/// assert!(command.status().unwrap().success());
/// ```
pub fn die_with_parent(command: &mut Command, sig: Signal) {
    use std::os::unix::process::CommandExt as _;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: prctl(2) and getppid(2) are, and an io::Error
    // made from an errno allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(sig)?;
            if nix::unistd::getppid() != parent {
                // The parent died before the line above: no signal will come for it.
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

/// Pins the process `pid` to one CPU (sched_setaffinity(2)), for measurements that
/// must not depend on where the scheduler puts the two sides.
pub fn pin_to_cpu(pid: u32, cpu: usize) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(Pid::from_raw(pid), &set)
}
