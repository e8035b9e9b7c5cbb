//! End-to-end tests of msgq-demo, POSIX and System V: the narrated runs, reader and
//! writer as separate processes (the writer gone before the reader reads), boundaries,
//! order, limits, a full queue, bulk and ping, corruption, bad usage, Ctrl+C and killed
//! peers; and the `poll` flavour (issue 12), one reader polling two POSIX queues at
//! once. After every run the queue must be gone: a POSIX name no longer opens, and
//! /proc/sysvipc/msg has no entry with our key.
//!
//! Helpers here that the harness lacks: opening, counting, feeding and removing queues
//! directly (libc, since ipc-tests has no nix `mqueue` feature), so a test can look at
//! the kernel's side of things and inject a message of its own.

use ipc_tests::*;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::ffi::{CString, c_int, c_long};
use std::os::unix::process::CommandExt;
use std::time::Duration;

const DEMO: &str = "msgq-demo";

// ---------------------------------------------------------------------------------
// The meeting points, and looking at them from outside the demo.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Flavour {
    Posix,
    Sysv,
}

const BOTH: [Flavour; 2] = [Flavour::Posix, Flavour::Sysv];

/// A queue a test names for the demo: a POSIX name or a System V key, unique to this
/// test process and to the test (`tag`), so tests run in parallel without colliding.
struct Queue {
    flavour: Flavour,
    name: String,
    key: i32,
}

impl Queue {
    fn new(flavour: Flavour, tag: u8) -> Queue {
        let pid = std::process::id();
        Queue {
            flavour,
            name: format!("/msgq-test-{pid}-{tag}"),
            key: (0x7e00_0000 | ((pid & 0xffff) << 8) | u32::from(tag)) as i32,
        }
    }

    /// The queue the narrated run of process `pid` makes.
    fn of_default_run(flavour: Flavour, pid: i32) -> Queue {
        Queue {
            flavour,
            name: format!("/msgq-demo-{pid}"),
            key: 0x6d00_0000 | pid,
        }
    }

    /// The flavour and meeting point, as command-line arguments.
    fn args(&self) -> Vec<String> {
        match self.flavour {
            Flavour::Posix => vec!["posix".into(), "--name".into(), self.name.clone()],
            Flavour::Sysv => vec!["sysv".into(), "--key".into(), format!("{:#x}", self.key)],
        }
    }

    /// Where a receiver / a sender sleeps in the kernel (checked with /proc/PID/wchan).
    fn receive_wchan(&self) -> &'static str {
        match self.flavour {
            Flavour::Posix => "wq_sleep",
            Flavour::Sysv => "do_msgrcv",
        }
    }

    fn send_wchan(&self) -> &'static str {
        match self.flavour {
            Flavour::Posix => "wq_sleep",
            Flavour::Sysv => "do_msgsnd",
        }
    }

    /// The number of messages in the queue, or None if there is no queue.
    fn count(&self) -> Option<u64> {
        match self.flavour {
            Flavour::Posix => posix_count(&self.name),
            Flavour::Sysv => sysv_entry(self.key).map(|(_, qnum)| qnum),
        }
    }

    fn exists(&self) -> bool {
        self.count().is_some()
    }

    /// The leak check: nothing of ours is left in the kernel.
    fn assert_gone(&self) {
        assert!(
            !self.exists(),
            "{:?} queue {} / key {:#x} was left behind",
            self.flavour,
            self.name,
            self.key
        );
    }

    /// Puts one message in the queue, as any other program could (System V: type 1).
    fn inject(&self, message: &[u8]) {
        match self.flavour {
            Flavour::Posix => posix_send(&self.name, message),
            Flavour::Sysv => {
                let (id, _) = sysv_entry(self.key).expect("no queue to inject into");
                sysv_send(id, 1, message);
            }
        }
    }

    /// Removes the queue from outside (for tests that leave one behind on purpose).
    fn remove(&self) {
        match self.flavour {
            Flavour::Posix => {
                // Ping's second queue too.
                for name in [self.name.clone(), format!("{}-reply", self.name)] {
                    let name = CString::new(name).unwrap();
                    // SAFETY: a valid NUL-terminated name, read during the call only.
                    unsafe { libc::mq_unlink(name.as_ptr()) };
                }
            }
            Flavour::Sysv => {
                if let Some((id, _)) = sysv_entry(self.key) {
                    // SAFETY: IPC_RMID reads no buffer, so null is allowed.
                    unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
                }
            }
        }
    }
}

/// A POSIX queue tagged `tag` and a System V one tagged `tag + 1`: most tests run the
/// same steps over both flavours.
fn both_queues(tag: u8) -> [Queue; 2] {
    [
        Queue::new(Flavour::Posix, tag),
        Queue::new(Flavour::Sysv, tag + 1),
    ]
}

impl Drop for Queue {
    /// A test that fails half-way has its demos killed (SIGKILL), which cannot remove
    /// their queue: remove it here, so a failure leaves nothing in the kernel either.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.remove();
        }
    }
}

/// Opens an existing POSIX queue; None if there is none.
fn posix_open(name: &str, flags: c_int) -> Option<libc::mqd_t> {
    let name = CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated name; without O_CREAT, mq_open reads no more
    // arguments.
    let mqd = unsafe { libc::mq_open(name.as_ptr(), flags) };
    (mqd >= 0).then_some(mqd)
}

fn posix_count(name: &str) -> Option<u64> {
    let mqd = posix_open(name, libc::O_RDONLY)?;
    // SAFETY: mq_attr is plain integers, for which all zeroes is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: `mqd` is open and `attr` is a whole mq_attr for the kernel to fill; the
    // descriptor is closed right after, once.
    let ok = unsafe { libc::mq_getattr(mqd, &mut attr) } == 0;
    // SAFETY: see above.
    unsafe { libc::mq_close(mqd) };
    assert!(ok, "mq_getattr {name}");
    Some(attr.mq_curmsgs as u64)
}

fn posix_send(name: &str, message: &[u8]) {
    let mqd = posix_open(name, libc::O_WRONLY).expect("no queue to send to");
    // SAFETY: `message` is valid for its length, read during the call only; the
    // descriptor is open, and closed right after, once.
    let rc = unsafe { libc::mq_send(mqd, message.as_ptr().cast(), message.len(), 0) };
    // SAFETY: see above.
    unsafe { libc::mq_close(mqd) };
    assert_eq!(rc, 0, "mq_send to {name}");
}

/// The (id, message count) of the System V queue with `key`, from /proc/sysvipc/msg,
/// which exists on every Linux with System V IPC (ipcs may not be installed).
fn sysv_entry(key: i32) -> Option<(c_int, u64)> {
    Some((sysv_field(key, 1)? as c_int, sysv_field(key, 4)? as u64))
}

#[repr(C)]
struct MsgBuf {
    mtype: c_long,
    mtext: [u8; 8192],
}

