//! Soak: `entryway serve` and `entryway proxy` with a real Envoy under steady traffic while
//! the configuration churns — an edit every second (an endpoint moved between two
//! upstreams, a resource added and removed), invalid documents (a new one, and invalid
//! edits of a serving resource), control-plane restarts (SIGKILL, then start again on the
//! same state directory, so the proxy reconnects under load). Zero requests may fail, and
//! memory must stay flat.
//!
//! Length: `ENTRYWAY_SOAK_SECS` (default 60; CI runs the default). The figures (requests,
//! failures, resident memory of each process at the start and the end) are printed.

mod procs;

use std::time::{Duration, Instant};

use entryway_testkit::HttpUpstream;
use procs::{Load, Ports, WAIT, admin, proxy, se, serve, wait_body, write};

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn envoy_pid(work: &std::path::Path) -> u32 {
    entryway_testkit::eventually_ok(WAIT, || match procs::envoys_of(work).as_slice() {
        [pid] => Ok(*pid),
        other => Err(format!("{other:?}")),
    })
    .expect("Envoy of the agent")
}

#[test]
fn soak_edits_invalid_documents_and_restarts_under_load() {
    let secs: u64 = std::env::var("ENTRYWAY_SOAK_SECS")
        .ok()
        .map(|v| v.parse().expect("ENTRYWAY_SOAK_SECS: a number of seconds"))
        .unwrap_or(60)
        .max(10);
    let length = Duration::from_secs(secs);
    let restart_every = Duration::from_secs(15);

    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config");
    let state = tmp.path().join("state");
    std::fs::create_dir(&config).expect("mkdir");
    let api = HttpUpstream::start("api").expect("upstream");
    let web = HttpUpstream::start("web").expect("upstream");
    // Two upstreams answering the same body: the endpoint moves, the answer does not.
    let churn = [
        HttpUpstream::start("churn").expect("upstream"),
        HttpUpstream::start("churn").expect("upstream"),
    ];
    write(
        &config.join("api.yaml"),
        &se("api", "api.example.com", api.port()),
    );
    write(
        &config.join("web.yaml"),
        &se("web", "web.example.com", web.port()),
    );
    write(
        &config.join("churn.yaml"),
        &se("churn", "churn.example.com", churn[0].port()),
    );
    for i in 0..20 {
        write(
            &config.join(format!("filler-{i:02}.yaml")),
            &se(
                &format!("filler-{i}"),
                &format!("filler-{i}.example.com"),
                api.port(),
            ),
        );
    }

    let ports = Ports::free();
    let work = tmp.path().join("proxy");
    let mut generation = 1;
    let mut cp = serve(&config, &state, &ports, tmp.path().join("serve-1.log"));
    let agent = proxy(&ports, &work, tmp.path().join("proxy.log"));
    for (h, b) in [("api", "api"), ("web", "web"), ("churn", "churn")] {
        wait_body(
            ports.proxy_addr(),
            &format!("{h}.example.com"),
            b,
            &[&cp, &agent],
        );
    }
    let envoy = envoy_pid(&work);

    let load = Load::start(
        ports.proxy_addr(),
        vec![
            ("api.example.com".into(), "api".into()),
            ("web.example.com".into(), "web".into()),
            ("churn.example.com".into(), "churn".into()),
            ("filler-7.example.com".into(), "api".into()),
        ],
        4,
        Duration::from_millis(20),
        length + Duration::from_secs(60),
    );
    // Warm-up before the first memory sample.
    std::thread::sleep(Duration::from_secs(3));
    let first = (rss_kib(cp.pid()), rss_kib(agent.pid()), rss_kib(envoy));
    let mut cp_rss_at_restart = Vec::new();

    let started = Instant::now();
    let mut last_restart = Instant::now();
    let mut tick = 0u64;
    while started.elapsed() < length {
        tick += 1;
        // An edit every second: the churn endpoint moves.
        let port = churn[(tick % 2) as usize].port();
        write(
            &config.join("churn.yaml"),
            &se("churn", "churn.example.com", port),
        );
        match tick % 4 {
            // A resource added, then removed.
            0 => write(
                &config.join("extra.yaml"),
                &se("extra", "extra.example.com", api.port()),
            ),
            1 => {
                let _ = std::fs::remove_file(config.join("extra.yaml"));
            }
            // An invalid edit of a serving resource (its last good version stays), fixed.
            2 => write(
                &config.join("web.yaml"),
                &se("web", "web.example.com", web.port()).replace("number: 80", "number: 0"),
            ),
            _ => write(
                &config.join("web.yaml"),
                &se("web", "web.example.com", web.port()),
            ),
        }
        // A document that is never valid, rewritten each time with other garbage.
        write(
            &config.join("bad.yaml"),
            &format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: bad-{tick}}}\nspec:\n  hosts: [\"*\"]\n  bogus: {tick}\n"
            ),
        );
        if last_restart.elapsed() >= restart_every {
            cp_rss_at_restart.push(rss_kib(cp.pid()));
            cp.signal("KILL");
            cp.wait_exit(WAIT);
            generation += 1;
            cp = serve(
                &config,
                &state,
                &ports,
                tmp.path().join(format!("serve-{generation}.log")),
            );
            last_restart = Instant::now();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // Let the last edits and the last reconnect settle, then take the final samples.
    std::thread::sleep(Duration::from_secs(3));
    let (code, ready) = admin(ports.admin_addr(), "/ready").expect("ready");
    let last = (rss_kib(cp.pid()), rss_kib(agent.pid()), rss_kib(envoy));
    let (ok, failed, failures) = load.finish();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "soak {secs} s: {ok} requests ok, {failed} failed ({:.0} rps); {tick} edit rounds, {} control-plane restarts",
        (ok + failed) as f64 / (elapsed + 3.0),
        generation - 1
    );
    eprintln!(
        "RSS KiB (first → last): control plane {:?} → {:?} (at each restart {:?}), agent {:?} → {:?}, Envoy {:?} → {:?}",
        first.0, last.0, cp_rss_at_restart, first.1, last.1, first.2, last.2
    );
    assert_eq!(code, 200, "{ready}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed: {failures:?}\n{}",
        ok + failed,
        cp.log()
    );
    assert!(
        ok as f64 > elapsed * 20.0,
        "too little traffic: {ok} in {elapsed:.0} s"
    );
    // Flat memory: the processes that live through the whole run grow by less than half
    // (plus a small allowance for allocator warm-up) from the first sample to the last;
    // each control-plane generation ends no larger than the first one did.
    let flat = |what: &str, a: Option<u64>, b: Option<u64>| {
        let (a, b) = (a.expect("rss"), b.expect("rss"));
        assert!(
            b <= a + a / 2 + 8 * 1024,
            "{what} memory grew from {a} KiB to {b} KiB"
        );
    };
    flat("agent", first.1, last.1);
    flat("Envoy", first.2, last.2);
    if let Some(Some(first_cp)) = cp_rss_at_restart.first().copied() {
        for r in cp_rss_at_restart.iter().chain([&last.0]) {
            flat("control plane", Some(first_cp), *r);
        }
    }
    drop(agent);
    drop(cp);
}
