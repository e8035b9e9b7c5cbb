//! The command line (DESIGN §3), checked in full before anything is created.
//!
//! `sem-demo [reader|writer] [posix|sysv] [--name /NAME | --key KEY] [--ping N]
//! [--loops N]`. A semaphore carries no data (而不是用于缓存进程间通信的数据), so the
//! options and words that would send some (`--count`, `--size`, messages) are bad
//! usage with a sentence saying why.

pub const USAGE: &str = "\
usage: sem-demo [posix|sysv] [--name /NAME | --key KEY] [--loops N]
       sem-demo [posix|sysv] --ping N [--cpus W,R]
       sem-demo eventfd [--loops N | --ping N [--cpus W,R]]
       sem-demo reader [posix|sysv] [--name /NAME | --key KEY] [--ping N]
       sem-demo writer [posix|sysv] (--name /NAME | --key KEY) [--ping N]

  posix    (default) named POSIX semaphores: sem_open, sem_wait, sem_post
  sysv     a System V semaphore set: semget, semop, semctl
  eventfd  eventfd(EFD_SEMAPHORE): V is write(1), P is read(); the counter in
           /proc/PID/fdinfo; pollable beside a pipe. No name, so no reader/writer

  (no role)  five narrated acts: P and V, a race without a semaphore, a mutex
             semaphore (value 1), a sync semaphore (value 0), a holder that dies
  reader     creates a sync semaphore (value 0) and sleeps in P until a writer does V
  writer     opens the reader's semaphore and does V

