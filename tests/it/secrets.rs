//! Secrets never leak: not in anything hookgate prints (at the most verbose log level), not in
//! what it stores. Also a review, in code, that every scheme compares secrets and MACs in
//! constant time.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookgate::store::{EventQuery, Store};

use crate::support::{TestConfig, TestReceiver, binary, eventually, hmac_hex};

const SOURCE_SECRET: &str = "src-secret-5b1e0c7d";
const OLD_SECRET: &str = "old-secret-93ab44f1";
const SIGNING_KEY_B64: &str = "c2lnbmluZy1rZXktZGE3MWU0Nzg="; // "signing-key-da71e478"
const ADMIN_TOKEN: &str = "admin-token-0e6f2a99";
const BEARER: &str = "bearer-cred-41c7d2";
const COOKIE: &str = "cookie-cred-8d0b3e";
const API_KEY: &str = "api-key-cred-77a1f0";
const QUERY_CRED: &str = "query-cred-2f9c5a";

fn config(dir: &Path, rx_url: &str) -> std::path::PathBuf {
    TestConfig::new()
        .admin("token_env", "T_ADMIN_TOKEN")
        .delivery("initial_backoff", "20ms")
        .delivery("max_backoff", "50ms")
        .http("rx", rx_url)
        .set("sign", toml::toml! { secret_env = "T_SIGNING_KEY" })
        .source(
            "s",
            toml::toml! {
                scheme = "hmac-sha256"
                header = "X-Signature"
                secrets_env = ["T_OLD_SECRET", "T_SOURCE_SECRET"]
            },
            &["rx"],
        )
        .write(dir)
}

fn command(args: &[&str], config: &Path) -> Command {
    let mut c = Command::new(binary());
    c.args(args)
        .arg("--config")
        .arg(config)
        .env("HOOKGATE_LOG", "trace")
        .env("RUST_LOG", "trace")
        .env("T_SOURCE_SECRET", SOURCE_SECRET)
        .env("T_OLD_SECRET", OLD_SECRET)
        .env("T_SIGNING_KEY", format!("whsec_{SIGNING_KEY_B64}"))
        .env("T_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN);
    c
}

/// Starts `serve`, collecting everything it prints; returns it with the ingest and admin addresses.
fn serve(config: &Path, printed: Arc<Mutex<String>>) -> (Child, String, String) {
    let mut child = command(&["serve"], config).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let out = printed.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        out.lock().unwrap().push_str(&s);
    });
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("hookgate ready") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let _ = tx.send((v["ingest"].as_str().unwrap().to_string(), v["admin"].as_str().unwrap().to_string()));
            }
            let mut p = printed.lock().unwrap();
            p.push_str(&line);
            p.push('\n');
        }
    });
    let (ingest, admin) = rx.recv_timeout(Duration::from_secs(20)).expect("hookgate started");
    (child, ingest, admin)
}

/// Every value that must never be printed or stored.
fn forbidden(extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> =
        [SOURCE_SECRET, OLD_SECRET, SIGNING_KEY_B64, ADMIN_TOKEN, BEARER, COOKIE, API_KEY, QUERY_CRED]
            .iter()
            .map(|s| s.to_string())
            .collect();
    v.push("signing-key-da71e478".into());
    v.extend_from_slice(extra);
    v
}

fn assert_clean(what: &str, text: &str, forbidden: &[String]) {
    for f in forbidden {
        assert!(!text.contains(f.as_str()), "{what} contains {f:?}:\n{}", excerpt_around(text, f));
    }
}

