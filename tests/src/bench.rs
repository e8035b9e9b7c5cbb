//! The benchmark (DESIGN §6): every mechanism's own bulk and ping workloads, side
//! by side, beside two in-process baselines measured in the same run.
//!
//! - Throughput: the demo's `--count N --size S` bulk run, timed by the receiver
//!   to the last byte (the reader's `mib_per_s`). Baseline: memcpy of the same
//!   message size, the ceiling for anything that copies.
//! - Round trip: the demo's `--ping N --size S`, p50 and p99, with both sides pinned
//!   to one CPU and to two different CPUs (`--cpus W,R`). Baseline: two threads
//!   bouncing an atomic, the floor for any handshake between two CPUs.
//!
//! Every figure is the median of several runs; the spread (max-min over median)
//! is printed beside it so a noisy run shows. `quick` runs the same code with tiny
//! counts and one repetition, so `cargo test` keeps the benchmark from rotting.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::run;

/// One row of the table: a demo and the arguments that select its flavour.
pub struct Mechanism {
    pub name: &'static str,
    pub demo: &'static str,
    pub flavour: &'static [&'static str],
    /// Largest message its bulk workload carries, or None for ping only.
    pub max_bulk: Option<usize>,
    /// False where a ping carries no bytes (signals, semaphores): no `--size`.
    pub sized_ping: bool,
    /// Extra arguments for its ping (e.g. `--spin`).
    pub ping_extra: &'static [&'static str],
}

const KIB: usize = 1024;
/// A queue message is at most 8 KiB here (msgsize_max, msgmax).
const QUEUE_MAX: usize = 8 * KIB;
const ANY: Option<usize> = Some(usize::MAX);

const fn data(
    name: &'static str,
    demo: &'static str,
    flavour: &'static [&'static str],
) -> Mechanism {
    Mechanism {
        name,
        demo,
        flavour,
        max_bulk: ANY,
        sized_ping: true,
        ping_extra: &[],
    }
}

const fn sync_only(
    name: &'static str,
    demo: &'static str,
    flavour: &'static [&'static str],
) -> Mechanism {
    Mechanism {
        name,
        demo,
        flavour,
        max_bulk: None,
        sized_ping: false,
        ping_extra: &[],
    }
}

pub const MECHANISMS: &[Mechanism] = &[
    data("pipe", "pipe-demo", &[]),
    data("FIFO", "fifo-demo", &[]),
    Mechanism {
        max_bulk: Some(QUEUE_MAX),
        ..data("POSIX queue", "msgq-demo", &["posix"])
    },
    Mechanism {
        max_bulk: Some(QUEUE_MAX),
        ..data("System V queue", "msgq-demo", &["sysv"])
    },
    data("POSIX shm + semaphores", "shm-demo", &["posix"]),
    data("System V shm + semaphores", "shm-demo", &["sysv"]),
    data("memfd shm + semaphores (sealed)", "shm-demo", &["memfd"]),
    Mechanism {
        max_bulk: None,
        ping_extra: &["--spin"],
        ..data("POSIX shm, spin", "shm-demo", &["posix"])
    },
    data("Unix stream socket", "socket-demo", &["unix"]),
    data("Unix datagram socket", "socket-demo", &["unix-dgram"]),
    data("TCP, loopback", "socket-demo", &["tcp"]),
    // A UDP datagram carries at most 65507 bytes (65535 less the IP and UDP headers).
    Mechanism {
        max_bulk: Some(65507),
        ..data("UDP, loopback", "socket-demo", &["udp"])
    },
    sync_only("signal", "signal-demo", &[]),
    sync_only("POSIX semaphore", "sem-demo", &["posix"]),
    sync_only("System V semaphore", "sem-demo", &["sysv"]),
    sync_only("eventfd semaphore", "sem-demo", &["eventfd"]),
];

/// How much to measure: `full()` for `cargo bench`, `quick()` for the test.
pub struct Plan {
    pub reps: usize,
    pub bulk_bytes: usize,
    pub pings: u64,
}

impl Plan {
    pub fn full() -> Plan {
        Plan {
            reps: 5,
            bulk_bytes: 256 << 20,
            pings: 10_000,
        }
    }
    pub fn quick() -> Plan {
        Plan {
            reps: 1,
            bulk_bytes: 1 << 20,
            pings: 200,
        }
    }
}

