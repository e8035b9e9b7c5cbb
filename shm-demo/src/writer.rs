//! The writer: it opens the segment the reader made (never creates one), maps it at an
//! address of its own, and stores into it. Each message costs plain stores into memory
//! plus a semaphore post; no system call carries the bytes.
//!
//! Steps: open and map (the flavour's part); read the layout the reader published and
//! check it matches our workload; claim the segment; then for each message P(free),
//! fill the slot, V(filled) (or, for ping: fill slot 0, V(ping), P(pong), check slot 1).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::unistd::getpid;

use crate::memory::{hex, quoted, show_mapping};
use crate::segment::{END, Header, Kind, Layout, Ring, Segment};
use crate::signals::{self, Interrupted};
use crate::sync::{Peer, PeerGone, Sem, Semaphores, TICK, spin_until, wait};
use crate::workload::{Tally, pattern, percentiles, stamp, throughput};
use crate::{Meeting, Workload, posix, sysv};
use shm_demo::spin::{DEFAULT_SPIN, WAKE_EVERY};

pub const ROLE: &str = "writer";

/// Runs the writer. A text workload with no messages sends the lines of stdin.
/// Returns the tally, for the caller to print last.
pub fn run(meeting: &Meeting, workload: &Workload) -> Result<Tally> {
    let outcome = match meeting {
        Meeting::Posix(name) => {
            let shm = posix::open(name)?;
            let outcome = session(shm.segment(), &shm.sems(), workload);
            let remedy = format!("rm /dev/shm{name}");
            if_the_reader_died(&outcome, &remedy, || posix::remove_leftovers(name));
            outcome
        } // unmapped here
        Meeting::Sysv(key) => {
            let shm = sysv::open(*key)?;
            let outcome = session(shm.segment(), shm.sems(), workload);
            if_the_reader_died(&outcome, &shm.remedy(), || shm.remove_leftovers());
            outcome
        } // detached here
        Meeting::Memfd => bail!("a memfd has no name to open: run `shm-demo memfd`"),
    };
    if let Err(e) = &outcome {
        if let Some(Interrupted(sig)) = e.downcast_ref::<Interrupted>() {
            say!(
                ROLE,
                "interrupted by {sig}: my mapping is gone; the segment is the reader's to remove"
            );
        }
    }
    outcome
}

/// A killed reader never ran its cleanup: its objects would stay in the kernel until
/// reboot. We know them (the name, or the ids we opened), so `remove` removes them.
/// `remedy`: the command that removes them, named if we cannot.
fn if_the_reader_died(
    outcome: &Result<Tally>,
    remedy: &str,
    remove: impl FnOnce() -> Result<String>,
) {
    let Err(e) = outcome else { return };
    let Some(gone) = e.downcast_ref::<PeerGone>() else {
        return;
    };
    if !gone.died {
        return; // it left and cleaned up itself
    }
    match remove() {
        Ok(removed) => say!(
            ROLE,
            "the reader (pid {}) died without cleaning up: I removed {removed}",
            gone.pid
        ),
        Err(e) => say!(
            ROLE,
            "could not remove what the reader left: {e:#} (remove it yourself: {})",
            remedy
        ),
    }
}

/// Everything between opening the segment and unmapping it.
pub fn session(segment: Segment, sems: &impl Semaphores, workload: &Workload) -> Result<Tally> {
    let layout = segment.published_layout()?;
    check_same_workload(&layout, workload)?;
    let header = segment.header();
    if let Err(other) = header.claim_for_writer(getpid().as_raw()) {
        bail!("another writer (pid {other}) already uses this segment: one writer at a time");
    }
    let peer = Peer::reader(header);
    peer.check()?; // a reader killed earlier leaves its segment behind: say so now
    show_mapping(ROLE, &segment);
    say!(
        ROLE,
        "the reader mapped the segment at {:#x} (it wrote that in the header), I at {:#x}: \
         two virtual addresses, one memory",
        header.reader_addr(),
        segment.addr()
    );
    let ring = segment.ring(&layout);
    match workload {
        Workload::Text(messages) if messages.is_empty() => {
            let mut stdin = StdinLines::new(ring.capacity());
            send_text(header, &ring, sems, &peer, |line| stdin.next(line, &peer))
        }
        Workload::Text(messages) => {
            let mut given = messages.iter();
            send_text(header, &ring, sems, &peer, |line| {
                line.clear();
                Ok(given
                    .next()
                    .map(|m| line.extend_from_slice(m.as_bytes()))
                    .is_some())
            })
        }
        Workload::Bulk {
            count,
            size,
            spin: false,
        } => send_bulk(header, &ring, sems, &peer, *count, *size),
        Workload::Bulk {
            count,
            size,
            spin: true,
        } => send_spin_bulk(header, &ring, sems, &peer, *count, *size),
        Workload::Ping {
            count,
            size,
            spin: false,
        } => ping(header, &ring, sems, &peer, *count, *size),
        Workload::Ping {
            count,
            size,
            spin: true,
        } => spin_ping(header, &ring, sems, &peer, *count, *size),
    }
}