fn excerpt_around(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap_or(0);
    let start = text[..at].char_indices().rev().nth(300).map(|(i, _)| i).unwrap_or(0);
    text[start..].chars().take(700).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_signatures_never_reach_the_log_or_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let rx = TestReceiver::scripted(200, &[500]).await; // one failed attempt: errors get logged too
    let config = config(dir.path(), &rx.url());
    let printed = Arc::new(Mutex::new(String::new()));
    let (mut child, ingest, admin) = serve(&config, printed.clone());
    let client = reqwest::Client::new();

    let body = br#"{"id":"evt_secret_test","kind":"contact"}"#;
    let good = hmac_hex(SOURCE_SECRET, body);
    let rotated = hmac_hex(OLD_SECRET, b"second body");
    let wrong = hmac_hex("not-the-secret", body);
    let url = format!("http://{ingest}/hook/s?api_key={QUERY_CRED}");
    let send = |sig: String, body: Vec<u8>| {
        client
            .post(&url)
            .header("x-signature", sig)
            .header("authorization", format!("Bearer {BEARER}"))
            .header("cookie", format!("session={COOKIE}"))
            .header("x-api-key", API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(send(good.clone(), body.to_vec()).await.unwrap().status(), 200);
    assert_eq!(send(rotated.clone(), b"second body".to_vec()).await.unwrap().status(), 200);
    let refused = send(wrong.clone(), body.to_vec()).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_clean("the 401 answer", &refused.text().await.unwrap(), &forbidden(&[good.clone(), wrong.clone()]));
    // The admin listener, with the right token and a wrong one.
    for token in [ADMIN_TOKEN, "wrong-admin-token"] {
        let _ = client.get(format!("http://{admin}/api/events")).bearer_auth(token).send().await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(10), async || rx.received().iter().filter(|r| r.status == 200).count() == 2)
            .await
    );
    // What hookgate signed on the way out is a MAC under our signing key.
    let outgoing: Vec<String> = rx.received().iter().map(|r| r.header("webhook-signature")).collect();
    assert!(outgoing.iter().all(|s| s.starts_with("v1,")), "{outgoing:?}");

    // `hookgate send` prints the answer, not the signature it made.
    let sent = command(&["send", "s", "--data", r#"{"id":"evt_cli"}"#, "--url", &format!("http://{ingest}")], &config)
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    // `send` signs with the first listed secret; list both candidates.
    let cli_sigs = [OLD_SECRET, SOURCE_SECRET].map(|k| hmac_hex(k, br#"{"id":"evt_cli"}"#));
    let sent_text = format!("{}{}", String::from_utf8_lossy(&sent.stdout), String::from_utf8_lossy(&sent.stderr));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Config errors: a signing key that is not a Standard Webhooks secret, a missing variable.
    let bad = std::fs::read_to_string(&config).unwrap().replace("T_SIGNING_KEY", "T_BAD_KEY");
    let bad_path = dir.path().join("bad.toml");
    std::fs::write(&bad_path, bad).unwrap();
    let mut errors = String::new();
    for sub in ["check", "serve"] {
        let out = command(&[sub], &bad_path).env("T_BAD_KEY", format!("not-base64 {SOURCE_SECRET}")).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{sub} refuses the config");
        errors.push_str(&String::from_utf8_lossy(&out.stdout));
        errors.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(errors.contains("T_BAD_KEY") || errors.contains("sign"), "the error names the key: {errors}");

    let printed = printed.lock().unwrap().clone();
    assert!(printed.contains("event queued"), "the log was captured at trace level");
    assert!(printed.contains("delivery failed"), "a failed attempt was logged");
    let all_sigs = [
        vec![good, rotated, wrong, cli_sigs[0].clone(), cli_sigs[1].clone()],
        outgoing.iter().map(|s| s[3..].to_string()).collect(),
    ]
    .concat();
    assert_clean("serve's output", &printed, &forbidden(&all_sigs));
    assert_clean("send's output", &sent_text, &forbidden(&all_sigs));
    assert_clean("config errors", &errors, &forbidden(&all_sigs));

    // The store: headers, dedupe keys and attempt logs.
    let store = hookgate::store::sqlite::SqliteStore::open(&dir.path().join("hookgate.db"), hookgate::clock::system())
        .await
        .unwrap();
    let page = store.list_events(EventQuery { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(page.items.len(), 3);
    let mut redacted = 0;
    for summary in page.items {
        let ev = store.get_event(&summary.id).await.unwrap().unwrap();
        let stored = format!("{} {} {:?}", ev.headers_json, ev.summary.dedupe_key, ev.deliveries);
        assert_clean("a stored event", &stored, &forbidden(&all_sigs));
        let headers: serde_json::Value = serde_json::from_str(&ev.headers_json).unwrap();
        for h in ["x-signature", "authorization", "cookie", "x-api-key"] {
            assert!(headers.get(h).is_none_or(|v| v == "[redacted]"), "{h} in {headers}");
        }
        redacted += usize::from(headers.get("authorization").is_some());
    }
    assert_eq!(redacted, 2, "both posted events kept their (redacted) Authorization header");
}

/// The code review, as a test: in every scheme file under src/verify, secrets and MACs are compared
/// only through the constant-time helpers (`Mac::verify_slice`, `subtle::ConstantTimeEq`, or the
/// helpers built on them), never with `==`/`!=` on the bytes.
#[test]
fn signature_comparisons_go_through_constant_time_primitives() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/verify");
    // `.verify(req, secrets` is a scheme delegating to another (github to the generic HMAC).
    const CONSTANT_TIME: &[&str] =
        &["verify_slice", "ct_eq", "matches_any", "token_matches", "any_equal", ".verify(req, secrets"];
    const SECRET_WORDS: &[&str] = &["sig", "mac", "expose", "digest", "token", "password", "expected", "hash", "key"];
    let mut schemes = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        // Only the code, not its tests.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (i, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            for (at, _) in l.match_indices("==").chain(l.match_indices("!=")) {
                // The operands: a few words either side of the operator.
                let window: String =
                    l[..at].chars().rev().take(24).collect::<Vec<_>>().into_iter().rev().collect::<String>()
                        + &l[at..].chars().take(26).collect::<String>();
                let lower = window.to_ascii_lowercase();
                let secret_like = SECRET_WORDS.iter().any(|w| lower.contains(w));
                // A literal or a CONSTANT on the right is a name or a format, never a secret.
                let right = l[at + 2..].trim_start();
                let word: String = right.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let constant = right.starts_with('"')
                    || (!word.is_empty()
                        && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
                let exempt =
                    constant || window.contains("ct_eq") || window.contains("len()") || window.contains("is_empty");
                assert!(!secret_like || exempt, "{name}:{}: compares secret material with ==/!=: {l}", i + 1);
            }
        }
        if matches!(name.as_str(), "mod.rs" | "insecure.rs" | "fuzzing.rs") {
            continue;
        }
        // A scheme checked with the provider's public key (Ed25519, ECDSA) compares no secret.
        if code.contains("fn verify(") && code.contains("secrets") && !code.contains("VerifyingKey") {
            schemes += 1;
            let uses = CONSTANT_TIME.iter().any(|f| code.contains(f));
            assert!(uses, "{name}: verify() uses none of the constant-time helpers {CONSTANT_TIME:?}");
        }
    }
    assert!(schemes >= 1, "found the scheme files");
    // The helpers themselves are built on the constant-time primitives.
    let helpers = ["mod.rs", "hmac_generic.rs"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap()).join("\n");
    assert!(helpers.contains("verify_slice("), "matches_any uses Mac::verify_slice");
}
