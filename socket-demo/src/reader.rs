//! The reader is the server: it binds the meeting point, waits for one writer, prints
//! what it sends, and removes what it created on every way out.
//!
//! Stream sockets (unix, tcp): socket → bind → listen → accept. accept(2) returns a new
//! socket for this one writer; the listening socket only ever hands out connections, so
//! once we have our writer we close it and the kernel refuses anyone else. That is the
//! narrated run's choice, one client: `reader unix --clients N` serves N at once with the
//! library's `socket_demo::server::Server` (one poll(2) loop, the listener open all along).
//! Datagram sockets (unix-dgram, udp): socket → bind, then recv. No listen, no accept: any
//! process may send to the address, and each datagram comes with its sender's address (a
//! UDP address and port; a Unix sender's socket file, if it bound one) and, on a Unix
//! socket with SO_PASSCRED, its pid, uid and gid.
//!
//! In the default run the reader also starts the writer (`demo.rs`), and in the text run
//! it waits for the writer to finish before reading anything, so that every message waits
//! in the kernel at once: then a stream hands them all out in one read(2), where a datagram
//! socket still hands out one per recv(2).

use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::args::{Cpus, Flavour, Meet, Workload};
use crate::datagrams::{self as dgram, Dgram};
use crate::demo::{DEFAULT_MESSAGES, WriterChild, start_writer};
use crate::meeting as unix;
use crate::signals::{self, TICK, block};
use crate::stream::shown;
use crate::workload::{Failed, Summary};
use crate::{inet_words as inet, packets, stream};
use socket_demo::server::MAX_LINE;
use socket_demo::server::{Event, Server};
use std::cell::Cell;

const READER: &str = "reader";
/// How long the text run waits for its writer to finish: a writer that fits the kernel's
/// queue takes milliseconds, so this only guards against a hang.
const WRITER_DEADLINE: Duration = Duration::from_secs(30);
/// What the kernel surely holds for us without making the writer wait: a Unix datagram
/// socket queues max_dgram_qlen + 1 datagrams (/proc/sys/net/unix/max_dgram_qlen: 10 by
/// the kernel's default, 512 where systemd sets it), so 9, the end included, fit. The
/// socket buffers hold some 200 KiB, but count more than the bytes: each write(2) on a
/// Unix stream costs some 768 bytes of the writer's send buffer, however short, so the
/// writer would be asleep after ~270 short lines. 100 lines of 64 KiB in all fit.
const PILE_UP_DATAGRAMS: usize = 9;
const PILE_UP_LINES: usize = 100;
const PILE_UP_BYTES: usize = 64 * 1024;

/// `start` is set in the default run: start the writer (with these `--cpus`, if any) once
/// the socket is bound.
pub fn run(
    flavour: Flavour,
    meet: Option<&Meet>,
    workload: &Workload,
    start: Option<Option<Cpus>>,
    clients: Option<u64>,
) -> Result<()> {
    let path = match meet {
        Some(Meet::Path(path)) => Some(path.as_path()),
        _ => None,
    };
    let addr = match meet {
        Some(Meet::Addr(addr)) => Some(*addr),
        _ => None,
    };
    match flavour {
        Flavour::Unix => {
            let (listener, file) = unix::listen(path)?;
            listening_at(file.path(), "SOCK_STREAM", "listen(2)");
            if let Some(clients) = clients {
                let server = Server::new(listener, MAX_LINE).context("listener O_NONBLOCK")?;
                let served = serve_many(server, clients, false);
                return finish(served, None, Some(file));
            }
            let mut writer = start_if(start, flavour, &Meet::Path(file.path().into()), workload)?;
            let served = serve_unix(listener, workload, writer.as_mut());
            finish(served, writer, Some(file))
        }
        Flavour::UnixDgram => {
            let (socket, file) = unix::bind_datagram(path)?;
            let socket = Dgram::Unix(socket);
            socket.want_credentials()?;
            listening_at(file.path(), "SOCK_DGRAM", "no listen(2), no accept(2)");
            let mut writer = start_if(start, flavour, &Meet::Path(file.path().into()), workload)?;
            let served = serve_datagrams(socket, workload, writer.as_mut());
            finish(served, writer, Some(file))
        }
        Flavour::Seqpacket => {
            let (listener, file) = unix::listen_seqpacket(path)?;
            listening_at(file.path(), "SOCK_SEQPACKET", "listen(2)");
            if let Some(clients) = clients {
                let most = crate::args::max_unix_datagram();
                let server = Server::seqpacket(listener, most).context("listener O_NONBLOCK")?;
                let served = serve_many(server, clients, true);
                return finish(served, None, Some(file));
            }
            let mut writer = start_if(start, flavour, &Meet::Path(file.path().into()), workload)?;
            let served = serve_seqpacket(listener, workload, writer.as_mut());
            finish(served, writer, Some(file))
        }
        Flavour::Tcp => {
            let listener = inet::listen(addr)?;
            let local = listener.local_addr().context("getsockname")?;
            say!(
                READER,
                "socket(AF_INET, SOCK_STREAM) bound to {local} and listening (TCP): connect \
                 with `socket-demo writer tcp --addr {local}` or `nc -N {} {}`",
                local.ip(),
                local.port()
            );
            let mut writer = start_if(start, flavour, &Meet::Addr(local), workload)?;
            let served = serve_tcp(listener.into(), workload, writer.as_mut());
            finish(served, writer, None)
        }
        Flavour::Udp => {
            let socket = inet::bind_udp(addr)?;
            let local = socket.local_addr().context("getsockname")?;
            say!(
                READER,
                "socket(AF_INET, SOCK_DGRAM) bound to {local}, no listen(2), no accept(2) \
                 (UDP): send with `socket-demo writer udp --addr {local}` or `nc -u {} {}`",
                local.ip(),
                local.port()
            );
            let mut writer = start_if(start, flavour, &Meet::Addr(local), workload)?;
            let served = serve_datagrams(Dgram::Udp(socket), workload, writer.as_mut());
            finish(served, writer, None)
        }
        Flavour::Pair | Flavour::Fdpass => bail!("pair and fdpass have readers of their own"),
    }
}

