//! End-to-end tests of socket-demo: every flavour's default run, reader and writer as
//! separate processes, stream against datagram boundaries, peer credentials, fd passing,
//! bulk and ping on the four socket kinds, bad usage, Ctrl+C while blocked, a peer killed,
//! a writer with no reader, a stale socket file, and socat/nc on the other end. After each
//! run: no socket file, no private directory, no bound port and no process is left.
//!
//! Every test has its own paths (a `ScratchDir`) or port 0, so they run in parallel.
//! socat and nc (netcat-openbsd) must be installed: `.ci/run` installs them.

use ipc_tests::*;
use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = "socket-demo";
const DEFAULT_MESSAGES: [&str; 3] = ["hello", "through a socket", "via the kernel"];

// ---------------------------------------------------------------- helpers

fn start(args: &[&str]) -> Demo {
    Demo::start(DEMO, args)
}

/// The word after `key` in `line`, up to a space or a comma.
fn word_after<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} not in {line:?}"));
    line[at + key.len()..]
        .split([' ', ','])
        .next()
        .unwrap_or_default()
}

/// The socket file a reader printed (`listening at PATH`, `receiving at PATH`).
fn listening_path(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.contains("] listening at ") || l.contains("] receiving at "))
        .unwrap_or_else(|| panic!("no `listening at` line:\n{stdout}"));
    word_after(line, " at ").to_string()
}

/// The TCP/UDP address a reader printed (`bound to 127.0.0.1:PORT`).
fn bound_addr(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.contains("socket(AF_INET"))
        .unwrap_or_else(|| panic!("no AF_INET socket line:\n{stdout}"));
    word_after(line, "bound to ").to_string()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The leak check for a Unix socket: the file is gone, and so is the private directory the
/// demo made for it (when it made one), named `socket-demo-PID-XXXXXX`.
fn assert_socket_gone(path: &str, private_dir: bool) {
    assert!(is_gone(path), "socket file {path} was left behind");
    if private_dir {
        let dir = Path::new(path).parent().unwrap();
        let name = dir.file_name().unwrap().to_string_lossy();
        let pid = name
            .strip_prefix("socket-demo-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        assert!(
            pid.is_some(),
            "{path} is not in a private socket-demo-PID-XXXXXX directory"
        );
        assert!(
            is_gone(&dir.to_string_lossy()),
            "{} was left behind",
            dir.display()
        );
    }
}

/// The summary is the last line `role` printed: what it removed and reaped comes before.
fn assert_summary_last(out: &Finished, role: &str) {
    let pid = out.pid_of(role);
    let last = out
        .lines_with(&format!("[{role} {pid}] "))
        .pop()
        .unwrap_or_default();
    assert!(
        last.contains("] summary: "),
        "the last line of the {role} is not its summary: {last:?}\n{}",
        out.stdout
    );
}

/// The private directory a default run's reader made: named after the reader's pid.
fn assert_private_dir_names_the_reader(out: &Finished, path: &str) {
    let dir = Path::new(path).parent().unwrap().file_name().unwrap();
    let prefix = format!("socket-demo-{}-", out.pid_of("reader"));
    assert!(
        dir.to_string_lossy().starts_with(&prefix),
        "{path}: not in {prefix}XXXXXX"
    );
}

/// True if a socket is bound to 127.0.0.1:`port` in /proc/net/{tcp,udp}. TIME_WAIT (06)
/// does not count: that is the kernel finishing a closed TCP connection, held by no process.
fn port_bound(proto: &str, port: u16) -> bool {
    let table = std::fs::read_to_string(format!("/proc/net/{proto}")).unwrap();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.get(1) == Some(&local.as_str()) && fields.get(3) != Some(&"06")
    })
}

/// The leak check for TCP/UDP: the kernel has freed the reader's port.
fn assert_port_free(proto: &str, addr: &str) {
    let port = port_of(addr);
    assert!(
        !port_bound(proto, port),
        "{proto} port {port} is still bound after the run"
    );
}

/// True once a socket is listening at `path` (/proc/net/unix flag __SO_ACCEPTCON).
fn unix_listening(path: &str) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    table
        .lines()
        .any(|l| l.ends_with(&format!(" {path}")) && l.contains(" 00010000 "))
}

/// True once a TCP socket listens on 127.0.0.1:`port` (state 0A).
fn tcp_listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    table.lines().any(|l| l.contains(&needle))
}

/// A port nobody listens on: the kernel gives us a free one, and we let it go.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of a tool the tests drive (`ipc_tests::find_tool`: None, and a skip line, if
/// it is missing). nc must be OpenBSD's: another nc (traditional, ncat, busybox) takes
/// other options, so it counts as missing.
fn tool(name: &str) -> Option<String> {
    let package = if name == "nc" { "netcat-openbsd" } else { name };
    let path = find_tool(name, package)?;
    if name == "nc" {
        let help = Command::new(&path).arg("-h").output().ok()?;
        let said = [help.stdout, help.stderr].concat();
        if !String::from_utf8_lossy(&said).contains("OpenBSD") {
            let _ = std::io::stderr().write_all(
                format!(
                    "skipped: {} is not OpenBSD's nc (apt-get install netcat-openbsd)\n",
                    path.display()
                )
                .as_bytes(),
            );
            return None;
        }
    }
    Some(path.to_string_lossy().into_owned())
}

/// Whether every tool a test drives is here; a test returns early (skips) if not.
fn have(names: &[&str]) -> bool {
    names.iter().all(|name| tool(name).is_some())
}

/// A socat/nc process, in its own process group, killed if the test gives up on it.
struct Tool {
    child: std::process::Child,
    name: String,
}

