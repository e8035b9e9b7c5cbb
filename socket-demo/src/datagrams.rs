//! Datagrams (Unix datagram sockets, UDP): messages, bulk and ping.
//!
//! A datagram socket keeps message boundaries: one send(2) is one datagram, and one
//! recv(2) returns exactly one datagram, however many wait in the queue: whole, if the
//! buffer holds it (the rest of a longer one is thrown away, MSG_TRUNC, which the reader
//! checks for). So a text
//! message is the text's bytes, and the end is one zero-length datagram (DESIGN §3).
//!
//! There is no connection. The reader learns who sent a datagram from each recv (UDP: an
//! address and port; Unix: the credentials the kernel attaches, SCM_CREDENTIALS), and
//! nothing on the socket tells it when a writer dies: it watches the sender's pid or port
//! instead (`watch_sender`), and the writer the reader's bound socket (`watch_reader`). The two families differ in flow control:
//! - Unix: the kernel queues at most `net.unix.max_dgram_qlen` + 1 datagrams for a reader
//!   (the kernel's default is 10; systemd sets 512; see /proc/sys/net/unix/max_dgram_qlen),
//!   then puts the writer to sleep. Nothing is lost.
//! - UDP: nothing the reader does makes the writer wait (only its own send buffer can).
//!   When the reader's receive buffer is full, the kernel drops the datagram and tells
//!   neither side (it only counts it: the `drops` column of /proc/net/udp,
//!   `RcvbufErrors` in /proc/net/snmp). So the UDP bulk writer waits for the
//!   reader's acknowledgement every `window` datagrams (flow control of our own), and the
//!   reader counts what is missing by the sequence numbers, and says so.
//!
//! Notes (消息队列): 在发送数据时，会分成一个一个独立的数据块 (the data is sent as separate
//! blocks): a datagram socket does that too, with no queue object to create and remove.
//! Run: `cargo run -p socket-demo -- unix-dgram` (or `udp`, `udp --count 1000 --size 1000`).
//! Watch for: "3 datagrams and the zero-length end: 4 recv(2) calls"; `lost=` and
//! `reordered=` in the bulk summary; `socket-demo udp $(seq 1000)`, where the reader reads
//! as slowly as it prints, and UDP drops what its receive buffer cannot hold.
//! In production: reliability over UDP is a protocol to design (or take QUIC); for local
//! messages, a SOCK_SEQPACKET Unix socket keeps boundaries and has a connection.

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::socket::UnixCredentials;
use socket_demo::dgram::Gone;

use crate::args::Meet;
use crate::inet_words as inet;
use crate::meeting as unix;
use crate::signals::{self, PeerGone, TICK, WriterGone, block, block_at_most};
use crate::stream::{each_message, shown};
use crate::workload::{Summary, check_body, pattern, sequence, stamp};

const READER: &str = "reader";
const WRITER: &str = "writer";

/// How long a workload side waits for a datagram from a peer it knows is there, before it
/// concludes the peer is gone or the datagram was lost.
const QUIET: Duration = Duration::from_secs(5);
/// How long the UDP bulk writer waits for an acknowledgement before it goes on without.
const ACK_PATIENCE: Duration = Duration::from_secs(5);
/// What the UDP bulk writer may have in flight: well inside the reader's receive buffer
/// (net.core.rmem_default, 208 KiB), which counts each datagram at its "truesize": the
/// kernel's buffer for it, headers and bookkeeping included, rounded up to a power of two.
const WINDOW_BYTES: usize = 128 * 1024;
const OVERHEAD: usize = 1024;

/// A datagram socket of either family.
pub enum Dgram {
    Unix(UnixDatagram),
    Udp(UdpSocket),
}

/// Who sent a datagram.
pub enum Sender {
    Unix {
        cred: Option<UnixCredentials>,
        path: Option<PathBuf>,
    },
    Inet(SocketAddr),
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sender::Unix { cred, path } => {
                match cred {
                    Some(c) => write!(
                        f,
                        "pid {} uid {} gid {} (SCM_CREDENTIALS, checked by the kernel: a sender \
                         may state only its own ids, unless it has CAP_SYS_ADMIN, CAP_SETUID or \
                         CAP_SETGID, as root has)",
                        c.pid(),
                        c.uid(),
                        c.gid()
                    )?,
                    None => write!(f, "an unknown process")?,
                }
                match path {
                    Some(p) => write!(f, ", bound to {}", p.display()),
                    None => write!(f, ", unbound (no address to answer to)"),
                }
            }
            Sender::Inet(addr) => {
                write!(f, "{addr} (UDP tells an address and port, not a process)")
            }
        }
    }
}