fn sysv_send(id: c_int, mtype: c_long, message: &[u8]) {
    let mut buf = Box::new(MsgBuf {
        mtype,
        mtext: [0; 8192],
    });
    buf.mtext[..message.len()].copy_from_slice(message);
    // SAFETY: `buf` is a msgbuf whose text holds `message.len()` bytes, read during
    // the call only.
    let rc = unsafe { libc::msgsnd(id, (&*buf as *const MsgBuf).cast(), message.len(), 0) };
    assert_eq!(rc, 0, "msgsnd to queue {id}");
}

/// A kernel limit from /proc/sys, so the tests hold on a machine tuned otherwise.
fn kernel_limit(path: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

fn largest_message(flavour: Flavour) -> usize {
    match flavour {
        Flavour::Posix => kernel_limit("/proc/sys/fs/mqueue/msgsize_max"),
        Flavour::Sysv => kernel_limit("/proc/sys/kernel/msgmax"),
    }
}

// ---------------------------------------------------------------------------------
// Small helpers for running the demo.

fn start(args: &[String]) -> Demo {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Demo::start(DEMO, &args)
}

fn start_with_stdin(args: &[String], input: &[u8]) -> Demo {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Demo::start_with_stdin(DEMO, &args, input.to_vec())
}

/// `role` (reader / writer), the flavour and meeting point, then `rest`.
fn command(role: &str, queue: &Queue, rest: &[&str]) -> Vec<String> {
    let mut args = vec![role.to_string()];
    args.extend(queue.args());
    args.extend(rest.iter().map(|s| s.to_string()));
    args
}

fn flavour_word(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::Posix => "posix",
        Flavour::Sysv => "sysv",
    }
}

fn signal(pid: i32, sig: Signal) {
    nix::sys::signal::kill(Pid::from_raw(pid), sig).expect("kill");
}

/// Stops `pid` (SIGSTOP) and waits until it is stopped: until then it may still be on
/// the queue's list of waiting receivers, and the kernel hands a new message straight
/// to a waiting receiver.
fn freeze(pid: i32) {
    signal(pid, Signal::SIGSTOP);
    wait_until(&format!("pid {pid} is stopped"), || {
        matches!(proc_state(pid), Some(('T', _)))
    });
}

