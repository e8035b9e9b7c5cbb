//! A Unix stream server for many clients at once: one poll(2) loop over the listener and
//! every connection, each client's lines kept apart in a buffer of its own.
//!
//! The traps it avoids: a server that closes its listener after the first client (it then
//! serves one); blocking reads of one client after another (a quiet client stalls the
//! rest);
//! one shared buffer (two clients' half lines mixed up); a client that never sends `\n`
//! growing memory without limit (each buffer is capped, and only that client is dropped).
//! The caller's `stop()` is asked at least every [`SLICE`].
//!
//! One thread, no signal handler: a Ctrl+C flag of the caller's own is its `stop`.
//!
//! The same loop serves SOCK_SEQPACKET clients ([`Server::seqpacket`]): there each
//! recv(2) is one whole message, so no buffer per client is needed, and a message over
//! the cap is cut by the kernel (MSG_TRUNC) and its client dropped.
//!
//! [`LineBuf`], the capped line buffer, is usable alone: a peer nobody here wrote (`nc`,
//! `socat`, `cat /dev/zero`) may send bytes with no newline for ever, and a reader that
//! appends until it sees one grows without limit. It does no I/O itself:
//! [`LineBuf::fill`] takes one read call (a socket's, a file's, a test's).

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::unix::{accept, peer_cred};

/// The longest poll(2) between two looks at `stop()`.
pub const SLICE: Duration = Duration::from_millis(100);

/// Who a client is: a number of our own (in the order they connected), and the pid and
/// uid the kernel recorded when it connected (SO_PEERCRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientId {
    /// 1 for the first client, 2 for the next...
    pub n: u64,
    /// The client's pid at connect(2) (a snapshot: it may exit, and the pid be reused).
    pub pid: i32,
    /// The client's uid at connect(2).
    pub uid: u32,
}

/// What happened, in the order it happened.
#[derive(Debug)]
pub enum Event<'a> {
    /// A client connected.
    Connected(ClientId),
    /// One whole line from a client, without its `\n` (or its last bytes before EOF); on a
    /// [`Server::seqpacket`], one whole message.
    Line(ClientId, &'a [u8]),
    /// A client is gone: `None` after a clean EOF, else why it was dropped (a line over
    /// the cap, ECONNRESET...). The server goes on with the others.
    Closed(ClientId, Option<io::Error>),
}

struct Client {
    id: ClientId,
    conn: UnixStream,
    lines: LineBuf,
}

/// A listener and its connected clients.
pub struct Server {
    listener: UnixListener,
    clients: Vec<Client>,
    accepted: u64,
    cap: usize,
    /// SOCK_SEQPACKET: one message per recv(2), into this buffer (`cap` + 1 bytes, so
    /// a message over the cap shows as cut). `None`: a stream, split into lines.
    packets: Option<Vec<u8>>,
}

