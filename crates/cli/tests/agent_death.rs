//! No Envoy outlives its agent (issue 11): SIGKILL of `entryway proxy` or `entryway up`
//! takes Envoy with it (the parent-death signal), the ports are free again and a new agent
//! on the same work directory, ports and base id starts; and a new agent that finds an
//! Envoy still running on its work directory's bootstrap (left by an agent that could not
//! take it along) stops it before starting its own.

mod procs;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use entryway_testkit::{EnvoyHarness, HttpUpstream, eventually_ok, next_base_id};
use procs::{Ports, Proc, WAIT, envoys_of, kill, proxy_cmd, se, serve, wait_body, write};

/// Kills any Envoy of `work` still alive when the test ends (pass or fail).
struct Sweep<'a>(&'a Path);

impl Drop for Sweep<'_> {
    fn drop(&mut self) {
        for pid in envoys_of(self.0) {
            kill(pid);
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The one Envoy of `work`, once it runs.
fn envoy_of(work: &Path) -> u32 {
    eventually_ok(WAIT, || match envoys_of(work).as_slice() {
        [pid] => Ok(*pid),
        other => Err(format!("Envoys of the work dir: {other:?}")),
    })
    .expect("one Envoy")
}

fn sigkill_leaves_no_envoy(sub: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    let a = HttpUpstream::start("backend-a").expect("upstream");
    write(
        &config.join("api.yaml"),
        &se("api", "api.example.com", a.port()),
    );
    let ports = Ports::free();
    let work = tmp.path().join("work");
    let _sweep = Sweep(&work);
    let base_id = next_base_id();
    let state = tmp.path().join("state");
    let spawn = |log: &str| {
        let mut cmd = proxy_cmd(sub, &ports, &work, base_id);
        if sub == "up" {
            cmd.arg("--config")
                .arg(&config)
                .arg("--state-dir")
                .arg(&state)
                .args(["--xds-address", &format!("127.0.0.1:{}", ports.xds)])
                .args(["--admin-address", &format!("127.0.0.1:{}", ports.admin)])
                .args(["--secure-xds-address", "127.0.0.1:0"]);
        }
        Proc::spawn(cmd, tmp.path().join(log))
    };
    let _cp =
        (sub == "proxy").then(|| serve(&config, &state, &ports, tmp.path().join("serve.log")));

    let mut agent = spawn("agent-1.log");
    wait_body(
        ports.proxy_addr(),
        "api.example.com",
        "backend-a",
        &[&agent],
    );
    let envoy = envoy_of(&work);

    agent.signal("KILL");
    agent.wait_exit(WAIT);
    eventually_ok(Duration::from_secs(5), || {
        if alive(envoy) {
            Err(format!("Envoy {envoy} still alive"))
        } else {
            Ok(())
        }
    })
    .unwrap_or_else(|e| panic!("{e} after SIGKILL of `entryway {sub}`\n{}", agent.log()));
    // Its ports are free again: the next agent binds the same ones below.

    // A new agent on the same work dir, ports and base id starts and serves.
    let agent2 = spawn("agent-2.log");
    wait_body(
        ports.proxy_addr(),
        "api.example.com",
        "backend-a",
        &[&agent2],
    );
    assert_ne!(envoy_of(&work), envoy);
    drop(agent2);
}

#[test]
fn sigkill_of_proxy_leaves_no_envoy() {
    sigkill_leaves_no_envoy("proxy");
}

#[test]
fn sigkill_of_up_leaves_no_envoy() {
    sigkill_leaves_no_envoy("up");
}

#[test]
fn a_stale_envoy_of_the_work_dir_is_stopped_before_starting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    let a = HttpUpstream::start("backend-a").expect("upstream");
    write(
        &config.join("api.yaml"),
        &se("api", "api.example.com", a.port()),
    );
    let ports = Ports::free();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    let _sweep = Sweep(&work);

    // An Envoy left running on this work dir's bootstrap, holding the admin port the next
    // agent's Envoy needs (as an orphan of a killed agent without the shim would).
    let bootstrap = std::path::absolute(work.join("envoy-bootstrap.json")).expect("absolute");
    std::fs::write(
        &bootstrap,
        format!(
            r#"{{"admin":{{"address":{{"socket_address":{{"address":"127.0.0.1","port_value":{}}}}}}}}}"#,
            ports.envoy_admin
        ),
    )
    .expect("bootstrap");
    let mut stale = Command::new(EnvoyHarness::require().binary())
        .arg("-c")
        .arg(&bootstrap)
        .args(["--base-id", &next_base_id().to_string(), "-l", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the stale Envoy");
    let stale_pid = stale.id();
    eventually_ok(WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", ports.envoy_admin))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .expect("the stale Envoy's admin port is up");

    let _cp = serve(
        &config,
        &tmp.path().join("state"),
        &ports,
        tmp.path().join("serve.log"),
    );
    let agent = Proc::spawn(
        proxy_cmd("proxy", &ports, &work, next_base_id()),
        tmp.path().join("agent.log"),
    );
    // Envoy exits 0 on SIGTERM; that it exited, and the agent's log, tell who stopped it.
    eventually_ok(WAIT, || match stale.try_wait() {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err("stale Envoy still running".to_string()),
        Err(e) => Err(e.to_string()),
    })
    .unwrap_or_else(|e| {
        let _ = stale.kill();
        let _ = stale.wait();
        panic!("{e}\n{}", agent.log())
    });
    wait_body(
        ports.proxy_addr(),
        "api.example.com",
        "backend-a",
        &[&agent],
    );
    let log = agent.log();
    assert!(
        log.contains("stopping a stale Envoy") && log.contains(&stale_pid.to_string()),
        "{log}"
    );
    assert_ne!(envoy_of(&work), stale_pid);

    // A second live agent on the same work dir is refused, and leaves the first alone.
    let mut second = Proc::spawn(
        proxy_cmd("proxy", &Ports::free(), &work, next_base_id()),
        tmp.path().join("agent-2.log"),
    );
    let exit = second.wait_exit(WAIT);
    assert!(!exit.success());
    assert!(
        second.log().contains("is in use by another agent"),
        "{}",
        second.log()
    );
    wait_body(
        ports.proxy_addr(),
        "api.example.com",
        "backend-a",
        &[&agent],
    );
}
