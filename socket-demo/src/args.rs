//! The command line (DESIGN §3), parsed and checked in full before anything is created,
//! so bad usage (exit 2) never leaves a socket file or a directory behind.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use nix::unistd::{SysconfVar, sysconf};

pub const USAGE: &str = "\
usage: socket-demo [FLAVOUR] [OPTIONS] [MESSAGE...]            both sides, narrated
       socket-demo reader [FLAVOUR] [OPTIONS]                  the server: bind, wait, print
       socket-demo writer [FLAVOUR] [OPTIONS] [MESSAGE...]     the client (no MESSAGE: stdin lines)

flavours:
  unix        (default) Unix stream socket, a file of type s; the server sees the client's pid
  unix-dgram  Unix datagram socket: each send is one message, the boundaries are kept
  seqpacket   Unix SOCK_SEQPACKET: a connection, with EOF, that keeps the boundaries too
  tcp         TCP on 127.0.0.1: a stream, like unix, reachable from other machines
  udp         UDP on 127.0.0.1: datagrams with no connection and no flow control
  pair        socketpair(2) between a parent and its child: one channel, both ways at once
  fdpass      the writer sends an open file, then a memfd, over a Unix socket (SCM_RIGHTS)

options:
  --path PATH          the Unix socket file (unix, unix-dgram, seqpacket, fdpass): the reader
                       creates it (default: in a private directory), the writer connects to it
  --path @NAME         unix, unix-dgram, seqpacket: an abstract name instead (Linux): no file,
                       free again once the reader's socket closes; no permissions: anyone
                       on this host (network namespace) may connect
  --addr HOST:PORT     the TCP/UDP address (default 127.0.0.1:0, port 0: the kernel picks one)
  --file PATH          fdpass: send this file's open fd instead of a file of the messages
  --count N --size B   bulk: N messages of B bytes, every byte and the order checked
  --ping N [--size B]  N round trips of B bytes (default 100)
  --cpus W,R           with a workload: the writer on CPU W, the reader on CPU R
  --clients N          reader unix, seqpacket: serve N clients at once (one poll(2) loop),
                       then exit; each line labelled with its sender's pid (SO_PEERCRED)
  -h, --help           print this text
  --                   everything after it is a message, even if it starts with '-'

two terminals:
  socket-demo reader tcp --addr 127.0.0.1:7000   then: socket-demo writer tcp --addr 127.0.0.1:7000 hi
                                                 or:   nc -N 127.0.0.1 7000
  socket-demo reader unix --path /tmp/s          then: socat - UNIX-CONNECT:/tmp/s
  socket-demo reader seqpacket --path @demo      then: socket-demo writer seqpacket --path @demo a b
  nc -lU /tmp/s                                  then: socket-demo writer unix --path /tmp/s hi
";

/// The most a stream workload message may be: each side keeps one buffer this big.
const MAX_STREAM_SIZE: usize = 64 << 20;
/// UDP over IPv4: 65535 bytes of IP packet, less 20 of IP header and 8 of UDP header.
pub const MAX_UDP_SIZE: usize = 65507;
/// The most any UDP datagram carries: over IPv6 the 20 bytes of IP header do not count
/// (65535 less the 8 of the UDP header). The reader's buffer is this big, so nothing it
/// receives is cut.
pub const MAX_UDP_PAYLOAD: usize = 65527;
/// A Unix datagram must fit the sender's send buffer (SO_SNDBUF), less 32 bytes the kernel
/// keeps for itself. The send buffer starts at net.core.wmem_default.
const WMEM_DEFAULT: &str = "/proc/sys/net/core/wmem_default";
/// sun_path holds 108 bytes, the last one the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const DEFAULT_PING_SIZE: usize = 100;
/// The writer keeps every round-trip time (16 bytes each) to find the percentiles, in a
/// Vec reserved up front: at most 1.6 GB.
const MAX_PINGS: u64 = 100_000_000;
/// The datagram reader keeps one bit per message, to catch a duplicate: at most 12.5 MB.
const MAX_COUNT: u64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flavour {
    Unix,
    UnixDgram,
    Seqpacket,
    Tcp,
    Udp,
    Pair,
    Fdpass,
}

