//! `hookgate listen DESTINATION --forward-to URL` (CONTRACT §10): a development relay. It claims
//! the pull destination's deliveries through the admin API (a long poll), POSTs each to URL with
//! the headers an http destination sends (the library's own `HttpDestination`), acks a 2xx and
//! nacks anything else (with the receiver's Retry-After), and prints one line per event. When the
//! gateway is away it retries with backoff; what arrives meanwhile waits in the gateway's store.
//! SIGINT/SIGTERM nacks what it holds (so it comes back at once, not after the lease) and exits 0.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use base64::Engine;
use hookgate::destination::http::{HttpDestination, Options, client};
use hookgate::destination::{Attempt, AttemptResult, Deliver};
use reqwest::Method;
use serde_json::{Value, json};

use super::Failure;
use super::admin_client::{AdminArgs, AdminClient};

/// How many deliveries one claim takes, and how long it waits on the gateway for the first.
const CLAIM_MAX: &str = "10";
const CLAIM_WAIT: &str = "25s";
/// Backoff while the gateway cannot be reached: doubling from the first, capped at the last.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pull destination (`type = "pull"`) to take events from.
    destination: String,
    /// Where to POST each event, e.g. http://localhost:3000/webhooks.
    #[arg(long, value_name = "URL")]
    forward_to: String,
    /// How long the local receiver has to answer; past it the event is nacked and retried.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    timeout: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let url =
        reqwest::Url::parse(&args.forward_to).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(
            || Failure::user(anyhow!("--forward-to must be an http:// or https:// URL, not {:?}", args.forward_to)),
        )?;
    let timeout = hookgate::config::duration::parse(&args.timeout)
        .map_err(|e| Failure::user(anyhow!("invalid --timeout {:?}: {e}", args.timeout)))?;
    let api = AdminClient::new(&args.admin)?;
    let options = Options { method: http::Method::POST, headers: Vec::new(), sign: None };
    let forward = client()
        .and_then(|c| HttpDestination::new(&c, url.clone(), options, timeout, hookgate::clock::system()))
        .map_err(|e| Failure::runtime(anyhow!(e)))?;
    super::runtime()?.block_on(async {
        let relay =
            Relay { api, forward, destination: args.destination, json: args.admin.json, held: Default::default() };
        eprintln!("Forwarding {} to {url} (Ctrl-C to stop)", relay.destination);
        let stopped = hookgate::shutdown::signal();
        tokio::pin!(stopped);
        let result = tokio::select! {
            _ = &mut stopped => Ok(()),
            r = relay.run() => r,
        };
        // Whatever we hold goes back to the gateway now rather than when its lease runs out.
        relay.nack_held().await;
        result
    })
}

struct Relay {
    api: AdminClient,
    forward: HttpDestination,
    destination: String,
    json: bool,
    /// Deliveries claimed and neither acked nor nacked yet.
    held: Mutex<HashSet<i64>>,
}

