//! What the live dashboard costs a run: a generated deployment of about 1,000 servers applied in
//! the lab at `--speed 0`, by the real binary, without a dashboard and with `apply --serve`
//! and a connected event-stream client reading every snapshot. Prints each run's wall time, the
//! medians and the slowdown (target: under 5 %), and how many snapshots the client got.
//!
//! `cargo bench -p sfbpatch --bench serve [-- SERVERS [ROUNDS]]` (default 1000 servers, 3
//! rounds; the two kinds of run alternate so that drift in the machine's load hits both).

// The shared helpers; this benchmark drives the binary and uses only some of them.
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn sfbpatch(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfbpatch"));
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("SFBPATCH_STATE")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// What the event-stream client saw.
#[derive(Default)]
struct Seen {
    snapshots: usize,
    bytes: usize,
}

/// Reads `/api/runs/1/events` until the server goes away; retries until the run exists.
fn follow(addr: SocketAddr, done: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    while !done.load(Ordering::SeqCst) {
        let Ok(mut c) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = write!(
            c,
            "GET /api/runs/1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        );
        let mut buf = vec![0u8; 1 << 16];
        let mut head = Vec::new();
        let mut ok = None;
        loop {
            let n = match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            seen.bytes += n;
            if ok.is_none() {
                head.extend_from_slice(&buf[..n]);
                if head.len() >= 12 {
                    ok = Some(head.starts_with(b"HTTP/1.1 200"));
                }
            }
            if ok == Some(false) {
                break;
            }
            seen.snapshots += buf[..n]
                .windows(15)
                .filter(|w| w == b"event: snapshot")
                .count();
        }
        if ok == Some(true) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

/// One `apply` on a fresh lab; with `serve`, beside `apply --serve` and a client on its event
/// stream. Wall time of the apply process, and what the client saw.
fn run(dir: &Path, round: usize, serve: bool) -> (f64, Option<Seen>) {
    let lab = format!("lab-{round}-{serve}");
    let state = format!("state-{round}-{serve}.db");
    let o = sfbpatch(dir)
        .args([
            "lab",
            "init",
            &lab,
            "--topology",
            "fleet.xml",
            "--speed",
            "0",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(o.success(), "lab init");
    let mut args = vec![
        "apply",
        "fleet.xml",
        "--package",
        "package.toml",
        "--lab",
        &lab,
        "--state",
        &state,
        "--yes",
        "--max-parallel",
        "16",
        "--format",
        "json",
    ];
    if serve {
        args.extend(["--serve", "127.0.0.1:0"]);
    }
    let start = Instant::now();
    let mut child = sfbpatch(dir)
        .args(&args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let client = serve.then(|| {
        let mut lines = BufReader::new(stderr).lines();
        let addr: SocketAddr = loop {
            let line = lines.next().expect("apply names its dashboard").unwrap();
            if let Some(url) = line.strip_prefix("live dashboard: http://") {
                break url.trim_end_matches('/').parse().unwrap();
            }
        };
        // Keep draining stderr so that the run never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        let done = done.clone();
        std::thread::spawn(move || follow(addr, &done))
    });
    let status = child.wait().unwrap();
    let wall = start.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    assert!(
        status.success() || status.code() == Some(1),
        "apply: {status}"
    );
    (wall, client.map(|c| c.join().unwrap()))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let servers = args.first().copied().unwrap_or(1000);
    let rounds = args.get(1).copied().unwrap_or(3).max(1);
    let dir = tempfile::tempdir().unwrap();
    let package = support::package(dir.path());
    let (topology, _, plan) = support::fleet(servers, 7, &package);
    std::fs::write(dir.path().join("fleet.xml"), &topology).unwrap();
    std::fs::write(
        dir.path().join("package.toml"),
        include_str!("../assets/demo-package.toml"),
    )
    .unwrap();
    println!(
        "serve: {} servers at --speed 0, --max-parallel 16, {rounds} round(s)",
        plan.servers.len()
    );
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (plain, _) = run(dir.path(), round, false);
        let (served, seen) = run(dir.path(), round, true);
        let seen = seen.unwrap_or_default();
        println!(
            "round {round}: without a dashboard {plain:.2} s; with apply --serve and a connected \
             client {served:.2} s ({} snapshots, {:.1} MB streamed)",
            seen.snapshots,
            seen.bytes as f64 / 1e6
        );
        without.push(plain);
        with.push(served);
    }
    let (a, b) = (median(without), median(with));
    println!(
        "serve: median wall time {a:.2} s without, {b:.2} s with a connected client: slowdown {:+.1} % (target under 5 %)",
        (b / a - 1.0) * 100.0
    );
}
