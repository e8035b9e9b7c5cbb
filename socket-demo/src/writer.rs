//! The writer is the client: it finds the reader by its meeting point, connects, sends,
//! and closes.
//!
//! Streams: connect(2) makes the connection (for TCP, the three-way handshake); closing it
//! is the reader's EOF. Datagrams: connect(2) sends nothing, it only sets where send(2)
//! goes (and that recv(2) hears from that address alone); the end is one zero-length
//! datagram, since there is no connection to close.

use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};

use crate::args::{Flavour, Meet, Workload};
use crate::datagrams::{self as dgram, Dgram};
use crate::meeting as unix;
use crate::signals::{self, TICK};
use crate::workload::Summary;
use crate::{inet_words as inet, packets, stream};

const WRITER: &str = "writer";

pub fn run(flavour: Flavour, meet: &Meet, workload: &Workload) -> Result<()> {
    let summary = match (flavour, meet) {
        (Flavour::Unix, Meet::Path(path)) => {
            let conn = unix::connect_stream(path, flavour)?;
            say!(
                WRITER,
                "connected to {}: the kernel found the reader's socket by {}",
                path.display(),
                found_by(path)
            );
            talk_stream(conn, workload)?
        }
        (Flavour::Seqpacket, Meet::Path(path)) => {
            let conn = unix::connect_seqpacket(path)?;
            say!(
                WRITER,
                "connected to {} (SOCK_SEQPACKET): the kernel found the reader's socket by \
                 {}; each send(2) now is one message",
                path.display(),
                found_by(path)
            );
            talk_seqpacket(conn, workload)?
        }
        (Flavour::Tcp, Meet::Addr(addr)) => {
            let conn = inet::connect(*addr)?;
            socket_demo::wait::set_timeouts(&conn, TICK)
                .context("setsockopt SO_RCVTIMEO/SO_SNDTIMEO")?;
            conn.set_nodelay(true).context("setsockopt TCP_NODELAY")?;
            let local = conn.local_addr().context("getsockname")?;
            say!(
                WRITER,
                "connected to {addr} from {local} (the kernel picked my port): the handshake \
                 is done, even before the reader calls accept(2) (its kernel queues the \
                 connection, while its listen(2) backlog has room)"
            );
            talk_stream(conn, workload)?
        }
        (Flavour::UnixDgram, Meet::Path(path)) => {
            // A ping needs answers, and only a bound socket has an address to answer to.
            let answers = matches!(workload, Workload::Ping { .. });
            let (socket, own) = unix::connect_datagram(path, answers)?;
            match &own {
                Some(own) => say!(
                    WRITER,
                    "bound my own socket to {} so the reader can answer, and connected it \
                     to {}",
                    own.path().display(),
                    path.display()
                ),
                None => say!(
                    WRITER,
                    "an unbound datagram socket, connected to {}: send(2) goes there",
                    path.display()
                ),
            }
            dgram::watch_reader(meet);
            let summary = talk_datagrams(Dgram::Unix(socket), workload, &path.to_string_lossy());
            if let Some(own) = own {
                own.remove(WRITER);
            }
            summary?
        }
        (Flavour::Udp, Meet::Addr(addr)) => {
            let socket = inet::connect_udp(*addr)?;
            let local = socket.local_addr().context("getsockname")?;
            say!(
                WRITER,
                "a UDP socket on {local}, connected to {addr}: nothing was sent, connect(2) \
                 only sets where send(2) goes and whom recv(2) hears from"
            );
            dgram::watch_reader(meet);
            talk_datagrams(Dgram::Udp(socket), workload, &addr.to_string())?
        }
        _ => bail!("{} has no writer of this kind here", flavour.name()),
    };
    summary.print(WRITER);
    Ok(())
}

/// A reader killed by SIGKILL ran no guard: if its socket file is still at `path` with no
/// socket bound to it, the error says so, with the command that removes it (once: the
/// datagram watch may have said it already).
pub fn with_left_behind(e: anyhow::Error, path: &std::path::Path) -> anyhow::Error {
    let left = unix::left_behind(path);
    let said = format!("{e:#}");
    if left.is_empty() || said.contains(left.trim_start_matches("; ")) {
        e
    } else {
        anyhow::anyhow!("{said}{left}")
    }
}

/// How the kernel found the reader: by a file, or by an abstract name.
fn found_by(path: &std::path::Path) -> &'static str {
    if unix::is_abstract(path) {
        "its abstract name (no file: the kernel's own table)"
    } else {
        "its file"
    }
}

/// Sends on a seqpacket connection, one message per send(2), then closes it: the
/// reader's EOF.
fn talk_seqpacket(conn: impl AsFd, workload: &Workload) -> Result<Summary> {
    // Ctrl+C shuts the connection down (`signals`' header): a Unix one has no timeouts.
    let armed = signals::shut_on_signal(conn.as_fd());
    let summary = match workload {
        Workload::Text(messages) => packets::send_messages(&conn, messages)?,
        Workload::Bulk { count, size } => {
            say!(WRITER, "sending {count} messages of {size} bytes");
            packets::send_bulk(&conn, *count, *size)?
        }
        Workload::Ping { count, size } => {
            say!(
                WRITER,
                "{count} round trips of {size} bytes, both ways on one socket"
            );
            packets::ping(&conn, *count, *size)?
        }
    };
    drop(armed);
    drop(conn);
    say!(
        WRITER,
        "closed the connection: the reader gets EOF after the last message"
    );
    Ok(summary)
}

/// Sends on a stream connection, then closes it: the reader's EOF.
fn talk_stream(conn: impl AsFd, workload: &Workload) -> Result<Summary> {
    // Ctrl+C shuts the connection down (`signals`' header): a Unix one has no timeouts
    // to wake a blocked call; a TCP one has, and the shutdown only stops it sooner.
    let armed = signals::shut_on_signal(conn.as_fd());
    let summary = match workload {
        Workload::Text(messages) => stream::send_lines(&conn, messages)?,
        Workload::Bulk { count, size } => {
            say!(WRITER, "sending {count} messages of {size} bytes");
            stream::send_bulk(&conn, *count, *size)?
        }
        Workload::Ping { count, size } => {
            say!(
                WRITER,
                "{count} round trips of {size} bytes, both ways on one socket"
            );
            stream::ping(&conn, *count, *size)?
        }
    };
    drop(armed);
    drop(conn);
    say!(
        WRITER,
        "closed the connection: the reader gets EOF once it has read the rest"
    );
    Ok(summary)
}

fn talk_datagrams(socket: Dgram, workload: &Workload, to: &str) -> Result<Summary> {
    socket.set_timeouts()?;
    match workload {
        Workload::Text(messages) => dgram::send_messages(&socket, messages, to),
        Workload::Bulk { count, size } => {
            say!(WRITER, "sending {count} datagrams of {size} bytes");
            let acks = matches!(socket, Dgram::Udp(_));
            dgram::send_bulk(&socket, *count, *size, acks, to)
        }
        Workload::Ping { count, size } => {
            say!(WRITER, "{count} round trips of {size} bytes");
            dgram::ping(&socket, *count, *size, to)
        }
    }
}