/// Fails unless the first stdout lines containing each needle come in this order.
fn assert_in_order(out: &Finished, needles: &[&str]) {
    let at: Vec<usize> = needles.iter().map(|n| out.line_index(n)).collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "expected {needles:?} in this order:\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------
// The narrated runs.

/// Runs a narrated run of `flavour` with `rest` to the end; asserts it succeeded and
/// removed its queue (ping's second one too).
fn run_narrated(flavour: Flavour, rest: &[&str]) -> Finished {
    let mut args = vec![flavour_word(flavour)];
    args.extend_from_slice(rest);
    let out = run(DEMO, &args);
    let ours = Queue::of_default_run(flavour, out.pid); // removed if we fail
    out.assert_success();
    ours.assert_gone();
    if flavour == Flavour::Posix {
        assert!(posix_count(&format!("/msgq-demo-{}-reply", out.pid)).is_none());
    }
    out
}

/// Act 1 as both flavours narrate it: the writer sends, exits and is reaped before the
/// reader is even forked; meanwhile the kernel holds the messages, counted up and down.
fn assert_act_1(out: &Finished) {
    let writer = out.pid_of("writer");
    let reader = out.pid_of("reader");
    assert_in_order(
        out,
        &[
            r#"sent "hello" (5 bytes): 1 in the queue"#,
            "(36 bytes): 2 in the queue",
            r#"sent "bye!" (4 bytes): 3 in the queue"#,
            "sent the end marker (a zero-length message): 4 in the queue",
            &format!("reaped writer {writer}: exited with status 0"),
            "no reader exists yet, but the queue holds 4 messages",
            &format!("[reader {reader}] forked only now"),
            r#"received "hello" (5 bytes): the kernel deleted it from the queue, 3 left"#,
            "(36 bytes): the kernel deleted it from the queue, 2 left",
            r#"received "bye!" (4 bytes): the kernel deleted it from the queue, 1 left"#,
            "received the end marker (0 bytes): the writer is done; 0 in the queue",
            "receives of exactly [5, 36, 4] bytes",
        ],
    );
    for role in ["writer", "reader"] {
        let summary = out.summary(role);
        assert!(summary.ok);
        assert_eq!(summary.num("messages"), 3.0);
        assert_eq!(summary.num("bytes"), 45.0);
    }
}

#[test]
fn posix_narrated_run_shows_every_claim() {
    let out = run_narrated(Flavour::Posix, &[]);
    assert_act_1(&out);

    // Act 2: highest priority first; one byte over mq_msgsize refused.
    assert_in_order(
        &out,
        &[
            r#"received "priority 9, sent second" (priority 9)"#,
            r#"received "priority 5, sent third" (priority 5)"#,
            r#"received "priority 5, sent last" (priority 5)"#,
            r#"received "priority 1, sent first" (priority 1)"#,
            "the two of equal priority 5 came out first in, first out",
        ],
    );
    let too_big = largest_message(Flavour::Posix) + 1;
    let refused = out.lines_with("failed with EMSGSIZE");
    assert!(
        refused.len() == 1 && refused[0].contains(&format!("a message of {too_big} bytes")),
        "{}",
        out.stdout
    );
    assert!(refused[0].contains("nothing was queued (4 in the queue)"));

    // Act 3: the 11th message waits; the reader saw the writer asleep before it woke.
    let msg_max = kernel_limit("/proc/sys/fs/mqueue/msg_max");
    out.assert_stdout_contains(&format!("the queue is full ({msg_max} of {msg_max})"));
    let asleep = out.lines_with("is asleep in the kernel");
    assert!(
        asleep.len() == 1 && asleep[0].contains("wq_sleep"),
        "{}",
        out.stdout
    );
    assert_in_order(
        &out,
        &[
            "the queue is full",
            "is asleep in the kernel",
            "woke up: message",
        ],
    );
    out.assert_stdout_contains(&format!(
        "received the other {msg_max} messages: 0 in the queue"
    ));

    // Act 4: two announcements by SIGUSR1, re-armed in between.
    assert_eq!(out.lines_with("SIGUSR1: a message arrived").len(), 2);
    // The reader's own story, in its order...
    assert_in_order(
        &out,
        &[
            "registered with mq_notify",
            "SIGUSR1: a message arrived",
            "re-armed mq_notify before reading",
            r#"received "you have mail" without waiting"#,
            r#"received "and more mail" without waiting"#,
            "not re-arming",
        ],
    );
    // ...and the writer sent each message only once the reader waited, registered,
    // with the queue empty. (Its "sent" lines may come before or after the reader's
    // wake-up: both run at once from then on.)
    let waits = out.lines_with("waits in sigsuspend, not in the queue");
    assert_eq!(waits.len(), 2, "{}", out.stdout);
    assert_in_order(
        &out,
        &[
            "registered with mq_notify",
            "waits in sigsuspend",
            r#"sent "you have mail""#,
        ],
    );
    let second_wait = out
        .stdout
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("waits in sigsuspend"))
        .nth(1)
        .unwrap()
        .0;
    assert!(out.line_index(r#"received "you have mail""#) < second_wait);
    assert!(second_wait < out.line_index(r#"sent "and more mail""#));
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap()
            .contains("removed queue /msgq-demo-")
    );
}

#[test]
fn sysv_narrated_run_shows_every_claim() {
    let out = run_narrated(Flavour::Sysv, &[]);
    assert_act_1(&out);

    // Act 2: type 2 asked for by number, then the lowest types first.
    assert_in_order(
        &out,
        &[
            r#"sent "type 1, sent first" as type 1"#,
            r#"sent "type 2, sent last" as type 2"#,
            r#"msgrcv(msgtyp 2) took "type 2, sent last""#,
            r#"msgrcv(msgtyp -3) took "type 1, sent first""#,
            r#"msgrcv(msgtyp -3) took "type 3, sent second""#,
        ],
    );
    let too_big = largest_message(Flavour::Sysv) + 1;
    let refused = out.lines_with("failed with EINVAL");
    assert!(
        refused.len() == 1 && refused[0].contains(&format!("a message of {too_big} bytes")),
        "{}",
        out.stdout
    );

    // Act 3: msgmnb bytes fill the queue; the writer sleeps in do_msgsnd.
    let asleep = out.lines_with("is asleep in the kernel");
    assert!(
        asleep.len() == 1 && asleep[0].contains("do_msgsnd"),
        "{}",
        out.stdout
    );
    assert_in_order(
        &out,
        &["the queue is full", "is asleep in the kernel", "woke up"],
    );

    // Act 4: no notification, but a receive that does not wait.
    out.assert_stdout_contains("IPC_NOWAIT on the empty queue: ENOMSG");
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap()
            .contains("with msgctl(IPC_RMID)")
    );
}

#[test]
fn narrated_runs_carry_your_messages_whole() {
    for flavour in BOTH {
        let out = run_narrated(flavour, &["first one", "two\nlines", "ünï ✓"]);
        let received: Vec<&str> = out
            .lines_with("[reader ")
            .into_iter()
            .filter(|l| l.contains("] received \""))
            .take(3)
            .collect();
        assert!(
            received[0].contains(r#"received "first one" (9 bytes)"#),
            "{received:?}"
        );
        // A newline is just a byte inside a message: no line framing here.
        assert!(
            received[1].contains(r#"received "two\nlines" (9 bytes)"#),
            "{received:?}"
        );
        assert!(received[2].contains("ünï ✓"), "{received:?}");
        assert_eq!(out.summary("writer").num("messages"), 3.0);
    }
}

#[test]
fn the_narrated_run_uses_the_name_or_key_given() {
    for queue in both_queues(104) {
        let flavour = queue.flavour;
        let mut args = queue.args();
        args.extend(["--ping", "20"].map(String::from));
        let out = start(&args).finish();
        out.assert_success();
        queue.assert_gone();
        match flavour {
            Flavour::Posix => {
                // Ping's second queue is named after the first.
                let reply = format!("{}-reply", queue.name);
                out.assert_stdout_contains(&format!("created queue {}:", queue.name))
                    .assert_stdout_contains(&format!("created queue {reply}:"));
                assert!(posix_count(&reply).is_none(), "{reply} was left behind");
            }
            Flavour::Sysv => {
                out.assert_stdout_contains(&format!("msgget(key {:#x},", queue.key));
            }
        }
        assert!(!out.stdout.contains("/msgq-demo-"), "{}", out.stdout);
        assert!(!out.stdout.contains("key 0x6d"), "{}", out.stdout);
        assert_eq!(out.summary("writer").num("messages"), 20.0);
    }
}

// ---------------------------------------------------------------------------------
// Reader and writer as two processes.

/// Starts `reader` for `queue` with `rest`, and waits until its queue exists.
fn start_reader(queue: &Queue, rest: &[&str]) -> Demo {
    let mut reader = start(&command("reader", queue, rest));
    reader.wait_for_line("waiting for");
    assert!(
        queue.exists(),
        "the reader said it waits, but there is no queue"
    );
    reader
}

#[test]
fn the_writer_exits_before_the_reader_reads_a_thing() {
    for queue in both_queues(10) {
        let flavour = queue.flavour;
        let reader = start_reader(&queue, &[]);
        // Freeze the reader: now only the kernel can keep the messages.
        freeze(reader.pid());
        let writer = if flavour == Flavour::Posix {
            start(&command("writer", &queue, &["one", "two three", "4"])).finish()
        } else {
            // The writer sends each line of its standard input; empty lines are skipped
            // (a zero-length message means the end).
            start_with_stdin(&command("writer", &queue, &[]), b"one\n\ntwo three\n4\n").finish()
        };
        writer.assert_success();
        assert_eq!(writer.summary("writer").num("messages"), 3.0);
        assert_eq!(
            queue.count(),
            Some(4),
            "3 messages and the end marker should wait in the kernel"
        );
        signal(reader.pid(), Signal::SIGCONT);
        let out = reader.finish();
        out.assert_success();
        queue.assert_gone();
        assert_in_order(
            &out,
            &[
                r#"received "one" (3 bytes)"#,
                r#"received "two three" (9 bytes)"#,
                r#"received "4" (1 bytes)"#,
                "received the end marker",
                "receives of exactly [3, 9, 1] bytes",
            ],
        );
        let summary = out.summary("reader");
        assert_eq!((summary.num("messages"), summary.num("bytes")), (3.0, 13.0));
        assert!(out.stdout.lines().last().unwrap().contains("summary:"));
    }
}

#[test]
fn the_writer_sends_lines_of_standard_input_as_bytes_even_if_not_utf8() {
    for queue in both_queues(100) {
        let reader = start_reader(&queue, &[]);
        let writer = start_with_stdin(&command("writer", &queue, &[]), b"abc\n\xff\xfe\n");
        let writer = writer.finish();
        writer.assert_success();
        assert_eq!(writer.summary("writer").num("messages"), 2.0);
        let out = reader.finish();
        out.assert_success();
        queue.assert_gone();
        // The reader shows bytes that are not UTF-8 as U+FFFD, but counts them all.
        assert_in_order(
            &out,
            &[
                r#"received "abc" (3 bytes)"#,
                "received \"\u{fffd}\u{fffd}\" (2 bytes)",
                "receives of exactly [3, 2] bytes",
            ],
        );
        let summary = out.summary("reader");
        assert_eq!((summary.num("messages"), summary.num("bytes")), (2.0, 5.0));
    }
}

#[test]
fn a_writer_failing_mid_stream_still_ends_the_reader() {
    for queue in both_queues(102) {
        let flavour = queue.flavour;
        let reader = start_reader(&queue, &[]);
        // A line one byte longer than a message may be: the writer cannot send it.
        let too_long = largest_message(flavour) + 1;
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', too_long));
        input.extend(b"\nnever sent\n");
        let writer = start_with_stdin(&command("writer", &queue, &[]), &input).finish();
        // The line is refused as it is read, once it passes the largest message
        // (tests/tests/flood.rs: an endless one), before any send is tried.
        writer
            .assert_exit_code(1)
            .assert_stderr_contains(&format!(
                "a line longer than {} bytes, the most a message of this queue holds",
                too_long - 1
            ))
            .assert_stdout_contains("sent the end marker after all");
        assert!(
            writer.stderr.len() < 400,
            "the error should not quote the whole line: {}",
            writer.stderr
        );
        // The end marker came, so the reader stops by itself (finish would time out).
        let out = reader.finish();
        out.assert_success();
        queue.assert_gone();
        assert_eq!(out.summary("reader").num("messages"), 1.0);
        assert!(!out.stdout.contains("never sent"), "{}", out.stdout);
    }
}

/// Starts a reader expecting `count` messages, stops it (SIGSTOP), and starts a writer
/// that fills the queue and falls asleep on it. Returns both, and how many messages
/// the queue holds now.
fn writer_asleep_on_a_full_queue(queue: &Queue, count: u64) -> (Demo, Demo, u64) {
    let (size, capacity) = match queue.flavour {
        Flavour::Posix => (100, kernel_limit("/proc/sys/fs/mqueue/msg_max") as u64),
        Flavour::Sysv => {
            let msgmax = largest_message(Flavour::Sysv) as u64;
            (
                msgmax,
                kernel_limit("/proc/sys/kernel/msgmnb") as u64 / msgmax,
            )
        }
    };
    assert!(count > capacity);
    let (count, size) = (count.to_string(), size.to_string());
    let workload = ["--count", count.as_str(), "--size", size.as_str()];
    let reader = start_reader(queue, &workload);
    freeze(reader.pid()); // no reader at work
    let writer = start(&command("writer", queue, &workload));
    wait_until_asleep_in(writer.pid(), queue.send_wchan());
    assert_eq!(
        queue.count(),
        Some(capacity),
        "the writer sleeps on a full queue"
    );
    (reader, writer, capacity)
}

#[test]
fn a_full_queue_puts_the_writer_to_sleep_until_the_reader_takes_one() {
    for queue in both_queues(20) {
        let flavour = queue.flavour;
        let count = match flavour {
            Flavour::Posix => 12,
            Flavour::Sysv => 4,
        };
        let (reader, writer, _) = writer_asleep_on_a_full_queue(&queue, count);
        signal(reader.pid(), Signal::SIGCONT);
        writer.finish().assert_success();
        let out = reader.finish();
        out.assert_success();
        queue.assert_gone();
        assert_eq!(out.summary("reader").num("messages"), count as f64);
    }
}

#[test]
fn a_writer_asleep_on_a_full_queue_notices_when_the_reader_removes_it() {
    for queue in both_queues(22) {
        let (reader, writer, _) = writer_asleep_on_a_full_queue(&queue, 1000);
        // Ctrl+C for the reader, delivered as soon as it runs again.
        signal(reader.pid(), Signal::SIGINT);
        signal(reader.pid(), Signal::SIGCONT);
        reader
            .finish()
            .assert_killed_by(Signal::SIGINT)
            .assert_stdout_contains("interrupted by SIGINT: removed queue");
        writer
            .finish()
            .assert_exit_code(1)
            .assert_stderr_contains("was removed while I waited: its reader is gone");
        queue.assert_gone();
    }
}

#[test]
fn bulk_moves_every_byte_of_8_kib_messages_in_order() {
    for flavour in BOTH {
        let size = largest_message(flavour).min(8192).to_string();
        let out = run_narrated(flavour, &["--count", "2000", "--size", &size]);
        for role in ["writer", "reader"] {
            let summary = out.summary(role);
            assert!(summary.ok, "{}", summary.line);
            assert_eq!(summary.num("messages"), 2000.0);
            assert_eq!(summary.num("bytes"), 2000.0 * size.parse::<f64>().unwrap());
            summary.assert_throughput_consistent();
        }
    }
}

#[test]
fn bulk_between_two_processes_checks_every_message() {
    for queue in both_queues(30) {
        let workload = ["--count", "300", "--size", "8192"];
        let reader = start_reader(&queue, &workload);
        let writer = start(&command("writer", &queue, &workload)).finish();
        writer.assert_success();
        let out = reader.finish();
        out.assert_success();
        queue.assert_gone();
        assert_eq!(out.summary("reader").num("bytes"), 300.0 * 8192.0);
    }
}

#[test]
fn a_corrupted_missing_or_wrong_sized_message_fails_the_reader() {
    let good = bulk_message(0, 8192);
    let mut corrupted = good.clone();
    corrupted[5000] ^= 0x40;
    let cases: [(u8, Flavour, Vec<u8>, &str); 4] = [
        (
            40,
            Flavour::Posix,
            corrupted.clone(),
            "message 0, byte 5000",
        ),
        (41, Flavour::Sysv, corrupted, "message 0, byte 5000"),
        (
            42,
            Flavour::Posix,
            bulk_message(1, 8192),
            "sequence number 1",
        ),
        (
            43,
            Flavour::Sysv,
            bulk_message(0, 100),
            "message 0 is 100 bytes, expected 8192",
        ),
    ];
    for (tag, flavour, bad, complaint) in cases {
        let queue = Queue::new(flavour, tag);
        let reader = start_reader(&queue, &["--count", "3", "--size", "8192"]);
        queue.inject(&bad);
        let out = reader.finish();
        out.assert_exit_code(1).assert_stderr_contains(complaint);
        queue.assert_gone();
    }
    // And the good message passes the same check, so the failures above are the data's.
    let queue = Queue::new(Flavour::Posix, 44);
    let reader = start_reader(&queue, &["--count", "1", "--size", "8192"]);
    queue.inject(&good);
    queue.inject(b"");
    reader.finish().assert_success();
    queue.assert_gone();
}

#[test]
fn ping_reports_round_trip_percentiles() {
    for flavour in BOTH {
        let out = run_narrated(flavour, &["--ping", "300", "--size", "64"]);
        let summary = out.summary("writer");
        assert_eq!(summary.num("messages"), 300.0);
        assert_eq!(summary.num("bytes"), 300.0 * 64.0);
        let (p50, p99) = (summary.num("rtt_p50_us"), summary.num("rtt_p99_us"));
        assert!(p50 > 0.0 && p50 <= p99, "{}", summary.line);
        assert_eq!(out.summary("reader").num("messages"), 300.0);
    }
}

#[test]
fn ping_between_two_processes() {
    for queue in both_queues(50) {
        let flavour = queue.flavour;
        let reader = start_reader(&queue, &["--ping", "200"]);
        let writer = start(&command("writer", &queue, &["--ping", "200"])).finish();
        writer.assert_success();
        assert!(writer.summary("writer").num("rtt_p99_us") > 0.0);
        let out = reader.finish();
        out.assert_success();
        queue.assert_gone();
        if flavour == Flavour::Posix {
            assert!(posix_count(&format!("{}-reply", queue.name)).is_none());
        }
        assert_eq!(out.summary("reader").num("bytes"), 200.0 * 100.0);
    }
}

// ---------------------------------------------------------------------------------
// Mistakes, limits and failures.

#[test]
fn bad_usage_exits_2_names_the_problem_and_creates_nothing() {
    let queue = Queue::new(Flavour::Posix, 60);
    let name = queue.name.as_str();
    let sysv = Queue::new(Flavour::Sysv, 61);
    let key = format!("{:#x}", sysv.key);
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "--bogus"),
        (&["--count"], "--count needs a value"),
        (&["--count", "ten", "--size", "1"], "ten"),
        (&["--count", "3"], "--size"),
        (&["--size", "3"], "--size goes with"),
        (&["--ping", "3", "--count", "3", "--size", "1"], "pick one"),
        (&["hello", "--ping", "3"], "do not mix"),
        (
            &["reader", "--name", name, "hello"],
            "the reader takes no messages",
        ),
        (&["writer", "hello"], "the writer needs --name"),
        (&["writer", "sysv", "hello"], "the writer needs --key"),
        (
            &["reader", "sysv", "--name", name],
            "--name names a POSIX queue",
        ),
        (&["reader", "--key", &key], "--key finds a System V queue"),
        (&["reader", "sysv", "--key", "0"], "IPC_PRIVATE"),
        (
            &["reader", "--name", "no-slash"],
            "a POSIX queue name is '/'",
        ),
        (&["writer", "--name", name, ""], "end marker"),
        (
            &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"],
            "send fewer",
        ),
    ];
    for (args, needle) in cases {
        let out = run(DEMO, args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        assert!(
            out.stdout.is_empty(),
            "bad usage must do nothing: {}",
            out.stdout
        );
        Queue::of_default_run(Flavour::Posix, out.pid).assert_gone();
    }
    queue.assert_gone();
    sysv.assert_gone();
}

#[test]
fn a_message_one_byte_over_the_limit_is_bad_usage_and_creates_nothing() {
    for queue in both_queues(62) {
        let flavour = queue.flavour;
        let limit = largest_message(flavour);
        let over = (limit + 1).to_string();
        let long = "x".repeat(limit + 1);
        let word = flavour_word(flavour);
        let runs: [Vec<String>; 4] = [
            vec![
                word.into(),
                "--count".into(),
                "2".into(),
                "--size".into(),
                over.clone(),
            ],
            command("reader", &queue, &["--count", "1", "--size", &over]),
            command("reader", &queue, &["--ping", "1", "--size", &over]),
            vec![word.into(), long],
        ];
        for args in runs {
            let out = start(&args).finish();
            out.assert_exit_code(2)
                .assert_stderr_contains(&format!("at most {limit} bytes"));
            assert!(out.stdout.is_empty());
            queue.assert_gone();
            Queue::of_default_run(flavour, out.pid).assert_gone();
        }
    }
}

#[test]
fn help_prints_the_usage() {
    run(DEMO, &["--help"])
        .assert_success()
        .assert_stdout_contains("usage: msgq-demo");
}

#[test]
fn a_writer_with_no_queue_says_to_start_the_reader_first() {
    for queue in both_queues(70) {
        let out = start(&command("writer", &queue, &["hello"])).finish();
        out.assert_exit_code(1)
            .assert_stderr_contains("no queue")
            .assert_stderr_contains("start the reader first (msgq-demo reader");
        queue.assert_gone();
    }
}

#[test]
fn ctrl_c_while_the_reader_waits_removes_the_queue() {
    for queue in both_queues(80) {
        let reader = start_reader(&queue, &[]);
        wait_until_asleep_in(reader.pid(), queue.receive_wchan());
        reader.signal_group(Signal::SIGINT);
        let out = reader.finish();
        out.assert_killed_by_after_reaping(Signal::SIGINT)
            .assert_stdout_contains("interrupted by SIGINT: removed queue");
        queue.assert_gone();
    }
}

/// Starts a narrated bulk run too long to finish by itself; returns it with the
/// reader's and the writer's pids once both run, and its queue.
fn start_endless_bulk(flavour: Flavour) -> (Demo, i32, i32, Queue) {
    let mut demo = Demo::start(
        DEMO,
        &[
            flavour_word(flavour),
            "--count",
            "100000000",
            "--size",
            "1000",
        ],
    );
    let line = demo.wait_for_line("forked reader");
    let (reader, writer) = (
        number_after(&line, "reader ") as i32,
        number_after(&line, "writer ") as i32,
    );
    let queue = Queue::of_default_run(flavour, demo.pid());
    (demo, reader, writer, queue)
}

#[test]
fn ctrl_c_during_a_narrated_run_stops_everyone_and_removes_the_queue() {
    for flavour in BOTH {
        let (demo, reader, writer, queue) = start_endless_bulk(flavour);
        demo.signal_group(Signal::SIGINT);
        let out = demo.finish();
        out.assert_killed_by_after_reaping(Signal::SIGINT)
            .assert_stdout_contains("interrupted by SIGINT: removed queue");
        assert!(!process_exists(reader) && !process_exists(writer));
        queue.assert_gone();
    }
}

/// Puts one child of a narrated bulk run asleep on the queue, as `blocked` says: the
/// writer on a full queue (it outruns the reader by itself), or the reader on an empty
/// one (the writer stopped, so it sends no more).
fn put_asleep(blocked: &str, reader: i32, writer: i32, queue: &Queue) {
    match blocked {
        "writer" => wait_until_asleep_in(writer, queue.send_wchan()),
        _ => {
            freeze(writer);
            wait_until_asleep_in(reader, queue.receive_wchan());
        }
    }
}

#[test]
fn a_killed_child_is_noticed_and_its_partner_stopped() {
    for flavour in BOTH {
        // The victim dies while its partner sleeps: the writer on a full queue, the
        // reader on an empty one.
        for (victim, blocked) in [("reader", "writer"), ("writer", "reader")] {
            let (demo, reader, writer, queue) = start_endless_bulk(flavour);
            put_asleep(blocked, reader, writer, &queue);
            let (dead, partner) = match victim {
                "reader" => (reader, writer),
                _ => (writer, reader),
            };
            signal(dead, Signal::SIGKILL);
            let out = demo.finish();
            out.assert_exit_code(1)
                .assert_stderr_contains(&format!("the {victim} (pid {dead}) was killed by SIGKILL"))
                .assert_stdout_contains(&format!("stopping the {blocked} {partner} with SIGTERM"))
                .assert_stdout_contains(&format!("reaped {blocked} {partner}: killed by SIGTERM"));
            queue.assert_gone();
        }
    }
}

#[test]
fn children_of_a_killed_parent_say_so_and_name_the_queue_it_left() {
    for flavour in BOTH {
        for blocked in ["writer", "reader"] {
            let (demo, reader, writer, queue) = start_endless_bulk(flavour);
            put_asleep(blocked, reader, writer, &queue);
            let parent = demo.pid();
            signal(parent, Signal::SIGKILL);
            if blocked == "reader" {
                // The stopped writer takes its SIGTERM once it runs again.
                wait_until("the parent is dead", || {
                    matches!(proc_state(parent), Some(('Z', _)) | None)
                });
                signal(writer, Signal::SIGCONT);
            }
            let out = demo.finish();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&out.status),
                Some(Signal::SIGKILL as i32)
            );
            // The kernel sends them SIGTERM when the parent dies (PR_SET_PDEATHSIG):
            // each says so and exits 1, by itself.
            let mut orphans = reap_orphans_with_status(parent);
            orphans.sort_unstable_by_key(|&(pid, _)| pid);
            let mut children = [reader, writer];
            children.sort_unstable();
            let exited_1: Vec<_> = children
                .iter()
                .map(|&pid| (pid, WaitStatus::Exited(Pid::from_raw(pid), 1)))
                .collect();
            assert_eq!(orphans, exited_1, "{}", out.stderr);
            let said = format!("the parent (pid {parent}) died without cleaning up");
            assert_eq!(out.stderr.matches(&said).count(), 2, "{}", out.stderr);
            // SIGKILL gave the owner no chance to remove its queue: both name it.
            assert!(queue.exists(), "a SIGKILLed owner cannot remove its queue");
            assert_names_the_removal(&out, &queue);
            remove_as_told(&queue);
        }
    }
}

/// Asserts that `out` names `queue` with the command that removes it.
fn assert_names_the_removal(out: &Finished, queue: &Queue) {
    match queue.flavour {
        Flavour::Posix => {
            out.assert_stderr_contains(&format!("`rm /dev/mqueue{}`", queue.name));
        }
        Flavour::Sysv => {
            let (id, _) = sysv_entry(queue.key).expect("the queue is left behind");
            out.assert_stderr_contains(&format!("`ipcrm -q {id}`"));
        }
    }
}

/// Removes a queue left behind, with the very command the demo named where the tool
/// is installed (System V: ipcrm), else directly; then checks it is gone.
fn remove_as_told(queue: &Queue) {
    if let (Flavour::Sysv, Some((id, _))) = (queue.flavour, sysv_entry(queue.key)) {
        let _ = std::process::Command::new("sh")
            .args(["-c", &format!("ipcrm -q {id}")])
            .stderr(std::process::Stdio::null())
            .status();
    }
    queue.remove(); // whatever is left (POSIX: no /dev/mqueue here to rm from)
    queue.assert_gone();
}

#[test]
fn a_queue_left_by_a_killed_reader_is_named_with_the_command_that_removes_it() {
    for queue in both_queues(90) {
        let reader = start_reader(&queue, &[]);
        reader.signal_group(Signal::SIGKILL);
        reader.finish().assert_killed_by(Signal::SIGKILL);
        assert!(queue.exists(), "SIGKILL leaves the queue behind");

        let out = start(&command("reader", &queue, &[])).finish();
        out.assert_exit_code(1)
            .assert_stderr_contains("already exists");
        assert_names_the_removal(&out, &queue);
        remove_as_told(&queue);
    }
}

// ---------------------------------------------------------------------------------
// A peer killed by SIGKILL (no guard runs): the survivor notices while it waits.

/// A field of the System V queue with `key` in /proc/sysvipc/msg (1: msqid, 4: qnum,
/// 6: lrpid).
fn sysv_field(key: i32, field: usize) -> Option<i64> {
    let table = std::fs::read_to_string("/proc/sysvipc/msg").expect("/proc/sysvipc/msg");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // The key is printed as a signed decimal.
        (f.first()?.parse::<i64>().ok()? == i64::from(key)).then(|| f.get(field)?.parse().ok())?
    })
}

