//! [`Spawned`]: a process a test starts (in a network namespace or not), its stderr and
//! stdout in a log file, stopped on drop: SIGTERM (so an agent removes its capture rules and
//! stops its Envoy), SIGKILL if it has not exited within a bound.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::netns::{INSTALL_HINT, Netns};

/// How long a SIGTERM'd process has before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running child process with a log file.
#[derive(Debug)]
pub struct Spawned {
    child: Option<Child>,
    log: PathBuf,
    name: String,
}

impl Spawned {
    /// Starts `program args` inside `ns` (`ip netns exec`, which also bind-mounts
    /// `/etc/netns/<ns>/*`), with `env` added, output to `log`.
    pub fn in_netns(
        ns: &Netns,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> io::Result<Spawned> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name()])
            .arg(program)
            .args(args);
        Self::start(cmd, env, log, program)
    }

    /// Starts `program args` in the test's own namespace.
    pub fn here(
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> io::Result<Spawned> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::start(cmd, env, log, program)
    }

    fn start(
        mut cmd: Command,
        env: &[(&str, &str)],
        log: PathBuf,
        program: &Path,
    ) -> io::Result<Spawned> {
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("spawning {}: {e}. {INSTALL_HINT}", program.display()),
                )
            })?;
        Ok(Spawned {
            child: Some(child),
            log,
            name: program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }

    /// The process id (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the log is.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether it has exited (and how).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then waits (SIGKILL after [`STOP_TIMEOUT`]); the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.signal_and_wait(rustix::process::Signal::TERM)
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    fn signal_and_wait(&mut self, signal: rustix::process::Signal) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} did not stop within {STOP_TIMEOUT:?}; killing it",
            self.name
        );
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.terminate();
    }
}