impl Dgram {
    /// Every wait on this socket comes back after a `TICK` to look at the Ctrl+C flag.
    pub fn set_timeouts(&self) -> Result<()> {
        match self {
            Dgram::Unix(s) => socket_demo::wait::set_timeouts(s, TICK),
            Dgram::Udp(s) => socket_demo::wait::set_timeouts(s, TICK),
        }
        .context("setsockopt SO_RCVTIMEO/SO_SNDTIMEO")
    }

    /// The reader's side: ask the kernel to attach each Unix datagram's sender.
    pub fn want_credentials(&self) -> Result<()> {
        if let Dgram::Unix(s) = self {
            socket_demo::dgram::pass_credentials(s).context("setsockopt SO_PASSCRED")?;
        }
        Ok(())
    }

    /// The text reader's buffer. UDP: room for the largest UDP datagram of either IP
    /// version. Unix: room for the largest datagram a default send buffer lets out; a
    /// sender with a bigger SO_SNDBUF can send more, and `recv_from` reports the cut.
    fn max_size(&self) -> usize {
        match self {
            Dgram::Unix(_) => crate::args::max_unix_datagram(),
            Dgram::Udp(_) => crate::args::MAX_UDP_PAYLOAD,
        }
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Dgram::Unix(s) => s.send(buf),
            Dgram::Udp(s) => s.send(buf),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Dgram::Unix(s) => s.recv(buf),
            Dgram::Udp(s) => s.recv(buf),
        }
    }

    /// One datagram and who sent it. For Unix, recvmsg(2) with room for the
    /// SCM_CREDENTIALS control message the kernel adds once SO_PASSCRED is on.
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Sender)> {
        match self {
            Dgram::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, Sender::Inet(a))),
            Dgram::Unix(s) => {
                // The datagram was longer than the buffer: the library refuses it
                // (MSG_TRUNC), never hands out a cut message as whole.
                let (n, from) = socket_demo::dgram::recv_from(s, buf)?;
                Ok((
                    n,
                    Sender::Unix {
                        cred: from.cred,
                        path: from.path,
                    },
                ))
            }
        }
    }

    /// connect(2) on a datagram socket: from now on send(2) goes to `to`, and the kernel
    /// delivers us datagrams from `to` only. This is how the reader takes one writer.
    fn connect_to(&self, to: &Sender) -> Result<()> {
        match (self, to) {
            (Dgram::Udp(s), Sender::Inet(addr)) => s.connect(addr).context("connect"),
            (Dgram::Unix(s), Sender::Unix { path: Some(p), .. }) => {
                socket_demo::dgram::connect(s, p)
                    .with_context(|| format!("connect {}", p.display()))
            }
            _ => bail!(
                "the writer's socket is unbound: it has no address to answer to \
                 (bind the writer's socket to a file first)"
            ),
        }
    }

    /// Why datagrams can go missing on this socket.
    fn why_lost(&self) -> &'static str {
        match self {
            Dgram::Udp(_) => {
                "UDP dropped them (my receive buffer was full while I was busy printing) \
                 and told nobody"
            }
            // The kernel makes a Unix datagram writer wait instead: another process
            // reading this socket is the likely thief.
            Dgram::Unix(_) => "they were lost on the way (did another process read them?)",
        }
    }

    /// UDP: an ICMP "port unreachable" that came back for an earlier datagram.
    fn pending_error(&self) -> io::Result<()> {
        let pending = match self {
            Dgram::Unix(s) => s.take_error()?,
            Dgram::Udp(s) => s.take_error()?,
        };
        pending.map_or(Ok(()), Err)
    }
}

/// How long a reader waits on after the sender it knows is gone: another process may send
/// next (socat and nc exit after their datagrams, and cannot send the zero-length end).
const SENDER_GRACE: Duration = Duration::from_millis(1500);

