//! `hookgate events list|show`: stored events, through the admin API (never the database).

use reqwest::Method;
use serde_json::Value;

use super::Failure;
use super::admin_client::{AdminArgs, AdminClient};
use super::display::{clean, clean_text, table};

/// Longest body shown in the human view; `--json` shows all of it.
const BODY_PREVIEW: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List stored events, newest first, with their full ids.
    List(ListArgs),
    /// One event: metadata, redacted headers, body, each delivery with its attempts.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only events from this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events in this status: pending, succeeded, dead or filtered.
    #[arg(long)]
    status: Option<String>,
    /// Events received at or after this time: RFC 3339 (2026-01-31T12:00:00Z) or a duration ago (15m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Events received before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// How many events to show (1 to 1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Continue after a previous page (the cursor it printed).
    #[arg(long)]
    cursor: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The event id (as printed by `events list` or returned at ingest).
    id: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn run(args: Args) -> Result<(), Failure> {
    match args.command {
        Command::List(a) => list(a),
        Command::Show(a) => show(a),
    }
}

fn list(a: ListArgs) -> Result<(), Failure> {
    let client = AdminClient::new(&a.admin)?;
    let url = client.url(
        "api/events",
        None,
        None,
        &[
            ("source", a.source),
            ("status", a.status),
            ("since", a.since),
            ("until", a.until),
            ("limit", Some(a.limit.to_string())),
            ("cursor", a.cursor),
        ],
    );
    let page = super::runtime()?.block_on(client.call(Method::GET, url))?;
    if a.admin.json {
        println!("{page:#}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items(&page)
        .iter()
        .map(|e| ["id", "received_at", "source", "status", "dedupe_key"].map(|k| clean(&text(&e[k]))).to_vec())
        .collect();
    if rows.is_empty() {
        eprintln!("no events");
    } else {
        print!("{}", table(&["ID", "RECEIVED", "SOURCE", "STATUS", "DEDUPE KEY"], &rows));
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        eprintln!("more: add --cursor {}", clean(cursor));
    }
    Ok(())
}

fn show(a: ShowArgs) -> Result<(), Failure> {
    let client = AdminClient::new(&a.admin)?;
    let url = client.url("api/events", Some(&a.id), None, &[]);
    let event = super::runtime()?.block_on(client.call(Method::GET, url))?;
    if a.admin.json {
        println!("{event:#}");
        return Ok(());
    }
    print!("{}", render_event(&event));
    Ok(())
}

fn items(page: &Value) -> &[Value] {
    page["items"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A JSON value as plain text: strings unquoted, null as "-".
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The human view of `GET /api/events/{id}`.
pub fn render_event(e: &Value) -> String {
    let mut out = String::new();
    let field = |out: &mut String, label: &str, v: &Value| out.push_str(&format!("{label:<10}{}\n", clean(&text(v))));
    field(&mut out, "event", &e["id"]);
    field(&mut out, "source", &e["source"]);
    field(&mut out, "received", &e["received_at"]);
    field(&mut out, "status", &e["status"]);
    field(&mut out, "dedupe", &e["dedupe_key"]);
    field(&mut out, "type", &e["content_type"]);
    out.push_str("headers (secrets redacted)\n");
    if let Some(h) = e["headers"].as_object() {
        for (k, v) in h {
            out.push_str(&format!("  {}: {}\n", clean(k), clean(&text(v))));
        }
    }
    let body = e["body"].as_str().unwrap_or("");
    if e["body_encoding"] == "base64" {
        out.push_str("body (not UTF-8; base64)\n");
    } else {
        out.push_str(&format!("body ({} bytes)\n", body.len()));
    }
    let shown: String = body.chars().take(BODY_PREVIEW).collect();
    for line in clean_text(&shown, true).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    if shown.len() < body.len() {
        out.push_str(&format!("  … ({} more bytes; use --json for the whole body)\n", body.len() - shown.len()));
    }
    let deliveries = e["deliveries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    out.push_str(&format!("deliveries ({})\n", deliveries.len()));
    for d in deliveries {
        out.push_str(&format!(
            "  {}  {}  {} attempt{}",
            clean(&text(&d["destination"])),
            clean(&text(&d["status"])),
            d["attempts"],
            if d["attempts"] == 1 { "" } else { "s" }
        ));
        if let Some(next) = d["next_attempt_at"].as_str() {
            out.push_str(&format!("  next attempt {}", clean(next)));
        }
        out.push('\n');
        // A filtered delivery has no attempts: its reason is the one thing to show.
        if let (Some("filtered"), Some(why)) = (d["status"].as_str(), d["last_error"].as_str()) {
            out.push_str(&format!("    {}\n", clean(why)));
        }
        let log = d["attempt_log"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let rows: Vec<Vec<String>> = log
            .iter()
            .map(|a| {
                let code = match (&a["status_code"], &a["exit_code"]) {
                    (Value::Number(n), _) => format!("HTTP {n}"),
                    (_, Value::Number(n)) => format!("exit {n}"),
                    _ => "-".into(),
                };
                vec![
                    format!("    #{}", a["attempt"]),
                    clean(&text(&a["at"])),
                    clean(&text(&a["outcome"])),
                    code,
                    format!("{} ms", a["duration_ms"]),
                    clean(&text(&a["error"])),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table(&["    #", "AT", "OUTCOME", "CODE", "TOOK", "ERROR"], &rows));
        }
    }
    out
}
