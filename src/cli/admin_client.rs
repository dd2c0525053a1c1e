//! What `events` and `replay` share: where the admin API is (`--admin-url`, else the config's
//! `admin.listen`, over HTTPS when the config gives `[admin] tls`), which certificate to trust (the
//! system's roots, and the config's `admin.tls.cert_file`, so a self-signed admin certificate
//! works), the token (`HOOKGATE_ADMIN_TOKEN`), and how answers map to exit codes:
//! 2xx ok; 4xx (not found, bad filter, unauthorized) exit 1; unreachable or 5xx exit 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use reqwest::{Method, Url};
use serde_json::Value;

use super::Failure;

const DEFAULT_ADMIN: &str = "127.0.0.1:8081";
const TOKEN_ENV: &str = "HOOKGATE_ADMIN_TOKEN";

/// How to reach the admin API; accepted after any admin subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the admin API [default: http://<admin.listen from the config> (https:// when the config
    /// has admin.tls, trusting its cert_file), else http://127.0.0.1:8081]. The token is read from $HOOKGATE_ADMIN_TOKEN.
    #[arg(long, env = "HOOKGATE_ADMIN_URL", value_name = "URL")]
    pub admin_url: Option<String>,
    /// The config file, read only to find admin.listen and admin.tls [default: $HOOKGATE_CONFIG, else ./hookgate.toml if present].
    #[arg(long, short, env = "HOOKGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of a table (for scripts).
    #[arg(long)]
    pub json: bool,
}

pub struct AdminClient {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> Result<AdminClient, Failure> {
        let (listen, cert_file) = admin_listen(args.config.as_deref())?;
        let base = match &args.admin_url {
            Some(u) => u.clone(),
            None if cert_file.is_some() => format!("https://{listen}"),
            None => format!("http://{listen}"),
        };
        let mut base = Url::parse(&base).map_err(|e| Failure::user(anyhow!("invalid --admin-url {base:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Failure::user(anyhow!("--admin-url must be an http:// or https:// URL, not {base}")));
        }
        // Joining relative paths keeps a prefix such as https://ops.example/hookgate/.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A bulk replay of many dead letters is one long UPDATE.
            .timeout(Duration::from_secs(300));
        if let Some(path) = cert_file.filter(|_| base.scheme() == "https") {
            http = http.tls_certs_merge(admin_certificates(&path)?);
        }
        let http = http.build().map_err(Failure::runtime)?;
        Ok(AdminClient { base, token, http })
    }

    /// `path` is relative to the base (`api/events`); `segment` is appended percent-encoded.
    pub fn url(
        &self,
        path: &str,
        segment: Option<&str>,
        suffix: Option<&str>,
        query: &[(&str, Option<String>)],
    ) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty();
            segs.extend(path.split('/'));
            if let Some(s) = segment {
                segs.push(s);
            }
            if let Some(s) = suffix {
                segs.push(s);
            }
        }
        let pairs: Vec<_> = query.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.as_str()))).collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url
    }

    /// Sends the request; returns the JSON of a 2xx answer, or the failure with its exit code.
    pub async fn call(&self, method: Method, url: Url) -> Result<Value, Failure> {
        self.call_with(method, url, None).await
    }

    /// [`call`](Self::call) with a JSON body.
    pub async fn call_with(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Value, Failure> {
        let mut req = self.http.request(method, url.clone());
        if let Some(body) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            Failure::runtime(anyhow!("cannot reach the admin API at {}: {}", self.base, error_chain(&e)))
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| Failure::runtime(anyhow!("reading the answer from {url}: {e}")))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return json.ok_or_else(|| Failure::runtime(anyhow!("{url} answered {status} with something not JSON")));
        }
        let message = json
            .as_ref()
            .and_then(|j| j["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(200).collect());
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            if self.token.is_some() {
                " (HOOKGATE_ADMIN_TOKEN does not match the server's admin token)"
            } else {
                " (set HOOKGATE_ADMIN_TOKEN to the server's admin token)"
            }
        } else {
            ""
        };
        let error = anyhow!("{} {}{hint}", status.as_u16(), super::display::clean(&message));
        if status.is_client_error() { Err(Failure::user(error)) } else { Err(Failure::runtime(error)) }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `HOOKGATE_ADMIN_LISTEN`, else `[admin] listen` of the config, else the default; and the
/// config's `admin.tls.cert_file` (relative to the config's directory), if it has one. Only those
/// keys are read: the CLI must work where the server's secrets are not set.
fn admin_listen(config: Option<&Path>) -> Result<(SocketAddr, Option<PathBuf>), Failure> {
    let from_env = std::env::var("HOOKGATE_ADMIN_LISTEN").ok().filter(|v| !v.is_empty());
    let (listen, cert_file) = match config {
        Some(path) => listen_in(path, true)?,
        None => listen_in(Path::new("hookgate.toml"), false)?,
    };
    let text = from_env.unwrap_or(listen);
    let mut addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&text)
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Failure::user(anyhow!("invalid admin.listen {text:?}")))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok((addr, cert_file))
}

fn listen_in(path: &Path, required: bool) -> Result<(String, Option<PathBuf>), Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) if !required => return Ok((DEFAULT_ADMIN.to_string(), None)),
        Err(e) => return Err(Failure::user(anyhow!("cannot read config file {}: {e}", path.display()))),
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| Failure::user(anyhow!("{}: invalid TOML: {e}", path.display())))?;
    let admin = table.get("admin");
    let listen = admin.and_then(|a| a.get("listen")).and_then(|l| l.as_str()).unwrap_or(DEFAULT_ADMIN).to_string();
    let cert_file = admin
        .and_then(|a| a.get("tls"))
        .and_then(|t| t.get("cert_file"))
        .and_then(|c| c.as_str())
        .map(|c| path.parent().unwrap_or(Path::new(".")).join(c));
    Ok((listen, cert_file))
}

/// The certificates of `admin.tls.cert_file` (PEM), trusted besides the system's roots: the
/// listener's own certificate, self-signed or not, and any chain the file holds.
fn admin_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, Failure> {
    let pem = std::fs::read(path)
        .map_err(|e| Failure::user(anyhow!("admin.tls.cert_file: cannot read {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| Failure::user(anyhow!("admin.tls.cert_file {}: not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Failure::user(anyhow!("admin.tls.cert_file {}: holds no certificate", path.display())));
    }
    Ok(certs)
}
