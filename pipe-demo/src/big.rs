//! The `big` flavour: the notes' kernel buffer (所谓的管道，就是内核里面的一串缓存)
//! made bigger with fcntl F_SETPIPE_SZ, and the writer falling asleep only once
//! that bigger buffer is full.
//!
//! 1. A new pipe holds 16 page-sized slots (F_GETPIPE_SZ); the limits an ordinary
//!    user meets are in /proc/sys/fs: pipe-max-size (the ceiling without
//!    CAP_SYS_RESOURCE) and pipe-user-pages-soft (the pages all of one user's pipes
//!    may take before they can grow no more). A request above pipe-max-size is
//!    refused with EPERM unless the process has CAP_SYS_RESOURCE (root has it).
//! 2. F_SETPIPE_SZ to 1 MiB, read back with F_GETPIPE_SZ.
//! 3. The writer fills it with O_NONBLOCK writes until EAGAIN: 1 MiB, not 64 KiB;
//!    then one blocking write sleeps (/proc/PID/wchan: anon_pipe_write on recent
//!    kernels, 6.18 here; pipe_write on older ones) until the reader, which waited
//!    to see that, drains it.
//!
//! `--hold`: the reader waits for a line (or EOF) on stdin before it drains, so
//! you can look at the sleeping writer yourself (`cat /proc/PID/wchan`).
//!
//! In production: F_SETPIPE_SZ where a producer must not stall on a slow consumer
//! for a burst (loggers, `splice` pipelines); for more than a burst, a bigger
//! buffer only delays the stall, and the reader must keep up.

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::unistd::Pid;
use pipe_demo::fork::{self, Forked};
use pipe_demo::pipe::{
    self, Limits, capacity, read_exact, set_capacity, set_nonblocking, try_write, write_all,
};
use std::io::BufRead;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::family::{exit_child, reap};
use crate::oneway::{Watched, wait_until_asleep};
use crate::say;
use crate::summary::Summary;

const WRITER: &str = "writer";
const READER: &str = "reader";
/// What the flavour asks F_SETPIPE_SZ for: 1 MiB, pipe-max-size's default.
pub const BIG: usize = 1 << 20;
/// The writes that fill the pipe: 4096 bytes divide every page size, so they fill
/// all of it (see `pipe::capacity`).
const CHUNK: usize = 4096;
/// How long the reader looks for the writer asleep before it drains anyway.
const ASLEEP_DEADLINE: Duration = Duration::from_secs(10);
/// How long a reader that got EOF looks for its writer dead or in waitpid.
const DEATH_LOOK: Duration = Duration::from_secs(2);
/// Bit 24 of CapEff in /proc/self/status (capabilities(7)).
const CAP_SYS_RESOURCE: u32 = 24;

pub fn run(hold: bool) -> Result<()> {
    let (read_end, write_end) = pipe::create().context("pipe2")?;
    let default = capacity(&write_end).context("fcntl F_GETPIPE_SZ")?;
    let page = page_size();
    say!(
        WRITER,
        "act 1: a new pipe: F_GETPIPE_SZ says {default} bytes ({} slots of a {page}-byte page)",
        default / page
    );
    let limits = pipe::limits().context("reading /proc/sys/fs/pipe-*")?;
    show_limits(&limits, page);
    ask_above_the_ceiling(&write_end, &limits)?;
    let size = grow(&write_end, default)?;

    // SAFETY: this program is single-threaded.
    match unsafe { fork::fork_parent_writes([(read_end, write_end)]) }.context("fork")? {
        Forked::Child {
            parent,
            ends: [read_end],
        } => exit_child(reader(read_end, parent, hold)),
        Forked::Parent {
            child,
            ends: [write_end],
        } => {
            say!(
                WRITER,
                "fork(2) made the reader, pid {child}; it reads only once I sleep"
            );
            let started = Instant::now();
            let outcome = fill_then_block(write_end, size);
            let reaped = reap(WRITER, child, "reader");
            let bytes = outcome?;
            reaped?;
            Summary {
                role: WRITER,
                messages: 1,
                bytes: bytes as u64,
                elapsed: started.elapsed(),
                extra: String::new(),
            }
            .print();
            Ok(())
        }
    }
}