/// Where the reader waits, in a line of its own for people and tests to find.
pub fn listening_at(path: &Path, kind: &str, how: &str) {
    if unix::is_abstract(path) {
        say!(
            READER,
            "socket(AF_UNIX, {kind}) bound to the abstract name {} (a name that starts with \
             a NUL byte, in the kernel's table alone: no file, so `ls` shows nothing and \
             there is nothing to remove; `ss -xl` and /proc/net/unix list it as {0}; no \
             permission bits: anyone in this network namespace may connect), {how}",
            path.display()
        );
        if let Some(line) = unix::proc_net_unix_line(path) {
            say!(READER, "/proc/net/unix lists it: {line}");
        }
    } else {
        say!(
            READER,
            "socket(AF_UNIX, {kind}) bound to {} ({}, a file of type s: only a name to find \
             the socket by; no data goes through the disk), {how}",
            path.display(),
            unix::mode_string(path)
        );
    }
    let waits = if kind != "SOCK_DGRAM" {
        "listening"
    } else {
        "receiving"
    };
    say!(READER, "{waits} at {}", path.display());
}

fn start_if(
    start: Option<Option<Cpus>>,
    flavour: Flavour,
    meet: &Meet,
    workload: &Workload,
) -> Result<Option<WriterChild>> {
    start
        .map(|cpus| start_writer(flavour, meet, workload, None, cpus))
        .transpose()
}

/// The end of every reader: reap the writer we started (our sockets are closed by now, so
/// it cannot be waiting for us), remove the socket file, then the summary, last.
pub fn finish(
    served: Result<Summary>,
    writer: Option<WriterChild>,
    file: Option<unix::OwnedFile>,
) -> Result<()> {
    let reaped = writer.map(WriterChild::reap).transpose();
    if let Some(file) = file {
        file.remove(READER);
    }
    let summary = match served {
        Ok(summary) => summary,
        Err(e) => {
            // Data moved, but not all of it right: the summary still comes last, not `ok`.
            if let Some(failed) = e.downcast_ref::<Failed>() {
                failed.summary.print_ending(READER, "failed");
            }
            return Err(e);
        }
    };
    reaped?;
    summary.print(READER);
    Ok(())
}

/// accept(2) that Ctrl+C can stop: nix's, since std's retries EINTR by itself. The
/// listening socket has a receive timeout, so the wait comes back every TICK to look at
/// the flag. SOCK_CLOEXEC: a program we start must not inherit the connection.
pub fn accept(listener: impl AsFd) -> Result<OwnedFd> {
    socket_demo::wait::set_timeouts(&listener, TICK).context("setsockopt SO_RCVTIMEO")?;
    say!(
        READER,
        "waiting in accept(2) for a writer to connect (the kernel queues connections until \
         I accept them)"
    );
    block(|| socket_demo::unix::accept(&listener))?.context("accept")
}

