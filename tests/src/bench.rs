//! The benchmark (DESIGN §6): every mechanism's own bulk and ping workloads, side
//! by side, each beside its C anchor and two in-process baselines, all in the same run.
//!
//! - Throughput: the demo's `--count N --size S` bulk run, timed by the receiver
//!   to the last byte (the reader's `mib_per_s`). Baseline: memcpy of the same
//!   message size, the ceiling for anything that copies.
//! - Round trip: the demo's `--ping N --size S`, p50 and p99, with both sides pinned
//!   to one CPU and to two different CPUs (`--cpus W,R`). Baseline: two threads
//!   bouncing an atomic, the floor for any handshake between two CPUs.
//! - C anchor: `benches/NAME.c` (with `benches/anchor.h`), built here with `cc -O2`:
//!   the same calls at the same size and placement, so demo ÷ C is what Rust and the
//!   demo add. Each demo run is followed at once by one C run (interleaved), so a
//!   change of load hits both. Without `cc` the C cells say "no cc".
//! - Fast paths: rows of their own (a sized pipe, vmsplice, the spinning shm ring), and
//!   a line under the table with what each gains over `dd | dd`, the semaphore ring and
//!   the atomic floor (`fast_path_lines`).
//! - Sizes: throughput against message size (64 B to 1 MiB) for a pipe, a Unix stream
//!   socket and POSIX shm, as a table and an SVG chart ([`run_sizes`], [`svg_chart`]).
//!
//! Every figure is the median of several runs; the spread (max-min over median)
//! is printed beside it so a noisy run shows. `quick` runs the same code with tiny
//! counts and one repetition, so `cargo test` keeps the benchmark from rotting.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::run;

/// One row of the table: a demo and the arguments that select its flavour.
pub struct Mechanism {
    pub name: &'static str,
    pub demo: &'static str,
    pub flavour: &'static [&'static str],
    /// Largest message its bulk workload carries, or None for ping only.
    pub max_bulk: Option<usize>,
    /// Extra arguments for its bulk run (a fast path: `--pipe-size auto`, `--spin`).
    pub bulk_extra: &'static [&'static str],
    /// The C anchor's MODE for bulk (`bulk`, or the fast path's: see anchor.h).
    pub c_bulk: &'static str,
    /// False for a bulk-only row: a fast path that has no ping of its own.
    pub pings: bool,
    /// False where a ping carries no bytes (signals, semaphores): no `--size`.
    pub sized_ping: bool,
    /// Extra arguments for its ping (e.g. `--spin`).
    pub ping_extra: &'static [&'static str],
    /// Its C anchor, `benches/NAME.c`: the same calls in plain C; None if it has none.
    pub anchor: Option<&'static str>,
}

const KIB: usize = 1024;
/// A queue message is at most 8 KiB here (msgsize_max, msgmax).
const QUEUE_MAX: usize = 8 * KIB;
const ANY: Option<usize> = Some(usize::MAX);

const fn data(
    name: &'static str,
    demo: &'static str,
    flavour: &'static [&'static str],
    anchor: Option<&'static str>,
) -> Mechanism {
    Mechanism {
        name,
        demo,
        flavour,
        max_bulk: ANY,
        bulk_extra: &[],
        c_bulk: "bulk",
        pings: true,
        sized_ping: true,
        ping_extra: &[],
        anchor,
    }
}

const fn sync_only(
    name: &'static str,
    demo: &'static str,
    flavour: &'static [&'static str],
    anchor: Option<&'static str>,
) -> Mechanism {
    Mechanism {
        name,
        demo,
        flavour,
        max_bulk: None,
        bulk_extra: &[],
        c_bulk: "bulk",
        pings: true,
        sized_ping: false,
        ping_extra: &[],
        anchor,
    }
}

