//! `hookgate serve`: load the config (fail fast on any problem), then serve through the same
//! [`hookgate::Gateway`] that library users have, until SIGTERM/SIGINT.

use hookgate::{Error, Gateway, Role};

use super::{ConfigArg, Failure, load_config};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Which parts to run: ingest, worker or all.
    #[arg(long, value_enum, default_value_t = RoleArg::All)]
    role: RoleArg,
}

/// `--role`, as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RoleArg {
    Ingest,
    Worker,
    All,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Ingest => Role::Ingest,
            RoleArg::Worker => Role::Worker,
            RoleArg::All => Role::All,
        }
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let config = load_config(&args.config.config)?;
    let traces = hookgate::init_telemetry_for(&config).map_err(|e| Failure::runtime(anyhow::anyhow!(e)))?;
    let rust = config.rust_destinations();
    if !rust.is_empty() && args.role != RoleArg::Ingest {
        return Err(Failure::user(anyhow::anyhow!(
            "destinations {rust:?} have type = \"rust\": their handlers are registered in your own binary through \
             the library (hookgate::Gateway); the hookgate binary can only run --role ingest for this config"
        )));
    }
    // The ingest listener up to max_connections, plus the store's files and outgoing connections.
    raise_open_files_limit(config.server.max_connections as u64 + 256);
    let served = super::runtime()?.block_on(async {
        let gateway = Gateway::new(config)
            .config_file(&args.config.config)
            .role(args.role.into())
            .build()
            .await
            .map_err(failure)?;
        gateway.serve().await.map_err(failure)
    });
    // After the drain: the last attempts' spans are queued by now.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    served
}

/// A bad config or mismatched handlers are the user's to fix (exit 1); the rest is runtime (2).
fn failure(e: Error) -> Failure {
    match e {
        Error::Runtime(e) => Failure::runtime(e.context("serving")),
        other => Failure::user(other),
    }
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
