//! `socket_demo`: the copyable half of socket-demo. Every socket call the demo makes,
//! narration-free, one module per socket kind, in the order a program makes them:
//!
//! - [`unix`]: a Unix stream server and client: [`unix::listen`] (bind in a private
//!   0700 directory, the file 0600, removed by its [`unix::OwnedPath`] guard),
//!   [`unix::accept`], [`unix::peer_cred`] (SO_PEERCRED), [`unix::connect_within`] (a
//!   client that waits for its server up to a deadline), [`unix::is_bound`] (a stale
//!   socket file told from a live one, by /proc/net/unix).
//! - [`seqpacket`]: SOCK_SEQPACKET, a connection that keeps message boundaries:
//!   [`seqpacket::listen`], [`seqpacket::connect`], [`seqpacket::send`],
//!   [`seqpacket::recv`] (one message per call, whole, or flagged as cut; 0 at EOF).
//!   Abstract names (`@NAME`, no file): [`unix::abstract_name`], [`unix::abstract_addr`].
//! - [`server`]: many clients at once: [`server::Server::serve`], one poll(2) loop, each
//!   client's lines in a capped buffer of its own, [`server::LineBuf`] (usable alone: a
//!   line splitter with a cap, 1 MiB in the demo).
//! - [`fdpass`]: [`fdpass::send_fd`] / [`fdpass::recv_one_fd`] (SCM_RIGHTS; every fd
//!   that arrives is closed on every way out, MSG_CTRUNC included), and
//!   [`fdpass::sealed_memfd`] / [`fdpass::SharedPage`] to share memory through one.
//! - [`dgram`]: Unix datagrams and SCM_CREDENTIALS: [`dgram::recv_from`] (one whole
//!   datagram and its sender, MSG_TRUNC refused), [`dgram::process_gone`].
//! - [`inet`]: TCP and UDP on loopback, and [`inet::udp_port_open`].
//! - [`pair`]: socketpair(2) between a parent and its child, a half-close told from a
//!   death ([`pair::closed_both_ways`]).
//! - [`wait`]: waits with a real deadline and a caller's "stop?" ([`wait::ready`]), and
//!   SO_RCVTIMEO/SO_SNDTIMEO for callers that loop themselves ([`wait::set_timeouts`]).
//!
//! Each module stands alone but for `server`, which takes `accept` and `peer_cred` from
//! `unix` (and `recv` from `seqpacket`): copy `unix.rs` and `server.rs` for a Unix server, `fdpass.rs` (and `unix.rs`
//! to meet by a path) for fd passing.
//! Nothing here installs a signal handler or keeps process-wide state; the one call that
//! touches process-wide state, [`unix::bind_with`] at a path you chose (the umask), says
//! so. Blocking calls hand EINTR back (as `io::ErrorKind::Interrupted`), unlike std's
//! `accept`, `read_exact` and `write_all`, which retry it.
//!
//! In production: std's `UnixListener`/`TcpStream`/`UdpSocket` or tokio's for the
//! sockets, `interprocess` for local sockets that also work on Windows, `ipc-channel`
//! for typed messages with fd passing.

#![warn(missing_docs)]

pub mod dgram;
pub mod fdpass;
pub mod inet;
pub mod pair;
pub mod seqpacket;
pub mod server;
pub mod unix;
pub mod wait;
