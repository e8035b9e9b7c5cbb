//! The command line (DESIGN §3): the usage text, the roles, the meeting point (a POSIX
//! name or a System V key), the workload, and their checks. A bad command line is one
//! `Err` line; `main` prints it with the usage and exits 2, before anything exists.

use std::io::Write as _;
use std::process::ExitCode;

use crate::{posix, segment, sysv};

pub const USAGE: &str = "\
usage: shm-demo [posix|sysv|memfd] [OPTIONS] [MESSAGE...]
                                                        reader and writer as two processes, narrated
       shm-demo reader [posix|sysv] [OPTIONS]           create the segment, print what arrives
       shm-demo writer [posix|sysv] --name /NAME | --key KEY [OPTIONS] [MESSAGE...]
                                                        send to it (no MESSAGE: each line of stdin,
                                                        at most 4088 bytes)

  posix    (default) shm_open + ftruncate + mmap; POSIX semaphores inside the segment
  sysv     shmget + shmat; a System V semaphore set with the same key
  memfd    memfd_create: no name, nothing in /dev/shm; sealed (F_SEAL_SHRINK|F_SEAL_GROW,
           F_SEAL_SEAL) so nobody can shrink it; the writer is a forked child that
           inherits the fd. Default run only: for unrelated processes, socket-demo fdpass

options:
  --name /NAME             posix: the object /dev/shm/NAME (default /shm-demo-PID)
  --key KEY                sysv: the key, decimal or 0x hex (default 0x53000000 + PID)
  --count N --size BYTES   bulk: N messages through a ring of slots, every byte checked
  --ping N [--size BYTES]  N round trips of BYTES (default 100), on two semaphores
  --spin                   with --ping: spin on atomics in the segment, no system call
                           per round trip (the fast path; semaphores are the default);
                           with --count: a ring on two atomic indices, each side spinning
                           up to 50 µs before it sleeps on a semaphore
  --cpus W,R               default run with a workload: writer on CPU W, reader on CPU R
  -h, --help               this text
  --                       everything after it is a message

Start the reader and the writer with the same workload options.
two terminals:
  shm-demo reader --name /demo            then: shm-demo writer --name /demo hello
  shm-demo reader sysv --key 0x1234       then: shm-demo writer sysv --key 0x1234 hello
";

/// The largest message a workload accepts.
const MAX_SIZE: usize = 64 << 20;
/// The most round trips `--ping` takes: the writer keeps each one's time (16 bytes)
/// for the percentiles, in a Vec allocated before the first one (1.6 GB at most).
const MAX_PINGS: u64 = 100_000_000;
/// A ping's message size when `--size` is not given (DESIGN §3).
const DEFAULT_PING_SIZE: usize = 100;
/// Without --key: this plus the pid (pids stay below 2^22 on Linux).
const DEFAULT_KEY_BASE: i32 = 0x5300_0000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// The narrated default run: this process is the reader and forks the writer.
    Both,
    Reader,
    Writer,
}

/// Where the two sides meet.
#[derive(Debug, Clone, PartialEq)]
pub enum Meeting {
    /// A POSIX name, `/NAME`: the file /dev/shm/NAME.
    Posix(String),
    /// A System V key: the segment's and the semaphore set's.
    Sysv(i32),
    /// No meeting point: a memfd has no name; the writer, forked, inherits its fd.
    Memfd,
}

impl Meeting {
    /// The flavour word and option that name this meeting point on a command line.
    pub fn args(&self) -> String {
        match self {
            Meeting::Posix(name) => format!("posix --name {name}"),
            Meeting::Sysv(key) => format!("sysv --key {}", sysv::hex_key(*key)),
            Meeting::Memfd => "memfd".into(),
        }
    }
}

/// What the run does: narrate some messages, or run a measured workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Text messages (none given: the writer role reads stdin, the default run uses
    /// its own).
    Text(Vec<String>),
    Bulk {
        count: u64,
        size: usize,
        /// `--spin`: the spinning ring (`shm_demo::spin`), not the semaphore ring.
        spin: bool,
    },
    Ping {
        count: u64,
        size: usize,
        spin: bool,
    },
}