/// Kills `reader` with SIGKILL and checks that `writer`, asleep on the queue, notices:
/// status 1, the reader named dead, the queue it left named with its removal command.
fn kill_the_reader_and_hear_the_writer(reader: Demo, writer: Demo, queue: &Queue) {
    reader.signal_group(Signal::SIGKILL);
    reader.finish().assert_killed_by(Signal::SIGKILL);
    let out = writer.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains("died without removing");
    assert!(queue.exists(), "SIGKILL leaves the queue behind");
    assert_names_the_removal(&out, queue);
    remove_as_told(queue);
}

#[test]
fn a_writer_asleep_on_a_full_queue_notices_its_reader_was_killed() {
    for queue in both_queues(110) {
        let (reader, writer) = match queue.flavour {
            // POSIX: the reader's lock is there from the start, a frozen reader will do.
            Flavour::Posix => {
                let (reader, writer, _) = writer_asleep_on_a_full_queue(&queue, 1000);
                (reader, writer)
            }
            // System V knows the reader by msg_lrpid, set by its first receive.
            Flavour::Sysv => {
                let workload = ["--count", "100000000", "--size", "100"];
                let reader = start_reader(&queue, &workload);
                let writer = start(&command("writer", &queue, &workload));
                let pid = i64::from(reader.pid());
                wait_until("the reader has received", || {
                    sysv_field(queue.key, 6) == Some(pid)
                });
                wait_until_asleep_in(writer.pid(), queue.send_wchan());
                (reader, writer)
            }
        };
        kill_the_reader_and_hear_the_writer(reader, writer, &queue);
    }
}