/// A fast path's row: bulk only, the demo with `extra`, its anchor in `c_mode`.
const fn bulk_only(
    name: &'static str,
    base: Mechanism,
    extra: &'static [&'static str],
    c_mode: &'static str,
) -> Mechanism {
    Mechanism {
        name,
        bulk_extra: extra,
        c_bulk: c_mode,
        pings: false,
        ..base
    }
}

pub const MECHANISMS: &[Mechanism] = &[
    data("pipe", "pipe-demo", &[], Some("pipe")),
    bulk_only(
        SIZED_PIPE,
        data("", "pipe-demo", &[], Some("pipe")),
        &["--pipe-size", "auto"],
        "bulk-sized",
    ),
    bulk_only(
        VMSPLICE_PIPE,
        data("", "pipe-demo", &[], Some("pipe")),
        &["--pipe-size", "auto", "--vmsplice"],
        "bulk-vmsplice",
    ),
    data("FIFO", "fifo-demo", &[], Some("fifo")),
    Mechanism {
        max_bulk: Some(QUEUE_MAX),
        ..data("POSIX queue", "msgq-demo", &["posix"], Some("mq_posix"))
    },
    Mechanism {
        max_bulk: Some(QUEUE_MAX),
        ..data("System V queue", "msgq-demo", &["sysv"], Some("msg_sysv"))
    },
    data(SEM_SHM, "shm-demo", &["posix"], Some("shm_posix")),
    data(
        "System V shm + semaphores",
        "shm-demo",
        &["sysv"],
        Some("shm_sysv"),
    ),
    data(
        "memfd shm + semaphores (sealed)",
        "shm-demo",
        &["memfd"],
        Some("shm_memfd"),
    ),
    Mechanism {
        ping_extra: &["--spin"],
        bulk_extra: &["--spin"],
        c_bulk: "bulk-spin",
        ..data(SPIN_SHM, "shm-demo", &["posix"], Some("shm_posix"))
    },
    data(
        "Unix stream socket",
        "socket-demo",
        &["unix"],
        Some("unix_stream"),
    ),
    data(
        "Unix datagram socket",
        "socket-demo",
        &["unix-dgram"],
        Some("unix_dgram"),
    ),
    data(
        "Unix seqpacket socket",
        "socket-demo",
        &["seqpacket"],
        Some("unix_seqpacket"),
    ),
    data("TCP, loopback", "socket-demo", &["tcp"], Some("tcp")),
    // A UDP datagram carries at most 65507 bytes (65535 less the IP and UDP headers).
    Mechanism {
        max_bulk: Some(65507),
        ..data("UDP, loopback", "socket-demo", &["udp"], Some("udp"))
    },
    sync_only("signal", "signal-demo", &[], Some("signal")),
    sync_only("POSIX semaphore", "sem-demo", &["posix"], Some("sem_posix")),
    sync_only(
        "System V semaphore",
        "sem-demo",
        &["sysv"],
        Some("sem_sysv"),
    ),
    sync_only(
        "eventfd semaphore",
        "sem-demo",
        &["eventfd"],
        Some("eventfd"),
    ),
];

/// The fast paths' rows, named again in the lines under the table.
const SIZED_PIPE: &str = "pipe, grown to 4 messages (F_SETPIPE_SZ)";
const VMSPLICE_PIPE: &str = "pipe, grown + vmsplice";
const SPIN_SHM: &str = "POSIX shm, spin";
const SEM_SHM: &str = "POSIX shm + semaphores";

/// How much to measure: `full()` for `cargo bench`, `quick()` for the test.
pub struct Plan {
    pub reps: usize,
    pub bulk_bytes: usize,
    pub pings: u64,
    /// The size table's cap on messages a run (small messages would take long).
    pub size_messages: usize,
}