/// The reader chose the segment's shape from its workload; ours must be the same.
fn check_same_workload(theirs: &Layout, workload: &Workload) -> Result<()> {
    let mine = Layout::for_workload(workload);
    let describe = |l: &Layout| match l.kind {
        Kind::Text => "text messages".to_string(),
        Kind::Bulk => format!("--count {} --size {}", l.count, l.size),
        Kind::Ping => format!("--ping {} --size {}", l.count, l.size),
        Kind::Spin => format!("--ping {} --size {} --spin", l.count, l.size),
        Kind::SpinBulk => format!("--count {} --size {} --spin", l.count, l.size),
    };
    if (mine.kind, mine.count, mine.size) != (theirs.kind, theirs.count, theirs.size) {
        bail!(
            "the reader set this segment up for {}, and this writer was started for {}: \
             start both sides with the same workload options",
            describe(theirs),
            describe(&mine)
        );
    }
    Ok(())
}

/// Text: each message into the next free slot, then the end mark.
fn send_text(
    header: &Header,
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    mut next: impl FnMut(&mut Vec<u8>) -> Result<bool>,
) -> Result<Tally> {
    let started = Instant::now();
    let (mut messages, mut bytes) = (0, 0);
    let mut text = Vec::new();
    while next(&mut text)? {
        if text.len() > ring.capacity() {
            bail!(
                "a line of {} bytes: a slot holds at most {} bytes",
                text.len(),
                ring.capacity()
            );
        }
        let slot = messages as usize % ring.slots();
        wait(sems, Sem::Free, peer).context("waiting for a free slot")?;
        // SAFETY: our P(free) just gave us this slot; we post `filled` below.
        unsafe { ring.store(slot, &text) };
        say!(
            ROLE,
            "stored {} at {:#x} (slot {slot}): plain stores into the mapping, no system call",
            hex(&text),
            ring.data_addr(slot)
        );
        sems.post(Sem::Filled)?;
        say!(
            ROLE,
            "sent {} ({} bytes): {}(filled) wakes the reader if it sleeps",
            quoted(&text),
            text.len(),
            sems.post_call()
        );
        messages += 1;
        bytes += text.len() as u64;
    }
    send_end_mark(header, ring, sems, peer, messages)?;
    say!(
        ROLE,
        "sent the end mark (a slot whose length is END): nothing more is coming"
    );
    Ok(Tally {
        messages,
        bytes,
        elapsed: started.elapsed(),
        extra: String::new(),
    })
}

/// The slot after the last message says "that was all". After this post the writer
/// never waits again, so the reader may destroy the semaphores.
fn send_end_mark(
    header: &Header,
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    sent: u64,
) -> Result<()> {
    wait(sems, Sem::Free, peer).context("waiting for a slot for the end mark")?;
    ring.store_end((sent % ring.slots() as u64) as usize);
    header.mark_writer_done();
    sems.post(Sem::Filled)
}

/// Bulk: one buffer built once; per message, the sequence number, one copy into the
/// slot (the only copy: into the reader's memory), one post.
fn send_bulk(
    header: &Header,
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    count: u64,
    size: usize,
) -> Result<Tally> {
    let mut message = pattern(size);
    let slots = ring.slots() as u64;
    say!(
        ROLE,
        "sending {count} messages of {size} bytes through a ring of {slots} slots: \
         P(free), one memcpy into the slot, V(filled)"
    );
    let started = Instant::now();
    for k in 0..count {
        stamp(&mut message, k);
        wait(sems, Sem::Free, peer)
            .with_context(|| format!("waiting for a free slot for message {k} of {count}"))?;
        // SAFETY: our P(free) just gave us this slot; we post `filled` next.
        unsafe { ring.store((k % slots) as usize, &message) };
        sems.post(Sem::Filled)?;
    }
    let elapsed = started.elapsed();
    send_end_mark(header, ring, sems, peer, count)?;
    Ok(Tally {
        messages: count,
        bytes: count * size as u64,
        elapsed,
        extra: throughput(count, size, elapsed),
    })
}

