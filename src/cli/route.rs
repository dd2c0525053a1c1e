//! `hookgate route SOURCE`: a dry run of SOURCE's routing rules (CONTRACT §7) on a sample event,
//! built as ingest would build it (the same document, the same redaction), nothing sent or stored.
//! Prints, per destination, whether it matches (or the filter's error) and the body it would get.
//! `hookgate route hookgate` runs `[alerts] deliver_to` on an alert (default: a `delivery.dead` one).

use hookgate::routing::document::Parts;
use hookgate::routing::engine::Limits;
use hookgate::routing::pool::Pool;
use hookgate::routing::{self, Verdict};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{ConfigArg, Failure, load_config};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source's name in the config.
    source: String,
    #[command(flatten)]
    config: ConfigArg,
    /// The body: text, or @FILE (e.g. @examples/payloads/github-push.json). Default: a typical event of
    /// the provider, as `send` makes it.
    #[arg(long)]
    data: Option<String>,
    /// A request header, `Name: value`; repeat for more.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// A query parameter, `name=value`; repeat for more.
    #[arg(long = "query", short = 'q')]
    query: Vec<String>,
    /// Content-Type of the body. Default: application/json (the provider's for the default event).
    #[arg(long)]
    content_type: Option<String>,
    /// Print JSON: {"destinations": [{"destination", "matched", "error", "body"}]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let config = load_config(&args.config.config)?;
    let alerts = alert_source(&config);
    let Some(source) = config.source(&args.source).or(alerts.as_ref().filter(|a| a.name == args.source)) else {
        let names: Vec<&str> = config.sources.iter().chain(&alerts).map(|s| s.name.as_str()).collect();
        return Err(Failure::user(anyhow::anyhow!("unknown source {:?}; configured: {names:?}", args.source)));
    };
    let (default_type, body) = match (&alerts, args.data.as_deref()) {
        (Some(a), None) if a.name == source.name => ("application/json", sample_alert()),
        _ => super::sample::read(args.data.as_deref(), &source.verifier)?,
    };
    let content_type = args.content_type.clone().unwrap_or_else(|| default_type.to_string());
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, value(&content_type)?);
    for h in &args.headers {
        let (name, v) = h
            .split_once(':')
            .ok_or_else(|| Failure::user(anyhow::anyhow!("--header {h:?}: write it as 'Name: value'")))?;
        let name = HeaderName::try_from(name.trim())
            .map_err(|_| Failure::user(anyhow::anyhow!("--header {h:?}: {:?} is not a header name", name.trim())))?;
        headers.append(name, value(v.trim())?);
    }
    let mut path_and_query = source.path.clone();
    if !args.query.is_empty() {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for pair in &args.query {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            q.append_pair(k, v);
        }
        path_and_query = format!("{path_and_query}?{}", q.finish());
    }
    let redaction = hookgate::ingest::redact::Redaction::new(&config.server.redact_headers);
    let parts = Parts {
        source: source.name.clone(),
        event_id: hookgate::store::new_event_id(),
        path_and_query,
        headers: redaction.document_headers(&headers, source.verifier.credential_header()),
        content_type: Some(content_type.clone()),
        body: body.clone().into(),
    };
    let filters: Vec<_> =
        source.routes.iter().map(|r| r.filter.as_ref().map(|f| (f.program.clone(), f.text.clone()))).collect();
    let transforms: Vec<_> = source.routes.iter().map(|r| r.transform.as_ref().map(|t| t.program.clone())).collect();
    let pool = Pool::new(1).map_err(Failure::runtime)?;
    let results = pool
        .run_blocking(move || {
            let verdicts = routing::verdicts(&parts, &filters, Limits::default());
            let bodies: Vec<_> = transforms
                .iter()
                .map(|t| t.as_ref().map(|t| routing::transformed(t, &parts, Limits::default())))
                .collect();
            (verdicts, bodies)
        })
        .ok_or_else(|| Failure::runtime(anyhow::anyhow!("the dry run failed")))?;
    let original = String::from_utf8_lossy(&body).into_owned();
    let mut rows = Vec::new();
    for ((route, verdict), transformed) in source.routes.iter().zip(results.0).zip(results.1) {
        let (body, content_type, transform_error) = match transformed {
            None => (Value::String(original.clone()), content_type.clone(), None),
            Some(Ok((bytes, ct))) if ct.starts_with("application/json") => {
                (serde_json::from_slice(&bytes).unwrap_or(Value::Null), ct.to_string(), None)
            }
            Some(Ok((bytes, ct))) => {
                (Value::String(String::from_utf8_lossy(&bytes).into_owned()), ct.to_string(), None)
            }
            Some(Err(e)) => (Value::Null, String::new(), Some(e)),
        };
        let (matched, error, reason) = match verdict {
            Verdict::Match => (true, transform_error, None),
            Verdict::NoMatch(why) => (false, transform_error, Some(why)),
            Verdict::Error(e) => (false, Some(e), None),
        };
        rows.push((route.destination.clone(), matched, error, reason, body, content_type, route.transform.is_some()));
    }
    if args.json {
        let items: Vec<Value> = rows
            .iter()
            .map(|(d, matched, error, _, body, _, _)| json!({"destination": d, "matched": matched, "error": error, "body": body}))
            .collect();
        println!("{}", json!({ "destinations": items }));
        return Ok(());
    }
    for (destination, matched, error, reason, body, content_type, transformed) in rows {
        let verdict = if matched { "matched" } else { "filtered" };
        println!("{destination}: {verdict}");
        for line in reason.iter().chain(error.iter()) {
            println!("  {}", super::display::clean(line));
        }
        if !transformed {
            println!("  body: the original ({} bytes, {content_type})", original.len());
        } else if !body.is_null() {
            let shown = match &body {
                Value::String(s) => s.clone(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            };
            println!("  body ({content_type}):");
            for line in super::display::clean_text(&shown, true).lines() {
                println!("    {line}");
            }
        }
    }
    Ok(())
}

/// `[alerts]` as the source its events come from (CONTRACT §8): the built-in `hookgate`, no path.
fn alert_source(config: &hookgate::config::Config) -> Option<hookgate::config::Source> {
    let alerts = config.alerts.as_ref()?;
    Some(hookgate::config::Source {
        name: hookgate::config::ALERT_SOURCE.to_string(),
        path: String::new(),
        verifier: hookgate::verify::Verifier::insecure(),
        dedupe: hookgate::config::Dedupe::Default,
        deliver_to: alerts.deliver_to.clone(),
        routes: alerts.routes.clone(),
        rate_limit: None,
        response: None,
    })
}

/// A `delivery.dead` alert, as the dispatcher raises one.
fn sample_alert() -> Vec<u8> {
    let alert = hookgate::dispatch::alerts::Alert::DeliveryDead {
        destination: "crm".into(),
        source: "stripe".into(),
        event_id: hookgate::store::new_event_id(),
        delivery_id: 1024,
        attempts: 10,
        last_error: Some("HTTP 503: Service Unavailable".into()),
        claim: 0,
    };
    alert.body(hookgate::store::millis(hookgate::clock::system().now())).to_string().into_bytes()
}

fn value(v: &str) -> Result<HeaderValue, Failure> {
    HeaderValue::from_str(v).map_err(|_| Failure::user(anyhow::anyhow!("{v:?} is not a valid header value")))
}
