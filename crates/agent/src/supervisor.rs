//! The sidecar agent core: run Envoy on a bootstrap, keep it running, stop it cleanly.
//!
//! ```text
//! ProxyAgentConfig ──prepare()──► EnvoyLaunch (bootstrap written, Envoy found)
//!                                     │
//! Supervisor::new(launch, options) ──run(shutdown)──►
//!     spawn Envoy ─► Running (admin address read from --admin-address-path)
//!        │ exits unexpectedly                     │ shutdown future completes
//!        ▼                                        ▼
//!     Restarting: back-off 100 ms ×2 … 10 s    Draining: POST /drain_listeners?graceful,
//!     (reset once Envoy stayed up 30 s)         wait until no downstream connection
//!        └──► spawn again                       (bounded), then SIGTERM, SIGKILL after
//!                                               a timeout ─► Stopped
//! ```
//!
//! - Envoy runs in its own process group, so a terminal's Ctrl-C reaches only the agent,
//!   which then drains Envoy instead of Envoy dying at once. Dropping the `run` future kills
//!   Envoy (`kill_on_drop`); if the agent itself is killed (SIGKILL included), the kernel
//!   kills Envoy when the binary provides the parent-death shim ([`parent_death`]).
//! - A run takes the work directory's lock and first stops any Envoy still running on this
//!   work directory's bootstrap, left by an earlier agent ([`stale`]).
//! - Envoy's stdout and stderr are piped and re-emitted as `tracing` events (see [`logs`]).
//! - The status is published on a [`watch`] channel ([`Supervisor::status`]).
//! - `--drain-strategy immediate` (Istio's choice): on drain, every connection is asked to
//!   close at once instead of over the drain time, which suits a bounded shutdown window.

pub mod admin;
pub mod config;
pub mod logs;
pub mod parent_death;
pub mod stale;

use std::ffi::OsString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bootstrap::BootstrapOptions;

pub use admin::{AdminResponse, active_downstream_connections, admin_ready, admin_request};
pub use config::{AgentError, EnvError, ProxyAgentConfig};
pub use logs::{ENVOY_LOG_FORMAT, EnvoyLogLevel, EnvoyLogLine};

/// How often the admin address file is checked after a start: first pause, doubling to the
/// longest (Envoy 1.40 writes it ~100 ms after spawn; a stuck start costs little).
const ADMIN_ADDRESS_POLL: Duration = Duration::from_millis(5);
const ADMIN_ADDRESS_POLL_MAX: Duration = Duration::from_millis(100);
/// How often active connections are checked while draining.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// How long to wait for the log forwarders to reach the end of Envoy's output after it exits.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// How Envoy is started: binary, bootstrap and command-line settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyLaunch {
    /// The Envoy binary.
    pub binary: PathBuf,
    /// The bootstrap file (`-c`).
    pub bootstrap_path: PathBuf,
    /// Directory for the admin address file.
    pub work_dir: PathBuf,
    /// `--base-id N`; `None` passes `--disable-hot-restart` instead.
    pub base_id: Option<u32>,
    /// `--concurrency`.
    pub concurrency: u32,
    /// `-l`.
    pub log_level: String,
    /// `--drain-time-s` (rounded up to whole seconds, at least 1).
    pub drain_time: Duration,
    /// Appended to the command line.
    pub extra_args: Vec<OsString>,
    /// Run Envoy as this user id (`None`: the agent's). With traffic capture, Envoy's own
    /// connections are told apart by uid or gid (Istio's 1337).
    pub uid: Option<u32>,
    /// Run Envoy with this group id (`None`: the agent's).
    pub gid: Option<u32>,
}

impl EnvoyLaunch {
    /// File name of the bootstrap that [`EnvoyLaunch::write`] writes.
    pub const BOOTSTRAP_FILE: &'static str = "envoy-bootstrap.json";
    /// File name Envoy writes its admin address to (`--admin-address-path`).
    pub const ADMIN_ADDRESS_FILE: &'static str = "envoy-admin-address";

