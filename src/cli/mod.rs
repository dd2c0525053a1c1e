//! The command line: one file per subcommand. `run` returns the exit code: 0 success,
//! 1 user error (bad config or arguments, not found, rejected), 2 runtime failure.
//! `events`, `replay`, `backup`, `destinations` and `listen` talk to the admin API (`admin_client.rs`), never to the database.

mod admin_client;
mod backup;
mod check;
mod completions;
mod destinations;
mod display;
mod events;
mod listen;
mod replay;
mod route;
mod sample;
mod send;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "hookgate", version, about = "A self-hosted gateway for incoming webhooks")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the config file is: `--config`, else `$HOOKGATE_CONFIG`, else `./hookgate.toml`.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, short, env = "HOOKGATE_CONFIG", default_value = "hookgate.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the ingest listener, the delivery workers and the admin listener.
    Serve(serve::Args),
    /// Validate the config and every referenced secret; list every problem.
    Check(check::Args),
    /// Sign a request exactly as SOURCE's provider would, send it, print the answer.
    Send(send::Args),
    /// Dry-run SOURCE's routing rules on a sample event: which destinations match, and what each gets.
    Route(route::Args),
    /// Inspect stored events through the admin API.
    Events(events::Args),
    /// Put deliveries back in the queue: one event's, or every dead (or failed) one.
    Replay(replay::Args),
    /// Write an online backup of the embedded database to FILE, through the admin API.
    Backup(backup::Args),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions(completions::CompletionArgs),
    /// Print the manual page, hookgate(1), as roff on stdout (`hookgate man | man -l -`).
    Man(completions::ManArgs),
    /// List destinations with their state and backlog; pause or resume one.
    Destinations(destinations::Args),
    /// Forward a pull destination's events to a local URL (a development relay); Ctrl-C stops.
    Listen(listen::Args),
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn user(error: impl Into<anyhow::Error>) -> Self {
        Failure { code: 1, error: error.into() }
    }

    pub fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Failure { code: 2, error: error.into() }
    }
}

/// Parses arguments and runs the command. Usage errors exit 1, `--help`/`--version` exit 0.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => check::run(args),
        Command::Send(args) => send::run(args),
        Command::Route(args) => route::run(args),
        Command::Events(args) => events::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
        Command::Destinations(args) => destinations::run(args),
        Command::Listen(args) => listen::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// Loads the config, mapping problems to a user error that lists them all.
pub fn load_config(path: &std::path::Path) -> Result<hookgate::Config, Failure> {
    // The store checks a PostgreSQL URL's TLS settings and certificate files, so `check` names them.
    let outside = hookgate::config::load::Process::with_postgres_check(hookgate::store::postgres::check_url);
    hookgate::Config::load_from(path, &outside).map_err(|problems| {
        Failure::user(anyhow::anyhow!(
            "invalid config ({} problem{}):\n{problems}",
            problems.0.len(),
            if problems.0.len() == 1 { "" } else { "s" }
        ))
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Failure::runtime)
}
