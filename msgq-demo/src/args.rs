//! The command line (DESIGN §3), parsed and checked in full before anything is created,
//! so bad usage (exit 2) never leaves a queue behind.

pub const USAGE: &str = "\
usage: msgq-demo [posix|sysv|poll] [OPTIONS] [MESSAGE...]        both sides, narrated
       msgq-demo reader [posix|sysv|poll] [--name /NAME | --key KEY] [OPTIONS]
       msgq-demo writer [posix|sysv] (--name /NAME | --key KEY) [OPTIONS] [MESSAGE...]

  posix    (default) mq_open, mq_send, mq_receive: named queues, priorities, mq_notify
  sysv     msgget, msgsnd, msgrcv: queues found by a number (the key), message types
  poll     two POSIX queues, /NAME-a and /NAME-b, and one reader that poll(2)s both at
           once with a deadline (Linux: a queue descriptor is a file descriptor); text
           messages only; its writers are posix writers (writer --name /NAME-a ...)

options:
  --name /NAME         the POSIX queue: the reader creates it, the writer opens it;
                       with no role, the narrated run creates (and removes) it
  --key KEY            the System V queue's key, decimal or 0x hex (not 0); used like
                       --name
  --count N            bulk: N messages of --size bytes, every byte checked by the reader
  --ping N             N round trips of --size bytes (default 100)
  --size BYTES         message size, at most the kernel's limit (8192 by default:
                       /proc/sys/fs/mqueue/msgsize_max, /proc/sys/kernel/msgmax)
  --cpus W,R           with a workload in the one-run default: writer on CPU W, reader on R
  -h, --help           print this text
  --                   everything after it is a message, even if it starts with '-'

The writer sends each MESSAGE as one message (with none, each line of standard
input), then one zero-length message that says it is done.

two terminals:
  msgq-demo reader --name /q              then: msgq-demo writer --name /q hello world
  msgq-demo reader sysv --key 0x7100      then: msgq-demo writer sysv --key 0x7100 hi
";

const DEFAULT_PING_SIZE: usize = 100;
/// The most round trips a ping run takes: the writer keeps each one's time (a `Duration`, 16 bytes)
/// to compute the percentiles, allocated before it starts.
const MAX_PINGS: u64 = 100_000_000;
/// The longest POSIX queue name we accept: NAME_MAX (255) minus the leading '/' and
/// the "-reply" that ping adds for its second queue.
const MAX_NAME: usize = 255 - 1 - "-reply".len();

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// The narrated run: a parent, a writer and a reader.
    Both,
    Reader,
    Writer,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flavour {
    Posix,
    Sysv,
    /// Two POSIX queues, polled at once by one reader.
    Poll,
}