/// The size of a page (sysconf PAGE_SIZE), a pipe's unit of buffer.
fn page_size() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(bytes)) if bytes > 0 => bytes as usize,
        _ => 4096,
    }
}

/// The limits, and whether this process is bound by them.
fn show_limits(limits: &Limits, page: usize) {
    let soft = limits.user_pages_soft;
    say!(
        WRITER,
        "/proc/sys/fs/pipe-max-size: {} bytes, the most F_SETPIPE_SZ gives without \
         CAP_SYS_RESOURCE",
        limits.max_size
    );
    say!(
        WRITER,
        "/proc/sys/fs/pipe-user-pages-soft: {soft} pages ({} MiB with {page}-byte pages): \
         once one user's pipes take that many, its new pipes get 2 pages (1 before Linux 5.14) and none may grow; \
         pipe-user-pages-hard: {}",
        (soft as usize * page) >> 20,
        match limits.user_pages_hard {
            0 => "0 (no hard limit)".to_string(),
            hard => format!("{hard} pages"),
        }
    );
    let uid = effective_uid().map_or("?".to_string(), |uid| uid.to_string());
    let who = match has_cap_sys_resource() {
        Some(true) => {
            "it has CAP_SYS_RESOURCE: pipe-max-size and the per-user limits do not bind it"
        }
        Some(false) => "it has no CAP_SYS_RESOURCE: the limits bind it",
        None => "its capabilities are unreadable (/proc/self/status)",
    };
    say!(WRITER, "this process runs as uid {uid}, and {who}");
}

/// This process's effective uid: the second number of `Uid:` in /proc/self/status.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let ids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    ids.split_whitespace().nth(1)?.parse().ok()
}

/// CAP_SYS_RESOURCE in this process's effective set, from /proc/self/status.
fn has_cap_sys_resource() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let caps = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Asks for twice pipe-max-size: EPERM for an ordinary user, granted with
/// CAP_SYS_RESOURCE (then put back below the ceiling by `grow`).
fn ask_above_the_ceiling(end: &OwnedFd, limits: &Limits) -> Result<()> {
    let asked = limits.max_size.saturating_mul(2);
    match set_capacity(end, asked) {
        Err(e) if e.raw_os_error() == Some(Errno::EPERM as i32) => say!(
            WRITER,
            "F_SETPIPE_SZ {asked} (above pipe-max-size): EPERM, as for any process \
             without CAP_SYS_RESOURCE (a user past pipe-user-pages-soft gets it too)"
        ),
        Err(e) => say!(WRITER, "F_SETPIPE_SZ {asked} (above pipe-max-size): {e}"),
        Ok(got) => say!(
            WRITER,
            "F_SETPIPE_SZ {asked} (above pipe-max-size): granted, {got} bytes: \
             CAP_SYS_RESOURCE lifts the ceiling (an ordinary user gets EPERM)"
        ),
    }
    Ok(())
}

/// Act 2: F_SETPIPE_SZ to BIG. Returns the capacity the pipe has now, which is
/// still the old one if the kernel said no (a user past pipe-user-pages-soft,
/// or a pipe-max-size set below 1 MiB).
fn grow(end: &OwnedFd, default: usize) -> Result<usize> {
    match set_capacity(end, BIG) {
        Ok(got) => {
            let read_back = capacity(end).context("fcntl F_GETPIPE_SZ")?;
            say!(
                WRITER,
                "act 2: F_SETPIPE_SZ {BIG} returned {got}; F_GETPIPE_SZ reads back {read_back} \
                 bytes ({}x a new pipe's)",
                read_back / default.max(1)
            );
            Ok(read_back)
        }
        Err(e) => {
            let now = capacity(end).context("fcntl F_GETPIPE_SZ")?;
            say!(
                WRITER,
                "act 2: F_SETPIPE_SZ {BIG} refused: {e} (past pipe-user-pages-soft, or \
                 pipe-max-size below {BIG}?); going on with {now} bytes"
            );
            Ok(now)
        }
    }
}

