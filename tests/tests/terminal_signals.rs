//! Every way a terminal ends a process, in every demo: SIGINT (Ctrl+C), SIGTERM
//! (`kill`) and SIGHUP (the terminal closed) each remove every kernel object the
//! demo made, whether it is a role asleep waiting for its peer or a default run busy
//! in a workload. One table for all demos (DESIGN §5, issue 9 "every way a terminal
//! ends a process"); each demo's own file tests its own ways out in more detail.
//!
//! The check after each run looks at the kernel, not at what the demo says: every
//! `/tmp/...` or `/dev/shm/...` path its output named must be gone, and so must its
//! System V keys (`/proc/sysvipc`) and POSIX queues (`mq_open`).

use ipc_tests::*;
use nix::sys::signal::Signal;

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// A kernel object a run names on its command line, to look for after it ended.
enum Object {
    /// A POSIX name under /dev/shm: a segment (`/NAME`) or, with `sem.`, a semaphore.
    /// Every entry starting with this prefix must be gone.
    ShmPrefix(String),
    PosixQueue(String),
    /// A System V key in /proc/sysvipc/TABLE (msg, shm, sem).
    SysvKey(&'static str, i32),
}

/// One run: a demo with its arguments (`{}` is replaced by a name unique to the
/// run), the output line after which it is waiting or busy, and what it owns.
struct Case {
    demo: &'static str,
    args: &'static [&'static str],
    ready: &'static str,
}

/// A name and a System V key that no other run of this test process uses.
fn unique(n: u32) -> (String, i32) {
    let me = std::process::id();
    (
        format!("/tsig{me}x{n}"),
        0x7e00_0000 | ((me as i32 & 0xffff) << 8) | n as i32,
    )
}

/// Runs `case` once per signal, checking after each that it ended by that signal,
/// said so, and left nothing.
fn ends_cleanly_on_each_signal(case: Case, objects: impl Fn(&str, i32) -> Vec<Object>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    for sig in SIGNALS {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (name, key) = unique(n);
        let key_text = format!("{key:#x}");
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| a.replace("{name}", &name).replace("{key}", &key_text))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut demo = Demo::start(case.demo, &args);
        demo.wait_for_line(case.ready);
        demo.signal_group(sig);
        let out = demo.finish();
        out.assert_killed_by(sig);
        if case.demo != "pipe-demo" {
            // pipe-demo alone keeps the signals' default action: its pipes have no
            // name and vanish with the processes, so it has nothing to clean up.
            out.assert_stdout_contains(sig.as_str());
        }
        for path in tmp_and_shm_paths_in(&out.stdout) {
            assert!(
                is_gone(&path),
                "{} {args:?}: {path} is left after {sig}:\n{}",
                case.demo,
                out.stdout
            );
        }
        for object in objects(&name, key) {
            assert_gone(&object, case.demo, &args, sig);
        }
    }
}

fn assert_gone(object: &Object, demo: &str, args: &[&str], sig: Signal) {
    match object {
        Object::ShmPrefix(prefix) => {
            let left: Vec<String> = std::fs::read_dir("/dev/shm")
                .expect("read /dev/shm")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.starts_with(prefix.as_str()))
                .collect();
            assert!(
                left.is_empty(),
                "{demo} {args:?}: /dev/shm still holds {left:?} after {sig}"
            );
        }
        Object::PosixQueue(name) => assert!(
            !posix_queue_exists(name),
            "{demo} {args:?}: queue {name} is left after {sig}"
        ),
        Object::SysvKey(table, key) => assert!(
            !sysv_keys(table).contains(key),
            "{demo} {args:?}: /proc/sysvipc/{table} still has key {key:#x} after {sig}"
        ),
    }
}

fn nothing(_: &str, _: i32) -> Vec<Object> {
    Vec::new()
}

fn shm_named(name: &str, _: i32) -> Vec<Object> {
    vec![Object::ShmPrefix(name[1..].to_string())]
}

