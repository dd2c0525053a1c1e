//! Delivery (CONTRACT §4): http and exec destinations, retries with backoff, dead letters,
//! Standard Webhooks signing, Rust handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hookgate::{Handler, HandlerError};

use crate::support::app::hmac_source;
use crate::support::{TestApp, TestReceiver, eventually};

const FAST: &str = "[delivery]\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"\n";
const SIGNING_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn http_dest(name: &str, url: &str, extra: &str) -> String {
    format!("[[destinations]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{url}\"\ntimeout = \"2s\"\n{extra}\n")
}

async fn event(app: &TestApp, id: &str) -> hookgate::store::EventDetail {
    app.store.get_event(id).await.unwrap().expect("event stored")
}

#[tokio::test]
async fn delivers_the_original_body_with_standard_webhooks_headers() {
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("signing.txt");
    std::fs::write(&key_file, SIGNING_KEY).unwrap();
    let sign = format!("sign = {{ secret_file = {:?} }}", key_file.display().to_string());
    let app =
        TestApp::spawn(&format!("{FAST}{}{}", http_dest("rx", &rx.url(), &sign), hmac_source("s", &["rx"]))).await;
    let body = br#"{"id":"evt_1","amount":42}"#;
    let (status, json) = app.post_signed("s", body).await;
    assert_eq!(status, 200);
    assert!(eventually(Duration::from_secs(5), async || rx.count() == 1).await);
    let got = &rx.received()[0];
    assert_eq!(&got.body[..], body);
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("webhook-id"), json["event_id"].as_str().unwrap());
    assert_eq!(got.header("x-hookgate-source"), "s");
    assert_eq!(got.header("x-hookgate-attempt"), "1");
    // The official Standard Webhooks library accepts what we signed.
    let wh = standardwebhooks::Webhook::new(SIGNING_KEY).unwrap();
    wh.verify(&got.body, &got.headers).expect("signature verifies with standardwebhooks");
    let ev = event(&app, json["event_id"].as_str().unwrap()).await;
    assert!(
        eventually(Duration::from_secs(5), async || event(&app, &ev.summary.id).await.summary.status == "succeeded")
            .await
    );
}

#[tokio::test]
async fn failing_receiver_is_retried_with_the_same_webhook_id() {
    let rx = TestReceiver::scripted(200, &[500, 503, 502]).await;
    let app = TestApp::spawn(&format!("{FAST}{}{}", http_dest("rx", &rx.url(), ""), hmac_source("s", &["rx"]))).await;
    let (_, json) = app.post_signed("s", b"retry me").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    let ok = eventually(Duration::from_secs(10), async || event(&app, &id).await.summary.status == "succeeded").await;
    assert!(ok, "{:#?} {}", event(&app, &id).await.deliveries, rx.count());
    let got = rx.received();
    assert_eq!(got.len(), 4, "delivered on attempt 4");
    assert!(got.iter().all(|r| r.header("webhook-id") == id));
    let attempts: Vec<String> = got.iter().map(|r| r.header("x-hookgate-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);
    let d = &event(&app, &id).await.deliveries[0];
    assert_eq!(d.attempt_log.len(), 4);
    assert_eq!(d.attempt_log[0].status_code, Some(500));
    assert!(d.attempt_log[0].error.as_deref().unwrap().contains("receiver says hi"), "response excerpt kept");
    assert_eq!(d.attempt_log[3].outcome, "success");
}

#[tokio::test]
async fn always_failing_goes_dead_after_exactly_max_attempts() {
    let rx = TestReceiver::start(500).await;
    let dest = http_dest("rx", &rx.url(), "max_attempts = 3");
    let app = TestApp::spawn(&format!("{FAST}{dest}{}", hmac_source("s", &["rx"]))).await;
    let (_, json) = app.post_signed("s", b"doomed").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(10), async || event(&app, &id).await.summary.status == "dead").await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 3);
    let d = &event(&app, &id).await.deliveries[0];
    assert_eq!((d.status.as_str(), d.attempts, d.attempt_log.len()), ("dead", 3, 3));
}

