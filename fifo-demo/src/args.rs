//! The command line (DESIGN §3), parsed and checked in full before anything is created,
//! so bad usage (exit 2) never leaves a FIFO or a directory behind.

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: fifo-demo [OPTIONS] [MESSAGE...]                  reader and writer as two processes, narrated
       fifo-demo reader [--path P] [OPTIONS]             make the FIFO P, print what arrives
       fifo-demo writer --path P [OPTIONS] [MESSAGE...]  send to the FIFO P (stdin lines if no MESSAGE)

options:
  --path P            the FIFO: the reader creates it (default: in a private directory),
                      and P.pid (its pid, which a waiting writer checks); the writer
                      opens P and never creates it
  --count N           bulk: N messages of --size bytes, every byte checked by the reader
  --ping N            N round trips of --size bytes, out through P and back through P.reply
                      (at most 100000000: the writer keeps each one's time to sort)
  --size BYTES        message size for --count or --ping (default 100, at most 64 MiB)
  --cpus W,R          default run with a workload: writer on CPU W, reader on CPU R
  -h, --help          print this text
  --                  everything after it is a message, even if it starts with '-'

two terminals:
  fifo-demo reader                        makes a private directory and prints its FIFO P
  fifo-demo writer --path P hi            in the other terminal; or: echo hi > P
";

/// The most a bulk or ping message may be: enough to show throughput, small enough
/// that two such buffers never strain the machine.
const MAX_SIZE: usize = 64 << 20;
const DEFAULT_SIZE: usize = 100;
/// The most round trips a ping run takes: the writer keeps each one's time (16 bytes)
/// to compute the percentiles, in a Vec allocated before it starts, so N sets its size.
const MAX_PINGS: u64 = 100_000_000;

pub enum Role {
    /// The narrated default run: this process starts a reader and a writer.
    Both,
    /// `reader [--path P]`: without a path it makes its own private directory.
    Reader(Option<PathBuf>),
    /// `writer --path P`.
    Writer(PathBuf),
}

pub enum Workload {
    /// Text lines: the MESSAGE arguments (empty: the writer reads stdin, the default
    /// run uses a few of its own).
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

pub struct Args {
    pub role: Role,
    pub workload: Workload,
    pub cpus: Option<Cpus>,
}

/// `--cpus W,R`: where the writer and the reader run. A wake-up that crosses CPUs
/// costs more than one on the same CPU; the benchmark measures both.
#[derive(Clone, Copy)]
pub struct Cpus {
    pub writer: usize,
    pub reader: usize,
}

pub enum Parsed {
    Help,
    Run(Args),
}

/// The options as typed, before they are checked against each other.
#[derive(Default)]
struct Raw {
    path: Option<PathBuf>,
    count: Option<u64>,
    ping: Option<u64>,
    size: Option<usize>,
    cpus: Option<Cpus>,
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
        Some("reader") => "reader",
        Some("writer") => "writer",
        _ => "",
    };
    if !role.is_empty() {
        words.next();
    }

    let mut raw = Raw::default();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--" => raw.messages.extend(words.by_ref()),
            "--path" => set(&mut raw.path, "--path", value(&mut words, "--path")?.into())?,
            "--count" => set(&mut raw.count, "--count", count(&mut words, "--count")?)?,
            "--ping" => set(&mut raw.ping, "--ping", count(&mut words, "--ping")?)?,
            "--size" => set(&mut raw.size, "--size", size(&mut words)?)?,
            "--cpus" => set(&mut raw.cpus, "--cpus", cpus(&mut words)?)?,
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option {flag}"));
            }
            _ => raw.messages.push(word),
        }
    }
    check(role, raw).map(Parsed::Run)
}

/// Checks the options against each other and against the role.
fn check(role: &str, raw: Raw) -> Result<Args, String> {
    let size = raw.size.unwrap_or(DEFAULT_SIZE);
    let workload = match (raw.count, raw.ping) {
        (Some(_), Some(_)) => {
            return Err("--count and --ping are two different workloads: give one".into());
        }
        (Some(count), None) => Workload::Bulk { count, size },
        (None, Some(count)) if count > MAX_PINGS => {
            return Err(format!("--ping {count}: at most {MAX_PINGS} round trips"));
        }
        (None, Some(count)) => Workload::Ping { count, size },
        (None, None) if raw.size.is_some() => {
            return Err("--size needs a workload: --count N or --ping N".into());
        }
        (None, None) => Workload::Text(Vec::new()),
    };
    if let Some(text) = raw.messages.iter().find(|m| m.contains('\n')) {
        return Err(format!(
            "message {text:?} contains a newline: on a byte stream the newline separates messages"
        ));
    }
    let workload = match workload {
        Workload::Text(_) => Workload::Text(raw.messages),
        _ if !raw.messages.is_empty() => {
            return Err(format!(
                "message {:?} given with --count/--ping: a workload sends its own data",
                raw.messages[0]
            ));
        }
        workload => workload,
    };
    let role = match (role, raw.path) {
        ("reader", path) => {
            if let Workload::Text(messages) = &workload {
                if let Some(first) = messages.first() {
                    return Err(format!(
                        "the reader takes no messages (got {first:?}): give them to the writer"
                    ));
                }
            }
            Role::Reader(path)
        }
        ("writer", Some(path)) => Role::Writer(path),
        ("writer", None) => {
            return Err("the writer needs --path P: the FIFO the reader created".into());
        }
        (_, Some(_)) => {
            return Err(
                "--path is for `reader` and `writer`: the default run makes its own private directory"
                    .into(),
            );
        }
        (_, None) => Role::Both,
    };
    if raw.cpus.is_some() && (matches!(workload, Workload::Text(_)) || !matches!(role, Role::Both))
    {
        return Err("--cpus goes with the default run of a workload (--count or --ping)".into());
    }
    Ok(Args {
        role,
        workload,
        cpus: raw.cpus,
    })
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

fn count(words: &mut impl Iterator<Item = String>, flag: &str) -> Result<u64, String> {
    let text = value(words, flag)?;
    match text.parse::<u64>() {
        Ok(0) => Err(format!("{flag} must be at least 1")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{flag} {text:?} is not a number")),
    }
}

fn size(words: &mut impl Iterator<Item = String>) -> Result<usize, String> {
    let text = value(words, "--size")?;
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_SIZE).contains(&n) => Ok(n),
        Ok(n) => Err(format!(
            "--size {n} is out of range: 1 to {MAX_SIZE} bytes (64 MiB)"
        )),
        Err(_) => Err(format!("--size {text:?} is not a number")),
    }
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
