//! A bounded line buffer: split a byte stream into lines ending in `\n`, with a cap on how
//! long one line may grow.
//!
//! The trap it avoids: a peer nobody here wrote (`nc`, `socat`, `cat /dev/zero`) may send
//! bytes with no newline for ever; a reader that appends until it sees one grows without
//! limit and dies under a memory limit, leaving its socket file behind. [`LineBuf`] stops
//! at `cap` bytes with an error that names the cap.
//!
//! It does no I/O itself: [`LineBuf::fill`] hands it one read call (a socket's `read`, a
//! `recv`, a file's), so the same type serves a blocking reader, a poll loop over many
//! clients ([`crate::server`]), or a test.

use std::io;

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
    /// use socket_demo::lines::LineBuf;
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
