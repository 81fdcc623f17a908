//! The `entryway` command: one binary, a subcommand per job. Every subcommand is a library
//! function so tests can call it in process.

pub mod validate;
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
}

/// `entryway xds ...`.
#[derive(Debug, Subcommand)]
pub enum XdsCommand {
    /// Print what one proxy would receive (config_dump JSON/YAML, tables, or a static bootstrap).
    Dump(xds::DumpArgs),
}

/// Parses the process arguments and runs the chosen subcommand.
pub fn run() -> ExitCode {
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
    }
}

/// Reads a mesh config file (YAML or JSON), or Istio's defaults when `path` is `None`.
pub fn load_mesh(path: Option<&PathBuf>) -> anyhow::Result<entryway_model::api::MeshConfig> {
    use anyhow::Context as _;
    match path {
        None => Ok(entryway_model::api::MeshConfig::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading mesh config {}", p.display()))?;
            entryway_model::decode::mesh_from_str(&text)
                .map_err(|e| anyhow::anyhow!("mesh config {}: {e}", p.display()))
        }
    }
}
