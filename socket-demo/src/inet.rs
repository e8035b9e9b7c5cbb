//! TCP and UDP (AF_INET) on the loopback interface.
//!
//! The same calls as the Unix family, but the meeting point is an address and a port:
//! nothing is left in the filesystem. A TCP server learns the client's address from
//! accept(2), and no more (no SO_PEERCRED). UDP has no connection and tells nobody when
//! it drops a datagram; [`udp_port_open`] watches a local UDP peer by its port.
//! std covers the calls themselves; what it leaves out is said here.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};

/// 127.0.0.1, port 0: the kernel picks a free port (read it back with `local_addr`).
pub const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// socket + bind + listen. std sets SO_REUSEADDR on listeners, so a port still in
/// TIME_WAIT from an earlier run (kept for a minute by the side that closed first) can be
/// bound again. EADDRINUSE: another socket has the port.
pub fn listen_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// connect(2) with the three-way handshake, done by the server's kernel before the
/// server even calls accept (while its listen backlog has room). Nagle's algorithm off
/// (TCP_NODELAY): a short request goes out at once.
pub fn connect_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    Ok(conn)
}

/// socket + bind for a UDP reader. No listen, no accept.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::bind(addr)
}

/// A UDP socket on a port of its own, "connected" to `addr`: connect(2) sends nothing;
/// it sets where send(2) goes, which address recv(2) hears, and lets an ICMP "port
/// unreachable" come back as ECONNREFUSED on a later call.
///
/// # Examples
/// ```
/// use socket_demo::inet::{LOOPBACK_ANY_PORT, bind_udp, connect_udp, udp_port_open};
/// let reader = bind_udp(LOOPBACK_ANY_PORT).unwrap();
/// let at = reader.local_addr().unwrap();
/// let writer = connect_udp(at).unwrap();
/// writer.send(b"hi").unwrap();
/// let mut buf = [0u8; 8];
/// let (n, from) = reader.recv_from(&mut buf).unwrap();
/// assert_eq!((&buf[..n], from), (&b"hi"[..], writer.local_addr().unwrap()));
/// assert_eq!(udp_port_open(at), Some(true));
/// drop(reader);
/// assert_eq!(udp_port_open(at), Some(false)); // gone from /proc/net/udp
/// ```
pub fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    Ok(socket)
}

/// Whether some socket on this machine has UDP port `addr` bound, from the kernel's
/// tables /proc/net/udp and /proc/net/udp6 (a socket leaves them when it is closed, by
/// its process or by the kernel when the process dies). Any local address with this port
/// counts: the careful answer is "still there". `None` if `addr` is not loopback (a
/// process on another machine is not in our tables) or the tables cannot be read.
pub fn udp_port_open(addr: SocketAddr) -> Option<bool> {
    if !addr.ip().is_loopback() {
        return None;
    }
    let port = format!(":{:04X}", addr.port());
    let (mut open, mut read) = (false, false);
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        read = true;
        // `sl local_address rem_address ...`: the local address is IP:PORT in hex.
        open |= text.lines().skip(1).any(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&port))
        });
    }
    read.then_some(open)
}
