//! `entryway validate` on one file holding 10,000 ServiceEntries (target: under 1 s).
//!
//! Baseline, measured in the same run: parsing the same file with serde_yaml into a
//! generic value — the least any YAML validator has to do. The figure that matters on a
//! noisy machine is the ratio `validate / yaml-parse`.
//!
//! Run: `cargo bench -p entryway --bench validate_10k` (add `-- --quick` for one round).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use entryway::validate::{Args, Output, run};

const COUNT: usize = 10_000;

fn service_entries(n: usize) -> String {
    let mut s = String::with_capacity(n * 600);
    for i in 0..n {
        let resolution = ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"][i % 4];
        let _ = write!(
            s,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se-{i}\n  namespace: ns-{ns}\nspec:\n  hosts:\n  - svc-{i}.example.com\n  ports:\n  - number: 443\n    name: https\n    protocol: TLS\n  - number: 80\n    name: http\n    protocol: HTTP\n  location: MESH_EXTERNAL\n  resolution: {resolution}\n",
            ns = i % 50
        );
        match resolution {
            "STATIC" => {
                let _ = write!(
                    s,
                    "  addresses:\n  - 10.{a}.{b}.0/24\n  endpoints:\n  - address: 10.{a}.{b}.1\n    labels:\n      version: v1\n  - address: 10.{a}.{b}.2\n",
                    a = (i / 256) % 256,
                    b = i % 256
                );
            }
            "DNS" | "DNS_ROUND_ROBIN" => {
                let _ = writeln!(s, "  endpoints:\n  - address: backend-{i}.example.net");
            }
            _ => {}
        }
    }
    s
}

fn time<F: FnMut()>(rounds: usize, mut f: F) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 5 };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ten-thousand.yaml");
    let text = service_entries(COUNT);
    std::fs::write(&path, &text)?;

    let args = Args {
        paths: vec![path.clone()],
        output: Output::Human,
        mesh: None,
        namespace: "default".into(),
        max_file_bytes: entryway_server::files::DEFAULT_MAX_FILE_BYTES,
    };
    // Sanity: every generated entry is valid, so the benchmark measures the success path.
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = run(&args, &mut out, &mut err);
    let summary = String::from_utf8_lossy(&out);
    if status != 0 {
        return Err(format!("generated entries should be valid:\n{}", summary).into());
    }

    let baseline = time(rounds, || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
            .filter_map(|d| serde::Deserialize::deserialize(d).ok())
            .collect();
        assert_eq!(docs.len(), COUNT);
    });
    let validate = time(rounds, || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        assert_eq!(run(&args, &mut out, &mut err), 0);
    });
    let bytes = text.len();
    println!(
        "validate_10k: {COUNT} ServiceEntries, {} KiB, median of {rounds}",
        bytes / 1024
    );
    println!(
        "  baseline serde_yaml parse   {:>8.1} ms",
        baseline.as_secs_f64() * 1e3
    );
    println!(
        "  entryway validate (full)    {:>8.1} ms",
        validate.as_secs_f64() * 1e3
    );
    println!(
        "  ratio validate / yaml-parse {:>8.2}x   target: validate < 1000 ms -> {}",
        validate.as_secs_f64() / baseline.as_secs_f64(),
        if validate < Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
