//! Hostile clients: oversized headers, JSON built to hurt the parser, wrong content types, more
//! connections than allowed, headers that never finish. Each gets a contract status (or a closed
//! connection), nothing panics, and well-behaved clients are still served.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::app::SECRET;
use crate::support::process::{free_port, serve_on_port, vm_hwm_kib};
use crate::support::{TestApp, TestConfig, TestReceiver, eventually, hmac_hex};

/// `config` plus a receiver `rx`, an hmac source `plain` and a source `json` deduplicated on `/id`.
async fn app(config: TestConfig) -> (TestApp, TestReceiver) {
    let rx = TestReceiver::start(200).await;
    let config = config
        .http("rx", &rx.url())
        .hmac_source("plain", &["rx"])
        .source("json", toml::toml! { scheme = "hmac-sha256" secret_file = "secret.txt" }, &["rx"])
        .set("dedupe", toml::toml! { json_pointer = "/id" });
    (TestApp::spawn_config(&config).await, rx)
}

/// Reads one HTTP/1.1 response (head and a Content-Length body) from `s`; None if the server
/// closed the connection (or reset it) before answering.
async fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.expect("answer in time") {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Some((status, text[end + 4..end + 4 + len].to_string()));
            }
        }
    }
}

/// Sends `request` on a new connection (ignoring a write cut short by the server) and reads the
/// answer's status line and headers; None if the connection closed without one.
async fn exchange(app: &TestApp, request: Vec<u8>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(app.ingest).await.unwrap();
    let (mut r, mut w) = s.split();
    let write = async {
        let _ = w.write_all(&request).await;
    };
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
            match tokio::time::timeout(Duration::from_secs(10), r.read(&mut chunk)).await.expect("answer in time") {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        text.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()).map(|code| (code, text.clone()))
    };
    tokio::join!(write, read).1
}

