//! The command line (DESIGN §3): a flavour, messages, or a measured workload.

use std::ffi::OsString;

pub const USAGE: &str = "\
usage: pipe-demo [oneway|duplex|shell] [OPTIONS] [MESSAGE...]
       pipe-demo big [--hold]

  oneway   (default) the parent writes, the child reads, through one pipe
  duplex   request/response: one pipe each way, since a pipe is one-way
  shell    rebuild `ps auxf | grep ps` with pipe, fork, dup2 and exec
  big      F_SETPIPE_SZ: grow the pipe to 1 MiB (limits: /proc/sys/fs/pipe-max-size,
           pipe-user-pages-soft); the writer sleeps only once 1 MiB is queued.
           --hold: the reader drains only after Enter (or EOF) on stdin

options (the workloads run without a flavour):
  --count N --size BYTES   bulk: send N messages of BYTES bytes, checked by the reader
    --pipe-size BYTES|auto with --count: F_SETPIPE_SZ first (auto: grown to at least
                           4 messages, at most pipe-max-size), so writer and reader overlap
    --vmsplice             with --count: the writer vmsplices (the pipe refers to its
                           pages, no copy), the reader still reads and checks
  --ping N [--size BYTES]  N round trips of BYTES bytes (default 100) over two pipes
  --cpus W,R               with a workload: run the writer on CPU W, the reader on CPU R
  --help                   this text

An anonymous pipe joins a parent and its child only, so there is no reader or
writer role to start alone: for two terminals, see fifo-demo.
";

/// The largest message a workload accepts: each side keeps one buffer this big.
const MAX_SIZE: usize = 64 << 20;
/// The most round trips `--ping` takes: the writer keeps each one's time (16 bytes) in
/// a list made up front, so this bounds it at 1.6 GB.
const MAX_PINGS: u64 = 100_000_000;
/// The message size of a ping when `--size` is not given (DESIGN §3).
const DEFAULT_PING_SIZE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flavour {
    Oneway,
    Duplex,
    Shell,
    /// F_SETPIPE_SZ; `hold`: the reader drains only after a line on stdin.
    Big {
        hold: bool,
    },
}

/// What the run does: narrate some messages, or run a measured workload.
#[derive(Debug, PartialEq)]
pub enum Workload {
    Messages(Vec<String>),
    Bulk {
        count: u64,
        size: usize,
        cpus: Option<Cpus>,
        fast: FastPath,
    },
    Ping {
        count: u64,
        size: usize,
        cpus: Option<Cpus>,
    },
}

/// `--cpus W,R`: the CPU for the writer and the CPU for the reader. Where the two
/// sides run changes what a wake-up costs; the benchmark measures both placements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpus {
    pub writer: usize,
    pub reader: usize,
}

/// The bulk workload's fast paths (`pipe_demo::fast`): none by default.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FastPath {
    /// `--pipe-size`: F_SETPIPE_SZ before the transfer.
    pub pipe_size: Option<PipeSize>,
    /// `--vmsplice`: the writer hands its pages to the pipe instead of writing.
    pub vmsplice: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PipeSize {
    /// `auto`: `pipe_demo::fast::size_for_messages`.
    Auto,
    Bytes(usize),
}

#[derive(Debug, PartialEq)]
pub enum Request {
    Help,
    Run(Flavour, Workload),
}

/// Reads the command line; an `Err` is one line saying what is wrong (exit 2).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Request, String> {
    utf8_args(args).and_then(parse_args)
}

