//! `hookgate send SOURCE`: build the request SOURCE's provider would send (signed with the
//! source's first secret), post it, print the status and body. Exit 1 when it is rejected.
//! `--handshake` sends the provider's URL check instead (Slack's url_verification, X's CRC,
//! Meta's hub.challenge, ...), as the provider would.

use std::time::SystemTime;

use anyhow::Context;

use super::{ConfigArg, Failure, load_config};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source's name in the config.
    source: String,
    #[command(flatten)]
    config: ConfigArg,
    /// The body: text, or @FILE. Default: a typical event of the provider with a fresh id (a form-encoded
    /// SMS for Twilio, else a small JSON event).
    #[arg(long)]
    data: Option<String>,
    /// Base URL of the ingest listener. Default: http://<server.listen>.
    #[arg(long)]
    url: Option<String>,
    /// Content-Type of the body. Default: the default event's, else application/json. For a Twilio
    /// source, application/x-www-form-urlencoded signs the form parameters, as Twilio does for most
    /// webhooks; other types put bodySHA256 in the URL.
    #[arg(long)]
    content_type: Option<String>,
    /// Send the provider's URL check (handshake) instead of an event: e.g. Slack's
    /// url_verification, X's CRC GET, Meta's hub.challenge GET (with the configured verify
    /// token), Okta's verification GET.
    #[arg(long, conflicts_with_all = ["data", "content_type"])]
    handshake: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let config = load_config(&args.config.config)?;
    let Some(source) = config.source(&args.source) else {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        return Err(Failure::user(anyhow::anyhow!("unknown source {:?}; configured: {names:?}", args.source)));
    };
    let base = match &args.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let mut addr = config.server.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    };
    if args.handshake {
        let Some(h) = source.verifier.sign_handshake(&source.path, SystemTime::now()) else {
            return Err(Failure::user(anyhow::anyhow!("source {:?}: its scheme has no handshake", args.source)));
        };
        let method =
            reqwest::Method::from_bytes(h.method.as_bytes()).map_err(|e| Failure::runtime(anyhow::Error::from(e)))?;
        return post(format!("{base}{}", h.path_and_query), method, h.headers, h.body);
    }
    if !source.verifier.can_sign() {
        return Err(Failure::user(anyhow::anyhow!(
            "source {:?}: its scheme is checked with the provider's public key; only the provider can sign",
            args.source
        )));
    }
    let (default_type, body) = super::sample::read(args.data.as_deref(), &source.verifier)?;
    let content_type = args.content_type.as_deref().unwrap_or(default_type);
    let signed = source.verifier.sign(&source.path, content_type, &body, SystemTime::now());
    // Twilio puts a hash of a JSON body in the URL, so the path may differ from the source's;
    // Mailgun signs inside the body.
    let mut headers = signed.headers;
    headers.push(("content-type".into(), content_type.into()));
    post(format!("{base}{}", signed.path_and_query), reqwest::Method::POST, headers, signed.body.unwrap_or(body))
}

/// Sends the request; prints the status and body; exit 1 unless 2xx.
fn post(url: String, method: reqwest::Method, headers: Vec<(String, String)>, body: Vec<u8>) -> Result<(), Failure> {
    super::runtime()?.block_on(async {
        let mut req = reqwest::Client::new().request(method, &url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.with_context(|| format!("sending to {url}")).map_err(Failure::runtime)?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        println!("{status}");
        println!("{text}");
        if status.is_success() { Ok(()) } else { Err(Failure::user(anyhow::anyhow!("{url} answered {status}"))) }
    })
}