#[test]
fn a_ping_writer_waiting_for_its_reply_notices_its_reader_was_killed() {
    for queue in both_queues(116) {
        let reader = start_reader(&queue, &["--ping", "100000000"]);
        let writer = start(&command("writer", &queue, &["--ping", "100000000"]));
        // Stopped, the reader answers no more: the writer sleeps on the empty reply queue.
        let pid = reader.pid();
        match queue.flavour {
            Flavour::Posix => wait_until("the reply queue exists", || {
                posix_count(&format!("{}-reply", queue.name)).is_some()
            }),
            Flavour::Sysv => wait_until("the reader has received", || {
                sysv_field(queue.key, 6) == Some(i64::from(pid))
            }),
        }
        freeze(pid);
        wait_until_asleep_in(writer.pid(), queue.receive_wchan());
        kill_the_reader_and_hear_the_writer(reader, writer, &queue);
    }
}

/// Starts a text writer whose standard input stays open, so it waits for more lines
/// after those in `input`; its output goes nowhere. Returns it and its stdin.
fn writer_on_open_stdin(
    queue: &Queue,
    input: &[u8],
) -> (std::process::Child, std::process::ChildStdin) {
    prepare_test_process();
    let mut writer = std::process::Command::new(demo_bin(DEMO))
        .args(command("writer", queue, &[]))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let mut stdin = writer.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, input).expect("write to the writer");
    (writer, stdin)
}

