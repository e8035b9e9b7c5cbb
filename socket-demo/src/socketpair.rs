//! pair: socketpair(2), two connected Unix stream sockets, between a parent and its child.
//!
//! Like a pipe, a socketpair has no name: another process gets it only as file descriptors,
//! inherited across fork(2) (as here: fork copies the parent's fds) or passed over a Unix
//! socket (SCM_RIGHTS, as `fdpass` does with a file). Unlike a pipe, each end reads AND writes: one
//! socketpair is a channel both ways at once (full duplex), where pipe-demo's `duplex`
//! needs two pipes. Each direction has its own kernel buffer, so both sides can write at
//! the same time. But a buffer is finite, and counts more than the bytes (a short line
//! costs some 768 bytes of it): two sides that each write everything before reading would
//! both end up asleep in write(2), each waiting for the other to read.
//!
//! The run: the child greets the parent while the parent sends its messages; the child
//! answers each message in capitals on the same socket. The parent reads the answers while
//! it is still sending: poll(2) tells it whether the socket has an answer to read, room to
//! write, or both. Then it closes only its sending direction (shutdown(SHUT_WR), a
//! half-close a pipe cannot express): the child sees EOF, and the parent still reads the
//! last answers.
//!
//! Notes (管道): 管道传输数据是单向的，如果想相互通信，我们需要创建两个管道才行 (a pipe is
//! one-way: to talk both ways takes two pipes). One socketpair is enough.
//! Run: `cargo run -p socket-demo -- pair [MESSAGE...]` (no reader or writer role: it has
//! no name to meet at).
//! In production: `std::os::unix::net::UnixStream::pair()`, e.g. to talk with a child.

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::wait::WaitStatus;
use nix::unistd::{Pid, getppid};
use socket_demo::pair;

use crate::signals::{self, TICK, wait_ready};
use crate::stream::{LineReader, shown, write_all};
use crate::workload::Summary;

const PARENT: &str = "parent";
const CHILD: &str = "child";

pub fn run(messages: &[String]) -> Result<()> {
    let messages: Vec<String> = if messages.is_empty() {
        crate::demo::DEFAULT_MESSAGES.map(String::from).to_vec()
    } else {
        messages.to_vec()
    };
    // SOCK_CLOEXEC: a program either side might exec later should not inherit them.
    let (parent_end, child_end) = pair::stream_pair().context("socketpair")?;
    for end in [&parent_end, &child_end] {
        socket_demo::wait::set_timeouts(end, TICK).context("setsockopt SO_RCVTIMEO/SO_SNDTIMEO")?;
    }
    say!(
        PARENT,
        "socketpair(2) gave two connected sockets, fd {} and fd {}: no name, no file, so \
         another process gets them only as fds (here: a child, by fork)",
        parent_end.as_raw_fd(),
        child_end.as_raw_fd()
    );

    let (mine, its) = (parent_end.as_raw_fd(), child_end.as_raw_fd());
    // A line still in our stdout buffer would be copied into the child and printed twice.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: this program is single-threaded, so the child cannot inherit a lock (stdout's,
    // the allocator's) that some other thread held at the moment of fork.
    match unsafe { pair::fork_child() }.context("fork")? {
        None => {
            drop(parent_end); // the parent's end is the parent's: keep only mine
            exit_child(child(child_end, getppid()))
        }
        Some(child) => {
            drop(child_end);
            say!(
                PARENT,
                "fork(2) made the child, pid {child}: it keeps fd {its} and closes its copy of \
                 fd {mine}; I close my copy of fd {its}"
            );
            let talked = parent(parent_end, &messages);
            // Whatever happened, wait for the child (our end is closed by now, so it is not
            // waiting for us).
            let reaped = reap(child);
            let summary = talked?;
            reaped?;
            summary.print(PARENT);
            Ok(())
        }
    }
}

/// The parent: sends its messages and reads the answers as they come, on one socket.
fn parent(socket: UnixStream, messages: &[String]) -> Result<Summary> {
    let mut summary = Summary::start();
    let mut answers = LineReader::new(&socket);
    let mut heard = 0;
    let mut line = Vec::new();
    for (i, text) in messages.iter().enumerate() {
        line.clear();
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        let mut rest = &line[..];
        while !rest.is_empty() {
            // Sleep until there is an answer to read or room to write, whichever comes
            // first. Reading whenever we can is what keeps the child from blocking.
            let ready = wait_ready(&socket, PollFlags::POLLIN | PollFlags::POLLOUT)?;
            if ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                let before = heard;
                heard += read_answers(&mut answers)?;
                if before == 0 && heard > 0 {
                    say!(
                        PARENT,
                        "that came in while I still have {} of my {} messages to send: both \
                         directions move at once",
                        messages.len() - i,
                        messages.len()
                    );
                }
            }
            if ready.intersects(PollFlags::POLLOUT | PollFlags::POLLERR) {
                let n = send_some(&socket, rest)
                    .with_context(|| format!("sending {}", shown(text.as_bytes())))?;
                rest = &rest[n..];
            }
        }
        say!(
            PARENT,
            "sent {} ({} bytes)",
            shown(text.as_bytes()),
            text.len()
        );
        summary.count(text.len());
    }
    socket.shutdown(Shutdown::Write).context("shutdown")?;
    say!(
        PARENT,
        "shutdown(SHUT_WR): I send no more, the child will see EOF, and I can still read"
    );
    while let Some(answer) = answers.next()? {
        received(answer);
        heard += 1;
    }
    // The child's greeting, and one answer per message.
    if heard != messages.len() + 1 {
        bail!(
            "the child sent {heard} lines, expected {}: is it gone?",
            messages.len() + 1
        );
    }
    say!(PARENT, "EOF: the child has closed its end");
    Ok(summary)
}

