//! The edge of config loading, the one place that looks at the outside world: the config file,
//! the `HOOKGATE_*` overrides, `secret_env`/`token_env` variables, secret files, and (through a
//! check the caller passes in) a PostgreSQL URL's certificate files. It resolves a validated
//! [`Draft`] into a [`Config`], building each source's `Verifier` from the secrets it read.
//! Everything it decides on is in `validate.rs`; what it reads comes through [`Outside`], so tests
//! can pass a fake environment and fake files.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::entries::{DraftDestination, DraftSource};
use super::fields::SecretRef;
use super::http_options;
use super::validate::{self, Draft, Overrides};
use super::{
    Admin, Config, ConfigErrors, ConfigProblem, Destination, HeaderSource, Problems, Source, StorageUrl, Target, Tls,
    open_to_the_network, weak_admin_token,
};
use crate::secret::Secret;
use crate::verify::{SecretInput, Verifier, standard_webhooks};

/// What loading a config reads from outside.
pub trait Outside {
    /// An environment variable.
    fn var(&self, name: &str) -> Option<OsString>;
    /// A file's bytes.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// What is wrong with a PostgreSQL `storage.url` beyond its scheme (its TLS settings and
    /// certificate files): the store's check, passed in by a caller that knows the store.
    fn check_postgres_url(&self, _url: &str) -> Result<(), String> {
        Ok(())
    }
}

/// A check of a PostgreSQL URL: what is wrong with it, if anything.
pub type UrlCheck = fn(&str) -> Result<(), String>;

/// This process's environment and file system.
#[derive(Default)]
pub struct Process {
    postgres_check: Option<UrlCheck>,
}

impl Process {
    /// The process, checking a PostgreSQL URL with `check` (`store::postgres::check_url`).
    pub fn with_postgres_check(check: UrlCheck) -> Self {
        Process { postgres_check: Some(check) }
    }
}