impl Flavour {
    fn from_word(word: &str) -> Option<Flavour> {
        Some(match word {
            "unix" => Flavour::Unix,
            "unix-dgram" => Flavour::UnixDgram,
            "seqpacket" => Flavour::Seqpacket,
            "tcp" => Flavour::Tcp,
            "udp" => Flavour::Udp,
            "pair" => Flavour::Pair,
            "fdpass" => Flavour::Fdpass,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Unix => "unix",
            Flavour::UnixDgram => "unix-dgram",
            Flavour::Seqpacket => "seqpacket",
            Flavour::Tcp => "tcp",
            Flavour::Udp => "udp",
            Flavour::Pair => "pair",
            Flavour::Fdpass => "fdpass",
        }
    }

    /// A byte stream: messages are lines, the end is EOF. Otherwise messages: each message
    /// is one datagram (the end: one zero-length datagram, DESIGN §3, wire format) or one
    /// seqpacket message (the end: EOF; a zero-length message would read as EOF).
    pub fn is_stream(self) -> bool {
        !matches!(self, Flavour::UnixDgram | Flavour::Udp | Flavour::Seqpacket)
    }

    fn uses_path(self) -> bool {
        matches!(
            self,
            Flavour::Unix | Flavour::UnixDgram | Flavour::Seqpacket | Flavour::Fdpass
        )
    }

    /// Can meet at an abstract name (`--path @NAME`).
    fn takes_abstract(self) -> bool {
        matches!(
            self,
            Flavour::Unix | Flavour::UnixDgram | Flavour::Seqpacket
        )
    }

    fn uses_addr(self) -> bool {
        matches!(self, Flavour::Tcp | Flavour::Udp)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// The narrated default run: this process is the reader and starts the writer.
    Both,
    Reader,
    Writer,
}

/// Where the two sides meet.
#[derive(Debug, Clone, PartialEq)]
pub enum Meet {
    Path(PathBuf),
    Addr(SocketAddr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Text messages: the MESSAGE arguments (none: the writer reads stdin lines, the
    /// default run uses a few of its own).
    Text(Vec<String>),
    Bulk {
        count: u64,
        size: usize,
    },
    Ping {
        count: u64,
        size: usize,
    },
}

/// `--cpus W,R`: the CPU for the writer and the CPU for the reader. Where the two sides
/// run changes what a wake-up costs; the benchmark measures both placements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpus {
    pub writer: usize,
    pub reader: usize,
}

#[derive(Debug, PartialEq)]
pub struct Args {
    pub role: Role,
    pub flavour: Flavour,
    pub meet: Option<Meet>,
    pub workload: Workload,
    /// fdpass: an existing file to send.
    pub file: Option<PathBuf>,
    pub cpus: Option<Cpus>,
    /// reader unix: how many clients to serve at once.
    pub clients: Option<u64>,
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Help,
    Run(Args),
}

/// The options as typed, before they are checked against each other.
#[derive(Default)]
struct Raw {
    flavour: Option<Flavour>,
    path: Option<PathBuf>,
    addr: Option<String>,
    file: Option<PathBuf>,
    cpus: Option<Cpus>,
    clients: Option<u64>,
    count: Option<u64>,
    ping: Option<u64>,
    size: Option<u64>,
    messages: Vec<String>,
}

/// Parses the arguments after the program name. `Err` is one line saying what is wrong.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut words = Vec::new();
    for arg in args {
        words.push(
            arg.into_string()
                .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?,
        );
    }
    let mut words = words.into_iter().peekable();
    let role = match words.peek().map(String::as_str) {
        Some("reader") => Role::Reader,
        Some("writer") => Role::Writer,
        _ => Role::Both,
    };
    if role != Role::Both {
        words.next();
    }

    let mut raw = Raw::default();
    let mut positional_seen = false;
    while let Some(word) = words.next() {
        match word.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--" => raw.messages.extend(words.by_ref()),
            "--path" => set(&mut raw.path, "--path", value(&mut words, "--path")?.into())?,
            "--addr" => set(&mut raw.addr, "--addr", value(&mut words, "--addr")?)?,
            "--file" => set(&mut raw.file, "--file", value(&mut words, "--file")?.into())?,
            "--count" => set(&mut raw.count, "--count", number(&mut words, "--count")?)?,
            "--ping" => set(&mut raw.ping, "--ping", number(&mut words, "--ping")?)?,
            "--size" => set(&mut raw.size, "--size", number(&mut words, "--size")?)?,
            "--cpus" => set(&mut raw.cpus, "--cpus", cpu_pair(&mut words)?)?,
            "--clients" => set(
                &mut raw.clients,
                "--clients",
                number(&mut words, "--clients")?,
            )?,
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option {flag}"));
            }
            _ => {
                // The first positional word names the flavour, if it is one.
                match Flavour::from_word(&word) {
                    Some(flavour) if !positional_seen => raw.flavour = Some(flavour),
                    _ => raw.messages.push(word),
                }
                positional_seen = true;
            }
        }
    }
    check(role, raw).map(Parsed::Run)
}

