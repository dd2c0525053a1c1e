//! OpenTelemetry traces (CONTRACT §11): a real `hookgate serve` exporting over OTLP/HTTP to a small
//! collector in the test (POST /v1/traces, protobuf, decoded with opentelemetry-proto), and a real
//! destination that records the `traceparent` it gets. One trace per event, from ingest through every
//! attempt; a sender's trace continued; off by default and then nothing sent or added.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use nix::sys::signal::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use crate::support::node::Node;
use crate::support::pg::fresh_database;
use crate::support::{TestConfig, TestReceiver, eventually, signed_post};

/// One span as the collector got it: ids in hex, attributes as text.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent: String,
    attributes: HashMap<String, String>,
    service: String,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map(String::as_str).unwrap_or("")
    }
}

/// A collector on port 0: every span it was sent, and how many export requests it got.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<usize>>,
    addr: String,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = Collector { addr: listener.local_addr().unwrap().to_string(), ..Default::default() };
        let app = Router::new().route("/v1/traces", post(export)).with_state(c.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        c
    }

    /// The base URL, as `[telemetry] otlp_endpoint` takes it.
    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    fn in_trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect()
    }

    fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

async fn export(State(c): State<Collector>, body: Bytes) -> Vec<u8> {
    *c.requests.lock().unwrap() += 1;
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let mut spans = c.spans.lock().unwrap();
    for rs in request.resource_spans {
        let resource = rs.resource.unwrap_or_default();
        let service = resource.attributes.iter().find(|kv| kv.key == "service.name").map(|kv| text(kv.value.as_ref()));
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Span {
                    name: s.name,
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    attributes: s.attributes.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect(),
                    service: service.clone().unwrap_or_default(),
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

/// `traceparent` → (trace id, span id).
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {traceparent:?}");
    assert_eq!((parts[0], parts[3]), ("00", "01"), "version 00, sampled: {traceparent:?}");
    (parts[1].to_string(), parts[2].to_string())
}

/// A config that retries fast and exports to `collector` (when given).
fn config(rx: &TestReceiver, collector: Option<&Collector>) -> TestConfig {
    let config = TestConfig::new().fast_retries().http("crm", &rx.url()).hmac_source("s", &["crm"]);
    match collector {
        Some(c) => config.telemetry("otlp_endpoint", c.endpoint()).telemetry("service_name", "hookgate-test"),
        None => config,
    }
}

/// Exports every 100 ms, so spans arrive while the process runs.
const SOON: (&str, &str) = ("OTEL_BSP_SCHEDULE_DELAY", "100");

const SENDER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_per_event_from_ingest_through_every_attempt() {
    let collector = Collector::start().await;
    // The first attempt fails, the second succeeds: two attempt spans.
    let rx = TestReceiver::scripted(200, &[500]).await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::spawn(&config(&rx, Some(&collector)).write(dir.path()), "all", &[SOON]);
    let client = reqwest::Client::new();

    // A sender that traces: its traceparent is continued.
    let body = r#"{"secret_field":"do-not-export"}"#;
    let resp = signed_post(&client, &node.url("/hook/s"), body)
        .header("traceparent", format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let event_id = resp.json::<serde_json::Value>().await.unwrap()["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(20), async || rx.count() == 2).await, "a failed attempt, then a delivery");

    // The destination got the attempt's context, in the sender's trace, a new span each attempt.
    let sent: Vec<(String, String)> = rx.received().iter().map(|r| ids(&r.header("traceparent"))).collect();
    assert!(sent.iter().all(|(t, _)| t == SENDER_TRACE), "the sender's trace reaches the destination: {sent:?}");
    assert_ne!(sent[0].1, sent[1].1, "each attempt is a span of its own");

    assert!(
        eventually(Duration::from_secs(20), async || collector.in_trace(SENDER_TRACE).len() == 3).await,
        "ingest and two attempts exported: {:?}",
        collector.spans()
    );
    let spans = collector.in_trace(SENDER_TRACE);
    let ingest: Vec<&Span> = spans.iter().filter(|s| s.name == "ingest").collect();
    assert_eq!(ingest.len(), 1, "{spans:?}");
    let ingest = ingest[0];
    assert_eq!(ingest.parent, SENDER_SPAN, "the ingest span is the sender's span's child");
    assert_eq!(ingest.service, "hookgate-test");
    assert_eq!(ingest.attr("hookgate.source"), "s");
    assert_eq!(ingest.attr("hookgate.event_id"), event_id);
    assert_eq!(ingest.attr("hookgate.status"), "queued");
    assert_eq!(ingest.attr("http.response.status_code"), "200");
    let mut attempts: Vec<&Span> = spans.iter().filter(|s| s.name == "attempt").collect();
    attempts.sort_by_key(|s| s.attr("hookgate.attempt").to_string());
    assert_eq!(attempts.len(), 2, "{spans:?}");
    for (i, (a, (_, span_id))) in attempts.iter().zip(&sent).enumerate() {
        assert_eq!(a.parent, ingest.span_id, "attempt {i} is a child of the ingest span");
        assert_eq!(&a.span_id, span_id, "attempt {i}: the destination got this span's context");
        assert_eq!(a.attr("hookgate.event_id"), event_id);
        assert_eq!(a.attr("hookgate.destination"), "crm");
        assert_eq!(a.attr("hookgate.attempt"), (i + 1).to_string());
    }
    assert_eq!((attempts[0].attr("hookgate.outcome"), attempts[0].attr("hookgate.next")), ("failure", "retry"));
    assert_eq!(attempts[0].attr("http.response.status_code"), "500");
    assert_eq!((attempts[1].attr("hookgate.outcome"), attempts[1].attr("hookgate.next")), ("success", "succeeded"));
    for s in collector.spans() {
        assert!(
            s.attributes.values().all(|v| !v.contains("do-not-export") && !v.contains(crate::support::app::SECRET)),
            "no payload or secret in attributes: {s:?}"
        );
    }

    // A sender without a trace: the event starts one of its own.
    let resp = signed_post(&client, &node.url("/hook/s"), r#"{"n":2}"#).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(eventually(Duration::from_secs(20), async || rx.count() == 3).await, "delivered");
    let (trace, span) = ids(&rx.received()[2].header("traceparent"));
    assert_ne!(trace, SENDER_TRACE);
    assert!(
        eventually(Duration::from_secs(20), async || collector.in_trace(&trace).len() == 2).await,
        "{:?}",
        collector.spans()
    );
    let spans = collector.in_trace(&trace);
    let ingest = spans.iter().find(|s| s.name == "ingest").expect("an ingest span");
    let attempt = spans.iter().find(|s| s.name == "attempt").expect("an attempt span");
    assert_eq!(ingest.parent, "", "a root span");
    assert_eq!((attempt.parent.as_str(), attempt.span_id.as_str()), (ingest.span_id.as_str(), span.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_are_sent_at_a_graceful_shutdown() {
    let collector = Collector::start().await;
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    // Batches every minute: only the shutdown's flush sends anything within this test.
    let mut node =
        Node::spawn(&config(&rx, Some(&collector)).write(dir.path()), "all", &[("OTEL_BSP_SCHEDULE_DELAY", "60000")]);
    let resp = signed_post(&reqwest::Client::new(), &node.url("/hook/s"), "{}").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(eventually(Duration::from_secs(20), async || rx.count() == 1).await, "delivered");
    let (trace, _) = ids(&rx.received()[0].header("traceparent"));
    node.signal(Signal::SIGTERM);
    assert!(node.exited(Duration::from_secs(30)).await.expect("exits after SIGTERM").success());
    let names: Vec<String> = collector.in_trace(&trace).into_iter().map(|s| s.name).collect();
    assert_eq!(names.len(), 2, "ingest and attempt flushed at shutdown: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_no_traceparent_added() {
    let collector = Collector::start().await;
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    // The SDK's own variable points at the collector: without `otlp_endpoint`, hookgate ignores it.
    let endpoint = collector.endpoint();
    let env = [SOON, ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let mut node = Node::spawn(&config(&rx, None).write(dir.path()), "all", &env);
    let resp = signed_post(&reqwest::Client::new(), &node.url("/hook/s"), "{}")
        .header("traceparent", format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(eventually(Duration::from_secs(20), async || rx.count() == 1).await, "delivered");
    assert_eq!(rx.received()[0].header("traceparent"), "", "no trace context passed on when traces are off");
    node.signal(Signal::SIGTERM);
    assert!(node.exited(Duration::from_secs(30)).await.expect("exits after SIGTERM").success());
    assert_eq!(collector.requests(), 0, "nothing exported, not even at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_fails_no_request_and_is_logged_once() {
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::process::free_port();
    let config = TestConfig::new()
        .http("crm", &rx.url())
        .hmac_source("s", &["crm"])
        .telemetry("otlp_endpoint", format!("http://127.0.0.1:{port}"));
    let mut node = Node::spawn(&config.write(dir.path()), "all", &[("OTEL_BSP_SCHEDULE_DELAY", "20")]);
    let client = reqwest::Client::new();
    let failed = "trace export failed; spans are dropped until the collector answers (requests are not affected)";
    for i in 0..5 {
        let resp = signed_post(&client, &node.url("/hook/s"), format!(r#"{{"n":{i}}}"#)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "event {i} stored");
        assert!(eventually(Duration::from_secs(20), async || rx.count() == i + 1).await, "event {i} delivered");
        // Each event's spans in a batch of their own (exported every 20 ms).
        assert!(eventually(Duration::from_secs(20), async || node.count_logged(failed) == 1).await, "{}", node.log());
    }
    node.signal(Signal::SIGTERM);
    assert!(node.exited(Duration::from_secs(30)).await.expect("exits after SIGTERM").success());
    assert_eq!(node.count_logged(failed), 1, "one line for the whole outage, the last flush included");
}

/// An ingest node and a worker node on one PostgreSQL database: the attempt, made by the other
/// process, is a span of the trace the ingest node started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_on_another_node_joins_the_events_trace() {
    let Some(database) = fresh_database().await else { return };
    let collector = Collector::start().await;
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(&rx, Some(&collector)).storage("pool_size", 4).write(dir.path());
    let env = [SOON, ("HOOKGATE_DATABASE_URL", database.as_str())];
    let ingest = Node::spawn(&path, "ingest", &env);
    let _worker = Node::spawn(&path, "worker", &env);
    let resp = signed_post(&reqwest::Client::new(), &ingest.url("/hook/s"), "{}")
        .header("traceparent", format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(eventually(Duration::from_secs(20), async || rx.count() == 1).await, "delivered by the worker");
    assert!(
        eventually(Duration::from_secs(20), async || collector.in_trace(SENDER_TRACE).len() == 2).await,
        "{:?}",
        collector.spans()
    );
    let spans = collector.in_trace(SENDER_TRACE);
    let ingest_span = spans.iter().find(|s| s.name == "ingest").expect("from the ingest node");
    let attempt = spans.iter().find(|s| s.name == "attempt").expect("from the worker node");
    assert_eq!(attempt.parent, ingest_span.span_id);
    assert_eq!(ids(&rx.received()[0].header("traceparent")), (SENDER_TRACE.to_string(), attempt.span_id.clone()));
}
