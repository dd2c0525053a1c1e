//! The seed's two Flask handlers (`@registry.register(path, secret_env)`) as Rust handlers inside
//! hookgate: the config (`examples/library.toml`) maps each path to a source with its secret and to
//! a `type = "rust"` destination; this program registers a function under each destination's name.
//! Unlike the seed's thread pool, an event is stored before the sender gets its 200, duplicates
//! are dropped, and a failing handler is retried with backoff and then dead-lettered.
//!
//! Run (secrets from the environment, like the seed):
//!
//! ```sh
//! CONTACT_WEBHOOK_SECRET=dev-contact STRIPE_WEBHOOK_SECRET=whsec_dev cargo run --example seed_handlers
//! ```
//!
//! Then, in another terminal, send a signed event the way the sender would:
//!
//! ```sh
//! CONTACT_WEBHOOK_SECRET=dev-contact STRIPE_WEBHOOK_SECRET=whsec_dev cargo run -- send contact_created \
//!     --config examples/library.toml --data '{"id":"c_1","email":"ada@example.com","name":"Ada"}'
//! ```
//!
//! The config file is the first argument, else `$HOOKGATE_CONFIG`, else `examples/library.toml`.
//! `HOOKGATE_LISTEN`, `HOOKGATE_ADMIN_LISTEN` and `HOOKGATE_DATABASE_URL` override the file.

use std::path::PathBuf;

use hookgate::{Event, Gateway, HandlerError};
use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookgate::init_logging();
    Gateway::from_config_file(config_path())?
        .handler("contact_created", handle_contact_created)
        .handler("payment_succeeded", handle_payment_succeeded)
        .serve() // until SIGTERM or Ctrl-C; deliveries in flight finish first
        .await?;
    Ok(())
}

/// The seed's `handle_contact_created`.
async fn handle_contact_created(event: Event) -> Result<(), HandlerError> {
    let data = json_body(&event)?;
    tracing::info!(
        event_id = %event.id,
        attempt = event.attempt,
        email = data["email"].as_str().unwrap_or_default(),
        "contact created"
    );
    // crm_client.upsert_contact(&data).await?;      an error here is retried with backoff
    // slack_client.post_message(...).await?;        make both idempotent on event.id
    Ok(())
}

/// The seed's `handle_payment_succeeded`.
async fn handle_payment_succeeded(event: Event) -> Result<(), HandlerError> {
    let data = json_body(&event)?;
    tracing::info!(event_id = %event.id, attempt = event.attempt, amount = %data["amount"], "payment received");
    // billing_service.mark_paid(data["invoice_id"]).await?;
    // email_service.send_receipt(data["customer_email"]).await?;
    Ok(())
}

/// The body as JSON. A body that is not JSON will not become JSON on a retry, so that failure is
/// permanent: the delivery goes to the dead-letter queue at once, where it can be inspected.
fn json_body(event: &Event) -> Result<Value, HandlerError> {
    event.json().map_err(|e| HandlerError::permanent(format!("body is not JSON: {e}")))
}

fn config_path() -> PathBuf {
    std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("HOOKGATE_CONFIG"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/library.toml"))
}