impl Server {
    /// Serves on `listener` (made non-blocking here: poll says when to accept), each
    /// client's lines capped at `max_line` bytes.
    pub fn new(listener: UnixListener, max_line: usize) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            clients: Vec::new(),
            accepted: 0,
            cap: max_line,
            packets: None,
        })
    }

    /// Serves on a SOCK_SEQPACKET `listener` ([`crate::seqpacket::listen`]), each client's
    /// messages at most `max_message` bytes. The fds live in std's Unix stream types, which
    /// only hold them: every call made on them here is accept4(2), recv(2), poll(2).
    ///
    /// # Examples
    /// ```
    /// use nix::sys::socket::UnixAddr;
    /// use socket_demo::{seqpacket, server::{Event, Server}};
    /// let name = format!("socket-demo-doctest-server-{}", std::process::id());
    /// let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
    /// let mut server = Server::seqpacket(seqpacket::listen(&addr).unwrap(), 64).unwrap();
    /// let (a, b) = (seqpacket::connect(&addr).unwrap(), seqpacket::connect(&addr).unwrap());
    /// seqpacket::send(&a, b"no newline, ").unwrap();
    /// seqpacket::send(&b, b"from b").unwrap();
    /// seqpacket::send(&a, b"and another").unwrap();
    /// drop((a, b));
    /// let (mut got, closed) = (Vec::new(), std::cell::Cell::new(0));
    /// server
    ///     .serve(&|| closed.get() == 2, |event| match event {
    ///         Event::Line(who, m) => got.push((who.n, String::from_utf8_lossy(m).into_owned())),
    ///         Event::Closed(..) => closed.set(closed.get() + 1),
    ///         Event::Connected(_) => {}
    ///     })
    ///     .unwrap();
    /// got.sort();
    /// assert_eq!(got[0], (1, "and another".to_string())); // each message whole, on its own
    /// assert_eq!(got.len(), 3);
    /// ```
    pub fn seqpacket(listener: OwnedFd, max_message: usize) -> io::Result<Server> {
        let mut server = Server::new(UnixListener::from(listener), max_message)?;
        server.packets = Some(vec![0; max_message + 1]);
        Ok(server)
    }

    /// How many clients are connected now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Accepts and reads until `stop()` returns true (it is asked at least every
    /// [`SLICE`], and after each poll(2)'s batch of events), calling `on` for each event. Returns `Ok` when
    /// stopped; an error only for the listener itself. Connections still open when it
    /// stops stay open until the `Server` is dropped.
    ///
    /// # Examples
    /// Three clients at once, their lines interleaved on the wire, kept apart here:
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use socket_demo::server::{Event, Server};
    /// let (listener, file) = socket_demo::unix::listen(None, "doctest-server").unwrap();
    /// let mut server = Server::new(listener, 1024).unwrap();
    /// let mut clients: Vec<UnixStream> =
    ///     (0..3).map(|_| UnixStream::connect(file.path()).unwrap()).collect();
    /// for (i, c) in clients.iter_mut().enumerate() {
    ///     write!(c, "half of {i}, ").unwrap(); // no newline yet
    /// }
    /// for (i, c) in clients.iter_mut().enumerate() {
    ///     writeln!(c, "rest of {i}").unwrap();
    /// }
    /// drop(clients); // EOF for all three
    /// let (mut lines, mut closed) = (Vec::new(), 0);
    /// let stop = std::cell::Cell::new(false);
    /// server
    ///     .serve(&|| stop.get(), |event| match event {
    ///         Event::Line(who, line) => lines.push((who.n, String::from_utf8_lossy(line).into_owned())),
    ///         Event::Closed(_, error) => {
    ///             assert!(error.is_none());
    ///             closed += 1;
    ///             stop.set(closed == 3);
    ///         }
    ///         Event::Connected(who) => assert_eq!(who.pid, std::process::id() as i32),
    ///     })
    ///     .unwrap();
    /// lines.sort();
    /// assert_eq!(lines[1], (2, "half of 1, rest of 1".to_string()));
    /// assert_eq!(lines.len(), 3);
    /// ```
    pub fn serve(
        &mut self,
        stop: &dyn Fn() -> bool,
        mut on: impl FnMut(Event<'_>),
    ) -> io::Result<()> {
        while !stop() {
            let mut fds = Vec::with_capacity(self.clients.len() + 1);
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            for c in &self.clients {
                fds.push(PollFd::new(c.conn.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(SLICE.as_millis() as u16)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_none_or(|r| !r.is_empty()))
                .collect();
            drop(fds);
            // Clients first, from the last, so removing one keeps the others' indexes.
            for i in (0..self.clients.len()).rev() {
                if ready[i + 1] {
                    self.read_client(i, &mut on);
                }
            }
            if ready[0] {
                self.accept_all(&mut on)?;
            }
        }
        Ok(())
    }

    /// Accepts every connection waiting in the backlog.
    fn accept_all(&mut self, on: &mut impl FnMut(Event<'_>)) -> io::Result<()> {
        loop {
            let conn = match accept(&self.listener) {
                Ok(conn) => UnixStream::from(conn),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
                // The client gave up between connect and accept: not our error.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => return Err(e),
            };
            self.accepted += 1;
            let cred = peer_cred(&conn)?;
            let id = ClientId {
                n: self.accepted,
                pid: cred.pid(),
                uid: cred.uid(),
            };
            on(Event::Connected(id));
            self.clients.push(Client {
                id,
                conn,
                // A seqpacket client needs no line buffer of its own.
                lines: LineBuf::new(if self.packets.is_some() { 1 } else { self.cap }),
            });
        }
    }

    /// One read(2) for client `i` (poll said it would not block), then its whole lines;
    /// at EOF or an error, its last line and `Closed`, and it is dropped.
    fn read_client(&mut self, i: usize, on: &mut impl FnMut(Event<'_>)) {
        if self.packets.is_some() {
            return self.read_packet(i, on);
        }
        let c = &mut self.clients[i];
        let conn = &c.conn;
        let got = c.lines.fill(|buf| (&*conn).read(buf));
        let id = c.id;
        match got {
            Ok(0) => {}
            Ok(_) => {
                while let Some(line) = c.lines.next_line() {
                    on(Event::Line(id, line));
                }
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => {
                self.clients.swap_remove(i);
                on(Event::Closed(id, Some(e)));
                return;
            }
        }
        if let Some(last) = c.lines.rest() {
            on(Event::Line(id, last));
        }
        self.clients.swap_remove(i);
        on(Event::Closed(id, None));
    }
}

impl Server {
    /// One recv(2) for seqpacket client `i`: one whole message; at EOF, a message over
    /// the cap, or an error, `Closed`, and it is dropped.
    fn read_packet(&mut self, i: usize, on: &mut impl FnMut(Event<'_>)) {
        let Some(buf) = self.packets.as_mut() else {
            return;
        };
        let id = self.clients[i].id;
        let why = match crate::seqpacket::recv(&self.clients[i].conn, buf) {
            Ok(got) if got.len == 0 => None,
            Ok(got) if got.truncated => Some(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a message of {} bytes, over the {}-byte cap: the kernel cut it \
                     (MSG_TRUNC); stopped",
                    got.whole, self.cap
                ),
            )),
            Ok(got) => return on(Event::Line(id, &buf[..got.len])),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                return;
            }
            Err(e) => Some(e),
        };
        self.clients.swap_remove(i);
        on(Event::Closed(id, why));
    }
}

/// The cap the demo uses: 1 MiB, far more than any line a person types.
pub const MAX_LINE: usize = 1024 * 1024;

/// The bytes of one stream read so far, split into lines on demand.
#[derive(Debug)]
pub struct LineBuf {
    buf: Vec<u8>,
    start: usize, // the next line begins here
    end: usize,   // bytes read so far end here
    last_read: usize,
    cap: usize,
}

impl LineBuf {
    /// An empty buffer whose lines may be at most `cap` bytes (the `\n` not counted).
    /// It starts at 64 KiB (or `cap`, if smaller) and grows, doubling, up to `cap`.
    pub fn new(cap: usize) -> LineBuf {
        LineBuf {
            buf: vec![0; cap.clamp(1, 64 * 1024)],
            start: 0,
            end: 0,
            last_read: 0,
            cap: cap.max(1),
        }
    }

    /// Makes room, then calls `read` once with the free part of the buffer and keeps
    /// what it returned. Returns that count: 0 is EOF. Fails with `InvalidData` (buffer
    /// left as it was) when the line that is buffered has reached `cap` with no `\n`:
    /// take the whole lines out ([`LineBuf::next_line`]) before each `fill`.
    ///
    /// # Examples
    /// ```
    /// use socket_demo::server::LineBuf;
    /// let mut lines = LineBuf::new(16);
    /// let mut input: &[u8] = b"hi\nthere\n";
    /// lines.fill(|buf| std::io::Read::read(&mut input, buf)).unwrap();
    /// assert_eq!(lines.next_line(), Some(&b"hi"[..]));
    /// assert_eq!(lines.next_line(), Some(&b"there"[..]));
    /// let mut endless: &[u8] = &[b'x'; 100];
    /// let mut capped = LineBuf::new(8);
    /// capped.fill(|buf| std::io::Read::read(&mut endless, buf)).unwrap();
    /// let err = capped.fill(|buf| std::io::Read::read(&mut endless, buf)).unwrap_err();
    /// assert!(err.to_string().contains("longer than 8 bytes"));
    /// ```
    pub fn fill(&mut self, read: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<usize> {
        // Move the partial line to the front, or grow for a long one.
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end >= self.cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a line longer than {} bytes ({}) with no '\\n': not a text message; \
                     stopped rather than buffer without limit",
                    self.cap,
                    in_units(self.cap)
                ),
            ));
        }
        if self.end == self.buf.len() {
            self.buf.resize((self.buf.len() * 2).min(self.cap), 0);
        }
        let n = read(&mut self.buf[self.end..])?;
        self.end += n;
        self.last_read = n;
        Ok(n)
    }

    /// The bytes the last [`LineBuf::fill`] added.
    pub fn last_read(&self) -> &[u8] {
        &self.buf[self.end - self.last_read..self.end]
    }

    /// True if a whole line is buffered.
    pub fn has_line(&self) -> bool {
        self.buf[self.start..self.end].contains(&b'\n')
    }

    /// The next whole line already buffered, without its `\n`.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let i = self.buf[self.start..self.end]
            .iter()
            .position(|&b| b == b'\n')?;
        let line = self.start..self.start + i;
        self.start += i + 1;
        Some(&self.buf[line])
    }

    /// After EOF: a last line with no `\n` (`printf hi | nc ...`), if any.
    pub fn rest(&mut self) -> Option<&[u8]> {
        let line = self.start..self.end;
        self.start = self.end;
        (!line.is_empty()).then(|| &self.buf[line])
    }
}

