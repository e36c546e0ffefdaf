//! The `granary` binary: the server (`granary serve`) and every command-line tool.
//!
//! May touch: the server's data directory, the files named on its command line, and (as the
//! server) the network ports it is configured to listen on.
//! Must never: run app code outside a sandbox, or answer a request before checking who asks.

mod accounts;
mod apps;
mod cli_admin;
mod cli_package;
mod cli_sandbox;
mod cli_supervisor;
mod control;
mod email_verify;
mod gateway;
mod grain_tokens;
mod grains;
mod powerbox_chooser;
mod powerbox_host;
mod powerbox_objects;
mod powerbox_offer;
mod powerbox_provider;
mod powerbox_rpc;
mod ratelimit;
mod runner;
mod server;
mod settings;
mod storage_meter;
mod sharing;
mod tokens;
mod ui;
mod ui_apps;
mod ui_grains;
mod ui_powerbox;
mod ui_sharing;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Granary: a self-hosted personal server where every app instance runs in its own sandbox.
#[derive(Parser)]
#[command(name = "granary", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(server::ServeArgs),
    /// Print a one-time link that creates an administrator account (asks the running server).
    AdminToken(cli_admin::AdminTokenArgs),
    /// Show the running server's version, address and account counts.
    Status(cli_admin::StatusArgs),
    /// Create an app signing key in your keyring and print its app id.
    Keygen(cli_package::KeygenArgs),
    /// Start a new app: write a commented granary.toml with a fresh key.
    Init(cli_package::InitArgs),
    /// Build a signed .gpk package from a directory's granary.toml.
    Pack(cli_package::PackArgs),
    /// Check a package's signature and show what it contains.
    Verify(cli_package::VerifyArgs),
    /// Check a package and unpack its file tree into a new directory.
    Unpack(cli_package::UnpackArgs),
    /// Run a command in a grain sandbox, exactly as an app runs (for app developers).
    Sandbox(cli_sandbox::SandboxArgs),
    /// One grain's supervisor (started by the server, not by hand).
    #[command(hide = true)]
    Supervisor(cli_supervisor::SupervisorArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRANARY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(a) => server::run(a),
        Command::AdminToken(a) => cli_admin::admin_token(a),
        Command::Status(a) => cli_admin::status(a),
        Command::Keygen(a) => cli_package::keygen(a),
        Command::Init(a) => cli_package::init(a),
        Command::Pack(a) => cli_package::pack(a),
        Command::Verify(a) => cli_package::verify(a),
        Command::Unpack(a) => cli_package::unpack(a),
        Command::Sandbox(a) => cli_sandbox::run(a),
        Command::Supervisor(a) => cli_supervisor::run(a),
    }
}
