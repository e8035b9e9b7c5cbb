//! Act 2 of the default run: PIPE_BUF. Main becomes the server of a "well-known FIFO",
//! as in the classic texts (Stevens, APUE §15.5; Kerrisk, TLPI §44.8): one FIFO at a
//! name every client knows, any number of clients writing requests into it, one server
//! reading them all from a single byte stream.
//!
//! That design stands on one promise of the kernel: a write(2) of at most PIPE_BUF bytes
//! (4096 on Linux) goes into the pipe in one piece, never split, never mixed with the
//! bytes of another writer. A longer write may be cut anywhere and interleaved (not shown
//! here: every line this act writes is within PIPE_BUF).
//!
//! The notes: 对于命名管道，它可以在不相关的进程间也能相互通信 (unrelated processes: here
//! two writers and main, which share only the path) and 数据是先进先出的传输方式 (first in,
//! first out: each writer's lines come out in the order it wrote them).
//!
//! What happens:
//! - main makes `DIR/server` with mkfifo and writes each writer's input into a file: 20
//!   lines of exactly 4000 bytes (`A 0001 AAAA…`), so each line with its newline is one
//!   write(2) of 4001 bytes, within PIPE_BUF;
//! - it writes its pid to `DIR/server.pid`, as `fifo-demo reader` does, so that a writer
//!   waiting for main to open can tell whether main still runs;
//! - it starts writers A and B (`fifo-demo writer --path DIR/server < DIR/A.lines`):
//!   nobody has the FIFO open for reading yet, so their open(2) with O_NONBLOCK fails
//!   with ENXIO, and they try again every 10 ms;
//! - it opens the FIFO for reading (that open sleeps until a writer's next try succeeds);
//! - 40 lines of 4 KB do not fit in the pipe (16 page slots, one line each): main waits until both writers
//!   are asleep in write(2), the pipe full;
//! - main reads one line per read(2), as a server reads one request at a time; each read
//!   makes room for a line, and a writer wakes to fill it, so the writers take turns;
//! - main reads until EOF and checks every line: exactly 4000 bytes, one writer's letter
//!   throughout, each writer's lines in order, none missing. A bad line is an error.
//!
//! Watch for: main's `received A 0001 to A 0016` lines, which show where the writers
//! took turns (it varies from run to run), and the tally at the end.
//!
//! In production: a Unix socket (`std::os::unix::net`) instead of a well-known FIFO. It
//! tells the clients apart and answers each one; with a FIFO every answer needs a FIFO
//! per client, and a request longer than PIPE_BUF can be torn apart.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fifo_demo::fifo::Fifo;
use fifo_demo::io::{self, LineReader};

use crate::children::Children;
use crate::wire::{self, describe};

const ROLE: &str = "main";
/// The two writers, each named by the letter its lines are made of.
const WRITERS: [u8; 2] = [b'A', b'B'];
/// Lines per writer: 40 lines of 4 KB are more than the pipe holds, so writers block.
const LINES: u32 = 20;
/// Bytes per line, without its newline: with it, 4001 bytes, within PIPE_BUF (4096).
const LINE: usize = 4000;
/// `A 0001 `: the writer's letter and the line's number, before the letter repeated.
const HEADER: usize = 7;

/// Line `seq` (from 1) of `writer`: `A 0001 AAAA…`, exactly LINE bytes. A line mixed
/// from two writers' bytes, cut short, or out of order cannot look like this.
fn writer_line(writer: u8, seq: u32) -> Vec<u8> {
    let mut line = format!("{} {seq:04} ", writer as char).into_bytes();
    line.resize(LINE, writer);
    line
}

pub fn run(dir: &Path) -> Result<()> {
    say!(
        ROLE,
        "act 2: PIPE_BUF. main is now the server of a well-known FIFO: two writers at once, main reads"
    );
    let (server, pipe_buf) = make_server(dir)?;
    let inputs = WRITERS
        .iter()
        .map(|&w| write_input(dir, w))
        .collect::<Result<Vec<PathBuf>>>()?;
    let mut children = Children::new();
    let pids = start_writers(&mut children, server.path(), &inputs)?;
    let fd = open_for_reading(server.path())?;
    wait_until_full(&mut children, &pids, server.path(), &fd)?;
    let tally = read_and_check(fd, &pids)?;
    say!(
        ROLE,
        "EOF: both writers have closed their end. Both had opened before main read anything (main waited \
         until both were asleep in write(2)), so EOF could not come between them; a server that runs on \
         keeps a write end open itself, so that it never sees EOF"
    );
    children.wait_for(|_| true)?; // reaps both and says how each ended
    tally.check_complete()?;
    say!(
        ROLE,
        "read {} lines of {LINE} bytes: {} from A and {} from B, each in order; the writers took turns {} time{}; \
         every line whole, none mixed (each write(2) was at most PIPE_BUF = {pipe_buf} bytes)",
        tally.lines,
        tally.due[0] - 1,
        tally.due[1] - 1,
        tally.turns,
        if tally.turns == 1 { "" } else { "s" }
    );

    let shown = server.path().display().to_string();
    server.remove()?; // the FIFO and its pid file
    for input in &inputs {
        std::fs::remove_file(input).with_context(|| format!("remove {}", input.display()))?;
    }
    say!(
        ROLE,
        "removed {shown}, its pid file and the two input files"
    );
    Ok(())
}

