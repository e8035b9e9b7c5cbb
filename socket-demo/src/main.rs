//! socket-demo: sockets, the one IPC mechanism that also crosses machines.
//!
//! A socket is an endpoint the kernel keeps for a process: a pair of buffers and a state
//! machine, reached through an fd like a pipe. Two choices make the kinds: the family
//! (AF_UNIX: meet at a file on this machine; AF_INET: meet at an IP address and port) and
//! the type (SOCK_STREAM: a connection carrying bytes with no boundaries, like a pipe in
//! both directions; SOCK_DGRAM: separate messages, boundaries kept, no connection).
//!
//! The notes' Socket section is empty. Their opening claim is what every flavour here
//! shows: 每个进程的用户地址空间都是独立的 … 进程之间要通信必须通过内核 (each process's
//! address space is its own, so processes must communicate through the kernel). What the
//! notes leave out, shown here:
//! - stream vs datagram: two writes can come out of one read on a stream; a datagram
//!   socket hands out exactly one message per recv (`unix`, `unix-dgram`);
//! - who is calling: on a Unix socket the kernel tells the server the client's pid, uid and
//!   gid (SO_PEERCRED, recorded at connect(2); SCM_CREDENTIALS, filled in or checked by
//!   the kernel); TCP/UDP tell only an address;
//! - full duplex: one socketpair carries both ways at once, a pipe one way (`pair`);
//! - passing open files, and with a memfd shared memory, to an unrelated process (`fdpass`);
//! - flow control: Unix datagrams make a fast writer wait, UDP drops what does not fit;
//! - past the textbook: SOCK_SEQPACKET, a connection that keeps message boundaries and
//!   still gives EOF (`seqpacket`); abstract names, `--path @NAME`, with no file to
//!   remove (`unix`, `unix-dgram`, `seqpacket`); many clients at once over poll(2)
//!   (`reader unix --clients N`), each line labelled by its sender's SO_PEERCRED pid.
//!
//! Run:
//!   cargo run -p socket-demo                   unix: reader and writer, two processes
//!   cargo run -p socket-demo -- unix-dgram     (or seqpacket, tcp, udp, pair, fdpass)
//!   cargo run -p socket-demo -- seqpacket --path @demo   an abstract name: no file at all
//!   cargo run -p socket-demo -- tcp --count 1000 --size 65536   bulk, every byte checked
//!   cargo run -p socket-demo -- udp --ping 10000                round trips
//! Two terminals:
//!   socket-demo reader tcp --addr 127.0.0.1:7000     then   nc -N 127.0.0.1 7000
//!   socket-demo reader unix --path /tmp/s            then   socket-demo writer unix --path /tmp/s hi
//!   socket-demo reader unix --path /tmp/s --clients 3   then three writers at once
//!   socket-demo reader udp --addr 127.0.0.1:7001     then   socket-demo writer udp --addr 127.0.0.1:7001
//!   nc -lU /tmp/t                                    then   socket-demo writer unix --path /tmp/t hi
//!
//! Watch for: `srw-------` (a socket file holds no data); the reader asleep in accept(2)
//! (`cat /proc/PID/wchan`); "3 messages came out of that one read(2)" on a stream, one
//! datagram per recv(2); SO_PEERCRED naming the writer's pid; the passed fd reading a file
//! with no name any more; `ss -xp` / `ss -tuanp` listing the sockets.
//!
//! In production: std's or tokio's sockets, `interprocess` for local sockets that also work
//! on Windows, `ipc-channel` for typed messages with fd passing and shared memory.
//!
//! To copy: the library half, `lib.rs` and one module per socket kind (`unix`, `seqpacket`, `server`
//! for many clients, `fdpass`, `dgram`, `inet`, `pair`, `wait`): `cargo doc -p
//! socket-demo --open`. This file: which role runs. The lesson, narrated around those
//! calls: `reader.rs` (the server), `writer.rs` (the client), `stream.rs`,
//! `datagrams.rs` and `packets.rs` (the three kinds), `meeting.rs` and `inet_words.rs` (the two families'
//! meeting points, in words), `socketpair.rs`, `passing.rs` (fd passing); `args.rs` the
//! command line, `workload.rs` bulk and ping (measurement machinery).

use std::io::Write;
use std::process::ExitCode;

/// Narrates one event on stdout as `[ROLE PID] ...`. Not `println!`: that panics when stdout
/// is a closed pipe (`socket-demo | head -1`); a narrator with no audience just goes on.
macro_rules! say {
    ($role:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout().lock(),
            "[{} {}] {}",
            $role,
            std::process::id(),
            format_args!($($arg)*)
        );
    }};
}

mod args;
mod datagrams;
mod demo;
mod inet_words;
mod meeting;
mod packets;
mod passing;
mod reader;
mod signals;
mod socketpair;
mod stream;
mod workload;
mod writer;

use args::{Args, Flavour, Meet, Parsed, Role, Workload};

fn main() -> ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Help) => {
            // Not print!: it panics when stdout is a closed pipe (`--help | true`).
            let _ = std::io::stdout().write_all(args::USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => args,
        Err(what) => {
            let _ =
                std::io::stderr().write_all(format!("error: {what}\n\n{}", args::USAGE).as_bytes());
            return ExitCode::from(2);
        }
    };
    let role = match (args.flavour, args.role) {
        (Flavour::Pair, _) => "parent",
        (_, Role::Writer) => "writer",
        _ => "reader",
    };
    match (
        signals::install().and_then(|()| run(&args)),
        signals::caught(),
    ) {
        (Ok(()), _) => ExitCode::SUCCESS,
        // Whatever failed after a SIGINT/SIGTERM is its consequence; the guards have
        // dropped by now. Say what they removed, then die of the signal, so the shell
        // knows we were stopped.
        (Err(_), Some(sig)) => signals::say_removed_and_die(role, sig),
        (Err(e), None) => {
            let _ = std::io::stderr().write_all(format!("error: {e:#}\n").as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    // --cpus: each side pins itself. The default run's reader pins itself before it starts
    // the writer, which inherits that CPU and then moves to its own.
    workload::run_on_cpu(args.cpus.map(|c| match args.role {
        Role::Writer => c.writer,
        _ => c.reader,
    }))?;
    let messages = match &args.workload {
        Workload::Text(messages) => messages.as_slice(),
        _ => &[],
    };
    let path = match &args.meet {
        Some(Meet::Path(path)) => Some(path.as_path()),
        _ => None,
    };
    match (args.flavour, args.role, &args.meet) {
        (Flavour::Pair, _, _) => socketpair::run(messages),
        (Flavour::Fdpass, Role::Writer, Some(Meet::Path(path))) => {
            passing::writer(path, messages, args.file.as_deref())
                .map_err(|e| writer::with_left_behind(e, path))
        }
        (Flavour::Fdpass, Role::Reader, _) => passing::reader(path, None),
        (Flavour::Fdpass, _, _) => passing::reader(path, Some((messages, args.file.as_deref()))),
        (flavour, Role::Writer, Some(meet)) => {
            writer::run(flavour, meet, &args.workload).map_err(|e| match meet {
                Meet::Path(path) => writer::with_left_behind(e, path),
                Meet::Addr(_) => e,
            })
        }
        (flavour, role, meet) => {
            let start = (role == Role::Both).then_some(args.cpus);
            reader::run(flavour, meet.as_ref(), &args.workload, start, args.clients)
        }
    }
}