impl Tool {
    fn start(name: &str, args: &[&str], input: &[u8]) -> Tool {
        let mut child = Command::new(tool(name).expect("checked by have() first"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin); // EOF: the tool's input is done
        Tool {
            child,
            name: name.to_string(),
        }
    }

    /// Waits (with the harness's deadline) and returns (success, stdout, stderr).
    fn finish(mut self) -> (bool, String, String) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {DEADLINE:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut out = String::new();
        let mut err = String::new();
        use std::io::Read;
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.success(), out, err)
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `received "..."` texts of `role`, in order.
fn received(out: &Finished, role: &str) -> Vec<String> {
    out.lines_with(&format!("[{role} "))
        .into_iter()
        .filter_map(|l| l.split_once("] received "))
        .map(|(_, rest)| rest.to_string())
        .collect()
}

fn expect_received(messages: &[&str]) -> Vec<String> {
    messages
        .iter()
        .map(|m| format!("{m:?} ({} bytes)", m.len()))
        .collect()
}

// ---------------------------------------------------------------- default runs

#[test]
fn unix_default_run_one_read_returns_all_three_writes() {
    let out = run(DEMO, &[]);
    out.assert_success();
    let writer = out.pid_of("writer");

    // The reader read nothing until the writer had exited: then one read(2) returned
    // the three lines the writer sent with three write(2) calls.
    let reaped = out.line_index(&format!("reaped writer {writer}: exited with status 0"));
    let read = out.line_index("read(2) returned 38 bytes");
    assert!(reaped < read, "{}", out.stdout);
    assert_eq!(
        out.lines_with("] read(2) returned").len(),
        1,
        "{}",
        out.stdout
    );
    out.assert_stdout_contains("3 messages came out of that one read(2)");
    assert_eq!(out.lines_with("one write(2)").len(), 3);
    assert_eq!(received(&out, "reader"), expect_received(&DEFAULT_MESSAGES));

    // Who is calling: the kernel names the writer's pid.
    let cred = out.lines_with("SO_PEERCRED")[0];
    assert!(
        cred.contains(&format!("the writer is pid {writer} uid ")),
        "{cred}"
    );
    assert!(cred.contains("(the writer I started)"), "{cred}");
    out.assert_stdout_contains("srw-------");

    for role in ["reader", "writer"] {
        let summary = out.summary(role);
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(summary.num("messages"), 3.0, "{}", summary.line);
        assert_eq!(summary.num("bytes"), 35.0, "{}", summary.line);
        assert_summary_last(&out, role);
    }
    let path = listening_path(&out.stdout);
    assert_private_dir_names_the_reader(&out, &path);
    assert_socket_gone(&path, true);
}

#[test]
fn unix_default_run_reads_as_they_come_when_too_many_to_pile_up() {
    // Each write(2) costs ~768 bytes of the writer's send buffer: ~270 short lines fill
    // it. 100 lines still pile up; 1000 are read as they come, with no stall.
    let hundred: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    let thousand: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    for (messages, piled) in [(hundred, true), (thousand, false)] {
        let args: Vec<&str> = messages.iter().map(String::as_str).collect();
        let out = run(DEMO, &args);
        out.assert_success();
        let writer = out.pid_of("writer");
        let reaped = out.line_index(&format!("reaped writer {writer}: exited with status 0"));
        let first_read = out.line_index("] read(2) returned");
        assert_eq!(reaped < first_read, piled, "{}", out.stdout);
        assert!(
            out.lines_with("has not finished within").is_empty(),
            "the writer stalled: {}",
            out.stdout
        );
        assert_eq!(received(&out, "reader").len(), messages.len());
        let summary = out.summary("reader");
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(
            summary.num("messages"),
            messages.len() as f64,
            "{}",
            summary.line
        );
        assert_socket_gone(&listening_path(&out.stdout), true);
    }
}

#[test]
fn unix_dgram_default_run_keeps_each_datagram_whole() {
    let out = run(DEMO, &["unix-dgram", "first", "two\nlines", "third"]);
    out.assert_success();
    let writer = out.pid_of("writer");
    // The datagrams all waited in the kernel, yet each recv(2) returned exactly one.
    let reaped = out.line_index(&format!("reaped writer {writer}: exited with status 0"));
    assert!(reaped < out.line_index("recv(2) returned one datagram"));
    let recvs = out.lines_with("] recv(2) returned one datagram of ");
    assert_eq!(recvs.len(), 3, "{}", out.stdout);
    assert!(
        recvs[1].ends_with("of 9 bytes"),
        "a newline is just a byte here"
    );
    assert_eq!(
        received(&out, "reader"),
        expect_received(&["first", "two\nlines", "third"])
    );
    out.assert_stdout_contains("a zero-length datagram: the writer's end of messages")
        .assert_stdout_contains("3 datagrams and the zero-length end: 4 recv(2) calls");
    // SCM_CREDENTIALS: each datagram carries its sender, stamped by the kernel.
    let from = out.lines_with("a datagram from ")[0];
    assert!(from.contains(&format!("pid {writer} uid ")), "{from}");
    assert_eq!(out.summary("reader").num("messages"), 3.0);
    assert_eq!(out.summary("writer").num("bytes"), 5.0 + 9.0 + 5.0);
    assert_summary_last(&out, "reader");
    assert_socket_gone(&listening_path(&out.stdout), true);
}

#[test]
fn tcp_default_run_one_read_returns_all_three_writes() {
    let out = run(DEMO, &["tcp"]);
    out.assert_success();
    out.assert_stdout_contains("read(2) returned 38 bytes")
        .assert_stdout_contains("3 messages came out of that one read(2)");
    assert_eq!(received(&out, "reader"), expect_received(&DEFAULT_MESSAGES));
    // TCP names an address, not a process: the writer's port, as the writer saw it.
    let writer_line = out.lines_with("] connected to 127.0.0.1:")[0];
    let from = word_after(writer_line, " from ");
    let accepted = out.lines_with("accepted a connection from ")[0];
    assert_eq!(word_after(accepted, "connection from "), format!("{from}:"));
    assert_eq!(out.summary("reader").num("bytes"), 35.0);
    assert_port_free("tcp", &bound_addr(&out.stdout));
}

#[test]
fn udp_default_run_keeps_each_datagram_whole() {
    let out = run(DEMO, &["udp"]);
    out.assert_success();
    assert_eq!(out.lines_with("] recv(2) returned one datagram").len(), 3);
    assert_eq!(received(&out, "reader"), expect_received(&DEFAULT_MESSAGES));
    out.assert_stdout_contains("3 datagrams and the zero-length end: 4 recv(2) calls");
    let writer_line = out.lines_with("a UDP socket on ")[0];
    let writer_addr = word_after(writer_line, "a UDP socket on ");
    out.assert_stdout_contains(&format!("a datagram from {writer_addr}"));
    assert_eq!(out.summary("writer").num("messages"), 3.0);
    assert_port_free("udp", &bound_addr(&out.stdout));
}

#[test]
fn udp_default_run_never_says_ok_when_datagrams_were_lost() {
    // The reader prints each message as it comes, slower than the writer sends: UDP
    // may drop what the receive buffer cannot hold. Whether it does depends on the
    // machine, so both outcomes are accepted, but never "ok" with fewer messages.
    let messages: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    let mut args = vec!["udp"];
    args.extend(messages.iter().map(String::as_str));
    let out = run(DEMO, &args);
    let summary = out.summary("reader");
    let got = summary.num("messages");
    println!("udp, 1000 messages: {}", summary.line);
    if out.status.success() {
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(got, 1000.0, "{}", summary.line);
    } else {
        out.assert_exit_code(1).assert_stderr_contains(&format!(
            "{} of 1000 datagrams lost: UDP dropped them",
            1000.0 - got
        ));
        assert!(!summary.ok, "{}", summary.line);
        assert_eq!(summary.num("lost"), 1000.0 - got, "{}", summary.line);
    }
    assert_summary_last(&out, "reader");
    assert_port_free("udp", &bound_addr(&out.stdout));
}

#[test]
fn pair_default_run_talks_both_ways_on_one_socket() {
    let out = run(DEMO, &["pair", "ping", "full duplex"]);
    out.assert_success();
    let parent = out.pid_of("parent");
    let child = out.pid_of("child");
    // The child greeted before it read anything, while the parent was sending.
    let greeted = out.line_index("without waiting to read anything");
    let first_child_receive = out
        .stdout
        .lines()
        .position(|l| l.starts_with(&format!("[child {child}] received")))
        .unwrap();
    assert!(greeted < first_child_receive);
    let greeting = format!("hello parent {parent}, from your child");
    assert_eq!(
        received(&out, "parent"),
        vec![
            format!(
                "{greeting:?} ({} bytes) on the same fd I write to",
                greeting.len()
            ),
            r#""PING" (4 bytes) on the same fd I write to"#.to_string(),
            r#""FULL DUPLEX" (11 bytes) on the same fd I write to"#.to_string(),
        ]
    );
    assert_eq!(
        received(&out, "child"),
        expect_received(&["ping", "full duplex"])
    );
    out.assert_stdout_contains(r#"sent "full duplex" (11 bytes)"#)
        .assert_stdout_contains("shutdown(SHUT_WR)")
        .assert_stdout_contains(&format!("reaped child {child}: exited with status 0"));
    assert_eq!(out.summary("parent").num("messages"), 2.0);
    assert_eq!(out.summary("child").num("bytes"), 15.0);
    assert_summary_last(&out, "parent");
    assert_summary_last(&out, "child");
}

#[test]
fn pair_reads_answers_while_it_writes_so_many_messages_do_not_hang() {
    // 3000 lines cannot all wait in the two socket buffers (each short line costs ~768
    // bytes of one): a parent that wrote everything before reading would sleep forever
    // in write(2), and so would the child. Reading while writing is forced here.
    let messages: Vec<String> = (1..=3000).map(|i| i.to_string()).collect();
    let mut args = vec!["pair"];
    args.extend(messages.iter().map(String::as_str));
    let out = run(DEMO, &args);
    out.assert_success();
    let parent = out.pid_of("parent");
    let first_answer = out.line_index(r#"received "1" (1 bytes) on the same fd"#);
    let last_sent = out.line_index(&format!(r#"[parent {parent}] sent "3000""#));
    assert!(
        first_answer < last_sent,
        "the parent read nothing while sending"
    );
    out.assert_stdout_contains("both directions move at once");
    assert_eq!(received(&out, "parent").len(), 3001);
    assert_eq!(out.summary("parent").num("messages"), 3000.0);
    assert_eq!(out.summary("child").num("messages"), 3000.0);
}

#[test]
fn fdpass_default_run_reads_a_nameless_file_and_shares_a_memfd() {
    let out = run(DEMO, &["fdpass", "line one", "line two"]);
    out.assert_success();
    let reader = out.pid_of("reader");
    let writer = out.pid_of("writer");
    // Act 1: the writer removed the file's name before sending its fd; the reader read
    // every line through the fd it received.
    let file_line = out.lines_with("] wrote 2 lines into ")[0];
    let file = word_after(file_line, "wrote 2 lines into ");
    assert!(
        is_gone(file),
        "the file {file} should have no name any more"
    );
    let removed = out.line_index(&format!("removed the file {file}"));
    let sent = out.line_index("sent my fd ");
    assert!(removed < sent, "{}", out.stdout);
    let got_fd = out.lines_with("brought fd ")[0];
    assert!(got_fd.contains(&format!("-> {file} (deleted)")), "{got_fd}");
    let lines: Vec<String> = received(&out, "reader")
        .into_iter()
        .filter(|l| l.ends_with("through the passed fd"))
        .collect();
    assert_eq!(
        lines,
        vec![
            r#""line one" (8 bytes), read from the file through the passed fd"#,
            r#""line two" (8 bytes), read from the file through the passed fd"#
        ]
    );
    // Act 2: a memfd mapped by both; each sees what the other wrote in its own mapping.
    // The writer sealed its size before sending it, so the reader's mapping keeps its page.
    let sealed = out.line_index("sealed its size (F_SEAL_SHRINK, F_SEAL_GROW)");
    assert!(sealed < out.line_index("sent the memfd with SCM_RIGHTS"));
    out.assert_stdout_contains("/memfd:socket-demo (deleted)")
        .assert_stdout_contains(&format!(
            "my mapping holds \"hello from writer {writer}, through shared memory\", and no send(2) carried it"
        ))
        .assert_stdout_contains(&format!(
            "my mapping now holds \"and hello back from reader {reader}\""
        ));
    let cred = out.lines_with("SO_PEERCRED")[0];
    assert!(cred.contains(&format!("pid {writer} ")), "{cred}");
    assert_eq!(out.summary("reader").num("messages"), 2.0);
    assert_eq!(out.summary("reader").num("bytes"), 16.0);
    assert_summary_last(&out, "reader");
    assert_summary_last(&out, "writer");
    assert_socket_gone(&listening_path(&out.stdout), true);
}

/// Sends the byte `tag` with `fd` attached (SCM_RIGHTS), as the fdpass writer does. By
/// hand with libc: the test crate's nix has no `socket` feature.
fn send_fd(conn: &UnixStream, fd: std::os::fd::BorrowedFd, tag: u8) {
    use std::os::fd::AsRawFd;
    let fd_len = std::mem::size_of::<libc::c_int>() as libc::c_uint;
    let mut data = [tag];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_len) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)]; // zeroed, aligned for a cmsghdr
    // SAFETY: msghdr is plain data: all zeroes is an empty message with no address.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` zeroed bytes, room for one cmsghdr carrying
    // one fd, so CMSG_FIRSTHDR is not null and CMSG_DATA has room for the fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_len) as _;
        libc::CMSG_DATA(cmsg)
            .cast::<libc::c_int>()
            .write_unaligned(fd.as_raw_fd());
    }
    // SAFETY: `msg` describes `data` and `control`, both alive for the call.
    let sent = unsafe { libc::sendmsg(conn.as_raw_fd(), &msg, 0) };
    assert_eq!(sent, 1, "sendmsg: {}", std::io::Error::last_os_error());
}

#[test]
fn fdpass_reader_refuses_a_memfd_whose_size_is_not_sealed() {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    let dir = ScratchDir::new("sock-unsealed");
    let (reader, at) = start_reader("fdpass", &dir, &[]);
    let conn = UnixStream::connect(&at).unwrap();
    // Act 1 as the writer would: a file of one line.
    let content = dir.join("one.txt");
    std::fs::write(&content, "one line\n").unwrap();
    send_fd(&conn, std::fs::File::open(&content).unwrap().as_fd(), b'F');
    // Act 2: a memfd its sender could shrink at any time, under the reader's mapping.
    // SAFETY: the name is a NUL-terminated string; the result is checked below.
    let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(
        raw >= 0,
        "memfd_create: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: memfd_create just returned this fd, and nothing else owns it.
    let memfd = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    memfd.set_len(4096).unwrap();
    send_fd(&conn, memfd.as_fd(), b'M');
    let out = reader.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("not sealed against shrinking")
        .assert_stdout_contains(r#"received "one line" (8 bytes)"#);
    assert!(
        out.lines_with("mmap(MAP_SHARED)").is_empty(),
        "{}",
        out.stdout
    );
    drop(conn);
    assert_socket_gone(&at, false);
}

#[test]
fn fdpass_sends_an_existing_file_between_separate_processes() {
    let dir = ScratchDir::new("sock-fdfile");
    let content = dir.join("content.txt");
    std::fs::write(&content, "alpha\nbeta\ngamma\n").unwrap();
    let socket = dir.join("s");
    let mut reader = start(&["reader", "fdpass", "--path", &socket]);
    reader.wait_for_line("listening at");
    let writer = run(
        DEMO,
        &["writer", "fdpass", "--path", &socket, "--file", &content],
    );
    writer.assert_success();
    let out = reader.finish();
    out.assert_success();
    let got: Vec<String> = received(&out, "reader");
    assert_eq!(got.len(), 3, "{}", out.stdout);
    assert!(got[0].starts_with(r#""alpha" (5 bytes)"#));
    assert!(got[2].starts_with(r#""gamma" (5 bytes)"#));
    let fd_line = out.lines_with("brought fd ")[0];
    assert!(fd_line.contains(&format!("-> {content}")), "{fd_line}");
    assert!(
        Path::new(&content).exists(),
        "--file is the user's: not removed"
    );
    assert_socket_gone(&socket, false);
    assert_eq!(dir.entries(), vec!["content.txt".to_string()]);
}

// ---------------------------------------------------------------- two processes

/// Starts a reader in its own process and returns it with where it listens.
fn start_reader(flavour: &str, dir: &ScratchDir, extra: &[&str]) -> (Demo, String) {
    let mut args = vec!["reader", flavour];
    let path = dir.join(&format!("{flavour}.sock"));
    let inet = matches!(flavour, "tcp" | "udp");
    if inet {
        args.extend(["--addr", "127.0.0.1:0"]);
    } else {
        args.extend(["--path", path.as_str()]);
    }
    args.extend(extra);
    let mut reader = start(&args);
    let at = if inet {
        let line = reader.wait_for_line("socket(AF_INET");
        word_after(&line, "bound to ").to_string()
    } else {
        let waits = if flavour == "unix-dgram" {
            "] receiving at "
        } else {
            "] listening at "
        };
        let line = reader.wait_for_line(waits);
        word_after(&line, waits).to_string()
    };
    (reader, at)
}

fn meet_option(flavour: &str) -> &'static str {
    if matches!(flavour, "tcp" | "udp") {
        "--addr"
    } else {
        "--path"
    }
}

fn assert_meeting_point_gone(flavour: &str, at: &str) {
    match flavour {
        "tcp" => assert_port_free("tcp", at),
        "udp" => assert_port_free("udp", at),
        _ => assert_socket_gone(at, false),
    }
}

#[test]
fn reader_and_writer_as_separate_processes() {
    for flavour in ["unix", "unix-dgram", "tcp", "udp"] {
        let dir = ScratchDir::new("sock-two");
        let (reader, at) = start_reader(flavour, &dir, &[]);
        let writer = run(
            DEMO,
            &[
                "writer",
                flavour,
                meet_option(flavour),
                &at,
                "one",
                "two words",
            ],
        );
        writer.assert_success();
        let out = reader.finish();
        out.assert_success();
        assert_eq!(
            received(&out, "reader"),
            expect_received(&["one", "two words"]),
            "{flavour}"
        );
        assert_eq!(out.summary("reader").num("messages"), 2.0, "{flavour}");
        assert_eq!(writer.summary("writer").num("bytes"), 12.0, "{flavour}");
        // The peer credentials name the writer process, not anything the writer said.
        match flavour {
            "unix" => {
                let cred = out.lines_with("SO_PEERCRED")[0];
                assert!(
                    cred.contains(&format!("the writer is pid {} uid ", writer.pid)),
                    "{cred}"
                );
            }
            "unix-dgram" => {
                let from = out.lines_with("a datagram from ")[0];
                assert!(from.contains(&format!("pid {} uid ", writer.pid)), "{from}");
            }
            _ => {}
        }
        assert_meeting_point_gone(flavour, &at);
        assert!(dir.entries().is_empty(), "{flavour}: {:?}", dir.entries());
    }
}

#[test]
fn writer_sends_standard_input_lines() {
    for flavour in ["unix", "unix-dgram"] {
        let dir = ScratchDir::new("sock-stdin");
        let (reader, at) = start_reader(flavour, &dir, &[]);
        let writer = run_with_stdin(
            DEMO,
            &["writer", flavour, "--path", &at],
            b"from stdin\n\nlast line without newline",
        );
        writer.assert_success();
        let out = reader.finish();
        out.assert_success();
        let got = received(&out, "reader");
        if flavour == "unix" {
            // On a stream an empty line is an empty message.
            assert_eq!(
                got,
                expect_received(&["from stdin", "", "last line without newline"])
            );
        } else {
            // A zero-length datagram would mean the end: the writer skips it.
            writer.assert_stdout_contains("skipped an empty line");
            assert_eq!(
                got,
                expect_received(&["from stdin", "last line without newline"])
            );
        }
        assert_socket_gone(&at, false);
    }
}

// ---------------------------------------------------------------- workloads

#[test]
fn bulk_moves_every_byte_on_the_four_socket_kinds() {
    for (flavour, count, size) in [
        ("unix", 64u64, 65536usize),
        ("unix", 2000, 3),
        ("tcp", 64, 65536),
        ("unix-dgram", 500, 65536),
        ("unix-dgram", 2000, 3),
        ("udp", 500, 65507),
        ("udp", 3000, 100),
    ] {
        let out = run(
            DEMO,
            &[
                flavour,
                "--count",
                &count.to_string(),
                "--size",
                &size.to_string(),
            ],
        );
        out.assert_success();
        for role in ["writer", "reader"] {
            let summary = out.summary(role);
            assert!(summary.ok, "{flavour}: {}", summary.line);
            assert_eq!(summary.num("messages"), count as f64, "{}", summary.line);
            assert_eq!(
                summary.num("bytes"),
                (count * size as u64) as f64,
                "{}",
                summary.line
            );
            assert_throughput_consistent(&summary);
        }
        assert_summary_last(&out, "reader");
        assert_meeting_point_gone_after_default_run(flavour, &out.stdout);
        if matches!(flavour, "unix-dgram" | "udp") {
            // Datagrams may be lost or reordered: the reader counts, and here none were.
            let summary = out.summary("reader");
            assert_eq!(summary.num("lost"), 0.0, "{}", summary.line);
            assert_eq!(summary.num("reordered"), 0.0, "{}", summary.line);
        }
        if flavour == "udp" {
            out.assert_stdout_contains("UDP has no flow control");
        }
    }
}

/// mib_per_s is bytes / elapsed_us, rounded (to 0.1, or to 0.001 below 1 MiB/s). Not
/// asserted positive: a tiny run on a busy machine may round to 0.
fn assert_throughput_consistent(summary: &Summary) {
    let line = &summary.line;
    let (mib_per_s, bytes, us) = (
        summary.num("mib_per_s"),
        summary.num("bytes"),
        summary.num("elapsed_us"),
    );
    assert!(mib_per_s >= 0.0, "{line}");
    if us < 1.0 {
        return; // too fast for a microsecond clock to say anything
    }
    let expected = bytes / us * 1e6 / (1024.0 * 1024.0);
    // elapsed_us is cut to whole microseconds; mib_per_s rounded to 0.1 at worst.
    let slack = expected / us + 0.05 + 1e-9;
    assert!(
        (mib_per_s - expected).abs() <= slack,
        "mib_per_s={mib_per_s}, but bytes/elapsed_us gives {expected}: {line}"
    );
}

/// The leak check after a default run: the reader's socket file and private directory, or
/// its port.
fn assert_meeting_point_gone_after_default_run(flavour: &str, stdout: &str) {
    match flavour {
        "tcp" => assert_port_free("tcp", &bound_addr(stdout)),
        "udp" => assert_port_free("udp", &bound_addr(stdout)),
        _ => assert_socket_gone(&listening_path(stdout), true),
    }
}

#[test]
fn bulk_between_separate_processes() {
    for flavour in ["tcp", "unix-dgram"] {
        let dir = ScratchDir::new("sock-bulk2");
        let workload = ["--count", "300", "--size", "5000"];
        let (reader, at) = start_reader(flavour, &dir, &workload);
        let mut args = vec!["writer", flavour, meet_option(flavour), &at];
        args.extend(workload);
        run(DEMO, &args).assert_success();
        let out = reader.finish();
        out.assert_success();
        assert_eq!(out.summary("reader").num("bytes"), 1_500_000.0);
        assert_meeting_point_gone(flavour, &at);
    }
}

#[test]
fn a_corrupted_byte_on_a_stream_is_caught() {
    let dir = ScratchDir::new("sock-corrupt");
    let (reader, at) = start_reader("unix", &dir, &["--count", "10", "--size", "1000"]);
    let mut data = bulk_stream(10, 1000);
    data[3 * 1000 + 100] ^= 0x40;
    let mut conn = UnixStream::connect(&at).unwrap();
    conn.write_all(&data).unwrap();
    drop(conn);
    let out = reader.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("message 3, byte 100");
    assert_socket_gone(&at, false);
}

#[test]
fn a_stream_that_ends_early_is_caught() {
    let dir = ScratchDir::new("sock-short");
    let (reader, at) = start_reader("unix", &dir, &["--count", "10", "--size", "1000"]);
    let data = bulk_stream(10, 1000);
    let mut conn = UnixStream::connect(&at).unwrap();
    conn.write_all(&data[..9 * 1000 + 10]).unwrap();
    drop(conn);
    reader
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains("after 9 of 10 messages (and 10 bytes of the next one)");
    assert_socket_gone(&at, false); // before the ScratchDir's drop would hide a leak
}

/// Sends bulk datagrams `order` (then the zero-length end) to a unix-dgram reader, as a
/// writer that lost or reordered some would.
fn datagrams_in_order(order: &[u64]) -> Finished {
    let dir = ScratchDir::new("sock-lost");
    let (reader, at) = start_reader("unix-dgram", &dir, &["--count", "5", "--size", "100"]);
    let socket = UnixDatagram::unbound().unwrap();
    for &k in order {
        socket.send_to(&bulk_message(k, 100), &at).unwrap();
    }
    socket.send_to(&[], &at).unwrap();
    let out = reader.finish();
    assert_socket_gone(&at, false);
    out
}

#[test]
fn a_lost_datagram_is_counted_and_fails_the_run() {
    let out = datagrams_in_order(&[0, 1, 3, 4]);
    out.assert_exit_code(1)
        .assert_stderr_contains("1 of 5 datagrams lost and 0 reordered");
    let summary = out.summary("reader");
    assert!(!summary.ok, "{}", summary.line);
    assert_eq!(summary.num("lost"), 1.0);
    assert_eq!(summary.num("messages"), 4.0);
    // Failed or not, the summary is the reader's last line, after "removed ...".
    assert_summary_last(&out, "reader");
}

#[test]
fn a_reordered_datagram_is_counted_and_fails_the_run() {
    let out = datagrams_in_order(&[0, 2, 1, 3, 4]);
    out.assert_exit_code(1)
        .assert_stderr_contains("0 of 5 datagrams lost and 1 reordered");
    assert_eq!(out.summary("reader").num("reordered"), 1.0);
}

#[test]
fn ping_on_the_four_socket_kinds() {
    for flavour in ["unix", "unix-dgram", "tcp", "udp"] {
        let out = run(DEMO, &[flavour, "--ping", "300", "--size", "64"]);
        out.assert_success();
        let summary = out.summary("writer");
        assert_eq!(summary.num("messages"), 300.0, "{flavour}");
        assert_eq!(summary.num("bytes"), 300.0 * 64.0);
        let (p50, p99) = (summary.num("rtt_p50_us"), summary.num("rtt_p99_us"));
        assert!(p50 > 0.0 && p50 <= p99, "{flavour}: {}", summary.line);
        assert_eq!(out.summary("reader").num("messages"), 300.0, "{flavour}");
        assert_summary_last(&out, "reader");
        assert_meeting_point_gone_after_default_run(flavour, &out.stdout);
        // --cpus W,R pins each side: the benchmark runs both on one CPU, then on two.
        let pinned = run(DEMO, &[flavour, "--ping", "50", "--cpus", "0,0"]);
        pinned.assert_success();
        assert_meeting_point_gone_after_default_run(flavour, &pinned.stdout);
        if flavour == "unix-dgram" {
            // Only a bound socket can be answered: the writer made its own, and removed it.
            let line = out.lines_with("bound my own socket to ")[0];
            let own = word_after(line, "bound my own socket to ");
            assert_socket_gone(own, true);
        }
    }
}

// ---------------------------------------------------------------- usage

#[test]
fn bad_usage_exits_2_and_creates_nothing() {
    let dir = ScratchDir::new("sock-usage");
    let path = dir.join("s");
    let long_path = format!("/tmp/{}", "x".repeat(120));
    let udp_too_big = "u".repeat(70_000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--bogus"], "unknown option --bogus"),
        (vec!["--cpus", "0,0"], "--cpus need a workload"),
        (vec!["--ping", "3", "--cpus", "0"], "expected WRITER,READER"),
        (
            vec!["--ping", "3", "--cpus", "0,4096"],
            "CPU numbers go from 0 to",
        ),
        (
            vec!["reader", "--path", &path, "--count"],
            "--count needs a value",
        ),
        (
            vec!["reader", "--path", &path, "--count", "0", "--size", "1"],
            "at least 1",
        ),
        (vec!["reader", "--path", &path, "--count", "3"], "--size"),
        (
            vec!["reader", "--path", &path, "--size", "3"],
            "--size and --cpus need a workload",
        ),
        (
            vec!["--ping", "3", "--count", "3", "--size", "1"],
            "give one",
        ),
        (vec!["udp", "--ping", "3", "--size", "65508"], "65507"),
        (
            vec!["unix-dgram", "--ping", "100000000000"],
            "at most 100000000 round trips",
        ),
        (
            vec!["udp", "--count", "100000001", "--size", "1"],
            "at most 100000000 messages",
        ),
        (vec!["udp", &udp_too_big], "too big for one datagram"),
        (
            vec![
                "reader",
                "unix-dgram",
                "--path",
                &path,
                "--ping",
                "1",
                "--size",
                "99999999",
            ],
            "send buffer",
        ),
        (vec!["reader", "tcp", "--path", &path], "--path is for"),
        (
            vec!["reader", "unix", "--addr", "127.0.0.1:0"],
            "--addr is for",
        ),
        (
            vec!["reader", "tcp", "--addr", "localhost:80"],
            "not an IP address",
        ),
        (
            vec!["writer", "tcp", "--addr", "127.0.0.1:0", "hi"],
            "real port",
        ),
        (vec!["writer", "unix", "hi"], "the writer needs --path"),
        (
            vec!["reader", "--path", &path, "hello"],
            "the reader takes no messages",
        ),
        (vec!["reader", "pair"], "pair has no reader"),
        (vec!["pair", "--ping", "5"], "takes no workload"),
        (vec!["unix", "two\nlines"], "newline"),
        (vec!["unix-dgram", ""], "zero-length datagram"),
        (
            vec!["--count", "3", "--size", "3", "hello"],
            "a workload sends its own data",
        ),
        (vec!["reader", "--path", &long_path], "at most 107"),
        (
            vec![
                "reader",
                "fdpass",
                "--path",
                &path,
                "--file",
                "/etc/hostname",
            ],
            "--file is for",
        ),
    ];
    for (args, needle) in cases {
        let out = run(DEMO, &args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        // One line of error: a huge message is named, not echoed in full.
        assert!(
            out.stderr.len() < 4000,
            "{} bytes of stderr",
            out.stderr.len()
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} did something: {}",
            out.stdout
        );
        assert!(
            dir.entries().is_empty(),
            "{args:?} created {:?}",
            dir.entries()
        );
    }
}

#[test]
fn help_prints_the_usage() {
    run(DEMO, &["--help"])
        .assert_success()
        .assert_stdout_contains("usage: socket-demo");
}

// ---------------------------------------------------------------- Ctrl+C while blocked

/// Starts `args`, waits for `ready`, then until the process sleeps in `wchan`, and sends
/// SIGINT to its group, as Ctrl+C would. Returns what it printed.
fn interrupt_when_asleep(args: &[&str], ready: &str, wchan: &str) -> Finished {
    let mut demo = start(args);
    demo.wait_for_line(ready);
    wait_until_asleep_in(demo.pid(), wchan);
    demo.signal_group(Signal::SIGINT);
    let out = demo.finish();
    out.assert_killed_by(Signal::SIGINT);
    out
}

#[test]
fn ctrl_c_in_accept_removes_the_socket_file_and_its_directory() {
    // The Unix accept(2) sleeps in the kernel's datagram wait, whatever the type.
    let out = interrupt_when_asleep(
        &["reader"],
        "waiting in accept(2)",
        "__skb_wait_for_more_packets",
    );
    let path = listening_path(&out.stdout);
    out.assert_stdout_contains(&format!(
        "interrupted by SIGINT: removed the socket file {path} and its directory"
    ));
    assert_socket_gone(&path, true);
}

#[test]
fn sighup_in_accept_removes_the_socket_file_too() {
    // Closing the terminal sends SIGHUP: it must clean up like Ctrl+C.
    let mut demo = start(&["reader"]);
    demo.wait_for_line("waiting in accept(2)");
    wait_until_asleep_in(demo.pid(), "__skb_wait_for_more_packets");
    demo.signal_group(Signal::SIGHUP);
    let out = demo.finish();
    out.assert_killed_by(Signal::SIGHUP);
    let path = listening_path(&out.stdout);
    out.assert_stdout_contains(&format!(
        "interrupted by SIGHUP: removed the socket file {path} and its directory"
    ));
    assert_socket_gone(&path, true);
}

#[test]
fn ctrl_c_in_tcp_accept_frees_the_port() {
    let out = interrupt_when_asleep(
        &["reader", "tcp"],
        "waiting in accept(2)",
        "inet_csk_accept",
    );
    out.assert_stdout_contains("interrupted by SIGINT");
    assert_port_free("tcp", &bound_addr(&out.stdout));
}

#[test]
fn ctrl_c_in_recv_on_datagram_sockets() {
    let dir = ScratchDir::new("sock-int");
    let path = dir.join("d.sock");
    let out = interrupt_when_asleep(
        &["reader", "unix-dgram", "--path", &path],
        "waiting in recv(2)",
        "__skb_wait_for_more_packets",
    );
    out.assert_stdout_contains(&format!(
        "interrupted by SIGINT: removed the socket file {path}"
    ));
    assert_socket_gone(&path, false);

    let out = interrupt_when_asleep(
        &["reader", "udp"],
        "waiting in recv(2)",
        "__skb_wait_for_more_packets",
    );
    assert_port_free("udp", &bound_addr(&out.stdout));
}

#[test]
fn ctrl_c_in_read_on_a_connection() {
    let dir = ScratchDir::new("sock-intread");
    let path = dir.join("s");
    let mut reader = start(&["reader", "--path", &path]);
    reader.wait_for_line("listening at");
    // A writer that connects and says nothing: the reader sleeps in read(2).
    let quiet_writer = UnixStream::connect(&path).unwrap();
    reader.wait_for_line("I take one writer");
    wait_until_asleep_in(reader.pid(), "unix_stream_read_generic");
    reader.signal_group(Signal::SIGINT);
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains("interrupted by SIGINT: removed the socket file");
    drop(quiet_writer);
    assert_socket_gone(&path, false);
}

#[test]
fn ctrl_c_stops_both_processes_of_a_default_run() {
    for (args, flowing) in [
        (
            ["unix", "--count", "10000000", "--size", "65536"],
            "checking 10000000 messages",
        ),
        (
            ["unix-dgram", "--ping", "10000000", "--size", "100"],
            "the first ping came from",
        ),
    ] {
        let mut demo = start(&args);
        demo.wait_for_line(flowing);
        demo.signal_group(Signal::SIGINT);
        let out = demo.finish();
        out.assert_killed_by_after_reaping(Signal::SIGINT);
        let writer = out.pid_of("writer");
        out.assert_stdout_contains(&format!("reaped writer {writer}: killed by SIGINT"))
            .assert_stdout_contains(&format!("[writer {writer}] interrupted by SIGINT"));
        assert!(!process_exists(writer));
        assert_socket_gone(&listening_path(&out.stdout), true);
        if args[0] == "unix-dgram" {
            // The ping writer's own socket file, for the answers, is gone too.
            let line = out.lines_with("bound my own socket to ")[0];
            assert_socket_gone(word_after(line, "bound my own socket to "), true);
        }
    }
}

// ---------------------------------------------------------------- peers gone

#[test]
fn writer_with_no_reader_says_to_start_it_first() {
    let dir = ScratchDir::new("sock-noserver");
    let path = dir.join("nobody");
    let tcp = format!("127.0.0.1:{}", free_tcp_port());
    let udp = format!("127.0.0.1:{}", free_udp_port());
    for (args, needle) in [
        (
            vec!["writer", "unix", "--path", &path, "hi"],
            "start the reader first (socket-demo reader unix --path",
        ),
        (
            vec!["writer", "unix-dgram", "--path", &path, "hi"],
            "no socket file at",
        ),
        (
            vec!["writer", "fdpass", "--path", &path, "hi"],
            "start the reader first",
        ),
        (
            vec!["writer", "tcp", "--addr", &tcp, "hi"],
            "nobody is listening on",
        ),
        // UDP sends without asking: only the ICMP "port unreachable" that comes back
        // tells the writer, as ECONNREFUSED on its next call.
        (
            vec!["writer", "udp", "--addr", &udp, "hi"],
            "nobody is reading there (ECONNREFUSED)",
        ),
    ] {
        run(DEMO, &args)
            .assert_exit_code(1)
            .assert_stderr_contains(needle);
    }
    assert!(dir.entries().is_empty());
}

/// Starts a reader and a writer doing an endless bulk transfer over `flavour` (10 GB: the
/// test kills one side long before), and returns both once data flows.
fn endless_bulk(flavour: &str, dir: &ScratchDir) -> (Demo, Demo, String) {
    let workload = ["--count", "10000000", "--size", "1000"];
    let (mut reader, at) = start_reader(flavour, dir, &workload);
    let mut args = vec!["writer", flavour, meet_option(flavour), &at];
    args.extend(workload);
    let writer = start(&args);
    if flavour == "unix-dgram" {
        reader.wait_for_line("the first datagram came from");
    } else {
        reader.wait_for_line("checking 10000000 messages");
    }
    (reader, writer, at)
}

#[test]
fn reader_notices_a_killed_writer() {
    let dir = ScratchDir::new("sock-killw");
    let (reader, writer, at) = endless_bulk("unix", &dir);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(writer.pid()), Signal::SIGKILL).unwrap();
    writer.finish().assert_killed_by(Signal::SIGKILL);
    reader
        .finish()
        .assert_exit_code(1)
        .assert_stderr_contains("the writer closed the connection after");
    assert_socket_gone(&at, false);
}

#[test]
fn a_datagram_reader_watches_its_writers_pid() {
    let dir = ScratchDir::new("sock-killdw");
    let (reader, writer, at) = endless_bulk("unix-dgram", &dir);
    let writer_pid = writer.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(writer.pid()), Signal::SIGKILL).unwrap();
    writer.finish().assert_killed_by(Signal::SIGKILL);
    // No connection, so no EOF: the reader watches the pid the kernel put in the
    // datagrams' SCM_CREDENTIALS, and says how it knows the writer is gone.
    let out = reader.finish();
    out.assert_exit_code(1).assert_stderr_contains(&format!(
        "the writer, pid {} (from the SCM_CREDENTIALS",
        writer_pid
    ));
    assert!(!out.summary("reader").ok);
    assert_socket_gone(&at, false);
}

#[test]
fn writer_notices_a_killed_reader_and_the_stale_file_is_reported() {
    let dir = ScratchDir::new("sock-killr");
    for flavour in ["unix", "tcp", "unix-dgram"] {
        let (reader, writer, at) = endless_bulk(flavour, &dir);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader.pid()), Signal::SIGKILL).unwrap();
        reader.finish().assert_killed_by(Signal::SIGKILL);
        let needle = if flavour == "unix-dgram" {
            "nobody is reading there (ECONNREFUSED)"
        } else {
            "the reader is gone"
        };
        let out = writer.finish();
        out.assert_exit_code(1).assert_stderr_contains(needle);
        if flavour == "tcp" {
            continue;
        }
        // The writer names what the dead reader could not remove, and how.
        out.assert_stderr_contains(&format!("rm {at}"));
        // Killed, the reader could not remove its socket file: the next reader is told
        // it is stale and how to remove it, and a writer that nobody listens there.
        assert!(!is_gone(&at), "SIGKILL leaves the file");
        run(DEMO, &["reader", flavour, "--path", &at])
            .assert_exit_code(1)
            .assert_stderr_contains("is a stale socket file")
            .assert_stderr_contains(&format!("Remove it with: rm {at}"));
        if flavour == "unix" {
            run(DEMO, &["writer", flavour, "--path", &at, "hi"])
                .assert_exit_code(1)
                .assert_stderr_contains("nobody is listening at");
        }
        std::fs::remove_file(&at).unwrap();
    }
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn a_live_reader_is_not_mistaken_for_a_stale_file() {
    let dir = ScratchDir::new("sock-live");
    // A space in the path too: /proc/net/unix prints it as it is.
    let at = dir.join("live reader.sock");
    let mut first = start(&["reader", "--path", &at]);
    first.wait_for_line("listening at");
    run(DEMO, &["reader", "--path", &at])
        .assert_exit_code(1)
        .assert_stderr_contains("another reader is using");
    // The first reader was not disturbed: it still serves a writer.
    run(DEMO, &["writer", "--path", &at, "still here"]).assert_success();
    let out = first.finish();
    out.assert_success();
    assert_eq!(received(&out, "reader"), expect_received(&["still here"]));
    assert_socket_gone(&at, false);
}

#[test]
fn a_stale_file_with_a_space_gets_a_quoted_rm() {
    let dir = ScratchDir::new("sock-stale");
    let at = dir.join("stale one.sock");
    let mut reader = start(&["reader", "--path", &at]);
    reader.wait_for_line("waiting in accept(2)");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader.pid()), Signal::SIGKILL).unwrap();
    reader.finish().assert_killed_by(Signal::SIGKILL);
    run(DEMO, &["reader", "--path", &at])
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("Remove it with: rm '{at}'"));
    std::fs::remove_file(&at).unwrap();
}

#[test]
fn an_oversized_datagram_is_reported_not_cut_silently() {
    if !have(&["socat"]) {
        return;
    }
    // The reader's buffer fits what a default send buffer lets out; socat with a bigger
    // SO_SNDBUF sends 300000 bytes in one datagram. The kernel cuts it (MSG_TRUNC).
    let dir = ScratchDir::new("sock-trunc");
    let (reader, at) = start_reader("unix-dgram", &dir, &[]);
    // From a file: socat sends what one read(2) returns, and a pipe gives at most 64 KiB.
    let big = dir.join("big");
    std::fs::write(&big, vec![b'a'; 300_000]).unwrap();
    let socat = Tool::start(
        "socat",
        &[
            "-b",
            "300000",
            "-u",
            &format!("OPEN:{big}"),
            &format!("UNIX-SENDTO:{at},sndbuf=400000"),
        ],
        b"",
    );
    let (ok, _, err) = socat.finish();
    assert!(ok, "socat failed: {err}");
    let out = reader.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the kernel cut it to fit and dropped the rest (MSG_TRUNC)");
    assert!(out.lines_with("] received ").is_empty(), "{}", out.stdout);
    assert_socket_gone(&at, false);
}

// ---------------------------------------------------------------- real clients

#[test]
fn socat_and_nc_as_writers() {
    if !have(&["socat", "nc"]) {
        return;
    }
    let dir = ScratchDir::new("sock-tools");

    let (reader, at) = start_reader("unix", &dir, &[]);
    let socat = Tool::start(
        "socat",
        &["-", &format!("UNIX-CONNECT:{at}")],
        b"alpha\nbeta\n",
    );
    assert!(socat.finish().0, "socat failed");
    let out = reader.finish();
    out.assert_success();
    assert_eq!(
        received(&out, "reader"),
        expect_received(&["alpha", "beta"])
    );
    assert_socket_gone(&at, false);

    let (reader, at) = start_reader("tcp", &dir, &[]);
    let port = port_of(&at).to_string();
    let nc = Tool::start("nc", &["-N", "127.0.0.1", &port], b"gamma\ndelta");
    assert!(nc.finish().0, "nc failed");
    let out = reader.finish();
    out.assert_success();
    assert_eq!(
        received(&out, "reader"),
        expect_received(&["gamma", "delta"])
    );
    assert_port_free("tcp", &at);

    // Datagrams: socat and nc send one datagram per message, but cannot send the
    // zero-length end; our writer with nothing to say sends just that.
    let (reader, at) = start_reader("unix-dgram", &dir, &[]);
    let sent = Tool::start(
        "socat",
        &["-u", "-", &format!("UNIX-SENDTO:{at}")],
        b"epsilon",
    );
    assert!(sent.finish().0);
    let sent = Tool::start("nc", &["-uU", "-q0", &at], b"zeta");
    assert!(sent.finish().0);
    run_with_stdin(DEMO, &["writer", "unix-dgram", "--path", &at], b"").assert_success();
    let out = reader.finish();
    out.assert_success();
    assert_eq!(
        received(&out, "reader"),
        expect_received(&["epsilon", "zeta"])
    );
    assert_socket_gone(&at, false);

    let (reader, at) = start_reader("udp", &dir, &[]);
    let port = port_of(&at).to_string();
    let sent = Tool::start("nc", &["-u", "-q0", "127.0.0.1", &port], b"eta");
    assert!(sent.finish().0);
    let sent = Tool::start("socat", &["-u", "-", &format!("UDP-SENDTO:{at}")], b"theta");
    assert!(sent.finish().0);
    run_with_stdin(DEMO, &["writer", "udp", "--addr", &at], b"").assert_success();
    let out = reader.finish();
    out.assert_success();
    assert_eq!(received(&out, "reader"), expect_received(&["eta", "theta"]));
    assert_port_free("udp", &at);
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn nc_as_the_reader() {
    if !have(&["nc"]) {
        return;
    }
    let dir = ScratchDir::new("sock-ncl");
    let path = dir.join("nc.sock");
    let nc = Tool::start("nc", &["-lU", &path], b"");
    wait_until("nc listens on its Unix socket", || unix_listening(&path));
    run(DEMO, &["writer", "unix", "--path", &path, "hello", "nc"]).assert_success();
    let (ok, stdout, stderr) = nc.finish();
    assert!(ok, "nc -lU failed: {stderr}");
    assert_eq!(stdout, "hello\nnc\n");
    let _ = std::fs::remove_file(&path); // nc's file, not ours

    let port = free_tcp_port();
    let nc = Tool::start("nc", &["-l", "127.0.0.1", &port.to_string()], b"");
    wait_until("nc listens on its TCP port", || tcp_listening(port));
    run(
        DEMO,
        &[
            "writer",
            "tcp",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "over",
            "tcp",
        ],
    )
    .assert_success();
    let (ok, stdout, stderr) = nc.finish();
    assert!(ok, "nc -l failed: {stderr}");
    assert_eq!(stdout, "over\ntcp\n");
}

// ---------------------------------------------------------------- input nobody here wrote

/// Review row 2 and issue 9: a client that sends 200 MB with no newline, on a Unix stream
/// and on TCP. The reader stops at the 1 MiB cap with a sentence naming it, exits 1 and
/// removes its socket file; its peak memory (VmHWM) stays far under 128 MiB, and the flood
/// is cut short: the reader closed, so the sender's writes fail long before 200 MB.
#[test]
fn a_flood_with_no_newline_stops_at_the_line_cap() {
    const FLOOD: usize = 200 << 20;
    for flavour in ["unix", "tcp"] {
        let dir = ScratchDir::new("sock-flood");
        let (reader, at) = start_reader(flavour, &dir, &[]);
        let mut conn: Box<dyn Write> = if flavour == "tcp" {
            Box::new(std::net::TcpStream::connect(&at).unwrap())
        } else {
            Box::new(UnixStream::connect(&at).unwrap())
        };
        let chunk = vec![b'a'; 64 * 1024];
        let (mut peak, mut sent) = (0, 0);
        while sent < FLOOD {
            if let Some(kib) = vm_hwm_kib(reader.pid()) {
                peak = peak.max(kib);
            }
            if conn.write_all(&chunk).is_err() {
                break; // the reader gave up and closed the connection
            }
            sent += chunk.len();
        }
        drop(conn);
        let out = reader.finish();
        println!(
            "{flavour}: flood of {sent} bytes sent before the reader closed; its VmHWM {peak} KiB"
        );
        assert!(peak < 128 * 1024, "{flavour}: reader VmHWM {peak} KiB");
        assert!(sent < FLOOD, "{flavour}: the reader took all {sent} bytes");
        out.assert_exit_code(1)
            .assert_stderr_contains("a line longer than 1048576 bytes (1 MiB) with no '\\n'");
        assert_meeting_point_gone(flavour, &at);
    }
}

/// The datagram path of the same flood: 200 MB in 1000 Unix datagrams of 200 000 bytes,
/// then the end. Each datagram is bounded by the reader's one buffer (the send buffer's
/// size, about 208 KiB), so its memory stays bounded without a line cap, and what it
/// echoes of each is cut.
#[test]
fn a_datagram_flood_keeps_the_reader_bounded() {
    let dir = ScratchDir::new("sock-dgflood");
    let (reader, at) = start_reader("unix-dgram", &dir, &[]);
    let socket = UnixDatagram::unbound().unwrap();
    let datagram = vec![b'a'; 200_000];
    let mut peak = 0;
    for _ in 0..1000 {
        if let Some(kib) = vm_hwm_kib(reader.pid()) {
            peak = peak.max(kib);
        }
        socket.send_to(&datagram, &at).unwrap();
    }
    socket.send_to(&[], &at).unwrap();
    let out = reader.finish();
    println!("unix-dgram: 1000 datagrams of 200000 bytes; reader VmHWM {peak} KiB");
    assert!(peak < 128 * 1024, "reader VmHWM {peak} KiB");
    out.assert_success();
    assert_eq!(out.summary("reader").num("bytes"), 200_000_000.0);
    let cut = format!("\"{}\"… (200000 bytes)", "a".repeat(40));
    assert_eq!(out.lines_with(&cut).len(), 1000, "echo not cut");
    assert_socket_gone(&at, false);
}

/// Review row 2, fdpass: `--file` of something endless is refused before it is sent.
#[test]
fn fdpass_refuses_a_file_that_is_not_regular() {
    run(DEMO, &["fdpass", "--file", "/dev/zero"])
        .assert_exit_code(1)
        .assert_stderr_contains("not a regular file");
}

// ---------------------------------------------------------------- issue 9: every peer death

/// A process that holds `fd` (as its standard input) and does nothing: a peer the test
/// can SIGKILL, so the kernel, not a guard of ours, closes that end.
fn holder(fd: impl Into<std::os::fd::OwnedFd>) -> std::process::Child {
    prepare_test_process();
    Command::new("sleep")
        .arg("600")
        .stdin(Stdio::from(fd.into()))
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn sleep")
}

fn sigkill(child: &mut std::process::Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
}

/// A demo whose standard input stays open, and empty, until the test drops it: a writer
/// that waits for its next line. Its output goes to files in `dir`.
struct OpenStdin {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: String,
    err: String,
}

impl OpenStdin {
    fn start(dir: &ScratchDir, tag: &str, args: &[&str]) -> OpenStdin {
        prepare_test_process();
        let (out, err) = (
            dir.join(&format!("{tag}.out")),
            dir.join(&format!("{tag}.err")),
        );
        let mut child = Command::new(demo_bin(DEMO))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .env("RUST_BACKTRACE", "1")
            .process_group(0)
            .spawn()
            .expect("spawn socket-demo");
        let stdin = child.stdin.take();
        OpenStdin {
            child,
            stdin,
            out,
            err,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait_for_line(&self, needle: &str) {
        wait_until(&format!("the writer prints {needle:?}"), || {
            std::fs::read_to_string(&self.out).is_ok_and(|o| o.contains(needle))
        });
    }

    /// Waits (with the harness's deadline) for it to exit: (status, stdout, stderr).
    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the writer did not exit within {DEADLINE:?}: {}",
                    std::fs::read_to_string(&self.out).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        drop(self.stdin.take());
        let out = std::fs::read_to_string(&self.out).unwrap();
        let err = std::fs::read_to_string(&self.err).unwrap();
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
        (status, out, err)
    }
}

impl Drop for OpenStdin {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn assert_no_panic(err: &str) {
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
}

/// c3a5a5f: a text writer waiting for its next line on standard input notices that its
/// reader was SIGKILLed (POLLHUP, POLLRDHUP for TCP), exits 1 saying so, and names the
/// socket file the dead reader could not remove. Before the fix it waited on stdin forever.
/// Datagrams too: nothing on the socket tells, so the writer watches the reader's socket in
/// the kernel's tables (/proc/net/unix, /proc/net/udp).
#[test]
fn a_stdin_writer_notices_its_reader_was_killed() {
    for (flavour, said) in [
        (
            "unix",
            "the reader is gone: it closed its end of the connection",
        ),
        (
            "tcp",
            "the reader is gone: it closed its end of the connection",
        ),
        ("unix-dgram", "the reader is gone: no socket is bound at"),
        (
            "udp",
            "the reader is gone: no socket on this machine has UDP port",
        ),
    ] {
        let dir = ScratchDir::new("sock-stdinw");
        let (mut reader, at) = start_reader(flavour, &dir, &[]);
        let writer = OpenStdin::start(&dir, "w", &["writer", flavour, meet_option(flavour), &at]);
        if matches!(flavour, "unix" | "tcp") {
            reader.wait_for_line("I take one writer");
        } else {
            writer.wait_for_line("connected");
        }
        wait_until_asleep_in(writer.pid(), "poll");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader.pid()), Signal::SIGKILL).unwrap();
        reader.finish().assert_killed_by(Signal::SIGKILL);
        let (status, _, err) = writer.finish();
        assert_eq!(status.code(), Some(1), "{flavour}: {err}");
        assert!(err.contains(said), "{flavour}: {err}");
        assert_no_panic(&err);
        if flavour.starts_with("unix") {
            // Killed, the reader removed nothing: the writer says what is left, and how.
            assert!(err.contains(&format!("rm {at}")), "{flavour}: {err}");
            std::fs::remove_file(&at).unwrap();
        }
        assert!(dir.entries().is_empty(), "{flavour}: {:?}", dir.entries());
    }
}

/// A datagram reader in two-terminal mode, its writer SIGKILLed after one line: no
/// connection, no EOF, and the zero-length end never comes. Before the fix it waited
/// forever; now it watches the sender (its SCM_CREDENTIALS pid; its UDP port in
/// /proc/net/udp), exits 1 saying so, and removes its socket file.
#[test]
fn a_datagram_text_reader_notices_its_writer_was_killed() {
    for (flavour, said) in [
        (
            "unix-dgram",
            "(from the SCM_CREDENTIALS on its datagrams, which the kernel fills in or checks), is gone",
        ),
        ("udp", "no socket on this machine has UDP port"),
    ] {
        let dir = ScratchDir::new("sock-dgkill");
        let (mut reader, at) = start_reader(flavour, &dir, &[]);
        let mut writer =
            OpenStdin::start(&dir, "w", &["writer", flavour, meet_option(flavour), &at]);
        writer
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"before the kill\n")
            .unwrap();
        reader.wait_for_line(r#"received "before the kill""#);
        let writer_pid = writer.pid();
        let (status, _, _) = {
            writer.child.kill().unwrap();
            writer.finish()
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let out = reader.finish();
        out.assert_exit_code(1)
            .assert_stderr_contains(said)
            .assert_stderr_contains("its end (a zero-length datagram) never came");
        if flavour == "unix-dgram" {
            out.assert_stderr_contains(&format!("pid {writer_pid}"));
        }
        assert!(!out.summary("reader").ok);
        assert_meeting_point_gone(flavour, &at);
        assert!(dir.entries().is_empty(), "{flavour}: {:?}", dir.entries());
    }
}

/// Stream readers whose writer is SIGKILLed while they wait in read(2) or recvmsg(2): the
/// kernel closes the dead writer's end, so the reader sees EOF at once. Where the workload
/// says how much is to come (bulk, ping, fdpass), that EOF is a failure: exit 1 and a
/// sentence. For text lines EOF is the end itself: the reader says it cannot tell a writer
/// that closed from one that died. The socket file is removed in every case.
#[test]
fn a_stream_reader_notices_its_writer_was_killed() {
    struct Case {
        flavour: &'static str,
        extra: &'static [&'static str],
        send: Vec<u8>,
        code: i32,
        said: &'static str,
    }
    let cases = [
        Case {
            flavour: "unix",
            extra: &[],
            send: b"one line\n".to_vec(),
            code: 0,
            said: "or died: the kernel closes a dead process's sockets just as close(2) would",
        },
        Case {
            flavour: "tcp",
            extra: &["--count", "10", "--size", "1000"],
            send: bulk_stream(3, 1000),
            code: 1,
            said: "the writer closed the connection after 3 of 10 messages",
        },
        Case {
            flavour: "unix",
            extra: &["--ping", "5", "--size", "100"],
            send: Vec::new(),
            code: 1,
            said: "after 0 of 5 round trips: is it gone?",
        },
        Case {
            flavour: "fdpass",
            extra: &[],
            send: Vec::new(),
            code: 1,
            said: "the writer closed the connection before sending its fd: is it gone?",
        },
    ];
    for case in cases {
        let dir = ScratchDir::new("sock-skill");
        let (mut reader, at) = start_reader(case.flavour, &dir, case.extra);
        let mut peer = if case.flavour == "tcp" {
            let mut conn = std::net::TcpStream::connect(&at).unwrap();
            conn.write_all(&case.send).unwrap();
            holder(conn)
        } else {
            let mut conn = UnixStream::connect(&at).unwrap();
            conn.write_all(&case.send).unwrap();
            holder(conn)
        };
        reader.wait_for_line("accepted a connection");
        let wchan = if case.flavour == "tcp" {
            "wait_woken"
        } else {
            "unix_stream_read_generic"
        };
        wait_until_asleep_in(reader.pid(), wchan);
        sigkill(&mut peer);
        let out = reader.finish();
        out.assert_exit_code(case.code);
        let text = format!("{}\n{}", out.stdout, out.stderr);
        assert!(text.contains(case.said), "{}: {text}", case.flavour);
        assert_meeting_point_gone(case.flavour, &at);
    }
}

/// Issue 9: what a side echoes of a message is cut at 40 characters, on both sides and in
/// every flavour (a peer nobody here wrote may send a megabyte line); the byte count
/// beside it is the whole message's.
#[test]
fn echoes_are_cut_at_40_characters_on_both_sides() {
    let head = "a".repeat(40);
    // The tail: characters no path or pid in the narration holds (mkdtemp uses letters).
    let long = format!("{head}{}", "~^".repeat(30)); // 100 bytes
    for flavour in ["unix", "unix-dgram", "tcp", "udp", "pair", "fdpass"] {
        let out = run(DEMO, &[flavour, &long]);
        out.assert_success();
        for line in out.stdout.lines() {
            if line.contains("starting the writer as a separate program") {
                continue; // the command line we run, not an echo of what came
            }
            assert!(!line.contains("~^"), "{flavour}: not cut: {line}");
        }
        let cut = format!("\"{head}\"… (100 bytes)");
        let reader = if flavour == "pair" { "child" } else { "reader" };
        assert!(
            received(&out, reader).iter().any(|r| r.starts_with(&cut)),
            "{flavour}: {}",
            out.stdout
        );
        if flavour != "fdpass" {
            let sender = if flavour == "pair" {
                "parent"
            } else {
                "writer"
            };
            let sent = format!("[{sender} {}] sent {cut}", out.pid_of(sender));
            assert!(
                !out.lines_with(&sent).is_empty(),
                "{flavour}: {}",
                out.stdout
            );
        }
    }
}

/// pair: SIGKILL either process while the other waits for it. The parent sees its child's
/// end close and reaps it (killed by SIGKILL); the child tells the parent's death
/// (ECONNRESET, or POLLHUP: both directions closed) from its half-close (shutdown(SHUT_WR))
/// and exits 1.
#[test]
fn pair_either_side_notices_the_other_was_killed() {
    let messages: Vec<String> = (1..=20000).map(|i| i.to_string()).collect();
    let mut args = vec!["pair"];
    args.extend(messages.iter().map(String::as_str));

    // The child killed: the parent exits 1 and says how its child ended.
    let mut demo = start(&args);
    demo.wait_for_line(r#"] received "5" (1 bytes)"#);
    let child = pid_of_role(&demo.stdout_so_far(), "child").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL).unwrap();
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stdout_contains(&format!("reaped child {child}: killed by SIGKILL"));
    assert!(
        ["or died", "the child is gone", "is it gone?"]
            .iter()
            .any(|said| out.stderr.contains(said)),
        "{}",
        out.stderr
    );

    // The parent killed: stop it first, so it cannot finish sending (and half-close)
    // before the kill; the child, asleep in read(2), then gets the kernel's close.
    for _attempt in 0..3 {
        let mut demo = start(&args);
        demo.wait_for_line(r#"] received "5" (1 bytes)"#);
        let child = pid_of_role(&demo.stdout_so_far(), "child").unwrap();
        let parent = nix::unistd::Pid::from_raw(demo.pid());
        nix::sys::signal::kill(parent, Signal::SIGSTOP).unwrap();
        wait_until("the parent is stopped", || {
            proc_state(demo.pid()).is_some_and(|(s, _)| s == 'T')
        });
        wait_until_asleep_in(child, "unix_stream_read_generic");
        nix::sys::signal::kill(parent, Signal::SIGKILL).unwrap();
        let out = demo.finish();
        out.assert_killed_by(Signal::SIGKILL);
        if out.stdout.contains("shutdown(SHUT_WR)") {
            continue; // it had sent everything before the stop: not this case, again
        }
        // The child exits 1, saying so: ECONNRESET when the dead parent left our answers
        // unread (the usual case), POLLHUP when it had read them all (pair.rs's unit test).
        let died = format!(
            "the parent (pid {}) closed its end of the socketpair",
            out.pid
        );
        assert!(
            out.stderr.contains("(ECONNRESET)") || out.stderr.contains(&died),
            "{}",
            out.stderr
        );
        assert!(
            out.lines_with(&format!("[child {child}] summary"))
                .is_empty()
                && out
                    .lines_with("EOF: the parent will send no more")
                    .is_empty(),
            "the orphan took the kernel's close for the end: {}",
            out.stdout
        );
        reap_orphans(out.pid);
        return;
    }
    panic!("the parent always finished sending before it could be stopped");
}

/// What a role blocked in one place needs from the test: the demo, the kernel function it
/// sleeps in, what must be gone after it stops, and the test's own end (kept open).
struct Blocked {
    demo: Demo,
    wchan: &'static str,
    gone: Vec<(&'static str, String)>,
    _keep: Vec<Box<dyn std::any::Any>>,
}

/// Starts a role and brings it to where it blocks.
type Setup = fn(&ScratchDir) -> Blocked;

/// Issue 9: SIGINT, SIGTERM and SIGHUP (the terminal closed) while a role is blocked, in
/// each role and flavour: it dies of that signal, says what it removed, and leaves no
/// socket file, no directory, no bound port. The writers too: a ping writer's own socket
/// file for the answers, a bulk writer asleep on a full socket.
#[test]
fn every_terminal_signal_while_blocked_leaves_nothing() {
    let setups: [(&str, Setup); 9] = [
        ("unix reader in accept", |_| {
            let mut demo = start(&["reader"]);
            let line = demo.wait_for_line("] listening at ");
            let at = word_after(&line, "] listening at ").to_string();
            demo.wait_for_line("waiting in accept(2)");
            Blocked {
                demo,
                wchan: "__skb_wait_for_more_packets",
                gone: vec![("unix-private", at)],
                _keep: vec![],
            }
        }),
        ("unix reader in read", |dir| {
            let (mut demo, at) = start_reader("unix", dir, &[]);
            let quiet = UnixStream::connect(&at).unwrap();
            demo.wait_for_line("I take one writer");
            Blocked {
                demo,
                wchan: "unix_stream_read_generic",
                gone: vec![("unix", at)],
                _keep: vec![Box::new(quiet)],
            }
        }),
        ("unix-dgram reader in recv", |dir| {
            let (demo, at) = start_reader("unix-dgram", dir, &[]);
            Blocked {
                demo,
                wchan: "__skb_wait_for_more_packets",
                gone: vec![("unix-dgram", at)],
                _keep: vec![],
            }
        }),
        ("tcp reader in accept", |dir| {
            let (demo, at) = start_reader("tcp", dir, &[]);
            Blocked {
                demo,
                wchan: "inet_csk_accept",
                gone: vec![("tcp", at)],
                _keep: vec![],
            }
        }),
        ("tcp reader in read", |dir| {
            let (mut demo, at) = start_reader("tcp", dir, &["--count", "3", "--size", "10"]);
            let quiet = std::net::TcpStream::connect(&at).unwrap();
            demo.wait_for_line("I take one writer");
            Blocked {
                demo,
                wchan: "wait_woken",
                gone: vec![("tcp", at)],
                _keep: vec![Box::new(quiet)],
            }
        }),
        ("udp reader in recv", |dir| {
            let (demo, at) = start_reader("udp", dir, &[]);
            Blocked {
                demo,
                wchan: "__skb_wait_for_more_packets",
                gone: vec![("udp", at)],
                _keep: vec![],
            }
        }),
        ("fdpass reader in recvmsg", |dir| {
            let (mut demo, at) = start_reader("fdpass", dir, &[]);
            let quiet = UnixStream::connect(&at).unwrap();
            demo.wait_for_line("accepted a connection");
            Blocked {
                demo,
                wchan: "unix_stream_read_generic",
                gone: vec![("fdpass", at)],
                _keep: vec![Box::new(quiet)],
            }
        }),
        ("unix-dgram ping writer waiting for an answer", |dir| {
            // A "reader" that never answers: the test's own socket.
            let at = dir.join("silent.sock");
            let silent = UnixDatagram::bind(&at).unwrap();
            let mut demo = start(&["writer", "unix-dgram", "--path", &at, "--ping", "3"]);
            let line = demo.wait_for_line("bound my own socket to ");
            let own = word_after(&line, "bound my own socket to ").to_string();
            Blocked {
                demo,
                wchan: "__skb_wait_for_more_packets",
                gone: vec![("unix-private", own)],
                _keep: vec![Box::new(silent)],
            }
        }),
        ("unix bulk writer asleep on a full socket", |dir| {
            // A "reader" that accepts and never reads: the writer fills the socket.
            let at = dir.join("full.sock");
            let listener = std::os::unix::net::UnixListener::bind(&at).unwrap();
            let mut demo = start(&[
                "writer", "unix", "--path", &at, "--count", "100000", "--size", "65536",
            ]);
            let (conn, _) = listener.accept().unwrap();
            demo.wait_for_line("sending 100000 messages");
            Blocked {
                demo,
                wchan: "sock_alloc_send_pskb",
                gone: vec![],
                _keep: vec![Box::new(conn), Box::new(listener)],
            }
        }),
    ];
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        for (role, setup) in &setups {
            let dir = ScratchDir::new("sock-sigs");
            let blocked = setup(&dir);
            wait_until_asleep_in(blocked.demo.pid(), blocked.wchan);
            blocked.demo.signal_group(sig);
            let out = blocked.demo.finish();
            out.assert_killed_by(sig)
                .assert_stdout_contains(&format!("interrupted by {sig}"));
            // The test's own end first: a TCP connection it still holds keeps the port.
            drop(blocked._keep);
            for (kind, at) in &blocked.gone {
                match *kind {
                    "unix-private" => assert_socket_gone(at, true),
                    flavour => assert_meeting_point_gone(flavour, at),
                }
            }
            let left: Vec<String> = dir
                .entries()
                .into_iter()
                .filter(|e| !matches!(e.as_str(), "silent.sock" | "full.sock"))
                .collect();
            assert!(left.is_empty(), "{role}, {sig}: {left:?}");
        }
    }
}

/// The writer waiting for its next line on standard input, for each terminal signal.
#[test]
fn every_terminal_signal_stops_a_writer_waiting_on_stdin() {
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        for flavour in ["unix", "unix-dgram"] {
            let dir = ScratchDir::new("sock-sigw");
            let (reader, at) = start_reader(flavour, &dir, &[]);
            let writer = OpenStdin::start(&dir, "w", &["writer", flavour, "--path", &at]);
            writer.wait_for_line("connected");
            wait_until_asleep_in(writer.pid(), "poll");
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(writer.pid()), sig).unwrap();
            let (status, out, err) = writer.finish();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(sig as i32), "{flavour} {sig}: {err}");
            assert!(out.contains(&format!("interrupted by {sig}")), "{out}");
            assert_no_panic(&err);
            // Its reader: a stream one sees EOF and ends; a datagram one never heard from
            // this writer (it sent nothing), so it waits on, until told to stop.
            if flavour == "unix-dgram" {
                reader.signal_group(Signal::SIGTERM);
                reader.finish().assert_killed_by(Signal::SIGTERM);
            } else {
                reader.finish().assert_success();
            }
            assert_socket_gone(&at, false);
        }
    }
}