/// Checks the options against each other, the role and the flavour.
fn check(role: Role, raw: Raw) -> Result<Args, String> {
    let flavour = raw.flavour.unwrap_or(Flavour::Unix);
    let name = flavour.name();
    let workload = workload(flavour, &raw)?;

    if flavour == Flavour::Pair && role != Role::Both {
        return Err(
            "pair has no reader or writer role: a socketpair has no name to meet at, it \
             joins processes that hold its fds, here a parent and the child it forks (for two \
             terminals, use unix)"
                .into(),
        );
    }
    if matches!(flavour, Flavour::Pair | Flavour::Fdpass) && !matches!(workload, Workload::Text(_))
    {
        return Err(format!(
            "{name} takes no workload: --count and --ping are for unix, unix-dgram, seqpacket, tcp and udp"
        ));
    }
    if raw.path.is_some() && !flavour.uses_path() {
        return Err(format!(
            "--path is for unix, unix-dgram, seqpacket and fdpass; {name} uses --addr or nothing"
        ));
    }
    if raw.path.as_deref().is_some_and(|p| p.as_os_str() == "@") {
        return Err("--path @: an abstract name needs at least one character after the @".into());
    }
    let is_abstract = raw
        .path
        .as_deref()
        .is_some_and(|p| socket_demo::unix::abstract_name(p).is_some());
    if is_abstract && !flavour.takes_abstract() {
        return Err(format!(
            "--path @NAME (an abstract name) is for unix, unix-dgram and seqpacket; {name} \
             needs a file: give a path"
        ));
    }
    if raw.addr.is_some() && !flavour.uses_addr() {
        return Err(format!(
            "--addr is for tcp and udp; {name} uses --path or nothing"
        ));
    }
    if raw.file.is_some() && (flavour != Flavour::Fdpass || role == Role::Reader) {
        return Err("--file is for the fdpass writer (or the fdpass default run)".into());
    }
    if raw.file.is_some() && !raw.messages.is_empty() {
        return Err("--file sends an existing file: give no messages with it".into());
    }
    if role == Role::Reader {
        if let Some(first) = raw.messages.first() {
            return Err(format!(
                "the reader takes no messages (got {}): give them to the writer",
                shown(first)
            ));
        }
    }
    check_messages(flavour, &raw.messages)?;
    if raw.clients.is_some()
        && (role != Role::Reader
            || !matches!(flavour, Flavour::Unix | Flavour::Seqpacket)
            || workload != Workload::Text(vec![]))
    {
        return Err(
            "--clients is for the unix or seqpacket reader with text (no --count, no --ping)"
                .into(),
        );
    }
    if raw.clients == Some(0) {
        return Err("--clients must be at least 1".into());
    }

    let meet = match (raw.path, raw.addr) {
        (Some(path), _) => Some(Meet::Path(checked_path(path)?)),
        (None, Some(addr)) => Some(Meet::Addr(checked_addr(&addr, role)?)),
        (None, None) => None,
    };
    if role == Role::Writer && meet.is_none() {
        let option = if flavour.uses_addr() {
            "--addr HOST:PORT"
        } else {
            "--path PATH"
        };
        return Err(format!(
            "the writer needs {option}: where the reader listens (the reader prints it)"
        ));
    }
    Ok(Args {
        role,
        flavour,
        meet,
        workload,
        file: raw.file,
        cpus: raw.cpus,
        clients: raw.clients,
    })
}

fn workload(flavour: Flavour, raw: &Raw) -> Result<Workload, String> {
    let workload = match (raw.count, raw.ping) {
        (Some(_), Some(_)) => {
            return Err("--count and --ping are two different workloads: give one".into());
        }
        (Some(count), None) if count > MAX_COUNT => {
            return Err(format!("--count {count}: at most {MAX_COUNT} messages"));
        }
        (None, Some(count)) if count > MAX_PINGS => {
            return Err(format!("--ping {count}: at most {MAX_PINGS} round trips"));
        }
        (Some(count), None) => {
            let size = raw.size.ok_or("--count needs --size BYTES")?;
            Workload::Bulk {
                count,
                size: checked_size(flavour, size)?,
            }
        }
        (None, Some(count)) => Workload::Ping {
            count,
            size: checked_size(flavour, raw.size.unwrap_or(DEFAULT_PING_SIZE as u64))?,
        },
        (None, None) if raw.size.is_some() || raw.cpus.is_some() => {
            return Err("--size and --cpus need a workload: --count N or --ping N".into());
        }
        (None, None) => Workload::Text(raw.messages.clone()),
    };
    if let (Some(first), false) = (raw.messages.first(), matches!(workload, Workload::Text(_))) {
        return Err(format!(
            "message {} given with --count/--ping: a workload sends its own data",
            shown(first)
        ));
    }
    Ok(workload)
}

