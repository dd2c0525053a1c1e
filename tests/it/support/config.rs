//! A typed builder for test configs, rendered with the `toml` crate rather than formatted by hand:
//!
//! ```ignore
//! let config = TestConfig::new()
//!     .delivery("max_attempts", 3)
//!     .http("crm", &rx.url())
//!     .set("concurrency", 1)
//!     .hmac_source("s", &["crm"])
//!     .write(dir.path());
//! ```
//!
//! Listeners are on port 0 and the store is SQLite in the directory written to, as in
//! [`super::app::write_config`]; `secret.txt` holds [`SECRET`] and `admin-token.txt` [`ADMIN_TOKEN`].

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::app::{ADMIN_TOKEN, SECRET};

#[derive(Debug, Clone)]
pub struct TestConfig {
    server: Table,
    storage: Table,
    admin: Table,
    delivery: Table,
    /// `[telemetry]`, rendered only when a key is set.
    telemetry: Table,
    sources: Vec<Table>,
    destinations: Vec<Table>,
    /// `[alerts]`, when set.
    alerts: Option<Table>,
    /// Which list [`TestConfig::set`] adds to: the last source or destination added.
    last: Last,
}

#[derive(Debug, Clone, Copy)]
enum Last {
    None,
    Source,
    Destination,
}

fn table<const N: usize>(pairs: [(&str, Value); N]) -> Table {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TestConfig {
    pub fn new() -> Self {
        TestConfig {
            server: table([("listen", "127.0.0.1:0".into()), ("shutdown_grace", "5s".into())]),
            storage: table([("url", "sqlite://hookgate.db".into())]),
            admin: table([("listen", "127.0.0.1:0".into())]),
            delivery: Table::new(),
            telemetry: Table::new(),
            sources: Vec::new(),
            destinations: Vec::new(),
            alerts: None,
            last: Last::None,
        }
    }

    pub fn server(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.server.insert(key.into(), value.into());
        self
    }

    /// The ingest listener on `port` (tests that start the binary on a port they chose).
    pub fn ingest_port(self, port: u16) -> Self {
        self.server("listen", format!("127.0.0.1:{port}"))
    }

    /// The admin listener on `port`.
    pub fn admin_port(self, port: u16) -> Self {
        self.admin("listen", format!("127.0.0.1:{port}"))
    }

    pub fn storage(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.storage.insert(key.into(), value.into());
        self
    }

    pub fn admin(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.admin.insert(key.into(), value.into());
        self
    }

    /// The admin API requires [`ADMIN_TOKEN`] (read from `admin-token.txt`).
    pub fn admin_token(self) -> Self {
        self.admin("token_file", "admin-token.txt")
    }

    pub fn delivery(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.delivery.insert(key.into(), value.into());
        self
    }

    /// Retries 20 ms apart at first, at most 100 ms apart: retry tests take milliseconds.
    pub fn fast_retries(self) -> Self {
        self.delivery("initial_backoff", "20ms").delivery("max_backoff", "100ms")
    }

    /// An `http` destination.
    pub fn http(self, name: &str, url: &str) -> Self {
        self.destination(table([("name", name.into()), ("type", "http".into()), ("url", url.into())]))
    }

    /// An `exec` destination running `command` (no shell).
    pub fn exec(self, name: &str, command: &[&str]) -> Self {
        let command = Value::Array(command.iter().map(|c| Value::from(*c)).collect());
        self.destination(table([("name", name.into()), ("type", "exec".into()), ("command", command)]))
    }

    /// A broker destination of `kind` (`nats`, `rabbitmq`, `redis`, `mqtt`) at `url`; its subject,
    /// routing key, stream or topic follow with [`TestConfig::set`].
    pub fn broker(self, name: &str, kind: &str, url: &str) -> Self {
        self.destination(table([("name", name.into()), ("type", kind.into()), ("url", url.into())]))
    }

    /// A `rust` destination (a handler registered by the test).
    pub fn rust(self, name: &str) -> Self {
        self.destination(table([("name", name.into()), ("type", "rust".into())]))
    }

    /// A `pull` destination (CONTRACT §10), claimed through the admin API.
    pub fn pull(self, name: &str) -> Self {
        self.destination(table([("name", name.into()), ("type", "pull".into())]))
    }

    fn destination(mut self, d: Table) -> Self {
        self.destinations.push(d);
        self.last = Last::Destination;
        self
    }

    /// A source at `/hook/NAME` signed with the generic scheme (`X-Signature`, hex) and [`SECRET`].
    pub fn hmac_source(self, name: &str, deliver_to: &[&str]) -> Self {
        let verify = table([
            ("scheme", "hmac-sha256".into()),
            ("header", "X-Signature".into()),
            ("secret_file", "secret.txt".into()),
        ]);
        self.source(name, verify, deliver_to)
    }

    /// A source at `/hook/NAME` with the given `verify` table.
    pub fn source(self, name: &str, verify: Table, deliver_to: &[&str]) -> Self {
        let deliver_to = deliver_to.iter().map(|d| Value::from(*d)).collect();
        self.routed_source(name, verify, deliver_to)
    }

    /// A source at `/hook/NAME` signed as GitHub signs (`X-Hub-Signature-256`) with [`SECRET`], whose
    /// `deliver_to` entries are names ([`Value::from`]) or [`rule`] tables.
    pub fn github_source(self, name: &str, deliver_to: Vec<Value>) -> Self {
        let verify = table([("scheme", "github".into()), ("secret_file", "secret.txt".into())]);
        self.routed_source(name, verify, deliver_to)
    }

    /// A source at `/hook/NAME` with the given `verify` table and `deliver_to` entries.
    pub fn routed_source(mut self, name: &str, verify: Table, deliver_to: Vec<Value>) -> Self {
        let deliver_to = Value::Array(deliver_to);
        self.sources.push(table([
            ("name", name.into()),
            ("path", format!("/hook/{name}").into()),
            ("verify", verify.into()),
            ("deliver_to", deliver_to),
        ]));
        self.last = Last::Source;
        self
    }

    /// `[alerts] deliver_to` (names or [`rule`] tables, CONTRACT §8).
    pub fn alerts(mut self, deliver_to: Vec<Value>) -> Self {
        self.alerts.get_or_insert_with(Table::new).insert("deliver_to".into(), Value::Array(deliver_to));
        self
    }

    /// `[alerts] on`: the kinds of alert raised.
    pub fn alerts_on(mut self, kinds: &[&str]) -> Self {
        let on = Value::Array(kinds.iter().map(|k| Value::from(*k)).collect());
        self.alerts.get_or_insert_with(Table::new).insert("on".into(), on);
        self
    }

    /// Sets `[telemetry] key`.
    pub fn telemetry(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.telemetry.insert(key.into(), value.into());
        self
    }

    /// Sets `key` on the source or destination added last.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        let target = match self.last {
            Last::Source => self.sources.last_mut(),
            Last::Destination => self.destinations.last_mut(),
            Last::None => None,
        };
        target.expect("set() follows a source or a destination").insert(key.into(), value.into());
        self
    }

    /// The config as TOML text.
    pub fn render(&self) -> String {
        let mut root = Table::new();
        for (name, t) in
            [("server", &self.server), ("storage", &self.storage), ("admin", &self.admin), ("delivery", &self.delivery)]
        {
            root.insert(name.into(), Value::Table(t.clone()));
        }
        if !self.telemetry.is_empty() {
            root.insert("telemetry".into(), Value::Table(self.telemetry.clone()));
        }
        let list = |items: &[Table]| Value::Array(items.iter().cloned().map(Value::Table).collect());
        root.insert("sources".into(), list(&self.sources));
        root.insert("destinations".into(), list(&self.destinations));
        if let Some(alerts) = &self.alerts {
            root.insert("alerts".into(), Value::Table(alerts.clone()));
        }
        toml::to_string(&root).expect("a TOML table renders")
    }

    /// Writes `hookgate.toml`, `secret.txt` and `admin-token.txt` into `dir`; returns the config's path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
        std::fs::write(dir.join("admin-token.txt"), ADMIN_TOKEN).unwrap();
        let path = dir.join("hookgate.toml");
        std::fs::write(&path, self.render()).unwrap();
        path
    }
}