/// Nothing tells a datagram socket that its sender died, so the reader watches the sender
/// by what the kernel keeps: for a Unix datagram, the pid the kernel put in its
/// SCM_CREDENTIALS; for UDP from this machine, the sender's port in the kernel's socket
/// table. Assumes one writer at a time. A pid names a process only until it is reaped: if
/// another process got it since, it would pass for the writer (a pidfd would not; not
/// shown here). A UDP sender on another machine cannot be watched at all.
fn watch_sender(sender: &Sender) {
    match sender {
        Sender::Unix {
            cred: Some(cred),
            path,
        } => {
            let (pid, path) = (cred.pid(), path.clone());
            signals::watch_peer(SENDER_GRACE, move || {
                let how = process_gone(pid)?;
                let left = path.as_deref().map(unix::left_behind).unwrap_or_default();
                Some(format!(
                    "the writer, pid {pid} (from the SCM_CREDENTIALS on its datagrams, which \
                     the kernel fills in or checks), is gone: {how}, and nothing came for {SENDER_GRACE:?} \
                     after{left}"
                ))
            });
        }
        Sender::Inet(addr) => {
            let addr = *addr;
            signals::watch_peer(SENDER_GRACE, move || {
                (inet::udp_port_open(addr) == Some(false)).then(|| {
                    format!(
                        "the writer at {addr} is gone: no socket on this machine has UDP port \
                         {} open any more (/proc/net/udp), and nothing came for \
                         {SENDER_GRACE:?} after",
                        addr.port()
                    )
                })
            });
        }
        Sender::Unix { cred: None, .. } => {}
    }
}

/// How we know process `pid` is gone, if it is, in words.
fn process_gone(pid: i32) -> Option<String> {
    Some(match socket_demo::dgram::process_gone(pid)? {
        Gone::NoSuchProcess => format!("kill({pid}, 0) finds no such process"),
        Gone::Zombie => format!("it has exited (/proc/{pid}/stat says Z, a zombie)"),
    })
}

/// The writer's side: nothing tells it that the reader died either (until a send(2) fails),
/// so while it waits (for standard input, an answer, room in the queue) it watches the
/// reader's socket in the kernel's tables: a Unix one bound at `meet`'s path
/// (/proc/net/unix), a UDP port on this machine (/proc/net/udp).
pub fn watch_reader(meet: &Meet) {
    match meet.clone() {
        Meet::Path(path) => signals::watch_peer(Duration::ZERO, move || {
            (!unix::is_live(&path)).then(|| {
                format!(
                    "the reader is gone: no socket is bound at {} any more (/proc/net/unix, \
                     the kernel's list of bound Unix sockets, has none){}",
                    path.display(),
                    unix::left_behind(&path)
                )
            })
        }),
        Meet::Addr(addr) => signals::watch_peer(Duration::ZERO, move || {
            (inet::udp_port_open(addr) == Some(false)).then(|| {
                format!(
                    "the reader is gone: no socket on this machine has UDP port {} open any \
                     more (/proc/net/udp)",
                    addr.port()
                )
            })
        }),
    }
}

/// Sends one datagram; `to` names the reader for the error messages.
fn send_one(socket: &Dgram, buf: &[u8], to: &str) -> Result<()> {
    match block(|| socket.send(buf))? {
        Ok(_) => Ok(()),
        Err(e) => Err(refused(socket, e, to)),
    }
}

/// ECONNREFUSED on a datagram socket: nobody has the reader's address any more (Unix), or
/// an ICMP "port unreachable" came back for an earlier datagram (UDP).
fn refused(socket: &Dgram, e: io::Error, to: &str) -> anyhow::Error {
    let (flavour, option) = match socket {
        Dgram::Unix(_) => ("unix-dgram", "--path"),
        Dgram::Udp(_) => ("udp", "--addr"),
    };
    if e.kind() == io::ErrorKind::ConnectionRefused {
        anyhow::anyhow!(
            "send to {to}: nobody is reading there (ECONNREFUSED): the reader is gone, or was \
             never started (socket-demo reader {flavour} {option} {to})"
        )
    } else if e.raw_os_error() == Some(libc::EMSGSIZE) {
        anyhow::anyhow!(
            "send to {to}: too big for one datagram (EMSGSIZE): a {flavour} datagram carries \
             at most {} bytes here",
            match socket {
                Dgram::Unix(_) => crate::args::max_unix_datagram(),
                Dgram::Udp(_) => crate::args::MAX_UDP_SIZE,
            }
        )
    } else {
        anyhow::Error::new(e).context(format!("send to {to}"))
    }
}

