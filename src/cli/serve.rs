//! `hookgate serve`: load the config (fail fast on any problem), build, serve until SIGTERM/SIGINT.

use std::collections::HashMap;

use anyhow::Context;

use super::{ConfigArg, Failure, load_config};
use crate::{App, Role};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Which parts to run: ingest, worker or all.
    #[arg(long, value_enum, default_value_t = Role::All)]
    role: Role,
}

pub fn run(args: Args) -> Result<(), Failure> {
    crate::telemetry::init();
    let config = load_config(&args.config.config)?;
    let rust = config.rust_destinations();
    if !rust.is_empty() && args.role != Role::Ingest {
        return Err(Failure::user(anyhow::anyhow!(
            "destinations {rust:?} have type = \"rust\": their handlers are registered in your own binary through \
             the library (hookgate::Gateway); the hookgate binary can only run --role ingest for this config"
        )));
    }
    // The ingest listener up to max_connections, plus the store's files and outgoing connections.
    raise_open_files_limit(config.server.max_connections as u64 + 256);
    super::runtime()?.block_on(async {
        let app = App::build(config, args.role, HashMap::new()).await.map_err(Failure::runtime)?;
        tracing::info!(
            ingest = %app.ingest_addr().map(|a| a.to_string()).unwrap_or_else(|| "none".into()),
            admin = %app.admin_addr(),
            role = ?args.role,
            version = env!("CARGO_PKG_VERSION"),
            "hookgate ready"
        );
        app.run_until(crate::shutdown::signal()).await.context("serving").map_err(Failure::runtime)
    })
}

/// Raises the soft limit on open files up to the hard limit: many systems start processes at
/// 1,024, which `accept` would hit long before `[server] max_connections`. Warns if even the
/// hard limit is below what the config may need.
fn raise_open_files_limit(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let target = wanted.min(hard).max(soft);
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_err() {
        tracing::warn!(soft, hard, "cannot raise the open files limit");
        return;
    }
    if target < wanted {
        tracing::warn!(
            limit = target,
            wanted,
            "the open files limit is below what server.max_connections may need; new connections past it fail to be accepted (raise LimitNOFILE / ulimit -n)"
        );
    }
}