/// On a stream the newline ends a message; on a datagram socket a zero-length datagram
/// ends the conversation, and a message must fit in one datagram.
fn check_messages(flavour: Flavour, messages: &[String]) -> Result<(), String> {
    if flavour.is_stream() {
        if let Some(text) = messages.iter().find(|m| m.contains('\n')) {
            return Err(format!(
                "message {} contains a newline: on a byte stream the newline separates messages",
                shown(text)
            ));
        }
        return Ok(());
    }
    if messages.iter().any(String::is_empty) && flavour == Flavour::Seqpacket {
        return Err(
            "an empty message: on a seqpacket socket recv(2) returns 0 for it, exactly as at EOF"
                .into(),
        );
    }
    if messages.iter().any(String::is_empty) {
        return Err(
            "an empty message: on a datagram socket a zero-length datagram means \"the end\""
                .into(),
        );
    }
    let (max, why) = largest(flavour);
    if let Some(text) = messages.iter().find(|m| m.len() > max) {
        return Err(format!(
            "message {} is {} bytes, too big for one datagram: {why} {max} bytes",
            shown(text),
            text.len()
        ));
    }
    Ok(())
}

/// A message as an error names it: quoted, and cut if long (it may be 70 KB).
fn shown(text: &str) -> String {
    crate::stream::shown(text.as_bytes())
}

/// The largest message each kind of socket can carry in one piece, and why.
fn largest(flavour: Flavour) -> (usize, String) {
    match flavour {
        Flavour::Udp => (MAX_UDP_SIZE, "a UDP datagram carries at most".to_string()),
        Flavour::UnixDgram => (
            max_unix_datagram(),
            format!("a Unix datagram must fit the send buffer ({WMEM_DEFAULT} - 32):"),
        ),
        Flavour::Seqpacket => (
            max_unix_datagram(),
            format!("a seqpacket message must fit the send buffer ({WMEM_DEFAULT} - 32):"),
        ),
        _ => (MAX_STREAM_SIZE, "at most".to_string()),
    }
}

fn checked_size(flavour: Flavour, size: u64) -> Result<usize, String> {
    let (max, why) = largest(flavour);
    match usize::try_from(size) {
        Ok(s) if s <= max => Ok(s),
        _ => Err(format!("--size {size}: {why} {max} bytes")),
    }
}

pub fn max_unix_datagram() -> usize {
    let wmem = std::fs::read_to_string(WMEM_DEFAULT)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(212_992);
    wmem.saturating_sub(32)
}

fn checked_path(path: PathBuf) -> Result<PathBuf, String> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "--path is {len} bytes long: a Unix socket path holds at most {MAX_SOCKET_PATH}"
        ));
    }
    if len == 0 {
        return Err("--path is empty".into());
    }
    Ok(path)
}

fn checked_addr(text: &str, role: Role) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("--addr {text}: not an IP address and port, like 127.0.0.1:7000"))?;
    if role == Role::Writer && addr.port() == 0 {
        return Err(format!(
            "--addr {text}: the writer needs the reader's real port (the reader prints it)"
        ));
    }
    Ok(addr)
}

/// Parses `W,R`, two CPU numbers this machine has.
fn cpu_pair(words: &mut impl Iterator<Item = String>) -> Result<Cpus, String> {
    let text = value(words, "--cpus")?;
    // The machine's CPUs, not this process's share: the default run's writer is started
    // already pinned to the reader's CPU.
    let online = sysconf(SysconfVar::_NPROCESSORS_ONLN).ok().flatten();
    let cpus = online.map_or(1, |n| n.max(1) as usize);
    let cpu = |s: &str| match s.parse::<usize>() {
        Ok(c) if c < cpus => Ok(c),
        _ => Err(format!(
            "--cpus {text}: CPU numbers go from 0 to {}",
            cpus - 1
        )),
    };
    match text.split_once(',') {
        Some((w, r)) => Ok(Cpus {
            writer: cpu(w)?,
            reader: cpu(r)?,
        }),
        None => Err(format!("--cpus {text}: expected WRITER,READER, like 0,1")),
    }
}

fn set<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), String> {
    match slot.replace(value) {
        Some(_) => Err(format!("{flag} given twice")),
        None => Ok(()),
    }
}

fn value(words: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
    match words.next() {
        Some(v) if !v.starts_with("--") => Ok(v),
        _ => Err(format!("{flag} needs a value")),
    }
}

