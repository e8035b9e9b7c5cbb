//! `cargo bench -p ipc-tests`: every mechanism side by side (DESIGN §6).
//!
//! `cargo bench -p ipc-tests -- --quick` runs the same code in seconds; words after
//! `--` keep only the rows whose name contains one of them (`-- pipe FIFO`).

use ipc_tests::bench::{MECHANISMS, Plan, machine, run_all};

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
    println!("Machine: {}\n", machine());
    print!("{table}");
}
