//! Logging on stderr: JSON lines or text for humans (`[log] format`; unset: text when stderr is a
//! terminal, JSON otherwise; `HOOKGATE_LOG_FORMAT` overrides it), filtered by `[log] level`, an
//! env-filter directive that `HOOKGATE_LOG` overrides. Never a secret, never a payload. Imports
//! nothing of ours: config validates a level with [`parse_filter`]. With `[telemetry]
//! otlp_endpoint`, the same subscriber exports the spans of `traces.rs` (and no log event).

pub mod traces;

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use traces::Pipeline;

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// An env-filter directive (`info`, `warn,hookgate=debug`), or why it is not one.
pub fn parse_filter(directive: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder().parse(directive).map_err(|e| e.to_string())
}

/// The library's default: `HOOKGATE_LOG`, else `RUST_LOG`, else `info`; the format from
/// `HOOKGATE_LOG_FORMAT`, else by whether stderr is a terminal.
pub fn init() {
    let level = std::env::var("RUST_LOG").ok().filter(|l| parse_filter(l).is_ok()).unwrap_or_else(|| "info".into());
    init_with(None, &level);
}

/// Installs the subscriber (nothing if the program already has one): `format` unless
/// `HOOKGATE_LOG_FORMAT` says otherwise, `level` unless `HOOKGATE_LOG` holds a valid directive
/// (an invalid one is named in a warning once logging runs).
pub fn init_with(format: Option<LogFormat>, level: &str) {
    init_with_traces(format, level, None);
}

/// [`init_with`], and with `traces` the spans of `traces.rs` exported through it (the exporting
/// layer sees only those, whatever the log level).
pub fn init_with_traces(format: Option<LogFormat>, level: &str, traces: Option<&Pipeline>) {
    let from_env = std::env::var("HOOKGATE_LOG").ok().filter(|v| !v.is_empty());
    let (filter, bad_env) = match from_env.as_deref().map(parse_filter) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (parse_filter(level).unwrap_or_else(|_| EnvFilter::new("info")), Some(e)),
        None => (parse_filter(level).unwrap_or_else(|_| EnvFilter::new("info")), None),
    };
    let format = match std::env::var("HOOKGATE_LOG_FORMAT").ok().as_deref() {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        _ => format.unwrap_or_else(default_format),
    };
    let installed = match traces {
        None => {
            // Without traces, the subscriber is the plain one: one global filter, nothing else.
            let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
            match format {
                LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init().is_ok(),
                LogFormat::Json => {
                    builder.json().flatten_event(true).with_current_span(false).with_span_list(true).try_init().is_ok()
                }
            }
        }
        Some(pipeline) => {
            let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
            let logs = match format {
                LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).boxed(),
                LogFormat::Json => {
                    logs.json().flatten_event(true).with_current_span(false).with_span_list(true).boxed()
                }
            };
            let spans = tracing_opentelemetry::layer()
                .with_tracer(pipeline.tracer())
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(tracing_subscriber::filter::filter_fn(|m| m.target() == traces::TARGET));
            tracing_subscriber::registry().with(logs.with_filter(filter)).with(spans).try_init().is_ok()
        }
    };
    if let (true, Some(e)) = (installed, bad_env) {
        tracing::warn!(error = %e, level, "HOOKGATE_LOG is not a valid filter directive; using [log] level");
    }
}

/// Text for a person at a terminal, JSON for a journal or a log collector.
fn default_format() -> LogFormat {
    if std::io::stderr().is_terminal() { LogFormat::Text } else { LogFormat::Json }
}
