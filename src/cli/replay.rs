//! `hookgate replay ID [--destination D]` and `hookgate replay --status dead [--destination D]
//! [--source S]`: put deliveries back in the queue, through the admin API.

use reqwest::Method;

use super::Failure;
use super::admin_client::{AdminArgs, AdminClient};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The event whose deliveries to replay (all of them, or the one to --destination).
    #[arg(required_unless_present = "status")]
    id: Option<String>,
    /// Only the delivery (or, in bulk, the deliveries) to this destination.
    #[arg(long)]
    destination: Option<String>,
    /// Bulk: replay every delivery in this status: dead, failed (retry now, skipping the backoff), or
    /// filtered (deliver what a filter left out, e.g. with --destination after fixing the filter).
    #[arg(long, conflicts_with = "id")]
    status: Option<String>,
    /// Bulk: only deliveries of events from this source.
    #[arg(long, requires = "status")]
    source: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let client = AdminClient::new(&args.admin)?;
    let (url, what) = match &args.id {
        Some(id) => (
            client.url("api/events", Some(id), Some("replay"), &[("destination", args.destination.clone())]),
            format!("of event {id}"),
        ),
        None => (
            client.url(
                "api/deliveries/replay",
                None,
                None,
                &[
                    ("status", args.status.clone()),
                    ("destination", args.destination.clone()),
                    ("source", args.source.clone()),
                ],
            ),
            format!("in status {}", args.status.as_deref().unwrap_or("")),
        ),
    };
    let answer = super::runtime()?.block_on(client.call(Method::POST, url))?;
    if args.admin.json {
        println!("{answer}");
        return Ok(());
    }
    let n = answer["replayed"].as_u64().unwrap_or(0);
    println!("replayed {n} deliver{} {}", if n == 1 { "y" } else { "ies" }, super::display::clean(&what));
    if n == 0 && args.id.is_some() {
        eprintln!("(a delivery in flight is not replayed; try again when its attempt ends)");
    }
    Ok(())
}
