//! Named providers that the declarative `hmac` scheme expresses: one row each in [`PRESETS`]
//! (header, hash, encoding, what is signed, timestamp, dedupe key, handshake, reference). A new
//! such provider is one row here plus its test vector in `tests/vectors/schemes.json`; one that
//! needs code is a file of its own (`mailgun.rs`, `sendgrid.rs`, ...). docs/PROVIDERS.md has the
//! operator's view of each row.

use std::time::Duration;

use super::handshake::Kind;
use super::hmac::{Delivery, Plan, Recipe, TimestampUnit};
use super::spec::{Issues, Spec};

/// One named provider: its recipe and the page that specifies it.
#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    pub recipe: Recipe<'static>,
    pub reference: &'static str,
}

const FIVE_MINUTES: Duration = Duration::from_secs(300);

/// A body-signing recipe: `header` carries `prefix` + the MAC of the body.
const fn body(
    header: &'static str,
    algorithm: &'static str,
    encoding: &'static str,
    prefix: &'static str,
) -> Recipe<'static> {
    Recipe {
        header,
        algorithm,
        encoding,
        prefix,
        format: None,
        signed: "{body}",
        timestamp_header: None,
        unit: TimestampUnit::Seconds,
        tolerance: FIVE_MINUTES,
        public_url: None,
        delivery: None,
        handshake: None,
        decode_url: false,
    }
}