/// Our pid in `DIR/server.pid`, then mkfifo `DIR/server`, and PIPE_BUF for it: the
/// longest line that stays whole.
fn make_server(dir: &Path) -> Result<(Fifo, usize)> {
    let server = Fifo::create_published(&dir.join("server"), Some(dir))?;
    say!(
        ROLE,
        "created {} with mkfifo: {}",
        server.path().display(),
        describe(server.path())?
    );
    let pipe_buf = io::pipe_buf_at(server.path())?;
    if LINE + 1 > pipe_buf {
        bail!(
            "PIPE_BUF is only {pipe_buf} bytes here: a line of {LINE} bytes would not stay whole"
        );
    }
    say!(
        ROLE,
        "PIPE_BUF is {pipe_buf} bytes (pathconf): a write(2) of at most that many bytes goes into the FIFO in one piece"
    );
    Ok((server, pipe_buf))
}

/// Writes `DIR/A.lines`: the LINES lines writer A will send, one write(2) each.
fn write_input(dir: &Path, writer: u8) -> Result<PathBuf> {
    let path = dir.join(format!("{}.lines", writer as char));
    let mut text = Vec::with_capacity((LINE + 1) * LINES as usize);
    for seq in 1..=LINES {
        text.extend_from_slice(&writer_line(writer, seq));
        text.push(b'\n');
    }
    OpenOptions::new()
        .write(true)
        .create_new(true) // never reuse a file someone else put there
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(&text))
        .with_context(|| format!("write {}", path.display()))?;
    let c = writer as char;
    say!(
        ROLE,
        "wrote {}: {LINES} lines of {LINE} bytes, \"{c} 0001 {c}{c}{c}…\" to \"{c} {LINES:04} {c}{c}{c}…\"",
        path.display()
    );
    Ok(path)
}

/// Starts writer A and B, each reading its input file. Nobody has the FIFO open for
/// reading yet: each writer's open(2) with O_NONBLOCK fails with ENXIO, and it tries again.
fn start_writers(children: &mut Children, fifo: &Path, inputs: &[PathBuf]) -> Result<Vec<u32>> {
    let args = ["--path".to_string(), fifo.display().to_string()];
    let mut pids = Vec::new();
    for input in inputs {
        pids.push(children.spawn_with_input("writer", &args, input)?);
    }
    say!(
        ROLE,
        "writers A {} and B {} started: while nobody has {} open for reading, their open(2) with O_NONBLOCK \
         fails with ENXIO, and they try again every 10 ms",
        pids[0],
        pids[1],
        fifo.display()
    );
    Ok(pids)
}

/// Opens the FIFO for reading. This open sleeps until a writer opens the FIFO for
/// writing: a writer's next try, within 10 ms.
fn open_for_reading(fifo: &Path) -> Result<OwnedFd> {
    let shown = fifo.display();
    let fd = io::open_for_reading(fifo, &wire::stop)?;
    say!(
        ROLE,
        "opened {shown} for reading: the writers' next open(2) succeeds, and they start writing"
    );
    Ok(fd)
}

/// Waits, before reading anything, until both writers are asleep in write(2): the pipe
/// is full. 40 lines cannot fit, so each writer is left with lines it cannot write yet.
fn wait_until_full(children: &mut Children, pids: &[u32], fifo: &Path, fd: &OwnedFd) -> Result<()> {
    let mut wchan = String::new();
    for &pid in pids {
        wchan = children.wait_until_writing(pid, fifo)?;
    }
    let capacity = io::pipe_capacity(fd)?;
    say!(
        ROLE,
        "writers A and B are both asleep in write(2) (wchan {wchan}): the pipe is full. Its capacity is {capacity} bytes \
         (F_GETPIPE_SZ), counted in 16 page-sized slots: each {}-byte write takes a slot of its own, so 16 lines \
         fill it, and {} lines do not fit",
        LINE + 1,
        LINES as usize * WRITERS.len()
    );
    say!(
        ROLE,
        "reading one line per read(2), as a server reads one request at a time: each read makes room \
         for a line, and a writer asleep in write(2) wakes to fill it"
    );
    Ok(())
}

/// What main has read so far.
struct Tally {
    lines: usize,
    /// The number of the line due next from each writer (from 1).
    due: [u32; 2],
    /// How many times the next line came from the other writer.
    turns: usize,
    /// The run of lines from one writer being read: (writer, first number).
    run: Option<(usize, u32)>,
}