fn sem_named(name: &str, _: i32) -> Vec<Object> {
    vec![Object::ShmPrefix(format!("sem.{}", &name[1..]))]
}

fn queue_named(name: &str, _: i32) -> Vec<Object> {
    vec![Object::PosixQueue(name.to_string())]
}

fn sysv_msg(_: &str, key: i32) -> Vec<Object> {
    vec![Object::SysvKey("msg", key)]
}

fn sysv_shm_and_sem(_: &str, key: i32) -> Vec<Object> {
    vec![Object::SysvKey("shm", key), Object::SysvKey("sem", key)]
}

fn sysv_sem(_: &str, key: i32) -> Vec<Object> {
    vec![Object::SysvKey("sem", key)]
}

// ---- a role asleep, waiting for its peer ----

#[test]
fn fifo_reader_waiting_in_open() {
    let case = Case {
        demo: "fifo-demo",
        args: &["reader"],
        ready: "opening",
    };
    ends_cleanly_on_each_signal(case, nothing);
}

#[test]
fn msgq_posix_reader_waiting_for_a_message() {
    let case = Case {
        demo: "msgq-demo",
        args: &["reader", "--name", "{name}"],
        ready: "waiting for messages",
    };
    ends_cleanly_on_each_signal(case, queue_named);
}

#[test]
fn msgq_sysv_reader_waiting_for_a_message() {
    let case = Case {
        demo: "msgq-demo",
        args: &["reader", "sysv", "--key", "{key}"],
        ready: "waiting for messages",
    };
    ends_cleanly_on_each_signal(case, sysv_msg);
}

#[test]
fn shm_posix_reader_waiting_on_its_semaphore() {
    let case = Case {
        demo: "shm-demo",
        args: &["reader", "--name", "{name}"],
        ready: "waiting on the semaphore",
    };
    ends_cleanly_on_each_signal(case, shm_named);
}

#[test]
fn shm_sysv_reader_waiting_on_its_semaphore() {
    let case = Case {
        demo: "shm-demo",
        args: &["reader", "sysv", "--key", "{key}"],
        ready: "waiting on the semaphore",
    };
    ends_cleanly_on_each_signal(case, sysv_shm_and_sem);
}

#[test]
fn sem_posix_reader_asleep_in_p() {
    let case = Case {
        demo: "sem-demo",
        args: &["reader", "--name", "{name}"],
        ready: "P on",
    };
    ends_cleanly_on_each_signal(case, sem_named);
}

#[test]
fn sem_sysv_reader_asleep_in_p() {
    let case = Case {
        demo: "sem-demo",
        args: &["reader", "sysv", "--key", "{key}"],
        ready: "P on",
    };
    ends_cleanly_on_each_signal(case, sysv_sem);
}

#[test]
fn signal_reader_waiting_for_signals() {
    let case = Case {
        demo: "signal-demo",
        args: &["reader"],
        ready: "waiting for signals",
    };
    ends_cleanly_on_each_signal(case, nothing);
}

#[test]
fn socket_unix_reader_waiting_in_accept() {
    let case = Case {
        demo: "socket-demo",
        args: &["reader", "unix"],
        ready: "waiting in accept",
    };
    ends_cleanly_on_each_signal(case, nothing);
}

#[test]
fn socket_unix_dgram_reader_waiting_in_recv() {
    let case = Case {
        demo: "socket-demo",
        args: &["reader", "unix-dgram"],
        ready: "waiting in recv",
    };
    ends_cleanly_on_each_signal(case, nothing);
}

#[test]
fn socket_fdpass_reader_waiting_in_accept() {
    let case = Case {
        demo: "socket-demo",
        args: &["reader", "fdpass"],
        ready: "waiting in accept",
    };
    ends_cleanly_on_each_signal(case, nothing);
}

