//! Input from a program nobody here wrote, at its worst: an endless stream with no
//! newline. Every role that reads lines (a writer reading its standard input, a
//! reader reading a FIFO or a stream socket) must keep its memory bounded (peak
//! resident size, `VmHWM`, under 128 MiB), stop with one sentence naming its cap,
//! exit 1, and leave no object behind (issue 9, "any input"). The input is
//! `/dev/zero` or a writer of the test's own that never stops: more than the issue's
//! 200 MB whenever a role fails to stop.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::Stdio;

use ipc_tests::*;

/// The peak resident size a role may reach on an endless line.
const MEMORY_LIMIT_KIB: u64 = 128 << 10;

/// Samples `demo`'s VmHWM until it has exited (a zombie keeps no memory figures),
/// failing as soon as the peak passes the limit, and returns the peak.
fn peak_memory_until_exit(demo: &Demo, what: &str) -> u64 {
    let pid = demo.pid();
    let mut peak = 0;
    wait_until(&format!("{what} (pid {pid}) exits"), || {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        assert!(
            peak < MEMORY_LIMIT_KIB,
            "{what} grew to {peak} KiB on one endless line"
        );
        !matches!(proc_state(pid), Some((state, _)) if state != 'Z')
    });
    peak
}

fn dev_zero() -> Stdio {
    std::fs::File::open("/dev/zero")
        .expect("open /dev/zero")
        .into()
}

/// How the reader ends once its writer has given up.
#[derive(Clone, Copy, PartialEq)]
enum ReaderEnds {
    /// It sees its writer go (a closed connection, a dead pid) and exits by itself.
    ByItself,
    /// It has no connection to lose (a datagram socket that never got a datagram
    /// serves whoever sends next): the test ends it with Ctrl+C.
    OnCtrlC,
}

/// Starts `reader_args` of `demo`, waits for `ready`, then feeds `writer_args` an
/// endless standard input. The writer must stop at `cap` (a phrase of its error);
/// the reader must then end, cleanly, its objects gone.
fn writer_fed_an_endless_line(
    demo: &str,
    reader_args: &[&str],
    ready: &str,
    writer_args: &[&str],
    cap: &str,
    ends: ReaderEnds,
) -> (Finished, Finished) {
    let mut reader = Demo::start(demo, reader_args);
    reader.wait_for_line(ready);
    let writer = Demo::start_with_stdio(demo, writer_args, dev_zero());
    peak_memory_until_exit(&writer, &format!("{demo} {}", writer_args.join(" ")));
    let writer = writer.finish();
    writer.assert_exit_code(1).assert_stderr_contains(cap);
    if ends == ReaderEnds::OnCtrlC {
        reader.signal_group(nix::sys::signal::Signal::SIGINT);
        let reader = reader.finish();
        reader.assert_killed_by(nix::sys::signal::Signal::SIGINT);
        return (writer, reader);
    }
    let reader = reader.finish();
    assert!(
        matches!(reader.status.code(), Some(0 | 1)),
        "the reader should end by itself once its writer gave up: {} {}\n{}",
        reader.status,
        reader.stderr,
        reader.stdout
    );
    for path in tmp_and_shm_paths_in(&reader.stdout) {
        assert!(is_gone(&path), "{path} is left:\n{}", reader.stdout);
    }
    (writer, reader)
}

fn unique_name(tag: &str) -> String {
    format!("/flood-{tag}-{}", std::process::id())
}

fn unique_key(n: i32) -> i32 {
    0x7d00_0000 | ((std::process::id() as i32 & 0xffff) << 8) | n
}

// ---- writers reading their standard input ----

#[test]
fn msgq_posix_writer() {
    let name = unique_name("mq");
    writer_fed_an_endless_line(
        "msgq-demo",
        &["reader", "--name", &name],
        "waiting for messages",
        &["writer", "--name", &name],
        "8192 bytes",
        ReaderEnds::ByItself,
    );
    assert!(!posix_queue_exists(&name), "queue {name} is left");
}

#[test]
fn msgq_sysv_writer() {
    let key = unique_key(1);
    let key_text = format!("{key:#x}");
    writer_fed_an_endless_line(
        "msgq-demo",
        &["reader", "sysv", "--key", &key_text],
        "waiting for messages",
        &["writer", "sysv", "--key", &key_text],
        "8192 bytes",
        ReaderEnds::ByItself,
    );
    assert!(!sysv_keys("msg").contains(&key), "queue {key:#x} is left");
}

#[test]
fn shm_sysv_writer() {
    let key = unique_key(2);
    let key_text = format!("{key:#x}");
    writer_fed_an_endless_line(
        "shm-demo",
        &["reader", "sysv", "--key", &key_text],
        "waiting on the semaphore",
        &["writer", "sysv", "--key", &key_text],
        "4088 bytes",
        ReaderEnds::ByItself,
    );
    for table in ["shm", "sem"] {
        assert!(!sysv_keys(table).contains(&key), "{table} {key:#x} is left");
    }
}

