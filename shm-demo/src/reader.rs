//! The reader: it creates the segment and its semaphores, waits for the writer, takes
//! what arrives where it lies, and removes everything on the way out (success, error,
//! a writer that died, SIGINT/SIGTERM/SIGHUP). Not after SIGKILL, which runs nothing:
//! then the writer removes it (`writer.rs`), or `rm /dev/shm/NAME` / `ipcrm`.
//!
//! Steps: reserve a guard page; create and map the segment (the flavour's part);
//! publish the layout in the header with a ready mark; wait on `filled` (or `ping`)
//! for the writer; read each slot in place and post `free` (or `pong`) back.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::unistd::{Pid, getpid};

use crate::memory::{GuardPage, hex, quoted, show_mapping};
use crate::segment::{END, Header, Kind, Layout, Ring, Segment};
use crate::signals::Interrupted;
use crate::sync::{Peer, Sem, Semaphores, TICK, spin_until, wait};
use crate::workload::{Tally, check, pattern, throughput};
use crate::{Meeting, Workload, posix, sysv};
use shm_demo::spin::{DEFAULT_SPIN, WAKE_EVERY};

pub const ROLE: &str = "reader";

/// Runs the reader. `writer`: the default run's writer, if this process started it;
/// `ready` is called once the segment is set up (the default run tells its writer to
/// go; the memfd run forks it and returns its pid). Returns the tally, for the caller
/// to print last.
pub fn run(
    meeting: &Meeting,
    workload: &Workload,
    writer: Option<Pid>,
    ready: impl FnOnce() -> Result<Option<Pid>>,
) -> Result<Tally> {
    let layout = Layout::for_workload(workload);
    let guard = GuardPage::reserve()?;
    say!(
        ROLE,
        "mapped an inaccessible guard page at {:#x} first: it takes the address a process \
         laid out like me would give the segment, so the writer's address and mine differ \
         by construction, not by the luck of ASLR",
        guard.addr()
    );
    let (outcome, removed) = match meeting {
        Meeting::Posix(name) => {
            let shm = posix::create(name, &layout)?;
            let served = serve(
                shm.segment(),
                &shm.sems(),
                &layout,
                meeting,
                workload,
                writer,
                ready,
            );
            (served, shm.describe())
        } // `shm` drops here: semaphores destroyed, segment unmapped, name unlinked
        Meeting::Sysv(key) => {
            let shm = sysv::create(*key, &layout)?;
            let served = serve(
                shm.segment(),
                shm.sems(),
                &layout,
                meeting,
                workload,
                writer,
                ready,
            );
            (served, shm.describe())
        } // `shm` drops here: set removed, segment marked, then detached
        Meeting::Memfd => bail!("a memfd has no name to meet at: run `shm-demo memfd`"),
    };
    drop(guard);
    if let Err(e) = &outcome {
        if let Some(Interrupted(sig)) = e.downcast_ref::<Interrupted>() {
            say!(ROLE, "interrupted by {sig}: removed {removed}");
        }
    }
    outcome
}

/// Everything between creating the segment and removing it. `ready` may start the
/// writer and return its pid, watched from then on as `writer` is.
pub fn serve(
    segment: Segment,
    sems: &impl Semaphores,
    layout: &Layout,
    meeting: &Meeting,
    workload: &Workload,
    writer: Option<Pid>,
    ready: impl FnOnce() -> Result<Option<Pid>>,
) -> Result<Tally> {
    segment.publish(layout, getpid().as_raw());
    // Whatever way we leave, a writer still waiting must learn it (see `LeaveMark`).
    let header = segment.header();
    let _leave_mark = LeaveMark(header);
    show_mapping(ROLE, &segment);
    if writer.is_none() && *meeting != Meeting::Memfd {
        let messages = if matches!(workload, Workload::Text(_)) {
            " hello   (no message: it sends each line you type)"
        } else {
            ""
        };
        say!(
            ROLE,
            "ready. In another terminal: shm-demo writer {}{}{messages}",
            meeting.args(),
            workload.args()
        );
    }
    let started = ready()?;
    let peer = Peer::writer(header, writer.or(started));
    let ring = segment.ring(layout);
    match layout.kind {
        Kind::Text => receive_text(&ring, sems, &peer),
        Kind::Bulk => check_bulk(&ring, sems, &peer, layout.count, layout.size),
        Kind::SpinBulk => check_spin_bulk(header, &ring, sems, &peer, layout.count, layout.size),
        Kind::Ping => echo(&ring, sems, &peer, layout.count, layout.size),
        Kind::Spin => spin_echo(header, &ring, sems, &peer, layout.count, layout.size),
    }
}

