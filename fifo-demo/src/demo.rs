//! The default run, narrated. This process (`main`) makes a private directory, starts a
//! reader and then a writer as two separate programs that meet at a FIFO in it, and
//! waits for both.
//!
//! - Act 1: the reader sleeps in open(2) until the writer opens the FIFO; the messages
//!   (or the `--count`/`--ping` workload) go through; the reader gets EOF and removes it.
//! - Act 2, PIPE_BUF (text runs only; in `server.rs`): main becomes the server of a
//!   well-known FIFO and reads two writers at once, checking that every line of at most
//!   PIPE_BUF bytes arrives whole, never mixed with the other writer's.

use std::path::Path;

use anyhow::{Context, Result};
use fifo_demo::fifo::PrivateDir;
use fifo_demo::{process, stop};

use crate::args::{Cpus, Workload};
use crate::children::Children;
use crate::server;

const ROLE: &str = "main";

const MESSAGES: [&str; 3] = [
    "hello",
    "from an unrelated process",
    "through a file of type p",
];

pub fn run(workload: &Workload, cpus: Option<Cpus>) -> Result<()> {
    let dir = PrivateDir::create("fifo-demo")?;
    let shown = dir.path().display().to_string();
    say!(
        ROLE,
        "private directory {shown} (mode 0700, from mkdtemp): only this user can reach a FIFO in it"
    );

    let result = act_one(dir.path(), workload, cpus).and_then(|()| match workload {
        Workload::Text(_) => server::run(dir.path()),
        _ => Ok(()),
    });

    let removed = dir.remove();
    match result {
        Ok(()) => {
            removed?;
            say!(ROLE, "removed {shown}: no FIFO is left, in it or anywhere");
            Ok(())
        }
        Err(e) => {
            match stop::caught() {
                Some(sig) => say!(
                    ROLE,
                    "interrupted by {sig}: stopped the children, removed {shown}"
                ),
                // A child killed by SIGKILL could not remove its FIFO; the directory held it.
                None if removed.is_ok() => {
                    say!(ROLE, "removed {shown}, with whatever a child left in it")
                }
                None => {}
            }
            Err(e)
        }
    }
}

/// One reader, one writer: the rendezvous in open(2), then the data, then EOF.
fn act_one(dir: &Path, workload: &Workload, cpus: Option<Cpus>) -> Result<()> {
    let fifo = dir.join("fifo");
    let path = fifo.display().to_string();
    let mut children = Children::new();

    let mut args = vec!["--path".to_string(), path.clone()];
    args.extend(workload_options(workload));
    let reader = children.spawn("reader", &args)?;
    pin(reader, cpus.map(|c| c.reader))?;
    let wchan = children.wait_until_opening(reader, &fifo)?;
    say!(
        ROLE,
        "reader {reader} is asleep in open(2) (wchan {wchan}): a FIFO's open blocks until the other side opens"
    );

    if let Workload::Text(messages) = workload {
        args.push("--".into()); // a message may start with '-'
        if messages.is_empty() {
            args.extend(MESSAGES.map(String::from));
        } else {
            args.extend(messages.iter().cloned());
        }
    }
    let writer = children.spawn("writer", &args)?;
    pin(writer, cpus.map(|c| c.writer))?;
    children.wait_for(|_| true)
}

/// Pins a child to one CPU (`sched_setaffinity` on its pid), if `--cpus` asked. The
/// reader is pinned while it waits in open(2); the writer within moments of its start,
/// so at most its first few exchanges of thousands run elsewhere.
fn pin(pid: u32, cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    process::pin_to_cpu(pid, cpu).with_context(|| format!("sched_setaffinity({pid}) to CPU {cpu}"))
}

/// The workload options, passed on unchanged to both children.
fn workload_options(workload: &Workload) -> Vec<String> {
    match *workload {
        Workload::Text(_) => Vec::new(),
        Workload::Bulk { count, size } => {
            vec![
                "--count".into(),
                count.to_string(),
                "--size".into(),
                size.to_string(),
            ]
        }
        Workload::Ping { count, size } => {
            vec![
                "--ping".into(),
                count.to_string(),
                "--size".into(),
                size.to_string(),
            ]
        }
    }
}