/// A `deliver_to` table: `{ destination, filter, transform }` (CONTRACT §7).
pub fn rule(destination: &str, filter: Option<&str>, transform: Option<&str>) -> Value {
    let mut t = table([("destination", destination.into())]);
    if let Some(f) = filter {
        t.insert("filter".into(), f.into());
    }
    if let Some(x) = transform {
        t.insert("transform".into(), x.into());
    }
    Value::Table(t)
}

#[test]
fn a_built_config_is_valid_and_says_what_was_built() {
    let dir = tempfile::tempdir().unwrap();
    let path = TestConfig::new()
        .delivery("max_attempts", 3)
        .http("crm", "http://127.0.0.1:9/crm")
        .set("concurrency", 1)
        .set("timeout", "2s")
        .exec("log", &["true"])
        .hmac_source("s", &["crm", "log"])
        .server("max_body_bytes", 1000)
        .ingest_port(8123)
        .admin_port(8124)
        .write(dir.path());
    let config = hookgate::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.max_body_bytes, 1000);
    assert_eq!((config.server.listen.port(), config.admin.listen.port()), (8123, 8124));
    assert_eq!(config.delivery.policy.max_attempts, 3);
    let crm = config.destination("crm").unwrap();
    assert_eq!((crm.concurrency, crm.timeout), (Some(1), std::time::Duration::from_secs(2)));
    assert_eq!(config.source("s").unwrap().deliver_to, ["crm", "log"]);
}