impl Workload {
    /// The options that select this workload, for the command a reader prints.
    pub fn args(&self) -> String {
        match self {
            Workload::Text(_) => String::new(),
            Workload::Bulk { count, size, spin } => {
                let spin = if *spin { " --spin" } else { "" };
                format!(" --count {count} --size {size}{spin}")
            }
            Workload::Ping { count, size, spin } => {
                let spin = if *spin { " --spin" } else { "" };
                format!(" --ping {count} --size {size}{spin}")
            }
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct Args {
    pub role: Role,
    pub meeting: Meeting,
    pub workload: Workload,
    pub cpus: Option<Cpus>,
}

/// `--cpus W,R`: where the writer and the reader run. A wake-up that crosses CPUs
/// costs more than one on the same CPU; the benchmark measures both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpus {
    pub writer: usize,
    pub reader: usize,
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Help,
    Run(Args),
}

pub fn bad_usage(problem: &str) -> ExitCode {
    _ = write!(std::io::stderr(), "error: {problem}\n\n{USAGE}");
    ExitCode::from(2)
}

/// Sizes against the kernel's limits, before anything exists (exit 2, nothing made).
pub fn check_limits(args: &Args) -> Result<(), String> {
    let len = segment::Layout::for_workload(&args.workload).len();
    match args.meeting {
        Meeting::Posix(_) => posix::check_size(len),
        Meeting::Sysv(_) => sysv::check_size(len),
        // Not in /dev/shm, so no statvfs to check against: too little memory is an
        // error at posix_fallocate (memfd::set_size), before the first message.
        Meeting::Memfd => Ok(()),
    }
}

/// The options as typed, before they are checked against each other.
#[derive(Default)]
struct Raw {
    name: Option<String>,
    key: Option<i32>,
    count: Option<u64>,
    ping: Option<u64>,
    size: Option<usize>,
    spin: bool,
    cpus: Option<Cpus>,
    messages: Vec<String>,
}

/// Reads the command line (DESIGN §3); `pid` names the default meeting point. An `Err`
/// is one line saying what is wrong.
pub fn parse(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    pid: u32,
) -> Result<Parsed, String> {
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
    // The flavour: the first word after the role, if it names one.
    let flavour = words.next_if(|w| w == "posix" || w == "sysv" || w == "memfd");
    let flavour = match flavour.as_deref() {
        Some("sysv") => Flavour::Sysv,
        Some("memfd") => Flavour::Memfd,
        _ => Flavour::Posix,
    };

    let mut raw = Raw::default();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--" => raw.messages.extend(words.by_ref()),
            "--name" => set(&mut raw.name, "--name", name(value(&mut words, "--name")?)?)?,
            "--key" => set(&mut raw.key, "--key", key(value(&mut words, "--key")?)?)?,
            "--count" => set(&mut raw.count, "--count", count(&mut words, "--count")?)?,
            "--ping" => set(&mut raw.ping, "--ping", count(&mut words, "--ping")?)?,
            "--size" => set(&mut raw.size, "--size", size(&mut words)?)?,
            "--spin" => raw.spin = true,
            "--cpus" => set(&mut raw.cpus, "--cpus", cpus(&mut words)?)?,
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option {flag}"));
            }
            _ => raw.messages.push(word),
        }
    }
    check(role, flavour, raw, pid).map(Parsed::Run)
}

#[derive(Clone, Copy, PartialEq)]
enum Flavour {
    Posix,
    Sysv,
    Memfd,
}

