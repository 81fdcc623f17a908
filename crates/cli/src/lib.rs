//! The `entryway` command: one binary, a subcommand per job. Every subcommand is a library
//! function so tests can call it in process.

pub mod capture;
pub mod defaults;
pub mod demo;
pub mod proxy;
pub mod secure;
pub mod serve;
pub mod token;
pub mod up;
pub mod validate;
pub mod vm;
pub mod xds;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Istio ServiceEntry traffic management on plain Envoy.
#[derive(Debug, Parser)]
#[command(name = "entryway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check Istio networking YAML/JSON as Istio would (files, directories, `-` for stdin).
    Validate(validate::Args),
    /// Inspect the Envoy configuration Entryway generates.
    #[command(subcommand)]
    Xds(XdsCommand),
    /// Run the control plane: watch the config, serve ADS and admin HTTP.
    Serve(serve::ServeArgs),
    /// Run the sidecar agent: bootstrap, start and supervise Envoy.
    Proxy(proxy::ProxyCommandArgs),
    /// Run the control plane and a sidecar Envoy on this machine (the main job).
    Up(up::UpArgs),
    /// Print the iptables rules that capture outbound traffic to the sidecar (as Istio's
    /// sidecar sets them), without applying them.
    CaptureRules(capture::CaptureRulesArgs),
    /// Show governance on local stand-ins: retries, timeout, fault, circuit breaker, TLS
    /// origination, TCP, REGISTRY_ONLY.
    Demo(demo::DemoArgs),
    /// Join tokens for machines joining the mesh (bound to a namespace and service account).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Prepare a machine to join the mesh (root certificate, join token, settings).
    #[command(subcommand)]
    Vm(vm::VmCommand),
}

/// `entryway xds ...`.
#[derive(Debug, Subcommand)]
pub enum XdsCommand {
    /// Print what one proxy would receive (config_dump JSON/YAML, tables, or a static bootstrap).
    Dump(xds::DumpArgs),
}

/// Parses the process arguments and runs the chosen subcommand.
pub fn run() -> ExitCode {
    // The agent starts Envoy through this binary so that Envoy dies with it (see
    // `entryway_agent::supervisor::parent_death`).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == entryway_agent::supervisor::parent_death::EXEC_ARG)
    {
        let e = entryway_agent::supervisor::parent_death::exec_main(&args[2..]);
        eprintln!("error: starting Envoy: {e}");
        return ExitCode::from(127);
    }
    entryway_agent::supervisor::parent_death::enable("/proc/self/exe");
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            ExitCode::from(validate::run(&args, &mut out, &mut err))
        }
        Command::Xds(XdsCommand::Dump(args)) => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            ExitCode::from(xds::run_dump(&args, &mut out, &mut err))
        }
        Command::Serve(args) => run_async(serve::run(args)),
        Command::Proxy(args) => run_async(proxy::run_command(args)),
        Command::CaptureRules(args) => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            ExitCode::from(capture::run_rules(&args, &mut out, &mut err))
        }
        Command::Up(args) => run_async(up::run(args)),
        Command::Demo(args) => run_async(demo::run(args)),
        Command::Token(cmd) => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            ExitCode::from(token::run(&cmd, &mut out, &mut err))
        }
        Command::Vm(cmd) => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            ExitCode::from(vm::run(&cmd, &mut out, &mut err))
        }
    }
}

/// Log lines on stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a long-lived subcommand on a Tokio runtime; errors are printed, exit status 1.
fn run_async(job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(job);
    // A blocking task stuck in the kernel (a config read on a hung file system) must not
    // keep the process from exiting: dropping the runtime would wait for it forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Reads a mesh config file (YAML or JSON), or Istio's defaults when `path` is `None`.
pub fn load_mesh(path: Option<&PathBuf>) -> anyhow::Result<entryway_model::api::MeshConfig> {
    use anyhow::Context as _;
    match path {
        None => Ok(entryway_model::api::MeshConfig::default()),
        Some(p) => {
            let text = entryway_server::files::read_config_file(
                p,
                entryway_server::files::DEFAULT_MAX_FILE_BYTES,
            )
            .with_context(|| format!("reading mesh config {}", p.display()))?;
            entryway_model::decode::mesh_from_str(&text)
                .map_err(|e| anyhow::anyhow!("mesh config {}: {e}", p.display()))
        }
    }
}