/// A measured figure: the median of the repetitions and their spread.
#[derive(Clone, Copy)]
pub struct Figure {
    pub median: f64,
    pub spread: f64,
}

impl Figure {
    fn of(mut samples: Vec<f64>) -> Figure {
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        let spread = (samples[samples.len() - 1] - samples[0]) / median.max(f64::MIN_POSITIVE);
        Figure { median, spread }
    }

    fn show(&self) -> String {
        format!("{} ±{:.0}%", round(self.median), self.spread * 50.0)
    }
}

fn round(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Which CPUs the two sides run on.
#[derive(Clone, Copy)]
pub enum Placement {
    OneCpu,
    TwoCpus,
}

impl Placement {
    fn cpus(self) -> &'static str {
        match self {
            Placement::OneCpu => "0,0",
            Placement::TwoCpus => "0,1",
        }
    }
}

/// The reader's throughput in MiB/s for one bulk run.
pub fn bulk_once(m: &Mechanism, size: usize, total_bytes: usize) -> f64 {
    let count = (total_bytes / size).max(1).to_string();
    let size = size.to_string();
    let mut args: Vec<&str> = m.flavour.to_vec();
    // Writer and reader on two CPUs, working at once: the streaming case, and a
    // placement that does not change from run to run.
    args.extend([
        "--count",
        &count,
        "--size",
        &size,
        "--cpus",
        Placement::TwoCpus.cpus(),
    ]);
    let out = run(m.demo, &args);
    out.assert_success();
    out.summary("reader").num("mib_per_s")
}

/// (p50, p99) round trip in µs for one ping run.
pub fn ping_once(m: &Mechanism, size: usize, pings: u64, placement: Placement) -> (f64, f64) {
    let pings = pings.to_string();
    let size = size.to_string();
    let mut args: Vec<&str> = m.flavour.to_vec();
    args.extend(["--ping", &pings, "--cpus", placement.cpus()]);
    if m.sized_ping {
        args.extend(["--size", &size]);
    }
    args.extend(m.ping_extra);
    let out = run(m.demo, &args);
    out.assert_success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("] summary: ") && l.contains("rtt_p50_us="))
        .unwrap_or_else(|| panic!("{}: no round-trip summary:\n{}", m.name, out.stdout));
    let summary = crate::Summary::parse(line);
    (summary.num("rtt_p50_us"), summary.num("rtt_p99_us"))
}

