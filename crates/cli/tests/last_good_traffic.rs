//! The last good configuration survives hostile file states and restarts, with real
//! processes and traffic (issue 11): `entryway serve` and `entryway proxy` with a real
//! Envoy, requests flowing through the sidecar the whole time, and not one of them may
//! fail while
//!
//! - a FIFO, a link to `/dev/zero` and a 50 MB file appear in the config directory (and
//!   edits next to them still apply);
//! - a copy of a serving resource, pointing elsewhere, appears in a file that sorts first;
//! - the config root is removed (`rm -rf`) and re-created 2 s later;
//! - the control plane is killed, a file is broken meanwhile, and it starts again: the
//!   broken file's resources are served from the last good configuration on disk, and
//!   `/debug/configz`, `/metrics` and `/ready` say so.

mod procs;

use std::time::Duration;

use entryway_testkit::{HttpUpstream, eventually_ok};
use procs::{Load, Ports, WAIT, admin, metric, proxy, se, serve, wait_body, write};

fn configz_until(ports: &Ports, what: &str, f: impl Fn(&str) -> bool) -> String {
    eventually_ok(WAIT, || {
        let (code, body) = admin(ports.admin_addr(), "/debug/configz")?;
        if code == 200 && f(&body) {
            Ok(body)
        } else {
            Err(format!("{what}: not yet"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn traffic_never_fails_through_hostile_files_root_removal_and_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config");
    let state = tmp.path().join("state");
    std::fs::create_dir(&config).expect("mkdir");
    let a = HttpUpstream::start("backend-a").expect("upstream a");
    let b = HttpUpstream::start("backend-b").expect("upstream b");
    let c = HttpUpstream::start("backend-c").expect("upstream c");
    write(
        &config.join("api.yaml"),
        &se("api", "api.example.com", a.port()),
    );
    write(
        &config.join("web.yaml"),
        &se("web", "web.example.com", b.port()),
    );

    let ports = Ports::free();
    let mut cp = serve(&config, &state, &ports, tmp.path().join("serve-1.log"));
    let agent = proxy(
        &ports,
        &tmp.path().join("proxy"),
        tmp.path().join("proxy.log"),
    );
    wait_body(
        ports.proxy_addr(),
        "api.example.com",
        "backend-a",
        &[&cp, &agent],
    );
    wait_body(
        ports.proxy_addr(),
        "web.example.com",
        "backend-b",
        &[&cp, &agent],
    );

    let load = Load::start(
        ports.proxy_addr(),
        vec![
            ("api.example.com".into(), "backend-a".into()),
            ("web.example.com".into(), "backend-b".into()),
        ],
        2,
        Duration::from_millis(10),
        Duration::from_secs(120),
    );

    // 1. Special and oversized files.
    let ok = std::process::Command::new("mkfifo")
        .arg(config.join("fifo.yaml"))
        .status()
        .expect("mkfifo (coreutils) must be installed");
    assert!(ok.success());
    std::os::unix::fs::symlink("/dev/zero", config.join("zero.yaml")).expect("symlink");
    let big = format!(
        "{}# {}\n",
        se("big", "big.example.com", c.port()),
        "x".repeat(50 << 20)
    );
    std::fs::write(config.join("big.yaml"), big).expect("50 MB file");
    let body = configz_until(&ports, "special files rejected", |b| {
        b.contains("fifo.yaml") && b.contains("zero.yaml") && b.contains("more than the limit")
    });
    assert!(
        body.len() < 256 << 10,
        "configz echoes the 50 MB file: {} bytes",
        body.len()
    );
    // Reloads keep working next to them.
    write(
        &config.join("extra.yaml"),
        &se("extra", "extra.example.com", c.port()),
    );
    wait_body(
        ports.proxy_addr(),
        "extra.example.com",
        "backend-c",
        &[&cp, &agent],
    );
    for f in ["fifo.yaml", "zero.yaml", "big.yaml"] {
        std::fs::remove_file(config.join(f)).expect("rm");
    }

    // 2. A copy of `api`, pointing at backend c, in a file that sorts first.
    write(
        &config.join("0copy.yaml"),
        &se("api", "api.example.com", c.port()),
    );
    configz_until(&ports, "duplicate rejected", |b| {
        b.contains("0copy.yaml") && b.contains("duplicate")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        procs::get(ports.proxy_addr(), "api.example.com").expect("api"),
        (200, "backend-a".to_string()),
        "the duplicate must not displace the serving resource"
    );
    std::fs::remove_file(config.join("0copy.yaml")).expect("rm");

    // 3. rm -rf of the config root, re-created 2 s later.
    let saved: Vec<(std::path::PathBuf, String)> = ["api.yaml", "web.yaml", "extra.yaml"]
        .iter()
        .map(|f| {
            let p = config.join(f);
            let text = std::fs::read_to_string(&p).expect("read");
            (p, text)
        })
        .collect();
    std::fs::remove_dir_all(&config).expect("rm -rf");
    configz_until(&ports, "withdrawal held", |b| {
        b.contains("\"withdrawal_held\": {")
    });
    let (_, ready) = admin(ports.admin_addr(), "/ready").expect("ready");
    assert!(
        ready.contains("withdrawal of 3 resource(s) held"),
        "{ready}"
    );
    std::thread::sleep(Duration::from_secs(2));
    std::fs::create_dir(&config).expect("mkdir");
    for (p, text) in &saved {
        write(p, text);
    }
    configz_until(&ports, "withdrawal resolved", |b| {
        b.contains("\"withdrawal_held\": null")
    });

    // 4. Kill the control plane, break api.yaml, start it again.
    cp.signal("KILL");
    cp.wait_exit(WAIT);
    write(
        &config.join("api.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: [unclosed\n",
    );
    let cp2 = serve(&config, &state, &ports, tmp.path().join("serve-2.log"));
    let body = configz_until(&ports, "restart with a broken file", |b| {
        b.contains("\"restored\": {") && b.contains("\"last_good\": 1")
    });
    assert!(body.contains("syntax error"), "{body}");
    let (code, ready) = admin(ports.admin_addr(), "/ready").expect("ready");
    assert_eq!(code, 200);
    assert!(
        ready.contains("1 resource(s) served from their last good version")
            && ready.contains("api.yaml"),
        "{ready}"
    );
    assert_eq!(
        metric(ports.admin_addr(), "entryway_last_good_configs"),
        Some(1.0)
    );
    // Envoy reconnects and keeps serving api from the last good version.
    eventually_ok(WAIT, || {
        let (_, syncz) = admin(ports.admin_addr(), "/debug/syncz")?;
        if syncz.contains("sidecar~") {
            Ok(())
        } else {
            Err("not reconnected".to_string())
        }
    })
    .expect("Envoy reconnected to the restarted control plane");
    std::thread::sleep(Duration::from_secs(1));

    let (ok, failed, failures) = load.finish();
    assert!(ok > 200, "only {ok} requests went through");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed: {failures:?}\n--- serve ---\n{}\n--- serve 2 ---\n{}",
        ok + failed,
        cp.log(),
        cp2.log()
    );
    eprintln!("requests: {ok} ok, {failed} failed");
    drop(agent);
    drop(cp2);
}
