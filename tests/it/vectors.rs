//! The conformance file `tests/vectors/schemes.json` (made by scripts/vectors.py, independently
//! of hookgate's code): every vector goes through the real verifier as ingest runs it (the
//! header check, then the handshake, then verify) and must get its verdict.

use std::time::{Duration, SystemTime};

use hookgate::secret::Secret;
use hookgate::verify::{SecretInput, Spec, Unverified, Verifier};
use serde_json::Value;

fn spec(v: &Value) -> Spec {
    let text = |k: &str| v["verify"][k].as_str().map(str::to_string);
    let secrets = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| SecretInput {
            field: "secrets_env",
            origin: "a vector".into(),
            value: Ok(Secret::new(s.as_str().unwrap())),
        })
        .collect();
    Spec {
        scheme: v["scheme"].as_str().map(str::to_string),
        header: text("header"),
        encoding: text("encoding"),
        prefix: text("prefix"),
        public_url: text("public_url"),
        algorithm: text("algorithm"),
        format: text("format"),
        signed: text("signed"),
        timestamp_header: text("timestamp_header"),
        public_key: text("public_key"),
        verify_token: text("verify_token").map(|t| Ok(Secret::new(t))),
        secrets,
        ..Spec::default()
    }
}

/// "accept", "reject" or "handshake STATUS CONTENT-TYPE BODY", as ingest would answer.
fn verdict(verifier: &Verifier, v: &Value) -> String {
    let r = &v["request"];
    let mut headers = http::HeaderMap::new();
    for pair in r["headers"].as_array().unwrap() {
        let name = http::HeaderName::try_from(pair[0].as_str().unwrap()).unwrap();
        headers.append(name, pair[1].as_str().unwrap().parse().unwrap());
    }
    let (method, path, body) =
        (r["method"].as_str().unwrap(), r["path"].as_str().unwrap(), r["body"].as_str().unwrap());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(v["now"].as_u64().unwrap());
    if verifier.check_headers(&headers).is_err() {
        return "reject".into();
    }
    match verifier.handshake(method, path, &headers, body.as_bytes(), now) {
        Some(Ok(h)) => {
            return format!("handshake {} {} {}", h.status, h.content_type, String::from_utf8_lossy(&h.body));
        }
        Some(Err(_)) => return "reject".into(),
        None if method == "GET" => return "reject".into(),
        None => {}
    }
    let req = Unverified { path_and_query: path.into(), headers, body: body.as_bytes().to_vec().into() };
    if req.verify(verifier, now).is_ok() { "accept".into() } else { "reject".into() }
}

#[test]
fn vectors_every_scheme_gets_each_verdict_from_the_real_verifier() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/schemes.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut schemes = std::collections::BTreeSet::new();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        schemes.insert(v["scheme"].as_str().unwrap().to_string());
        let verifier = match Verifier::build(spec(v)) {
            Ok(verifier) => verifier,
            Err(problems) => {
                failures.push(format!("{name}: does not build: {problems:?}"));
                continue;
            }
        };
        let want = match v["verdict"].as_str().unwrap() {
            "handshake" => {
                let h = &v["handshake"];
                format!(
                    "handshake {} {} {}",
                    h["status"],
                    h["content_type"].as_str().unwrap(),
                    h["body"].as_str().unwrap()
                )
            }
            other => other.to_string(),
        };
        let got = verdict(&verifier, v);
        if got != want {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} vectors failed:\n{}", failures.len(), vectors.len(), failures.join("\n"));
    // Every scheme that takes a signature has vectors (basic, bearer and none are not providers').
    for (name, _) in
        hookgate::verify::SCHEMES.iter().filter(|(n, _)| !matches!(*n, "basic" | "bearer" | "none" | "hmac-sha256"))
    {
        assert!(schemes.contains(*name), "no vectors for {name}");
    }
    for preset in hookgate::verify::presets::PRESETS {
        assert!(schemes.contains(preset.name), "no vectors for {}", preset.name);
    }
}
