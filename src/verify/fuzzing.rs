//! Robustness harness: arbitrary or mutated headers, path and body fed to every scheme's
//! `verify` and `delivery_id`, which must never panic. Driven by the cargo-fuzz targets in
//! `fuzz/` and, within `cargo test`, by a bounded random run of the same functions (tests below).
//! Not part of the API.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::spec::{Issues, Spec};
use super::{DEFAULT_TOLERANCE, Request, Scheme, basic, bearer, github, gitlab, hmac_generic, shopify, slack};
use super::{discord, graph, hmac, mailgun, okta, presets, sendgrid, standard_webhooks, stripe, twilio};
use crate::secret::Secret;

/// The time every harness request is checked at.
pub const NOW: u64 = 1_700_000_000;

/// Every header any scheme reads.
pub const HEADERS: &[&str] = &[
    "x-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-shopify-webhook-id",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-gitlab-token",
    "idempotency-key",
    "x-gitlab-event-uuid",
    "x-twilio-signature",
    "x-twilio-webhooks-signature-settings",
    "i-twilio-idempotency-token",
    "authorization",
    "content-type",
    "x-custom-sig",
    "x-custom-ts",
    "paddle-signature",
    "linear-signature",
    "x-square-hmacsha256-signature",
    "x-hubspot-signature-v3",
    "x-hubspot-request-timestamp",
    "x-hub-signature",
    "typeform-signature",
    "calendly-webhook-signature",
    "x-pagerduty-signature",
    "sentry-hook-signature",
    "x-vercel-signature",
    "x-cc-webhook-signature",
    "x-zendesk-webhook-signature",
    "x-zendesk-webhook-signature-timestamp",
    "mux-signature",
    "x-docusign-signature-1",
    "x-zm-signature",
    "x-zm-request-timestamp",
    "x-twitter-webhooks-signature",
    "x-dropbox-signature",
    "x-signature-ed25519",
    "x-signature-timestamp",
    "x-twilio-email-event-webhook-signature",
    "x-twilio-email-event-webhook-timestamp",
    "x-okta-verification-challenge",
];

/// A preset (or the user's `hmac` table, when `name` is "hmac" and `spec` says it) as built at load.
fn plan(name: &str, spec: Spec) -> hmac::Plan {
    let mut p = Issues::default();
    let plan = match presets::find(name) {
        Some(preset) => preset.from_spec(&spec, &mut p),
        None => hmac::Plan::from_spec(&spec, &mut p),
    };
    plan.unwrap_or_else(|| unreachable!("the harness's {name} spec is valid: {:?}", p.0))
}

