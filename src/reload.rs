//! Reloading the config file while serving (SIGHUP, `POST /api/reload`): the new file is loaded
//! and validated whole; if anything is wrong nothing changes and every problem is logged and
//! returned. Otherwise sources, destinations, routes, limits and secrets are replaced at once: a
//! new ingest router (requests in flight finish on the one they started on) and a new dispatcher
//! (the old one stops claiming; its deliveries in flight finish and record). Keys bound at start
//! (listen addresses, storage, the admin token, connection limits, logging, telemetry, TLS file paths) keep
//! their old value, named in the log. TLS certificates are re-read. Read [`Live::reload`] first.

use crate::routing::pool::Pool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::destination::function::Handler;
use crate::dispatch::Dispatcher;
use crate::ingest::{self, IngestState};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tls::Certificates;

/// What a reload replaces, and what it needs to build the replacements.
pub struct Live {
    /// The file to read again; unset for a gateway built from a `Config` in code.
    file: OnceLock<PathBuf>,
    config: Mutex<Config>,
    handlers: HashMap<String, Handler>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    clock: SharedClock,
    tls: TlsFiles,
    /// The threads routing expressions run on: started with the first config that has any, and
    /// kept (idle threads cost nothing) when a reload removes them.
    routing: Mutex<Option<Pool>>,
    /// The ingest router requests are handed to; `None` without an ingest listener.
    ingest: Option<RwLock<Router>>,
    /// The running dispatcher's own stop; `None` without workers.
    dispatcher: Mutex<Option<(Arc<Dispatcher>, CancellationToken)>>,
    /// The app's stop, and where dispatcher loops and deliveries run.
    stop: CancellationToken,
    servers: TaskTracker,
    deliveries: TaskTracker,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

/// Everything [`Live::new`] takes.
pub struct Parts {
    pub config: Config,
    pub handlers: HashMap<String, Handler>,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub clock: SharedClock,
    pub tls: TlsFiles,
    pub routing: Option<Pool>,
    pub ingest: bool,
    pub dispatcher: Option<Arc<Dispatcher>>,
    pub stop: CancellationToken,
    pub servers: TaskTracker,
    pub deliveries: TaskTracker,
}

impl Live {
    pub fn new(p: Parts) -> Arc<Live> {
        p.metrics.register_config_reloads();
        let ingest =
            p.ingest.then(|| RwLock::new(ingest_router(&p.config, &p.store, &p.metrics, &p.clock, p.routing.clone())));
        let dispatcher = p.dispatcher.map(|d| (d, p.stop.child_token()));
        Arc::new(Live {
            file: OnceLock::new(),
            config: Mutex::new(p.config),
            handlers: p.handlers,
            store: p.store,
            metrics: p.metrics,
            clock: p.clock,
            tls: p.tls,
            routing: Mutex::new(p.routing),
            ingest,
            dispatcher: Mutex::new(dispatcher),
            stop: p.stop,
            servers: p.servers,
            deliveries: p.deliveries,
            busy: tokio::sync::Mutex::new(()),
        })
    }

    pub fn has_file(&self) -> bool {
        self.file.get().is_some()
    }

    /// Where a reload reads the config from.
    pub fn set_file(&self, file: PathBuf) {
        let _ = self.file.set(file);
    }

    /// The router the ingest listener serves: each request goes to the router current when it
    /// arrives, and stays on it to the end.
    pub fn ingest_service(self: &Arc<Self>) -> Router {
        let live = self.clone();
        Router::new().fallback_service(tower::service_fn(move |req: Request| {
            let router = live.ingest.as_ref().map(|r| r.read().unwrap_or_else(|e| e.into_inner()).clone());
            async move {
                match router {
                    Some(router) => router.oneshot(req).await,
                    None => Ok(http::StatusCode::NOT_FOUND.into_response()),
                }
            }
        }))
    }

    /// Starts the current dispatcher's claim loop (once, at start).
    pub fn start_dispatcher(&self) {
        let slot = self.dispatcher.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((d, stop)) = slot.as_ref() {
            self.servers.spawn(d.clone().run(stop.clone(), self.deliveries.clone()));
        }
    }

    /// Reads the config file again and, if it is valid, serves it. Returns every problem when not
    /// (then nothing changed). Counted in `hookgate_config_reloads_total{result}`.
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        let _one = self.busy.lock().await;
        let result = self.try_reload().await;
        match &result {
            Ok(()) => {
                self.metrics.config_reload("ok");
                tracing::info!("config reloaded");
            }
            Err(problems) => {
                self.metrics.config_reload("error");
                for problem in problems {
                    tracing::error!(problem = %problem, "config not reloaded");
                }
                tracing::error!(problems = problems.len(), "config not reloaded: the running config is unchanged");
            }
        }
        result
    }

    /// The routing threads `config` needs: the running ones, or new ones for its first expressions.
    fn routing_for(&self, config: &Config) -> Result<Option<Pool>, String> {
        let mut routing = self.routing.lock().unwrap_or_else(|e| e.into_inner());
        if routing.is_none() && config.has_expressions() {
            *routing = Some(Pool::for_this_machine().map_err(|e| format!("starting the routing threads: {e}"))?);
        }
        Ok(routing.clone())
    }