/// The arguments as text. Not `std::env::args`: it panics on an argument that
/// is not valid UTF-8 (`pipe-demo $'\xff'`), and bad usage must get a sentence.
fn utf8_args(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, String> {
    args.into_iter()
        .map(|arg| {
            arg.into_string().map_err(|bad| {
                format!("argument {bad:?} is not valid UTF-8: messages and options are text")
            })
        })
        .collect()
}

/// Reads the command line (DESIGN §3). An `Err` is one line saying what is wrong.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Request, String> {
    let mut flavour = None;
    let mut messages = Vec::new();
    let (mut count, mut size, mut ping, mut cpus) = (None, None, None, None);
    let mut hold = false;
    let mut fast = FastPath::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Request::Help),
            "--" => messages.extend(args.by_ref()), // the rest are messages, even "-x"
            "--count" => count = Some(number(&arg, args.next())?),
            "--ping" => ping = Some(number(&arg, args.next())?),
            "--size" => size = Some(number(&arg, args.next())?),
            "--cpus" => cpus = Some(cpu_pair(args.next())?),
            "--hold" => hold = true,
            "--vmsplice" => fast.vmsplice = true,
            "--pipe-size" => fast.pipe_size = Some(pipe_size(args.next())?),
            "reader" | "writer" if flavour.is_none() && messages.is_empty() => {
                return Err(format!(
                    "pipe-demo has no {arg} role: an anonymous pipe only joins a parent \
                     and its child (for two terminals, use fifo-demo)"
                ));
            }
            word if word.starts_with('-') => return Err(format!("unknown option {word}")),
            word if flavour.is_none() && messages.is_empty() => {
                flavour = Some(match word {
                    "oneway" => Flavour::Oneway,
                    "duplex" => Flavour::Duplex,
                    "shell" => Flavour::Shell,
                    "big" => Flavour::Big { hold: false },
                    _ => {
                        messages.push(word.to_string());
                        Flavour::Oneway
                    }
                })
            }
            word => messages.push(word.to_string()),
        }
    }
    let flavour = match flavour.unwrap_or(Flavour::Oneway) {
        Flavour::Big { .. } => Flavour::Big { hold },
        _ if hold => return Err("--hold goes with the big flavour only".into()),
        other => other,
    };
    if let Some(bad) = messages.iter().find(|m| m.contains('\n')) {
        return Err(format!(
            "message {bad:?} contains a newline: on a byte stream the newline separates messages"
        ));
    }
    if count.is_none() && fast != FastPath::default() {
        return Err("--pipe-size and --vmsplice go with --count".into());
    }
    let workload = match (count, ping) {
        (Some(_), Some(_)) => return Err("--count and --ping are two workloads: pick one".into()),
        (Some(count), None) => Workload::Bulk {
            count,
            size: checked_size(size.ok_or("--count needs --size BYTES")?)?,
            cpus,
            fast,
        },
        (None, Some(count)) if count > MAX_PINGS => {
            return Err(format!("--ping {count}: at most {MAX_PINGS} round trips"));
        }
        (None, Some(count)) => Workload::Ping {
            count,
            size: checked_size(size.unwrap_or(DEFAULT_PING_SIZE as u64))?,
            cpus,
        },
        (None, None) if size.is_some() || cpus.is_some() => {
            return Err("--size and --cpus go with --count or --ping".into());
        }
        (None, None) => Workload::Messages(messages.clone()),
    };
    if flavour == Flavour::Shell && (!messages.is_empty() || count.is_some() || ping.is_some()) {
        return Err("the shell flavour takes no messages and no workload".into());
    }
    if matches!(flavour, Flavour::Big { .. })
        && !matches!(&workload, Workload::Messages(m) if m.is_empty())
    {
        return Err(
            "the big flavour takes no messages and no workload: it fills the pipe itself".into(),
        );
    }
    if flavour == Flavour::Duplex && (count.is_some() || ping.is_some()) {
        return Err(
            "the workloads are not flavours: --count runs over one pipe, --ping over two; \
             give them without duplex"
                .into(),
        );
    }
    if !messages.is_empty() && !matches!(workload, Workload::Messages(_)) {
        return Err("messages and a workload (--count, --ping) do not mix".into());
    }
    Ok(Request::Run(flavour, workload))
}

/// Parses the value after `flag` as a whole number of at least 1.
fn number(flag: &str, value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    match value.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{flag} {value}: not a whole number of at least 1")),
    }
}

/// Parses `--pipe-size`'s value: `auto` or a number of bytes F_SETPIPE_SZ takes
/// (an int).
fn pipe_size(value: Option<String>) -> Result<PipeSize, String> {
    match value.as_deref() {
        Some("auto") => Ok(PipeSize::Auto),
        _ => match number("--pipe-size", value)? {
            n if n <= i32::MAX as u64 => Ok(PipeSize::Bytes(n as usize)),
            n => Err(format!("--pipe-size {n}: at most {} bytes", i32::MAX)),
        },
    }
}