/// `--count --spin`: the spinning ring (`shm_demo::spin`). Message k goes into slot
/// k % slots once the reader's tail says it is free (spinning, then asleep on `free`);
/// head = k+1 hands it over; every WAKE_EVERY messages, and before we wait ourselves,
/// a V(filled) if the reader sleeps.
/// After the end mark, one V(ping): the last semaphore call the writer makes, so the
/// reader waits for it before it destroys the semaphores.
fn send_spin_bulk(
    header: &Header,
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    count: u64,
    size: usize,
) -> Result<Tally> {
    let mut message = pattern(size);
    let slots = ring.slots() as u64;
    let (head, tail) = (&header.ring_head, &header.ring_tail);
    say!(
        ROLE,
        "--spin: sending {count} messages of {size} bytes through a ring of {slots} slots on \
         two counters: spin up to {} µs for the reader's tail (Acquire), one memcpy, head = \
         k+1 (Release, with a fence and a look for a sleeping reader every {WAKE_EVERY}); \
         {}(free) or {}(filled) only when a side gives up spinning and sleeps",
        DEFAULT_SPIN.as_micros(),
        sems.wait_call(),
        sems.post_call()
    );
    let mut free_below = slots; // tail + slots, as last seen: no need to look before it
    let mut woken = 0u64;
    let started = Instant::now();
    for k in 0..count {
        stamp(&mut message, k);
        if k >= free_below {
            // Before we may sleep ourselves: a reader asleep must hear of what we sent.
            if head.waiter_asleep() {
                sems.post(Sem::Filled)?;
                woken += 1;
            }
            free_below = room_for(tail, k, slots, sems, peer)
                .with_context(|| format!("waiting for a free slot for message {k} of {count}"))?;
        }
        // SAFETY: tail + slots > k (Acquire): the reader is done with slot k % slots
        // and reads it again only once it sees head = k+1, stored below.
        unsafe { ring.store((k % slots) as usize, &message) };
        head.advance(k + 1);
        if (k + 1).is_multiple_of(WAKE_EVERY) && head.waiter_asleep() {
            sems.post(Sem::Filled)?; // the reader gave up spinning: wake it
            woken += 1;
        }
    }
    let elapsed = started.elapsed();
    if count >= free_below {
        if head.waiter_asleep() {
            sems.post(Sem::Filled)?;
        }
        room_for(tail, count, slots, sems, peer).context("waiting for a slot for the end mark")?;
    }
    ring.store_end((count % slots) as usize);
    header.mark_writer_done();
    if head.publish(count + 1) {
        sems.post(Sem::Filled)?;
    }
    sems.post(Sem::Ping)?; // our last semaphore call: see above
    Ok(Tally {
        messages: count,
        bytes: count * size as u64,
        elapsed,
        extra: format!("{} wakeups={woken}", throughput(count, size, elapsed)),
    })
}

/// Waits until the reader's tail leaves slot k % slots free; returns tail + slots.
fn room_for(
    tail: &shm_demo::spin::Index,
    k: u64,
    slots: u64,
    sems: &impl Semaphores,
    peer: &Peer,
) -> Result<u64> {
    let t = tail.wait_until(
        |t| k < t + slots,
        DEFAULT_SPIN,
        || wait(sems, Sem::Free, peer),
    )?;
    Ok(t + slots)
}

/// Ping on semaphores: request in slot 0, V(ping), P(pong), answer in slot 1.
fn ping(
    header: &Header,
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    count: u64,
    size: usize,
) -> Result<Tally> {
    say!(
        ROLE,
        "{count} round trips of {size} bytes: slot 0, V(ping), P(pong), slot 1"
    );
    let mut message = pattern(size);
    let mut rtts: Vec<Duration> = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for k in 0..count {
        stamp(&mut message, k);
        let sent_at = Instant::now();
        // SAFETY: slot 0 is ours between the reader's V(pong) (or the start) and our
        // V(ping): the reader copies it only after its P(ping).
        unsafe { ring.store(0, &message) };
        sems.post(Sem::Ping)?;
        wait(sems, Sem::Pong, peer).with_context(|| format!("waiting for answer {k}"))?;
        rtts.push(sent_at.elapsed());
        // SAFETY: our P(pong) gave us slot 1; the reader writes it again only after
        // our next V(ping).
        unsafe { same_answer(ring, &message, k) }?;
    }
    let elapsed = started.elapsed();
    ring.store_end(0);
    header.mark_writer_done();
    sems.post(Sem::Ping)?;
    Ok(Tally {
        messages: count,
        bytes: count * size as u64,
        elapsed,
        extra: percentiles(&mut rtts),
    })
}