impl Plan {
    pub fn full() -> Plan {
        Plan {
            reps: 5,
            bulk_bytes: 256 << 20,
            pings: 10_000,
            size_messages: 200_000,
        }
    }
    pub fn quick() -> Plan {
        Plan {
            reps: 1,
            bulk_bytes: 1 << 20,
            pings: 200,
            size_messages: 500,
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
    args.extend(m.bulk_extra);
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
/// One clock read a round trip (the end of one is the start of the next), as
/// shm-demo's spin ping times itself, so the two compare like for like.
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
        let mut sent = Instant::now();
        for i in 0..rounds {
            ball.store(2 * i + 1, Ordering::Release);
            wait_for(&ball, 2 * i + 2, yield_while_waiting);
            let now = Instant::now();
            rtts.push(now - sent);
            sent = now;
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

/// A C anchor's executable, built once per run with `cc -O2` from `benches/NAME.c`
/// (which includes `benches/anchor.h`); Err says why there is none ("no cc").
fn c_anchor(name: &str) -> Result<PathBuf, &'static str> {
    static BUILT: OnceLock<Mutex<HashMap<String, Result<PathBuf, &'static str>>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    built
        .entry(name.to_string())
        .or_insert_with(|| {
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("benches/{name}.c"));
            let exe = crate::demo_bin_dir().join(format!("c-anchor-{name}"));
            let built = Command::new("cc")
                .args(["-O2", "-pthread", "-o"])
                .arg(&exe)
                .arg(source)
                .arg("-lrt")
                .status();
            match built {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no cc"),
                Ok(s) if s.success() => Ok(exe),
                _ => Err("cc failed"),
            }
        })
        .clone()
}

/// One run of a C anchor: `NAME MODE COUNT SIZE WRITER_CPU READER_CPU`; its numbers.
fn c_run(name: &str, mode: &str, count: u64, size: usize, cpus: &str) -> Result<Vec<f64>, String> {
    let exe = c_anchor(name)?;
    let (w, r) = cpus.split_once(',').expect("W,R");
    let out = Command::new(&exe)
        .args([mode, &count.to_string(), &size.to_string(), w, r])
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<f64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    if !out.status.success() || figures.is_empty() {
        return Err(format!(
            "{name} {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(figures)
}

/// The C anchor's (p50, p99) round trip in µs, as `ping_once` for the demo.
pub fn c_ping_once(
    m: &Mechanism,
    size: usize,
    pings: u64,
    placement: Placement,
) -> Result<(f64, f64), String> {
    let name = m.anchor.ok_or("—")?;
    let mode = if m.ping_extra.contains(&"--spin") {
        "spin"
    } else {
        "ping"
    };
    let f = c_run(name, mode, pings, size, placement.cpus())?;
    Ok((f[0], *f.get(1).unwrap_or(&f[0])))
}

/// The C anchor's reader throughput in MiB/s, as `bulk_once` for the demo.
pub fn c_bulk_once(m: &Mechanism, size: usize, total_bytes: usize) -> Result<f64, String> {
    let name = m.anchor.ok_or("—")?;
    let count = (total_bytes / size).max(1) as u64;
    Ok(c_run(name, m.c_bulk, count, size, Placement::TwoCpus.cpus())?[0])
}

fn repeat<T>(reps: usize, mut f: impl FnMut() -> T) -> Vec<T> {
    (0..reps).map(|_| f()).collect()
}

/// `reps` runs of the demo, each followed at once by one of its C anchor (interleaved,
/// so a change of load hits both): the demo's figures and the anchor's (or why none).
fn interleaved<T>(
    reps: usize,
    mut demo: impl FnMut() -> T,
    mut c: impl FnMut() -> Result<T, String>,
) -> (Vec<T>, Result<Vec<T>, String>) {
    let mut ours = Vec::new();
    let mut theirs = Ok(Vec::new());
    for _ in 0..reps {
        ours.push(demo());
        if let Ok(runs) = &mut theirs {
            match c() {
                Ok(x) => runs.push(x),
                Err(e) => theirs = Err(e),
            }
        }
    }
    (ours, theirs)
}

/// A demo figure, its anchor's, and the ratio demo ÷ C of the time taken (round trip,
/// or time per byte: C's MiB/s over the demo's), so above 1 the demo is slower.
struct Compared {
    demo: Figure,
    demo_p99: Option<Figure>,
    c: Result<(Figure, Option<Figure>), String>,
    /// The median of the runs' ratios, each demo run over the C run right after it: a
    /// change of the machine's speed between runs hits both halves of a pair, and cancels.
    ratio: f64,
}

/// The median over the interleaved pairs of demo ÷ C in time: `rate` figures are MiB/s,
/// so their ratio is C's over the demo's.
fn pair_ratio(ours: &[f64], theirs: &[f64], rate: bool) -> f64 {
    let ratios = ours
        .iter()
        .zip(theirs)
        .map(|(d, c)| if rate { c / d } else { d / c })
        .collect::<Vec<_>>();
    if ratios.is_empty() {
        f64::NAN
    } else {
        Figure::of(ratios).median
    }
}

impl Compared {
    fn cells(&self) -> String {
        let show = |f: &Figure, p99: &Option<Figure>| match p99 {
            Some(p) => format!("{} / {}", f.show(), p.show()),
            None => f.show(),
        };
        match &self.c {
            Ok((c, c99)) => format!(
                "{} | {} | {:.2}",
                show(&self.demo, &self.demo_p99),
                show(c, c99),
                self.ratio
            ),
            Err(why) => {
                let why = if why.len() > 12 { "failed" } else { why };
                format!("{} | {why} | ", show(&self.demo, &self.demo_p99))
            }
        }
    }
}

fn figures2(runs: &[(f64, f64)]) -> (Figure, Figure) {
    (
        Figure::of(runs.iter().map(|r| r.0).collect()),
        Figure::of(runs.iter().map(|r| r.1).collect()),
    )
}

/// The demo's round trips beside its anchor's. With `floor`, each demo run is preceded
/// by a run of the atomic ping-pong at the same placement and count, and the two p50s
/// are pushed there as a pair (floor, demo): on this VM the cost of moving a cache line
/// between CPUs jumps between about 0.1 and 0.45 µs from one second to the next (seen;
/// the host moving our vCPUs is our guess), so a spin ping is set beside the floor
/// measured just before it.
fn compare_ping(
    plan: &Plan,
    m: &Mechanism,
    placement: Placement,
    mut floor: Option<&mut Vec<(f64, f64)>>,
) -> Compared {
    let (ours, theirs) = interleaved(
        plan.reps,
        || {
            let before = floor
                .is_some()
                .then(|| atomic_ping_pong(plan.pings, placement).0);
            let run = ping_once(m, 100, plan.pings, placement);
            if let (Some(pairs), Some(before)) = (floor.as_mut(), before) {
                pairs.push((before, run.0));
            }
            run
        },
        || c_ping_once(m, 100, plan.pings, placement),
    );
    let (demo, demo_p99) = figures2(&ours);
    if let Err(e) = &theirs {
        report_failure(m, e);
    }
    let p50s = |runs: &[(f64, f64)]| runs.iter().map(|r| r.0).collect::<Vec<_>>();
    let ratio = theirs.as_ref().map_or(f64::NAN, |runs| {
        pair_ratio(&p50s(&ours), &p50s(runs), false)
    });
    Compared {
        demo,
        demo_p99: Some(demo_p99),
        c: theirs.map(|runs| {
            let (p50, p99) = figures2(&runs);
            (p50, Some(p99))
        }),
        ratio,
    }
}

fn compare_bulk(m: &Mechanism, size: usize, reps: usize, total_bytes: usize) -> Compared {
    let (ours, theirs) = interleaved(
        reps,
        || bulk_once(m, size, total_bytes),
        || c_bulk_once(m, size, total_bytes),
    );
    if let Err(e) = &theirs {
        report_failure(m, e);
    }
    let ratio = theirs
        .as_ref()
        .map_or(f64::NAN, |runs| pair_ratio(&ours, runs, true));
    Compared {
        demo: Figure::of(ours),
        demo_p99: None,
        c: theirs.map(|runs| (Figure::of(runs), None)),
        ratio,
    }
}

fn report_failure(m: &Mechanism, e: &str) {
    if e.len() > 12 {
        eprintln!("{}: C anchor: {e}", m.name);
    }
}

/// Runs the whole benchmark, printing progress on stderr; returns the markdown.
pub fn run_all(plan: &Plan, mechanisms: &[&Mechanism]) -> String {
    let mut md = String::new();
    // Baselines.
    let memcpy_64k = Figure::of(repeat(plan.reps, || {
        memcpy_mib_per_s(64 * KIB, plan.bulk_bytes * 4)
    }));
    let memcpy_4k = Figure::of(repeat(plan.reps, || {
        memcpy_mib_per_s(4 * KIB, plan.bulk_bytes * 4)
    }));
    let atomic = |placement| {
        figures2(&repeat(plan.reps, || {
            atomic_ping_pong(plan.pings * 10, placement)
        }))
    };
    let atomic_one = atomic(Placement::OneCpu);
    let atomic_two = atomic(Placement::TwoCpus);
    let dd = Figure::of(repeat(plan.reps, || {
        dd_pipe_mib_per_s(plan.bulk_bytes).unwrap_or(f64::NAN)
    }));

    let _ = writeln!(
        md,
        "Each figure: the median of {} runs, ± half their spread (max - min) over the median. \
         Beside each demo, in the same run and interleaved with it (one demo run, then one C \
         run), its C anchor: `tests/benches/NAME.c`, a C program making the same calls at the \
         same size and placement. demo ÷ C is the demo's time over C's (the round trip's p50, \
         or the time per byte), the median of the {} pairs' ratios: above 1, the demo is \
         slower. Round trips: {} per run, 100-byte \
         messages, both sides on CPU 0 (1 CPU) or on CPUs 0 and 1 (2 CPUs), p50 / p99 µs. \
         Throughput: {} MiB per run, writer on CPU 0 and reader on CPU 1, timed by the reader \
         (queues: 8 KiB messages in both columns, their largest by default; UDP: 65507 bytes \
         in the 64 KiB column). A fast path's row runs the demo with that option (`pipe-demo \
         --pipe-size auto`, `--vmsplice`; `shm-demo posix --spin`) and its anchor in the same \
         mode; n/a: no such workload.\n",
        plan.reps,
        plan.reps,
        plan.pings,
        plan.bulk_bytes >> 20
    );
    let _ = writeln!(
        md,
        "| mechanism | RTT 1 CPU, demo | C | demo ÷ C | RTT 2 CPUs, demo | C | demo ÷ C \
         | MiB/s 4 KiB, demo | C | demo ÷ C | MiB/s 64 KiB, demo | C | demo ÷ C |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| *memcpy (in process)* | | | | | | | {} | | | {} | | |",
        memcpy_4k.show(),
        memcpy_64k.show()
    );
    let _ = writeln!(
        md,
        "| *atomic ping-pong (2 threads)* | {} / {} | | | {} / {} | | | | | | | | |",
        atomic_one.0.show(),
        atomic_one.1.show(),
        atomic_two.0.show(),
        atomic_two.1.show()
    );
    let _ = writeln!(
        md,
        "| *dd \\| dd (shell pipe)* | | | | | | | | | | {} | | |",
        dd.show()
    );

    // The medians the lines under the table compare: (name, what) -> MiB/s or µs.
    let mut medians: HashMap<(&str, &str), f64> = HashMap::new();
    for m in mechanisms {
        eprintln!("measuring {} ...", m.name);
        let mut floor = Vec::new();
        let spins = m.ping_extra.contains(&"--spin");
        let one = m
            .pings
            .then(|| compare_ping(plan, m, Placement::OneCpu, None));
        let two = m
            .pings
            .then(|| compare_ping(plan, m, Placement::TwoCpus, spins.then_some(&mut floor)));
        if !floor.is_empty() {
            let ratios = floor.iter().map(|(f, demo)| demo / f).collect();
            medians.insert((m.name, "floor2"), figures2(&floor).0.median);
            medians.insert((m.name, "rtt2/floor2"), Figure::of(ratios).median);
        }
        let bulk = |size: usize| {
            m.max_bulk
                .map(|max| compare_bulk(m, size.min(max), plan.reps, plan.bulk_bytes))
        };
        let (k4, k64) = (bulk(4 * KIB), bulk(64 * KIB));
        for (what, cmp) in [("rtt2", &two), ("4k", &k4), ("64k", &k64)] {
            if let Some(c) = cmp {
                medians.insert((m.name, what), c.demo.median);
            }
        }
        let cells = |c: &Option<Compared>| c.as_ref().map_or("n/a | | ".into(), Compared::cells);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            m.name,
            cells(&one),
            cells(&two),
            cells(&k4),
            cells(&k64),
        );
    }
    let _ = writeln!(md, "\n{}", fast_path_lines(&medians, dd.median));
    md
}

/// What the fast paths gain, from this run's medians: the pipe's against `dd | dd` at
/// 64 KiB, the spinning ring against the semaphore ring, the spin ping against the
/// atomic floor run just before each of its runs. A row not measured in this run shows
/// as "—".
fn fast_path_lines(medians: &HashMap<(&str, &str), f64>, dd: f64) -> String {
    let over = |name: &str, what: &str, base: f64| {
        medians
            .get(&(name, what))
            .filter(|_| base.is_finite() && base > 0.0)
            .map_or("—".into(), |x| format!("{:.2}×", x / base))
    };
    let sem = |what| medians.get(&(SEM_SHM, what)).copied().unwrap_or(f64::NAN);
    let floor = medians
        .get(&(SPIN_SHM, "floor2"))
        .copied()
        .unwrap_or(f64::NAN);
    format!(
        "Fast paths, from the medians above. Pipe at 64 KiB, MiB/s over `dd | dd`'s: plain \
         {}, grown to 4 messages {}, grown + vmsplice {}. The spinning shm ring over the \
         semaphore ring: 4 KiB {}, 64 KiB {}. The spin ping's p50 round trip (2 CPUs) over \
         that of the atomic ping-pong run just before it, the median of those ratios (the \
         floor's median: {} µs): {}.",
        over("pipe", "64k", dd),
        over(SIZED_PIPE, "64k", dd),
        over(VMSPLICE_PIPE, "64k", dd),
        over(SPIN_SHM, "4k", sem("4k")),
        over(SPIN_SHM, "64k", sem("64k")),
        if floor.is_finite() {
            round(floor)
        } else {
            "—".into()
        },
        over(SPIN_SHM, "rtt2/floor2", 1.0),
    )
}

/// The message sizes of the size table: 64 B to 1 MiB, powers of 4.
pub const SIZES: [usize; 8] = [
    64,
    256,
    KIB,
    4 * KIB,
    16 * KIB,
    64 * KIB,
    256 * KIB,
    1 << 20,
];

/// The rows of the size table: one stream, one socket, one shared memory.
pub const SIZE_ROWS: [&str; 3] = ["pipe", "Unix stream socket", SEM_SHM];

/// Throughput against message size for [`SIZE_ROWS`], demo and C interleaved: the
/// markdown table and the same figures as an SVG chart.
pub fn run_sizes(plan: &Plan) -> (String, String) {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Throughput in MiB/s against message size, writer on CPU 0 and reader on CPU 1, \
         {} MiB or {} messages a run, whichever is less; the median of {} runs, demo and \
         C interleaved.\n",
        plan.bulk_bytes >> 20,
        plan.size_messages,
        plan.reps
    );
    let head: Vec<String> = SIZES.iter().map(|&s| size_label(s)).collect();
    let _ = writeln!(md, "| mechanism | {} |", head.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(SIZES.len()));
    let mut series = Vec::new();
    for name in SIZE_ROWS {
        let m = MECHANISMS
            .iter()
            .find(|m| m.name == name)
            .expect("size row");
        eprintln!("measuring {} at each size ...", m.name);
        let mut demo = Vec::new();
        let mut c = Vec::new();
        for size in SIZES {
            let bytes = plan.bulk_bytes.min(size * plan.size_messages);
            let cmp = compare_bulk(m, size, plan.reps, bytes);
            demo.push(cmp.demo.median);
            c.push(cmp.c.as_ref().map_or(f64::NAN, |f| f.0.median));
        }
        for (who, figures) in [("demo", &demo), ("C", &c)] {
            let cells: Vec<String> = figures
                .iter()
                .map(|&f| if f.is_nan() { "no cc".into() } else { round(f) })
                .collect();
            let _ = writeln!(md, "| {name}, {who} | {} |", cells.join(" | "));
        }
        series.push((name, demo, c));
    }
    (md, svg_chart(&series, &machine()))
}

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= KIB => format!("{} KiB", s / KIB),
        s => format!("{s} B"),
    }
}

/// A log-log line chart: x the message size, y MiB/s; each mechanism one colour, the
/// demo a solid line, its C anchor dashed; `machine` under the title. Plain SVG text.
pub fn svg_chart(series: &[(&str, Vec<f64>, Vec<f64>)], machine: &str) -> String {
    const W: f64 = 800.0;
    const H: f64 = 440.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 250.0;
    const TOP: f64 = 50.0;
    const BOTTOM: f64 = 50.0;
    let finite = series
        .iter()
        .flat_map(|(_, d, c)| d.iter().chain(c))
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = finite.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (1.0, 10.0) };
    let (y_lo, y_hi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / (SIZES.len() - 1) as f64;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (y_hi - v.log10()) / (y_hi - y_lo);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"14\">Throughput (MiB/s, log scale) against \
         message size (log scale): the demo solid, its C anchor dashed</text>\n\
         <text x=\"{LEFT}\" y=\"36\" fill=\"#555\">{}</text>",
        xml_escape(machine)
    );
    for (i, &size) in SIZES.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(i),
            H - BOTTOM,
            H - BOTTOM + 18.0,
            size_label(size)
        );
    }
    for p in y_lo as i32..=y_hi as i32 {
        let v = 10f64.powi(p);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{v}</text>",
            y(v),
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0
        );
    }
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    for (k, (name, demo, c)) in series.iter().enumerate() {
        let colour = colours[k % colours.len()];
        for (figures, dash) in [(demo, ""), (c, " stroke-dasharray=\"6 4\"")] {
            let points: Vec<String> = figures
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite() && **v > 0.0)
                .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} \
                 points=\"{}\"/>",
                points.join(" ")
            );
        }
        let ly = TOP + 20.0 + 22.0 * k as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{ly:.1}\" x2=\"{1:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" \
             stroke-width=\"2\"/><text x=\"{2:.1}\" y=\"{3:.1}\">{name}</text>",
            W - RIGHT + 12.0,
            W - RIGHT + 40.0,
            W - RIGHT + 46.0,
            ly + 4.0
        );
    }
    let ly = TOP + 20.0 + 22.0 * series.len() as f64 + 10.0;
    for (k, (what, dash)) in [("demo", ""), ("C anchor", " stroke-dasharray=\"6 4\"")]
        .into_iter()
        .enumerate()
    {
        let ly = ly + 22.0 * k as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{ly:.1}\" x2=\"{1:.1}\" y2=\"{ly:.1}\" stroke=\"#333\" \
             stroke-width=\"2\"{dash}/><text x=\"{2:.1}\" y=\"{3:.1}\">{what}</text>",
            W - RIGHT + 12.0,
            W - RIGHT + 40.0,
            W - RIGHT + 46.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