    /// Settings for an existing bootstrap file, with the defaults of
    /// [`ProxyAgentConfig`]: no base id, concurrency 2, log level `warning`, drain time 5 s.
    pub fn new(
        binary: impl Into<PathBuf>,
        bootstrap_path: impl Into<PathBuf>,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            binary: binary.into(),
            bootstrap_path: bootstrap_path.into(),
            work_dir: work_dir.into(),
            base_id: None,
            concurrency: config::DEFAULT_CONCURRENCY,
            log_level: config::DEFAULT_LOG_LEVEL.into(),
            drain_time: config::DEFAULT_DRAIN_TIME,
            extra_args: Vec::new(),
            uid: None,
            gid: None,
        }
    }

    /// Creates `work_dir`, renders `bootstrap` into `work_dir/`[`Self::BOOTSTRAP_FILE`] and
    /// returns settings for it.
    pub fn write(
        binary: impl Into<PathBuf>,
        work_dir: &Path,
        bootstrap: &BootstrapOptions,
    ) -> Result<Self, AgentError> {
        let io = |context: String| move |source| AgentError::Io { context, source };
        // Absolute: Envoy's command line then names the bootstrap the same way whatever the
        // current directory, which is how a later agent recognises a stale Envoy of it.
        let work_dir = &std::path::absolute(work_dir)
            .map_err(io(format!("resolving work dir {}", work_dir.display())))?;
        std::fs::create_dir_all(work_dir)
            .map_err(io(format!("creating work dir {}", work_dir.display())))?;
        let path = work_dir.join(Self::BOOTSTRAP_FILE);
        std::fs::write(&path, bootstrap.render())
            .map_err(io(format!("writing bootstrap {}", path.display())))?;
        Ok(Self::new(binary, path, work_dir))
    }

    /// Where Envoy writes its admin address.
    pub fn admin_address_path(&self) -> PathBuf {
        self.work_dir.join(Self::ADMIN_ADDRESS_FILE)
    }

    /// Envoy's arguments (without the binary).
    pub fn args(&self) -> Vec<OsString> {
        let drain_secs = self.drain_time.as_secs() + u64::from(self.drain_time.subsec_nanos() > 0);
        let mut args: Vec<OsString> = vec!["-c".into(), self.bootstrap_path.clone().into()];
        args.push("--admin-address-path".into());
        args.push(self.admin_address_path().into());
        match self.base_id {
            Some(id) => {
                args.push("--base-id".into());
                args.push(id.to_string().into());
            }
            None => args.push("--disable-hot-restart".into()),
        }
        for (flag, value) in [
            ("--concurrency", self.concurrency.max(1).to_string()),
            ("-l", self.log_level.clone()),
            ("--log-format", ENVOY_LOG_FORMAT.to_owned()),
            ("--drain-time-s", drain_secs.max(1).to_string()),
            ("--drain-strategy", "immediate".to_owned()),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Restart back-off: `initial`, doubling per consecutive failure up to `max`; the count
/// resets once Envoy has stayed up `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Uptime after which an exit counts as the first failure again.
    pub reset_after: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 10 s, reset after 30 s of uptime.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before restarting after `failures` consecutive failures (1 = first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Supervision settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorOptions {
    /// Restart back-off.
    pub backoff: Backoff,
    /// Longest wait, after `/drain_listeners?graceful`, for downstream connections to close.
    pub drain_period: Duration,
    /// Wait after SIGTERM before SIGKILL.
    pub term_timeout: Duration,
    /// Give up (and return an error) after this many consecutive failures, each one an exit
    /// within `backoff.reset_after` of its start; `None` restarts forever.
    pub give_up_after: Option<u32>,
}

impl Default for SupervisorOptions {
    /// Default back-off, 5 s drain period (Istio's `terminationDrainDuration`), 5 s SIGTERM
    /// grace, never give up.
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            drain_period: Duration::from_secs(5),
            term_timeout: Duration::from_secs(5),
            give_up_after: None,
        }
    }
}

/// Where the supervised Envoy is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvoyPhase {
    /// Spawned; its admin listener is not up yet.
    Starting,
    /// Running with its admin listener bound.
    Running,
    /// Exited unexpectedly; waiting out the back-off.
    Restarting,
    /// Shutdown requested: listeners draining.
    Draining,
    /// SIGTERM sent; waiting for the exit.
    Stopping,
    /// Stopped after a shutdown.
    Stopped,
    /// Gave up restarting (see [`SupervisorOptions::give_up_after`]).
    Failed,
}

