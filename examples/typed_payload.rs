//! Handlers that get their payload as a typed struct: `Gateway::json_handler` parses the body
//! with serde before the handler runs. A body that does not match the struct never reaches the
//! handler; retrying cannot change the body, so the delivery is dead-lettered at once with the
//! serde error, to be replayed once the struct is fixed.
//!
//! Same config and secrets as `seed_handlers`:
//!
//! ```sh
//! CONTACT_WEBHOOK_SECRET=dev-contact STRIPE_WEBHOOK_SECRET=whsec_dev cargo run --example typed_payload
//! CONTACT_WEBHOOK_SECRET=dev-contact STRIPE_WEBHOOK_SECRET=whsec_dev cargo run -- send payment_succeeded \
//!     --config examples/library.toml --data '{"invoice_id":"in_1","amount":4200,"currency":"eur"}'
//! ```

use std::path::PathBuf;

use hookgate::{Event, Gateway, HandlerError};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct ContactCreated {
    id: String,
    email: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PaymentSucceeded {
    invoice_id: String,
    /// In the currency's smallest unit (cents).
    amount: i64,
    currency: String,
    #[serde(default)]
    customer_email: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookgate::init_logging();
    let config = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("HOOKGATE_CONFIG"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/library.toml"));
    let gateway = Gateway::from_config_file(config)?
        .json_handler("contact_created", contact_created)
        .json_handler("payment_succeeded", payment_succeeded)
        .build()
        .await?;
    if let Some(addr) = gateway.ingest_addr() {
        println!("send webhooks to http://{addr}/events/contact_created and /events/payment_succeeded");
    }
    println!("admin API on http://{}", gateway.admin_addr());
    gateway.serve().await?;
    Ok(())
}

async fn contact_created(event: Event, contact: ContactCreated) -> Result<(), HandlerError> {
    tracing::info!(
        event_id = %event.id,
        contact_id = %contact.id,
        email = %contact.email,
        name = contact.name.as_deref().unwrap_or("-"),
        "contact created"
    );
    Ok(())
}

async fn payment_succeeded(event: Event, payment: PaymentSucceeded) -> Result<(), HandlerError> {
    if payment.amount <= 0 {
        // Well-formed but wrong: no retry will fix it; park it for a human.
        return Err(HandlerError::permanent(format!(
            "invoice {}: amount {} is not a payment",
            payment.invoice_id, payment.amount
        )));
    }
    tracing::info!(
        event_id = %event.id,
        invoice_id = %payment.invoice_id,
        amount = payment.amount,
        currency = %payment.currency,
        receipt_to = payment.customer_email.as_deref().unwrap_or("-"),
        "payment received"
    );
    Ok(())
}
