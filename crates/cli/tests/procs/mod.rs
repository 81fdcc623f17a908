//! Shared by the tests that run the real `entryway` binary (`serve`, `proxy`, `up`) with a
//! real Envoy: processes stopped by their id on drop, config file writes, a steady load of
//! requests through the sidecar's explicit proxy with a count of failures.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use entryway_testkit::http::{HttpRequest, send};
use entryway_testkit::{eventually_ok, free_port, next_base_id};

pub const WAIT: Duration = Duration::from_secs(30);

pub fn entryway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_entryway"))
}

/// A child process killed (by its pid) on drop, its stderr in a file.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
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

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&mut self, sig: &str) {
        let pid = self.pid();
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
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

/// Writes by rename, as editors and deployment tools do (the watcher never reads half a
/// file).
pub fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A STATIC HTTP ServiceEntry of `host`:80 to 127.0.0.1:`endpoint_port`.
pub fn se(name: &str, host: &str, endpoint_port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{host}]\n  ports:\n  - {{number: 80, name: http, protocol: HTTP}}\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {endpoint_port}}}\n"
    )
}

/// Ports of one control plane and one sidecar.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub xds: u16,
    pub admin: u16,
    pub proxy: u16,
    pub envoy_admin: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            xds: free_port().expect("port"),
            admin: free_port().expect("port"),
            proxy: free_port().expect("port"),
            envoy_admin: free_port().expect("port"),
        }
    }

    pub fn admin_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.admin).into()
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.proxy).into()
    }
}

pub fn serve(config: &Path, state: &Path, ports: &Ports, log: PathBuf) -> Proc {
    let mut cmd = entryway();
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .args(["--xds-address", &format!("127.0.0.1:{}", ports.xds)])
        .args(["--admin-address", &format!("127.0.0.1:{}", ports.admin)])
        // The secure port on a kernel-chosen port: tests run side by side.
        .args(["--secure-xds-address", "127.0.0.1:0"]);
    Proc::spawn(cmd, log)
}

/// `entryway proxy` (or `up` with `extra` = serve flags) with its own base id, admin port
/// and explicit-proxy address.
pub fn proxy_cmd(sub: &str, ports: &Ports, work: &Path, base_id: u32) -> Command {
    let mut cmd = entryway();
    cmd.arg(sub)
        .args(["--envoy-admin-port", &ports.envoy_admin.to_string()])
        .args(["--explicit-proxy", &ports.proxy_addr().to_string()])
        .args(["--base-id", &base_id.to_string()])
        .arg("--work-dir")
        .arg(work);
    if sub == "proxy" {
        cmd.args(["--xds", &format!("127.0.0.1:{}", ports.xds)]);
    }
    cmd
}

pub fn proxy(ports: &Ports, work: &Path, log: PathBuf) -> Proc {
    Proc::spawn(proxy_cmd("proxy", ports, work, next_base_id()), log)
}

/// One GET through the explicit proxy: (status, body).
pub fn get(proxy: SocketAddr, host: &str) -> Result<(u16, String), String> {
    let url = format!("http://{host}/");
    let r = send(
        proxy,
        &HttpRequest {
            timeout: Duration::from_secs(3),
            ..HttpRequest::get(host, &url)
        },
    )
    .map_err(|e| e.to_string())?;
    Ok((r.status, r.text()))
}

/// Polls until `host` answers 200 with `body`.
pub fn wait_body(proxy: SocketAddr, host: &str, body: &str, logs: &[&Proc]) {
    let r = eventually_ok(WAIT, || match get(proxy, host) {
        Ok((200, b)) if b == body => Ok(()),
        Ok((code, b)) => Err(format!("{code} {b:?}")),
        Err(e) => Err(e),
    });
    if let Err(e) = r {
        let logs: Vec<String> = logs.iter().map(|p| p.log()).collect();
        panic!(
            "{host} never answered {body:?}: {e}\n--- logs ---\n{}",
            logs.join("\n---\n")
        );
    }
}

/// GET on the control plane's admin port: (status, body).
pub fn admin(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let r = entryway_testkit::http_get(addr, "localhost", path).map_err(|e| e.to_string())?;
    Ok((r.status, r.text()))
}

/// A metric's value from `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (_, text) = admin(addr, "/metrics").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Requests sent in a loop through the proxy (one connection each, paced), round-robin over
/// `targets` (host, expected body); every answer other than 200 with the expected body is a
/// failure, recorded with what came back.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `workers` threads, each pausing `pause` between requests, for at most `max`.
    pub fn start(
        proxy: SocketAddr,
        targets: Vec<(String, String)>,
        workers: usize,
        pause: Duration,
        max: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let targets = Arc::new(targets);
        let threads = (0..workers)
            .map(|w| {
                let (stop, ok, failed, failures, targets) = (
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&failed),
                    Arc::clone(&failures),
                    Arc::clone(&targets),
                );
                std::thread::spawn(move || {
                    let deadline = std::time::Instant::now() + max;
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                        let (host, body) = &targets[i % targets.len()];
                        i += 1;
                        match get(proxy, host) {
                            Ok((200, b)) if &b == body => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut f) = failures.lock()
                                    && f.len() < 20
                                {
                                    f.push(format!("{host}: {other:?}"));
                                }
                            }
                        }
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            failures,
            threads,
        }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops and returns (ok, failed, the first failures).
    pub fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let f = self.failures.lock().map(|f| f.clone()).unwrap_or_default();
        (self.ok(), self.failed(), f)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Pids of processes whose command line has `-c <work>/envoy-bootstrap.json`.
pub fn envoys_of(work: &Path) -> Vec<u32> {
    let bootstrap = std::path::absolute(work.join("envoy-bootstrap.json")).expect("absolute");
    let want = bootstrap.as_os_str().as_encoded_bytes().to_vec();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let runs = args
            .windows(2)
            .any(|w| w[0] == b"-c" && w[1] == want.as_slice());
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if runs && !zombie {
            out.push(pid);
        }
    }
    out
}

/// SIGKILLs `pid` (a cleanup of last resort for an Envoy a failed test left behind).
pub fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}