/// A snapshot of the supervised Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyStatus {
    /// Life-cycle phase.
    pub phase: EnvoyPhase,
    /// The current process's pid (`None` between processes).
    pub pid: Option<u32>,
    /// Admin listener address of the current process, once bound.
    pub admin: Option<SocketAddr>,
    /// Processes started so far.
    pub starts: u32,
    /// Restarts after unexpected exits.
    pub restarts: u32,
    /// Consecutive failures (reset once Envoy stays up `reset_after`).
    pub consecutive_failures: u32,
    /// When restarting: the back-off being waited.
    pub restart_delay: Option<Duration>,
    /// How the last process exited (`exit status: 1`, `signal: 9 (SIGKILL)`).
    pub last_exit: Option<String>,
    /// While draining: the downstream connections still open at the last check.
    pub open_connections: Option<u64>,
}

impl EnvoyStatus {
    fn new() -> Self {
        Self {
            phase: EnvoyPhase::Starting,
            pid: None,
            admin: None,
            starts: 0,
            restarts: 0,
            consecutive_failures: 0,
            restart_delay: None,
            last_exit: None,
            open_connections: None,
        }
    }

    /// Whether Envoy is running with its admin listener up.
    pub fn is_running(&self) -> bool {
        self.phase == EnvoyPhase::Running
    }
}

/// What the shutdown drain did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Status of `POST /drain_listeners?graceful`, or the error.
    pub drain_request: Result<u16, String>,
    /// Downstream connections open when the drain started (if the stats could be read).
    pub connections_at_start: Option<u64>,
    /// Downstream connections still open when the wait ended.
    pub connections_at_end: Option<u64>,
    /// How long the drain took.
    pub waited: Duration,
}

/// How a supervisor run ended after a shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorExit {
    /// Restarts during the run.
    pub restarts: u32,
    /// The drain, if Envoy was running with a known admin address at shutdown.
    pub drain: Option<DrainReport>,
    /// The last process's exit (`None` if none was running at shutdown).
    pub exit: Option<ExitStatus>,
    /// Whether SIGKILL was needed after the SIGTERM timeout.
    pub killed: bool,
}

/// Errors that end a supervisor run.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The first start failed (e.g. the binary cannot be executed).
    #[error("starting Envoy {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The work directory is used by another live agent, or cannot be locked.
    #[error("{0}")]
    WorkDir(std::io::Error),
    /// Envoy kept failing (see [`SupervisorOptions::give_up_after`]).
    #[error("Envoy failed {failures} times in a row; last: {last_exit}")]
    GaveUp {
        /// Consecutive failures.
        failures: u32,
        /// The last failure.
        last_exit: String,
    },
}

/// Runs and supervises one Envoy. See the module documentation.
#[derive(Debug)]
pub struct Supervisor {
    launch: EnvoyLaunch,
    options: SupervisorOptions,
    status: watch::Sender<EnvoyStatus>,
}

/// A running Envoy process and its log forwarders.
struct Running {
    child: Child,
    pid: u32,
    started: Instant,
    forwarders: Vec<JoinHandle<()>>,
}

enum Event<T> {
    Exited(std::io::Result<ExitStatus>),
    Shutdown(T),
}

impl Supervisor {
    /// A supervisor for `launch`; nothing runs until [`Supervisor::run`].
    pub fn new(launch: EnvoyLaunch, options: SupervisorOptions) -> Self {
        let (status, _) = watch::channel(EnvoyStatus::new());
        Self {
            launch,
            options,
            status,
        }
    }

    /// A receiver of status updates (valid before, during and after `run`).
    pub fn status(&self) -> watch::Receiver<EnvoyStatus> {
        self.status.subscribe()
    }

    /// The launch settings.
    pub fn launch(&self) -> &EnvoyLaunch {
        &self.launch
    }

