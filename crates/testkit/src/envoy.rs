//! Real Envoy processes for tests: [`EnvoyHarness`] finds the binary, [`EnvoyProcess`] is one
//! running Envoy with its own temp dir, base id and admin port.
//!
//! Conventions (see `envoy-xds-notes.md`, pitfalls 6–8 and 11):
//! - every process gets a unique `--base-id` (several Envoys on one host clash on the default
//!   0), `--concurrency 1`, `--drain-time-s 1` and `-l info`;
//! - the admin port is chosen by the kernel: write `port_value: 0` in the bootstrap and the
//!   harness reads the real address from `--admin-address-path` (no free-port race);
//! - the log goes to `envoy.log` in the process's temp dir; when a test panics while an
//!   `EnvoyProcess` is alive, its `Drop` prints the log tail to stderr;
//! - **`/ready` is not proof of config.** Envoy reports `LIVE` with zero listeners once the
//!   initial fetch times out, and LDS is ACKed before listeners finish warming. Wait for the
//!   listener (`listener_address`, `listeners`) or the resource in `config_dump` instead.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use entryway_agent::envoy_bin::{EnvoyNotFound, find_envoy};
use serde_json::Value;

use crate::http::{HttpRequest, HttpResponse, encode_query_value, send};
use crate::poll::{Timeout, eventually_ok};

/// How long [`EnvoyHarness::start`] waits for the admin listener.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `Drop`/[`EnvoyProcess::shutdown`] wait after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Lines of log printed when a test panics with a live Envoy.
const PANIC_LOG_LINES: usize = 60;
/// Attempts at a fresh base id when one is taken by a process outside this harness.
const BASE_ID_ATTEMPTS: u32 = 3;

/// Errors of the Envoy harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No Envoy binary (the message says how to install one).
    #[error(transparent)]
    EnvoyNotFound(#[from] EnvoyNotFound),
    /// An I/O step failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// `envoy --mode validate` rejected the configuration.
    #[error("Envoy rejected the configuration:\n{output}")]
    Rejected {
        /// Envoy's stdout and stderr.
        output: String,
    },
    /// Envoy exited while it was expected to run.
    #[error("Envoy exited ({status}); log tail:\n{log_tail}")]
    Exited {
        /// Exit status.
        status: ExitStatus,
        /// Last lines of its log and stderr.
        log_tail: String,
    },
    /// A condition was not met in time.
    #[error("timed out waiting for {what}: {timeout}; Envoy log tail:\n{log_tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// Attempts and last error.
        timeout: Timeout,
        /// Last lines of the Envoy log.
        log_tail: String,
    },
    /// An admin request answered with a non-2xx status.
    #[error("admin {path} answered {status}: {body}")]
    AdminStatus {
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// An admin response was not the expected JSON.
    #[error("admin {path} returned invalid JSON: {source}")]
    Json {
        /// Request path.
        path: String,
        /// The underlying error.
        source: serde_json::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// Command-line settings for started Envoys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyOptions {
    /// `-l` log level.
    pub log_level: String,
    /// `--concurrency` (worker threads).
    pub concurrency: u32,
    /// `--drain-time-s`; removed listeners linger in `config_dump` this long (pitfall 8).
    pub drain_time_s: u32,
    /// Extra arguments appended to the command line.
    pub extra_args: Vec<String>,
    /// Group id to run Envoy as (capture tests exclude Envoy's own traffic from the
    /// iptables redirect by `--gid-owner`, as Istio does by uid 1337).
    pub gid: Option<u32>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            concurrency: 1,
            drain_time_s: 1,
            extra_args: Vec::new(),
            gid: None,
        }
    }
}

/// Finds Envoy once and starts or validates configurations with it.
#[derive(Debug, Clone)]
pub struct EnvoyHarness {
    binary: PathBuf,
    options: EnvoyOptions,
}

impl EnvoyHarness {
    /// Locates Envoy like `entryway` does ([`find_envoy`] without a flag: `ENVOY_BIN`, `PATH`,
    /// the workspace `.venv`).
    pub fn new() -> Result<Self, EnvoyNotFound> {
        Ok(Self::with_binary(find_envoy(None)?))
    }

    /// Locates Envoy or panics with the install hint. Tests that need Envoy call this so a
    /// missing Envoy is a test **failure**, never a silent skip.
    #[track_caller]
    pub fn require() -> Self {
        match Self::new() {
            Ok(h) => h,
            Err(e) => panic!("this test needs Envoy: {e}"),
        }
    }

