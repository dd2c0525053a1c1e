//! `hookgate check`: exactly the validation `serve` does before binding anything.

use super::{ConfigArg, Failure, load_config};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let config = load_config(&args.config.config)?;
    println!(
        "{}: ok ({} source{}, {} destination{})",
        args.config.config.display(),
        config.sources.len(),
        if config.sources.len() == 1 { "" } else { "s" },
        config.destinations.len(),
        if config.destinations.len() == 1 { "" } else { "s" },
    );
    for (key, warning) in config.warnings() {
        println!("warning: {key}: {warning}");
    }
    let rust = config.rust_destinations();
    if !rust.is_empty() {
        println!(
            "note: destinations {rust:?} have type = \"rust\": their handlers run in your own binary built on the \
             library (hookgate::Gateway); `hookgate serve` runs this config only with --role ingest"
        );
    }
    Ok(())
}