    /// Starts Envoy and keeps it running until `shutdown` completes, then drains and stops
    /// it. Returns an error only if the first start fails or Envoy keeps failing beyond
    /// [`SupervisorOptions::give_up_after`].
    pub async fn run<F: Future>(self, shutdown: F) -> Result<SupervisorExit, SupervisorError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let _lock = match stale::lock_work_dir(&self.launch.work_dir) {
            Ok(l) => l,
            Err(e) => {
                self.status.send_modify(|s| s.phase = EnvoyPhase::Failed);
                return Err(SupervisorError::WorkDir(e));
            }
        };
        stale::stop(&self.launch.bootstrap_path, self.options.term_timeout).await;
        let mut running = match self.spawn().await {
            Ok(r) => r,
            Err(source) => {
                self.status.send_modify(|s| s.phase = EnvoyPhase::Failed);
                return Err(SupervisorError::Spawn {
                    binary: self.launch.binary.clone(),
                    source,
                });
            }
        };
        loop {
            let event = self.watch_process(&mut running, shutdown.as_mut()).await;
            let status = match event {
                Event::Shutdown(_) => return Ok(self.stop(running).await),
                Event::Exited(status) => status,
            };
            self.flush_logs(&mut running).await;
            let uptime = running.started.elapsed();
            let exit = match &status {
                Ok(status) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let mut failures = self.status.borrow().consecutive_failures;
            if uptime >= self.options.backoff.reset_after {
                failures = 0;
            }
            failures += 1;
            if self.options.give_up_after.is_some_and(|max| failures > max) {
                tracing::error!(
                    pid = running.pid,
                    exit,
                    failures,
                    "Envoy keeps failing; giving up"
                );
                self.status.send_modify(|s| {
                    s.phase = EnvoyPhase::Failed;
                    s.pid = None;
                    s.admin = None;
                    s.consecutive_failures = failures;
                    s.last_exit = Some(exit.clone());
                });
                return Err(SupervisorError::GaveUp {
                    failures,
                    last_exit: exit,
                });
            }
            let delay = self.options.backoff.delay(failures);
            tracing::warn!(
                pid = running.pid,
                exit,
                uptime_ms = uptime.as_millis() as u64,
                restart_in_ms = delay.as_millis() as u64,
                failures,
                "Envoy exited unexpectedly; restarting"
            );
            self.status.send_modify(|s| {
                s.phase = EnvoyPhase::Restarting;
                s.pid = None;
                s.admin = None;
                s.consecutive_failures = failures;
                s.restart_delay = Some(delay);
                s.last_exit = Some(exit.clone());
            });
            // Wait out the back-off, then spawn; a failed spawn is one more failure.
            let mut delay = delay;
            running = loop {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.as_mut() => {
                        self.status.send_modify(|s| {
                            s.phase = EnvoyPhase::Stopped;
                            s.restart_delay = None;
                        });
                        return Ok(SupervisorExit {
                            restarts: self.status.borrow().restarts,
                            drain: None,
                            exit: None,
                            killed: false,
                        });
                    }
                }
                self.status.send_modify(|s| s.restarts += 1);
                match self.spawn().await {
                    Ok(r) => break r,
                    Err(error) => {
                        failures += 1;
                        delay = self.options.backoff.delay(failures);
                        tracing::warn!(%error, restart_in_ms = delay.as_millis() as u64, "starting Envoy failed");
                        self.status.send_modify(|s| {
                            s.consecutive_failures = failures;
                            s.restart_delay = Some(delay);
                            s.last_exit = Some(format!("spawn failed: {error}"));
                        });
                        if self.options.give_up_after.is_some_and(|max| failures > max) {
                            self.status.send_modify(|s| s.phase = EnvoyPhase::Failed);
                            return Err(SupervisorError::GaveUp {
                                failures,
                                last_exit: error.to_string(),
                            });
                        }
                    }
                }
            };
        }
    }

    async fn spawn(&self) -> std::io::Result<Running> {
        let admin_path = self.launch.admin_address_path();
        match std::fs::remove_file(&admin_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let shim = parent_death::shim();
        let mut command = match shim {
            Some(shim) => parent_death::wrap(shim, &self.launch.binary, &self.launch.args()),
            None => {
                let mut c = Command::new(&self.launch.binary);
                c.args(self.launch.args());
                c
            }
        };
        // The child sets its group, then its user, before exec (of the shim, which then
        // sets the parent-death signal: a credential change would clear it).
        if let Some(gid) = self.launch.gid {
            command.gid(gid);
        }
        if let Some(uid) = self.launch.uid {
            command.uid(uid);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a terminal's SIGINT goes to the agent, which drains Envoy.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match shim {
            Some(_) => parent_death::spawn(command).await?,
            None => command.spawn()?,
        };
        let pid = child.id().unwrap_or_default();
        let mut forwarders = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            forwarders.push(tokio::spawn(logs::forward_lines(out, pid)));
        }
        if let Some(err) = child.stderr.take() {
            forwarders.push(tokio::spawn(logs::forward_lines(err, pid)));
        }
        tracing::info!(
            pid,
            binary = %self.launch.binary.display(),
            bootstrap = %self.launch.bootstrap_path.display(),
            base_id = self.launch.base_id,
            dies_with_agent = shim.is_some(),
            "Envoy started"
        );
        self.status.send_modify(|s| {
            s.phase = EnvoyPhase::Starting;
            s.pid = Some(pid);
            s.admin = None;
            s.starts += 1;
            s.restart_delay = None;
        });
        Ok(Running {
            child,
            pid,
            started: Instant::now(),
            forwarders,
        })
    }

    /// Waits for the process to exit or for the shutdown, publishing the admin address once
    /// Envoy has written it.
    async fn watch_process<F: Future>(
        &self,
        running: &mut Running,
        mut shutdown: std::pin::Pin<&mut F>,
    ) -> Event<F::Output> {
        let admin_path = self.launch.admin_address_path();
        let mut admin_known = self.status.borrow().admin.is_some();
        let mut poll = ADMIN_ADDRESS_POLL;
        let mut failures_pending = self.status.borrow().consecutive_failures > 0;
        let stable_at =
            tokio::time::Instant::from_std(running.started) + self.options.backoff.reset_after;
        loop {
            tokio::select! {
                status = running.child.wait() => return Event::Exited(status),
                out = shutdown.as_mut() => return Event::Shutdown(out),
                _ = tokio::time::sleep(poll), if !admin_known => {
                    poll = (poll * 2).min(ADMIN_ADDRESS_POLL_MAX);
                    if let Some(addr) = read_admin_address(&admin_path) {
                        admin_known = true;
                        tracing::info!(pid = running.pid, admin = %addr, "Envoy admin listener up");
                        self.status.send_modify(|s| {
                            s.phase = EnvoyPhase::Running;
                            s.admin = Some(addr);
                        });
                    }
                }
                // Up long enough: the next exit counts as a first failure again.
                _ = tokio::time::sleep_until(stable_at), if failures_pending => {
                    failures_pending = false;
                    self.status.send_modify(|s| s.consecutive_failures = 0);
                }
            }
        }
    }

    async fn flush_logs(&self, running: &mut Running) {
        for handle in running.forwarders.drain(..) {
            let _ = tokio::time::timeout(LOG_FLUSH_TIMEOUT, handle).await;
        }
    }

    /// Drains (if the admin address is known), then SIGTERM, then SIGKILL after the timeout.
    async fn stop(&self, mut running: Running) -> SupervisorExit {
        let admin = self.status.borrow().admin;
        let pid = running.pid;
        let mut drain = None;
        let mut exit = None;
        if let Some(addr) = admin {
            tracing::info!(pid, admin = %addr, "draining Envoy listeners");
            self.status.send_modify(|s| s.phase = EnvoyPhase::Draining);
            let (report, exited) = self.drain(addr, &mut running.child).await;
            tracing::info!(
                pid,
                waited_ms = report.waited.as_millis() as u64,
                connections_at_start = report.connections_at_start,
                connections_at_end = report.connections_at_end,
                "Envoy drained"
            );
            drain = Some(report);
            exit = exited;
        }
        self.status.send_modify(|s| s.phase = EnvoyPhase::Stopping);
        let mut killed = false;
        if exit.is_none() {
            let (status, was_killed) = self.terminate(&mut running.child).await;
            exit = status;
            killed = was_killed;
        }
        self.flush_logs(&mut running).await;
        let exit_text = exit.map(|s| s.to_string());
        tracing::info!(pid, exit = exit_text.as_deref(), killed, "Envoy stopped");
        self.status.send_modify(|s| {
            s.phase = EnvoyPhase::Stopped;
            s.pid = None;
            s.admin = None;
            s.open_connections = None;
            s.last_exit = exit_text;
        });
        SupervisorExit {
            restarts: self.status.borrow().restarts,
            drain,
            exit,
            killed,
        }
    }

    /// `POST /drain_listeners?graceful`, then waits (at most `drain_period`) until no
    /// downstream connection is open. Returns early with the exit status if Envoy exits.
    async fn drain(
        &self,
        addr: SocketAddr,
        child: &mut Child,
    ) -> (DrainReport, Option<ExitStatus>) {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.options.drain_period;
        let drain_request = admin_request(addr, "POST", "/drain_listeners?graceful")
            .await
            .map(|r| r.status)
            .map_err(|e| e.to_string());
        let mut report = DrainReport {
            drain_request,
            connections_at_start: None,
            connections_at_end: None,
            waited: Duration::ZERO,
        };
        let mut exited = None;
        if report.drain_request.is_ok() {
            loop {
                let count = tokio::select! {
                    status = child.wait() => {
                        exited = status.ok();
                        break;
                    }
                    count = active_downstream_connections(addr) => count,
                };
                let Ok(count) = count else { break };
                report.connections_at_start.get_or_insert(count);
                report.connections_at_end = Some(count);
                self.status
                    .send_modify(|s| s.open_connections = Some(count));
                if count == 0 || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::select! {
                    status = child.wait() => {
                        exited = status.ok();
                        break;
                    }
                    _ = tokio::time::sleep_until((tokio::time::Instant::now() + DRAIN_POLL).min(deadline)) => {}
                }
            }
        }
        report.waited = started.elapsed();
        (report, exited)
    }

    /// SIGTERM, then SIGKILL after `term_timeout`. Returns the exit status and whether
    /// SIGKILL was needed.
    async fn terminate(&self, child: &mut Child) -> (Option<ExitStatus>, bool) {
        if let Ok(Some(status)) = child.try_wait() {
            return (Some(status), false);
        }
        // `id()` is `Some` only while the child is not reaped, so the pid cannot have been
        // recycled for another process.
        if let Some(pid) = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        match tokio::time::timeout(self.options.term_timeout, child.wait()).await {
            Ok(status) => (status.ok(), false),
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.options.term_timeout.as_millis() as u64,
                    "Envoy ignored SIGTERM; killing it"
                );
                let _ = child.start_kill();
                (child.wait().await.ok(), true)
            }
        }
    }
}