    /// Uses the given Envoy binary.
    pub fn with_binary(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            options: EnvoyOptions::default(),
        }
    }

    /// Replaces the command-line settings.
    pub fn with_options(mut self, options: EnvoyOptions) -> Self {
        self.options = options;
        self
    }

    /// The Envoy binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// `envoy --version` (e.g. `9e55…/1.40.0/Clean/RELEASE/BoringSSL`).
    pub fn version(&self) -> Result<String, HarnessError> {
        entryway_agent::envoy_bin::envoy_version(&self.binary).map_err(io_err("envoy --version"))
    }

    /// Runs `envoy --mode validate` on bootstrap text (JSON or YAML): Envoy's output (its
    /// warnings, such as deprecated fields) when accepted; `Err(HarnessError::Rejected)`
    /// carries Envoy's stdout and stderr.
    pub fn validate(&self, bootstrap: &str) -> Result<String, HarnessError> {
        let dir = tempdir()?;
        let path = dir.path().join("bootstrap.yaml");
        std::fs::write(&path, bootstrap).map_err(io_err("writing bootstrap"))?;
        self.validate_file(&path)
    }

    /// Runs `envoy --mode validate -c <path>`; Envoy's output when accepted.
    pub fn validate_file(&self, path: &Path) -> Result<String, HarnessError> {
        let out = Command::new(&self.binary)
            .args(["--mode", "validate", "-l", "warning", "-c"])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(format!(
                "running {} --mode validate",
                self.binary.display()
            )))?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(output)
        } else {
            Err(HarnessError::Rejected { output })
        }
    }

    /// Starts Envoy on bootstrap text (JSON or YAML) and waits until its admin listener is up
    /// (not until it is ready: see [`EnvoyProcess::wait_ready`]). Write the admin port as 0
    /// (e.g. [`entryway_agent::minimal_static_bootstrap`]`(0)`); the real address is read back.
    pub fn start(&self, bootstrap: &str) -> Result<EnvoyProcess, HarnessError> {
        let dir = tempdir()?;
        let bootstrap_path = dir.path().join("bootstrap.yaml");
        std::fs::write(&bootstrap_path, bootstrap).map_err(io_err("writing bootstrap"))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let base_id = next_base_id();
            match self.spawn(dir.path(), &bootstrap_path, base_id)? {
                Spawned::Running { child, admin } => {
                    return Ok(EnvoyProcess {
                        pid: child.id(),
                        child: Mutex::new(child),
                        dir,
                        admin,
                        base_id,
                    });
                }
                // Another Envoy outside this harness holds the base id: take the next one.
                Spawned::BaseIdTaken if attempt < BASE_ID_ATTEMPTS => continue,
                Spawned::BaseIdTaken => {
                    return Err(HarnessError::Io {
                        context: format!("starting Envoy: base id taken {attempt} times in a row"),
                        source: io::Error::other(read_tail(dir.path(), 20)),
                    });
                }
            }
        }
    }

    fn spawn(&self, dir: &Path, bootstrap: &Path, base_id: u32) -> Result<Spawned, HarnessError> {
        let admin_path = dir.join("admin.addr");
        let log_path = dir.join(LOG_FILE);
        let _ = std::fs::remove_file(&admin_path);
        let _ = std::fs::remove_file(&log_path);
        let stderr =
            std::fs::File::create(dir.join(STDERR_FILE)).map_err(io_err("creating stderr file"))?;
        let o = &self.options;
        let mut command = Command::new(&self.binary);
        if let Some(gid) = o.gid {
            use std::os::unix::process::CommandExt as _;
            command.gid(gid);
        }
        let mut child = command
            .arg("-c")
            .arg(bootstrap)
            .args(["--base-id", &base_id.to_string()])
            .args(["--concurrency", &o.concurrency.to_string()])
            .args(["--drain-time-s", &o.drain_time_s.to_string()])
            .args(["-l", &o.log_level])
            .arg("--log-path")
            .arg(&log_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(&o.extra_args)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().map_err(io_err("cloning stderr file"))?)
            .stderr(stderr)
            .spawn()
            .map_err(io_err(format!("starting {}", self.binary.display())))?;
        let started = eventually_ok(START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Err(status));
            }
            std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok())
                .map(Ok)
                .ok_or("admin address file not written yet")
        });
        match started {
            Ok(Ok(admin)) => Ok(Spawned::Running { child, admin }),
            Ok(Err(status)) => {
                let log_tail = read_tail(dir, 40);
                if log_tail.contains("unable to bind domain socket") {
                    Ok(Spawned::BaseIdTaken)
                } else {
                    Err(HarnessError::Exited { status, log_tail })
                }
            }
            Err(timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(HarnessError::Timeout {
                    what: "the Envoy admin listener".into(),
                    log_tail: read_tail(dir, 40),
                    timeout,
                })
            }
        }
    }
}