/// Writers whose reader is SIGKILLed while they wait for it, wherever they wait: in
/// connect(2) on a full backlog, for a ping's answer (unix-dgram, udp: no connection, so
/// the writer watches the reader's socket in /proc/net/unix or /proc/net/udp), and for the
/// fdpass reader's answer. The "reader" is a socket the test made and handed to a `sleep`
/// process, which is then SIGKILLed: the kernel closes it, no guard runs. Each writer exits
/// 1 with a sentence, removes its own socket file, and names a stale reader file with the
/// command that removes it.
#[test]
fn a_writer_notices_its_reader_was_killed_wherever_it_waits() {
    use std::os::fd::AsRawFd;
    for case in ["connect", "unix-dgram ping", "udp ping", "fdpass answer"] {
        let dir = ScratchDir::new("sock-wkill");
        let at = dir.join("r.sock");
        let (mut writer, mut peer, said) = match case {
            "connect" => {
                let listener = std::os::unix::net::UnixListener::bind(&at).unwrap();
                // Backlog 0: one queued connection fills it, the next connect(2) waits.
                // SAFETY: listen(2) on a listening socket we own only changes its backlog.
                assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
                let _queued = UnixStream::connect(&at).unwrap();
                let mut writer = start(&["writer", "unix", "--path", &at, "hi"]);
                wait_until_asleep_in(writer.pid(), "unix_wait_for_peer");
                let peer = holder(listener);
                let _ = &mut writer;
                (writer, peer, "nobody is listening at")
            }
            "unix-dgram ping" => {
                let silent = UnixDatagram::bind(&at).unwrap();
                let mut writer = start(&["writer", "unix-dgram", "--path", &at, "--ping", "3"]);
                writer.wait_for_line("bound my own socket to ");
                wait_until_asleep_in(writer.pid(), "__skb_wait_for_more_packets");
                let peer = holder(silent);
                (writer, peer, "the reader is gone: no socket is bound at")
            }
            "udp ping" => {
                let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
                let addr = silent.local_addr().unwrap().to_string();
                let mut writer = start(&["writer", "udp", "--addr", &addr, "--ping", "3"]);
                writer.wait_for_line("a UDP socket on ");
                wait_until_asleep_in(writer.pid(), "__skb_wait_for_more_packets");
                let peer = holder(silent);
                (
                    writer,
                    peer,
                    "the reader is gone: no socket on this machine has UDP port",
                )
            }
            _ => {
                let listener = std::os::unix::net::UnixListener::bind(&at).unwrap();
                let mut writer = start(&["writer", "fdpass", "--path", &at, "one line"]);
                let (conn, _) = listener.accept().unwrap();
                writer.wait_for_line("sent one byte to say \"look now\"");
                let peer = holder(conn);
                drop(listener); // the reader's socket file stays: it is stale now
                // Our bytes unread by the dead reader: ECONNRESET.
                (
                    writer,
                    peer,
                    "(ECONNRESET): the other side closed it with data unread, or died",
                )
            }
        };
        let _ = &mut writer;
        sigkill(&mut peer);
        let out = writer.finish();
        out.assert_exit_code(1).assert_stderr_contains(said);
        if case != "udp ping" {
            out.assert_stderr_contains(&format!("rm {at}"));
            std::fs::remove_file(&at).unwrap();
        }
        if case == "unix-dgram ping" {
            let line = out.lines_with("bound my own socket to ")[0];
            assert_socket_gone(word_after(line, "bound my own socket to "), true);
        }
        assert!(dir.entries().is_empty(), "{case}: {:?}", dir.entries());
    }
}