fn signed_post(path: &str, body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nx-signature: {}\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n",
        hmac_hex(SECRET, body),
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

#[tokio::test]
async fn oversized_headers_get_431_and_the_server_carries_on() {
    let (app, _rx) = app(TestConfig::new()).await;
    let many: String = (0..500).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("x-huge: {}\r\n", "a".repeat(1024 * 1024));
    let long_name = format!("x-{}: v\r\n", "n".repeat(512 * 1024));
    for (name, extra) in [("500 headers", many), ("one 1 MiB header", huge), ("a 512 KiB header name", long_name)] {
        let answer = exchange(&app, signed_post("/hook/plain", b"{}", &extra)).await;
        let status = answer.as_ref().map(|a| a.0);
        assert!(matches!(status, Some(431) | Some(400)), "case {name}: {answer:?}");
    }
    // Big but within the parser's limits: accepted, and the event is stored.
    let big_ok = format!("x-big: {}\r\n", "b".repeat(16 * 1024));
    let answer = exchange(&app, signed_post("/hook/plain", b"{\"big\":1}", &big_ok)).await;
    assert_eq!(answer.map(|a| a.0), Some(200));
    let (status, _) = app.post_signed("plain", b"still serving").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn json_built_to_hurt_the_parser_is_invalid_json() {
    let (app, _rx) = app(TestConfig::new()).await;
    let deep_arrays = "[".repeat(100_000).into_bytes();
    let deep_objects = r#"{"a":"#.repeat(50_000).into_bytes();
    let mut deep_closed = "[".repeat(20_000);
    deep_closed.push_str(&"]".repeat(20_000));
    let unterminated = br#"{"id":"evt_1","s":"never ends"#.to_vec();
    let trailing = br#"{"id":"evt_1"} trailing"#.to_vec();
    let lone_surrogate = br#"{"id":"\ud800"}"#.to_vec();
    for (name, body) in [
        ("100k [", deep_arrays),
        ("50k {\"a\":", deep_objects),
        ("20k nested, closed", deep_closed.into_bytes()),
        ("unterminated string", unterminated),
        ("trailing garbage", trailing),
    ] {
        let (status, json) = app.post_signed("json", &body).await;
        assert_eq!((status, json["error"].as_str()), (400, Some("invalid JSON")), "case: {name}");
    }
    // serde_json accepts a lone surrogate escape only as an error, never a panic.
    let (status, _) = app.post_signed("json", &lone_surrogate).await;
    assert!(status == 400 || status == 200, "lone surrogate: {status}");
    // Nesting below serde_json's limit (128) is fine, with the pointer found inside.
    let nested = format!(r#"{{"id":"evt_nested","x":{}1{}}}"#, "[".repeat(100), "]".repeat(100));
    let (status, json) = app.post_signed("json", nested.as_bytes()).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("queued")));
    let (status, _) = app.post_signed("plain", "[".repeat(100_000).as_bytes()).await;
    assert_eq!(status, 200, "a source without a JSON pointer never parses the body");
}

#[tokio::test]
async fn wrong_content_types_are_stored_and_forwarded_verbatim() {
    let (app, rx) = app(TestConfig::new()).await;
    let json_body = br#"{"id":"evt_ct"}"#;
    let sig = hmac_hex(SECRET, json_body);
    // JSON declared as text: the pointer source parses the body, not the header.
    let resp = app.post("/hook/json", json_body, &[("x-signature", &sig), ("content-type", "text/plain")]).await;
    assert_eq!(resp.status(), 200);
    // A form body on a JSON-pointer source is not JSON.
    let form = b"id=evt_form&x=1";
    let form_sig = hmac_hex(SECRET, form);
    let resp = app
        .post("/hook/json", form, &[("x-signature", &form_sig), ("content-type", "application/x-www-form-urlencoded")])
        .await;
    assert_eq!(resp.status(), 400);
    // Anything goes on a plain source; the content type travels with the event.
    for (i, ct) in ["application/octet-stream", "multipart/form-data; boundary=zzz", "", "x/\u{0}"].iter().enumerate() {
        let body = format!("body {i}");
        let sig = hmac_hex(SECRET, body.as_bytes());
        let mut req = app.client.post(app.url("/hook/plain")).header("x-signature", sig).body(body);
        if let Ok(v) = reqwest::header::HeaderValue::from_str(ct) {
            req = req.header("content-type", v);
        }
        assert_eq!(req.send().await.unwrap().status(), 200, "content type {ct:?}");
    }
    // Not visible ASCII in Content-Type (obs-text): stored without a content type, not a panic.
    let body = b"{}";
    let raw = format!(
        "POST /hook/plain HTTP/1.1\r\nhost: x\r\nx-signature: {}\r\ncontent-type: text/~\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
        hmac_hex(SECRET, body)
    );
    let raw: Vec<u8> =
        raw.into_bytes().into_iter().flat_map(|b| if b == b'~' { vec![0xff] } else { vec![b] }).collect();
    let answer = exchange(&app, raw).await;
    assert_eq!(answer.map(|a| a.0), Some(200));
    assert!(eventually(Duration::from_secs(5), async || rx.count() == 6).await, "{}", rx.count());
    let types: Vec<String> = rx.received().iter().map(|r| r.header("content-type")).collect();
    assert!(types.contains(&"text/plain".to_string()), "{types:?}");
    assert!(types.contains(&"multipart/form-data; boundary=zzz".to_string()), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_are_closed_and_existing_ones_served() {
    let (app, _rx) = app(TestConfig::new().server("max_connections", 16).server("header_timeout", "30s")).await;
    let get = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..16 {
        let mut s = TcpStream::connect(app.ingest).await.unwrap();
        s.write_all(get).await.unwrap();
        assert_eq!(read_response(&mut s).await.map(|r| r.0), Some(200));
        open.push(s);
    }
    // The 17th is accepted by the kernel, then closed by hookgate without an answer.
    let mut extra = TcpStream::connect(app.ingest).await.unwrap();
    let _ = extra.write_all(get).await;
    assert_eq!(read_response(&mut extra).await, None, "a connection past the cap is closed");
    // The 16 keep-alive clients are still served.
    for s in &mut open {
        s.write_all(get).await.unwrap();
        assert_eq!(read_response(s).await.map(|r| r.0), Some(200));
    }
    // One leaves; its slot frees up for a newcomer.
    drop(open.pop());
    let served = eventually(Duration::from_secs(5), async || {
        let mut s = TcpStream::connect(app.ingest).await.unwrap();
        if s.write_all(get).await.is_err() {
            return false;
        }
        read_response(&mut s).await.map(|r| r.0) == Some(200)
    })
    .await;
    assert!(served, "a freed slot serves a new connection");
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_off_at_header_timeout() {
    let (app, _rx) = app(TestConfig::new().server("header_timeout", "500ms")).await;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(app.ingest).await.unwrap();
    s.write_all(b"POST /hook/plain HTTP/1.1\r\nhost: x\r\nx-partial: ").await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(9), s.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    // Not before the configured timeout (a slow machine only makes `elapsed` longer); the read's 9 s
    // tells it from the default of 10 s that it replaced.
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    let (status, _) = app.post_signed("plain", b"fine").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_json_on_a_pointer_source_parses_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = TestConfig::new()
        .ingest_port(port)
        .http("rx", "http://127.0.0.1:9/")
        .source("json", toml::toml! { scheme = "hmac-sha256" secret_file = "secret.txt" }, &["rx"])
        .set("dedupe", toml::toml! { json_pointer = "/id" })
        .write(dir.path());
    let mut child = serve_on_port(&config, port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/hook/json");
    let before = vm_hwm_kib(child.id());
    // 32 at once, each just under 1 MiB of `[[],[],...]`: about 350,000 JSON values per body,
    // the most values a body of this size can hold. Half valid JSON, half cut short.
    let n = (1024 * 1024 - 64) / 3;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mut doc = format!("{{\"x\":[{}],\"id\":\"big{i}\"}}", vec!["[]"; n].join(","));
        if i % 2 == 1 {
            doc.truncate(doc.len() - 10);
        }
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let sig = hmac_hex(SECRET, doc.as_bytes());
            client.post(url).header("x-signature", sig).body(doc).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let grown_mib = (vm_hwm_kib(child.id()) - before) / 1024;
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 16, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 16, "{statuses:?}");
    // 32 MiB of bodies must be held; the parsed documents never pile up beyond one per runtime
    // thread, because the parse is synchronous (the value is gone before the next await).
    assert!(grown_mib < 400, "memory grew by {grown_mib} MiB for 32 MiB of JSON");
    println!("32 concurrent 1 MiB JSON bodies: high-water memory grew by {grown_mib} MiB");
}

#[tokio::test]
async fn serve_raises_a_low_open_files_limit_to_fit_max_connections() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = TestConfig::new()
        .ingest_port(port)
        .server("max_connections", 3000)
        .http("rx", "http://127.0.0.1:9/")
        .hmac_source("s", &["rx"])
        .write(dir.path());
    // Started the way many service managers start it: a soft limit of 1,024 open files.
    let script =
        format!("ulimit -Sn 1024 && exec {} serve --config {}", crate::support::binary().display(), config.display());
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("HOOKGATE_LOG", "error")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let up = eventually(Duration::from_secs(20), async || {
        client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok()
    })
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(up);
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let soft: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    let hard: u64 = line.split_whitespace().nth(4).unwrap().parse().unwrap_or(u64::MAX);
    assert!(soft >= 3256.min(hard), "soft limit raised for 3,000 connections: {line}");
}

/// Parses a minimal config whose `[server]` table is `server`. Kept as text: the tests feed it
/// values that are refused (zeros, "soon", host names), which a built config is not for.
fn parse_server(server: &str) -> Result<hookgate::Config, hookgate::ConfigErrors> {
    let base = "[[destinations]]\nname = \"d\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\
                [[sources]]\nname = \"s\"\npath = \"/s\"\nverify = { scheme = \"none\", insecure = true }\ndeliver_to = [\"d\"]\n";
    hookgate::Config::from_toml(
        &format!("[server]\n{server}\n{base}"),
        std::path::Path::new("t.toml"),
        std::path::Path::new("/tmp"),
    )
}

#[test]
fn connection_limits_have_defaults_and_refuse_zero() {
    let c = parse_server("").unwrap();
    assert_eq!((c.server.max_connections, c.server.header_timeout), (10_000, Duration::from_secs(10)));
    let c = parse_server("max_connections = 5\nheader_timeout = \"250ms\"").unwrap();
    assert_eq!((c.server.max_connections, c.server.header_timeout), (5, Duration::from_millis(250)));
    let problems = parse_server("max_connections = 0\nheader_timeout = \"0s\"").unwrap_err().to_string();
    assert!(problems.contains("server.max_connections") && problems.contains("server.header_timeout"), "{problems}");
    let problems = parse_server("listen = \"example.com:80\"").unwrap_err().to_string();
    assert!(problems.contains("write an IP address and port"), "host names are refused, never resolved: {problems}");
    assert_eq!(parse_server("listen = \"localhost:8090\"").unwrap().server.listen.to_string(), "127.0.0.1:8090");
}

/// Everything the server sends on `s` until it closes the connection (or 5 s pass).
async fn read_until_closed(s: &mut TcpStream) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

#[tokio::test]
async fn both_transfer_encoding_and_content_length_get_400_and_the_connection_closes() {
    let (app, _rx) = app(TestConfig::new()).await;
    let body = b"{\"smuggled\":1}";
    let chunked = format!("{:x}\r\n{}\r\n0\r\n\r\n", body.len(), String::from_utf8_lossy(body));
    let sig = hmac_hex(SECRET, body);
    let next = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    for (name, framing) in [
        ("TE first", format!("transfer-encoding: chunked\r\ncontent-length: {}\r\n", chunked.len())),
        ("CL first", format!("content-length: {}\r\ntransfer-encoding: chunked\r\n", chunked.len())),
    ] {
        // A signed request, pipelined behind a harmless one, with a health check behind it.
        let request =
            format!("{next}POST /hook/plain HTTP/1.1\r\nhost: x\r\nx-signature: {sig}\r\n{framing}\r\n{chunked}{next}");
        let mut s = TcpStream::connect(app.ingest).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let (text, closed) = read_until_closed(&mut s).await;
        let answers: Vec<&str> = text.matches("HTTP/1.1 ").collect();
        assert_eq!(answers.len(), 2, "case {name}: the first request, then the conflicting one, nothing after: {text}");
        let second = &text[text.rfind("HTTP/1.1 ").unwrap()..];
        assert!(second.starts_with("HTTP/1.1 400"), "case {name}: {text}");
        let lower = second.to_ascii_lowercase();
        assert!(lower.contains("connection: close") && lower.contains("x-request-id: "), "case {name}: {text}");
        assert!(second.contains("conflicting Transfer-Encoding and Content-Length"), "case {name}: {text}");
        assert!(closed, "case {name}: the connection is closed after the 400");
    }
    let stored = app.store.list_events(hookgate::store::EventQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert!(stored.items.is_empty(), "nothing smuggled was stored");
    // Chunked alone and Content-Length alone still serve pipelined requests.
    let chunked_alone = format!(
        "POST /hook/plain HTTP/1.1\r\nhost: x\r\nx-signature: {sig}\r\ntransfer-encoding: chunked\r\n\r\n{chunked}"
    );
    let sized = String::from_utf8(signed_post("/hook/plain", b"{\"sized\":1}", ""))
        .unwrap()
        .replace("connection: close\r\n", "");
    let mut s = TcpStream::connect(app.ingest).await.unwrap();
    s.write_all(
        format!("{chunked_alone}{sized}GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (text, _) = read_until_closed(&mut s).await;
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
}

/// A connection to the app from the loopback address `from` (Linux routes all of 127/8 to lo).
async fn connect_from(app: &TestApp, from: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket.connect(app.ingest).await.unwrap()
}

#[tokio::test]
async fn a_wrong_token_is_refused_before_the_body_is_sent() {
    let rx = TestReceiver::start(200).await;
    let config = TestConfig::new()
        .server("request_timeout", "30s")
        .http("rx", &rx.url())
        .source("bearer", toml::toml! { scheme = "bearer" secret_file = "secret.txt" }, &["rx"])
        .source("basic", toml::toml! { scheme = "basic" user = "hooks" secret_file = "secret.txt" }, &["rx"])
        .source("gitlab", toml::toml! { scheme = "gitlab" secret_file = "secret.txt" }, &["rx"]);
    let app = TestApp::spawn_config(&config).await;
    for (path, credential) in [
        ("/hook/bearer", "authorization: Bearer wrong-token"),
        ("/hook/basic", "authorization: Basic aG9va3M6d3Jvbmc="),
        ("/hook/gitlab", "x-gitlab-token: wrong-token"),
        ("/hook/bearer", "x-nothing: at all"),
    ] {
        // Headers of a 100 KB body, and not one byte of it.
        let mut s = TcpStream::connect(app.ingest).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\n{credential}\r\ncontent-length: 100000\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        // Had it waited for the body, the answer would be the body's 408 (`body_idle_timeout`), not 401.
        let answer = read_response(&mut s).await;
        assert_eq!(answer.as_ref().map(|a| a.0), Some(401), "{path} {credential}: {answer:?}");
    }
    // The right credential still gets its body read and stored.
    let resp = app.post("/hook/bearer", b"{}", &[("authorization", &format!("Bearer {SECRET}"))]).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_at_body_idle_timeout() {
    let (app, _rx) = app(TestConfig::new().server("request_timeout", "30s").server("body_idle_timeout", "500ms")).await;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(app.ingest).await.unwrap();
    s.write_all(b"POST /hook/plain HTTP/1.1\r\nhost: x\r\nx-signature: 00\r\ncontent-length: 100\r\n\r\nsome of it")
        .await
        .unwrap();
    // Two more pieces, each within the idle timeout, then silence.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(b"more").await.unwrap();
    }
    let answer = read_response(&mut s).await;
    let elapsed = started.elapsed();
    assert_eq!(answer.map(|a| (a.0, a.1)), Some((408, "{\"error\":\"request timeout\"}".to_string())));
    // Not before the pieces and the idle timeout after them; well before the default of 5 s would
    // end it (5.6 s), a bound only a stall of seconds could break.
    assert!(elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn one_address_gets_its_share_of_the_slots_and_waiting_for_one_is_bounded() {
    let (app, _rx) = app(TestConfig::new()
        .server("max_concurrent_requests", 3)
        .server("max_requests_per_client", 2)
        .server("queue_timeout", "300ms"))
    .await;
    let stalled = b"POST /hook/plain HTTP/1.1\r\nhost: x\r\nx-signature: 00\r\ncontent-length: 100\r\n\r\nx";
    // 127.0.0.2 takes its two slots with bodies that trickle in.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from(&app, [127, 0, 0, 2]).await;
        s.write_all(stalled).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third from the same address is refused at once; its connection is free to go.
    let mut third = connect_from(&app, [127, 0, 0, 2]).await;
    third.write_all(stalled).await.unwrap();
    let (status, body) = read_response(&mut third).await.unwrap();
    assert_eq!((status, body.as_str()), (429, "{\"error\":\"too many concurrent requests\"}"));
    // Another address takes the last slot; a fourth client waits queue_timeout, then 503.
    let mut other = connect_from(&app, [127, 0, 0, 3]).await;
    other.write_all(stalled).await.unwrap();
    held.push(other);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let mut s = connect_from(&app, [127, 0, 0, 4]).await;
    s.write_all(stalled).await.unwrap();
    let mut head = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut head)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 1") && head.contains("{\"error\":\"server busy\"}"), "{head}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(2), "{waited:?}");
    // Health checks take no slot; once a slot frees up, requests are served again.
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    drop(held);
    let served = eventually(Duration::from_secs(5), async || app.post_signed("plain", b"after").await.0 == 200).await;
    assert!(served);
}

#[test]
fn request_limits_have_defaults_and_refuse_what_cannot_work() {
    let s = parse_server("").unwrap().server;
    assert_eq!(
        (s.body_idle_timeout, s.max_requests_per_client, s.queue_timeout, s.max_inflight_body_bytes),
        (Duration::from_secs(5), 256, Duration::from_secs(2), 64 * 1024 * 1024)
    );
    assert_eq!((s.verify_failures_per_client.per_second, s.verify_failures_per_client.burst), (1, 20));
    let s = parse_server("verify_failures_per_client = { per_second = 3 }").unwrap().server;
    assert_eq!((s.verify_failures_per_client.per_second, s.verify_failures_per_client.burst), (3, 3));
    let s = parse_server("max_concurrent_requests = 100").unwrap().server;
    assert_eq!(s.max_requests_per_client, 25, "a quarter of the slots by default");
    assert_eq!(parse_server("max_concurrent_requests = 2").unwrap().server.max_requests_per_client, 1);
    let s = parse_server("queue_timeout = \"0s\"\nmax_requests_per_client = 7").unwrap().server;
    assert_eq!((s.queue_timeout, s.max_requests_per_client), (Duration::ZERO, 7));
    let problems = parse_server(
        "body_idle_timeout = \"0s\"\nmax_requests_per_client = 0\nqueue_timeout = \"soon\"\n\
         max_body_bytes = 2000\nmax_inflight_body_bytes = 1000\n\
         verify_failures_per_client = { per_second = 0, burst = 5 }",
    )
    .unwrap_err()
    .to_string();
    for key in [
        "server.body_idle_timeout",
        "server.max_requests_per_client",
        "server.queue_timeout",
        "server.max_inflight_body_bytes: must be at least server.max_body_bytes (2000)",
        "server.verify_failures_per_client.per_second",
    ] {
        assert!(problems.contains(key), "{key} in {problems}");
    }
}