enum Spawned {
    Running { child: Child, admin: SocketAddr },
    BaseIdTaken,
}

const LOG_FILE: &str = "envoy.log";
const STDERR_FILE: &str = "stderr.log";

fn tempdir() -> Result<tempfile::TempDir, HarnessError> {
    tempfile::Builder::new()
        .prefix("entryway-envoy-")
        .tempdir()
        .map_err(io_err("creating temp dir"))
}

/// A base id unique to this process and call: `pid * 32 + counter % 32`.
///
/// Envoy names its hot-restart domain sockets and shared memory after the base id, so two
/// Envoys with the same id clash (pitfall 7). Deriving it from the pid separates concurrently
/// running test binaries; the counter separates Envoys within one (up to 32 alive at once).
/// pid ≤ 2^22 on Linux, so the id stays below 2^27.
pub fn next_base_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 32;
    (std::process::id() % (1 << 22)) * 32 + n
}

/// One running Envoy. Dropping it stops Envoy (SIGTERM, then SIGKILL after 3 s) and deletes
/// its temp dir; if the thread is panicking, the log tail is printed first.
#[derive(Debug)]
pub struct EnvoyProcess {
    pid: u32,
    /// Behind a mutex so every method takes `&self` (a process can be shared across threads).
    child: Mutex<Child>,
    dir: tempfile::TempDir,
    admin: SocketAddr,
    base_id: u32,
}

impl EnvoyProcess {
    /// Envoy's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The `--base-id` in use.
    pub fn base_id(&self) -> u32 {
        self.base_id
    }

    /// The admin listener's address (read from `--admin-address-path` at start).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The process's temp dir (bootstrap, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of Envoy's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// The last `n` lines of Envoy's log, followed by anything it wrote to stdout/stderr.
    pub fn log_tail(&self, n: usize) -> String {
        read_tail(self.dir.path(), n)
    }

    /// `Some(status)` once Envoy has exited.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        // std's Child caches the status once reaped, so repeated calls keep returning it.
        self.child().try_wait().ok().flatten()
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether Envoy is still running.
    pub fn is_running(&self) -> bool {
        self.try_wait().is_none()
    }

    /// Sends an admin request.
    pub fn admin_request(&self, method: &str, path: &str) -> Result<HttpResponse, HarnessError> {
        let addr = self.admin_addr();
        send(
            addr,
            &HttpRequest {
                method,
                ..HttpRequest::get(&addr.to_string(), path)
            },
        )
        .map_err(io_err(format!("admin {method} {path}")))
    }

    /// `GET` an admin path; non-2xx is an error.
    pub fn admin_get(&self, path: &str) -> Result<String, HarnessError> {
        let resp = self.admin_request("GET", path)?;
        if resp.status / 100 == 2 {
            Ok(resp.text())
        } else {
            Err(HarnessError::AdminStatus {
                path: path.into(),
                status: resp.status,
                body: resp.text(),
            })
        }
    }

    /// `POST` an admin path (mutating endpoints, e.g. `/quitquitquit`, `/logging?level=debug`).
    pub fn admin_post(&self, path: &str) -> Result<HttpResponse, HarnessError> {
        self.admin_request("POST", path)
    }

    /// `GET` an admin path returning JSON.
    pub fn admin_json(&self, path: &str) -> Result<Value, HarnessError> {
        let text = self.admin_get(path)?;
        serde_json::from_str(&text).map_err(|source| HarnessError::Json {
            path: path.into(),
            source,
        })
    }