fn closed_listener() {
    say!(
        READER,
        "I take one writer: closed the listening socket, so the kernel refuses anyone else"
    );
}

fn serve_unix(
    listener: std::os::unix::net::UnixListener,
    workload: &Workload,
    writer: Option<&mut WriterChild>,
) -> Result<Summary> {
    let conn = UnixStream::from(accept(&listener)?);
    drop(listener);
    accepted_unix(&conn, writer.as_deref())?;
    // Ctrl+C shuts the connection down (`signals`' header): a Unix one has no timeouts.
    let _armed = signals::shut_on_signal(conn.as_fd());
    closed_listener();
    serve_connection(&conn, workload, writer)
}

/// The narration of an accepted Unix connection (stream or seqpacket): its fd and who
/// is at the other end, by SO_PEERCRED.
fn accepted_unix(conn: impl AsFd, writer: Option<&WriterChild>) -> Result<()> {
    let conn = conn.as_fd();
    let cred = unix::peer_credentials(conn)?;
    say!(
        READER,
        "accepted a connection: a new socket, fd {}, for this writer alone",
        conn.as_raw_fd()
    );
    let mine = match &writer {
        Some(w) if w.pid().as_raw() == cred.pid() => " (the writer I started)",
        _ => "",
    };
    say!(
        READER,
        "SO_PEERCRED: the kernel says the writer is {}{mine}: a snapshot it took at \
         connect(2), not something the writer says (the writer may exit and its pid go to \
         another process; SO_PEERPIDFD gives a pidfd, which names this one for good)",
        unix::describe(&cred)
    );
    Ok(())
}

/// seqpacket: accept one writer, as `serve_unix` does, then one message per recv(2).
fn serve_seqpacket(
    listener: OwnedFd,
    workload: &Workload,
    writer: Option<&mut WriterChild>,
) -> Result<Summary> {
    let conn = accept(&listener)?;
    drop(listener);
    accepted_unix(&conn, writer.as_deref())?;
    // Ctrl+C shuts the connection down (`signals`' header): a Unix one has no timeouts.
    let _armed = signals::shut_on_signal(conn.as_fd());
    closed_listener();
    match workload {
        Workload::Text(messages) => {
            if let Some(writer) = writer {
                let_messages_pile_up(writer, told(messages), false)?;
            }
            packets::receive_messages(&conn)
        }
        Workload::Bulk { count, size } => {
            say!(READER, "checking {count} messages of {size} bytes");
            packets::check_bulk(&conn, *count, *size)
        }
        Workload::Ping { count, size } => {
            say!(READER, "answering {count} pings of {size} bytes");
            packets::echo(&conn, *count, *size)
        }
    }
}

fn serve_tcp(
    listener: OwnedFd,
    workload: &Workload,
    writer: Option<&mut WriterChild>,
) -> Result<Summary> {
    let conn = TcpStream::from(accept(&listener)?);
    drop(listener);
    socket_demo::wait::set_timeouts(&conn, TICK).context("setsockopt SO_RCVTIMEO/SO_SNDTIMEO")?;
    // Small messages go out at once, not held back by Nagle's algorithm: this is what a
    // request/response protocol wants.
    conn.set_nodelay(true).context("setsockopt TCP_NODELAY")?;
    let peer = conn.peer_addr().context("getpeername")?;
    say!(
        READER,
        "accepted a connection from {peer}: a new socket, fd {}, for this writer alone. TCP \
         tells an address and port, not which process (no SO_PEERCRED)",
        conn.as_raw_fd()
    );
    closed_listener();
    serve_connection(&conn, workload, writer)
}