/// The schemes `verify_headers` also feeds, which `verify_mutated` cannot sign for: a public key
/// (Discord, SendGrid) or a credential in the body (Microsoft Graph, Mailgun).
pub fn unsignable() -> Vec<(&'static str, Box<dyn Scheme>)> {
    let ed = discord::parse_key("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        .unwrap_or_else(|_| unreachable!("RFC 8032's test key is valid"));
    let p256 = sendgrid::parse_key(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
    )
    .unwrap_or_else(|_| unreachable!("SendGrid's documented key is valid"));
    vec![
        ("discord", Box::new(discord::Discord::new(ed, DEFAULT_TOLERANCE))),
        ("sendgrid", Box::new(sendgrid::SendGrid::new(p256, DEFAULT_TOLERANCE))),
        ("microsoft-graph", Box::new(graph::Graph)),
        ("mailgun", Box::new(mailgun::Mailgun::new(DEFAULT_TOLERANCE))),
    ]
}

/// Every scheme with two keys (a rotation), the second being the one `sign` uses here.
pub fn schemes() -> Vec<(&'static str, Box<dyn Scheme>, Vec<Secret>)> {
    let plain = || vec![Secret::new("old-secret"), Secret::new("whsec_dGVzdC1zZWNyZXQtZm9yLWZ1enppbmc=")];
    let sw = standard_webhooks::StandardWebhooks::new(DEFAULT_TOLERANCE);
    let sw_keys = plain().into_iter().map(|s| sw.key(s).unwrap_or_else(|_| Secret::new("k"))).collect();
    let mut all: Vec<(&'static str, Box<dyn Scheme>, Vec<Secret>)> = vec![
        (
            "hmac-sha256",
            Box::new(hmac_generic::HmacSha256::new("x-signature", hmac_generic::Encoding::Hex, "")),
            plain(),
        ),
        ("github", Box::new(github::scheme()), plain()),
        ("stripe", Box::new(stripe::Stripe::new(DEFAULT_TOLERANCE)), plain()),
        ("shopify", Box::new(shopify::scheme()), plain()),
        ("slack", Box::new(slack::Slack::new(DEFAULT_TOLERANCE)), plain()),
        ("standard-webhooks", Box::new(sw), sw_keys),
        ("gitlab", Box::new(gitlab::GitLab), plain()),
        ("twilio", Box::new(twilio::Twilio::new("https://hooks.example.com/twilio")), plain()),
        ("basic", Box::new(basic::Basic::new("hooks")), plain()),
        ("bearer", Box::new(bearer::Bearer), plain()),
        ("okta", Box::new(okta::Okta), plain()),
        (
            "hmac",
            Box::new(plan(
                "hmac",
                Spec {
                    header: Some("X-Custom-Sig".into()),
                    algorithm: Some("sha512".into()),
                    encoding: Some("base64".into()),
                    format: Some("t={timestamp},v1={signature},v1={signature}".into()),
                    signed: Some("{method}:{url}:{path}:{header:x-custom-ts}:{timestamp}.{body}".into()),
                    public_url: Some("https://hooks.example.com/custom".into()),
                    ..Spec::default()
                },
            )),
            plain(),
        ),
    ];
    for preset in presets::PRESETS {
        let takes = preset.takes();
        let spec = Spec {
            public_url: takes.contains(&"public_url").then(|| "https://hooks.example.com/p".to_string()),
            verify_token: takes.contains(&"verify_token_env").then(|| Ok(Secret::new("verify-token"))),
            ..Spec::default()
        };
        all.push((preset.name, Box::new(plan(preset.name, spec)), plain()));
    }
    all
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn set(headers: &mut HeaderMap, name: &str, value: &[u8]) {
    let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_bytes(value)) else { return };
    headers.append(name, value);
}

/// Fuzz target `verify_headers`: `data` is `path \n value of HEADERS[0] \n value of HEADERS[1] ...`;
/// what follows the last header value is the body. Values that are not valid header values
/// leave the header out. Every scheme checks the result.
pub fn verify_headers(data: &[u8]) {
    let mut pieces = data.splitn(HEADERS.len() + 2, |b| *b == b'\n');
    let path = String::from_utf8_lossy(pieces.next().unwrap_or_default()).into_owned();
    let mut headers = HeaderMap::new();
    for name in HEADERS {
        match pieces.next() {
            Some(value) if !value.is_empty() => set(&mut headers, name, value),
            Some(_) => {}
            None => break,
        }
    }
    let body = pieces.next().unwrap_or_default();
    let req = Request { method: "POST", path_and_query: &path, headers: &headers, body };
    let get = Request { method: "GET", path_and_query: &path, headers: &headers, body };
    let unsignable = unsignable().into_iter().map(|(n, s)| (n, s, vec![Secret::new("old-secret")]));
    for (name, scheme, keys) in schemes().into_iter().chain(unsignable) {
        let early = scheme.check_headers(&headers, &keys);
        if scheme.verify(&req, &keys, now()).is_ok() {
            assert_eq!(early, Ok(()), "{name}: the check before the body refused a request that verifies");
            let _ = scheme.delivery_id(&req);
        }
        // Handshakes parse queries and bodies of their own: neither may panic.
        let _ = scheme.handshake(&req, &keys, now());
        let _ = scheme.handshake(&get, &keys, now());
    }
}

const BODIES: &[&[u8]] = &[
    br#"{"id":"evt_1","event_id":"Ev1","type":"test"}"#,
    b"CallSid=CA1&From=%2B14158675309&Body=hi+there&Digits=1&Digits=2",
    b"",
    b"\xff\xfe not utf-8 \x00",
];

const TOKENS: &[&[u8]] = &[
    b",",
    b"=",
    b" ",
    b"v1,",
    b"v1=",
    b"v0=",
    b"t=",
    b"sha256=",
    b"?",
    b"&",
    b"%",
    b"%zz",
    b"bodySHA256=",
    b"==",
    b"whsec_",
    b"Basic ",
    b"Bearer ",
    b":",
    b"\xff",
    b"99999999999999999999",
    b"-1",
    b"algorithm=HMAC_SHA256",
    b"ts=",
    b"h1=",
    b";",
    b"2023-01-01T00:00:00Z",
    b"crc_token=",
    b"hub.challenge=",
    b"validationToken=",
    br#"{"type":1}"#,
    br#""clientState":"#,
];

/// Edits stop growing a value past this (the ingest limits bound real headers and bodies).
const MAX_PART: usize = 64 * 1024;

/// Fuzz target `verify_mutated`: `data[0]` picks a scheme and `data[1]` a body; the request is
/// signed correctly, then each following 4-byte group `[op, target, position, argument]` edits
/// one header value, the path or the body. Unedited, the request must verify; edited, any
/// answer but a panic is fine.
pub fn verify_mutated(data: &[u8]) {
    let [pick, body_pick, ops @ ..] = data else { return };
    let mut all = schemes();
    let (name, scheme, keys) = all.swap_remove(*pick as usize % all.len());
    let body = BODIES[*body_pick as usize % BODIES.len()];
    let content_type: &[u8] =
        if body.starts_with(b"CallSid") { b"application/x-www-form-urlencoded" } else { b"application/json" };
    let mut ct = HeaderMap::new();
    set(&mut ct, "content-type", content_type);
    let key = keys.last().cloned().unwrap_or_else(|| Secret::new("k"));
    let signed =
        scheme.sign(&Request { method: "POST", path_and_query: "/twilio?x=1", headers: &ct, body }, &key, now());
    let body = signed.body.clone().unwrap_or_else(|| body.to_vec());
    // Target 0 is the path, 1 the body, 2 the content type, then each signed header.
    let mut parts: Vec<(String, Vec<u8>)> = vec![
        (":path".into(), signed.path_and_query.into_bytes()),
        (":body".into(), body),
        ("content-type".into(), content_type.to_vec()),
    ];
    parts.extend(signed.headers.into_iter().map(|(k, v)| (k, v.into_bytes())));
    let mut when = NOW;
    let edited = !ops.is_empty();
    for op in ops.chunks(4) {
        let [code, target, pos, arg] = [0, 1, 2, 3].map(|i| op.get(i).copied().unwrap_or(0));
        if code % 10 == 9 {
            // Move the clock: up to 20 minutes either way.
            when = NOW - 1200 + u64::from(u16::from_le_bytes([pos, arg]) % 2400);
            continue;
        }
        let n = parts.len();
        let value = &mut parts[target as usize % n].1;
        if value.len() > MAX_PART && matches!(code % 10, 5 | 7) {
            continue; // doubling again and again would only measure the allocator
        }
        let at = if value.is_empty() { 0 } else { pos as usize % (value.len() + 1) };
        match code % 10 {
            0 if at < value.len() => value[at] ^= 1 << (arg % 8),
            1 if at < value.len() => {
                value.remove(at);
            }
            2 => value.insert(at, arg),
            3 => value.truncate(at),
            4 => {
                let token = TOKENS[arg as usize % TOKENS.len()];
                value.splice(at..at, token.iter().copied());
            }
            5 => {
                let copy = value.clone();
                value.push(if arg % 2 == 0 { b',' } else { b' ' });
                value.extend(copy);
            }
            6 => value.clear(),
            7 => value.resize(value.len() + 5000, arg),
            8 => value.make_ascii_uppercase(),
            _ => {}
        }
    }
    let mut headers = HeaderMap::new();
    for (k, v) in &parts[2..] {
        set(&mut headers, k, v);
    }
    let path = String::from_utf8_lossy(&parts[0].1).into_owned();
    let req = Request { method: "POST", path_and_query: &path, headers: &headers, body: &parts[1].1 };
    let result = scheme.verify(&req, &keys, SystemTime::UNIX_EPOCH + Duration::from_secs(when));
    if !edited {
        assert_eq!(result, Ok(()), "{name}: an unedited signed request must verify");
    }
    if result.is_ok() {
        // Run before the body is read, it must never refuse what verify accepts.
        assert_eq!(scheme.check_headers(&headers, &keys), Ok(()), "{name}: refused before the body, yet it verifies");
        let _ = scheme.delivery_id(&req);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The fuzz targets on random inputs, a bounded stand-in for `cargo fuzz run` within
    /// `cargo test`. Seeded, so a failure reproduces; `HOOKGATE_FUZZ_ITERATIONS` runs more.
    fn iterations() -> usize {
        std::env::var("HOOKGATE_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
    }

    #[test]
    fn every_scheme_verifies_what_it_signs() {
        for pick in 0..schemes().len() as u8 {
            for body in 0..BODIES.len() as u8 {
                verify_mutated(&[pick, body]);
            }
        }
        // And its own test event (what `hookgate send` posts without --data).
        for (name, scheme, keys) in schemes() {
            let (content_type, body) = scheme.test_event();
            let mut headers = HeaderMap::new();
            set(&mut headers, "content-type", content_type.as_bytes());
            let signed = scheme.sign(
                &Request { method: "POST", path_and_query: "/t", headers: &headers, body: &body },
                &keys[1],
                now(),
            );
            for (k, v) in &signed.headers {
                set(&mut headers, k, v.as_bytes());
            }
            let req =
                Request { method: "POST", path_and_query: &signed.path_and_query, headers: &headers, body: &body };
            assert_eq!(scheme.verify(&req, &keys, now()), Ok(()), "{name}");
            assert_eq!(name == "twilio", content_type == "application/x-www-form-urlencoded", "{name}");
        }
    }

    #[test]
    fn mutated_signed_requests_never_panic() {
        let mut rng = StdRng::seed_from_u64(0x5eed_0001);
        let schemes = schemes().len();
        for i in 0..iterations() * schemes {
            let len = rng.random_range(0..24usize);
            let mut data: Vec<u8> = (0..2 + len).map(|_| rng.random()).collect();
            data[0] = (i % schemes) as u8;
            verify_mutated(&data);
        }
    }

    #[test]
    fn arbitrary_headers_never_panic() {
        let mut rng = StdRng::seed_from_u64(0x5eed_0002);
        let alphabet = b"\n\n\n,= v1tsha256:0123456789abcdefABCDEF+/=whsec_?&%Basic Bearer\xff\x00\r";
        for _ in 0..iterations() {
            let len = rng.random_range(0..400usize);
            let data: Vec<u8> = (0..len)
                .map(
                    |_| if rng.random_bool(0.8) { alphabet[rng.random_range(0..alphabet.len())] } else { rng.random() },
                )
                .collect();
            verify_headers(&data);
        }
    }
}