    /// Polls `/ready` until it answers 200, failing early if Envoy exits.
    ///
    /// Ready is **not** proof of config: with the control plane unreachable Envoy turns
    /// `LIVE` with no listeners after the initial fetch timeouts (~30 s), and LDS is ACKed
    /// before listeners warm. Wait for what the test needs with [`Self::listener_address`],
    /// [`Self::config_dump_resource`] or [`Self::stat`] as well.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        self.wait_for("/ready = 200", timeout, |p| {
            let resp = p.admin_request("GET", "/ready")?;
            if resp.status == 200 {
                Ok(())
            } else {
                Err(HarnessError::AdminStatus {
                    path: "/ready".into(),
                    status: resp.status,
                    body: resp.text().trim().to_owned(),
                })
            }
        })
    }

    /// Polls `check` until it succeeds, failing early (with the log tail) if Envoy exits,
    /// and with the last error and the log tail on timeout.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Result<T, HarnessError>,
    ) -> Result<T, HarnessError> {
        let result = eventually_ok(timeout, || match self.try_wait() {
            Some(status) => Ok(Err(status)),
            None => check(self).map(Ok),
        });
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(status)) => Err(HarnessError::Exited {
                status,
                log_tail: self.log_tail(40),
            }),
            Err(timeout) => Err(HarnessError::Timeout {
                what: what.into(),
                timeout,
                log_tail: self.log_tail(40),
            }),
        }
    }

    /// `/server_info` as JSON.
    pub fn server_info(&self) -> Result<Value, HarnessError> {
        self.admin_json("/server_info")
    }

    /// `/config_dump` as JSON.
    pub fn config_dump(&self) -> Result<Value, HarnessError> {
        self.admin_json("/config_dump")
    }

    /// `/config_dump?resource=<resource>` (e.g. `dynamic_active_clusters`,
    /// `dynamic_listeners`, `static_clusters`) as JSON.
    pub fn config_dump_resource(&self, resource: &str) -> Result<Value, HarnessError> {
        self.admin_json(&format!(
            "/config_dump?resource={}",
            encode_query_value(resource)
        ))
    }

    /// `/listeners?format=json`: the active listeners (draining ones are not listed).
    pub fn listeners(&self) -> Result<Value, HarnessError> {
        self.admin_json("/listeners?format=json")
    }

    /// Names of the active listeners.
    pub fn listener_names(&self) -> Result<Vec<String>, HarnessError> {
        Ok(listener_statuses(&self.listeners()?)
            .filter_map(|l| l["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// The bound address of an active listener (the real port when the config says 0), or
    /// `None` if no such listener is active.
    pub fn listener_address(&self, name: &str) -> Result<Option<SocketAddr>, HarnessError> {
        let listeners = self.listeners()?;
        Ok(listener_statuses(&listeners)
            .find(|l| l["name"] == name)
            .and_then(|l| {
                let sa = &l["local_address"]["socket_address"];
                let ip = sa["address"].as_str()?.parse::<std::net::IpAddr>().ok()?;
                let port = u16::try_from(sa["port_value"].as_u64()?).ok()?;
                Some(SocketAddr::new(ip, port))
            }))
    }

    /// Waits until listener `name` is active and returns its bound address.
    pub fn wait_listener(&self, name: &str, timeout: Duration) -> Result<SocketAddr, HarnessError> {
        self.wait_for(&format!("listener {name}"), timeout, |p| {
            p.listener_address(name)?.ok_or_else(|| HarnessError::Io {
                context: format!("listener {name}"),
                source: io::Error::new(io::ErrorKind::NotFound, "not active yet"),
            })
        })
    }

    /// `/clusters?format=json`.
    pub fn clusters(&self) -> Result<Value, HarnessError> {
        self.admin_json("/clusters?format=json")
    }

    /// `/stats?filter=<regex>` parsed into `name → value` (histograms keep their text form).
    pub fn stats(&self, filter: &str) -> Result<BTreeMap<String, String>, HarnessError> {
        let text = self.admin_get(&format!("/stats?filter={}", encode_query_value(filter)))?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect())
    }

    /// The value of one counter or gauge, `None` if Envoy has no such stat.
    pub fn stat(&self, name: &str) -> Result<Option<u64>, HarnessError> {
        let stats = self.stats(&format!("^{}$", regex_escape(name)))?;
        Ok(stats.get(name).and_then(|v| v.parse().ok()))
    }

    /// Stops Envoy: SIGTERM, then SIGKILL if it has not exited within 3 s.
    pub fn shutdown(self) -> Result<ExitStatus, HarnessError> {
        self.terminate()
    }

    fn terminate(&self) -> Result<ExitStatus, HarnessError> {
        let mut child = self.child();
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        // The child is not reaped yet (checked above, under the lock), so the pid is still
        // Envoy's: no risk of signalling a recycled pid.
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        child.wait().map_err(io_err("waiting for Envoy"))
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- Envoy (pid {}, base id {}, admin {}) log tail ----\n{}\n---- end of Envoy log ----",
                self.pid,
                self.base_id,
                self.admin_addr(),
                self.log_tail(PANIC_LOG_LINES)
            );
        }
        let _ = self.terminate();
    }
}

fn listener_statuses(listeners: &Value) -> impl Iterator<Item = &Value> {
    listeners["listener_statuses"]
        .as_array()
        .map(|a| a.iter())
        .into_iter()
        .flatten()
}

fn read_tail(dir: &Path, n: usize) -> String {
    let log = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    let stderr = std::fs::read_to_string(dir.join(STDERR_FILE)).unwrap_or_default();
    if !stderr.trim().is_empty() {
        let lines: Vec<&str> = stderr.lines().collect();
        out.push_str("\n[stdout/stderr]\n");
        out.push_str(&lines[lines.len().saturating_sub(n)..].join("\n"));
    }
    out
}

/// Escapes regex metacharacters (for exact-name stat filters).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
