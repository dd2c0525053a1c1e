//! Wiring: `App::build` opens the store and binds the listeners (port 0 works; the bound
//! addresses are known before serving), `App::run_until` serves until the shutdown future
//! resolves, then drains: stop accepting, finish requests, let deliveries finish within the grace.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::destination::function::Handler;
use crate::dispatch::{Dispatcher, Puller};
use crate::http::{Limits, serve};
use crate::metrics::Metrics;
use crate::reload::{Live, Parts, TlsFiles};
use crate::routing::pool::Pool;
use crate::store::{self, Store};

/// Which parts a process runs (`serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Only the ingest listener (and the admin listener).
    Ingest,
    /// Only the delivery workers (and the admin listener).
    Worker,
    /// Everything.
    #[default]
    All,
}

pub struct App {
    config: Config,
    tls: TlsFiles,
    store: Arc<dyn Store>,
    ingest: Option<TcpListener>,
    admin: TcpListener,
    has_dispatcher: bool,
    /// Pull destinations' claims (served on the admin listener, in every role).
    pull: Option<Arc<Puller>>,
    metrics: Metrics,
    clock: SharedClock,
    /// What a reload swaps (the ingest router, the dispatcher); see `reload.rs`.
    live: Arc<Live>,
    stop: CancellationToken,
    servers: TaskTracker,
    deliveries: TaskTracker,
}

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