fn read_admin_address(path: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A future that completes with the name of the first SIGTERM or SIGINT the process receives,
/// for [`Supervisor::run`]. The handlers are installed by this call (so a signal that arrives
/// before the future is polled is not lost); call it inside a Tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let b = Backoff::default();
        let delays: Vec<u128> = (1..=9).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(b.delay(0), b.initial);
        assert_eq!(b.delay(u32::MAX), b.max);
        let huge = Backoff {
            initial: Duration::from_secs(u64::MAX / 2),
            ..b
        };
        assert_eq!(huge.delay(3), b.max);
    }

    #[test]
    fn command_line_has_admin_path_drain_and_hot_restart_settings() {
        let mut launch = EnvoyLaunch::new("/bin/envoy", "/w/b.json", "/w");
        launch.drain_time = Duration::from_millis(1500);
        let args: Vec<String> = launch
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-c",
                "/w/b.json",
                "--admin-address-path",
                "/w/envoy-admin-address",
                "--disable-hot-restart",
                "--concurrency",
                "2",
                "-l",
                "warning",
                "--log-format",
                "[%l][%n] %v",
                "--drain-time-s",
                "2",
                "--drain-strategy",
                "immediate",
            ]
        );
        launch.base_id = Some(7);
        launch.drain_time = Duration::ZERO;
        launch.extra_args = vec!["--x".into()];
        let args: Vec<String> = launch
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&args[4..6], ["--base-id", "7"]);
        assert_eq!(&args[12..14], ["--drain-time-s", "1"]);
        assert_eq!(args.last().map(String::as_str), Some("--x"));
    }
}
