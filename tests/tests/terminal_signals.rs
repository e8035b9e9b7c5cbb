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

/// A name and a System V key that no other run of this test process uses.
fn unique(n: u32) -> (String, i32) {
    let me = std::process::id();
    (
        format!("/tsig{me}x{n}"),
        0x7e00_0000 | ((me as i32 & 0xffff) << 8) | n as i32,
    )
}

/// Runs `demo ARGS` once per signal (`{name}` and `{key}` in ARGS become a POSIX
/// name and a System V key unique to the run), sends the signal to its process
/// group once it printed `ready` (it is then waiting or busy), and checks that it
/// ended by that signal, said so, and left none of `objects` nor any path it named.
fn ends_cleanly_on_each_signal(
    demo: &str,
    args: &[&str],
    ready: &str,
    objects: impl Fn(&str, i32) -> Vec<Object>,
) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    for sig in SIGNALS {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (name, key) = unique(n);
        let key_text = format!("{key:#x}");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{name}", &name).replace("{key}", &key_text))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut run = Demo::start(demo, &args);
        run.wait_for_line(ready);
        run.signal_group(sig);
        let out = run.finish();
        out.assert_killed_by(sig);
        if demo != "pipe-demo" {
            // pipe-demo alone keeps the signals' default action: its pipes have no
            // name and vanish with the processes, so it has nothing to clean up.
            out.assert_stdout_contains(sig.as_str());
        }
        for path in tmp_and_shm_paths_in(&out.stdout) {
            assert!(
                is_gone(&path),
                "{} {args:?}: {path} is left after {sig}:\n{}",
                demo,
                out.stdout
            );
        }
        for object in objects(&name, key) {
            assert_gone(&object, demo, &args, sig);
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
    ends_cleanly_on_each_signal("fifo-demo", &["reader"], "opening", nothing);
}

#[test]
fn msgq_posix_reader_waiting_for_a_message() {
    ends_cleanly_on_each_signal(
        "msgq-demo",
        &["reader", "--name", "{name}"],
        "waiting for messages",
        queue_named,
    );
}

#[test]
fn msgq_sysv_reader_waiting_for_a_message() {
    ends_cleanly_on_each_signal(
        "msgq-demo",
        &["reader", "sysv", "--key", "{key}"],
        "waiting for messages",
        sysv_msg,
    );
}

#[test]
fn shm_posix_reader_waiting_on_its_semaphore() {
    ends_cleanly_on_each_signal(
        "shm-demo",
        &["reader", "--name", "{name}"],
        "waiting on the semaphore",
        shm_named,
    );
}

#[test]
fn shm_sysv_reader_waiting_on_its_semaphore() {
    ends_cleanly_on_each_signal(
        "shm-demo",
        &["reader", "sysv", "--key", "{key}"],
        "waiting on the semaphore",
        sysv_shm_and_sem,
    );
}

#[test]
fn sem_posix_reader_asleep_in_p() {
    ends_cleanly_on_each_signal(
        "sem-demo",
        &["reader", "--name", "{name}"],
        "P on",
        sem_named,
    );
}

#[test]
fn sem_sysv_reader_asleep_in_p() {
    ends_cleanly_on_each_signal(
        "sem-demo",
        &["reader", "sysv", "--key", "{key}"],
        "P on",
        sysv_sem,
    );
}

#[test]
fn signal_reader_waiting_for_signals() {
    ends_cleanly_on_each_signal("signal-demo", &["reader"], "waiting for signals", nothing);
}

#[test]
fn socket_unix_reader_waiting_in_accept() {
    ends_cleanly_on_each_signal(
        "socket-demo",
        &["reader", "unix"],
        "waiting in accept",
        nothing,
    );
}

#[test]
fn socket_unix_dgram_reader_waiting_in_recv() {
    ends_cleanly_on_each_signal(
        "socket-demo",
        &["reader", "unix-dgram"],
        "waiting in recv",
        nothing,
    );
}

#[test]
fn socket_fdpass_reader_waiting_in_accept() {
    ends_cleanly_on_each_signal(
        "socket-demo",
        &["reader", "fdpass"],
        "waiting in accept",
        nothing,
    );
}

#[test]
fn socket_tcp_and_udp_readers_waiting() {
    for (flavour, ready) in [("tcp", "waiting in accept"), ("udp", "waiting in recv")] {
        ends_cleanly_on_each_signal("socket-demo", &["reader", flavour], ready, nothing);
    }
}

// ---- a default run busy in a workload (parent and children in one group) ----

#[test]
fn pipe_default_run_mid_bulk() {
    ends_cleanly_on_each_signal(
        "pipe-demo",
        &["--count", "100000000", "--size", "4096"],
        "sending",
        nothing,
    );
}

#[test]
fn fifo_default_run_mid_bulk() {
    ends_cleanly_on_each_signal(
        "fifo-demo",
        &["--count", "100000000", "--size", "4096"],
        "sending",
        nothing,
    );
}

#[test]
fn msgq_posix_default_run_mid_bulk() {
    ends_cleanly_on_each_signal(
        "msgq-demo",
        &["--name", "{name}", "--count", "100000000", "--size", "4096"],
        "forked reader",
        queue_named,
    );
}

#[test]
fn msgq_sysv_default_run_mid_bulk() {
    ends_cleanly_on_each_signal(
        "msgq-demo",
        &[
            "sysv",
            "--key",
            "{key}",
            "--count",
            "100000000",
            "--size",
            "4096",
        ],
        "forked reader",
        sysv_msg,
    );
}

#[test]
fn shm_posix_default_run_mid_bulk() {
    ends_cleanly_on_each_signal(
        "shm-demo",
        &["--name", "{name}", "--count", "100000000", "--size", "4096"],
        "sending",
        shm_named,
    );
}

#[test]
fn shm_sysv_default_run_mid_bulk() {
    ends_cleanly_on_each_signal(
        "shm-demo",
        &[
            "sysv",
            "--key",
            "{key}",
            "--count",
            "100000000",
            "--size",
            "4096",
        ],
        "sending",
        sysv_shm_and_sem,
    );
}

#[test]
fn sem_posix_default_run_mid_race() {
    ends_cleanly_on_each_signal(
        "sem-demo",
        &["--name", "{name}", "--loops", "1000000000"],
        "--- act 2",
        sem_named,
    );
}

#[test]
fn sem_sysv_default_run_mid_race() {
    ends_cleanly_on_each_signal(
        "sem-demo",
        &["sysv", "--key", "{key}", "--loops", "1000000000"],
        "--- act 2",
        sysv_sem,
    );
}

#[test]
fn sem_posix_default_run_mid_ping() {
    ends_cleanly_on_each_signal(
        "sem-demo",
        &["--name", "{name}", "--ping", "100000000"],
        "round trips",
        sem_named,
    );
}

#[test]
fn signal_default_run_mid_ping() {
    ends_cleanly_on_each_signal(
        "signal-demo",
        &["--ping", "1000000"],
        "round trips",
        nothing,
    );
}

#[test]
fn socket_default_runs_mid_bulk() {
    for flavour in ["unix", "unix-dgram", "tcp", "udp"] {
        let args = [flavour, "--count", "100000000", "--size", "4096"];
        ends_cleanly_on_each_signal("socket-demo", &args, "sending", nothing);
    }
}