/// `1 MiB`, `64 KiB`, `100 bytes`: the cap in the error, in words.
fn in_units(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Write;

    /// A client that sends more than the cap with no newline is dropped with the cap's
    /// error; another client's line still comes through, and the server goes on.
    #[test]
    fn a_client_over_the_cap_is_dropped_and_the_others_go_on() {
        let (listener, file) = crate::unix::listen(None, "server-test").unwrap();
        let mut server = Server::new(listener, 1024).unwrap();
        let mut flood = UnixStream::connect(file.path()).unwrap();
        let mut polite = UnixStream::connect(file.path()).unwrap();
        flood.write_all(&[b'x'; 4096]).unwrap();
        polite.write_all(b"hello\n").unwrap();
        let (dropped, lines) = (Cell::new(None), Cell::new(0));
        server
            .serve(
                &|| dropped.get().is_some() && lines.get() == 1,
                |event| match event {
                    Event::Closed(who, Some(e)) => {
                        assert!(e.to_string().contains("longer than 1024 bytes"), "{e}");
                        dropped.set(Some(who.n));
                    }
                    Event::Line(who, line) => {
                        assert_eq!((who.n, line), (2, &b"hello"[..]));
                        lines.set(lines.get() + 1);
                    }
                    _ => {}
                },
            )
            .unwrap();
        assert_eq!(dropped.get(), Some(1));
        assert_eq!(server.clients(), 1);
    }
}
