//! Envoy's own log lines show up in the agent's `tracing` output, prefixed `envoy:`, at
//! Envoy's level, together with the supervisor's own events.
//!
//! The subscriber is installed for this thread only (`set_default`) and the runtime is
//! single-threaded, so every task of the supervisor logs into the captured buffer.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entryway_agent::bootstrap::XdsAddress;
use entryway_agent::{ProxyAgentConfig, Supervisor, SupervisorOptions};
use entryway_testkit::{EnvoyHarness, free_port};
use tracing_subscriber::fmt::MakeWriter;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Polls the captured output until a line satisfies `pred`, at most [`WAIT`].
async fn wait_line(capture: &Capture, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = capture.text().lines().find(|l| pred(l)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what} within {WAIT:?}; captured:\n{}",
            capture.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn envoy_log_lines_appear_under_the_agent_log() {
    let harness = EnvoyHarness::require();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let config = ProxyAgentConfig {
        // No control plane is needed for Envoy to start and log.
        xds_address: XdsAddress::new("127.0.0.1", free_port().unwrap()),
        admin_port: 0,
        work_dir: dir.path().to_path_buf(),
        envoy_binary: Some(harness.binary().to_path_buf()),
        concurrency: 1,
        log_level: "info".into(),
        ..ProxyAgentConfig::default()
    };
    let supervisor = Supervisor::new(config.prepare().unwrap(), SupervisorOptions::default());
    let mut status = supervisor.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(supervisor.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(WAIT, status.wait_for(|s| s.is_running()))
        .await
        .unwrap()
        .unwrap();
    let pid = status.borrow().pid.unwrap();

    // Envoy's info lines, with their logger, at INFO, with the pid as a field.
    let line = wait_line(&capture, "from Envoy's main logger", |l| {
        l.contains("envoy: [main]")
    })
    .await;
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains(&format!("pid={pid}")), "{line}");
    // Envoy's warnings stay warnings (Envoy 1.40 warns at start that no global connection
    // limit is configured).
    let line = wait_line(&capture, "with Envoy's start-up warning", |l| {
        l.contains("envoy: [main]") && l.contains("no configured limit")
    })
    .await;
    assert!(line.contains(" WARN "), "{line}");
    // The supervisor's own events sit alongside.
    wait_line(&capture, "about the start", |l| l.contains("Envoy started")).await;

    let _ = stop.send(());
    let exit = tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!exit.killed);
    wait_line(&capture, "about the stop", |l| l.contains("Envoy stopped")).await;
    // Envoy's shutdown lines were forwarded before the supervisor reported the stop.
    let text = capture.text();
    let last_envoy = text.rfind("envoy: [").unwrap();
    let stopped_at = text.find("Envoy stopped").unwrap();
    assert!(
        last_envoy < stopped_at,
        "Envoy lines after the stop event:\n{text}"
    );
    eprintln!("captured {} lines, e.g.:", text.lines().count());
    for l in text.lines().filter(|l| l.contains("envoy: [")).take(3) {
        eprintln!("  {l}");
    }
}
