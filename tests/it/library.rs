//! The library (CONTRACT §4 `rust` destinations): `examples/seed_handlers` as a real process, typed
//! handlers that dead-letter a body they cannot parse, and the build-time check that handlers and
//! `type = "rust"` destinations match.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate::{Event, Gateway, HandlerProblem};
use serde_json::Value;

use crate::support::app::SECRET;
use crate::support::{TestConfig, eventually, hmac_hex};

/// The compiled example `name`, built first if needed (`cargo test` builds examples, but
/// `cargo test --test it` does not, and a stale binary would test old code).
fn example_binary(name: &str) -> PathBuf {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_hookgate")).parent().unwrap().to_path_buf();
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "--example", name]).current_dir(env!("CARGO_MANIFEST_DIR"));
    if bin_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo.status().unwrap();
    assert!(status.success(), "cargo build --example {name}: {status}");
    bin_dir.join("examples").join(name)
}

/// Log lines of a child process, collected by a reader thread.
struct Log {
    lines: Arc<Mutex<Vec<Value>>>,
    done: mpsc::Receiver<()>,
}

impl Log {
    fn read(stderr: std::process::ChildStderr) -> Log {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Not every line is ours to parse (a panic message, say); keep those as strings.
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(v);
            }
            let _ = tx.send(());
        });
        Log { lines, done }
    }

    /// Log lines whose message is `message`.
    fn with_message(&self, message: &str) -> Vec<Value> {
        self.lines.lock().unwrap().iter().filter(|l| l["message"] == message).cloned().collect()
    }

    fn dump(&self) -> String {
        self.lines.lock().unwrap().iter().map(|l| format!("{l}\n")).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_handlers_example_runs_each_signed_event_once_and_exits_cleanly() {
    let binary = example_binary("seed_handlers");
    let dir = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/library.toml");
    let mut child = Command::new(binary)
        .arg(config)
        .env("CONTACT_WEBHOOK_SECRET", "contact-secret")
        .env("STRIPE_WEBHOOK_SECRET", "stripe-secret")
        .env("HOOKGATE_LISTEN", "127.0.0.1:0")
        .env("HOOKGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("HOOKGATE_DATABASE_URL", format!("sqlite://{}", dir.path().join("hookgate.db").display()))
        .env("HOOKGATE_LOG", "info")
        .env_remove("HOOKGATE_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::read(child.stderr.take().unwrap());
    let started = eventually(Duration::from_secs(20), async || !log.with_message("hookgate ready").is_empty()).await;
    assert!(started, "the example did not start:\n{}", log.dump());
    let ready = &log.with_message("hookgate ready")[0];
    let ingest = ready["ingest"].as_str().unwrap().to_string();

    let client = reqwest::Client::new();
    let post = async |path: &str, secret: &str, body: &str| -> (u16, Value) {
        let resp = client
            .post(format!("http://{ingest}{path}"))
            .header("x-signature", hmac_hex(secret, body.as_bytes()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    };
    let contact = r#"{"id":"c_1","email":"ada@example.com","name":"Ada"}"#;
    let (status, first) = post("/events/contact_created", "contact-secret", contact).await;
    assert_eq!((status, first["status"].as_str()), (200, Some("queued")), "{first}");
    let event_id = first["event_id"].as_str().unwrap().to_string();
    // The sender retries: acknowledged, not delivered again.
    let (status, again) = post("/events/contact_created", "contact-secret", contact).await;
    assert_eq!((status, &again["status"], &again["event_id"]), (200, &Value::from("duplicate"), &first["event_id"]));
    // Signed with the other source's secret: refused before anything is stored.
    let (status, _) = post("/events/contact_created", "stripe-secret", r#"{"id":"c_2"}"#).await;
    assert_eq!(status, 401);
    let (status, payment) = post("/events/payment_succeeded", "stripe-secret", r#"{"amount":4200}"#).await;
    assert_eq!(status, 200, "{payment}");

    let handled =
        async || !log.with_message("contact created").is_empty() && !log.with_message("payment received").is_empty();
    assert!(eventually(Duration::from_secs(10), handled).await, "handlers did not run:\n{}", log.dump());
    // Let a wrongly repeated delivery show up before stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the example did not stop on SIGTERM:\n{}", log.dump());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    log.done.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "exit status {status}:\n{}", log.dump());

    let contacts = log.with_message("contact created");
    assert_eq!(contacts.len(), 1, "the contact handler ran once:\n{}", log.dump());
    assert_eq!(contacts[0]["event_id"], event_id.as_str());
    assert_eq!(contacts[0]["email"], "ada@example.com");
    assert_eq!(contacts[0]["attempt"], 1);
    let payments = log.with_message("payment received");
    assert_eq!(payments.len(), 1, "{}", log.dump());
    assert_eq!(payments[0]["event_id"], payment["event_id"]);
    assert_eq!(payments[0]["amount"], "4200");
}

#[derive(Debug, serde::Deserialize)]
struct Contact {
    email: String,
}

#[tokio::test]
async fn json_handler_gets_the_typed_payload_and_dead_letters_a_body_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new().fast_retries().rust("crm").hmac_source("s", &["crm"]).write(dir.path());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let gateway = Gateway::from_config_file(&config)
        .unwrap()
        .json_handler("crm", move |event: Event, contact: Contact| {
            s.lock().unwrap().push((event.id, contact.email));
            async { Ok(()) }
        })
        .build()
        .await
        .unwrap();
    let ingest = gateway.ingest_addr().unwrap();
    let store = gateway.store();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(gateway.run_until(async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let post = async |body: &str| -> String {
        let resp = client
            .post(format!("http://{ingest}/hook/s"))
            .header("x-signature", hmac_hex(SECRET, body.as_bytes()))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_string()
    };
    let bad = post(r#"{"name":"no email"}"#).await;
    let good = post(r#"{"email":"ada@example.com"}"#).await;
    let delivery = async |id: &str| store.get_event(id).await.unwrap().unwrap().deliveries.remove(0);
    let finished = async || delivery(&bad).await.status == "dead" && delivery(&good).await.status == "succeeded";
    assert!(eventually(Duration::from_secs(10), finished).await, "{:#?}", delivery(&bad).await);

    let dead = delivery(&bad).await;
    assert_eq!(dead.attempts, 1, "a body that does not parse is not retried");
    let error = dead.last_error.unwrap();
    assert!(error.contains("Contact") && error.contains("missing field `email`"), "{error}");
    assert_eq!(*seen.lock().unwrap(), vec![(good, "ada@example.com".to_string())]);

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn build_lists_every_mismatch_between_handlers_and_rust_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .rust("crm")
        .rust("billing")
        .set("handler", "charge")
        .hmac_source("s", &["crm", "billing"])
        .write(dir.path());
    let ok = |_: Event| async { Ok(()) };
    let err = Gateway::from_config_file(&config)
        .unwrap()
        .handler("crm", ok)
        .handler("crm", ok)
        .handler("chrage", ok)
        .build()
        .await
        .unwrap_err();
    let hookgate::Error::Handlers(mismatch) = &err else { panic!("{err:?}") };
    assert_eq!(
        mismatch.problems(),
        [
            HandlerProblem::Duplicate { handler: "crm".into() },
            HandlerProblem::Missing { destination: "billing".into(), handler: "charge".into() },
            HandlerProblem::Unused { handler: "chrage".into() },
        ]
    );
    // The message names the destination, the handler it needs, and what is registered.
    let message = err.to_string();
    for want in [
        r#"destination "billing" has type = "rust" but no handler named "charge" is registered"#,
        r#"handler "chrage" is registered but no type = "rust" destination uses it"#,
        r#"registered handlers: ["chrage", "crm"]"#,
        r#""billing" (handler "charge")"#,
    ] {
        assert!(message.contains(want), "{want:?} not in:\n{message}");
    }
    // Nothing was opened: the database file does not exist.
    assert!(!dir.path().join("hookgate.db").exists());

    // A config problem is reported as one, with its key.
    let err = Gateway::from_toml("[[destinations]]\nname = \"x\"\ntype = \"rust\"\nurl = \"http://a\"\n", dir.path())
        .unwrap_err();
    assert!(matches!(err, hookgate::Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("destinations[0] (x).url: not used by type = \"rust\""), "{err}");
}
