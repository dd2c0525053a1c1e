//! `hookgate destinations list`, `hookgate destinations pause NAME`, `hookgate destinations resume
//! NAME` (CONTRACT §8): through the admin API, like `events`.

use reqwest::Method;
use serde_json::Value;

use super::Failure;
use super::admin_client::{AdminArgs, AdminClient};
use super::display::{clean, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Each destination: its state (active, paused, open, half_open), backlog, last error and success.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop attempts to NAME on every node (stored: it lasts across restarts) until resumed.
    Pause {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Let NAME's deliveries go again (at its rate limit, if it has one).
    Resume {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => clean(s),
        other => other.to_string(),
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let (admin, action) = match &args.command {
        Command::List { admin } => (admin, None),
        Command::Pause { name, admin } => (admin, Some((name, "pause"))),
        Command::Resume { name, admin } => (admin, Some((name, "resume"))),
    };
    let client = AdminClient::new(admin)?;
    let rt = super::runtime()?;
    let answer = match action {
        None => rt.block_on(client.call(Method::GET, client.url("api/destinations", None, None, &[])))?,
        Some((name, verb)) => {
            rt.block_on(client.call(Method::POST, client.url("api/destinations", Some(name), Some(verb), &[])))?
        }
    };
    if admin.json {
        println!("{answer}");
        return Ok(());
    }
    if let Some((name, _)) = action {
        println!("{} is {}", clean(name), text(&answer["state"]));
        return Ok(());
    }
    let header = ["NAME", "TYPE", "STATE", "PENDING", "IN_FLIGHT", "FAILED", "DEAD", "LAST_SUCCESS", "LAST_ERROR"];
    let keys = ["name", "type", "state", "pending", "in_flight", "failed", "dead", "last_success_at", "last_error"];
    let rows: Vec<Vec<String>> = answer["items"]
        .as_array()
        .map(|items| items.iter().map(|d| keys.iter().map(|k| text(&d[*k])).collect()).collect())
        .unwrap_or_default();
    print!("{}", table(&header, &rows));
    Ok(())
}