#[test]
fn fifo_writer() {
    let dir = ScratchDir::new("flood-fifo-w");
    let fifo = dir.join("f");
    writer_fed_an_endless_line(
        "fifo-demo",
        &["reader", "--path", &fifo],
        "opening",
        &["writer", "--path", &fifo],
        "1048576 bytes",
        ReaderEnds::ByItself,
    );
    assert!(is_gone(&fifo));
}

#[test]
fn socket_writers_of_every_line_flavour() {
    for (flavour, ends) in [
        ("unix", ReaderEnds::ByItself),
        ("unix-dgram", ReaderEnds::OnCtrlC),
    ] {
        let dir = ScratchDir::new("flood-sock-w");
        let path = dir.join("s");
        writer_fed_an_endless_line(
            "socket-demo",
            &["reader", flavour, "--path", &path],
            "waiting in",
            &["writer", flavour, "--path", &path],
            "1048576 bytes",
            ends,
        );
        assert!(is_gone(&path));
    }
    for (flavour, ends) in [("tcp", ReaderEnds::ByItself), ("udp", ReaderEnds::OnCtrlC)] {
        let mut reader = Demo::start("socket-demo", &["reader", flavour]);
        let line = reader.wait_for_line("bound to 127.0.0.1:");
        let addr = format!("127.0.0.1:{}", number_after(&line, "bound to 127.0.0.1:"));
        drop(reader); // only to learn a free port; the next reader binds it again
        writer_fed_an_endless_line(
            "socket-demo",
            &["reader", flavour, "--addr", &addr],
            "waiting in",
            &["writer", flavour, "--addr", &addr],
            "1048576 bytes",
            ends,
        );
    }
}

// ---- readers fed by a writer of the test's own ----

/// Writes `chunk` to `sink` until the reader gives up (EPIPE or reset) and closes.
fn flood(mut sink: impl Write, reader: &Demo) -> u64 {
    let chunk = vec![b'x'; 64 << 10];
    let mut peak = 0;
    while sink.write_all(&chunk).is_ok() {
        if let Some(kib) = vm_hwm_kib(reader.pid()) {
            peak = peak.max(kib);
        }
        assert!(peak < MEMORY_LIMIT_KIB, "the reader grew to {peak} KiB");
    }
    peak
}

fn assert_reader_stopped_at_the_cap(reader: Demo) -> Finished {
    let out = reader.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("1048576 bytes");
    assert!(
        out.stdout.len() < 64 << 10,
        "the reader's echo of one endless line was not cut: {} bytes",
        out.stdout.len()
    );
    for path in tmp_and_shm_paths_in(&out.stdout) {
        assert!(is_gone(&path), "{path} is left:\n{}", out.stdout);
    }
    out
}

#[test]
fn fifo_reader_fed_by_cat() {
    // cat(1): a writer nobody here wrote, copying /dev/zero into the FIFO.
    let dir = ScratchDir::new("flood-fifo-r");
    let fifo = dir.join("f");
    let mut reader = Demo::start("fifo-demo", &["reader", "--path", &fifo]);
    reader.wait_for_line("opening");
    let out = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the FIFO for cat");
    let mut cat = std::process::Command::new("cat")
        .arg("/dev/zero")
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cat");
    peak_memory_until_exit(&reader, "fifo-demo reader");
    assert_reader_stopped_at_the_cap(reader);
    // The reader's end is closed: cat dies of SIGPIPE, or sees EPIPE and exits 1.
    let status = cat.wait().expect("wait for cat");
    assert!(!status.success(), "cat wrote into a FIFO with no reader");
    assert!(is_gone(&fifo));
}

#[test]
fn socket_unix_reader_fed_by_a_client_of_ours() {
    let dir = ScratchDir::new("flood-sock-r");
    let path = dir.join("s");
    let mut reader = Demo::start("socket-demo", &["reader", "unix", "--path", &path]);
    reader.wait_for_line("waiting in accept");
    let conn = UnixStream::connect(&path).expect("connect");
    flood(conn, &reader);
    assert_reader_stopped_at_the_cap(reader);
    assert!(is_gone(&path));
}

#[test]
fn socket_tcp_reader_fed_by_a_client_of_ours() {
    let mut reader = Demo::start("socket-demo", &["reader", "tcp"]);
    let line = reader.wait_for_line("bound to 127.0.0.1:");
    let port = number_after(&line, "bound to 127.0.0.1:");
    let conn = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    flood(conn, &reader);
    assert_reader_stopped_at_the_cap(reader);
}