/// Act 3, the writer: O_NONBLOCK writes until EAGAIN, then one blocking write
/// that sleeps until the reader drains. Returns the bytes written.
fn fill_then_block(write_end: OwnedFd, size: usize) -> Result<usize> {
    let chunk = [b'.'; CHUNK];
    set_nonblocking(&write_end, true).context("fcntl O_NONBLOCK on")?;
    let mut filled = 0;
    while let Some(n) = try_write(&write_end, &chunk).context("filling the pipe")? {
        filled += n;
    }
    set_nonblocking(&write_end, false).context("fcntl O_NONBLOCK off")?;
    say!(
        WRITER,
        "act 3: wrote {filled} bytes with O_NONBLOCK before EAGAIN (F_GETPIPE_SZ: {size}); \
         a new pipe says EAGAIN after its 16 slots (64 KiB with 4 KiB pages)"
    );
    say!(
        WRITER,
        "writing {CHUNK} more bytes, blocking: this write sleeps until the reader reads"
    );
    let asleep_since = Instant::now();
    write_all(&write_end, &chunk).context("the blocking write")?;
    say!(
        WRITER,
        "woke up: the write finished {:.1} ms later, once the reader had made room",
        asleep_since.elapsed().as_secs_f64() * 1e3
    );
    Ok(filled + CHUNK)
}

/// The child: waits to see the writer asleep on the full pipe, drains it, then
/// reads EOF.
fn reader(read_end: OwnedFd, writer: Pid, hold: bool) -> Result<()> {
    let started = Instant::now();
    match wait_until_asleep(writer, "pipe_write", ASLEEP_DEADLINE) {
        Watched::Asleep(wchan) => say!(
            READER,
            "the writer {writer} is asleep in the kernel (/proc/{writer}/wchan: {wchan}): the \
             pipe's {} bytes are full",
            capacity(&read_end).context("fcntl F_GETPIPE_SZ")?
        ),
        Watched::Awake => say!(
            READER,
            "did not see the writer asleep within {ASLEEP_DEADLINE:?}; reading anyway"
        ),
        Watched::Dead => bail!(
            "the writer, pid {writer}, died before it filled the pipe (I am no longer its \
             child)"
        ),
    }
    if hold {
        say!(
            READER,
            "--hold: press Enter to let me read (cat /proc/{writer}/wchan meanwhile)"
        );
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading stdin")?;
    }
    let expected = capacity(&read_end).context("fcntl F_GETPIPE_SZ")? + CHUNK;
    let mut everything = vec![0u8; expected];
    let drained = read_exact(&read_end, &mut everything);
    if drained.is_err() && fork::parent_died(writer, "do_wait", DEATH_LOOK) {
        bail!("the writer, pid {writer}, died before its last write: the kernel closed its end");
    }
    if !drained.context("draining the pipe")? {
        bail!("the pipe ended before any byte came");
    }
    if everything.iter().any(|&b| b != b'.') {
        bail!("the bytes read are not the ones written");
    }
    say!(
        READER,
        "read {expected} bytes: the writer's blocked write could finish"
    );
    let mut rest = [0u8; 1];
    if read_exact(&read_end, &mut rest).context("reading to EOF")? {
        bail!("more bytes than the writer meant to send");
    }
    if fork::parent_died(writer, "do_wait", DEATH_LOOK) {
        bail!("EOF because the writer, pid {writer}, died: the kernel closed its write end");
    }
    say!(READER, "EOF: the writer closed its end");
    Summary {
        role: READER,
        messages: 1,
        bytes: expected as u64,
        elapsed: started.elapsed(),
        extra: String::new(),
    }
    .print();
    Ok(())
}