impl App {
    /// Opens the store and binds the listeners the role needs. `handlers` serve `type = "rust"`
    /// destinations.
    ///
    /// Refuses to start when no admin token is configured and the admin listener is not on a
    /// loopback address: the API can replay every event, it is never open to the network. Off
    /// loopback the token must also have at least 16 characters.
    pub async fn build(
        config: Config,
        role: Role,
        handlers: HashMap<String, Handler>,
        clock: SharedClock,
    ) -> anyhow::Result<App> {
        // Config validation refuses this too; a config changed after loading is checked again.
        if let Some(reason) = crate::config::open_to_the_network(config.admin.listen, config.admin.token.as_ref()) {
            anyhow::bail!("admin.listen {reason}");
        }
        if let Some(token) = &config.admin.token
            && let Some(reason) = crate::config::weak_admin_token(config.admin.listen, token)
        {
            anyhow::bail!("admin token: {reason}");
        }
        // A pull destination's token opens its deliveries to whoever holds it: as hard to guess.
        for d in &config.destinations {
            if let crate::config::Target::Pull { token: Some(token) } = &d.target
                && let Some(reason) = crate::config::weak_admin_token(config.admin.listen, token)
            {
                anyhow::bail!("destination {:?} token: {}", d.name, reason.replace("the admin token", "its token"));
            }
        }
        for (key, warning) in config.warnings() {
            tracing::warn!(key, "{warning}");
        }
        if config.admin.token.is_none() {
            tracing::warn!(
                admin = %config.admin.listen,
                "no admin token configured: the admin API is open to every local user of this machine"
            );
        }
        let tls = TlsFiles::load(&config)?;
        let metrics = Metrics::new();
        let store = store::open(&config.storage, crate::clock::system()).await.context("opening storage")?;
        if role == Role::Ingest && matches!(config.storage.url, crate::config::StorageUrl::Sqlite(_)) {
            // Legitimate (fill a backlog, deliver later), but easy to do by mistake: the embedded
            // store has one owner, so no worker process can share it.
            tracing::warn!(
                "--role ingest on the embedded SQLite store: events are stored but nothing delivers them while this process runs (start --role all to deliver)"
            );
        }
        let routing = config
            .has_expressions()
            .then(Pool::for_this_machine)
            .transpose()
            .context("starting the threads routing expressions run on")?;
        let dispatcher = match role {
            Role::Ingest => None,
            Role::Worker | Role::All => Some(Arc::new(
                Dispatcher::new(&config, store.clone(), &handlers, &metrics, clock.clone(), routing.clone())
                    .map_err(anyhow::Error::msg)?,
            )),
        };
        let (stop, servers, deliveries) = (CancellationToken::new(), TaskTracker::new(), TaskTracker::new());
        let has_dispatcher = dispatcher.is_some();
        let pull = Puller::new(&config, store.clone(), &metrics, clock.clone(), routing.clone(), stop.clone())
            .map_err(anyhow::Error::msg)?;
        let pull = (!pull.is_empty()).then(|| Arc::new(pull));
        let live = Live::new(Parts {
            config: config.clone(),
            handlers,
            store: store.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            tls: tls.clone(),
            routing,
            ingest: role != Role::Worker,
            dispatcher,
            stop: stop.clone(),
            servers: servers.clone(),
            deliveries: deliveries.clone(),
        });
        let ingest = match role {
            Role::Worker => None,
            Role::Ingest | Role::All => Some(
                TcpListener::bind(config.server.listen)
                    .await
                    .with_context(|| format!("binding server.listen {}", config.server.listen))?,
            ),
        };
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("binding admin.listen {}", config.admin.listen))?;
        Ok(App {
            config,
            tls,
            store,
            ingest,
            admin,
            has_dispatcher,
            pull,
            metrics,
            clock,
            live,
            stop,
            servers,
            deliveries,
        })
    }

    /// Where the ingest listener is bound (None for `--role worker`).
    pub fn ingest_addr(&self) -> Option<SocketAddr> {
        self.ingest.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The store this app writes to (tests and embedders inspect events through it).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The listeners' certificates, for a reload (SIGHUP) to re-read.
    pub fn tls(&self) -> TlsFiles {
        self.tls.clone()
    }

    /// What reloads the config (SIGHUP, `POST /api/reload`): it reads the file given to
    /// [`App::set_config_file`]; without one a reload only answers that there is no file.
    pub fn live(&self) -> Arc<Live> {
        self.live.clone()
    }

    /// Whether a reload has a file to read.
    pub fn has_config_file(&self) -> bool {
        self.live.has_file()
    }

    /// The file a reload reads the config from.
    pub fn set_config_file(&self, file: std::path::PathBuf) {
        self.live.set_file(file);
    }

    /// Where the admin listener is bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin.listen)
    }

    /// Serves until `shutdown` resolves, then drains within `server.shutdown_grace`.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let grace = self.config.server.shutdown_grace;
        let (stop, servers, deliveries) = (self.stop.clone(), self.servers.clone(), self.deliveries.clone());
        let limits = Limits {
            max_connections: self.config.server.max_connections,
            header_read_timeout: self.config.server.header_timeout,
        };

        if let Some(listener) = self.ingest {
            let router = self.live.ingest_service();
            tracing::info!(addr = %listener.local_addr()?, tls = self.tls.ingest.is_some(), "ingest listening");
            servers.spawn(serve(listener, router, stop.clone(), limits, self.tls.ingest.clone()));
        }
        let admin_router = admin::router(AdminState {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            token: self.config.admin.token.clone().map(Arc::new),
            clock: self.clock.clone(),
            reload: Some(self.live.clone()),
            destinations: self.config.destinations.iter().map(|d| (d.name.clone(), d.target.kind())).collect(),
            pull: self.pull.clone(),
        });
        if let Some(pull) = &self.pull {
            // Records leases that run out; stops with `stop`.
            servers.spawn(pull.clone().run());
        }
        tracing::info!(addr = %self.admin.local_addr()?, tls = self.tls.admin.is_some(), "admin listening");
        servers.spawn(serve(self.admin, admin_router, stop.clone(), limits, self.tls.admin.clone()));
        if self.has_dispatcher {
            self.live.start_dispatcher();
            // Retention runs where workers run (see retention.rs for why).
            servers.spawn(crate::retention::run(
                self.store.clone(),
                self.config.storage.retention,
                self.clock.clone(),
                stop.clone(),
            ));
        }
        let (metrics, upkeep_stop) = (self.metrics.clone(), stop.clone());
        servers.spawn(async move {
            loop {
                tokio::select! {
                    _ = upkeep_stop.cancelled() => return,
                    _ = tokio::time::sleep(METRICS_UPKEEP) => metrics.run_upkeep(),
                }
            }
        });
        servers.close();

        shutdown.await;
        tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: no new requests or claims");
        stop.cancel();
        let drained = tokio::time::timeout(grace, async {
            servers.wait().await;
            deliveries.close();
            deliveries.wait().await;
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("shutdown complete"),
            Err(_) => {
                tracing::warn!("grace period over; unfinished deliveries return to the queue when their lease ends")
            }
        }
        // Writes what is queued and releases the database (SQLite's file lock), so a restart in the
        // same process opens it at once; what still runs past the grace cannot record, and its lease
        // brings it back.
        self.store.close().await;
        Ok(())
    }
}