/// Parses `W,R`, two CPU numbers this machine has.
fn cpu_pair(value: Option<String>) -> Result<Cpus, String> {
    let value = value.ok_or("--cpus needs a value, like 0,1")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = |s: &str| match s.parse::<usize>() {
        Ok(c) if c < cpus => Ok(c),
        _ => Err(format!(
            "--cpus {value}: CPU numbers go from 0 to {}",
            cpus - 1
        )),
    };
    match value.split_once(',') {
        Some((w, r)) => Ok(Cpus {
            writer: cpu(w)?,
            reader: cpu(r)?,
        }),
        None => Err(format!("--cpus {value}: expected WRITER,READER, like 0,1")),
    }
}

fn checked_size(size: u64) -> Result<usize, String> {
    match usize::try_from(size) {
        Ok(s) if s <= MAX_SIZE => Ok(s),
        _ => Err(format!("--size {size}: at most {MAX_SIZE} bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Request, String> {
        parse_args(line.split_whitespace().map(String::from))
    }

    #[test]
    fn flavour_is_the_first_word_and_the_rest_are_messages() {
        let duplex = Workload::Messages(vec!["hi".into(), "there".into()]);
        assert_eq!(
            parse("duplex hi there"),
            Ok(Request::Run(Flavour::Duplex, duplex))
        );
        let oneway = Workload::Messages(vec!["hi".into(), "duplex".into()]);
        assert_eq!(
            parse("hi duplex"),
            Ok(Request::Run(Flavour::Oneway, oneway))
        );
    }

    #[test]
    fn workloads_and_their_mistakes() {
        let bulk = Workload::Bulk {
            count: 3,
            size: 7,
            cpus: None,
            fast: FastPath::default(),
        };
        assert_eq!(
            parse("--count 3 --size 7"),
            Ok(Request::Run(Flavour::Oneway, bulk))
        );
        let fastest = Workload::Bulk {
            count: 3,
            size: 7,
            cpus: None,
            fast: FastPath {
                pipe_size: Some(PipeSize::Auto),
                vmsplice: true,
            },
        };
        assert_eq!(
            parse("--count 3 --size 7 --pipe-size auto --vmsplice"),
            Ok(Request::Run(Flavour::Oneway, fastest))
        );
        let ping = Workload::Ping {
            count: 5,
            size: 100,
            cpus: None,
        };
        assert_eq!(parse("--ping 5"), Ok(Request::Run(Flavour::Oneway, ping)));
        let dashes = Workload::Messages(vec!["-x".into(), "--y".into()]);
        assert_eq!(
            parse("-- -x --y"),
            Ok(Request::Run(Flavour::Oneway, dashes))
        );
        let cpus = Some(Cpus {
            writer: 0,
            reader: 0,
        });
        let pinned = Workload::Ping {
            count: 5,
            size: 100,
            cpus,
        };
        assert_eq!(
            parse("--ping 5 --cpus 0,0"),
            Ok(Request::Run(Flavour::Oneway, pinned))
        );
        for bad in [
            "--count 3",
            "--cpus 0,0",
            "--ping 3 --cpus 0",
            "--ping 3 --cpus 0,99999",
            "--count x --size 1",
            "--count 0 --size 1",
            "--ping 1 --count 1 --size 1",
            "--size 5",
            "--ping 1 --size 99999999999",
            "shell --ping 3",
            "shell hello",
            "reader",
            "duplex --ping 3",
            "--ping 100000001",
            "--ping 18446744073709551615",
            "--bogus",
            "--ping",
            "hello --ping 3",
            "--ping 3 --vmsplice",
            "--pipe-size auto",
            "--count 1 --size 1 --pipe-size 0",
            "--count 1 --size 1 --pipe-size 4294967296",
            "--count 1 --size 1 --pipe-size",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be bad usage");
        }
    }
}
