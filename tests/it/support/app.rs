//! A hookgate App on port 0 in-process, with a temp dir holding its config, SQLite file and a
//! secret file (`secret.txt`, containing [`SECRET`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hookgate::clock::SharedClock;
use hookgate::store::Store;
use hookgate::{App, Config, Handler, Role};
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::config::TestConfig;
use super::sign::hmac_hex;

pub const SECRET: &str = "test-secret";

/// The built `hookgate` binary, for tests that need a real process.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hookgate"))
}

/// Writes a config: port-0 listeners, SQLite in `dir`, then `server_extra` under `[server]`, then `body`.
pub fn write_config(dir: &Path, server_extra: &str, body: &str) -> PathBuf {
    write_config_with(dir, &Extra { server: server_extra, ..Extra::default() }, body)
}

/// Lines added to the `[server]`, `[storage]` and `[admin]` tables of a test config.
#[derive(Default, Clone, Copy)]
pub struct Extra<'a> {
    pub server: &'a str,
    pub storage: &'a str,
    pub admin: &'a str,
}

/// The admin token of [`Extra::ADMIN_TOKEN`] configs.
pub const ADMIN_TOKEN: &str = "test-admin-token";

impl Extra<'_> {
    /// `[admin]` lines that require [`ADMIN_TOKEN`] (written to `admin-token.txt`).
    pub const ADMIN_TOKEN: &'static str = "token_file = \"admin-token.txt\"";
}

/// [`write_config`] with extra lines in each table; also writes `admin-token.txt`.
pub fn write_config_with(dir: &Path, extra: &Extra<'_>, body: &str) -> PathBuf {
    std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
    std::fs::write(dir.join("admin-token.txt"), ADMIN_TOKEN).unwrap();
    let Extra { server: server_extra, storage, admin } = extra;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n{server_extra}\n\n\
         [storage]\nurl = \"sqlite://hookgate.db\"\n{storage}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\n{body}\n"
    );
    let path = dir.join("hookgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A source at `/hook/NAME` signed with the generic scheme and the test secret.
pub fn hmac_source(name: &str, deliver_to: &[&str]) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\npath = \"/hook/{name}\"\n\
         verify = {{ scheme = \"hmac-sha256\", header = \"X-Signature\", secret_file = \"secret.txt\" }}\n\
         deliver_to = {deliver_to:?}\n"
    )
}

pub struct TestApp {
    pub dir: Arc<TempDir>,
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(body: &str) -> TestApp {
        Self::spawn_with("", body, Vec::new()).await
    }

    pub async fn spawn_with(server_extra: &str, body: &str, handlers: Vec<(&str, Handler)>) -> TestApp {
        Self::spawn_extra(&Extra { server: server_extra, ..Extra::default() }, body, handlers).await
    }

    pub async fn spawn_extra(extra: &Extra<'_>, body: &str, handlers: Vec<(&str, Handler)>) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        write_config_with(dir.path(), extra, body);
        Self::start_in(dir, handlers).await
    }

    /// Starts on a [`TestConfig`] written into a new temp dir.
    pub async fn spawn_config(config: &TestConfig) -> TestApp {
        Self::spawn_config_with(config, Vec::new()).await
    }

    /// [`TestApp::spawn_config`] with `rust` destinations' handlers.
    pub async fn spawn_config_with(config: &TestConfig, handlers: Vec<(&str, Handler)>) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        config.write(dir.path());
        Self::start_in(dir, handlers).await
    }

    /// Starts (again) on the config and database already in `dir`.
    pub async fn start_in(dir: Arc<TempDir>, handlers: Vec<(&str, Handler)>) -> TestApp {
        Self::start_with_clock(dir, handlers, hookgate::clock::system()).await
    }

    /// [`TestApp::start_in`] with time from `clock` (tests that drive time instead of sleeping).
    pub async fn start_with_clock(dir: Arc<TempDir>, handlers: Vec<(&str, Handler)>, clock: SharedClock) -> TestApp {
        let config = Config::load(&dir.path().join("hookgate.toml")).unwrap_or_else(|e| panic!("{e}"));
        let handlers = handlers.into_iter().map(|(n, h)| (n.to_string(), h)).collect();
        let app = App::build(config, Role::All, handlers, clock).await.unwrap();
        let ingest = app.ingest_addr().unwrap();
        let admin = app.admin_addr();
        let store = app.store();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestApp { dir, ingest, admin, store, client: reqwest::Client::new(), stop: Some(tx), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingest)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub async fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// POSTs `body` to `/hook/SOURCE` signed with the test secret; returns (status, JSON).
    pub async fn post_signed(&self, source: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let sig = hmac_hex(SECRET, body);
        let resp = self
            .post(&format!("/hook/{source}"), body, &[("x-signature", &sig), ("content-type", "application/json")])
            .await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Graceful stop; returns the directory so the next start finds the same database.
    pub async fn stop(mut self) -> Arc<TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        // The store (and its file lock) must be gone before a restart.
        let dir = self.dir.clone();
        drop(self);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        dir
    }
}
