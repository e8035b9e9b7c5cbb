//! The benchmark's quick mode, so that `cargo test` keeps it from rotting: the same
//! code as `cargo bench -p ipc-tests`, with tiny counts and one repetition. It checks
//! the tables' shape, that every figure is a number, and that every C anchor ran
//! where a C compiler is installed; never the figures themselves (they depend on the
//! machine and on what else runs).

use ipc_tests::bench::{MECHANISMS, Plan, SIZE_ROWS, SIZES, run_all, run_sizes};

/// The first number in a table cell like "2.70 ±0% / 3.20 ±0%".
fn first_number(cell: &str) -> Option<f64> {
    cell.split_whitespace().next()?.parse().ok()
}

fn cc_installed() -> bool {
    std::process::Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A positive number in `cells[i]`, or a panic naming `what`.
fn positive(cells: &[&str], i: usize, what: &str, row: &str) -> f64 {
    let x = first_number(cells[i]).unwrap_or_else(|| panic!("{what}: not a number: {row}"));
    assert!(x > 0.0, "{what} is {x}: {row}");
    x
}

#[test]
fn quick_bench_measures_every_mechanism_beside_its_c_anchor() {
    let cc = cc_installed();
    let rows: Vec<_> = MECHANISMS.iter().collect();
    let table = run_all(&Plan::quick(), &rows);
    for m in MECHANISMS {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", m.name)))
            .unwrap_or_else(|| panic!("no row for {}:\n{table}", m.name));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // cells: "", name, then (demo, C, demo ÷ C) for RTT 1 CPU, RTT 2 CPUs,
        // MiB/s 4 KiB, MiB/s 64 KiB, then "".
        assert_eq!(cells.len(), 15, "{row}");
        let groups = [
            (2, "round trip on one CPU", m.pings),
            (5, "round trip on two CPUs", m.pings),
            (8, "throughput at 4 KiB", m.max_bulk.is_some()),
            (11, "throughput at 64 KiB", m.max_bulk.is_some()),
        ];
        assert!(m.anchor.is_some(), "{}: every row has its C anchor", m.name);
        for (i, what, measured) in groups {
            if !measured {
                assert_eq!(cells[i], "n/a", "{}: {what}: {row}", m.name);
                continue;
            }
            positive(&cells, i, &format!("{}: {what}", m.name), row);
            match (m.anchor, cc) {
                (None, _) => assert_eq!(cells[i + 1], "—", "{row}"),
                (Some(_), false) => assert_eq!(cells[i + 1], "no cc", "{row}"),
                (Some(_), true) => {
                    positive(&cells, i + 1, &format!("{}: {what}, C", m.name), row);
                    positive(&cells, i + 2, &format!("{}: {what}, ratio", m.name), row);
                }
            }
        }
    }
    // The fast paths' gains: six ratios, each measured in this run.
    let gains = table
        .lines()
        .find(|l| l.starts_with("Fast paths, from the medians above."))
        .unwrap_or_else(|| panic!("no fast-path line:\n{table}"));
    assert_eq!(gains.matches('×').count(), 6, "{gains}");
    assert!(!gains.contains('—'), "a fast path not measured: {gains}");
    for baseline in ["*memcpy", "*atomic ping-pong", "*dd"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("| {baseline}"))),
            "{table}"
        );
    }
}

#[test]
fn quick_size_table_and_chart_have_every_size() {
    let (table, svg) = run_sizes(&Plan::quick());
    for name in SIZE_ROWS {
        for who in ["demo", "C"] {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| {name}, {who} |")))
                .unwrap_or_else(|| panic!("no row for {name}, {who}:\n{table}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(cells.len(), SIZES.len() + 3, "{row}");
            for i in 2..2 + SIZES.len() {
                if who == "C" && !cc_installed() {
                    assert_eq!(cells[i], "no cc", "{row}");
                } else {
                    positive(&cells, i, &format!("{name}, {who}"), row);
                }
            }
        }
    }
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    // One line for each demo and each C anchor, every point on it.
    let lines: Vec<&str> = svg.lines().filter(|l| l.contains("<polyline")).collect();
    assert_eq!(lines.len(), 2 * SIZE_ROWS.len(), "{svg}");
    let points = lines[0].split("points=\"").nth(1).unwrap_or("");
    assert_eq!(points.split_whitespace().count(), SIZES.len(), "{svg}");
}