const fn with_delivery(r: Recipe<'static>, d: Delivery) -> Recipe<'static> {
    Recipe { delivery: Some(d), ..r }
}

/// A `t={timestamp},v1={signature}` recipe over `"{timestamp}.{body}"` (Stripe's layout).
const fn t_v1(header: &'static str, tolerance: Duration) -> Recipe<'static> {
    Recipe {
        format: Some("t={timestamp},v1={signature}"),
        signed: "{timestamp}.{body}",
        tolerance,
        ..body(header, "sha256", "hex", "")
    }
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "paddle",
        recipe: Recipe {
            format: Some("ts={timestamp};h1={signature}"),
            signed: "{timestamp}:{body}",
            delivery: Some(Delivery::Json("/event_id")),
            ..body("Paddle-Signature", "sha256", "hex", "")
        },
        reference: "https://developer.paddle.com/webhooks/signature-verification",
    },
    Preset {
        name: "linear",
        recipe: with_delivery(body("Linear-Signature", "sha256", "hex", ""), Delivery::Header("linear-delivery")),
        reference: "https://linear.app/developers/webhooks#securing-webhooks",
    },
    Preset {
        name: "square",
        recipe: Recipe {
            signed: "{url}{body}",
            delivery: Some(Delivery::Json("/event_id")),
            ..body("X-Square-HmacSha256-Signature", "sha256", "base64", "")
        },
        reference: "https://developer.squareup.com/docs/webhooks/step3validate",
    },
    Preset {
        name: "hubspot",
        recipe: Recipe {
            signed: "{method}{url}{body}{timestamp}",
            timestamp_header: Some("X-HubSpot-Request-Timestamp"),
            unit: TimestampUnit::Millis,
            decode_url: true,
            ..body("X-HubSpot-Signature-v3", "sha256", "base64", "")
        },
        reference: "https://developers.hubspot.com/docs/api/webhooks/validating-requests",
    },
    Preset {
        name: "intercom",
        recipe: with_delivery(body("X-Hub-Signature", "sha1", "hex", "sha1="), Delivery::Json("/id")),
        reference: "https://developers.intercom.com/docs/references/webhooks/webhook-models#signed-notifications",
    },
    Preset {
        name: "bitbucket",
        recipe: with_delivery(body("X-Hub-Signature", "sha256", "hex", "sha256="), Delivery::Header("x-request-uuid")),
        reference: "https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/#Secure-webhooks",
    },
    Preset {
        name: "jira",
        recipe: with_delivery(
            body("X-Hub-Signature", "sha256", "hex", "sha256="),
            Delivery::Header("x-atlassian-webhook-identifier"),
        ),
        reference: "https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks",
    },
    Preset {
        name: "typeform",
        recipe: with_delivery(body("Typeform-Signature", "sha256", "base64", "sha256="), Delivery::Json("/event_id")),
        reference: "https://www.typeform.com/developers/webhooks/secure-your-webhooks/",
    },
    Preset {
        name: "calendly",
        recipe: t_v1("Calendly-Webhook-Signature", Duration::from_secs(180)),
        reference: "https://developer.calendly.com/api-docs/4c305798a61d3-webhook-signatures",
    },
    Preset {
        name: "pagerduty",
        recipe: Recipe {
            format: Some("v1={signature},v1={signature}"),
            delivery: Some(Delivery::Json("/event/id")),
            ..body("X-PagerDuty-Signature", "sha256", "hex", "")
        },
        reference: "https://developer.pagerduty.com/docs/webhooks/webhook-signatures/",
    },
    Preset {
        name: "sentry",
        recipe: with_delivery(body("Sentry-Hook-Signature", "sha256", "hex", ""), Delivery::Header("request-id")),
        reference: "https://docs.sentry.io/organization/integrations/integration-platform/webhooks/#sentry-hook-signature",
    },
    Preset {
        name: "vercel",
        recipe: with_delivery(body("X-Vercel-Signature", "sha1", "hex", ""), Delivery::Json("/id")),
        reference: "https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks",
    },
    Preset {
        name: "coinbase",
        recipe: with_delivery(body("X-CC-Webhook-Signature", "sha256", "hex", ""), Delivery::Json("/event/id")),
        reference: "https://docs.cdp.coinbase.com/commerce/docs/webhooks-security",
    },
    Preset {
        name: "zendesk",
        recipe: Recipe {
            signed: "{timestamp}{body}",
            timestamp_header: Some("X-Zendesk-Webhook-Signature-Timestamp"),
            unit: TimestampUnit::Rfc3339,
            delivery: Some(Delivery::Header("x-zendesk-webhook-invocation-id")),
            ..body("X-Zendesk-Webhook-Signature", "sha256", "base64", "")
        },
        reference: "https://developer.zendesk.com/documentation/webhooks/verifying/",
    },
    Preset {
        name: "mux",
        recipe: with_delivery(t_v1("Mux-Signature", FIVE_MINUTES), Delivery::Json("/id")),
        reference: "https://docs.mux.com/core/verify-webhook-signatures",
    },
    Preset {
        name: "docusign",
        recipe: body("X-DocuSign-Signature-1", "sha256", "base64", ""),
        reference: "https://developers.docusign.com/platform/webhooks/connect/hmac/",
    },
    Preset {
        name: "zoom",
        recipe: Recipe {
            signed: "v0:{timestamp}:{body}",
            timestamp_header: Some("x-zm-request-timestamp"),
            handshake: Some(Kind::Zoom),
            ..body("x-zm-signature", "sha256", "hex", "v0=")
        },
        reference: "https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events",
    },
    Preset {
        name: "twitter",
        recipe: Recipe {
            handshake: Some(Kind::TwitterCrc),
            ..body("x-twitter-webhooks-signature", "sha256", "base64", "sha256=")
        },
        reference: "https://docs.x.com/x-api/enterprise-gnip-2.0/fundamentals/account-activity#validating-the-signature-header",
    },
    Preset {
        name: "meta",
        recipe: Recipe { handshake: Some(Kind::Meta), ..body("X-Hub-Signature-256", "sha256", "hex", "sha256=") },
        reference: "https://developers.facebook.com/docs/graph-api/webhooks/getting-started#validate-payloads",
    },
    Preset {
        name: "dropbox",
        recipe: Recipe { handshake: Some(Kind::Dropbox), ..body("X-Dropbox-Signature", "sha256", "hex", "") },
        reference: "https://www.dropbox.com/developers/reference/webhooks#documentation",
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

impl Preset {
    /// The optional keys a source using this preset may set (besides its secrets).
    pub fn takes(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.recipe.signed.contains("{timestamp}") {
            keys.push("tolerance");
        }
        if self.recipe.signed.contains("{url}") {
            keys.push("public_url");
        }
        if self.recipe.handshake == Some(Kind::Meta) {
            keys.push("verify_token_env");
        }
        keys
    }

    pub fn from_spec(&self, spec: &Spec, p: &mut Issues) -> Option<Plan> {
        let tolerance = match &spec.tolerance {
            None => self.recipe.tolerance,
            Some(_) => super::tolerance(spec, p)?,
        };
        if self.recipe.signed.contains("{url}") && spec.public_url.is_none() {
            p.push(
                "public_url",
                format!("missing; write the URL {} calls, e.g. \"https://hooks.example.com/{}\"", self.name, self.name),
            );
            return None;
        }
        let recipe = Recipe { tolerance, public_url: spec.public_url.as_deref(), ..self.recipe.clone() };
        let plan = Plan::compile(&recipe, p)?;
        let token = match &spec.verify_token {
            Some(Ok(t)) => Some(t.clone()),
            Some(Err(e)) => {
                p.push("verify_token_env", e.clone());
                return None;
            }
            None if self.recipe.handshake == Some(Kind::Meta) => {
                p.push("verify_token_env", "missing; name the variable holding the verify token you gave Meta");
                return None;
            }
            None => None,
        };
        Some(plan.with_verify_token(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_compiles() {
        for preset in PRESETS {
            let mut p = Issues::default();
            let spec = Spec {
                public_url: preset.takes().contains(&"public_url").then(|| "https://hooks.example.com/x".to_string()),
                verify_token: preset
                    .takes()
                    .contains(&"verify_token_env")
                    .then(|| Ok(crate::secret::Secret::new("vt"))),
                ..Spec::default()
            };
            assert!(preset.from_spec(&spec, &mut p).is_some(), "{}: {:?}", preset.name, p.0);
            assert!(preset.reference.starts_with("https://"), "{}", preset.name);
        }
    }
}