/// One send(2) that does not wait (MSG_DONTWAIT): poll said there is room, but maybe not
/// for all of `buf`; the kernel takes what fits, and we go back to poll for the rest.
fn send_some(socket: &UnixStream, buf: &[u8]) -> Result<usize> {
    match pair::send_nowait(socket, buf) {
        Ok(n) => Ok(n),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
            let e = Errno::from_raw(e.raw_os_error().unwrap_or(0));
            bail!("the child is gone: send failed with {e} (nobody reads the other end)")
        }
        Err(e) => Err(e).context("send"),
    }
}

/// One read(2) of the child's answers, and each whole line it completed. Returns how many.
fn read_answers(answers: &mut LineReader<&UnixStream>) -> Result<usize> {
    if answers.read_more()? == 0 {
        bail!("the child closed its end before it answered everything: is it gone?");
    }
    let mut lines = 0;
    while let Some(answer) = answers.next_line() {
        received(answer);
        lines += 1;
    }
    Ok(lines)
}

fn received(answer: &[u8]) {
    say!(
        PARENT,
        "received {} ({} bytes) on the same fd I write to",
        shown(answer),
        answer.len()
    );
}

/// The child: greet the parent without waiting for it, then answer each line in capitals.
fn child(socket: UnixStream, parent: Pid) -> Result<()> {
    let mut summary = Summary::start();
    let greeting = format!("hello parent {parent}, from your child");
    write_all(&socket, format!("{greeting}\n").as_bytes(), "parent")?;
    say!(
        CHILD,
        "sent {greeting:?} without waiting to read anything: the parent may be writing to \
         me on the same socket at the same time"
    );
    let mut requests = LineReader::new(&socket);
    let mut answer = Vec::new();
    while let Some(request) = requests.next()? {
        let text = String::from_utf8_lossy(request).into_owned();
        say!(
            CHILD,
            "received {} ({} bytes)",
            shown(request),
            request.len()
        );
        answer.clear();
        answer.extend_from_slice(text.to_uppercase().as_bytes());
        answer.push(b'\n');
        write_all(&socket, &answer, "parent").context("answering")?;
        say!(
            CHILD,
            "answered {} on the same fd",
            shown(&answer[..answer.len() - 1])
        );
        summary.count(text.len());
    }
    parent_still_there(&socket, parent)?;
    say!(
        CHILD,
        "EOF: the parent will send no more; exiting closes my end, the parent's EOF"
    );
    summary.print(CHILD);
    Ok(())
}

/// At EOF: did the parent half-close (shutdown(SHUT_WR), its way of saying "done"), or is
/// its end closed altogether? A process that dies, SIGKILL included, has its sockets closed
/// by the kernel: both directions at once, which poll(2) reports as POLLHUP. A half-close
/// only shuts our reading side (POLLRDHUP). The parent keeps its end open until it has read
/// our EOF, so POLLHUP here means it is gone.
fn parent_still_there(socket: &UnixStream, parent: Pid) -> Result<()> {
    if pair::closed_both_ways(socket).context("poll")? {
        bail!(
            "the parent (pid {parent}) closed its end of the socketpair without \
             shutdown(SHUT_WR) first (POLLHUP: both directions closed): it died before it \
             had sent everything; a socketpair has no name, so nothing is left to remove"
        );
    }
    Ok(())
}

/// Ends the child with the outcome of its work. It must not return into `main`: the rest of
/// `main` is the parent's.
fn exit_child(outcome: Result<()>) -> ! {
    let code = match (outcome, signals::caught()) {
        (Ok(()), _) => 0,
        (Err(_), Some(sig)) => {
            say!(CHILD, "interrupted by {sig}: nothing of mine to remove");
            let _ = signals::die_of(sig);
            1
        }
        (Err(e), None) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("error: {e:#}\n").as_bytes(),
            );
            1
        }
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(code)
}

/// Waits for the child (so it does not linger as a zombie), and says how it ended.
fn reap(child: Pid) -> Result<()> {
    // waitpid on this child only; EINTR (Ctrl+C: the child got it too, same process
    // group) does not stop the wait.
    loop {
        match pair::wait_child(child).context("waitpid")? {
            WaitStatus::Exited(_, 0) => {
                say!(PARENT, "reaped child {child}: exited with status 0");
                return Ok(());
            }
            WaitStatus::Exited(_, code) => {
                say!(PARENT, "reaped child {child}: exited with status {code}");
                bail!("the child (pid {child}) failed with exit status {code}");
            }
            WaitStatus::Signaled(_, sig, _) => {
                say!(PARENT, "reaped child {child}: killed by {sig}");
                bail!("the child (pid {child}) was killed by {sig}");
            }
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parent that died with nothing of ours unread closes both directions at once
    /// (POLLHUP): the child must not take that EOF for the half-close that ends a run.
    #[test]
    fn a_closed_end_is_told_from_a_half_close() {
        let (child_end, parent_end) = UnixStream::pair().unwrap();
        parent_end.shutdown(Shutdown::Write).unwrap();
        assert!(parent_still_there(&child_end, Pid::from_raw(1)).is_ok());
        drop(parent_end);
        let err = parent_still_there(&child_end, Pid::from_raw(1)).unwrap_err();
        assert!(err.to_string().contains("POLLHUP"), "{err}");
    }
}