fn number(words: &mut impl Iterator<Item = String>, flag: &str) -> Result<u64, String> {
    let text = value(words, flag)?;
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{flag} {text}: not a whole number of at least 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Parsed, String> {
        parse(line.split_whitespace().map(OsString::from))
    }

    fn args(line: &str) -> Args {
        match parse_line(line) {
            Ok(Parsed::Run(args)) => args,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn the_first_positional_word_names_the_flavour() {
        let a = args("writer tcp --addr 127.0.0.1:7000 hello tcp");
        assert_eq!(a.role, Role::Writer);
        assert_eq!(a.flavour, Flavour::Tcp);
        assert_eq!(
            a.workload,
            Workload::Text(vec!["hello".into(), "tcp".into()])
        );
        let a = args("hello udp");
        assert_eq!((a.role, a.flavour), (Role::Both, Flavour::Unix));
        assert_eq!(
            a.workload,
            Workload::Text(vec!["hello".into(), "udp".into()])
        );
        let a = args("--count 3 --size 8 udp --cpus 0,0");
        assert_eq!(a.flavour, Flavour::Udp);
        assert_eq!(a.workload, Workload::Bulk { count: 3, size: 8 });
        assert_eq!(
            a.cpus,
            Some(Cpus {
                writer: 0,
                reader: 0
            })
        );
    }

    #[test]
    fn workloads_and_their_limits() {
        assert_eq!(
            args("unix-dgram --ping 5").workload,
            Workload::Ping {
                count: 5,
                size: 100
            }
        );
        assert!(parse_line("udp --count 1 --size 65507").is_ok());
        assert!(parse_line("udp --count 1 --size 65508").is_err());
        assert!(parse_line("tcp --count 1 --size 65508").is_ok());
        // What is kept per round trip or per message is bounded before anything starts.
        assert!(parse_line("udp --ping 100000000").is_ok());
        assert!(parse_line("udp --ping 100000001").is_err());
        assert!(parse_line("unix-dgram --count 100000000 --size 1").is_ok());
        assert!(parse_line("unix-dgram --count 100000001 --size 1").is_err());
    }

    #[test]
    fn a_message_must_fit_one_datagram() {
        let fits = "x".repeat(MAX_UDP_SIZE);
        assert!(parse(["udp".into(), fits.into()]).is_ok());
        let too_big = "x".repeat(MAX_UDP_SIZE + 1);
        let error = parse(["udp".into(), too_big.clone().into()]).unwrap_err();
        assert!(error.contains("65508 bytes, too big"), "{error}");
        assert!(
            error.len() < 300,
            "the message is named, not echoed: {error}"
        );
        // A stream has no such limit; the pair's parent reads while it writes.
        assert!(parse(["pair".into(), too_big.into()]).is_ok());
    }

    #[test]
    fn bad_usage_is_caught_before_anything_is_created() {
        for bad in [
            "--bogus",
            "--count 3",
            "--count 0 --size 1",
            "--count x --size 1",
            "--size 5",
            "--ping 1 --count 1 --size 1",
            "--ping 1 hello",
            "reader hello",
            "writer unix hello",
            "writer tcp --addr 127.0.0.1:0 hi",
            "reader tcp --addr localhost",
            "reader tcp --path /tmp/x",
            "reader unix --addr 127.0.0.1:0",
            "reader pair",
            "reader tcp --path @x",
            "fdpass --path @x",
            "reader seqpacket --path @",
            "writer seqpacket --path @x --clients 2",
            "reader unix-dgram --clients 2",
            "reader seqpacket --clients 2 --ping 3",
            "pair --ping 3",
            "fdpass --count 1 --size 1",
            "reader fdpass --file /etc/hostname",
            "unix --file /etc/hostname",
            "--path",
            "--cpus 0,0",
            "--ping 3 --cpus 0",
            "--ping 3 --cpus 0,99999",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} should be bad usage");
        }
        let long = format!("reader --path /{}", "x".repeat(107));
        assert!(parse_line(&long).is_err());
        let newline = parse(["tcp", "two\nlines"].map(OsString::from));
        assert!(newline.is_err());
        let newline = parse(["udp", "two\nlines"].map(OsString::from));
        assert!(newline.is_ok(), "a datagram keeps its newlines");
        let empty = parse(["unix-dgram", ""].map(OsString::from));
        assert!(empty.is_err());
        let empty = parse(["seqpacket", ""].map(OsString::from));
        assert!(empty.is_err());
        assert!(parse_line("reader unix --path @x --clients 2").is_ok());
        assert!(parse_line("reader seqpacket --clients 2").is_ok());
        assert!(parse_line("unix-dgram --path @x").is_ok());
    }
}
