//! The benchmark's quick mode, so that `cargo test` keeps it from rotting: the same
//! code as `cargo bench -p ipc-tests`, with tiny counts and one repetition. It checks
//! the table's shape and that every figure is a number, never the figures themselves
//! (they depend on the machine and on what else runs).

use ipc_tests::bench::{MECHANISMS, Plan, run_all};

/// The first number in a table cell like "2.70 ±0% / 3.20 ±0%".
fn first_number(cell: &str) -> Option<f64> {
    cell.split_whitespace().next()?.parse().ok()
}

#[test]
fn quick_bench_measures_every_mechanism() {
    let rows: Vec<_> = MECHANISMS.iter().collect();
    let table = run_all(&Plan::quick(), &rows);
    for m in MECHANISMS {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", m.name)))
            .unwrap_or_else(|| panic!("no row for {}:\n{table}", m.name));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // cells: "", name, MiB/s 64K, x memcpy, MiB/s 4K, RTT 1 CPU, RTT 2 CPUs, x atomic, ""
        for (i, what) in [(5, "round trip on one CPU"), (6, "round trip on two CPUs")] {
            let rtt = first_number(cells[i]).unwrap_or_else(|| panic!("{}: {what}: {row}", m.name));
            assert!(rtt > 0.0, "{}: {what} is {rtt}: {row}", m.name);
        }
        if m.max_bulk.is_some() {
            for (i, what) in [(2, "throughput at 64 KiB"), (4, "throughput at 4 KiB")] {
                let mib =
                    first_number(cells[i]).unwrap_or_else(|| panic!("{}: {what}: {row}", m.name));
                assert!(mib > 0.0, "{}: {what} is {mib}: {row}", m.name);
            }
        }
    }
    for baseline in ["*memcpy", "*atomic ping-pong", "*dd"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("| {baseline}"))),
            "{table}"
        );
    }
}
