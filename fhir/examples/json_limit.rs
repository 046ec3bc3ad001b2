//! The JSON ceiling of the load benchmark: how many times per second one core parses a resource
//! body into a `serde_json::Value` and serialises it back (the work every write and every
//! parsed read does at least once), with the server's serde_json features.
//!
//! `cargo run --release -p fhir --example json_limit -- BODY.json [SECONDS]` prints
//! `<MB/s> <bodies/s>` for one core; conformance/bench/run.sh reports scenarios against it.

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: json_limit BODY.json [SECONDS]");
        std::process::exit(2);
    };
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let body = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("json_limit: cannot read {path}: {e}");
        std::process::exit(2);
    });
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
        eprintln!("json_limit: {path} is not JSON: {e}");
        std::process::exit(2);
    }
    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut rounds: u64 = 0;
    let mut written: usize = 0;
    while started.elapsed() < budget {
        for _ in 0..256 {
            let value: serde_json::Value =
                serde_json::from_slice(std::hint::black_box(&body)).expect("checked above");
            written += serde_json::to_vec(&value)
                .expect("a Value serialises")
                .len();
            rounds += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    std::hint::black_box(written);
    let megabytes = (rounds as f64 * body.len() as f64) / 1e6;
    println!("{:.1} {:.0}", megabytes / elapsed, rounds as f64 / elapsed);
}