options:
  --name /NAME   POSIX meeting point (default run: prefix of its semaphores' names)
  --key KEY      System V meeting point, decimal or 0x hex, not 0
  --ping N       N round trips of P/V between two processes over two semaphores
                 (at most 100000000)
  --loops N      increments per process in the race and mutex acts (default 20000)
  --cpus W,R     with --ping in one run: the writer on CPU W, the reader on CPU R
  --help         this text

Without --name/--key, the default run and the reader pick fresh ones that include
their pid. A semaphore carries no data: there are no messages and no --count/--size.
";

/// Increments per process in acts 2 and 3 when `--loops` is not given: enough for
/// the race to lose updates on 2 cores, few enough for System V's mutex act (a
/// wake-up across CPUs per increment, tens of microseconds on a VM) to take about
/// a second.
pub const DEFAULT_LOOPS: u64 = 20_000;
/// The most `--loops` accepts: the counter must not overflow, and the run end.
const MAX_LOOPS: u64 = 1_000_000_000;
/// The most `--ping` accepts: the round-trip times are kept in one Vec allocated
/// up front (16 bytes each, 1.6 GB at this limit), and the run must end.
const MAX_PINGS: u64 = 100_000_000;
/// A POSIX name is at most NAME_MAX (255) bytes in /dev/shm, where glibc prefixes
/// "sem." and we may append a suffix such as "-mutex": leave room for both.
const MAX_NAME: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flavour {
    Posix,
    Sysv,
    /// eventfd(2) with EFD_SEMAPHORE: between a parent and its children only.
    Eventfd,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// The narrated acts, or the ping workload, with both sides forked from one run.
    Both,
    Reader,
    Writer,
}

/// Where the two sides meet: a POSIX name or a System V key.
#[derive(Debug, Clone, PartialEq)]
pub enum Meeting {
    Fresh,
    Name(String),
    Key(libc::key_t),
}

#[derive(Debug, PartialEq)]
pub struct Request {
    pub role: Role,
    pub flavour: Flavour,
    pub meeting: Meeting,
    /// `--ping N`: round trips instead of the narrated run.
    pub ping: Option<u64>,
    pub loops: u64,
    /// `--cpus W,R`: the CPUs of the pinging writer and the answering reader. A
    /// wake-up that crosses CPUs costs more; the benchmark measures both.
    pub cpus: Option<(usize, usize)>,
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Help,
    Run(Request),
}

/// Reads the command line. An `Err` is one line saying what is wrong.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut role = None;
    let mut flavour = None;
    let (mut name, mut key, mut ping, mut loops, mut cpus) = (None, None, None, None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--name" => name = Some(posix_name(args.next())?),
            "--key" => key = Some(sysv_key(args.next())?),
            "--ping" => {
                let n = number(&arg, args.next())?;
                if n > MAX_PINGS {
                    return Err(format!("--ping {n}: at most {MAX_PINGS} round trips"));
                }
                ping = Some(n);
            }
            "--cpus" => cpus = Some(cpu_pair(args.next())?),
            "--loops" => {
                let n = number(&arg, args.next())?;
                if n > MAX_LOOPS {
                    return Err(format!("--loops {n}: at most {MAX_LOOPS}"));
                }
                loops = Some(n);
            }
            "--count" | "--size" => {
                return Err(format!(
                    "{arg}: a semaphore carries no data (信号量...不是用于缓存进程间通信的数据), \
                     so there is no bulk transfer to size; --ping N times the bare P/V round \
                     trip, and shm-demo moves bulk data guarded by semaphores"
                ));
            }
            word if word.starts_with('-') => return Err(format!("unknown option {word}")),
            "reader" | "writer" if role.is_none() && flavour.is_none() => {
                role = Some(if arg == "reader" {
                    Role::Reader
                } else {
                    Role::Writer
                });
            }
            word if flavour.is_none() && word_flavour(word).is_some() => {
                flavour = word_flavour(word);
            }
            word => {
                return Err(format!(
                    "{word:?}: a semaphore carries no messages, only P and V \
                     (信号量...不是用于缓存进程间通信的数据): send text with msgq-demo or shm-demo"
                ));
            }
        }
    }
    let role = role.unwrap_or(Role::Both);
    let flavour = flavour.unwrap_or(Flavour::Posix);
    if flavour == Flavour::Eventfd {
        eventfd_fits(role, name.is_some() || key.is_some())?;
    }
    let meeting = match (flavour, name, key) {
        (_, Some(_), Some(_)) => return Err("--name and --key: give one meeting point".into()),
        (Flavour::Posix, None, Some(_)) => {
            return Err(
                "--key is for System V (sysv); POSIX semaphores meet at --name /NAME".into(),
            );
        }
        (Flavour::Sysv | Flavour::Eventfd, Some(_), None) => {
            return Err("--name is for POSIX semaphores; System V meets at --key KEY".into());
        }
        (_, Some(name), None) => Meeting::Name(name),
        (_, None, Some(key)) => Meeting::Key(key),
        (_, None, None) => Meeting::Fresh,
    };
    if role == Role::Writer && meeting == Meeting::Fresh {
        let what = match flavour {
            Flavour::Posix => "--name /NAME",
            Flavour::Sysv | Flavour::Eventfd => "--key KEY",
        };
        return Err(format!(
            "the writer needs {what}: the reader prints the one it created"
        ));
    }
    if loops.is_some() && (role != Role::Both || ping.is_some()) {
        return Err("--loops goes with the narrated default run only".into());
    }
    if cpus.is_some() && (role != Role::Both || ping.is_none()) {
        return Err("--cpus goes with --ping in the one-run default (no role)".into());
    }
    Ok(Parsed::Run(Request {
        role,
        flavour,
        meeting,
        ping,
        loops: loops.unwrap_or(DEFAULT_LOOPS),
        cpus,
    }))
}

/// The flavour a word names.
fn word_flavour(word: &str) -> Option<Flavour> {
    match word {
        "posix" => Some(Flavour::Posix),
        "sysv" => Some(Flavour::Sysv),
        "eventfd" => Some(Flavour::Eventfd),
        _ => None,
    }
}

/// An eventfd has no name: no meeting point, and no side for a second terminal.
fn eventfd_fits(role: Role, meeting: bool) -> Result<(), String> {
    if role != Role::Both {
        return Err("eventfd has no reader or writer: an eventfd has no name, so only a                     process that inherits it (fork) can use it; run `sem-demo eventfd`"
            .into());
    }
    if meeting {
        return Err("--name and --key are meeting points, and an eventfd has no name:                     run `sem-demo eventfd`"
            .into());
    }
    Ok(())
}

/// Parses `W,R`, two CPU numbers this machine has.
fn cpu_pair(value: Option<String>) -> Result<(usize, usize), String> {
    let value = value.ok_or("--cpus needs a value, like 0,1")?;
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = |s: &str| match s.parse::<usize>() {
        Ok(c) if c < online => Ok(c),
        _ => Err(format!(
            "--cpus {value}: CPU numbers go from 0 to {}",
            online - 1
        )),
    };
    match value.split_once(',') {
        Some((w, r)) => Ok((cpu(w)?, cpu(r)?)),
        None => Err(format!("--cpus {value}: expected WRITER,READER, like 0,1")),
    }
}