/// The end of the conversation: one zero-length datagram.
fn send_end(socket: &Dgram, to: &str) -> Result<()> {
    send_one(socket, &[], to)?;
    // A UDP writer learns that nobody listens only from an ICMP error, which the kernel
    // keeps on the socket until asked: ask, before saying we are done.
    socket.pending_error().map_err(|e| refused(socket, e, to))?;
    say!(
        WRITER,
        "sent the end: one zero-length datagram (a datagram socket has no EOF)"
    );
    Ok(())
}

/// Writer, text: one send(2) per message, then the zero-length end.
pub fn send_messages(socket: &Dgram, messages: &[String], to: &str) -> Result<Summary> {
    let mut summary = Summary::start();
    each_message(messages, |text| {
        if text.is_empty() {
            say!(
                WRITER,
                "skipped an empty line: a zero-length datagram would mean the end"
            );
            return Ok(());
        }
        send_one(socket, text.as_bytes(), to)
            .with_context(|| format!("sending {}", shown(text.as_bytes())))?;
        say!(
            WRITER,
            "sent {} ({} bytes), one send(2), one datagram",
            shown(text.as_bytes()),
            text.len()
        );
        summary.count(text.len());
        Ok(())
    })?;
    send_end(socket, to)?;
    Ok(summary)
}

/// Reader, text: prints each datagram, one recv(2) each, until the zero-length one.
/// `expected`: in the default run, how many messages the writer was given. UDP drops
/// datagrams its receiver has no room for, and tells nobody: only counting shows it.
pub fn receive_messages(socket: &Dgram, expected: Option<u64>) -> Result<Summary> {
    let mut buf = vec![0u8; socket.max_size() + 1];
    let mut summary = Summary::start();
    let mut last_sender = String::new();
    let mut ended = false;
    let mut gone = None;
    loop {
        let (n, sender) = match block(|| socket.recv_from(&mut buf)) {
            Ok(got) => got.context("recv")?,
            // The default run's writer has exited, and its zero-length end never came.
            Err(e) if e.is::<WriterGone>() => break,
            // The writer we watched is gone, and nobody else sent anything.
            Err(e) if e.is::<PeerGone>() => {
                gone = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e),
        };
        let shown_sender = sender.to_string();
        if shown_sender != last_sender {
            say!(READER, "a datagram from {shown_sender}");
            watch_sender(&sender);
            last_sender = shown_sender;
        }
        if n == 0 {
            say!(
                READER,
                "recv(2) returned a zero-length datagram: the writer's end of messages"
            );
            ended = true;
            break;
        }
        say!(READER, "recv(2) returned one datagram of {n} bytes");
        say!(READER, "received {} ({n} bytes)", shown(&buf[..n]));
        summary.count(n);
    }
    summary.stop();
    let got = summary.messages;
    let lost = expected.map_or(0, |expected| expected.saturating_sub(got));
    if lost > 0 {
        let expected = got + lost;
        summary.extra = format!(" lost={lost}");
        return Err(summary.failed(format!(
            "{lost} of {expected} datagrams lost: {}",
            socket.why_lost()
        )));
    }
    if !ended {
        summary.extra = " lost=0".into();
        let why = match gone {
            Some(gone) => format!(
                "{gone}: its end (a zero-length datagram) never came; it was killed, or it \
                 was a tool that sends no end (socat, nc)"
            ),
            None => "the writer has exited, but its end (a zero-length datagram) never came: \
                     it was lost on the way"
                .into(),
        };
        return Err(summary.failed(why));
    }
    say!(
        READER,
        "{got} datagrams and the zero-length end: {} recv(2) calls, each returned exactly one \
         whole datagram, the message boundaries are kept",
        got + 1
    );
    Ok(summary)
}

/// UDP bulk: how many datagrams the writer sends before it waits for an acknowledgement.
fn window(size: usize) -> u64 {
    let truesize = (size + OVERHEAD).next_power_of_two();
    (WINDOW_BYTES / truesize).max(1) as u64
}

/// True if datagram `k` is the last of its window (or of all): the one to acknowledge.
fn ends_window(k: u64, window: u64, count: u64) -> bool {
    (k + 1).is_multiple_of(window) || k + 1 == count
}

