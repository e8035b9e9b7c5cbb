//! The `duplex` flavour: a request and a response, so two pipes.
//!
//! 管道传输数据是单向的，如果想相互通信，我们需要创建两个管道才行: a pipe is one-way,
//! so talking both ways takes two, one per direction. The parent sends each message
//! as a request down `to_child`; the child answers it in capitals up `to_parent`.
//! Each process closes the two ends it does not use, so each pipe has exactly one
//! writer and one reader, and each EOF arrives.

use anyhow::{Context, Result, bail};
use nix::unistd::Pid;
use pipe_demo::fork::{self, Forked, TwoWay};
use pipe_demo::pipe::{self, write_all};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::family::{exit_child, reap};
use crate::say;
use crate::summary::Summary;

const PARENT: &str = "parent";
const CHILD: &str = "child";
const DEFAULT_REQUESTS: [&str; 3] = ["hello", "how are you", "goodbye"];
/// How long a child that got EOF looks for its parent dead or asleep.
const DEATH_LOOK: Duration = Duration::from_secs(2);

pub fn run(messages: &[String]) -> Result<()> {
    let requests: Vec<String> = if messages.is_empty() {
        DEFAULT_REQUESTS.iter().map(|m| m.to_string()).collect()
    } else {
        messages.to_vec()
    };
    let down = pipe::create().context("pipe2 (parent → child)")?;
    let up = pipe::create().context("pipe2 (child → parent)")?;
    say!(
        PARENT,
        "two pipes: one carries requests down to the child, the other replies back up"
    );

    // Each side keeps one end of each pipe: the parent writes requests and reads
    // replies, the child the other way round.
    // SAFETY: this program is single-threaded.
    match unsafe { fork::fork_both_ways(down, up) }.context("fork")? {
        Forked::Child {
            parent,
            ends: TwoWay { to_peer, from_peer },
        } => exit_child(answer_requests(from_peer, to_peer, parent).map(|summary| summary.print())),
        Forked::Parent {
            child,
            ends: TwoWay { to_peer, from_peer },
        } => {
            say!(
                PARENT,
                "forked the child, pid {child}; each side closed the two ends it does not use"
            );
            let asked = ask(to_peer, from_peer, &requests);
            let reaped = reap(PARENT, child, "child");
            let summary = asked?;
            reaped?;
            summary.print();
            Ok(())
        }
    }
}

/// The parent: one request, then wait for its reply, for each message.
fn ask(down: OwnedFd, up: OwnedFd, requests: &[String]) -> Result<Summary> {
    let started = Instant::now();
    let mut replies_in = BufReader::new(File::from(up));
    let mut reply = String::new();
    let mut bytes = 0;
    for request in requests {
        send_line(&down, request).context("sending a request")?;
        say!(
            PARENT,
            "sent {request:?} ({} bytes) down the first pipe",
            request.len()
        );
        reply.clear();
        if replies_in
            .read_line(&mut reply)
            .context("reading a reply")?
            == 0
        {
            bail!("the child closed its pipe before answering {request:?}");
        }
        let reply = reply.trim_end_matches('\n');
        say!(
            PARENT,
            "received {reply:?} ({} bytes) up the second pipe",
            reply.len()
        );
        bytes += request.len() as u64;
    }
    drop(down);
    say!(
        PARENT,
        "closed the request pipe: the child reads EOF and finishes"
    );
    let mut rest = String::new();
    if replies_in.read_line(&mut rest).context("waiting for EOF")? != 0 {
        bail!("the child sent more than it was asked for: {rest:?}");
    }
    say!(
        PARENT,
        "EOF on the reply pipe: the child has closed its end"
    );
    Ok(Summary {
        role: PARENT,
        messages: requests.len() as u64,
        bytes,
        elapsed: started.elapsed(),
        extra: String::new(),
    })
}

/// The child: answer each request line until EOF, and tell the parent's EOF from
/// its death.
fn answer_requests(down: OwnedFd, up: OwnedFd, parent: Pid) -> Result<Summary> {
    let started = Instant::now();
    let mut requests_in = BufReader::new(File::from(down));
    let mut request = String::new();
    let (mut count, mut bytes) = (0, 0);
    loop {
        request.clear();
        if requests_in
            .read_line(&mut request)
            .context("reading a request")?
            == 0
        {
            break;
        }
        if !request.ends_with('\n') {
            bail!("the request pipe ended in the middle of a line: {request:?}");
        }
        let text = request.trim_end_matches('\n');
        say!(
            CHILD,
            "received {text:?} ({} bytes), answering up the second pipe",
            text.len()
        );
        send_line(&up, &text.to_uppercase()).context("sending a reply")?;
        count += 1;
        bytes += text.len() as u64;
    }
    if fork::parent_died(parent, "pipe_read", DEATH_LOOK) {
        bail!(
            "EOF on the request pipe because the parent, pid {parent}, died (I am no \
             longer its child): the kernel closed its end, so I stop after {count} requests"
        );
    }
    say!(
        CHILD,
        "EOF on the request pipe: the parent is done; closing my reply end"
    );
    Ok(Summary {
        role: CHILD,
        messages: count,
        bytes,
        elapsed: started.elapsed(),
        extra: String::new(),
    })
}

/// One message, one line: the text and its newline in one buffer, so one write(2)
/// carries the whole line (always, up to PIPE_BUF = 4096 bytes; a longer one may
/// reach the reader in pieces, which `read_line` joins again).
fn send_line(end: &OwnedFd, text: &str) -> Result<()> {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    Ok(write_all(end, line.as_bytes())?)
}