/// `--clients N`: N clients at once, the library's `Server`: one poll(2) over the listener
/// and every connection, each client's lines in a buffer of its own (capped at 1 MiB: a
/// client that sends more without a newline is dropped, the others go on).
fn serve_many(mut server: Server, clients: u64, packets: bool) -> Result<Summary> {
    let kept_apart = if packets {
        "each recv(2) returns one whole message of one client, so no buffer is needed to \
         keep them apart"
    } else {
        "each client's bytes go into a line buffer of its own, so half lines from two \
         clients never mix"
    };
    say!(
        READER,
        "serving {clients} clients at once: one poll(2) over the listening socket and every \
         connection; {kept_apart}"
    );
    let mut summary = Summary::start();
    let closed = Cell::new(0u64);
    let stop = || closed.get() >= clients || signals::caught().is_some();
    server
        .serve(&stop, |event| match event {
            Event::Connected(who) => say!(
                READER,
                "client {} connected: accept(2) gave it a socket of its own; SO_PEERCRED: \
                 pid {} uid {} ({} connected now)",
                who.n,
                who.pid,
                who.uid,
                who.n - closed.get()
            ),
            Event::Line(who, line) => {
                say!(
                    READER,
                    "client {} (pid {}): received {} ({} bytes)",
                    who.n,
                    who.pid,
                    shown(line),
                    line.len()
                );
                summary.count(line.len());
            }
            Event::Closed(who, why) => {
                match why {
                    None => say!(READER, "client {} (pid {}): EOF, it closed", who.n, who.pid),
                    Some(e) => say!(READER, "client {} (pid {}): dropped: {e}", who.n, who.pid),
                }
                closed.set(closed.get() + 1);
            }
        })
        .context("poll/accept")?;
    if let Some(sig) = signals::caught() {
        return Err(signals::Interrupted(sig).into());
    }
    say!(
        READER,
        "{clients} clients served, and the listening socket stayed open all along"
    );
    Ok(summary)
}

/// The conversation on an accepted stream connection.
fn serve_connection(
    conn: impl AsFd,
    workload: &Workload,
    writer: Option<&mut WriterChild>,
) -> Result<Summary> {
    match workload {
        Workload::Text(messages) => {
            if let Some(writer) = writer {
                let_messages_pile_up(writer, told(messages), false)?;
            }
            stream::receive_lines(conn)
        }
        Workload::Bulk { count, size } => {
            say!(READER, "checking {count} messages of {size} bytes");
            stream::check_bulk(conn, *count, *size)
        }
        Workload::Ping { count, size } => {
            say!(READER, "answering {count} pings of {size} bytes");
            stream::echo(conn, *count, *size)
        }
    }
}

/// The messages the default run's writer was told to send: the MESSAGE arguments, or the
/// default ones.
fn told(messages: &[String]) -> Vec<String> {
    if messages.is_empty() {
        DEFAULT_MESSAGES.map(String::from).to_vec()
    } else {
        messages.to_vec()
    }
}

/// The default run: read nothing until the writer has sent everything and exited, if
/// everything fits in the kernel's queue (or the writer would wait for us, and we for it).
fn let_messages_pile_up(
    writer: &mut WriterChild,
    messages: Vec<String>,
    datagrams: bool,
) -> Result<()> {
    let bytes: usize = messages.iter().map(|m| m.len() + 1).sum();
    let most = if datagrams {
        PILE_UP_DATAGRAMS
    } else {
        PILE_UP_LINES
    };
    if bytes > PILE_UP_BYTES || messages.len() > most {
        say!(
            READER,
            "too many messages to let them all wait in the kernel at once: reading them as \
             they come"
        );
        return Ok(());
    }
    say!(
        READER,
        "not reading yet: I wait until the writer has sent everything and exited, so all its \
         messages wait in the kernel's socket buffer at once"
    );
    if !writer.wait_until_exited(WRITER_DEADLINE)? {
        say!(
            READER,
            "the writer has not finished within {WRITER_DEADLINE:?} (is the kernel's buffer \
             full?): reading now"
        );
    }
    Ok(())
}

fn serve_datagrams(
    socket: Dgram,
    workload: &Workload,
    writer: Option<&mut WriterChild>,
) -> Result<Summary> {
    socket.set_timeouts()?;
    let udp = matches!(socket, Dgram::Udp(_));
    match workload {
        Workload::Text(messages) => {
            let expected = writer.is_some().then(|| told(messages).len() as u64);
            if let Some(writer) = writer {
                let_messages_pile_up(writer, told(messages), true)?;
            } else {
                say!(READER, "waiting in recv(2) for a datagram");
            }
            dgram::receive_messages(&socket, expected)
        }
        Workload::Bulk { count, size } => {
            say!(READER, "checking {count} datagrams of {size} bytes");
            dgram::check_bulk(&socket, *count, *size, udp)
        }
        Workload::Ping { count, size } => {
            say!(READER, "answering {count} pings of {size} bytes");
            dgram::echo(&socket, *count, *size)
        }
    }
}