/// Writer, bulk. With `acks` (UDP) it waits for the reader's acknowledgement after each
/// window; without (Unix) the kernel's own flow control makes it wait when the reader
/// falls behind.
pub fn send_bulk(socket: &Dgram, count: u64, size: usize, acks: bool, to: &str) -> Result<Summary> {
    let window = window(size);
    if acks {
        say!(
            WRITER,
            "UDP has no flow control: I wait for the reader's acknowledgement every {window} \
             datagrams, or its receive buffer would overflow and the kernel drop the rest"
        );
    } else {
        say!(
            WRITER,
            "a Unix datagram socket has flow control: when the reader's queue is full, the \
             kernel makes my send(2) sleep"
        );
    }
    let mut message = pattern(size);
    let mut ack = [0u8; 8];
    let mut summary = Summary::start();
    for k in 0..count {
        stamp(&mut message, k);
        send_one(socket, &message, to)
            .with_context(|| format!("sending message {k} of {count}"))?;
        summary.count(size);
        if acks && ends_window(k, window, count) {
            wait_for_ack(socket, &mut ack, k + 1, to)?;
        }
    }
    send_end(socket, to)?;
    Ok(summary.with_throughput())
}

/// Waits until the reader says it has datagram `upto - 1`. A lost datagram means no
/// acknowledgement: after a while, go on, and let the reader count the loss.
fn wait_for_ack(socket: &Dgram, ack: &mut [u8; 8], upto: u64, to: &str) -> Result<()> {
    loop {
        match block_at_most(ACK_PATIENCE, || socket.recv(ack))? {
            Ok(8) if u64::from_le_bytes(*ack) >= upto => return Ok(()),
            Ok(_) => continue, // a late acknowledgement of an earlier window
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                say!(
                    WRITER,
                    "no acknowledgement for the datagrams up to {upto} within {ACK_PATIENCE:?}: \
                     some were lost, and UDP resends nothing; going on"
                );
                return Ok(());
            }
            Err(e) => return Err(refused(socket, e, to)),
        }
    }
}

/// Reader, bulk: checks every datagram's size, sequence number and bytes; counts the lost
/// and the reordered ones. The order and completeness are ours to check: UDP promises
/// neither.
pub fn check_bulk(socket: &Dgram, count: u64, size: usize, acks: bool) -> Result<Summary> {
    let window = window(size);
    let expected = pattern(size);
    let mut buf = vec![0u8; size + 1]; // one more byte: a longer datagram shows as such
    let mut seen = vec![0u64; count.div_ceil(64) as usize]; // one bit per message
    let (mut received, mut reordered, mut highest) = (0u64, 0u64, None::<u64>);
    let mut ended = false; // the zero-length end came

    // The first datagram, however long it takes to come: we do not know the writer yet.
    let (mut n, sender) = block(|| socket.recv_from(&mut buf))?.context("recv")?;
    let mut summary = Summary::start(); // the clock starts with the first datagram
    if acks {
        socket.connect_to(&sender)?; // acknowledgements go back to it, others are ignored
    }
    say!(READER, "the first datagram came from {sender}");
    watch_sender(&sender);
    let mut gone = None;
    loop {
        if n == 0 {
            ended = true;
            break;
        }
        if n != size {
            bail!("a datagram of {n} bytes, expected {size}: not our writer's bulk data?");
        }
        let next = highest.map_or(0, |h| h + 1);
        let k = full_sequence(sequence(&buf[..size]), size, next);
        if k >= count {
            bail!("a datagram with sequence number {k}, but only {count} were to come");
        }
        check_body(&buf[..size], &expected, k)?;
        let (word, bit) = ((k / 64) as usize, 1u64 << (k % 64));
        if seen[word] & bit != 0 {
            bail!("message {k} arrived twice: a duplicated datagram");
        }
        seen[word] |= bit;
        received += 1;
        if highest.is_some_and(|h| k < h) {
            reordered += 1; // it came after a later one
        }
        highest = highest.max(Some(k));
        summary.count(size);
        if acks && ends_window(k, window, count) {
            block(|| socket.send(&(k + 1).to_le_bytes()))?.context("sending an acknowledgement")?;
        }
        n = match block_at_most(QUIET, || socket.recv(&mut buf)) {
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => break,
            Ok(Err(e)) => return Err(e).context("recv"),
            Err(e) if e.is::<PeerGone>() => {
                gone = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e),
        };
    }
    let lost = count - received;
    summary.extra = format!(" lost={lost} reordered={reordered}");
    let summary = summary.with_throughput();
    if let (false, Some(gone)) = (ended, gone) {
        return Err(summary.failed(format!(
            "{gone}; it sent {received} of {count} datagrams, and no end"
        )));
    }
    if !ended {
        return Err(summary.failed(format!(
            "nothing came for {QUIET:?} after {received} of {count} datagrams, and no end: the \
             writer is gone, or the rest was lost (nothing tells a datagram socket which)"
        )));
    }
    if lost > 0 || reordered > 0 {
        return Err(summary.failed(format!(
            "{lost} of {count} datagrams lost and {reordered} reordered: a datagram socket may \
             drop and reorder them, and nothing told the writer"
        )));
    }
    Ok(summary)
}