/// Checks the options against each other, the flavour and the role.
fn check(role: Role, flavour: Flavour, raw: Raw, pid: u32) -> Result<Args, String> {
    if flavour == Flavour::Memfd {
        if role != Role::Both {
            return Err(
                "memfd has no name another terminal could open: `shm-demo memfd` runs \
                        both sides (the writer is a forked child that inherits the fd); \
                        unrelated processes pass the fd over a Unix socket: socket-demo fdpass"
                    .into(),
            );
        }
        if raw.name.is_some() || raw.key.is_some() {
            return Err("memfd meets at no --name or --key: it has no name at all".into());
        }
    }
    let sysv = flavour == Flavour::Sysv;
    let workload = match (raw.count, raw.ping) {
        (Some(_), Some(_)) => return Err("--count and --ping are two workloads: pick one".into()),
        (Some(count), None) => Workload::Bulk {
            count,
            size: raw.size.ok_or("--count needs --size BYTES")?,
            spin: raw.spin,
        },
        (None, Some(count)) if count > MAX_PINGS => {
            return Err(format!("--ping {count}: at most {MAX_PINGS} round trips"));
        }
        (None, Some(count)) => Workload::Ping {
            count,
            size: raw.size.unwrap_or(DEFAULT_PING_SIZE),
            spin: raw.spin,
        },
        (None, None) if raw.size.is_some() => {
            return Err("--size goes with --count or --ping".into());
        }
        (None, None) => Workload::Text(raw.messages.clone()),
    };
    if raw.spin && raw.ping.is_none() && raw.count.is_none() {
        return Err(
            "--spin goes with --ping or --count: it is a way to wait for the other side".into(),
        );
    }
    if !raw.messages.is_empty() && !matches!(workload, Workload::Text(_)) {
        return Err(format!(
            "message {:?} given with --count/--ping: a workload sends its own data",
            raw.messages[0]
        ));
    }
    if let Some(long) = raw
        .messages
        .iter()
        .find(|m| m.len() > segment::TEXT_CAPACITY)
    {
        return Err(format!(
            "a message of {} bytes: a slot holds at most {} bytes",
            long.len(),
            segment::TEXT_CAPACITY
        ));
    }
    if role == Role::Reader && !raw.messages.is_empty() {
        return Err(format!(
            "the reader takes no messages (got {:?}): give them to the writer",
            raw.messages[0]
        ));
    }
    let meeting = match (sysv, raw.name, raw.key) {
        _ if flavour == Flavour::Memfd => Meeting::Memfd,
        (false, _, Some(_)) => {
            return Err("--key is for the sysv flavour (posix meets at --name /NAME)".into());
        }
        (true, Some(_), _) => {
            return Err("--name is for the posix flavour (sysv meets at --key KEY)".into());
        }
        (false, Some(name), None) => Meeting::Posix(name),
        (true, None, Some(key)) => Meeting::Sysv(key),
        (false, None, None) if role == Role::Writer => {
            return Err("the writer needs --name /NAME: the one its reader printed".into());
        }
        (true, None, None) if role == Role::Writer => {
            return Err("the writer needs --key KEY: the one its reader printed".into());
        }
        (false, None, None) => Meeting::Posix(format!("/shm-demo-{pid}")),
        (true, None, None) => Meeting::Sysv(DEFAULT_KEY_BASE | pid as i32),
    };
    if raw.cpus.is_some() && (role != Role::Both || matches!(workload, Workload::Text(_))) {
        return Err("--cpus goes with the default run of a workload (--count or --ping)".into());
    }
    Ok(Args {
        role,
        meeting,
        workload,
        cpus: raw.cpus,
    })
}