/// Sets the header's "reader left" flag when dropped, on every way out of `serve`: a
/// writer asleep on a semaphore sees it at its next timeout and stops waiting for a
/// reader that will never post again (in the default run, the reader then waits for
/// that writer to exit: without the flag, each would wait for the other).
struct LeaveMark<'a>(&'a Header);

impl Drop for LeaveMark<'_> {
    fn drop(&mut self) {
        self.0.mark_reader_left();
    }
}

/// Text: print each message, found in place in its slot, until the end mark.
fn receive_text(ring: &Ring, sems: &impl Semaphores, peer: &Peer) -> Result<Tally> {
    say!(
        ROLE,
        "waiting on the semaphore: P(filled) with {} in {} ms slices (to notice Ctrl+C and \
         a dead writer); it returns at once for a post already made, else sleeps until the \
         writer posts: no polling of the data",
        sems.wait_call(),
        TICK.as_millis()
    );
    let (mut messages, mut bytes) = (0, 0);
    let mut started = None;
    loop {
        let slot = messages as usize % ring.slots();
        wait(sems, Sem::Filled, peer)
            .with_context(|| format!("waiting for message {}", messages + 1))?;
        started.get_or_insert_with(Instant::now);
        if ring.len(slot) == END {
            say!(ROLE, "slot {slot} holds the end mark: the writer is done");
            break;
        }
        // SAFETY: our P(filled) gave us this slot; `text` dies before our V(free).
        let text = unsafe { ring.bytes(slot) }?;
        say!(
            ROLE,
            "{}(filled) returned: slot {slot} at {:#x} holds {}: read in place, \
             no read(2), no copy",
            sems.wait_call(),
            ring.data_addr(slot),
            hex(text)
        );
        say!(ROLE, "received {} ({} bytes)", quoted(text), text.len());
        messages += 1;
        bytes += text.len() as u64;
        sems.post(Sem::Free)?; // the slot may be reused
    }
    Ok(Tally {
        messages,
        bytes,
        elapsed: started.map(|t| t.elapsed()).unwrap_or_default(),
        extra: String::new(),
    })
}

/// Bulk: check every message in its slot against the pattern, then the end mark.
fn check_bulk(
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    count: u64,
    size: usize,
) -> Result<Tally> {
    let expected = pattern(size);
    let slots = ring.slots() as u64;
    say!(
        ROLE,
        "expecting {count} messages of {size} bytes through a ring of {slots} slots; \
         each is checked where the writer put it"
    );
    let mut started = None;
    for k in 0..count {
        wait(sems, Sem::Filled, peer)
            .with_context(|| format!("waiting for message {k} of {count}"))?;
        started.get_or_insert_with(Instant::now); // from the first byte to the last
        let slot = (k % slots) as usize;
        if ring.len(slot) == END {
            bail!("the writer ended after {k} of {count} messages: messages are missing");
        }
        // SAFETY: our P(filled) gave us this slot; the slice dies before our V(free).
        check(unsafe { ring.bytes(slot) }?, &expected, k)?;
        sems.post(Sem::Free)?;
    }
    let elapsed = started.map(|t| t.elapsed()).unwrap_or_default();
    wait(sems, Sem::Filled, peer).context("waiting for the writer's end mark")?;
    if ring.len((count % slots) as usize) != END {
        bail!("more data came after the {count} messages expected");
    }
    Ok(Tally {
        messages: count,
        bytes: count * size as u64,
        elapsed,
        extra: throughput(count, size, elapsed),
    })
}

