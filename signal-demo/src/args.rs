//! The command line (DESIGN §3), checked in full before any signal is sent, so bad
//! usage (exit 2) never reaches a process.

use std::ffi::{OsString, c_int};

use nix::unistd::Pid;

use signal_demo::send;

pub const USAGE: &str = "\
usage: signal-demo [--ping N [--cpus W,R]]        both sides, narrated: the parent signals its forked child
       signal-demo signalfd                       the same signals read(2) as data from a signalfd, polled beside a pipe
       signal-demo pidfd                          a child by handle: pidfd_open, poll for its exit, pidfd_send_signal
       signal-demo reader [--ping N]              print my pid, report each signal until SIGINT/SIGTERM
       signal-demo reader signalfd                the same, signals read from a signalfd polled beside stdin
       signal-demo writer --pid PID [SIGNAL...]   send each SIGNAL to PID (default SIGUSR1)
       signal-demo writer pidfd --pid PID [SIGNAL...]  the same through a pidfd, then wait for PID to exit
       signal-demo writer --pid PID --ping N      N round trips with a `signal-demo reader --ping N`

  SIGNAL        a name, with or without SIG, any case: SIGUSR1, USR1, term, RTMIN, RTMIN+3,
                RTMAX-1. Standard signals go with kill(2), real-time ones with sigqueue(3)
                carrying a value (the SIGNAL's position in the list, from 0); with
                `writer pidfd`, every one with pidfd_send_signal(2), no value
  --pid PID     the process to signal (the reader prints its pid)
  --ping N      N round trips: SIGUSR1 there and back, blocked and taken with sigtimedwait(2)
  --size BYTES  taken with --ping like every demo's, and ignored: a signal carries no bytes
  --cpus W,R    with the default run's --ping: the writer on CPU W, the reader on CPU R
  -h, --help    this text

A signal carries no bytes: there is no bulk workload (--count).

two terminals:
  signal-demo reader            then: signal-demo writer --pid PID USR1 USR2 RTMIN
                                or:   kill -USR1 PID
  and in the reader's terminal: Ctrl+Z stops it, fg resumes it, Ctrl+C ends it.
  signal-demo reader signalfd   then: signal-demo writer pidfd --pid PID USR1 TERM
  and in the reader's terminal: type a line (stdin, polled beside the signalfd).
";

/// The most round trips `--ping` takes: the round-trip times are kept in memory.
const MAX_PING: u64 = 1_000_000;

#[derive(Debug, PartialEq)]
pub enum Request {
    /// The narrated default run.
    Demo,
    /// The default run's ping: parent and forked child.
    Ping(Ping),
    Reader,
    ReaderPing(Ping),
    /// Signals by number, since real-time ones have no `Signal` in nix.
    Writer {
        pid: Pid,
        signals: Vec<c_int>,
    },
    WriterPing {
        pid: Pid,
        ping: Ping,
    },
    /// `signalfd`: both sides, narrated; the reader takes its signals from a signalfd.
    SignalfdDemo,
    /// `reader signalfd`: signals from a signalfd, polled beside stdin.
    SignalfdReader,
    /// `pidfd`: both sides, narrated: a child by pidfd.
    PidfdDemo,
    /// `writer pidfd`: signals through a pidfd, then a wait for the process's exit.
    PidfdWriter {
        pid: Pid,
        signals: Vec<c_int>,
    },
}

/// The ping workload's options.
#[derive(Debug, PartialEq)]
pub struct Ping {
    pub count: u64,
    /// The message size every demo's ping takes; a signal has none to give it.
    pub size: Option<u64>,
    pub cpus: Option<Cpus>,
}

/// `--cpus W,R`: the CPU for the writer and the CPU for the reader. Where the two
/// sides run changes what a wake-up costs; the benchmark measures both placements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpus {
    pub writer: usize,
    pub reader: usize,
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Help,
    Run(Request),
}

#[derive(PartialEq)]
enum Role {
    Both,
    Reader,
    Writer,
}