    async fn try_reload(&self) -> Result<(), Vec<String>> {
        let Some(file) = self.file.get().cloned() else {
            return Err(vec![
                "this gateway was built from a config in code, not a file: there is nothing to reload".into(),
            ]);
        };
        let outside = crate::config::load::Process::with_postgres_check(crate::store::postgres::check_url);
        let loaded = tokio::task::spawn_blocking(move || Config::load_from(&file, &outside))
            .await
            .map_err(|e| vec![format!("loading the config: {e}")])?;
        let new = loaded.map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let old = self.config.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (effective, kept) = keep_restart_keys(&old, new);
        // Build everything before swapping anything: a destination without its handler fails here.
        let routing = self.routing_for(&effective).map_err(|e| vec![e])?;
        let dispatcher = match self.dispatcher.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            true => Some(
                Dispatcher::new(
                    &effective,
                    self.store.clone(),
                    &self.handlers,
                    &self.metrics,
                    self.clock.clone(),
                    routing.clone(),
                )
                .map(Arc::new)
                .map_err(|e| vec![e])?,
            ),
            false => None,
        };
        let router =
            self.ingest.as_ref().map(|_| ingest_router(&effective, &self.store, &self.metrics, &self.clock, routing));
        if !kept.is_empty() {
            tracing::warn!(keys = ?kept, "these keys changed but need a restart: they keep their old value until then");
        }
        if let (Some(slot), Some(router)) = (&self.ingest, router) {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = router;
        }
        if let Some(d) = dispatcher
            && !self.stop.is_cancelled()
        {
            let stop = self.stop.child_token();
            let old = self.dispatcher.lock().unwrap_or_else(|e| e.into_inner()).replace((d.clone(), stop.clone()));
            // The old loop stops claiming; what it claimed is still delivered and recorded.
            if let Some((_, old_stop)) = old {
                old_stop.cancel();
            }
            self.servers.spawn(d.run(stop, self.deliveries.clone()));
        }
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = effective;
        self.tls.reload();
        Ok(())
    }
}

impl crate::admin::Reload for Live {
    fn reload(&self) -> futures::future::BoxFuture<'_, Result<(), Vec<String>>> {
        Box::pin(Live::reload(self))
    }
}

fn ingest_router(
    config: &Config,
    store: &Arc<dyn Store>,
    metrics: &Metrics,
    clock: &SharedClock,
    routing: Option<Pool>,
) -> Router {
    ingest::router(IngestState::new(config, store.clone(), metrics, clock.clone(), routing))
}

/// `new` with the keys bound at start set back to `old`'s, and the names of those that differed.
fn keep_restart_keys(old: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    let (o, n) = (&old.server, &mut new.server);
    macro_rules! keep {
        ($name:literal, $old:expr, $new:expr, $same:expr) => {
            if !$same {
                kept.push($name);
                $new = $old.clone();
            }
        };
    }
    keep!("server.listen", o.listen, n.listen, o.listen == n.listen);
    keep!("server.max_connections", o.max_connections, n.max_connections, o.max_connections == n.max_connections);
    keep!("server.header_timeout", o.header_timeout, n.header_timeout, o.header_timeout == n.header_timeout);
    keep!("server.shutdown_grace", o.shutdown_grace, n.shutdown_grace, o.shutdown_grace == n.shutdown_grace);
    keep!("server.tls", o.tls, n.tls, o.tls == n.tls);
    let (o, n) = (&old.admin, &mut new.admin);
    keep!("admin.listen", o.listen, n.listen, o.listen == n.listen);
    keep!("admin.tls", o.tls, n.tls, o.tls == n.tls);
    let same_token = o.token.as_ref().map(|t| t.expose()) == n.token.as_ref().map(|t| t.expose());
    keep!("admin.token", o.token, n.token, same_token);
    let (o, n) = (&old.storage, &mut new.storage);
    keep!("storage.url", o.url, n.url, o.url == n.url);
    keep!("storage.retention", o.retention, n.retention, o.retention == n.retention);
    keep!("storage.pool_size", o.pool_size, n.pool_size, o.pool_size == n.pool_size);
    keep!("storage.check_at_start", o.check_at_start, n.check_at_start, o.check_at_start == n.check_at_start);
    keep!("log", old.log, new.log, old.log == new.log);
    keep!("telemetry", old.telemetry, new.telemetry, old.telemetry == new.telemetry);
    (new, kept)
}

/// The certificates of the listeners that serve HTTPS, re-read together by [`TlsFiles::reload`].
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ingest: Option<Arc<Certificates>>,
    pub admin: Option<Arc<Certificates>>,
}

impl TlsFiles {
    pub fn load(config: &Config) -> anyhow::Result<TlsFiles> {
        let load = |tls: &Option<crate::config::Tls>, key: &str| -> anyhow::Result<Option<Arc<Certificates>>> {
            tls.as_ref()
                .map(|t| Certificates::load(&t.cert_file, &t.key_file).map(Arc::new))
                .transpose()
                .map_err(|e| anyhow::anyhow!("{key}: {e}"))
        };
        Ok(TlsFiles { ingest: load(&config.server.tls, "server.tls")?, admin: load(&config.admin.tls, "admin.tls")? })
    }

    /// Reads every listener's certificate and key again. A listener whose new pair is unreadable
    /// or does not match keeps serving the old one; each such failure is logged and returned.
    /// New connections get the new certificate; open ones keep theirs.
    pub fn reload(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for (key, certs) in [("server.tls", &self.ingest), ("admin.tls", &self.admin)] {
            let Some(certs) = certs else { continue };
            match certs.reload() {
                Ok(()) => tracing::info!(key, cert_file = %certs.cert_file().display(), "certificate reloaded"),
                Err(e) => {
                    tracing::error!(key, error = %e, "certificate not reloaded; the old one is still served");
                    failed.push(format!("{key}: {e}"));
                }
            }
        }
        failed
    }
}