/// The default run (reader and the writer it started), each flavour, an endless bulk
/// transfer: SIGKILL the writer, and the reader exits 1 saying so and removes its socket
/// file and directory; SIGKILL the reader, and the orphaned writer exits 1 saying its
/// reader is gone, and names the file and directory the reader left (`rm … && rmdir …`).
#[test]
fn the_default_run_survives_either_side_killed() {
    for flavour in ["unix", "unix-dgram", "tcp", "udp"] {
        let args = [flavour, "--count", "100000000", "--size", "1000"];
        // The writer killed.
        let mut demo = start(&args);
        demo.wait_for_line("] sending 100000000 ");
        let writer = pid_of_role(&demo.stdout_so_far(), "writer").unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(writer), Signal::SIGKILL).unwrap();
        let out = demo.finish();
        out.assert_exit_code(1);
        out.assert_stdout_contains(&format!("reaped writer {writer}: killed by SIGKILL"));
        assert_meeting_point_gone_after_default_run(flavour, &out.stdout);

        // The reader killed: the writer, its orphan, must still end by itself.
        let mut demo = start(&args);
        demo.wait_for_line("] sending 100000000 ");
        let writer = pid_of_role(&demo.stdout_so_far(), "writer").unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(demo.pid()), Signal::SIGKILL).unwrap();
        let out = demo.finish();
        out.assert_killed_by(Signal::SIGKILL);
        reap_orphans(out.pid);
        assert!(!process_exists(writer));
        assert!(
            out.stderr.contains("the reader is gone") || out.stderr.contains("nobody is reading"),
            "{flavour}: {}",
            out.stderr
        );
        if flavour.starts_with("unix") {
            let at = listening_path(&out.stdout);
            let dir = Path::new(&at).parent().unwrap().display().to_string();
            out.assert_stderr_contains(&format!("rm {at} && rmdir {dir}"));
            std::fs::remove_file(&at).unwrap();
            std::fs::remove_dir(&dir).unwrap();
        }
    }
}