/// Reads the command line. An `Err` is one line saying what is wrong.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut args = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("{}: not valid UTF-8", a.to_string_lossy()))
        })
        .collect::<Result<Vec<String>, String>>()?
        .into_iter()
        .peekable();
    let role = match args.peek().map(String::as_str) {
        Some("reader") => Role::Reader,
        Some("writer") => Role::Writer,
        _ => Role::Both,
    };
    if role != Role::Both {
        args.next();
    }
    let flavour = match args.peek().map(String::as_str) {
        Some(word @ ("signalfd" | "pidfd")) => Some(word.to_string()),
        _ => None,
    };
    if flavour.is_some() {
        args.next();
    }
    let (mut pid, mut count, mut size, mut cpus) = (None, None, None, None);
    let mut words = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--pid" => pid = Some(process_id(args.next())?),
            "--ping" => count = Some(ping_count(args.next())?),
            "--size" => size = Some(message_size(args.next())?),
            "--cpus" => cpus = Some(cpu_pair(args.next())?),
            "--count" => {
                return Err("--count: a signal carries no bytes, so there is no bulk \
                            workload (--ping N measures the round trip)"
                    .into());
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            word => words.push(word.to_string()),
        }
    }
    let ping = match count {
        Some(count) => Some(Ping { count, size, cpus }),
        None if size.is_some() || cpus.is_some() => {
            return Err("--size and --cpus go with --ping".into());
        }
        None => None,
    };
    if cpus.is_some() && role != Role::Both {
        return Err(
            "--cpus places both sides of the default run's --ping; for one side, use taskset"
                .into(),
        );
    }

    if let Some(flavour) = flavour {
        return flavoured(&flavour, role, pid, ping.is_some(), &words).map(Parsed::Run);
    }
    let request = match role {
        Role::Both | Role::Reader => {
            if pid.is_some() {
                return Err("--pid is for the writer: the reader is the one signalled".into());
            }
            if let Some(word) = words.first() {
                return Err(format!(
                    "unexpected {word:?}: signals are sent by `signal-demo writer --pid PID {word}`"
                ));
            }
            match (role, ping) {
                (Role::Reader, Some(ping)) => Request::ReaderPing(ping),
                (Role::Reader, None) => Request::Reader,
                (_, Some(ping)) => Request::Ping(ping),
                (_, None) => Request::Demo,
            }
        }
        Role::Writer => {
            let pid = pid.ok_or("the writer needs --pid PID: the process to signal")?;
            match ping {
                Some(_) if !words.is_empty() => {
                    return Err("--ping sends SIGUSR1 only: give it no SIGNAL".into());
                }
                Some(ping) => Request::WriterPing { pid, ping },
                None => Request::Writer {
                    pid,
                    signals: words
                        .iter()
                        .map(|w| send::parse(w))
                        .collect::<Result<_, _>>()?,
                },
            }
        }
    };
    Ok(Parsed::Run(request))
}

/// The request of a flavour (`signalfd`, `pidfd`): no workload, and each has the
/// roles it has.
fn flavoured(
    flavour: &str,
    role: Role,
    pid: Option<Pid>,
    ping: bool,
    words: &[String],
) -> Result<Request, String> {
    if ping {
        return Err(format!(
            "--ping goes with the handler flavour: `signal-demo --ping N`, not {flavour}"
        ));
    }
    let no_pid = |pid: Option<Pid>| match pid {
        Some(_) => Err(format!(
            "--pid is for `signal-demo writer pidfd`, not {flavour}"
        )),
        None => Ok(()),
    };
    let no_words = |words: &[String]| match words.first() {
        Some(word) => Err(format!("unexpected {word:?} after {flavour}")),
        None => Ok(()),
    };
    match (flavour, role) {
        ("signalfd", Role::Both) => no_pid(pid)
            .and(no_words(words))
            .map(|()| Request::SignalfdDemo),
        ("signalfd", Role::Reader) => no_pid(pid)
            .and(no_words(words))
            .map(|()| Request::SignalfdReader),
        ("signalfd", _) => Err("a signalfd is the reader's: send with `signal-demo writer \
                                --pid PID` or `signal-demo writer pidfd --pid PID`"
            .into()),
        ("pidfd", Role::Both) => no_pid(pid)
            .and(no_words(words))
            .map(|()| Request::PidfdDemo),
        ("pidfd", Role::Writer) => Ok(Request::PidfdWriter {
            pid: pid.ok_or("writer pidfd needs --pid PID: the process to signal")?,
            signals: words
                .iter()
                .map(|w| send::parse(w))
                .collect::<Result<_, _>>()?,
        }),
        _ => Err(
            "a pidfd is the sender's: there is no `reader pidfd` (try `signal-demo \
                  reader signalfd`, then `signal-demo writer pidfd --pid PID`)"
                .into(),
        ),
    }
}