#[derive(Debug, PartialEq)]
pub enum Workload {
    /// Text messages: the MESSAGE arguments (empty: the writer reads standard input,
    /// the narrated run uses its own).
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

impl Workload {
    /// A text workload's messages; none for the others.
    pub fn messages(&self) -> &[String] {
        match self {
            Workload::Text(messages) => messages,
            _ => &[],
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct Args {
    pub role: Role,
    pub flavour: Flavour,
    /// `--name` (POSIX).
    pub name: Option<String>,
    /// `--key` (System V).
    pub key: Option<i32>,
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

/// What the kernel lets one queue carry, read from /proc before anything is created.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// The largest message, in bytes, and where that limit comes from.
    pub message: usize,
    pub message_limit: &'static str,
    /// How many messages, and how many bytes, one queue holds at once.
    pub messages: u64,
    pub bytes: u64,
}

/// Parses this process's arguments. `args_os`, not `args`: a non-UTF-8 argument is
/// bad usage, not a panic.
pub fn from_env() -> Result<Parsed, String> {
    let mut words = Vec::new();
    for word in std::env::args_os().skip(1) {
        match word.into_string() {
            Ok(word) => words.push(word),
            Err(word) => return Err(format!("argument {word:?} is not valid UTF-8")),
        }
    }
    parse(words)
}

/// Parses the arguments after the program name. `Err` is one line saying what is wrong.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut args = args.into_iter().peekable();
    let role = match args.peek().map(String::as_str) {
        Some("reader") => Role::Reader,
        Some("writer") => Role::Writer,
        _ => Role::Both,
    };
    if role != Role::Both {
        args.next();
    }
    let mut flavour = None;
    let (mut name, mut key) = (None, None);
    let (mut count, mut ping, mut size, mut cpus) = (None, None, None, None);
    let mut messages = Vec::new();
    let mut only_messages = false;
    while let Some(arg) = args.next() {
        if only_messages {
            messages.push(arg);
            continue;
        }
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--" => only_messages = true,
            "--name" => name = Some(queue_name(args.next())?),
            "--key" => key = Some(queue_key(args.next())?),
            "--count" => count = Some(number(&arg, args.next())?),
            "--ping" => ping = Some(number(&arg, args.next())?),
            "--size" => size = Some(number(&arg, args.next())?),
            "--cpus" => cpus = Some(cpu_pair(args.next())?),
            option if option.starts_with('-') && option.len() > 1 => {
                return Err(format!("unknown option {option}"));
            }
            word if flavour.is_none() && messages.is_empty() => {
                flavour = Some(match word {
                    "posix" => Flavour::Posix,
                    "sysv" => Flavour::Sysv,
                    "poll" => Flavour::Poll,
                    _ => {
                        messages.push(arg);
                        Flavour::Posix
                    }
                });
            }
            _ => messages.push(arg),
        }
    }
    let flavour = flavour.unwrap_or(Flavour::Posix);

    match (flavour, &name, key) {
        (Flavour::Sysv, Some(_), _) => {
            return Err("--name names a POSIX queue; a System V queue is found by --key".into());
        }
        (Flavour::Poll, _, _) if role == Role::Writer => {
            return Err(
                "the poll flavour is a reader of two queues; its writers are posix \
                        writers: msgq-demo writer --name /NAME-a hello (or /NAME-b)"
                    .into(),
            );
        }
        (Flavour::Poll, _, Some(_)) => {
            return Err("--key finds a System V queue; poll waits on POSIX queues (--name)".into());
        }
        (Flavour::Posix, _, Some(_)) => {
            return Err(
                "--key finds a System V queue (msgq-demo ... sysv --key KEY); \
                 a POSIX queue has a --name"
                    .into(),
            );
        }
        (Flavour::Posix, None, _) if role == Role::Writer => {
            return Err(
                "the writer needs --name /NAME: the queue a reader created, which it opens".into(),
            );
        }
        (Flavour::Sysv, _, None) if role == Role::Writer => {
            return Err("the writer needs --key KEY: the key of the reader's queue".into());
        }
        _ => {}
    }

    let workload = match (count, ping) {
        (Some(_), Some(_)) => return Err("--count and --ping are two workloads: pick one".into()),
        (Some(count), None) => Workload::Bulk {
            count,
            size: size.ok_or("--count needs --size BYTES")? as usize,
        },
        (None, Some(count)) if count > MAX_PINGS => {
            return Err(format!("--ping {count}: at most {MAX_PINGS} round trips"));
        }
        (None, Some(count)) => Workload::Ping {
            count,
            size: size.map_or(DEFAULT_PING_SIZE, |s| s as usize),
        },
        (None, None) if size.is_some() => {
            return Err("--size goes with --count or --ping".into());
        }
        (None, None) => Workload::Text(messages.clone()),
    };
    if flavour == Flavour::Poll && !matches!(workload, Workload::Text(_)) {
        return Err(
            "poll takes text messages only (no --count, --ping): it shows the wait, \
                    not a measurement"
                .into(),
        );
    }
    if !messages.is_empty() && !matches!(workload, Workload::Text(_)) {
        return Err("messages and a workload (--count, --ping) do not mix".into());
    }
    if role == Role::Reader && !messages.is_empty() {
        return Err(format!(
            "the reader takes no messages (got {:?}): give them to the writer",
            messages[0]
        ));
    }
    if messages.iter().any(String::is_empty) {
        return Err(
            "an empty message would be taken for the end marker (a zero-length message)".into(),
        );
    }
    if cpus.is_some() && (role != Role::Both || matches!(workload, Workload::Text(_))) {
        return Err(
            "--cpus goes with a workload (--count or --ping) in the one-run default".into(),
        );
    }
    Ok(Parsed::Run(Args {
        role,
        flavour,
        name,
        key,
        workload,
        cpus,
    }))
}

/// Parses `W,R`, two CPU numbers this machine has.
fn cpu_pair(value: Option<String>) -> Result<Cpus, String> {
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
        Some((w, r)) => Ok(Cpus {
            writer: cpu(w)?,
            reader: cpu(r)?,
        }),
        None => Err(format!("--cpus {value}: expected WRITER,READER, like 0,1")),
    }
}

/// Checks the sizes against what the kernel allows (`capacity`, read from /proc), so
/// that nothing is created for a run that cannot work.
pub fn check_sizes(args: &Args, capacity: &Capacity) -> Result<(), String> {
    let largest = capacity.message;
    match &args.workload {
        Workload::Bulk { size, .. } | Workload::Ping { size, .. } if *size > largest => {
            Err(format!(
                "--size {size}: a message can be at most {largest} bytes here ({})",
                capacity.message_limit
            ))
        }
        Workload::Text(messages) => {
            if let Some(long) = messages.iter().find(|m| m.len() > largest) {
                return Err(format!(
                    "a message of {} bytes: a message can be at most {largest} bytes here ({})",
                    long.len(),
                    capacity.message_limit
                ));
            }
            // The narrated run keeps every message in the queue at once (the writer
            // exits before the reader starts), the end marker too: they must all fit,
            // or the writer would wait for a reader that is not there yet.
            let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
            let fits = (messages.len() as u64) < capacity.messages && bytes <= capacity.bytes;
            if args.role == Role::Both && !fits {
                return Err(format!(
                    "the narrated run holds all its messages in the queue at once, which takes \
                     at most {} messages and {} bytes here, the end marker included: send fewer \
                     (or use the reader and writer roles)",
                    capacity.messages, capacity.bytes
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks a POSIX queue name: one leading '/', no other, not too long.
fn queue_name(value: Option<String>) -> Result<String, String> {
    let name = value.ok_or("--name needs a value, like /myqueue")?;
    let rest = name.strip_prefix('/').unwrap_or("/");
    if rest.is_empty() || rest.contains('/') || rest.contains('\0') {
        return Err(format!(
            "--name {name:?}: a POSIX queue name is '/' then at least one character, with no other '/'"
        ));
    }
    if rest.len() > MAX_NAME {
        return Err(format!(
            "--name: at most {MAX_NAME} characters after the '/'"
        ));
    }
    Ok(name)
}

/// Parses a System V key, decimal or 0x hex. 0 is IPC_PRIVATE, a key nobody can meet at.
fn queue_key(value: Option<String>) -> Result<i32, String> {
    let text = value.ok_or("--key needs a value, like 0x7100")?;
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse::<u32>(),
    };
    match parsed {
        // key_t is a C int: keys above 0x7fffffff are its negative values, as ipcs shows.
        Ok(key) if key != 0 => Ok(key as i32),
        Ok(_) => Err(
            "--key 0 is IPC_PRIVATE: a queue no other process can find by key; pick another".into(),
        ),
        Err(_) => Err(format!(
            "--key {text}: not a number (decimal, or hex like 0x7100) that fits in 32 bits"
        )),
    }
}

/// Parses the value after `flag` as a whole number of at least 1.
fn number(flag: &str, value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    match value.parse::<u64>() {
        Ok(n) if n >= 1 && usize::try_from(n).is_ok() => Ok(n),
        _ => Err(format!("{flag} {value}: not a whole number of at least 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Parsed, String> {
        parse(line.split_whitespace().map(String::from))
    }

    fn args(line: &str) -> Args {
        match parse_line(line) {
            Ok(Parsed::Run(args)) => args,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn role_then_flavour_then_messages() {
        let a = args("sysv hello posix");
        assert_eq!((a.role, a.flavour), (Role::Both, Flavour::Sysv));
        assert_eq!(
            a.workload,
            Workload::Text(vec!["hello".into(), "posix".into()])
        );
        let a = args("hello sysv");
        assert_eq!(a.flavour, Flavour::Posix);
        assert_eq!(
            a.workload,
            Workload::Text(vec!["hello".into(), "sysv".into()])
        );
        let a = args("writer sysv --key 0x10 -- -dash");
        assert_eq!((a.role, a.key), (Role::Writer, Some(16)));
        assert_eq!(a.workload, Workload::Text(vec!["-dash".into()]));
        let a = args("reader --name /q --ping 5");
        assert_eq!(a.name.as_deref(), Some("/q"));
        assert_eq!(
            a.workload,
            Workload::Ping {
                count: 5,
                size: 100
            }
        );
        assert_eq!(args("sysv --key 4294967295").key, Some(-1));
        let a = args("reader poll --name /q");
        assert_eq!((a.role, a.flavour), (Role::Reader, Flavour::Poll));
    }

    #[test]
    fn mistakes_are_bad_usage() {
        for bad in [
            "--count 3",
            "--count x --size 1",
            "--count 0 --size 1",
            "--ping 1 --count 1 --size 1",
            "--ping 100000001",
            "--size 5",
            "--bogus",
            "--ping",
            "hello --ping 3",
            "reader hello",
            "writer hello",
            "writer sysv hello",
            "sysv --name /q",
            "--key 5",
            "sysv --key 0",
            "sysv --key 0x1ffffffff",
            "--name q",
            "--name /a/b",
            "--name /",
            "writer poll --name /q hi",
            "poll --key 5",
            "poll --count 3 --size 10",
            "reader poll --ping 3",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} should be bad usage");
        }
        assert!(parse(["".to_string()]).is_err(), "an empty message");
    }

    #[test]
    fn sizes_are_checked_against_the_kernel() {
        let capacity = Capacity {
            message: 8192,
            message_limit: "msgsize_max",
            messages: 10,
            bytes: 81920,
        };
        assert!(check_sizes(&args("--count 2 --size 8192"), &capacity).is_ok());
        let too_big = check_sizes(&args("--count 2 --size 8193"), &capacity).unwrap_err();
        assert!(too_big.contains("at most 8192"), "{too_big}");
        assert!(check_sizes(&args("--ping 2 --size 9000"), &capacity).is_err());
        assert!(check_sizes(&args("a b c d e f g h i"), &capacity).is_ok());
        assert!(check_sizes(&args("a b c d e f g h i j"), &capacity).is_err());
        // Separate roles do not hold everything at once.
        assert!(check_sizes(&args("writer --name /q a b c d e f g h i j k"), &capacity).is_ok());
    }
}