#[tokio::test]
async fn unreachable_destination_is_a_failed_attempt() {
    let dest = http_dest("down", "http://127.0.0.1:9/nothing", "max_attempts = 2");
    let app = TestApp::spawn(&format!("{FAST}{dest}{}", hmac_source("s", &["down"]))).await;
    let (_, json) = app.post_signed("s", b"x").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(10), async || event(&app, &id).await.summary.status == "dead").await);
    let d = &event(&app, &id).await.deliveries[0];
    assert!(d.last_error.as_deref().unwrap().contains("connection"), "{:?}", d.last_error);
}

#[tokio::test]
async fn exec_destination_gets_the_body_on_stdin_and_facts_in_env() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = dir.path().join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat > {out}.body\necho \"$HOOKGATE_EVENT_ID $HOOKGATE_SOURCE $HOOKGATE_ATTEMPT $HOOKGATE_CONTENT_TYPE $1\" > {out}.env\n",
            out = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dest = format!(
        "[[destinations]]\nname = \"cmd\"\ntype = \"exec\"\ncommand = [{:?}, \"--flag\"]\n",
        script.display().to_string()
    );
    let app = TestApp::spawn(&format!("{FAST}{dest}{}", hmac_source("s", &["cmd"]))).await;
    let (_, json) = app.post_signed("s", br#"{"x":1}"#).await;
    let id = json["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(5), async || event(&app, &id).await.summary.status == "succeeded").await);
    assert_eq!(std::fs::read(format!("{}.body", out.display())).unwrap(), br#"{"x":1}"#);
    let env = std::fs::read_to_string(format!("{}.env", out.display())).unwrap();
    assert_eq!(env.trim(), format!("{id} s 1 application/json --flag"));
}

#[tokio::test]
async fn exec_runs_in_the_config_directory_without_hookgates_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/record.sh"), "pwd > seen-dir.txt\nenv > seen-env.txt\n").unwrap();
    // A relative argument, resolved against the config's directory (CONTRACT §6).
    let body = "[[destinations]]\nname = \"cmd\"\ntype = \"exec\"\ncommand = [\"sh\", \"scripts/record.sh\"]\n\n\
        [[sources]]\nname = \"s\"\npath = \"/hook/s\"\n\
        verify = { scheme = \"hmac-sha256\", secret_env = \"HG_TEST_SOURCE_SECRET\" }\ndeliver_to = [\"cmd\"]\n";
    let config = crate::support::app::write_config(dir.path(), "", body);
    // The process runs from the crate's directory, not the config's.
    let node = crate::support::node::Node::spawn(
        &config,
        "all",
        &[
            ("HG_TEST_SOURCE_SECRET", crate::support::app::SECRET),
            ("HOOKGATE_ADMIN_TOKEN", "admin-token-value"),
            ("HG_TEST_VISIBLE", "passed-on"),
        ],
    );
    let body = br#"{"id":"evt_exec_env"}"#;
    let resp = reqwest::Client::new()
        .post(node.url("/hook/s"))
        .header("x-signature", crate::support::hmac_hex(crate::support::app::SECRET, body))
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let env_file = dir.path().join("seen-env.txt");
    assert!(eventually(Duration::from_secs(10), async || env_file.exists()).await, "{}", node.log());
    assert!(
        eventually(Duration::from_secs(5), async || std::fs::read_to_string(&env_file)
            .is_ok_and(|e| e.contains("HOOKGATE_EVENT_ID=")))
        .await
    );
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains("HG_TEST_VISIBLE=passed-on"), "{env}");
    assert!(!env.contains("HG_TEST_SOURCE_SECRET") && !env.contains(crate::support::app::SECRET), "{env}");
    assert!(!env.contains("HOOKGATE_ADMIN_TOKEN") && !env.contains("admin-token-value"), "{env}");
    let seen_dir = std::fs::read_to_string(dir.path().join("seen-dir.txt")).unwrap();
    assert_eq!(seen_dir.trim(), dir.path().canonicalize().unwrap().display().to_string());
}