/// Reads lines until EOF, checking each as it comes; narrates each run of lines from
/// one writer.
fn read_and_check(fd: OwnedFd, pids: &[u32]) -> Result<Tally> {
    let mut tally = Tally {
        lines: 0,
        due: [1; 2],
        turns: 0,
        run: None,
    };
    let mut lines = LineReader::with_capacity(fd, LINE + 1); // one line per read(2)
    while let Some(line) = lines.next_line(&wire::stop).context("read the FIFO")? {
        tally.lines += 1;
        let w = check_line(tally.lines, line, &tally.due)?;
        match tally.run {
            Some((current, _)) if current == w => {}
            Some((other, first)) => {
                tally.say_run(other, first, pids);
                tally.turns += 1;
                tally.run = Some((w, tally.due[w]));
            }
            None => tally.run = Some((w, tally.due[w])),
        }
        tally.due[w] += 1;
    }
    if let Some((w, first)) = tally.run {
        tally.say_run(w, first, pids);
    }
    Ok(tally)
}

impl Tally {
    /// `received A 0001 to A 0016: 16 whole lines from writer A 4242`
    fn say_run(&self, w: usize, first: u32, pids: &[u32]) {
        let (c, last, pid) = (WRITERS[w] as char, self.due[w] - 1, pids[w]);
        match last - first + 1 {
            1 => say!(
                ROLE,
                "received {c} {first:04}: 1 whole line from writer {c} {pid}"
            ),
            n => say!(
                ROLE,
                "received {c} {first:04} to {c} {last:04}: {n} whole lines from writer {c} {pid}"
            ),
        }
    }

    /// At EOF: every line of every writer must have come.
    fn check_complete(&self) -> Result<()> {
        for (w, &due) in self.due.iter().enumerate() {
            if due <= LINES {
                let c = WRITERS[w] as char;
                bail!(
                    "line \"{c} {due:04}\" never arrived: writer {c} sent {LINES} lines, main read {}",
                    due - 1
                );
            }
        }
        Ok(())
    }
}

/// Checks that `line` (the `n`th read) is exactly the line due next from one writer, and
/// returns which writer. Any other line is an error that names it.
fn check_line(n: usize, line: &[u8], due: &[u32; 2]) -> Result<usize> {
    let start = String::from_utf8_lossy(&line[..line.len().min(HEADER + 3)]);
    let Some(w) = WRITERS.iter().position(|&c| line.first() == Some(&c)) else {
        bail!("line {n} read starts {start:?}: it is from neither writer (mixed or corrupted)");
    };
    let c = WRITERS[w] as char;
    if due[w] > LINES {
        bail!("line {n} read ({start:?}…) is one more than the {LINES} lines writer {c} sent");
    }
    let want = writer_line(WRITERS[w], due[w]);
    if line.len() != LINE {
        bail!(
            "line {n} read ({start:?}…) is {} bytes, not {LINE}: a line was split or mixed with the other writer's",
            line.len()
        );
    }
    if line[..HEADER] != want[..HEADER] {
        bail!(
            "line {n} read is {start:?}…, but \"{c} {:04}\" was due: a line of writer {c} is missing or out of order",
            due[w]
        );
    }
    if let Some(at) = line.iter().zip(&want).position(|(got, want)| got != want) {
        bail!(
            "line {n} read ({:?}) has {:?} at byte {at}, not {c}: mixed with the other writer's bytes",
            String::from_utf8_lossy(&line[..HEADER - 1]),
            line[at] as char
        );
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_line_accepts_only_the_line_due() {
        let due = [3, 1];
        assert_eq!(check_line(5, &writer_line(b'A', 3), &due).unwrap(), 0);
        assert_eq!(check_line(5, &writer_line(b'B', 1), &due).unwrap(), 1);

        let error = |line: &[u8]| format!("{:#}", check_line(5, line, &due).unwrap_err());
        let mut mixed = writer_line(b'A', 3);
        mixed[2500..].fill(b'B'); // the tail of a B line after the head of an A line
        assert!(
            error(&mixed).contains("has 'B' at byte 2500"),
            "{}",
            error(&mixed)
        );
        assert!(error(&writer_line(b'A', 3)[..3999]).contains("is 3999 bytes"));
        assert!(error(&writer_line(b'A', 4)).contains("\"A 0003\" was due"));
        assert!(error(b"x 0001").contains("from neither writer"));
    }

    #[test]
    fn a_missing_line_is_named() {
        let tally = Tally {
            lines: 39,
            due: [LINES + 1, LINES],
            turns: 1,
            run: None,
        };
        let e = tally.check_complete().unwrap_err().to_string();
        assert!(e.contains("line \"B 0020\" never arrived"), "{e}");
    }
}
