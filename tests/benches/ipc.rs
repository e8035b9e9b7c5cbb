//! `cargo bench -p ipc-tests`: every mechanism side by side with its C anchor
//! (DESIGN §6), then throughput against message size, also written as an SVG chart.
//!
//! `cargo bench -p ipc-tests --bench ipc -- --quick` runs the same code in seconds;
//! words after `--` keep only the rows whose name contains one of them
//! (`-- pipe FIFO`), and the size table only if one of them is `sizes`.

use ipc_tests::bench::{MECHANISMS, Plan, machine, run_all, run_sizes};

fn main() {
    let mut quick = std::env::var_os("IPC_BENCH_QUICK").is_some();
    let mut only = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--bench" => {} // cargo bench passes it to every bench target
            word => only.push(word.to_string()),
        }
    }
    let rows: Vec<_> = MECHANISMS
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|w| m.name.contains(w.as_str())))
        .collect();
    let plan = if quick { Plan::quick() } else { Plan::full() };
    eprintln!("machine: {}", machine());
    let table = run_all(&plan, &rows);
    print!("Machine: {}\n\n{table}", machine());
    if !only.is_empty() && !only.iter().any(|w| w == "sizes") {
        return;
    }
    let (sizes, svg) = run_sizes(&plan);
    // target/bench/throughput.svg, beside target/release where the demos are.
    let dir = ipc_tests::demo_bin_dir()
        .parent()
        .expect("target dir")
        .join("bench");
    let chart = dir.join("throughput.svg");
    let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&chart, svg));
    println!();
    print!("{sizes}");
    match written {
        Ok(()) => println!("\nChart: {}", chart.display()),
        Err(e) => println!("\nChart not written to {}: {e}", chart.display()),
    }
}