/// A process id for kill(2): at least 1, since 0 would mean "my process group" and
/// -1 "every process I may signal".
fn process_id(value: Option<String>) -> Result<Pid, String> {
    let value = value.ok_or("--pid needs a value")?;
    match value.parse::<i32>() {
        Ok(pid) if pid >= 1 => Ok(Pid::from_raw(pid)),
        Ok(_) => Err(format!(
            "--pid {value}: a process id is at least 1 (kill(2) reads 0 as \"my process \
             group\" and -1 as \"every process\")"
        )),
        Err(_) => Err(format!("--pid {value}: not a process id")),
    }
}

fn ping_count(value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or("--ping needs a value")?;
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX_PING).contains(&n) => Ok(n),
        _ => Err(format!(
            "--ping {value}: not a whole number from 1 to {MAX_PING}"
        )),
    }
}

/// `--size`: a whole number of at least 1, as in every demo; unused here.
fn message_size(value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or("--size needs a value")?;
    match value.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("--size {value}: not a whole number of at least 1")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Parsed, String> {
        parse(line.split_whitespace().map(OsString::from))
    }

    #[test]
    fn roles_and_workloads() {
        assert_eq!(parse_line(""), Ok(Parsed::Run(Request::Demo)));
        let ping = |count, size, cpus| Ping { count, size, cpus };
        assert_eq!(
            parse_line("--ping 5"),
            Ok(Parsed::Run(Request::Ping(ping(5, None, None))))
        );
        let cpus = Some(Cpus {
            writer: 0,
            reader: 0,
        });
        assert_eq!(
            parse_line("--ping 5 --size 100 --cpus 0,0"),
            Ok(Parsed::Run(Request::Ping(ping(5, Some(100), cpus))))
        );
        assert_eq!(parse_line("reader"), Ok(Parsed::Run(Request::Reader)));
        let pid = Pid::from_raw(42);
        assert_eq!(
            parse_line("writer --pid 42"),
            Ok(Parsed::Run(Request::Writer {
                pid,
                signals: vec![]
            }))
        );
        assert_eq!(
            parse_line("writer usr2 --pid 42 SIGHUP"),
            Ok(Parsed::Run(Request::Writer {
                pid,
                signals: vec![libc::SIGUSR2, libc::SIGHUP]
            }))
        );
        assert_eq!(
            parse_line("writer --pid 42 --ping 3"),
            Ok(Parsed::Run(Request::WriterPing {
                pid,
                ping: ping(3, None, None)
            }))
        );
        assert_eq!(parse_line("reader --help"), Ok(Parsed::Help));
        assert_eq!(
            parse_line("signalfd"),
            Ok(Parsed::Run(Request::SignalfdDemo))
        );
        assert_eq!(
            parse_line("reader signalfd"),
            Ok(Parsed::Run(Request::SignalfdReader))
        );
        assert_eq!(parse_line("pidfd"), Ok(Parsed::Run(Request::PidfdDemo)));
        assert_eq!(
            parse_line("writer pidfd --pid 42 term"),
            Ok(Parsed::Run(Request::PidfdWriter {
                pid,
                signals: vec![libc::SIGTERM]
            }))
        );
    }

    #[test]
    fn mistakes_are_bad_usage() {
        for bad in [
            "writer",
            "writer --pid",
            "writer --pid abc",
            "writer --pid 0",
            "writer --pid -1",
            "writer --pid 42 NOPE",
            "writer --pid 42 --ping 3 USR1",
            "reader --pid 42",
            "reader USR1",
            "hello",
            "--bogus",
            "--ping 0",
            "--ping x",
            "--ping 99999999",
            "--count 3 --size 10",
            "--size 10",
            "--ping 3 --size 0",
            "--cpus 0,0",
            "--ping 3 --cpus 0",
            "--ping 3 --cpus 0,999",
            "reader --ping 3 --cpus 0,0",
            "signalfd --ping 3",
            "signalfd USR1",
            "signalfd --pid 42",
            "writer signalfd --pid 42",
            "reader signalfd --pid 42",
            "reader pidfd",
            "pidfd --pid 42",
            "pidfd USR1",
            "writer pidfd",
            "writer pidfd --pid 0",
            "writer pidfd --pid 42 NOPE",
            "writer pidfd --pid 42 --ping 3",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} should be bad usage");
        }
    }
}