#[test]
fn a_reader_waiting_on_an_empty_queue_notices_its_writer_was_killed() {
    for queue in both_queues(112) {
        let mut reader = start_reader(&queue, &[]);
        let (mut writer, stdin) = writer_on_open_stdin(&queue, b"hello\n");
        reader.wait_for_line("received \"hello\"");
        wait_until_asleep_in(reader.pid(), queue.receive_wchan());
        writer.kill().expect("SIGKILL the writer");
        writer.wait().expect("reap the writer");
        drop(stdin);
        let out = reader.finish();
        out.assert_exit_code(1)
            .assert_stderr_contains("the writer")
            .assert_stderr_contains("died before its end marker")
            .assert_stdout_contains("removed queue");
        queue.assert_gone();
    }
}

/// How often `pid` has been switched out, as /proc/PID/status counts it: a process
/// asleep that nothing wakes keeps the same count.
fn context_switches(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| {
            l.rsplit(char::is_whitespace)
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

#[test]
fn a_writer_that_slept_on_a_full_queue_is_left_alone_afterwards() {
    // Row 13 of the review: System V waits are bounded by a SIGALRM timer; it must be
    // disarmed once the call returns, or every later blocking call of the process (here
    // the read of standard input) is interrupted five times a second.
    for queue in both_queues(118) {
        let size = largest_message(queue.flavour);
        let capacity = match queue.flavour {
            Flavour::Posix => kernel_limit("/proc/sys/fs/mqueue/msg_max"),
            Flavour::Sysv => kernel_limit("/proc/sys/kernel/msgmnb") / size,
        };
        let mut line = vec![b'x'; size];
        line.push(b'\n');
        let lines = line.repeat(capacity + 1);
        let reader = start_reader(&queue, &[]);
        freeze(reader.pid());
        let (mut writer, stdin) = writer_on_open_stdin(&queue, &lines);
        let pid = writer.id() as i32;
        wait_until_asleep_in(pid, queue.send_wchan()); // the last line waits for room
        signal(reader.pid(), Signal::SIGCONT);
        wait_until_asleep_in(pid, "pipe_read"); // sent it; now waits for more input
        let before = context_switches(pid);
        // Not a wait for a condition: a window in which an armed 200 ms ticker would
        // have woken the writer about five times, and nothing else can.
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            context_switches(pid),
            before,
            "{:?}: something woke the writer while it waited on its stdin",
            queue.flavour
        );
        assert!(matches!(proc_state(pid), Some(('S', w)) if w.contains("pipe_read")));
        drop(stdin); // EOF: the writer sends the end marker and exits
        assert!(writer.wait().expect("reap the writer").success());
        let out = reader.finish();
        out.assert_success();
        assert_eq!(out.summary("reader").num("messages"), (capacity + 1) as f64);
        queue.assert_gone();
    }
}

#[test]
fn non_utf8_argv_and_help_into_a_closed_pipe_do_not_panic() {
    use std::os::unix::ffi::OsStrExt;
    let out = std::process::Command::new(demo_bin(DEMO))
        .arg(std::ffi::OsStr::from_bytes(b"\xff"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "non-UTF-8 argv is bad usage");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid UTF-8"));
    let (read, write) = std::io::pipe().expect("pipe");
    drop(read);
    let status = std::process::Command::new(demo_bin(DEMO))
        .arg("--help")
        .stdout(write)
        .status()
        .expect("run");
    assert_eq!(status.code(), Some(0), "--help into a closed pipe");
}

#[test]
fn sighup_while_the_reader_waits_removes_the_queue() {
    for queue in both_queues(114) {
        let reader = start_reader(&queue, &[]);
        wait_until_asleep_in(reader.pid(), queue.receive_wchan());
        signal(reader.pid(), Signal::SIGHUP);
        reader
            .finish()
            .assert_killed_by(Signal::SIGHUP)
            .assert_stdout_contains("interrupted by SIGHUP: removed queue");
        queue.assert_gone();
    }
}

#[test]
fn the_parent_waits_for_its_own_children_only() {
    // Review row 16: `waitpid(-1)` reaps any child, and loses the status of one a host
    // program made. Here the demo inherits such a child: the shell forks `sleep`, then
    // becomes the demo by exec, so the demo is that sleep's parent without knowing.
    prepare_test_process();
    let mut demo = std::process::Command::new("sh")
        .args([
            "-c",
            "sleep 1000 & echo $!; exec \"$0\" sysv --count 100000000 --size 1000",
        ])
        .arg(demo_bin(DEMO))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let pgid = demo.id() as i32;
    let queue = Queue::of_default_run(Flavour::Sysv, pgid); // removed if we fail
    let stdout = demo.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut next_line = || lines.next().expect("a line").expect("read a line");
    let sleeper: i32 = next_line().trim().parse().expect("the sleep's pid");
    while !next_line().contains("forked reader") {}
    // The inherited child dies while the demo waits for its two children.
    signal(sleeper, Signal::SIGKILL);
    wait_until(
        "the inherited child is dead",
        || !matches!(proc_state(sleeper), Some((state, _)) if state != 'Z'),
    );
    nix::sys::signal::killpg(Pid::from_raw(pgid), Signal::SIGINT).expect("killpg");
    std::thread::spawn(move || while lines.next().is_some() {}); // never a full pipe
    let status = demo.wait().expect("wait for the demo");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(Signal::SIGINT as i32)
    );
    queue.assert_gone();
    // Not reaped by the demo: its zombie came to us (the subreaper) when the demo exited.
    assert_eq!(
        nix::sys::wait::waitpid(Pid::from_raw(sleeper), None),
        Ok(WaitStatus::Signaled(
            Pid::from_raw(sleeper),
            Signal::SIGKILL,
            false
        )),
        "the demo reaped a child it did not make"
    );
}

// ---------------------------------------------------------------------------------
// The library half.

/// Issue 11: the narrated binary makes every queue call through the library modules
/// (`posix.rs`, `sysv.rs`), so the tests above exercise the code people copy. A call
/// made directly from a narration file would bypass it: no `libc::` at all there (the
/// library holds every FFI call) and no `mq_*` function imported from nix.
#[test]
fn the_narration_makes_no_queue_call_of_its_own() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../msgq-demo/src");
    let library = ["lib.rs", "posix.rs", "sysv.rs"];
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).expect("msgq-demo/src") {
        let path = entry.expect("a directory entry").path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.ends_with(".rs") || library.contains(&file.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            assert!(
                !code.contains("libc::"),
                "{file}:{}: an FFI call outside the library: {line}",
                n + 1
            );
        }
        // `use nix::mqueue::{...}` up to its `;`, which may span lines.
        for (at, _) in text.match_indices("nix::mqueue::") {
            let import = text[at..].split(';').next().unwrap_or_default();
            assert!(
                !import.contains("mq_"),
                "{file}: a queue call imported outside the library: {import}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} narration files found in {src:?}"
    );
}

// ---------------------------------------------------------------------------------
// Issue 12: the `poll` flavour, one reader poll(2)ing two POSIX queues at once.

/// The two queues a poll reader makes from `--name BASE`: BASE-a and BASE-b.
fn poll_queues(base: &str) -> [Queue; 2] {
    ["a", "b"].map(|end| Queue {
        flavour: Flavour::Posix,
        name: format!("{base}-{end}"),
        key: 0,
    })
}

/// `msgq-demo reader poll --name BASE`, once it polls both queues (both exist).
fn start_poll_reader(tag: u8) -> (Demo, String, [Queue; 2]) {
    let base = Queue::new(Flavour::Posix, tag).name.clone();
    let mut reader = start(&[
        "reader".into(),
        "poll".into(),
        "--name".into(),
        base.clone(),
    ]);
    reader.wait_for_line("polling both");
    let queues = poll_queues(&base);
    assert!(queues.iter().all(Queue::exists), "both queues exist");
    wait_until_asleep_in(reader.pid(), "poll");
    (reader, base, queues)
}

#[test]
fn poll_default_run_takes_whichever_queue_has_a_message() {
    let out = run(DEMO, &["poll"]);
    out.assert_success();
    let base = format!("/msgq-demo-{}", out.pid);
    out.assert_stdout_contains("300 ms deadline: it passed, both empty");
    // Each message taken from the queue it was sent to, right after it was sent while
    // the reader slept in poll on both (the writer saw that in /proc/PID/wchan).
    for (text, end) in [
        ("first, on queue b", "b"),
        ("then one on queue a", "a"),
        ("b again", "b"),
        ("a last time", "a"),
    ] {
        let queue = format!("{base}-{end}");
        assert_in_order(
            &out,
            &[
                &format!("sending \"{text}\" to {queue}"),
                &format!("received \"{text}\" ({} bytes) from {queue}", text.len()),
            ],
        );
    }
    assert_in_order(
        &out,
        &[
            "asleep in poll",
            &format!("sending \"first, on queue b\" to {base}-b"),
            &format!("poll returned: {base}-b readable (POLLIN)"),
        ],
    );
    out.assert_stdout_contains(&format!("{base}-a: the end marker"))
        .assert_stdout_contains(&format!("{base}-b: the end marker"))
        .assert_stdout_contains("reaped writer");
    let summary = out.summary("reader");
    assert!(summary.ok, "{}", summary.line);
    assert_eq!(summary.num("messages"), 4.0);
    assert_eq!(summary.num("bytes"), (17 + 19 + 7 + 11) as f64);
    for queue in poll_queues(&base) {
        queue.assert_gone();
    }
}

/// Two terminals: the poll reader and two plain posix writers, one per queue; the
/// reader takes each message from the queue it went to, and ends after both ends.
#[test]
fn poll_reader_serves_two_posix_writers_one_per_queue() {
    let (reader, _, [a, b]) = start_poll_reader(130);
    run(DEMO, &strs(&command("writer", &b, &["hello"]))).assert_success();
    run(DEMO, &strs(&command("writer", &a, &["there"]))).assert_success();
    let out = reader.finish();
    out.assert_success()
        .assert_stdout_contains(&format!("received \"hello\" (5 bytes) from {}", b.name))
        .assert_stdout_contains(&format!("received \"there\" (5 bytes) from {}", a.name));
    assert_eq!(out.summary("reader").num("messages"), 2.0);
    a.assert_gone();
    b.assert_gone();
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn poll_ctrl_c_while_blocked_in_poll_removes_both_queues() {
    let (reader, _, queues) = start_poll_reader(131);
    reader.signal_group(Signal::SIGINT);
    let out = reader.finish();
    out.assert_killed_by_after_reaping(Signal::SIGINT);
    for queue in &queues {
        out.assert_stdout_contains(&format!(
            "interrupted by SIGINT: removed queue {}",
            queue.name
        ));
        queue.assert_gone();
    }
}

/// A writer SIGKILLed mid-stream (its lock on queue a vanishes with it): the reader,
/// asleep in poll, notices within a slice, exits 1 and removes both queues.
#[test]
fn poll_reader_notices_a_killed_writer() {
    let (mut reader, _, [a, b]) = start_poll_reader(132);
    let (mut writer, stdin) = writer_on_open_stdin(&a, b"hello\n");
    reader.wait_for_line("received \"hello\"");
    wait_until_asleep_in(reader.pid(), "poll");
    writer.kill().expect("SIGKILL the writer");
    writer.wait().expect("reap the writer");
    drop(stdin);
    let out = reader.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!("(its lock on queue {} is gone)", a.name))
        .assert_stdout_contains(&format!("removed queue {}", a.name))
        .assert_stdout_contains(&format!("removed queue {}", b.name));
    a.assert_gone();
    b.assert_gone();
}

/// The reader SIGKILLed (frozen first, so a writer fills queue a and sleeps on it):
/// the writer notices the reader's lock gone, exits 1, and names the command that
/// removes the queue the reader left.
#[test]
fn poll_writer_notices_its_reader_was_killed() {
    let (reader, _, [a, b]) = start_poll_reader(133);
    freeze(reader.pid());
    let many: Vec<String> = (0..kernel_limit("/proc/sys/fs/mqueue/msg_max") + 1)
        .map(|k| format!("m{k}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let writer = start(&command("writer", &a, &many));
    wait_until_asleep_in(writer.pid(), a.send_wchan());
    kill_the_reader_and_hear_the_writer(reader, writer, &a);
    remove_as_told(&b);
}

/// The default run's writer SIGKILLed: the reader is frozen after message m1, so the
/// writer, which sends only while the reader sleeps in poll, cannot finish first; then
/// the reader, thawed, notices within a slice that its child is gone, reaps it, exits
/// 1 and removes both queues.
#[test]
fn poll_default_run_notices_its_killed_writer() {
    let messages = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"];
    let mut args = vec!["poll"];
    args.extend(messages);
    let mut demo = Demo::start(DEMO, &args);
    let forked = demo.wait_for_line("forked writer");
    let writer = number_after(&forked, "forked writer ") as i32;
    demo.wait_for_line("received \"m1\"");
    let reader = demo.pid();
    freeze(reader);
    signal(writer, Signal::SIGKILL);
    wait_until("the writer is dead", || {
        matches!(proc_state(writer), Some(('Z', _)) | None)
    });
    signal(reader, Signal::SIGCONT);
    let out = demo.finish();
    out.assert_exit_code(1)
        .assert_stderr_contains(&format!("the writer (pid {writer}) is gone"))
        .assert_stdout_contains(&format!("reaped writer {writer}: killed by SIGKILL"));
    assert!(
        !out.stdout.contains("received \"m7\""),
        "the writer finished: {}",
        out.stdout
    );
    for queue in poll_queues(&format!("/msgq-demo-{reader}")) {
        queue.assert_gone();
    }
}

#[test]
fn poll_bad_usage_exits_2_and_creates_nothing() {
    for (args, needle) in [
        (
            vec!["writer", "poll", "--name", "/q", "hi"],
            "its writers are posix",
        ),
        (vec!["poll", "--key", "5"], "poll waits on POSIX queues"),
        (
            vec!["poll", "--count", "3", "--size", "10"],
            "text messages only",
        ),
        (vec!["reader", "poll", "--ping", "3"], "text messages only"),
    ] {
        let out = run(DEMO, &args);
        out.assert_exit_code(2)
            .assert_stderr_contains(needle)
            .assert_stderr_contains("usage:");
        assert!(
            out.stdout.is_empty(),
            "bad usage must do nothing: {}",
            out.stdout
        );
        for queue in poll_queues(&format!("/msgq-demo-{}", out.pid)) {
            queue.assert_gone();
        }
    }
    run(DEMO, &["--help"])
        .assert_success()
        .assert_stdout_contains("poll     two POSIX queues");
}
