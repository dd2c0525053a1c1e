//! `hookgate backup FILE`: an online backup of the embedded database, taken by the serving
//! process through the admin API (`POST /api/backup`): it alone may open the file, and it copies
//! one consistent snapshot while it keeps serving. FILE is resolved against this directory.

use anyhow::anyhow;
use reqwest::Method;
use serde_json::json;

use super::Failure;
use super::admin_client::{AdminArgs, AdminClient};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the backup (a new file; its directory must exist on the server's machine).
    file: std::path::PathBuf,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let client = AdminClient::new(&args.admin)?;
    let file = std::path::absolute(&args.file)
        .map_err(|e| Failure::user(anyhow!("cannot resolve {}: {e}", args.file.display())))?;
    let path = file.to_str().ok_or_else(|| Failure::user(anyhow!("{} is not UTF-8", file.display())))?;
    let url = client.url("api/backup", None, None, &[]);
    let answer = super::runtime()?.block_on(client.call_with(Method::POST, url, Some(&json!({ "path": path }))))?;
    if args.admin.json {
        println!("{answer}");
    } else {
        println!("backup written to {} ({} bytes)", path, answer["bytes"].as_u64().unwrap_or(0));
    }
    Ok(())
}