/// `--spin`: one V(ping) to say "I am here", then requests and answers are numbered
/// by two counters in the segment; each side spins until the other's counter moves.
fn spin_ping(
    header: &Header,
    ring: &Ring,
    sems: &impl Semaphores,
    peer: &Peer,
    count: u64,
    size: usize,
) -> Result<Tally> {
    say!(
        ROLE,
        "--spin: {count} round trips of {size} bytes; one V(ping) to say I am here, then \
         only atomics: ping_seq = k (Release), spin until pong_seq = k (Acquire)"
    );
    let mut message = pattern(size);
    let mut rtts: Vec<Duration> = Vec::with_capacity(count as usize);
    sems.post(Sem::Ping)?;
    let started = Instant::now();
    // One clock read a round trip, here only: the end of trip k is the start of trip
    // k+1, so a trip's time includes stamping its request and checking its answer (a
    // memcmp of `size` bytes). Four reads a trip (two here, one on entry to each side's
    // spin_until) made the mean trip 20 % longer than three did (0.190 against 0.158
    // µs, 2 vCPUs); now it is one.
    let mut sent_at = started;
    for k in 0..count {
        stamp(&mut message, k);
        // SAFETY: the reader has answered request k-1 (pong_seq = k), and reads slot 0
        // only once it sees ping_seq = k+1 (stored below, with Release).
        unsafe { ring.store(0, &message) };
        // Release: the request in slot 0 is visible to whoever sees the new value.
        header
            .ping_seq
            .0
            .store(k + 1, std::sync::atomic::Ordering::Release);
        spin_until(&header.pong_seq, k + 1, END, peer)
            .with_context(|| format!("spinning for answer {k}"))?;
        // SAFETY: pong_seq = k+1 (Acquire) says the answer in slot 1 is complete; the
        // reader writes slot 1 again only after our next ping_seq store.
        unsafe { same_answer(ring, &message, k) }?;
        let now = Instant::now();
        rtts.push(now - sent_at);
        sent_at = now;
    }
    let elapsed = sent_at - started;
    header.mark_writer_done();
    header
        .ping_seq
        .0
        .store(END, std::sync::atomic::Ordering::Release);
    Ok(Tally {
        messages: count,
        bytes: count * size as u64,
        elapsed,
        extra: percentiles(&mut rtts),
    })
}

/// # Safety
/// As for `Ring::bytes`: this process holds slot 1.
unsafe fn same_answer(ring: &Ring, message: &[u8], k: u64) -> Result<()> {
    // SAFETY: the caller holds slot 1; the slice dies in this comparison.
    if unsafe { ring.bytes(1) }? != message {
        return Err(anyhow!("answer {k} differs from what was sent"));
    }
    Ok(())
}

/// Lines of standard input, read with read(2) so that Ctrl+C can stop the wait for the
/// next line (std's `read_line` retries EINTR by itself and would keep waiting).
///
/// Bounded: a line longer than a slot is refused as soon as that many bytes have
/// arrived without a '\n', so a newline-free stdin (`< /dev/zero`) costs at most
/// `cap` + 4 KiB of memory, never all of it.
struct StdinLines {
    pending: Vec<u8>,
    eof: bool,
    /// The longest line accepted: a slot's capacity.
    cap: usize,
}

impl StdinLines {
    fn new(cap: usize) -> StdinLines {
        StdinLines {
            pending: Vec::new(),
            eof: false,
            cap,
        }
    }

    /// The next line, without its '\n', into `line`; false at the end of input. While
    /// it waits for input it looks at `peer` every TICK: a reader killed meanwhile is
    /// noticed now, not when the next line comes.
    fn next(&mut self, line: &mut Vec<u8>, peer: &Peer) -> Result<bool> {
        loop {
            if let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                line.clear();
                line.extend(self.pending.drain(..=nl).take(nl));
                return Ok(true);
            }
            if self.pending.len() > self.cap {
                bail!(
                    "a line longer than {} bytes on standard input (no newline after {} \
                     bytes): a slot holds at most {} bytes, so it is not a text message",
                    self.cap,
                    self.pending.len(),
                    self.cap
                );
            }
            if self.eof {
                line.clear();
                line.append(&mut self.pending);
                return Ok(!line.is_empty());
            }
            if !stdin_ready(peer)? {
                continue;
            }
            let mut chunk = [0u8; 4096];
            match nix::unistd::read(std::io::stdin(), &mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR) => signals::check()?,
                Err(e) => return Err(e).context("reading standard input"),
            }
        }
    }
}

/// poll(2) standard input for one TICK: true once a read will not block. Between
/// ticks: the signal flag, and whether the reader is still there.
fn stdin_ready(peer: &Peer) -> Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    signals::check()?;
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let tick = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, tick) {
        Ok(0) | Err(Errno::EINTR) => {
            peer.check()?;
            Ok(false)
        }
        Ok(_) => Ok(true), // POLLIN, or POLLHUP/POLLERR: read(2) says which
        Err(e) => Err(e).context("poll on standard input"),
    }
}