/// Parses the value after `flag` as a whole number of at least 1.
fn number(flag: &str, value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    match value.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{flag} {value}: not a whole number of at least 1")),
    }
}

/// A POSIX semaphore name: `/` then at least one character, and no other `/`
/// (sem_overview(7)); glibc turns `/x` into the file /dev/shm/sem.x.
fn posix_name(value: Option<String>) -> Result<String, String> {
    let name = value.ok_or("--name needs a value, like /my-sem")?;
    let rest = name
        .strip_prefix('/')
        .ok_or_else(|| format!("--name {name:?}: a POSIX name starts with '/', like /my-sem"))?;
    if rest.is_empty() || rest.contains('/') || rest.contains('\0') || rest == "." || rest == ".." {
        return Err(format!(
            "--name {name:?}: after the leading '/' a POSIX name is one word, without '/'"
        ));
    }
    if rest.len() > MAX_NAME {
        return Err(format!("--name: at most {MAX_NAME} bytes after the '/'"));
    }
    Ok(name)
}

/// A System V key: decimal or 0x hex, up to 32 bits, and not 0, which is
/// IPC_PRIVATE (a set nobody else can find by key).
fn sysv_key(value: Option<String>) -> Result<libc::key_t, String> {
    let text = value.ok_or("--key needs a value, decimal or 0x hex")?;
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse::<u32>(),
    };
    match parsed {
        Ok(0) => Err("--key 0 is IPC_PRIVATE, which nobody can open by key: pick another".into()),
        // key_t is a signed 32-bit int: keys above 0x7fffffff are negative numbers
        // to the kernel (and in /proc/sysvipc/sem), but just as valid.
        Ok(key) => Ok(key as libc::key_t),
        Err(_) => Err(format!(
            "--key {text}: not a 32-bit number (decimal, or hex with 0x)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Parsed, String> {
        parse(line.split_whitespace().map(String::from))
    }

    fn request(line: &str) -> Request {
        match parse_line(line) {
            Ok(Parsed::Run(r)) => r,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn roles_flavours_and_meeting_points() {
        let r = request("");
        assert_eq!(
            (r.role, r.flavour, r.meeting),
            (Role::Both, Flavour::Posix, Meeting::Fresh)
        );
        assert_eq!(r.loops, DEFAULT_LOOPS);
        let r = request("reader sysv --key 0x10");
        assert_eq!(
            (r.role, r.flavour, r.meeting),
            (Role::Reader, Flavour::Sysv, Meeting::Key(16))
        );
        let r = request("writer --name /x --ping 5");
        assert_eq!(r.meeting, Meeting::Name("/x".into()));
        assert_eq!(r.ping, Some(5));
        assert_eq!(request("--ping 100000000").ping, Some(MAX_PINGS));
        assert_eq!(request("sysv --key 0xffffffff").meeting, Meeting::Key(-1));
        let r = request("eventfd --ping 7");
        assert_eq!((r.flavour, r.ping), (Flavour::Eventfd, Some(7)));
        assert_eq!(request("eventfd --loops 9").loops, 9);
    }

    #[test]
    fn mistakes_are_bad_usage() {
        for bad in [
            "--count 3",
            "--size 10",
            "--ping 3 --size 10",
            "hello",
            "posix sysv",
            "writer",
            "writer sysv",
            "--name x",
            "--name /a/b",
            "--name /",
            "--key 0",
            "--key 0x1g",
            "--key 99999999999",
            "--name /x --key 1",
            "sysv --name /x",
            "--key 5",
            "--loops 0",
            "reader --loops 5",
            "--ping 0",
            "--ping 100000001",
            "--ping 18446744073709551615",
            "--ping",
            "--bogus",
            "reader writer",
            "reader eventfd",
            "writer eventfd",
            "eventfd --name /x",
            "eventfd --key 5",
            "eventfd posix",
            "eventfd hello",
            "eventfd --count 3",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} should be bad usage");
        }
    }
}
