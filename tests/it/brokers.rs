//! Broker destinations on the real brokers on loopback (CONTRACT §10, docs/BROKERS.md): what a
//! consumer using the broker's official Python client sees (tests/it/brokers.py), the brokers' own
//! failure modes as failed attempts that are retried, and a broker that goes away and comes back
//! (behind a proxy the test stops; the real brokers are never stopped) losing nothing.
//! Addresses come from HOOKGATE_TEST_{NATS,RABBITMQ,REDIS,MQTT}_URL, set by scripts/test.sh;
//! a missing one fails the test, never skips it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::providers::python;
use crate::support::tcp_proxy::{TcpProxy, addr_of};
use crate::support::{TestApp, TestConfig, eventually, rule};

fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: scripts/test.sh sets it to the broker on loopback, and broker tests never skip")
    })
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/brokers.py")
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs the consumer to the end; the messages it printed.
async fn consume(args: &[&str]) -> Vec<Value> {
    let out = tokio::process::Command::new(python()).arg(script()).args(args).output().await.unwrap();
    assert!(out.status.success(), "brokers.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    lines(&out.stdout)
}

/// An MQTT subscriber, started and subscribed (it printed "ready").
async fn mqtt_subscriber(url: &str, topic: &str, count: usize) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(python())
        .arg(script())
        .args(["mqtt", url, topic, &count.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).await.unwrap();
    assert_eq!(first.trim(), "ready", "the MQTT subscriber did not subscribe");
    child
}

/// A source `orders` delivering to one broker destination `bus`, retried fast and without end
/// (and no circuit breaker), so a test sees failed attempts and then the success.
fn config(kind: &str, url: &str, key: &str, value: &str) -> TestConfig {
    TestConfig::new()
        .fast_retries()
        .delivery("max_attempts", 10_000)
        .delivery("circuit_breaker", false)
        .broker("bus", kind, url)
        .set(key, value)
        .set("timeout", "2s")
        .hmac_source("orders", &["bus"])
}

async fn post(app: &TestApp, source: &str, body: &str) -> String {
    let (status, json) = app.post_signed(source, body.as_bytes()).await;
    assert_eq!(status, 200, "{json}");
    json["event_id"].as_str().unwrap().to_string()
}

async fn event(app: &TestApp, id: &str) -> Value {
    let resp = app.client.get(app.admin_url(&format!("/api/events/{id}"))).send().await.unwrap();
    resp.json().await.unwrap()
}

/// Waits until the delivery of `id` to `destination` satisfies `check`; returns it.
async fn delivery_until(app: &TestApp, id: &str, destination: &str, check: impl Fn(&Value) -> bool) -> Value {
    let find = async || {
        let ev = event(app, id).await;
        ev["deliveries"].as_array().unwrap().iter().find(|d| d["destination"] == destination).cloned().unwrap()
    };
    let ok = eventually(Duration::from_secs(20), async || check(&find().await)).await;
    let d = find().await;
    assert!(ok, "delivery of {id} to {destination}: {d:#}");
    d
}

fn succeeded(d: &Value) -> bool {
    d["status"] == "succeeded"
}

/// Failed at least `n` times, not yet delivered.
fn failed(n: u64) -> impl Fn(&Value) -> bool {
    move |d| d["status"] != "succeeded" && d["attempt_log"].as_array().is_some_and(|l| l.len() as u64 >= n)
}

fn last_error(d: &Value) -> String {
    d["attempt_log"].as_array().unwrap().iter().rev().find_map(|a| a["error"].as_str()).unwrap_or("").to_string()
}

/// The headers an http destination sends, as the consumer saw them.
fn assert_meta(headers: &Value, id: &str) {
    assert_eq!(headers["webhook-id"], id, "{headers}");
    assert_eq!(headers["x-hookgate-source"], "orders", "{headers}");
    assert!(headers["x-hookgate-attempt"].as_str().unwrap().parse::<u32>().unwrap() >= 1, "{headers}");
    assert!(headers["webhook-timestamp"].as_str().unwrap().parse::<u64>().unwrap() > 1_700_000_000, "{headers}");
}

#[tokio::test]
async fn nats_publishes_to_jetstream_and_a_subject_without_a_stream_is_retried() {
    use async_nats::jetstream::{self, stream};
    let url = service("HOOKGATE_TEST_NATS_URL");
    let u = unique();
    let app = TestApp::spawn_config(&config("nats", &url, "subject", &format!("hookgate.t{u}.{{source}}"))).await;
    let id = post(&app, "orders", r#"{"id":1}"#).await;
    // No stream takes the subject yet: failed attempts, retried.
    let d = delivery_until(&app, &id, "bus", failed(2)).await;
    assert!(last_error(&d).contains("no JetStream stream takes subject"), "{d:#}");

    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    let name = format!("HOOKGATE_T{u}");
    let subjects = vec![format!("hookgate.t{u}.>")];
    let mut s = js.create_stream(stream::Config { name: name.clone(), subjects, ..Default::default() }).await.unwrap();
    delivery_until(&app, &id, "bus", succeeded).await;
    // A replay publishes again with the same Nats-Msg-Id: the stream acks it as a duplicate.
    let replay = app.client.post(app.admin_url(&format!("/api/events/{id}/replay"))).send().await.unwrap();
    assert_eq!(replay.status(), 200);
    let attempts = d["attempt_log"].as_array().unwrap().len();
    delivery_until(&app, &id, "bus", |d| succeeded(d) && d["attempt_log"].as_array().unwrap().len() > attempts + 1)
        .await;
    assert_eq!(s.info().await.unwrap().state.messages, 1, "the duplicate was not stored twice");

    let got = consume(&["nats", &url, &name, &format!("hookgate.t{u}.>"), "1"]).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["subject"], format!("hookgate.t{u}.orders"));
    assert_eq!(m["body"], r#"{"id":1}"#);
    assert_meta(&m["headers"], &id);
    assert_eq!(m["headers"]["Nats-Msg-Id"], format!("{id}:bus"));
    assert_eq!(m["headers"]["Content-Type"], "application/json");
    js.delete_stream(&name).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn rabbitmq_confirms_persistent_messages_and_an_unroutable_key_is_retried() {
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
    let url = service("HOOKGATE_TEST_RABBITMQ_URL");
    let u = unique();
    let queue = format!("hookgate-t{u}-orders");
    // The URL from the environment (url_env), as production keeps credentials out of the file.
    let config = TestConfig::new()
        .fast_retries()
        .delivery("max_attempts", 10_000)
        .delivery("circuit_breaker", false)
        .broker("bus", "rabbitmq", "in-the-environment")
        .set("url_env", "HOOKGATE_TEST_RABBITMQ_URL")
        .set("routing_key", format!("hookgate-t{u}-{{source}}"))
        .set("timeout", "2s")
        .hmac_source("orders", &["bus"]);
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    config.write(dir.path());
    let text = config.render().replace("url = \"in-the-environment\"\n", "");
    std::fs::write(dir.path().join("hookgate.toml"), text).unwrap();
    let app = TestApp::start_in(dir, Vec::new()).await;

    let id = post(&app, "orders", r#"{"id":2}"#).await;
    // No queue is bound to the routing key: the message comes back (mandatory), a failed attempt.
    let d = delivery_until(&app, &id, "bus", failed(2)).await;
    assert!(last_error(&d).contains("unroutable") && last_error(&d).contains("NO_ROUTE"), "{d:#}");

    let conn = lapin::Connection::connect(&url, Default::default()).await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.as_str().into(), options, Default::default()).await.unwrap();
    delivery_until(&app, &id, "bus", succeeded).await;

    let got = consume(&["rabbitmq", &url, &queue, "1"]).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!((m["routing_key"].as_str(), m["message_id"].as_str()), (Some(queue.as_str()), Some(id.as_str())));
    assert_eq!(m["delivery_mode"], 2, "persistent");
    assert_eq!(m["content_type"], "application/json");
    assert_eq!(m["body"], r#"{"id":2}"#);
    assert_meta(&m["headers"], &id);
    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn redis_adds_the_transformed_event_to_a_stream_capped_at_maxlen() {
    let url = service("HOOKGATE_TEST_REDIS_URL");
    let u = unique();
    let stream = format!("hookgate:t{u}:orders");
    let verify: toml::Table = toml::from_str(
        r#"scheme = "hmac-sha256"
           header = "X-Signature"
           secret_file = "secret.txt""#,
    )
    .unwrap();
    let transform = rule("bus", None, Some(r#"{order: .body.id, kind: "wrapped"}"#));
    let config = TestConfig::new()
        .broker("bus", "redis", &url)
        .set("stream", format!("hookgate:t{u}:{{source}}"))
        .set("maxlen", 2)
        .routed_source("orders", verify, vec![transform]);
    let app = TestApp::spawn_config(&config).await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let id = post(&app, "orders", &format!(r#"{{"id":{n}}}"#)).await;
        delivery_until(&app, &id, "bus", succeeded).await;
        ids.push(id);
    }
    let got = consume(&["redis", &url, &stream, "3"]).await;
    assert_eq!(got.len(), 2, "maxlen = 2 keeps the last two: {got:?}");
    for (m, (n, id)) in got.iter().zip([(2, &ids[1]), (3, &ids[2])]) {
        assert_eq!((m["event_id"].as_str(), m["source"].as_str()), (Some(id.as_str()), Some("orders")));
        assert_eq!(m["attempt"], "1");
        assert_eq!(m["content_type"], "application/json");
        let body: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"order": n, "kind": "wrapped"}), "the transform's output is sent");
    }
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL").arg(&stream).query_async(&mut conn).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn mqtt_publishes_at_qos_1_with_user_properties() {
    let url = service("HOOKGATE_TEST_MQTT_URL");
    let u = unique();
    let topic = format!("hookgate/t{u}/orders");
    let sub = mqtt_subscriber(&url, &topic, 1).await;
    let app = TestApp::spawn_config(&config("mqtt", &url, "topic", &format!("hookgate/t{u}/{{source}}"))).await;
    let id = post(&app, "orders", r#"{"id":4}"#).await;
    delivery_until(&app, &id, "bus", succeeded).await;
    let got = lines(&sub.wait_with_output().await.unwrap().stdout);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!((m["topic"].as_str(), m["qos"].as_u64()), (Some(topic.as_str()), Some(1)));
    assert_eq!(m["content_type"], "application/json");
    assert_eq!(m["body"], r#"{"id":4}"#);
    assert_meta(&m["headers"], &id);
    app.stop().await;
}

/// Every broker behind a proxy that is down at start, then up, then cut (every connection closed)
/// and up again: each event fails while its broker is away and arrives once it is back.
#[tokio::test]
async fn a_broker_that_is_away_gets_every_event_once_it_is_back() {
    use async_nats::jetstream::{self, stream};
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
    let urls = ["NATS", "RABBITMQ", "REDIS", "MQTT"].map(|b| service(&format!("HOOKGATE_TEST_{b}_URL")));
    let [nats, amqp, redis_url, mqtt] = &urls;
    let mut proxies = urls.clone().map(|u| TcpProxy::stopped(addr_of(&u)));
    let u = unique();
    let (subject, queue, stream_key, topic) =
        (format!("hookgate.t{u}.orders"), format!("hookgate-t{u}"), format!("hookgate:t{u}"), format!("hookgate/t{u}"));

    let js = jetstream::new(async_nats::connect(nats).await.unwrap());
    let name = format!("HOOKGATE_T{u}");
    let mut s = js
        .create_stream(stream::Config { name: name.clone(), subjects: vec![subject.clone()], ..Default::default() })
        .await
        .unwrap();
    let amqp_conn = lapin::Connection::connect(amqp, Default::default()).await.unwrap();
    let channel = amqp_conn.create_channel().await.unwrap();
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.as_str().into(), options, Default::default()).await.unwrap();
    let sub = mqtt_subscriber(mqtt, &topic, 2).await;

    let targets = [
        ("nats", "subject", &subject),
        ("rabbitmq", "routing_key", &queue),
        ("redis", "stream", &stream_key),
        ("mqtt", "topic", &topic),
    ];
    let mut config =
        TestConfig::new().fast_retries().delivery("max_attempts", 10_000).delivery("circuit_breaker", false);
    for ((kind, key, value), proxy) in targets.iter().zip(&proxies) {
        let url = proxy.url(&urls[targets.iter().position(|t| t.0 == *kind).unwrap()]);
        config = config.broker(kind, kind, &url).set(key, value.as_str()).set("timeout", "1s");
    }
    let app = TestApp::spawn_config(&config.hmac_source("orders", &["nats", "rabbitmq", "redis", "mqtt"])).await;
    let kinds = targets.map(|t| t.0);

    // Down at start: connections refused, failed attempts.
    let a = post(&app, "orders", r#"{"id":"a"}"#).await;
    for kind in kinds {
        delivery_until(&app, &a, kind, failed(1)).await;
    }
    for p in &mut proxies {
        p.start().await;
    }
    for kind in kinds {
        delivery_until(&app, &a, kind, succeeded).await;
    }
    // Stopped mid-run: every connection cut.
    for p in &mut proxies {
        p.stop().await;
    }
    let b = post(&app, "orders", r#"{"id":"b"}"#).await;
    for kind in kinds {
        let d = delivery_until(&app, &b, kind, failed(1)).await;
        assert!(!last_error(&d).is_empty(), "{d:#}");
    }
    for p in &mut proxies {
        p.start().await;
    }
    for kind in kinds {
        delivery_until(&app, &b, kind, succeeded).await;
    }

    // Each broker has both events (RabbitMQ, Redis and MQTT may have one twice: at least once).
    let ids = |got: &[Value], field: &dyn Fn(&Value) -> String| {
        let mut ids: Vec<String> = got.iter().map(field).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    let nats_got = consume(&["nats", nats, &name, &subject, "2"]).await;
    assert_eq!(ids(&nats_got, &|m| m["headers"]["webhook-id"].as_str().unwrap().into()), want);
    assert_eq!(s.info().await.unwrap().state.messages, 2, "Nats-Msg-Id kept retries out of the stream");
    let amqp_got = consume(&["rabbitmq", amqp, &queue, "2"]).await;
    assert_eq!(ids(&amqp_got, &|m| m["message_id"].as_str().unwrap().into()), want);
    let redis_got = consume(&["redis", redis_url, &stream_key, "2"]).await;
    assert_eq!(ids(&redis_got, &|m| m["event_id"].as_str().unwrap().into()), want);
    let mqtt_got = lines(&sub.wait_with_output().await.unwrap().stdout);
    assert_eq!(ids(&mqtt_got, &|m| m["headers"]["webhook-id"].as_str().unwrap().into()), want);

    app.stop().await;
    js.delete_stream(&name).await.unwrap();
    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    let mut conn = redis::Client::open(redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL").arg(&stream_key).query_async(&mut conn).await.unwrap();
}

/// `hookgate check` names each broker key's problem, and says kafka is not in this build.
#[test]
fn check_names_broker_problems() {
    let cases: &[(&str, &str, &str)] = &[
        ("type = \"kafka\"\nurl = \"kafka://x\"", "destinations[0] (bus).type", "kafka is not supported in this build"),
        (
            "type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"hooks.{src}\"",
            "destinations[0] (bus).subject",
            "only {source} and {destination}",
        ),
        (
            "type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"hooks.>\"",
            "destinations[0] (bus).subject",
            "without wildcards",
        ),
        ("type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"", "destinations[0] (bus).subject", "missing"),
        (
            "type = \"mqtt\"\nurl = \"http://u:hunter2@127.0.0.1\"\ntopic = \"t\"",
            "destinations[0] (bus).url",
            "must be a mqtt:// or mqtts:// URL",
        ),
        (
            "type = \"redis\"\nurl_env = \"HOOKGATE_TEST_NO_SUCH_URL\"\nstream = \"s\"",
            "destinations[0] (bus).url_env",
            "HOOKGATE_TEST_NO_SUCH_URL is not set",
        ),
        ("type = \"redis\"\nstream = \"s\"", "destinations[0] (bus).url", "exactly one of url or url_env"),
        (
            "type = \"rabbitmq\"\nurl = \"amqp://127.0.0.1\"\nrouting_key = \"k\"\ntopic = \"t\"",
            "destinations[0] (bus).topic",
            "not used by type = \"rabbitmq\"",
        ),
        (
            "type = \"http\"\nurl = \"http://127.0.0.1/\"\nsubject = \"s\"",
            "destinations[0] (bus).subject",
            "not used by type = \"http\"",
        ),
    ];
    for (table, key, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[[sources]]\nname = \"orders\"\npath = \"/o\"\nverify = {{ scheme = \"none\", insecure = true }}\n\
             deliver_to = [\"bus\"]\n\n[[destinations]]\nname = \"bus\"\n{table}\n"
        );
        std::fs::write(dir.path().join("hookgate.toml"), &text).unwrap();
        let out = std::process::Command::new(crate::support::binary())
            .args(["check", "--config"])
            .arg(dir.path().join("hookgate.toml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{table}: {stderr}");
        assert!(
            stderr.contains(&format!("{key}: ")) && stderr.contains(reason),
            "{table}\nwant {key}: {reason}\ngot {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "a URL's password is never shown: {stderr}");
    }
}

/// A template whose output the broker would refuse for one of the sources that deliver to it.
#[test]
fn check_renders_a_template_for_every_source_that_uses_it() {
    let text = "[[sources]]\nname = \"a..b\"\npath = \"/o\"\nverify = { scheme = \"none\", insecure = true }\n\
                deliver_to = [\"bus\"]\n\n[[destinations]]\nname = \"bus\"\ntype = \"mqtt\"\n\
                url = \"mqtt://127.0.0.1:1883\"\ntopic = \"hooks/{source}\"\n";
    let dir = tempfile::tempdir().unwrap();
    let load = |text: &str| hookgate::Config::from_toml(text, std::path::Path::new("t.toml"), dir.path());
    assert!(load(text).is_ok(), "an MQTT topic may have \"..\"");
    let nats = text
        .replace("type = \"mqtt\"", "type = \"nats\"")
        .replace("mqtt://", "nats://")
        .replace("topic = \"hooks/{source}\"", "subject = \"hooks.{source}\"");
    let e = load(&nats).unwrap_err().to_string();
    assert!(e.contains("destinations[0] (bus).subject: for source \"a..b\"") && e.contains("empty token"), "{e}");
}
