//! Is the peer alive, and is it asleep? What /proc says about a process.
//!
//! A semaphore has no end of file: a P whose peer died just sleeps. So a wait looks
//! at the peer, by something the kernel keeps: its pid (from fork, from System V's
//! GETPID), or, for a POSIX semaphore, which keeps no pid at all, the mapping of the
//! semaphore's file that every process that opened it has ([`find_mapper`]). These
//! read /proc, so they see the processes of our own user (and any, as root).
//!
//! Needs `libc` (major, minor), and nix with the feature "process" (Pid).

use std::os::unix::fs::MetadataExt;

use nix::unistd::Pid;

/// The state letter of `pid` in /proc/PID/stat (`R`, `S`, `Z`...), `None` if there
/// is no such process. Parsed after the last `)`: the command name may hold spaces
/// and parentheses.
pub fn state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// True while `pid` runs: it exists and is not a zombie (dead, not reaped yet) nor
/// dead (`X`). A pid can be reused once its process is reaped: this says "some
/// process has that pid", which is the one you mean only while it cannot have been
/// reaped and reused (your child before you reap it; a peer for the seconds of a
/// wait, pids being handed out in increasing order until they wrap).
///
/// # Examples
/// ```
/// use nix::unistd::{Pid, getpid};
/// assert!(sem_demo::procfs::is_alive(getpid()));
/// assert!(!sem_demo::procfs::is_alive(Pid::from_raw(i32::MAX))); // above pid_max
/// ```
pub fn is_alive(pid: Pid) -> bool {
    state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// If `pid` sleeps (state `S`) in a kernel function whose name contains `wchan`
/// (`"futex"` for a POSIX P, `"semtimedop"` for System V's), that function's name,
/// from /proc/PID/wchan: the kernel's own word that it is blocked there.
pub fn asleep_in(pid: Pid, wchan: &str) -> Option<String> {
    if state(pid) != Some('S') {
        return None;
    }
    let function = std::fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    function.contains(wchan).then_some(function)
}

/// A file as /proc/PID/maps names it: device (`00:1b`, hex major:minor) and inode.
/// Compared by these, not by path: glibc makes a semaphore in a file of a temporary
/// name and link(2)s it into place, so its creator's maps show that name, and
/// everyone's show `(deleted)` once it is unlinked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    /// `MAJOR:MINOR` in hex, two digits at least, as maps prints it.
    pub device: String,
    /// The inode number.
    pub inode: u64,
}

impl FileId {
    /// stat(2) `path` now: its device and inode.
    pub fn of(path: &str) -> std::io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            device: format!(
                "{:02x}:{:02x}",
                libc::major(meta.dev()),
                libc::minor(meta.dev())
            ),
            inode: meta.ino(),
        })
    }
}

/// True if `pid` has `file` mapped: a line `ADDR PERMS OFFSET DEVICE INODE PATH` of
/// /proc/PID/maps with its device and inode. A process keeps the mapping of a named
/// semaphore from sem_open until sem_close or its death, SIGKILL included.
pub fn maps(pid: Pid, file: &FileId) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return false; // gone, or not ours to read
    };
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(3);
        fields.next() == Some(file.device.as_str())
            && fields.next().and_then(|i| i.parse::<u64>().ok()) == Some(file.inode)
    })
}

/// The first process other than us that has `file` mapped, found by reading every
/// /proc/PID/maps (a few hundred files: look now and then, not in a tight loop;
/// once found, watch that one pid with [`maps`]). A child we forked after
/// sem_open has the mapping too, and counts: this finds "someone else", which is
/// the peer only if nobody else opened it (one peer, no children of ours).
///
/// # Examples
/// ```
/// use sem_demo::{posix::NamedSemaphore, procfs};
/// let sem = NamedSemaphore::create(&format!("/doctest-maps-{}", std::process::id()), 0)?;
/// let file = procfs::FileId::of(&sem.file()).unwrap();
/// assert!(procfs::maps(nix::unistd::getpid(), &file)); // we have it mapped
/// assert_eq!(procfs::find_mapper(&file), None); // nobody else has
/// # Ok::<(), nix::Error>(())
/// ```
pub fn find_mapper(file: &FileId) -> Option<Pid> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()) && *name != me)
        .filter_map(|name| name.parse().ok().map(Pid::from_raw))
        .find(|&pid| maps(pid, file))
}
