//! The declarative scheme's tests: templates explained, every placeholder and option signed and
//! verified, the layouts of the providers that use it.

use super::*;
use crate::verify::test_support::*;

fn recipe<'a>() -> Recipe<'a> {
    Recipe {
        header: "Paddle-Signature",
        algorithm: "sha256",
        encoding: "hex",
        prefix: "",
        format: Some("ts={timestamp};h1={signature}"),
        signed: "{timestamp}:{body}",
        timestamp_header: None,
        unit: TimestampUnit::Seconds,
        tolerance: Duration::from_secs(300),
        public_url: None,
        delivery: None,
        handshake: None,
        decode_url: false,
    }
}

fn plan(r: Recipe<'_>) -> Plan {
    let mut p = Issues::default();
    let plan = Plan::compile(&r, &mut p);
    assert!(p.0.is_empty(), "{:?}", p.0);
    plan.unwrap()
}

fn problems(r: Recipe<'_>) -> Vec<String> {
    let mut p = Issues::default();
    assert!(Plan::compile(&r, &mut p).is_none());
    p.0.into_iter().map(|(k, v)| format!("{k}: {v}")).collect()
}

#[test]
fn compiles_and_explains_bad_templates() {
    for (r, want) in [
        (Recipe { signed: "{timestamp}:{bdy}", ..recipe() }, "signed: unknown placeholder {bdy}"),
        (Recipe { format: Some("ts={timestamp}"), ..recipe() }, "format: has no {signature}"),
        (Recipe { format: None, ..recipe() }, "signed: uses {timestamp}"),
        (Recipe { signed: "{body}", ..recipe() }, "signed: does not use {timestamp}"),
        (Recipe { signed: "{url}{timestamp}", ..recipe() }, "public_url: missing"),
        (Recipe { public_url: Some("https://a.example/x"), ..recipe() }, "public_url: not used"),
        (Recipe { algorithm: "md5", ..recipe() }, "algorithm: unknown algorithm \"md5\""),
        (Recipe { encoding: "b32", ..recipe() }, "encoding: unknown encoding"),
        (Recipe { header: "bad header", ..recipe() }, "header: invalid header name"),
        (Recipe { timestamp_header: Some("X-Ts"), ..recipe() }, "timestamp_header: not used"),
    ] {
        let got = problems(r);
        assert!(got.iter().any(|g| g.contains(want)), "want {want:?} in {got:?}");
    }
}

#[test]
fn every_placeholder_and_option() {
    let body: &[u8] = br#"{"id":1}"#;
    let secret = Secret::new("k");
    for (name, r, path) in [
        ("paddle-like", recipe(), "/p"),
        (
            "sha512 base64 prefix header timestamp",
            Recipe {
                algorithm: "sha512",
                encoding: "base64",
                prefix: "sha512=",
                format: None,
                timestamp_header: Some("X-Ts"),
                ..recipe()
            },
            "/p",
        ),
        (
            "sha1, method url path header",
            Recipe {
                algorithm: "sha1",
                format: None,
                signed: "{method} {url} {path} {header:X-Id} {body}",
                public_url: Some("https://h.example/hooks/p"),
                ..recipe()
            },
            "/p?a=1",
        ),
        (
            "millisecond timestamps",
            Recipe { format: None, timestamp_header: Some("X-Ts"), unit: TimestampUnit::Millis, ..recipe() },
            "/p",
        ),
        (
            "RFC 3339 timestamps",
            Recipe { format: None, timestamp_header: Some("X-Ts"), unit: TimestampUnit::Rfc3339, ..recipe() },
            "/p",
        ),
    ] {
        let plan = plan(r);
        let json = headers(&[("content-type", "application/json"), ("x-id", "id-1")]);
        let req = Request { method: "POST", path_and_query: path, headers: &json, body };
        let signed = plan.sign(&req, &secret, at(T0));
        let mut h = json.clone();
        for (k, v) in &signed.headers {
            h.insert(http::HeaderName::try_from(k.as_str()).unwrap(), v.parse().unwrap());
        }
        let ok = |h: &http::HeaderMap, body: &[u8], path: &str, now: u64, secret: &str| {
            let req = Request { method: "POST", path_and_query: path, headers: h, body };
            plan.verify(&req, &[Secret::new("old"), Secret::new(secret)], at(now))
        };
        assert_eq!(ok(&h, body, path, T0, "k"), Ok(()), "{name}: {signed:?}");
        assert_eq!(ok(&h, b"{\"id\":2}", path, T0, "k"), Err(VerifyError::Mismatch), "{name}: tampered");
        assert_eq!(ok(&h, body, path, T0, "other"), Err(VerifyError::Mismatch), "{name}: wrong key");
        if plan.timestamped() {
            assert_eq!(ok(&h, body, path, T0 + 301, "k"), Err(VerifyError::Stale), "{name}: stale");
            assert_eq!(ok(&h, body, path, T0 - 301, "k"), Err(VerifyError::Stale), "{name}: future");
        }
        if plan.public_url.is_some() {
            assert_eq!(ok(&h, body, "/p?a=2", T0, "k"), Err(VerifyError::Mismatch), "{name}: query changed");
        }
    }
}

#[test]
fn hubspot_decodes_the_escapes_it_lists() {
    let plan = plan(Recipe {
        decode_url: true,
        public_url: Some("https://h.example/hs"),
        signed: "{url}{timestamp}",
        ..recipe()
    });
    assert_eq!(plan.url("/hs?a=b%3Ac%2fd%20e%2"), "https://h.example/hs?a=b:c/d%20e%2");
}

#[test]
fn paddle_layout_with_two_signatures() {
    // Paddle's header layout (https://developer.paddle.com/webhooks/signature-verification):
    // several h1 entries while a secret rotates; the MAC is computed here.
    let plan = plan(recipe());
    let body = br#"{"event_id":"evt_01h8bzakzx3hm2fmen703n5q45","event_type":"transaction.updated"}"#;
    let sig = hex::encode(Algorithm::Sha256.mac(b"pdl_ntfset_secret", &[b"1671552777:", body]));
    let value = format!("ts=1671552777;h1={sig}");
    let h = headers(&[("paddle-signature", &value)]);
    assert_eq!(check(&plan, &["pdl_ntfset_secret"], &h, body, at(1671552777)), Ok(()));
    let two = format!("ts=1671552777;h1={};h1={sig}", "0".repeat(64));
    let h = headers(&[("paddle-signature", &two)]);
    assert_eq!(check(&plan, &["pdl_ntfset_secret"], &h, body, at(1671552777)), Ok(()));
    let h = headers(&[("paddle-signature", "ts=1671552777;h1=zz")]);
    assert_eq!(
        check(&plan, &["pdl_ntfset_secret"], &h, body, at(1671552777)),
        Err(VerifyError::Malformed("signature is not hex"))
    );
    let h = headers(&[("paddle-signature", "h1=00")]);
    assert_eq!(
        check(&plan, &["pdl_ntfset_secret"], &h, body, at(1671552777)),
        Err(VerifyError::Malformed("no timestamp"))
    );
}