impl Relay {
    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(&self) -> Result<(), Failure> {
        let url = self.api.url(
            "api/destinations",
            Some(&self.destination),
            Some("claim"),
            &[("max", Some(CLAIM_MAX.into())), ("wait", Some(CLAIM_WAIT.into()))],
        );
        let mut failures = 0u32;
        loop {
            let items = match self.api.call(Method::POST, url.clone()).await {
                Ok(answer) => {
                    if failures > 0 {
                        eprintln!("Connected again to the gateway");
                    }
                    failures = 0;
                    answer["items"].as_array().cloned().unwrap_or_default()
                }
                // Unknown destination, wrong token: retrying cannot help.
                Err(f) if f.code == 1 => return Err(f),
                Err(f) => {
                    let wait = backoff(failures);
                    failures = failures.saturating_add(1);
                    eprintln!("Cannot claim from the gateway ({:#}); retrying in {} ms", f.error, wait.as_millis());
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let ids: Vec<i64> = items.iter().filter_map(|i| i["delivery_id"].as_i64()).collect();
            self.held().extend(ids);
            for item in &items {
                self.forward_one(item).await;
            }
        }
    }

    /// Forwards one claimed event, then acks or nacks it and prints its line.
    async fn forward_one(&self, item: &Value) {
        let Some(id) = item["delivery_id"].as_i64() else { return };
        let started = Instant::now();
        let result = match attempt_of(item, &self.destination) {
            Ok(attempt) => self.forward.deliver(&attempt).await,
            Err(e) => AttemptResult::failure(e),
        };
        let ms = started.elapsed().as_millis() as u64;
        self.print(item, &result, ms);
        let (path, body) = if result.ok {
            ("ack", None)
        } else {
            let mut body = json!({ "error": result.error.clone().unwrap_or_else(|| "not delivered".into()) });
            if let Some(wait) = result.retry_after {
                body["retry_after"] = json!(format!("{}ms", wait.as_millis()));
            }
            ("nack", Some(body))
        };
        self.settle(id, path, body.as_ref()).await;
    }

    /// Acks or nacks, retrying while the gateway is away (an ack must not be lost: the event would
    /// come again). A 4xx (the lease ran out and another claim took it) is only reported.
    async fn settle(&self, id: i64, path: &str, body: Option<&Value>) {
        let url = self.api.url("api/deliveries", Some(&id.to_string()), Some(path), &[]);
        let mut failures = 0u32;
        loop {
            match self.api.call_with(Method::POST, url.clone(), body).await {
                Ok(_) => break,
                Err(f) if f.code == 1 => {
                    eprintln!("The gateway refused the {path} of delivery {id}: {:#}", f.error);
                    break;
                }
                Err(f) => {
                    let wait = backoff(failures);
                    failures = failures.saturating_add(1);
                    eprintln!("Cannot {path} delivery {id} ({:#}); retrying in {} ms", f.error, wait.as_millis());
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.held().remove(&id);
    }

    /// Nacks every delivery still held, once each (Ctrl-C: the gateway may be gone too).
    async fn nack_held(&self) {
        let ids: Vec<i64> = self.held().drain().collect();
        for id in ids {
            let url = self.api.url("api/deliveries", Some(&id.to_string()), Some("nack"), &[]);
            let body = json!({ "error": "hookgate listen stopped before forwarding it" });
            match self.api.call_with(Method::POST, url, Some(&body)).await {
                Ok(_) => eprintln!("Nacked delivery {id} (not forwarded)"),
                Err(f) => eprintln!("Cannot nack delivery {id}: {:#}; it comes back when its lease ends", f.error),
            }
        }
    }

    fn print(&self, item: &Value, result: &AttemptResult, ms: u64) {
        let time = humantime::format_rfc3339_millis(hookgate::clock::system().now()).to_string();
        let event_id = item["event_id"].as_str().unwrap_or("?");
        let source = item["source"].as_str().unwrap_or("?");
        if self.json {
            let line = json!({
                "time": time,
                "event_id": event_id,
                "source": source,
                "delivery_id": item["delivery_id"],
                "attempt": item["attempt"],
                "status": result.status_code,
                "ok": result.ok,
                "duration_ms": ms,
                "error": if result.ok { None } else { result.error.clone() },
            });
            println!("{line}");
        } else {
            let status = match (result.status_code, &result.error) {
                (Some(code), _) => code.to_string(),
                (None, Some(e)) => format!("error: {}", e.lines().next().unwrap_or("")),
                (None, None) => "ok".into(),
            };
            println!("{time}  {event_id}  {source}  → {status}  {ms} ms");
        }
    }
}

/// The attempt an http destination would make of a claimed item.
fn attempt_of(item: &Value, destination: &str) -> Result<Attempt, String> {
    let text = item["body"].as_str().ok_or("the claim's item has no body")?;
    let body = if item["body_encoding"] == "base64" {
        base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("undecodable body: {e}"))?
    } else {
        text.as_bytes().to_vec()
    };
    Ok(Attempt {
        event_id: item["event_id"].as_str().unwrap_or_default().to_string(),
        source: item["source"].as_str().unwrap_or_default().to_string(),
        destination: destination.to_string(),
        attempt: item["attempt"].as_u64().unwrap_or(1) as u32,
        content_type: item["content_type"].as_str().map(str::to_string),
        headers_json: item["headers"].to_string(),
        body: body.into(),
        received_at: 0,
        traceparent: None,
    })
}

fn backoff(failures: u32) -> Duration {
    RECONNECT_FIRST.saturating_mul(1u32 << failures.min(6)).min(RECONNECT_MAX)
}
