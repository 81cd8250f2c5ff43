//! Read + derive time for generated published topologies of 1,000 and 5,000 pools.
//!
//! `cargo bench -p sfbpatch-topology --bench read`. Prints the best of several runs, the
//! throughput in pools per second, and the process's peak resident memory (VmHWM).

use std::hint::black_box;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects sizes by number.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    println!("read_topology + derive, best of {RUNS} runs");
    let mut previous: Option<(usize, Duration)> = None;
    for pools in [1_000usize, 5_000] {
        if !filter.is_empty()
            && !filter
                .iter()
                .any(|f| pools.to_string().contains(f.as_str()))
        {
            continue;
        }
        let text = sfbpatch_topology::generate(pools, 2024);
        let mut best = Duration::MAX;
        for _ in 0..RUNS {
            let start = Instant::now();
            let deployment = sfbpatch_topology::load(black_box(&text), "generated.xml")
                .expect("generated topologies are valid");
            let elapsed = start.elapsed();
            assert_eq!(deployment.pools.len(), pools);
            black_box(deployment);
            best = best.min(elapsed);
        }
        let per_second = pools as f64 / best.as_secs_f64();
        print!(
            "{pools:>6} pools  {:>6.1} MB  {:>8.1} ms  {:>9.0} pools/s",
            text.len() as f64 / 1e6,
            best.as_secs_f64() * 1e3,
            per_second
        );
        if let Some((n, t)) = previous {
            let ratio = best.as_secs_f64() / t.as_secs_f64();
            print!(
                "  ({ratio:.2}x the time of {n} pools for {:.0}x the pools)",
                pools as f64 / n as f64
            );
        }
        println!();
        previous = Some((pools, best));
    }
    match peak_rss_kib() {
        Some(kib) => println!(
            "peak resident memory (VmHWM): {:.1} MiB",
            kib as f64 / 1024.0
        ),
        None => println!("peak resident memory: unavailable (no /proc/self/status)"),
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