/// memcpy bandwidth in MiB/s for messages of `size` bytes.
pub fn memcpy_mib_per_s(size: usize, total_bytes: usize) -> f64 {
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut dst = vec![0u8; size];
    let rounds = (total_bytes / size).max(1);
    let started = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    (rounds * size) as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// Two threads bouncing one atomic counter: (p50, p99) round trip in µs. On one
/// CPU the waiting thread yields, or it would spin away its whole time slice. Both
/// are new threads, so the pinning never touches the thread that starts the demos.
pub fn atomic_ping_pong(rounds: u64, placement: Placement) -> (f64, f64) {
    let (cpu_a, cpu_b) = match placement {
        Placement::OneCpu => (0, 0),
        Placement::TwoCpus => (0, 1),
    };
    let yield_while_waiting = matches!(placement, Placement::OneCpu);
    let ball = Arc::new(AtomicU64::new(0));
    let other = Arc::clone(&ball);
    let echo = std::thread::spawn(move || {
        pin_this_thread(cpu_b);
        for i in 0..rounds {
            wait_for(&other, 2 * i + 1, yield_while_waiting);
            other.store(2 * i + 2, Ordering::Release);
        }
    });
    let timer = std::thread::spawn(move || {
        pin_this_thread(cpu_a);
        let mut rtts = Vec::with_capacity(rounds as usize);
        for i in 0..rounds {
            let sent = Instant::now();
            ball.store(2 * i + 1, Ordering::Release);
            wait_for(&ball, 2 * i + 2, yield_while_waiting);
            rtts.push(sent.elapsed());
        }
        rtts
    });
    let mut rtts = timer.join().expect("timing thread");
    echo.join().expect("echo thread");
    rtts.sort_unstable();
    (percentile_us(&rtts, 50), percentile_us(&rtts, 99))
}

fn wait_for(ball: &AtomicU64, value: u64, yield_while_waiting: bool) {
    while ball.load(Ordering::Acquire) != value {
        if yield_while_waiting {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

fn pin_this_thread(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("cpu index");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("sched_setaffinity");
}

fn percentile_us(sorted: &[Duration], p: usize) -> f64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1e6
}

/// The throughput of `dd if=/dev/zero bs=64K | dd of=/dev/null bs=64K`, the shell's
/// own pipe, in MiB/s: what a pipe can do with no checking at all. Timed from outside,
/// so it includes starting two processes: negligible for 256 MiB, not for --quick.
pub fn dd_pipe_mib_per_s(total_bytes: usize) -> Option<f64> {
    let count = (total_bytes / (64 * KIB)).max(1);
    // Pinned like the demos' bulk runs: the writer on CPU 0, the reader on CPU 1.
    let script = format!(
        "taskset -c 0 dd if=/dev/zero bs=64K count={count} status=none \
         | taskset -c 1 dd of=/dev/null bs=64K status=none"
    );
    let started = Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .ok()?;
    let elapsed = started.elapsed().as_secs_f64();
    status
        .success()
        .then(|| (count * 64 * KIB) as f64 / (1 << 20) as f64 / elapsed)
}

/// pipe-demo's round trip written in plain C (`benches/pipe_ping.c`, built here with
/// `cc -O2`): the same calls, so the difference is what Rust and the demo add.
/// None where no C compiler is installed.
pub fn c_pipe_ping(rounds: u64, size: usize, placement: Placement) -> Option<(f64, f64)> {
    static BUILT: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let exe = BUILT.get_or_init(|| {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pipe_ping.c");
        let exe = crate::demo_bin_dir().join("pipe_ping");
        let built = std::process::Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&exe)
            .arg(source)
            .status();
        built.is_ok_and(|s| s.success()).then_some(exe)
    });
    let (w, r) = placement.cpus().split_once(',')?;
    let out = std::process::Command::new(exe.as_ref()?)
        .args([&rounds.to_string(), &size.to_string(), w, r])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some((figures.next()??, figures.next()??))
}

fn repeat<T>(reps: usize, mut f: impl FnMut() -> T) -> Vec<T> {
    (0..reps).map(|_| f()).collect()
}

/// Runs the whole benchmark, printing progress on stderr; returns the markdown.
pub fn run_all(plan: &Plan, mechanisms: &[&Mechanism]) -> String {
    let mut md = String::new();
    let (x_p50, x_p99) = atomic_ping_pong(plan.pings * 10, Placement::TwoCpus);
    eprintln!("atomic round trip across CPUs 0 and 1: p50 {x_p50:.2} µs, p99 {x_p99:.2} µs");

    // Baselines.
    let memcpy_64k = Figure::of(repeat(plan.reps, || {
        memcpy_mib_per_s(64 * KIB, plan.bulk_bytes * 4)
    }));
    let memcpy_8k = Figure::of(repeat(plan.reps, || {
        memcpy_mib_per_s(QUEUE_MAX, plan.bulk_bytes * 4)
    }));
    let memcpy_4k = Figure::of(repeat(plan.reps, || {
        memcpy_mib_per_s(4 * KIB, plan.bulk_bytes * 4)
    }));
    let atomic = |placement| {
        let runs = repeat(plan.reps, || atomic_ping_pong(plan.pings * 10, placement));
        (
            Figure::of(runs.iter().map(|r| r.0).collect()),
            Figure::of(runs.iter().map(|r| r.1).collect()),
        )
    };
    let atomic_one = atomic(Placement::OneCpu);
    let atomic_two = atomic(Placement::TwoCpus);
    let dd = Figure::of(repeat(plan.reps, || {
        dd_pipe_mib_per_s(plan.bulk_bytes).unwrap_or(f64::NAN)
    }));

    let _ = writeln!(
        md,
        "Each figure: the median of {} runs, ± half their spread (max - min) over the median. \
         Throughput: {} MiB per run, writer on CPU 0 and reader on CPU 1, timed by the reader \
         to the last byte. Round trips: {} per run, 100-byte messages, both sides on CPU 0 \
         (1 CPU) or on CPUs 0 and 1 (2 CPUs).\n",
        plan.reps,
        plan.bulk_bytes >> 20,
        plan.pings
    );
    let _ = writeln!(
        md,
        "| mechanism | MiB/s, 64 KiB | × memcpy | MiB/s, 4 KiB | RTT p50 / p99 µs, 1 CPU | RTT p50 / p99 µs, 2 CPUs | p50 × atomic (2 CPUs) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| *memcpy (in process)* | {} | 1 | {} | | | |",
        memcpy_64k.show(),
        memcpy_4k.show()
    );
    let _ = writeln!(
        md,
        "| *atomic ping-pong (2 threads)* | | | | {} / {} | {} / {} | 1 |",
        atomic_one.0.show(),
        atomic_one.1.show(),
        atomic_two.0.show(),
        atomic_two.1.show()
    );
    let c_ping = |placement| {
        let runs: Vec<_> = repeat(plan.reps, || c_pipe_ping(plan.pings, 100, placement))
            .into_iter()
            .flatten()
            .collect();
        (!runs.is_empty()).then(|| {
            let p50s = runs.iter().map(|r| r.0).collect();
            (
                Figure::of(p50s),
                Figure::of(runs.iter().map(|r| r.1).collect()),
            )
        })
    };
    if let (Some(one), Some(two)) = (c_ping(Placement::OneCpu), c_ping(Placement::TwoCpus)) {
        let _ = writeln!(
            md,
            "| *pipe ping in C (same calls)* | | | | {} / {} | {} / {} | {:.0} |",
            one.0.show(),
            one.1.show(),
            two.0.show(),
            two.1.show(),
            two.0.median / atomic_two.0.median
        );
    }
    let _ = writeln!(
        md,
        "| *dd \\| dd (shell pipe)* | {} | {:.2} | | | | |",
        dd.show(),
        dd.median / memcpy_64k.median
    );

    let mut sizes_md = String::new();
    let _ = writeln!(
        sizes_md,
        "| mechanism | 4 B, 1 CPU | 4 B, 2 CPUs | 1000 B, 1 CPU | 1000 B, 2 CPUs |"
    );
    let _ = writeln!(sizes_md, "|---|---|---|---|---|");

    for m in mechanisms {
        eprintln!("measuring {} ...", m.name);
        let bulk = |size: usize| {
            m.max_bulk.map(|max| {
                Figure::of(repeat(plan.reps, || {
                    bulk_once(m, size.min(max), plan.bulk_bytes)
                }))
            })
        };
        let big = bulk(64 * KIB);
        let small = bulk(4 * KIB);
        let ping = |size: usize, placement| {
            let runs = repeat(plan.reps, || ping_once(m, size, plan.pings, placement));
            (
                Figure::of(runs.iter().map(|r| r.0).collect()),
                Figure::of(runs.iter().map(|r| r.1).collect()),
            )
        };
        let one = ping(100, Placement::OneCpu);
        let two = ping(100, Placement::TwoCpus);
        let queue_note = if m.max_bulk == Some(QUEUE_MAX) {
            " (8 KiB messages)"
        } else {
            ""
        };
        let ceiling = if m.max_bulk == Some(QUEUE_MAX) {
            memcpy_8k.median
        } else {
            memcpy_64k.median
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} / {} | {} / {} | {:.0} |",
            m.name,
            big.map_or("n/a".into(), |f| format!("{}{queue_note}", f.show())),
            big.map_or("".into(), |f| format!("{:.2}", f.median / ceiling)),
            small.map_or("n/a".into(), |f| f.show()),
            one.0.show(),
            one.1.show(),
            two.0.show(),
            two.1.show(),
            two.0.median / atomic_two.0.median,
        );
        let p50 = |size, placement| match m.sized_ping {
            true => ping(size, placement).0.show(),
            false => "no data".to_string(),
        };
        let _ = writeln!(
            sizes_md,
            "| {} | {} | {} | {} | {} |",
            m.name,
            p50(4, Placement::OneCpu),
            p50(4, Placement::TwoCpus),
            p50(1000, Placement::OneCpu),
            p50(1000, Placement::TwoCpus),
        );
    }
    let _ = writeln!(md, "\nRound trip p50 in µs at other message sizes:\n");
    md.push_str(&sizes_md);
    md
}

/// The machine the figures come from: CPU model, CPUs, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cpus} CPUs, Linux {}", kernel.trim())
}
