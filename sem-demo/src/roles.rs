//! The reader and the writer, for either flavour (the ping workload is in
//! `workload.rs`).
//!
//! Reader and writer meet at a sync semaphore of value 0 (同步信号量), which the
//! reader creates (so it starts first): its P finds 0 and sleeps until the writer's
//! V wakes it. (A V that comes before the reader's P leaves its unit waiting, and
//! that P takes it without sleeping.) Either way the reader goes on only after the
//! writer's V, which is the notes' "A before B" between two unrelated programs.
//!
//! A semaphore has no end of file, so every wait here also watches the peer and
//! stops once it is dead (`semaphore::Peer`): by its pid in a one-run ping, by
//! SEM_UNDO and GETPID (`run_sysv::Presence`) or /proc/PID/maps
//! (`run_posix::Mapper`) in two-terminal mode.

use std::time::Instant;

use anyhow::Result;

use crate::say;
use crate::semaphore::{Peer, STEPPED_OUT, Semaphore, count_sleepers, p_watching};
use crate::workload::Summary;

pub const WRITER: &str = "writer";
pub const READER: &str = "reader";

/// The reader's one P: sleeps until a writer does V, or Ctrl+C, or until a writer
/// seen (`writer`) dies before its V.
pub fn wait_for_writer(sync: &dyn Semaphore, writer: &dyn Peer) -> Result<Summary> {
    say!(
        READER,
        "P on {}: value {}, so I sleep in the kernel until a writer does V (Ctrl+C stops me)",
        sync.label(),
        sync.value()?
    );
    let started = Instant::now();
    p_watching(sync, None, Some(writer))?; // no time limit: a writer may come in an hour
    let elapsed = started.elapsed();
    say!(
        READER,
        "woke up after {:.1} ms: a writer did V and its unit is mine (value now {})",
        elapsed.as_secs_f64() * 1e3,
        sync.value()?
    );
    Ok(Summary {
        role: READER,
        messages: 1,
        elapsed,
        rtts: None,
    })
}

/// The writer's one V.
pub fn post_to_reader(sync: &dyn Semaphore) -> Result<Summary> {
    let started = Instant::now();
    // A reader asleep in P steps out of the kernel's queue for an instant at the
    // end of each slice, so give it a moment to be counted; with no reader there,
    // this waits the whole moment and finds 0.
    let sleepers = count_sleepers(sync, 1, STEPPED_OUT)?;
    let before = sync.value()?;
    let counted = match sleepers {
        Some(n) => format!("{n} asleep in P (GETNCNT)"),
        None => "no POSIX call says how many sleep in P".to_string(),
    };
    say!(WRITER, "opened {}: value {before}, {counted}", sync.label());
    sync.v()?;
    let outcome = match sleepers {
        Some(0) => "nobody sleeps in P yet, so the unit waits in the semaphore for the reader's P",
        Some(_) => "the kernel wakes the reader asleep in P, which takes the unit",
        None => {
            "a reader asleep in P wakes and takes the unit (one not asleep yet finds it waiting)"
        }
    };
    say!(WRITER, "V on {}: {outcome}", sync.label());
    Ok(Summary {
        role: WRITER,
        messages: 1,
        elapsed: started.elapsed(),
        rtts: None,
    })
}