#[test]
fn socket_tcp_and_udp_readers_waiting() {
    for (flavour, ready) in [("tcp", "waiting in accept"), ("udp", "waiting in recv")] {
        let args: &'static [&'static str] = if flavour == "tcp" {
            &["reader", "tcp"]
        } else {
            &["reader", "udp"]
        };
        let case = Case {
            demo: "socket-demo",
            args,
            ready,
        };
        ends_cleanly_on_each_signal(case, nothing);
    }
}

// ---- a default run busy in a workload (parent and children in one group) ----

#[test]
fn pipe_default_run_mid_bulk() {
    let case = Case {
        demo: "pipe-demo",
        args: &["--count", "100000000", "--size", "4096"],
        ready: "sending",
    };
    ends_cleanly_on_each_signal(case, nothing);
}

#[test]
fn fifo_default_run_mid_bulk() {
    let case = Case {
        demo: "fifo-demo",
        args: &["--count", "100000000", "--size", "4096"],
        ready: "sending",
    };
    ends_cleanly_on_each_signal(case, nothing);
}

#[test]
fn msgq_posix_default_run_mid_bulk() {
    let case = Case {
        demo: "msgq-demo",
        args: &["--name", "{name}", "--count", "100000000", "--size", "4096"],
        ready: "forked reader",
    };
    ends_cleanly_on_each_signal(case, queue_named);
}

#[test]
fn msgq_sysv_default_run_mid_bulk() {
    let case = Case {
        demo: "msgq-demo",
        args: &[
            "sysv",
            "--key",
            "{key}",
            "--count",
            "100000000",
            "--size",
            "4096",
        ],
        ready: "forked reader",
    };
    ends_cleanly_on_each_signal(case, sysv_msg);
}

#[test]
fn shm_posix_default_run_mid_bulk() {
    let case = Case {
        demo: "shm-demo",
        args: &["--name", "{name}", "--count", "100000000", "--size", "4096"],
        ready: "sending",
    };
    ends_cleanly_on_each_signal(case, shm_named);
}

#[test]
fn shm_sysv_default_run_mid_bulk() {
    let case = Case {
        demo: "shm-demo",
        args: &[
            "sysv",
            "--key",
            "{key}",
            "--count",
            "100000000",
            "--size",
            "4096",
        ],
        ready: "sending",
    };
    ends_cleanly_on_each_signal(case, sysv_shm_and_sem);
}

#[test]
fn sem_posix_default_run_mid_race() {
    let case = Case {
        demo: "sem-demo",
        args: &["--name", "{name}", "--loops", "1000000000"],
        ready: "--- act 2",
    };
    ends_cleanly_on_each_signal(case, sem_named);
}

#[test]
fn sem_sysv_default_run_mid_race() {
    let case = Case {
        demo: "sem-demo",
        args: &["sysv", "--key", "{key}", "--loops", "1000000000"],
        ready: "--- act 2",
    };
    ends_cleanly_on_each_signal(case, sysv_sem);
}

#[test]
fn sem_posix_default_run_mid_ping() {
    let case = Case {
        demo: "sem-demo",
        args: &["--name", "{name}", "--ping", "100000000"],
        ready: "round trips",
    };
    ends_cleanly_on_each_signal(case, sem_named);
}

#[test]
fn signal_default_run_mid_ping() {
    let case = Case {
        demo: "signal-demo",
        args: &["--ping", "1000000"],
        ready: "round trips",
    };
    ends_cleanly_on_each_signal(case, nothing);
}

#[test]
fn socket_default_runs_mid_bulk() {
    for flavour in ["unix", "unix-dgram", "tcp", "udp"] {
        let args: &'static [&'static str] = match flavour {
            "unix" => &["unix", "--count", "100000000", "--size", "4096"],
            "unix-dgram" => &["unix-dgram", "--count", "100000000", "--size", "4096"],
            "tcp" => &["tcp", "--count", "100000000", "--size", "4096"],
            _ => &["udp", "--count", "100000000", "--size", "4096"],
        };
        let case = Case {
            demo: "socket-demo",
            args,
            ready: "sending",
        };
        ends_cleanly_on_each_signal(case, nothing);
    }
}