#[tokio::test]
async fn exec_failure_and_timeout_are_recorded() {
    let dest = "[[destinations]]\nname = \"fails\"\ntype = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo boom >&2; exit 3\"]\nmax_attempts = 1\n\n\
                [[destinations]]\nname = \"hangs\"\ntype = \"exec\"\ncommand = [\"sh\", \"-c\", \"sleep 30\"]\ntimeout = \"300ms\"\nmax_attempts = 1\n";
    let app = TestApp::spawn(&format!("{FAST}{dest}{}", hmac_source("s", &["fails", "hangs"]))).await;
    let (_, json) = app.post_signed("s", b"x").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(10), async || event(&app, &id).await.summary.status == "dead"
            && event(&app, &id).await.deliveries.iter().all(|d| d.status == "dead"))
        .await
    );
    let ev = event(&app, &id).await;
    let fails = ev.deliveries.iter().find(|d| d.destination == "fails").unwrap();
    assert_eq!(fails.attempt_log[0].exit_code, Some(3));
    assert!(fails.attempt_log[0].error.as_deref().unwrap().contains("boom"));
    let hangs = ev.deliveries.iter().find(|d| d.destination == "hangs").unwrap();
    assert_eq!(hangs.attempt_log[0].outcome, "timeout");
    assert!(hangs.attempt_log[0].duration_ms < 5000);
}

/// A command that exits while something it started still holds its stderr: the attempt is
/// recorded at once, with the exit code and what the command wrote before it exited.
#[tokio::test]
async fn exec_exit_code_and_stderr_are_kept_when_a_background_child_holds_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let dest = format!(
        "[[destinations]]\nname = \"bg\"\ntype = \"exec\"\nmax_attempts = 1\n\
         command = [\"sh\", \"-c\", \"echo boom >&2; sleep 60 & echo $! > {}; exit 3\"]\n",
        pid_file.display()
    );
    let app = TestApp::spawn(&format!("{FAST}{dest}{}", hmac_source("s", &["bg"]))).await;
    let (_, json) = app.post_signed("s", b"x").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(30), async || event(&app, &id).await.summary.status == "dead").await);
    // Recorded while the background child still runs (it sleeps a minute), not when it ends.
    let pid = nix::unistd::Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap());
    let alive = nix::sys::signal::kill(pid, None).is_ok();
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    assert!(alive, "the attempt was recorded only once the background child had ended");
    let attempt = &event(&app, &id).await.deliveries[0].attempt_log[0];
    assert_eq!(attempt.exit_code, Some(3));
    assert!(attempt.error.as_deref().unwrap_or("").contains("boom"), "{attempt:?}");
}

#[tokio::test]
async fn rust_handler_fails_twice_then_succeeds_and_a_panic_is_a_failed_attempt() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let flaky = Handler::new(move |ev: hookgate::Event| {
        let c = c.clone();
        async move {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= 3 {
                assert_eq!(ev.attempt, n, "attempt numbers count up");
            }
            if n < 3 { Err(HandlerError::retry(format!("not yet ({n})"))) } else { Ok(()) }
        }
    });
    let panics = Handler::new(|_ev: hookgate::Event| async move {
        if true {
            panic!("handler bug");
        }
        Ok(())
    });
    let dests = "[[destinations]]\nname = \"flaky\"\ntype = \"rust\"\n\n[[destinations]]\nname = \"panics\"\ntype = \"rust\"\nmax_attempts = 2\n";
    let app = TestApp::spawn_with(
        "",
        &format!("{FAST}{dests}{}", hmac_source("s", &["flaky", "panics"])),
        vec![("flaky", flaky), ("panics", panics)],
    )
    .await;
    let (_, json) = app.post_signed("s", b"{}").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    let done = async || {
        let ev = event(&app, &id).await;
        ev.deliveries.iter().all(|d| d.status == "succeeded" || d.status == "dead")
    };
    assert!(eventually(Duration::from_secs(10), done).await);
    let ev = event(&app, &id).await;
    let flaky = ev.deliveries.iter().find(|d| d.destination == "flaky").unwrap();
    assert_eq!((flaky.status.as_str(), flaky.attempts), ("succeeded", 3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let panics = ev.deliveries.iter().find(|d| d.destination == "panics").unwrap();
    assert_eq!((panics.status.as_str(), panics.attempts), ("dead", 2));
    assert_eq!(panics.attempt_log[0].error.as_deref(), Some("handler panicked"));
    // The worker survived: a new event is still delivered.
    let (_, json) = app.post_signed("s", b"{\"again\":1}").await;
    let id2 = json["event_id"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(10), async || {
            event(&app, &id2).await.deliveries.iter().any(|d| d.destination == "flaky" && d.status == "succeeded")
        })
        .await
    );
}