impl Outside for Process {
    fn var(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn check_postgres_url(&self, url: &str) -> Result<(), String> {
        self.postgres_check.map_or(Ok(()), |check| check(url))
    }
}

impl Overrides {
    /// `HOOKGATE_LISTEN`, `HOOKGATE_ADMIN_LISTEN` and `HOOKGATE_DATABASE_URL`, where set, not empty
    /// and text.
    pub fn from_env(outside: &dyn Outside) -> Self {
        let var = |name: &str| outside.var(name).and_then(|v| v.into_string().ok()).filter(|v| !v.is_empty());
        Overrides {
            listen: var("HOOKGATE_LISTEN"),
            admin_listen: var("HOOKGATE_ADMIN_LISTEN"),
            database_url: var("HOOKGATE_DATABASE_URL"),
        }
    }
}

/// Reads, validates and resolves the config file at `path`.
pub fn load(path: &Path, outside: &dyn Outside) -> Result<Config, ConfigErrors> {
    let text = outside.read(path).map_err(|e| {
        ConfigErrors(vec![ConfigProblem {
            file: path.to_path_buf(),
            key: String::new(),
            reason: format!("cannot read config file: {e}"),
        }])
    })?;
    let text = String::from_utf8(text).map_err(|_| {
        ConfigErrors(vec![ConfigProblem {
            file: path.to_path_buf(),
            key: String::new(),
            reason: "cannot read config file: stream did not contain valid UTF-8".into(),
        }])
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base_dir = base_dir.canonicalize().unwrap_or(base_dir);
    from_toml(&text, path, &base_dir, outside)
}

/// Validates config text (the pure step) and resolves it here.
pub fn from_toml(text: &str, file: &Path, base_dir: &Path, outside: &dyn Outside) -> Result<Config, ConfigErrors> {
    let (draft, mut p) = validate::parse(text, file, base_dir, &Overrides::from_env(outside))?;
    let config = resolve(draft, outside, &mut p);
    p.into_result()?;
    config.ok_or_else(|| ConfigErrors(Vec::new()))
}

/// Reads every secret the draft names and builds the verifiers, adding what goes wrong to `p`.
pub fn resolve(draft: Draft, outside: &dyn Outside, p: &mut Problems) -> Option<Config> {
    let token = draft.admin_token.and_then(|t| match read(outside, &t.source) {
        Ok(secret) => Some((t.key, secret)),
        Err(e) if t.required => {
            p.push(t.key, e);
            None
        }
        // Without an explicit key the conventional variable is optional.
        Err(_) => None,
    });
    if let Some(listen) = draft.admin_listen {
        if let Some(reason) = open_to_the_network(listen, token.as_ref().map(|(_, t)| t)) {
            p.push("admin.listen", reason);
        }
        if let Some((key, token)) = &token
            && let Some(reason) = weak_admin_token(listen, token)
        {
            p.push(*key, reason);
        }
    }
    if let Some(StorageUrl::Postgres(url)) = draft.storage.as_ref().map(|s| &s.url) {
        let url = String::from_utf8_lossy(url.expose());
        if let Err(e) = outside.check_postgres_url(&url) {
            p.push("storage.url", e);
        }
    }
    if let Some(tls) = draft.server.as_ref().and_then(|s| s.tls.as_ref()) {
        check_tls(tls, "server.tls", outside, p);
    }
    if let Some(tls) = &draft.admin_tls {
        check_tls(tls, "admin.tls", outside, p);
    }
    let destinations: Vec<Destination> =
        draft.destinations.into_iter().filter_map(|d| destination(d, outside, p)).collect();
    let sources: Vec<Source> = draft.sources.into_iter().filter_map(|s| source(s, outside, p)).collect();
    Some(Config {
        base_dir: draft.base_dir,
        server: draft.server?,
        storage: draft.storage?,
        admin: Admin { listen: draft.admin_listen?, token: token.map(|(_, t)| t), tls: draft.admin_tls },
        delivery: draft.delivery,
        log: draft.log,
        telemetry: draft.telemetry,
        sources,
        destinations,
        alerts: draft.alerts,
        secret_env_vars: draft.secret_env_vars,
    })
}

/// A listener's certificate and key: both readable, PEM, and one pair.
fn check_tls(tls: &Tls, key: &str, outside: &dyn Outside, p: &mut Problems) {
    let read = |path: &Path, name: &str, p: &mut Problems| {
        outside
            .read(path)
            .map_err(|e| p.push(format!("{key}.{name}"), format!("cannot read {}: {e}", path.display())))
            .ok()
    };
    let cert = read(&tls.cert_file, "cert_file", p);
    let private = read(&tls.key_file, "key_file", p);
    if let (Some(cert), Some(private)) = (cert, private)
        && let Err(e) = crate::tls::server_config(&cert, &private)
    {
        p.push(key, format!("{e} ({}, {})", tls.cert_file.display(), tls.key_file.display()));
    }
}

/// An http destination's signing key: the `whsec_` secret decoded as the standard-webhooks
/// verify scheme decodes it (padding optional); and its secret-valued headers, each `prefix` +
/// the secret, which must be fit for a header.
fn destination(d: DraftDestination, outside: &dyn Outside, p: &mut Problems) -> Option<Destination> {
    let DraftDestination { mut destination, sign, secret_headers, token } = d;
    if let (Target::Pull { token: slot }, Some(named)) = (&mut destination.target, token) {
        match read(outside, &named.source) {
            Ok(secret) => *slot = Some(secret),
            Err(e) => {
                p.push(&named.key, e);
                return None;
            }
        }
    }
    if let Target::Broker(broker) = &mut destination.target {
        return broker_url(broker, outside, p).then_some(destination);
    }
    let Target::Http { sign: slot, headers, .. } = &mut destination.target else { return Some(destination) };
    let mut ok = true;
    for h in secret_headers {
        match read(outside, &h.secret.source)
            .and_then(|secret| http_options::secret_value(&h.prefix, &secret, &h.secret.source.origin()))
        {
            Ok(value) => headers.push((h.name, HeaderSource::Secret(value))),
            Err(e) => {
                p.push(&h.secret.key, e);
                ok = false;
            }
        }
    }
    if let Some(named) = sign {
        match read(outside, &named.source).and_then(|secret| standard_webhooks::decode_secret(secret.expose())) {
            Ok(key) => *slot = Some(Secret::new(key)),
            Err(e) => {
                p.push(&named.key, e);
                ok = false;
            }
        }
    }
    ok.then_some(destination)
}

/// A broker destination's `url_env`: read, and checked as its broker's URL (the message names
/// the variable, never the value). Whether the destination is usable.
fn broker_url(broker: &mut super::Broker, outside: &dyn Outside, p: &mut Problems) -> bool {
    let Some(named) = &broker.url_env else { return true };
    let url = read(outside, &named.source).and_then(|url| {
        let text = std::str::from_utf8(url.expose()).map_err(|_| format!("{} is not UTF-8", named.source.origin()))?;
        super::broker::check_url(&broker.kind, text.trim()).map_err(|e| format!("{}: {e}", named.source.origin()))?;
        Ok(Secret::new(text.trim().as_bytes().to_vec()))
    });
    match url {
        Ok(url) => {
            broker.url = url;
            true
        }
        Err(e) => {
            p.push(&named.key, e);
            false
        }
    }
}

fn source(s: DraftSource, outside: &dyn Outside, p: &mut Problems) -> Option<Source> {
    let DraftSource { name, path, verify, dedupe, routes, rate_limit, response } = s;
    let deliver_to = routes.iter().map(|r| r.destination.clone()).collect();
    let mut spec = verify.spec;
    spec.secrets = verify
        .secrets
        .iter()
        .map(|(field, source)| SecretInput { field, origin: source.origin(), value: read(outside, source) })
        .collect();
    match Verifier::build(spec) {
        Ok(verifier) => Some(Source { name, path, verifier, dedupe, deliver_to, routes, rate_limit, response }),
        Err(problems) => {
            for (key, reason) in problems {
                p.push(format!("{}.{key}", verify.at), reason);
            }
            None
        }
    }
}

/// A secret's value. A missing or empty variable, an unreadable or empty file is an error naming
/// it, never showing a value. A file loses one trailing newline (Docker/Kubernetes secrets).
pub fn read(outside: &dyn Outside, source: &SecretRef) -> Result<Secret, String> {
    match source {
        SecretRef::Env(name) => match outside.var(name) {
            None => Err(format!("environment variable {name} is not set")),
            Some(v) if v.is_empty() => Err(format!("environment variable {name} is empty")),
            Some(v) => Ok(Secret::new(v.into_encoded_bytes())),
        },
        SecretRef::File(path) => {
            let mut bytes =
                outside.read(path).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            if bytes.is_empty() {
                return Err(format!("secret file {} is empty", path.display()));
            }
            Ok(Secret::new(bytes))
        }
    }
}
