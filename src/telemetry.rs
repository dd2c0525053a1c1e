//! Logging: structured JSON lines on stderr by default (`HOOKGATE_LOG_FORMAT=text` for humans),
//! filtered by `HOOKGATE_LOG` (or `RUST_LOG`), default `info`. Never a secret, never a payload.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = std::env::var("HOOKGATE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let text = std::env::var("HOOKGATE_LOG_FORMAT").is_ok_and(|f| f == "text");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if text {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).with_current_span(false).with_span_list(true).try_init()
    };
}