/// A unix-dgram ping writer binds a socket file of its own, in a private directory, for
/// the answers. SIGKILLed, it removes neither: its reader (two terminals: watching its
/// SCM_CREDENTIALS pid; the default run: its child gone) exits 1 saying so, removes its
/// own socket file, and names the writer's with `rm … && rmdir …`.
#[test]
fn a_killed_ping_writer_leaves_its_socket_file_and_the_reader_names_it() {
    for two_terminals in [true, false] {
        let dir = ScratchDir::new("sock-pingkill");
        let workload = ["--ping", "100000000", "--size", "100"];
        let (demo, writer, at) = if two_terminals {
            let (mut reader, at) = start_reader("unix-dgram", &dir, &workload);
            let mut args = vec!["writer", "unix-dgram", "--path", &at];
            args.extend(workload);
            let writer = start(&args);
            reader.wait_for_line("the first ping came from");
            (reader, Some(writer), at)
        } else {
            let mut args = vec!["unix-dgram"];
            args.extend(workload);
            let mut demo = start(&args);
            demo.wait_for_line("the first ping came from");
            let at = listening_path(&demo.stdout_so_far());
            (demo, None, at)
        };
        let so_far = demo.stdout_so_far();
        let own_line = match &writer {
            Some(w) => {
                let mut w_out = String::new();
                wait_until("the writer says where it bound", || {
                    w_out = w.stdout_so_far();
                    w_out.contains("bound my own socket to ")
                });
                w_out
            }
            None => so_far.clone(),
        };
        let own = word_after(
            own_line
                .lines()
                .find(|l| l.contains("bound my own socket to "))
                .unwrap(),
            "bound my own socket to ",
        )
        .to_string();
        let writer_pid = match &writer {
            Some(w) => w.pid(),
            None => pid_of_role(&so_far, "writer").unwrap(),
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(writer_pid), Signal::SIGKILL).unwrap();
        if let Some(w) = writer {
            w.finish().assert_killed_by(Signal::SIGKILL);
        }
        let out = demo.finish();
        let own_dir = Path::new(&own).parent().unwrap().display().to_string();
        out.assert_exit_code(1)
            .assert_stderr_contains(&format!("rm {own} && rmdir {own_dir}"));
        assert_socket_gone(&at, !two_terminals);
        std::fs::remove_file(&own).unwrap();
        std::fs::remove_dir(&own_dir).unwrap();
    }
}