fn cpus(words: &mut impl Iterator<Item = String>) -> Result<Cpus, String> {
    let text = value(words, "--cpus")?;
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = |s: &str| match s.parse::<usize>() {
        Ok(c) if c < online => Ok(c),
        _ => Err(format!(
            "--cpus {text}: CPU numbers go from 0 to {}",
            online - 1
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

/// A POSIX shared memory name: a slash, then 1 to 254 characters with no other slash.
fn name(text: String) -> Result<String, String> {
    let rest = text.strip_prefix('/').unwrap_or("");
    if rest.is_empty() || rest.len() > 254 || rest.contains('/') || rest == "." || rest == ".." {
        return Err(format!(
            "--name {text:?}: a POSIX name is a slash then a file name, like /demo"
        ));
    }
    Ok(text)
}

/// A System V key, decimal or 0x hex, not 0 (IPC_PRIVATE, which names nothing).
fn key(text: String) -> Result<i32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse::<u32>(),
    };
    match parsed {
        Ok(0) => Err("--key 0 is IPC_PRIVATE, which no other process can find".into()),
        Ok(key) => Ok(key as i32), // key_t is an int: 0xffffffff is -1, as in C
        Err(_) => Err(format!(
            "--key {text:?}: not a number (decimal or 0x hex, up to 32 bits)"
        )),
    }
}

fn count(words: &mut impl Iterator<Item = String>, flag: &str) -> Result<u64, String> {
    let text = value(words, flag)?;
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{flag} {text}: not a whole number of at least 1")),
    }
}

fn size(words: &mut impl Iterator<Item = String>) -> Result<usize, String> {
    let text = value(words, "--size")?;
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_SIZE).contains(&n) => Ok(n),
        Ok(n) => Err(format!("--size {n}: 1 to {MAX_SIZE} bytes (64 MiB)")),
        Err(_) => Err(format!("--size {text}: not a whole number of at least 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Parsed, String> {
        parse(line.split_whitespace().map(Into::into), 42)
    }

    fn run(role: Role, meeting: Meeting, workload: Workload) -> Result<Parsed, String> {
        Ok(Parsed::Run(Args {
            role,
            meeting,
            workload,
            cpus: None,
        }))
    }

    #[test]
    fn roles_flavours_and_meeting_points() {
        let posix42 = Meeting::Posix("/shm-demo-42".into());
        assert_eq!(
            parse_line(""),
            run(Role::Both, posix42.clone(), Workload::Text(vec![]))
        );
        assert_eq!(
            parse_line("sysv hi"),
            run(
                Role::Both,
                Meeting::Sysv(0x5300_002a),
                Workload::Text(vec!["hi".into()])
            )
        );
        assert_eq!(
            parse_line("hi sysv"),
            run(
                Role::Both,
                posix42,
                Workload::Text(vec!["hi".into(), "sysv".into()])
            )
        );
        assert_eq!(
            parse_line("writer sysv --key 0x1234 a"),
            run(
                Role::Writer,
                Meeting::Sysv(0x1234),
                Workload::Text(vec!["a".into()])
            )
        );
        assert_eq!(
            parse_line("reader --name /x --ping 5 --spin"),
            run(
                Role::Reader,
                Meeting::Posix("/x".into()),
                Workload::Ping {
                    count: 5,
                    size: 100,
                    spin: true
                }
            )
        );
        assert_eq!(
            parse_line("reader sysv --key 4294967295").map(|p| matches!(
                p,
                Parsed::Run(Args {
                    meeting: Meeting::Sysv(-1),
                    ..
                })
            )),
            Ok(true)
        );
    }

    #[test]
    fn memfd_is_a_default_run_with_no_meeting_point() {
        assert_eq!(
            parse_line("memfd --count 3 --size 10"),
            run(
                Role::Both,
                Meeting::Memfd,
                Workload::Bulk {
                    count: 3,
                    size: 10,
                    spin: false
                }
            )
        );
    }

    #[test]
    fn mistakes_are_bad_usage() {
        for bad in [
            "--count 3",
            "--count x --size 1",
            "--count 0 --size 1",
            "--ping 1 --count 1 --size 1",
            "--size 5",
            "--spin",
            "--ping 1 --size 99999999999",
            "--ping 100000001",
            "--ping 18446744073709551615",
            "--bogus",
            "--ping",
            "hello --ping 3",
            "reader hello",
            "writer hello",
            "writer sysv hello",
            "--key 5",
            "sysv --name /x",
            "--name x",
            "--name /a/b",
            "--name /",
            "sysv --key 0",
            "sysv --key 0x1g",
            "sysv --key 4294967296",
            "--name /a --name /b",
            "reader memfd",
            "writer memfd hello",
            "memfd --name /x",
            "memfd --key 5",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} should be bad usage");
        }
        let long = "x".repeat(segment::TEXT_CAPACITY + 1);
        assert!(parse([long.into()], 1).is_err());
    }
}
