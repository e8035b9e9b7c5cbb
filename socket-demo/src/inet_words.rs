//! The Internet family (AF_INET), narrated: TCP and UDP on the loopback interface. The
//! calls are `socket_demo::inet`'s; this file puts their failures in words.
//!
//! The same socket calls as the Unix family, but the meeting point is an IP address and a
//! port instead of a file. Nothing is left in the filesystem, so there is nothing to
//! remove: the port is free again once the sockets are closed, except that the side that
//! closes a TCP connection first keeps its port in TIME_WAIT for a minute; std sets
//! SO_REUSEADDR on listeners, so a new reader can bind it anyway. Port 0 asks the kernel for
//! any free port; the reader prints the one it got.
//!
//! Who is calling: a TCP server learns the client's address and port from accept(2), and
//! nothing more. The kernel knows which local process holds that port (`ss -tp` shows
//! it), but across machines nobody could vouch for it: there is no SO_PEERCRED here.
//!
//! Notes: 进程之间要通信必须通过内核 (processes communicate through the kernel): even on
//! 127.0.0.1 the bytes go down and up the kernel's whole TCP/IP stack (the loopback
//! interface), which is why a Unix socket is the faster choice on one machine.
//! Run: `socket-demo reader tcp --addr 127.0.0.1:7000`, then `nc -N 127.0.0.1 7000` or
//! `socket-demo writer tcp --addr 127.0.0.1:7000 hi`; `ss -tlnp` lists the listener.
//! In production: `std::net`, or `tokio::net` for many connections at once.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

use anyhow::{Context, Result, bail};

use socket_demo::inet as lib;

use crate::args::Flavour;

pub use lib::udp_port_open;

fn bind_error(e: io::Error, addr: SocketAddr, flavour: Flavour) -> anyhow::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "bind {addr}: the {} port {} is taken by another socket (EADDRINUSE): pick \
             another --addr, or port 0 to let the kernel choose",
            flavour.name(),
            addr.port()
        )
    } else {
        anyhow::Error::new(e).context(format!("bind {addr}"))
    }
}

fn default_addr(addr: Option<SocketAddr>) -> SocketAddr {
    addr.unwrap_or(lib::LOOPBACK_ANY_PORT)
}

/// The TCP reader: socket, bind and listen (std does all three).
pub fn listen(addr: Option<SocketAddr>) -> Result<TcpListener> {
    let addr = default_addr(addr);
    lib::listen_tcp(addr).map_err(|e| bind_error(e, addr, Flavour::Tcp))
}

/// The UDP reader: socket and bind. No listen, no accept: there are no connections.
pub fn bind_udp(addr: Option<SocketAddr>) -> Result<UdpSocket> {
    let addr = default_addr(addr);
    lib::bind_udp(addr).map_err(|e| bind_error(e, addr, Flavour::Udp))
}

fn start_reader(flavour: Flavour, addr: SocketAddr) -> String {
    format!(
        "start the reader first (socket-demo reader {} --addr {addr})",
        flavour.name()
    )
}

/// The TCP writer: connect(2) performs the three-way handshake with the reader's kernel,
/// before the reader has even called accept (while the listen backlog has room; when it is
/// full, the reader's kernel ignores the SYN and ours retries it, so connect waits).
pub fn connect(addr: SocketAddr) -> Result<TcpStream> {
    match lib::connect_tcp(addr) {
        Ok(stream) => Ok(stream),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => bail!(
            "connect {addr}: nobody is listening on {addr} (ECONNREFUSED): {}",
            start_reader(Flavour::Tcp, addr)
        ),
        Err(e) => Err(e).with_context(|| format!("connect {addr}")),
    }
}

/// The UDP writer: a socket on a port of its own, "connected" to the reader. For UDP,
/// connect(2) sends nothing: it only sets the default destination, and lets the kernel
/// report an ICMP "port unreachable" as ECONNREFUSED on a later call.
pub fn connect_udp(addr: SocketAddr) -> Result<UdpSocket> {
    lib::connect_udp(addr).with_context(|| format!("connect {addr}"))
}