/// Busy runs of two processes (the default run's reader and writer, pair's parent and
/// child), for each terminal signal sent to the group: both stop, the parent reaps the
/// child, dies of the signal, and no socket file, directory or port is left.
#[test]
fn busy_two_process_runs_stop_on_every_terminal_signal() {
    let messages: Vec<String> = (1..=20000).map(|i| i.to_string()).collect();
    let mut pair = vec!["pair"];
    pair.extend(messages.iter().map(String::as_str));
    let runs: [(Vec<&str>, &str, &str); 3] = [
        (pair, "parent", r#"] received "5" (1 bytes)"#),
        (
            vec!["unix", "--count", "10000000", "--size", "65536"],
            "reader",
            "checking 10000000 messages",
        ),
        (
            vec!["udp", "--ping", "10000000", "--size", "100"],
            "reader",
            "the first ping came from",
        ),
    ];
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        for (args, parent, busy) in &runs {
            let mut demo = start(args);
            demo.wait_for_line(busy);
            demo.signal_group(sig);
            let out = demo.finish();
            out.assert_killed_by_after_reaping(sig);
            let child = if *parent == "parent" {
                "child"
            } else {
                "writer"
            };
            let child_pid = out.pid_of(child);
            out.assert_stdout_contains(&format!("[{parent} {}] interrupted by {sig}", out.pid))
                .assert_stdout_contains(&format!("{child} {child_pid}: killed by {sig}"));
            assert!(!process_exists(child_pid));
            match args[0] {
                "unix" => assert_socket_gone(&listening_path(&out.stdout), true),
                "udp" => assert_port_free("udp", &bound_addr(&out.stdout)),
                _ => {}
            }
        }
    }
}

