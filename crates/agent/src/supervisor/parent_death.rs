//! Tying Envoy's life to the agent's: when the agent dies, even by SIGKILL, the kernel
//! kills Envoy (Linux `PR_SET_PDEATHSIG`), so no Envoy is left holding its ports and memory.
//!
//! The parent-death signal is a property the child must set on itself, between `fork` and
//! `exec`. Rust's only hook there (`CommandExt::pre_exec`) is `unsafe`, which this workspace
//! forbids, so the agent starts Envoy through a shim instead: its own binary, run with
//! [`EXEC_ARG`], which sets the signal on itself (a plain system call, see [`exec_main`]),
//! checks that its parent is still the agent (it may have died in between), and `exec`s
//! Envoy. The signal survives `exec` (Envoy is not set-user-ID), and a user or group change
//! made for Envoy happens before the shim runs, so it does not clear the signal either.
//!
//! The kernel sends the signal when the *thread* that forked the child exits, not the
//! process. Envoy is therefore spawned from one thread that lives as long as the process
//! ([`spawn`]), never from a pool thread that may be retired.
//!
//! A program that embeds the agent enables the shim with [`enable`], naming a binary that
//! calls [`exec_main`] when it is run with [`EXEC_ARG`] (the `entryway` binary does both).
//! Without it, Envoy is started directly and outlives an agent killed by SIGKILL (but a
//! new agent on the same work directory stops it: see [`super::stale`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};

/// First argument that makes the binary act as the shim:
/// `<binary> __entryway-exec-envoy <agent pid> -- <envoy> <args...>`.
pub const EXEC_ARG: &str = "__entryway-exec-envoy";

static SHIM: OnceLock<PathBuf> = OnceLock::new();

/// Starts Envoy through `program` (run as the shim) from now on. `/proc/self/exe` names the
/// running binary even after it was replaced on disk.
pub fn enable(program: impl Into<PathBuf>) {
    let _ = SHIM.set(program.into());
}

/// The shim in use, if any.
pub fn shim() -> Option<&'static PathBuf> {
    SHIM.get()
}

/// The shim's command line for running `binary args...` as a child of this process.
pub fn wrap(shim: &std::path::Path, binary: &std::path::Path, args: &[OsString]) -> Command {
    let mut c = Command::new(shim);
    c.arg(EXEC_ARG)
        .arg(std::process::id().to_string())
        .arg("--")
        .arg(binary)
        .args(args);
    c
}

/// The shim: `args` are what follows [`EXEC_ARG`] (`<agent pid> -- <program> <args...>`).
/// Sets SIGKILL as this process's parent-death signal and `exec`s the program; returns only
/// on failure, with the error to report (exit non-zero then).
pub fn exec_main(args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let (Some(parent), Some(sep), Some(program)) = (args.first(), args.get(1), args.get(2)) else {
        return std::io::Error::other(format!(
            "usage: {EXEC_ARG} <agent pid> -- <program> [args...]"
        ));
    };
    if sep != "--" {
        return std::io::Error::other(format!("{EXEC_ARG}: expected `--` after the pid"));
    }
    let Some(parent) = parent.to_str().and_then(|p| p.parse::<i32>().ok()) else {
        return std::io::Error::other(format!("{EXEC_ARG}: bad agent pid {parent:?}"));
    };
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        return std::io::Error::other(format!("setting the parent-death signal: {e}"));
    }
    // The agent may have died between fork and the call above; then no signal will come.
    let ppid = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if ppid != Some(parent) {
        return std::io::Error::other(format!(
            "the agent (pid {parent}) is gone before Envoy started; not starting it"
        ));
    }
    std::process::Command::new(program).args(&args[3..]).exec()
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread that forks every Envoy (see the module docs), started on first use.
fn spawner() -> &'static std::sync::Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("envoy-spawner".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the Envoy spawner thread; spawning inline");
        }
        std::sync::Mutex::new(tx)
    })
}

/// Spawns `command` from the long-lived spawner thread (inside the caller's Tokio runtime,
/// which reaps the child).
pub async fn spawn(mut command: Command) -> std::io::Result<Child> {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _runtime = handle.enter();
        let _ = tx.send(command.spawn());
    });
    let sent = match spawner().lock() {
        Ok(s) => s.send(job),
        Err(poisoned) => poisoned.into_inner().send(job),
    };
    // The thread could not start: run the job here (the signal is then tied to this
    // thread instead).
    if let Err(mpsc::SendError(job)) = sent {
        job();
    }
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the Envoy spawner thread is gone")))
}
