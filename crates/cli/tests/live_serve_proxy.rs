//! The main job end to end, with real processes: `entryway serve` on a directory of YAML and
//! `entryway proxy` running a real Envoy against it; traffic goes through the sidecar's
//! explicit-proxy port (`curl -x`) to local upstreams. Run for state of the world and Delta.
//!
//! - editing the YAML (change an endpoint, add a host, change a port) changes the traffic
//!   with no restart;
//! - an invalid document is rejected on its own: Envoy keeps the last good config, and
//!   `/debug/configz` and the control plane's log name file, resource, field and reason;
//! - with the control plane killed (SIGKILL) Envoy keeps serving; when it comes back (with an
//!   edit made meanwhile) Envoy reconnects and resyncs;
//! - SIGTERM stops the agent cleanly (Envoy drained and gone).
//!
//! Every wait is a bounded poll.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use entryway_testkit::{HttpUpstream, eventually_ok, free_port, next_base_id};

const WAIT: Duration = Duration::from_secs(30);

fn entryway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_entryway"))
}

/// A child process killed on drop, its stderr in a file.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let file = File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .env("RUST_LOG", "info")
            .spawn()
            .expect("spawn entryway");
        Proc {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&mut self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = eventually_ok(timeout, || match child.try_wait() {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("still running".to_string()),
            Err(e) => Err(e.to_string()),
        })
        .unwrap_or_else(|e| panic!("process did not exit: {e}\n{}", self.log()));
        self.child = None;
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn se(name: &str, host: &str, port: u16, endpoint_port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{host}]\n  ports:\n  - {{number: {port}, name: http, protocol: HTTP}}\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {endpoint_port}}}\n"
    )
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors and `kubectl`-style tools do, so the watcher never reads
    // half a file.
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// `curl -x` through the explicit proxy: (status, body).
fn curl(proxy: SocketAddr, url: &str) -> Result<(u16, String), String> {
    let out: Output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "3",
            "-x",
            &format!("http://{proxy}"),
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .map_err(|e| format!("curl: {e} (install curl: apt-get install curl)"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code: u16 = code.trim().parse().unwrap_or(0);
    if code == 0 {
        return Err(format!(
            "no response: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((code, body.to_string()))
}

/// Polls until `url` answers 200 with `body`.
fn wait_body(proxy: SocketAddr, url: &str, body: &str, what: &str, logs: &[&Proc]) {
    let r = eventually_ok(WAIT, || match curl(proxy, url) {
        Ok((200, b)) if b == body => Ok(()),
        Ok((code, b)) => Err(format!("{code} {b:?}")),
        Err(e) => Err(e),
    });
    if let Err(e) = r {
        let logs: Vec<String> = logs.iter().map(|p| p.log()).collect();
        panic!(
            "{what}: {url} never answered {body:?}: {e}\n--- logs ---\n{}",
            logs.join("\n---\n")
        );
    }
}

/// GET on the control plane's admin port.
fn admin_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let r = entryway_testkit::http_get(addr, "localhost", path).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{path}: status {}", r.status));
    }
    Ok(r.text())
}

struct Ports {
    xds: u16,
    admin: u16,
    proxy: u16,
}

fn serve(dir: &Path, ports: &Ports, log: PathBuf) -> Proc {
    let mut cmd = entryway();
    cmd.arg("serve")
        .arg("--config")
        .arg(dir)
        .args(["--xds-address", &format!("127.0.0.1:{}", ports.xds)])
        .args(["--admin-address", &format!("127.0.0.1:{}", ports.admin)])
        // The secure port on a kernel-chosen port; the CA's state beside the config.
        .args(["--secure-xds-address", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.with_extension("state"));
    Proc::spawn(cmd, log)
}

fn scenario(delta: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    let a = HttpUpstream::start("backend-a").expect("upstream a");
    let b = HttpUpstream::start("backend-b").expect("upstream b");
    let c = HttpUpstream::start("backend-c").expect("upstream c");
    let api = config.join("api.yaml");
    write(&api, &se("api", "api.example.com", 80, a.port()));

    let ports = Ports {
        xds: free_port().expect("port"),
        admin: free_port().expect("port"),
        proxy: free_port().expect("port"),
    };
    let admin: SocketAddr = ([127, 0, 0, 1], ports.admin).into();
    let explicit: SocketAddr = ([127, 0, 0, 1], ports.proxy).into();
    let mut cp = serve(&config, &ports, tmp.path().join("serve-1.log"));

    let mut cmd = entryway();
    cmd.arg("proxy")
        .args(["--xds", &format!("127.0.0.1:{}", ports.xds)])
        .args(["--envoy-admin-port", "0"])
        .args(["--explicit-proxy", &explicit.to_string()])
        .args(["--base-id", &next_base_id().to_string()])
        .arg("--work-dir")
        .arg(tmp.path().join("proxy"));
    if delta {
        cmd.arg("--delta");
    }
    let mut agent = Proc::spawn(cmd, tmp.path().join("proxy.log"));

    // 1. The ServiceEntry routes to backend a.
    wait_body(
        explicit,
        "http://api.example.com/",
        "backend-a",
        "initial config",
        &[&cp, &agent],
    );

    // 2. Change the endpoint: backend b, without restarting anything.
    write(&api, &se("api", "api.example.com", 80, b.port()));
    wait_body(
        explicit,
        "http://api.example.com/",
        "backend-b",
        "endpoint change",
        &[&cp, &agent],
    );

    // 3. Add a host in a new file.
    write(
        &config.join("extra.yaml"),
        &se("extra", "extra.example.com", 80, c.port()),
    );
    wait_body(
        explicit,
        "http://extra.example.com/",
        "backend-c",
        "added host",
        &[&cp, &agent],
    );

    // 4. Change the port: 80 → 8080; the old port stops routing to it.
    write(&api, &se("api", "api.example.com", 8080, b.port()));
    wait_body(
        explicit,
        "http://api.example.com:8080/",
        "backend-b",
        "port change",
        &[&cp, &agent],
    );
    eventually_ok(WAIT, || match curl(explicit, "http://api.example.com/") {
        Ok((200, body)) if body == "backend-b" => Err("port 80 still routes".to_string()),
        Ok(_) | Err(_) => Ok(()),
    })
    .expect("port 80 no longer routes to the service");

    // 5. An invalid document: the last good version stays in force, and configz + the log
    //    name the file, resource, field and reason.
    let broken =
        se("api", "api.example.com", 8080, b.port()).replace("number: 8080", "number: 70000");
    write(&api, &broken);
    let configz = eventually_ok(WAIT, || {
        let body = admin_get(admin, "/debug/configz")?;
        if body.contains("70000") || body.contains("spec.ports[0].number") {
            Ok(body)
        } else {
            Err("rejection not visible yet".to_string())
        }
    })
    .expect("/debug/configz shows the rejection");
    for needle in ["api.yaml", "ServiceEntry", "api", "spec.ports[0].number"] {
        assert!(
            configz.contains(needle),
            "configz lacks {needle:?}: {configz}"
        );
    }
    let log = eventually_ok(WAIT, || {
        let log = cp.log();
        if log.contains("config rejected") {
            Ok(log)
        } else {
            Err("no rejection log line yet")
        }
    })
    .expect("rejection logged");
    let line = log
        .lines()
        .find(|l| l.contains("config rejected"))
        .expect("line");
    for needle in ["api.yaml", "default/api", "spec.ports[0].number"] {
        assert!(line.contains(needle), "log line lacks {needle:?}: {line}");
    }
    // Envoy keeps serving the last good config.
    let (code, body) = curl(explicit, "http://api.example.com:8080/").expect("still served");
    assert_eq!((code, body.as_str()), (200, "backend-b"));

    // 6. Kill the control plane: Envoy keeps serving.
    cp.signal("KILL");
    cp.wait_exit(WAIT);
    for _ in 0..5 {
        let (code, body) = curl(explicit, "http://api.example.com:8080/")
            .expect("Envoy serves without its control plane");
        assert_eq!((code, body.as_str()), (200, "backend-b"));
    }
    // An edit made while it is down (the file is valid again, endpoint a) is picked up when it
    // comes back; Envoy reconnects by itself and resyncs.
    write(&api, &se("api", "api.example.com", 8080, a.port()));
    let cp2 = serve(&config, &ports, tmp.path().join("serve-2.log"));
    wait_body(
        explicit,
        "http://api.example.com:8080/",
        "backend-a",
        "resync after control plane restart",
        &[&cp2, &agent],
    );
    let syncz = eventually_ok(WAIT, || {
        let body = admin_get(admin, "/debug/syncz")?;
        if body.contains("sidecar~") {
            Ok(body)
        } else {
            Err(format!("proxy not listed: {body}"))
        }
    })
    .expect("the reconnected proxy shows in /debug/syncz");
    assert!(
        syncz.contains(if delta { "delta" } else { "sotw" }),
        "{syncz}"
    );

    // 7. SIGTERM: the agent drains and stops Envoy, then exits 0.
    agent.signal("TERM");
    let status = agent.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "agent exit {status:?}\n{}", agent.log());
    drop(cp2);
}

#[test]
fn live_edits_state_of_the_world() {
    scenario(false);
}

#[test]
fn live_edits_delta() {
    scenario(true);
}

/// A plug-in CA directory that is missing or broken stops `serve` at start with the file and
/// the reason; no new root is made in its place.
#[test]
fn a_missing_or_broken_ca_dir_is_a_start_up_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    let broken = tmp.path().join("broken-ca");
    std::fs::create_dir(&broken).expect("mkdir");
    for name in ["ca-cert.pem", "ca-key.pem", "root-cert.pem"] {
        std::fs::write(broken.join(name), "not PEM").expect("write");
    }
    for (ca_dir, expect) in [
        (tmp.path().join("no-such-dir"), "ca-cert.pem"),
        (broken, "ca-cert.pem"),
    ] {
        let out = entryway()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args([
                "--xds-address",
                "127.0.0.1:0",
                "--admin-address",
                "127.0.0.1:0",
            ])
            .args(["--secure-xds-address", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .arg("--ca-dir")
            .arg(&ca_dir)
            .output()
            .expect("run serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "serve started with {}",
            ca_dir.display()
        );
        assert!(
            stderr.contains("mesh CA") && stderr.contains(expect),
            "{}: {stderr}",
            ca_dir.display()
        );
        assert!(
            !tmp.path().join("state/ca").exists(),
            "a self-signed root was made instead"
        );
    }
}