/// `--count --spin`: the spinning ring (`shm_demo::spin`). Spin up to DEFAULT_SPIN for
/// the writer's head, then sleep on `filled`; check message k in place; tail = k+1 frees
/// its slot; every WAKE_EVERY messages, and before we wait ourselves, a V(free) if the
/// writer sleeps. Then the end mark, and the
/// writer's last V(ping): after it the writer makes no semaphore call, so ours may go.
fn check_spin_bulk(
    header: &Header,
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    count: u64,
    size: usize,
) -> Result<Tally> {
    let expected = pattern(size);
    let slots = ring.slots() as u64;
    let (head, tail) = (&header.ring_head, &header.ring_tail);
    say!(
        ROLE,
        "--spin: expecting {count} messages of {size} bytes through a ring of {slots} slots; \
         I spin up to {} µs on the writer's head (Acquire) before I sleep in {}(filled), \
         check each message in place, and store tail = k+1 (Release)",
        DEFAULT_SPIN.as_micros(),
        sems.wait_call()
    );
    let mut filled_below = 0; // head as last seen: messages below it need no look
    let mut started = None;
    let mut woken = 0u64;
    for k in 0..count {
        if k >= filled_below {
            // Before we may sleep ourselves: a writer asleep must hear of the room.
            if tail.waiter_asleep() {
                sems.post(Sem::Free)?;
                woken += 1;
            }
            filled_below = filled_past(head, k, sems, peer)
                .with_context(|| format!("waiting for message {k} of {count}"))?;
        }
        started.get_or_insert_with(Instant::now); // from the first byte to the last
        let slot = (k % slots) as usize;
        if ring.len(slot) == END {
            bail!("the writer ended after {k} of {count} messages: messages are missing");
        }
        // SAFETY: head > k (Acquire) gave us slot k % slots, complete; the writer
        // refills it only once it sees tail = k+1, stored after the slice dies.
        check(unsafe { ring.bytes(slot) }?, &expected, k)?;
        tail.advance(k + 1);
        if (k + 1).is_multiple_of(WAKE_EVERY) && tail.waiter_asleep() {
            sems.post(Sem::Free)?; // the writer gave up spinning: wake it
            woken += 1;
        }
    }
    let elapsed = started.map(|t| t.elapsed()).unwrap_or_default();
    if count >= filled_below {
        if tail.waiter_asleep() {
            sems.post(Sem::Free)?; // the writer may wait for room for the end mark
        }
        filled_past(head, count, sems, peer).context("waiting for the writer's end mark")?;
    }
    if ring.len((count % slots) as usize) != END {
        bail!("more data came after the {count} messages expected");
    }
    wait(sems, Sem::Ping, peer).context("waiting for the writer's last post")?;
    Ok(Tally {
        messages: count,
        bytes: count * size as u64,
        elapsed,
        extra: format!("{} wakeups={woken}", throughput(count, size, elapsed)),
    })
}

/// Waits until the writer's head is past message k; returns the head.
fn filled_past(
    head: &shm_demo::spin::Index,
    k: u64,
    sems: &impl Semaphores,
    peer: &Peer,
) -> Result<u64> {
    head.wait_until(|h| h > k, DEFAULT_SPIN, || wait(sems, Sem::Filled, peer))
}

/// Ping on semaphores: wait on `ping`, copy slot 0 into slot 1, post `pong`.
fn echo(
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    count: u64,
    size: usize,
) -> Result<Tally> {
    say!(
        ROLE,
        "answering {count} round trips: P(ping), slot 0 copied to slot 1, V(pong)"
    );
    let mut started = None;
    let mut echoed = 0;
    loop {
        wait(sems, Sem::Ping, peer)
            .with_context(|| format!("waiting for ping {echoed} of {count}"))?;
        started.get_or_insert_with(Instant::now);
        if ring.len(0) == END {
            break;
        }
        if echoed == count {
            bail!("more than the {count} round trips expected");
        }
        // SAFETY: our P(ping) gave us slots 0 and 1 until our V(pong).
        unsafe { ring.copy(0, 1) }?;
        sems.post(Sem::Pong)?;
        echoed += 1;
    }
    if echoed != count {
        bail!("the writer ended after {echoed} of {count} round trips");
    }
    Ok(Tally {
        messages: count,
        bytes: count * size as u64,
        elapsed: started.map(|t| t.elapsed()).unwrap_or_default(),
        extra: String::new(),
    })
}

/// `--spin`: one semaphore wait to meet the writer, then no system call at all: spin
/// until the writer's counter says a request is in slot 0, answer in slot 1, bump ours.
fn spin_echo(
    header: &Header,
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    count: u64,
    size: usize,
) -> Result<Tally> {
    say!(
        ROLE,
        "--spin: waiting on ping once, for the writer to arrive; then both sides spin on \
         two counters in the segment (Acquire/Release atomics), no system call per round trip"
    );
    wait(sems, Sem::Ping, peer).context("waiting for the writer to arrive")?;
    let started = Instant::now();
    let mut echoed: u64 = 0;
    loop {
        let seen = spin_until(&header.ping_seq, echoed + 1, END, peer)
            .with_context(|| format!("spinning for ping {echoed} of {count}"))?;
        if seen == END {
            break;
        }
        if echoed == count {
            bail!("more than the {count} round trips expected");
        }
        // SAFETY: ping_seq = echoed+1 (Acquire) gave us slot 0 complete, and slot 1
        // is ours until the pong_seq store below; the writer waits for it.
        unsafe { ring.copy(0, 1) }?;
        // Release: the answer in slot 1 is visible to whoever sees the new value.
        header
            .pong_seq
            .0
            .store(echoed + 1, std::sync::atomic::Ordering::Release);
        echoed += 1;
    }
    if echoed != count {
        bail!("the writer ended after {echoed} of {count} round trips");
    }
    Ok(Tally {
        messages: count,
        bytes: count * size as u64,
        elapsed: started.elapsed(),
        extra: String::new(),
    })
}
