//! `entryway demo` end to end (real Envoy, real stand-ins): it finishes well within a minute
//! and every governance effect it reports is the configured one, counted at the stand-ins.

use std::process::Command;
use std::time::{Duration, Instant};

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
}

/// The number just before `suffix` in `line` (e.g. `"10 x 200"` with suffix `" x 200"`).
fn count_before(line: &str, suffix: &str) -> usize {
    let i = line
        .find(suffix)
        .unwrap_or_else(|| panic!("{suffix:?} not in {line:?}"));
    line[..i]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {suffix:?} in {line:?}"))
}

#[test]
fn demo_shows_each_governance_effect() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_entryway"))
        .arg("demo")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run entryway demo");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "demo failed: {stdout}\n{stderr}");
    assert!(elapsed < Duration::from_secs(60), "demo took {elapsed:?}");

    // Retries: every request succeeds, the API saw exactly 3 attempts per request.
    let retries = line(&stdout, "retries");
    assert_eq!(count_before(retries, " x 200"), 10, "{retries}");
    assert_eq!(count_before(retries, " attempts"), 30, "{retries}");

    // Timeout: all three give up with 504 well before the API's 2 s.
    let timeout = line(&stdout, "timeout");
    assert_eq!(count_before(timeout, " x 504"), 3, "{timeout}");

    // Fault: 100 samples at p = 0.3 (mean 30, sd 4.6); [8, 55] is beyond 4.8 sd on each
    // side, a false failure has probability < 1e-6. Injected + passed = 100, and the API
    // saw only the passed ones.
    let fault = line(&stdout, "fault injection");
    let injected = count_before(fault, " x 503 injected");
    let passed = count_before(fault, " x 200");
    assert!((8..=55).contains(&injected), "{fault}");
    assert_eq!(injected + passed, 100, "{fault}");
    assert!(fault.ends_with(&format!("the API saw {passed}")), "{fault}");

    // Circuit breaker: 1 connection + 1 pending under 10 concurrent requests overflows.
    let breaker = line(&stdout, "circuit breaker");
    assert!(count_before(breaker, " x 503 overflow") >= 1, "{breaker}");
    assert!(count_before(breaker, " x 200") >= 1, "{breaker}");

    // TLS origination with a client certificate, verified at the server.
    let tls = line(&stdout, "TLS origination");
    assert!(
        tls.contains("-> 200 \"secure: hello over mutual TLS\""),
        "{tls}"
    );
    assert_eq!(count_before(tls, " request(s) over mutual TLS"), 1, "{tls}");

    let tcp = line(&stdout, "TCP");
    assert!(tcp.contains("echoed \"hello\""), "{tcp}");
    let blocked = line(&stdout, "blocked");
    assert!(blocked.contains("-> 502"), "{blocked}");
}