/// The full sequence number from a header cut to `size` bytes: the one nearest `near`.
fn full_sequence(seq: u64, size: usize, near: u64) -> u64 {
    if size >= 8 {
        return seq;
    }
    let modulus = 1u64 << (8 * size);
    let ahead = seq.wrapping_sub(near) % modulus;
    if ahead < modulus / 2 {
        near + ahead
    } else {
        near.saturating_sub(modulus - ahead)
    }
}

/// Writer, ping: a datagram out, the same datagram back, timed; then the end.
pub fn ping(socket: &Dgram, count: u64, size: usize, to: &str) -> Result<Summary> {
    let mut message = pattern(size);
    let mut reply = vec![0u8; size + 1];
    let mut rtts = Vec::with_capacity(count as usize); // no allocation while timing
    let mut summary = Summary::start();
    for k in 0..count {
        stamp(&mut message, k);
        let sent = Instant::now();
        send_one(socket, &message, to).with_context(|| format!("sending ping {k}"))?;
        loop {
            let n = match block_at_most(QUIET, || socket.recv(&mut reply))? {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => bail!(
                    "no answer to ping {k} within {QUIET:?}: the reader is gone or the datagram \
                     was lost (a datagram socket has no connection to tell us which)"
                ),
                Err(e) => return Err(refused(socket, e, to)),
            };
            if n == size && reply[..size] == message[..] {
                break;
            }
            // Anything else is a stale answer to an earlier ping: keep waiting.
        }
        rtts.push(sent.elapsed());
        summary.count(size);
    }
    send_end(socket, to)?;
    Ok(summary.with_round_trips(&mut rtts))
}

/// Reader, ping: answer each datagram with itself, to its sender, until the end.
pub fn echo(socket: &Dgram, count: u64, size: usize) -> Result<Summary> {
    let mut message = vec![0u8; size + 1];
    let (mut n, sender) = block(|| socket.recv_from(&mut message))?.context("recv")?;
    let mut summary = Summary::start(); // the clock starts with the first ping
    socket.connect_to(&sender)?; // answers go back to it, and only it is heard from now on
    say!(READER, "the first ping came from {sender}");
    watch_sender(&sender);
    // A ping writer bound a socket file of its own for the answers: killed, it left it.
    let left = || match &sender {
        Sender::Unix { path: Some(p), .. } => unix::left_behind(p),
        _ => String::new(),
    };
    while n > 0 {
        match block(|| socket.send(&message[..n]))? {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => bail!(
                "answering ping {}: the writer is gone (ECONNREFUSED: nothing is bound at its \
                 address any more){}",
                summary.messages,
                left()
            ),
            Err(e) => return Err(e).context("answering a ping"),
        }
        summary.count(n);
        let next = match block_at_most(QUIET, || socket.recv(&mut message)) {
            // The default run's writer died (PeerGone says what is left itself).
            Err(e) if e.is::<WriterGone>() => bail!("{e}{}", left()),
            next => next?,
        };
        n = match next {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => bail!(
                "no ping for {QUIET:?} after {} of {count}: the writer is gone, or its end was \
                 lost",
                summary.messages
            ),
            Err(e) => return Err(e).context("recv"),
        };
    }
    if summary.messages != count || summary.bytes != count * size as u64 {
        bail!(
            "the writer ended after {} of {count} pings of {size} bytes",
            summary.messages
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_sequence_number_is_read_near_the_expected_one() {
        assert_eq!(full_sequence(5, 8, 1000), 5);
        assert_eq!(full_sequence(0x02, 1, 0x101), 0x102);
        assert_eq!(full_sequence(0xff, 1, 0x100), 0xff); // one behind: reordered
        assert_eq!(full_sequence(0x10, 1, 0x1f0), 0x210);
        assert_eq!(full_sequence(7, 2, 0), 7);
    }

    #[test]
    fn the_window_fits_the_receive_buffer() {
        assert_eq!(window(65507), 1);
        assert_eq!(window(9000), 8); // 16 KiB each
        assert_eq!(window(100), 64);
    }
}