/// A reader bound at a relative path (/proc/net/unix shows it as given, relative to a
/// directory the writer does not know) is not taken for dead by a writer that names its
/// socket by an absolute path while it waits on standard input.
#[test]
fn a_reader_bound_at_a_relative_path_is_not_taken_for_dead() {
    prepare_test_process();
    let dir = ScratchDir::new("sock-rel");
    let out_file = dir.join("reader.out");
    /// Killed if the test fails half-way: it would wait for an end that never comes.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if self.0.try_wait().ok().flatten().is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let mut reader = KillOnDrop(
        Command::new(demo_bin(DEMO))
            .args(["reader", "unix-dgram", "--path", "rel.sock"])
            .current_dir(dir.path())
            .stdout(std::fs::File::create(&out_file).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let at = dir.join("rel.sock");
    wait_until("the reader is bound", || !is_gone(&at)); // bind(2) makes the file
    let mut writer = OpenStdin::start(&dir, "w", &["writer", "unix-dgram", "--path", &at]);
    writer.wait_for_line("connected to");
    wait_until_asleep_in(writer.pid(), "poll");
    // Each TICK the writer's poll(2) times out, it looks at /proc/net/unix and sleeps
    // again: one more voluntary context switch. Two more: it has looked, at least once.
    let looked = voluntary_switches(writer.pid()) + 2;
    let exited = |pid| matches!(proc_state(pid), Some(('Z', _)) | None);
    wait_until("the writer has looked for its reader", || {
        voluntary_switches(writer.pid()) >= looked || exited(writer.pid())
    });
    if !exited(writer.pid()) {
        writer.stdin.as_mut().unwrap().write_all(b"hi\n").unwrap();
        wait_until("the reader received it", || {
            std::fs::read_to_string(&out_file).is_ok_and(|o| o.contains(r#"received "hi""#))
        });
        wait_until_asleep_in(writer.pid(), "poll");
    }
    drop(writer.stdin.take()); // EOF: the writer sends the end
    let (status, _, err) = writer.finish();
    assert!(
        status.success(),
        "the writer gave up on a live reader: {err}"
    );
    assert!(reader.0.wait().unwrap().success());
    assert!(is_gone(&at));
}

/// How often process `pid` has gone to sleep of its own accord (/proc/PID/status).
fn voluntary_switches(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- many clients

/// `reader unix --clients 3`: the library's `Server` serves three clients at once, one
/// poll(2) loop, each client's half lines kept apart (two halves interleaved on the wire
/// come out as each client's own whole line), a client killed mid-line does not stop the
/// others, and the listener stays open until all three are done. Then nothing is left.
#[test]
fn the_reader_serves_several_clients_at_once_their_lines_kept_apart() {
    let dir = ScratchDir::new("sock-many");
    let (mut reader, at) = start_reader("unix", &dir, &["--clients", "3"]);
    let mut clients: Vec<UnixStream> = (0..2).map(|_| UnixStream::connect(&at).unwrap()).collect();
    reader.wait_for_line("client 2 connected");
    // The third client is one of the demo's own writers, on standard input: it stays
    // connected while the two above write their halves.
    // std's pipe is close-on-exec: the writer's stdin sees EOF once we drop our end.
    let (stdin_r, stdin_w) = std::io::pipe().unwrap();
    let mut writer = Demo::start_with_stdio(
        DEMO,
        &["writer", "unix", "--path", &at],
        Stdio::from(stdin_r),
    );
    reader.wait_for_line("client 3 connected");
    for (i, c) in clients.iter_mut().enumerate() {
        write!(c, "half of {i}, ").unwrap(); // no newline yet: the other's half comes next
    }
    for (i, c) in clients.iter_mut().enumerate() {
        writeln!(c, "rest of {i}").unwrap();
    }
    // In either order: the two rests may come in one poll(2) batch or in two.
    wait_until("both clients' whole lines", || {
        let so_far = reader.stdout_so_far();
        so_far.contains("received \"half of 1, rest of 1\"")
            && so_far.contains("received \"half of 0, rest of 0\"")
    });
    drop(clients);
    reader.wait_for_line(&format!("client 2 (pid {}): EOF", std::process::id()));
    let mut stdin = stdin_w;
    writeln!(stdin, "from the writer").unwrap();
    drop(stdin);
    writer.wait_for_line("sent \"from the writer\"");
    let out = reader.finish();
    writer.finish().assert_success();
    out.assert_success()
        .assert_stdout_contains("client 3 (pid")
        .assert_stdout_contains("received \"from the writer\"")
        .assert_stdout_contains("3 clients served, and the listening socket stayed open");
    assert!(
        out.line_index("client 3 connected") < out.line_index("\"half of 0, rest of 0\""),
        "the third client was not connected while the first two wrote:\n{}",
        out.stdout
    );
    assert_eq!(out.summary("reader").num("messages"), 3.0);
    assert_socket_gone(&at, false);
}

/// `--clients` is for the unix reader only: bad usage, nothing created.
#[test]
fn clients_is_only_for_the_unix_reader() {
    for args in [
        &["reader", "tcp", "--clients", "2"][..],
        &[
            "writer",
            "unix",
            "--path",
            "/nonexistent/s",
            "--clients",
            "2",
        ],
        &["reader", "unix", "--clients", "0"],
        &[
            "reader",
            "unix",
            "--clients",
            "2",
            "--count",
            "3",
            "--size",
            "8",
        ],
    ] {
        run(DEMO, args)
            .assert_exit_code(2)
            .assert_stderr_contains("--clients");
    }
}

/// Ctrl+C while `--clients` serves: the poll loop stops, the socket file goes, the reader
/// dies of SIGINT.
#[test]
fn sigint_stops_the_many_clients_reader_and_removes_its_socket() {
    let dir = ScratchDir::new("sock-many-int");
    let (mut reader, at) = start_reader("unix", &dir, &["--clients", "2"]);
    let _client = UnixStream::connect(&at).unwrap();
    reader.wait_for_line("client 1 connected");
    reader.signal_group(Signal::SIGINT);
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains("interrupted by SIGINT: removed the socket file");
    assert_socket_gone(&at, false);
}

// ---------------------------------------------------------------- seqpacket (issue 12)

/// The /proc/net/unix lines whose address is `at` (a path, or `@NAME`), each as its
/// fields: `Num RefCount Protocol Flags Type St Inode Path`.
fn proc_net_unix(at: &str) -> Vec<Vec<String>> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| l.ends_with(&format!(" {at}")))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// True while a socket of type `kind` (0001 stream, 0002 dgram, 0005 seqpacket) listens
/// or is bound at `at`, by the kernel's table.
fn bound_with_type(at: &str, kind: &str) -> bool {
    proc_net_unix(at)
        .iter()
        .any(|f| f.get(4).map(String::as_str) == Some(kind))
}

/// An abstract name no other test (or run) uses: `@socket-demo-test-PID-TAG`.
fn abstract_name(tag: &str) -> String {
    format!("@socket-demo-test-{}-{tag}", std::process::id())
}

/// `ss -xl` (if ss is here: iproute2) lists `at` (listening, or a bound datagram socket);
/// the callers look at /proc/net/unix too, which is always there.
fn assert_listed_by_ss(at: &str, listed: bool) {
    // Looked up once: a missing ss is one skip line, not one per call.
    static SS: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let Some(ss) = SS.get_or_init(|| find_tool("ss", "iproute2")) else {
        return;
    };
    let out = Command::new(ss).args(["-xlan"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().any(|l| l.split_whitespace().any(|w| w == at)),
        listed,
        "ss -xlan and {at}:\n{text}"
    );
}

/// The default run: the writer's three send(2) calls wait in the kernel together, and
/// still come out as three recv(2) calls, each one whole message (where the unix default
/// run's one read(2) returns all three); then EOF, which a datagram socket never gives.
#[test]
fn seqpacket_default_run_keeps_each_message_whole_and_ends_with_eof() {
    let out = run(DEMO, &["seqpacket"]);
    out.assert_success();
    let writer = out.pid_of("writer");
    let reaped = out.line_index(&format!("reaped writer {writer}: exited with status 0"));
    let recvs = out.lines_with("] recv(2) returned one message, whole: ");
    assert_eq!(recvs.len(), 3, "{}", out.stdout);
    assert!(
        reaped < out.line_index("recv(2) returned one message, whole: 5 bytes"),
        "the reader read before all three messages waited:\n{}",
        out.stdout
    );
    assert_eq!(out.lines_with("one send(2), one message").len(), 3);
    assert_eq!(received(&out, "reader"), expect_received(&DEFAULT_MESSAGES));
    assert!(out.line_index("EOF: recv(2) returned 0") > out.line_index("\"via the kernel\""));
    out.assert_stdout_contains("3 messages, 3 recv(2) calls")
        .assert_stdout_contains("SOCK_SEQPACKET")
        .assert_stdout_contains("srw-------");
    assert!(!out.stdout.contains("came out of that one read(2)"));
    let cred = out.lines_with("SO_PEERCRED")[0];
    assert!(
        cred.contains(&format!("the writer is pid {writer} uid ")),
        "{cred}"
    );
    for role in ["reader", "writer"] {
        let summary = out.summary(role);
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(summary.num("messages"), 3.0, "{}", summary.line);
        assert_eq!(summary.num("bytes"), 35.0, "{}", summary.line);
        assert_summary_last(&out, role);
    }
    let path = listening_path(&out.stdout);
    assert_private_dir_names_the_reader(&out, &path);
    assert_socket_gone(&path, true);
}

/// Two terminals: the kernel lists the reader's socket as SOCK_SEQPACKET (type 0005)
/// while it listens; a message holding newlines stays one message; the writer's pid comes
/// from SO_PEERCRED; nothing is left.
#[test]
fn seqpacket_reader_and_writer_as_separate_processes() {
    let dir = ScratchDir::new("sock-seq-two");
    let (reader, at) = start_reader("seqpacket", &dir, &[]);
    wait_until("the reader listening as SOCK_SEQPACKET", || {
        bound_with_type(&at, "0005")
    });
    let writer = run(
        DEMO,
        &[
            "writer",
            "seqpacket",
            "--path",
            &at,
            "one",
            "two\nlines",
            "three",
        ],
    );
    writer.assert_success();
    let out = reader.finish();
    out.assert_success();
    assert_eq!(
        received(&out, "reader"),
        expect_received(&["one", "two\nlines", "three"])
    );
    let cred = out.lines_with("SO_PEERCRED")[0];
    assert!(
        cred.contains(&format!("the writer is pid {} uid ", writer.pid)),
        "{cred}"
    );
    assert_eq!(writer.summary("writer").num("bytes"), 17.0);
    assert_socket_gone(&at, false);
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

/// Standard input: one message per line; an empty line is skipped (it would read as EOF).
#[test]
fn seqpacket_writer_sends_standard_input_lines() {
    let dir = ScratchDir::new("sock-seq-stdin");
    let (reader, at) = start_reader("seqpacket", &dir, &[]);
    let writer = run_with_stdin(
        DEMO,
        &["writer", "seqpacket", "--path", &at],
        b"first\n\nsecond\n",
    );
    writer
        .assert_success()
        .assert_stdout_contains("skipped an empty line");
    let out = reader.finish();
    out.assert_success();
    assert_eq!(
        received(&out, "reader"),
        expect_received(&["first", "second"])
    );
    assert_socket_gone(&at, false);

    // A line longer than a message can be (argv cannot carry one: 128 KiB at most per
    // argument): the kernel refuses it whole, EMSGSIZE, said in words; nothing was sent.
    let (reader, at) = start_reader("seqpacket", &dir, &[]);
    let mut line = vec![b'x'; 300_000];
    line.push(b'\n');
    let writer = run_with_stdin(DEMO, &["writer", "seqpacket", "--path", &at], &line);
    writer
        .assert_exit_code(1)
        .assert_stderr_contains("too big for one seqpacket message (EMSGSIZE)");
    assert_no_panic(&writer.stderr);
    let out = reader.finish();
    out.assert_success();
    assert_eq!(out.summary("reader").num("messages"), 0.0);
    assert_socket_gone(&at, false);
}

/// Bulk and ping: every message checked whole and in order, the standard summary line.
#[test]
fn seqpacket_bulk_and_ping() {
    let out = run(DEMO, &["seqpacket", "--count", "300", "--size", "4000"]);
    out.assert_success();
    for role in ["reader", "writer"] {
        let summary = out.summary(role);
        assert!(summary.ok, "{}", summary.line);
        assert_eq!(summary.num("messages"), 300.0);
        assert_eq!(summary.num("bytes"), 1_200_000.0);
        summary.assert_throughput_consistent();
    }
    assert_socket_gone(&listening_path(&out.stdout), true);
    // The largest message there is: the send buffer less the kernel's 32 bytes.
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let largest = (wmem - 32).to_string();
    let out = run(DEMO, &["seqpacket", "--count", "3", "--size", &largest]);
    out.assert_success();
    assert!(out.summary("reader").ok);

    let out = run(DEMO, &["seqpacket", "--ping", "200", "--size", "64"]);
    out.assert_success();
    let summary = out.summary("writer");
    assert!(summary.ok, "{}", summary.line);
    assert_eq!(summary.num("messages"), 200.0);
    assert!(summary.num("rtt_p50_us") > 0.0, "{}", summary.line);
    assert!(summary.num("rtt_p99_us") >= summary.num("rtt_p50_us"));
    assert_socket_gone(&listening_path(&out.stdout), true);
}

#[test]
fn seqpacket_bad_usage_exits_2_and_creates_nothing() {
    let dir = ScratchDir::new("sock-seq-usage");
    let path = dir.join("s");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["seqpacket", ""], "recv(2) returns 0 for it"),
        (
            vec!["seqpacket", "--count", "1", "--size", "300000"],
            "a seqpacket message must fit the send buffer",
        ),
        (vec!["writer", "seqpacket", "hi"], "the writer needs --path"),
        (
            vec!["reader", "seqpacket", "--addr", "127.0.0.1:0"],
            "--addr is for",
        ),
        (
            vec!["reader", "seqpacket", "--path", &path, "hi"],
            "takes no messages",
        ),
        (
            vec!["reader", "seqpacket", "--clients", "2", "--ping", "3"],
            "--clients",
        ),
        (
            vec!["reader", "seqpacket", "--path", "@"],
            "abstract name needs",
        ),
        (vec!["reader", "fdpass", "--path", "@x"], "needs a file"),
        (vec!["reader", "tcp", "--path", "@x"], "--path is for"),
    ];
    for (args, needle) in cases {
        let out = run(DEMO, &args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(
            dir.entries().is_empty(),
            "{args:?} created {:?}",
            dir.entries()
        );
    }
}

/// Ctrl+C while the seqpacket reader sleeps in accept(2), and while it sleeps in recv(2)
/// on a connection: it dies of SIGINT, and the socket file and its directory are gone.
#[test]
fn ctrl_c_in_seqpacket_accept_and_recv() {
    let out = interrupt_when_asleep(
        &["reader", "seqpacket"],
        "waiting in accept(2)",
        "__skb_wait_for_more_packets",
    );
    let path = listening_path(&out.stdout);
    out.assert_stdout_contains(&format!(
        "interrupted by SIGINT: removed the socket file {path} and its directory"
    ));
    assert_socket_gone(&path, true);

    let dir = ScratchDir::new("sock-seq-int");
    let (mut reader, at) = start_reader("seqpacket", &dir, &[]);
    let (stdin_r, stdin_w) = std::io::pipe().unwrap();
    let writer = Demo::start_with_stdio(
        DEMO,
        &["writer", "seqpacket", "--path", &at],
        Stdio::from(stdin_r),
    );
    reader.wait_for_line("I take one writer");
    wait_until_asleep_in(reader.pid(), "__skb_wait_for_more_packets");
    reader.signal_group(Signal::SIGINT);
    let out = reader.finish();
    out.assert_killed_by(Signal::SIGINT)
        .assert_stdout_contains("interrupted by SIGINT: removed the socket file");
    // The writer, waiting on its standard input, sees the connection close.
    let w = writer.finish();
    w.assert_exit_code(1)
        .assert_stderr_contains("the reader is gone");
    assert_no_panic(&w.stderr);
    drop(stdin_w);
    assert_socket_gone(&at, false);
}

/// A SIGKILLed peer, either side, in the middle of a bulk run: the survivor sees EOF or
/// EPIPE at once, exits 1 with a sentence, and the killed reader's file is named with
/// the command that removes it.
#[test]
fn seqpacket_survivor_notices_a_killed_peer() {
    let dir = ScratchDir::new("sock-seq-kill");
    let (reader, writer, at) = endless_bulk("seqpacket", &dir);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(writer.pid()), Signal::SIGKILL).unwrap();
    let started = Instant::now();
    writer.finish().assert_killed_by(Signal::SIGKILL);
    let out = reader.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the writer closed the connection after");
    assert_no_panic(&out.stderr);
    assert!(started.elapsed() < DEADLINE);
    assert_socket_gone(&at, false);

    let (reader, writer, at) = endless_bulk("seqpacket", &dir);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader.pid()), Signal::SIGKILL).unwrap();
    reader.finish().assert_killed_by(Signal::SIGKILL);
    let out = writer.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the reader is gone")
        .assert_stderr_contains(&format!("rm {at}"));
    assert_no_panic(&out.stderr);
    std::fs::remove_file(&at).unwrap();
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

/// A seqpacket writer at a stream reader's socket: the kernel refuses the other type
/// (EPROTOTYPE), said in words.
#[test]
fn a_seqpacket_writer_at_a_stream_socket_is_told_the_type_differs() {
    let dir = ScratchDir::new("sock-seq-type");
    let (reader, at) = start_reader("unix", &dir, &[]);
    run(DEMO, &["writer", "seqpacket", "--path", &at, "hi"])
        .assert_exit_code(1)
        .assert_stderr_contains("of another type (EPROTOTYPE)");
    reader.signal_group(Signal::SIGINT);
    reader.finish().assert_killed_by(Signal::SIGINT);
    assert_socket_gone(&at, false);
}

// ---------------------------------------------------------------- abstract names (issue 12)

/// `--path @NAME` on the three Unix flavours: the kernel lists the name (/proc/net/unix,
/// `ss -xl`), no file appears anywhere (not in the working directory either), the messages
/// go through, and once the reader is done the name is gone, with nothing unlinked.
#[test]
fn an_abstract_name_has_no_file_and_goes_with_its_socket() {
    let dir = ScratchDir::new("sock-abstract");
    for flavour in ["unix", "unix-dgram", "seqpacket"] {
        let at = abstract_name(flavour);
        let mut reader =
            Demo::start_with_stdio(DEMO, &["reader", flavour, "--path", &at], Stdio::null());
        let waits = if flavour == "unix-dgram" {
            "receiving at"
        } else {
            "listening at"
        };
        reader.wait_for_line(&format!("] {waits} {at}"));
        let kind = match flavour {
            "unix" => "0001",
            "unix-dgram" => "0002",
            _ => "0005",
        };
        assert!(
            bound_with_type(&at, kind),
            "{flavour}: {at} not in /proc/net/unix"
        );
        assert_listed_by_ss(&at, true);
        assert!(
            is_gone(&at),
            "a file named {at} appeared in the working directory"
        );
        let writer = Command::new(demo_bin(DEMO))
            .args(["writer", flavour, "--path", &at, "one", "two"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(writer.status.success(), "{flavour}: {writer:?}");
        let out = reader.finish();
        out.assert_success()
            .assert_stdout_contains("/proc/net/unix lists it:")
            .assert_stdout_contains(&format!("nothing to unlink: the abstract name {at} went"));
        assert_eq!(received(&out, "reader"), expect_received(&["one", "two"]));
        assert!(
            proc_net_unix(&at).is_empty(),
            "{flavour}: {at} is still bound"
        );
        assert_listed_by_ss(&at, false);
        assert!(dir.entries().is_empty(), "{:?}", dir.entries());
        assert!(is_gone(&at));
    }
}

/// The default run at an abstract name, and Ctrl+C while the reader waits there: the
/// name is gone, and there was nothing to remove.
#[test]
fn an_abstract_default_run_and_ctrl_c_leave_nothing() {
    let at = abstract_name("default");
    let out = run(DEMO, &["seqpacket", "--path", &at]);
    out.assert_success()
        .assert_stdout_contains("it finds mine by the abstract name alone");
    assert_eq!(received(&out, "reader"), expect_received(&DEFAULT_MESSAGES));
    assert!(proc_net_unix(&at).is_empty());

    for flavour in ["unix", "unix-dgram", "seqpacket"] {
        let at = abstract_name(&format!("int-{flavour}"));
        let ready = if flavour == "unix-dgram" {
            "receiving at"
        } else {
            "waiting in accept(2)"
        };
        let out = interrupt_when_asleep(
            &["reader", flavour, "--path", &at],
            ready,
            "__skb_wait_for_more_packets",
        );
        out.assert_stdout_contains("interrupted by SIGINT: nothing of mine to remove");
        assert!(
            proc_net_unix(&at).is_empty(),
            "{flavour}: {at} is still bound"
        );
    }
}

/// SIGKILL runs no guard, and an abstract name needs none: the name goes with the dead
/// reader's socket, the writer is not told to `rm` anything, and a new reader binds the
/// same name at once (where a socket file would be stale: EADDRINUSE). A second reader
/// while the first listens is told a live socket holds the name.
#[test]
fn a_killed_reader_leaves_no_abstract_name_behind() {
    let at = abstract_name("kill");
    let workload = ["--count", "10000000", "--size", "1000"];
    let mut args = vec!["reader", "seqpacket", "--path", &at];
    args.extend(workload);
    let mut reader = start(&args);
    reader.wait_for_line("listening at");
    // While the listener is open, the name is taken (once it has accepted its one writer
    // and closed the listener, the name is free, though the connection is open).
    let second = run(DEMO, &["reader", "seqpacket", "--path", &at]);
    second
        .assert_exit_code(1)
        .assert_stderr_contains(&format!("a live socket holds the abstract name {at}"));
    let mut wargs = vec!["writer", "seqpacket", "--path", &at];
    wargs.extend(workload);
    let writer = start(&wargs);
    reader.wait_for_line("checking 10000000 messages");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reader.pid()), Signal::SIGKILL).unwrap();
    reader.finish().assert_killed_by(Signal::SIGKILL);
    let out = writer.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("the reader is gone");
    assert!(!out.stderr.contains("rm "), "{}", out.stderr);
    assert!(proc_net_unix(&at).is_empty(), "{at} outlived its socket");
    // The same name, at once: nothing stale to remove first.
    let again = run(DEMO, &["seqpacket", "--path", &at, "again"]);
    again.assert_success();
    assert_eq!(received(&again, "reader"), expect_received(&["again"]));
    run(DEMO, &["writer", "seqpacket", "--path", &at, "hi"])
        .assert_exit_code(1)
        .assert_stderr_contains("no socket is bound to the abstract name");
}

// ---------------------------------------------------------------- many clients, by pid (issue 12)

/// `reader unix --clients 3` at an abstract name: each line is labelled with the pid the
/// kernel recorded for its sender (SO_PEERCRED): this test process's for its own client,
/// each demo writer's for its lines, while all three are connected at once.
#[test]
fn many_clients_each_line_labelled_by_its_senders_peercred_pid() {
    let at = abstract_name("clients");
    let mut reader = start(&["reader", "unix", "--path", &at, "--clients", "3"]);
    reader.wait_for_line("listening at");
    let mut own = UnixStream::connect_addr(
        &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            &at.as_bytes()[1..],
        )
        .unwrap(),
    )
    .unwrap();
    reader.wait_for_line("client 1 connected");
    let mut writers = Vec::new();
    let mut inputs = Vec::new();
    for n in 2..=3 {
        let (r, w) = std::io::pipe().unwrap();
        writers.push(Demo::start_with_stdio(
            DEMO,
            &["writer", "unix", "--path", &at],
            Stdio::from(r),
        ));
        inputs.push(w);
        reader.wait_for_line(&format!("client {n} connected"));
    }
    writeln!(own, "from the test").unwrap();
    for (i, input) in inputs.iter_mut().enumerate() {
        writeln!(input, "from writer {i}").unwrap();
    }
    let me = std::process::id();
    drop(own);
    drop(inputs);
    let pids: Vec<i32> = writers.iter().map(Demo::pid).collect();
    for w in writers {
        w.finish().assert_success();
    }
    let out = reader.finish();
    out.assert_success();
    out.assert_stdout_contains(&format!("(pid {me}): received \"from the test\""));
    for (i, pid) in pids.iter().enumerate() {
        out.assert_stdout_contains(&format!("(pid {pid}): received \"from writer {i}\""));
    }
    // Each "connected" line names the same pid as that client's lines.
    for line in out.lines_with(" connected: accept(2)") {
        let n = word_after(line, "client ");
        let pid = word_after(line, "SO_PEERCRED: pid ");
        assert!(
            out.stdout
                .contains(&format!("client {n} (pid {pid}): received ")),
            "client {n}: no line labelled pid {pid}:\n{}",
            out.stdout
        );
    }
    assert!(proc_net_unix(&at).is_empty());
}

/// `reader seqpacket --clients 2`: the same poll(2) loop over SOCK_SEQPACKET, each message
/// whole and labelled with its sender's SO_PEERCRED pid, both writers connected at once.
#[test]
fn many_seqpacket_clients_each_message_whole_and_labelled() {
    let at = abstract_name("seq-clients");
    let mut reader = start(&["reader", "seqpacket", "--path", &at, "--clients", "2"]);
    reader.wait_for_line("listening at");
    let mut writers = Vec::new();
    let mut inputs = Vec::new();
    for n in 1..=2 {
        let (r, w) = std::io::pipe().unwrap();
        writers.push(Demo::start_with_stdio(
            DEMO,
            &["writer", "seqpacket", "--path", &at],
            Stdio::from(r),
        ));
        inputs.push(w);
        reader.wait_for_line(&format!("client {n} connected"));
    }
    for (i, input) in inputs.iter_mut().enumerate() {
        writeln!(input, "first from {i}").unwrap();
        writeln!(input, "second from {i}").unwrap();
    }
    drop(inputs);
    let pids: Vec<i32> = writers.iter().map(Demo::pid).collect();
    for w in writers {
        w.finish().assert_success();
    }
    let out = reader.finish();
    out.assert_success()
        .assert_stdout_contains("each recv(2) returns one whole message of one client")
        .assert_stdout_contains("2 clients served");
    for (i, pid) in pids.iter().enumerate() {
        for which in ["first", "second"] {
            out.assert_stdout_contains(&format!("(pid {pid}): received \"{which} from {i}\""));
        }
    }
    assert_eq!(out.summary("reader").num("messages"), 4.0);
    assert!(proc_net_unix(&at).is_empty());
}

/// An abstract name has no permission bits: as root, a reader at `@NAME` is reached by a
/// writer running as uid 65534, whom SO_PEERCRED names; the same reader at a 0600 socket
/// file refuses that writer (EACCES). Skipped unless root, with setpriv (util-linux).
#[test]
fn anyone_may_connect_to_an_abstract_name_not_to_a_0600_file() {
    // The effective uid, second on the Uid: line (no unsafe geteuid for it).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"));
    if uid.and_then(|ids| ids.split_whitespace().nth(1)) != Some("0") {
        return;
    }
    let Some(setpriv) = find_tool("setpriv", "util-linux") else {
        return;
    };
    let as_nobody = |args: &[&str]| {
        Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(demo_bin(DEMO))
            .args(args)
            .current_dir("/")
            .output()
            .unwrap()
    };
    let at = abstract_name("nobody");
    let mut reader = start(&["reader", "seqpacket", "--path", &at]);
    reader.wait_for_line("listening at");
    let writer = as_nobody(&["writer", "seqpacket", "--path", &at, "from nobody"]);
    assert!(writer.status.success(), "{writer:?}");
    let out = reader.finish();
    out.assert_success();
    assert!(
        out.lines_with("SO_PEERCRED")[0].contains(" uid 65534 gid 65534"),
        "{}",
        out.stdout
    );
    assert_eq!(received(&out, "reader"), expect_received(&["from nobody"]));

    // The default run's socket file: 0600, in a 0700 directory: nobody is refused.
    let (reader, path) = {
        let mut reader = start(&["reader", "seqpacket"]);
        let line = reader.wait_for_line("] listening at ");
        let path = word_after(&line, "] listening at ").to_string();
        (reader, path)
    };
    let writer = as_nobody(&["writer", "seqpacket", "--path", &path, "hi"]);
    assert_eq!(writer.status.code(), Some(1), "{writer:?}");
    assert!(
        String::from_utf8_lossy(&writer.stderr).contains("Permission denied"),
        "{writer:?}"
    );
    reader.signal_group(Signal::SIGINT);
    reader.finish().assert_killed_by(Signal::SIGINT);
    assert_socket_gone(&path, true);
}
