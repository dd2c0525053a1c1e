//! Config validation as a table: text in, problems (`key: reason`) or values out. The pure step
//! runs on text alone; the edge runs with a fake environment and fake files ([`Fake`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fields::SecretRef;
use super::load::{self, Outside};
use super::validate::{self, Overrides};
use super::{Config, Dedupe, StorageUrl, Target};

/// A destination and a source that delivers to it, for texts that test something else.
const BASE: &str = "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n\n\
    [[sources]]\nname = \"s\"\npath = \"/s\"\nverify = { scheme = \"github\", secret_env = \"GH\" }\ndeliver_to = [\"rx\"]\n";

/// An environment and a file system in memory.
#[derive(Default)]
struct Fake {
    env: HashMap<String, String>,
    files: HashMap<PathBuf, Vec<u8>>,
    postgres: Option<String>,
}

impl Fake {
    fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    fn file(mut self, path: &str, bytes: &str) -> Self {
        self.files.insert(Path::new("/cfg").join(path), bytes.into());
        self
    }
}

impl Outside for Fake {
    fn var(&self, name: &str) -> Option<OsString> {
        self.env.get(name).map(OsString::from)
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn check_postgres_url(&self, _url: &str) -> Result<(), String> {
        self.postgres.clone().map_or(Ok(()), Err)
    }
}

/// The pure step's problems for `text`, as `key: reason`.
fn pure_problems(text: &str, overrides: &Overrides) -> Vec<String> {
    match validate::parse(text, Path::new("h.toml"), Path::new("/cfg"), overrides) {
        Err(e) => e.0.iter().map(|p| format!("{}: {}", p.key, p.reason)).collect(),
        Ok((_, p)) => match p.into_result() {
            Ok(()) => Vec::new(),
            Err(e) => e.0.iter().map(|p| format!("{}: {}", p.key, p.reason)).collect(),
        },
    }
}

/// Both steps with `outside`.
fn load(text: &str, outside: &Fake) -> Result<Config, Vec<String>> {
    load::from_toml(text, Path::new("h.toml"), Path::new("/cfg"), outside)
        .map_err(|e| e.0.iter().map(|p| format!("{}: {}", p.key, p.reason)).collect())
}

#[test]
fn each_problem_is_reported_under_its_key() {
    for (text, want) in [
        ("[server]\nlisten = \"somewhere\"", "server.listen: invalid listen address \"somewhere\""),
        ("[server]\nmax_body_bytes = 0", "server.max_body_bytes: must be at least 1"),
        ("[server]\nshutdown_grace = \"10\"", "server.shutdown_grace: invalid duration \"10\""),
        ("[server]\nheader_timeout = \"0s\"", "server.header_timeout: must be longer than 0s"),
        ("[server]\nbody_idle_timeout = \"0s\"", "server.body_idle_timeout: must be longer than 0s"),
        ("[server]\nmax_connections = 0", "server.max_connections: must be at least 1"),
        (
            "[server]\nredact_headers = [\"bad header\"]",
            "server.redact_headers[0]: \"bad header\" is not a valid header",
        ),
        (
            "[server]\nmax_body_bytes = 10\nmax_inflight_body_bytes = 5",
            "server.max_inflight_body_bytes: must be at least",
        ),
        (
            "[server]\nverify_failures_per_client = { burst = 3 }",
            "server.verify_failures_per_client.per_second: missing",
        ),
        ("[server]\nlisten = \"127.0.0.1:7000\"\n[admin]\nlisten = \"127.0.0.1:7000\"", "admin.listen: must differ"),
        ("[storage]\nurl = \"mysql://x\"", "storage.url: unsupported storage URL"),
        ("[storage]\nurl = \"sqlite://\"", "storage.url: sqlite URL has no file path"),
        ("[delivery]\nmax_attempts = 0", "delivery.max_attempts: must be at least 1"),
        ("[delivery]\ninitial_backoff = \"1h\"\nmax_backoff = \"1m\"", "delivery.max_backoff: must not be shorter"),
        ("[delivery]\nlease = \"soon\"", "delivery.lease: invalid duration"),
        ("[server]\nlisten_on = 1", "server.listen_on: unknown key"),
        ("[[destinations]]\ntype = \"http\"", "destinations[0].name: missing"),
        ("[[destinations]]\nname = \"a b\"", "destinations[0].name: invalid name \"a b\""),
        ("[[destinations]]\nname = \"d\"\ntype = \"ftp\"", "destinations[0] (d).type: unknown type \"ftp\""),
        ("[[destinations]]\nname = \"d\"", "destinations[0] (d).type: missing"),
        ("[[destinations]]\nname = \"d\"\ntype = \"http\"", "destinations[0] (d).url: missing"),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"http\"\nurl = \"ftp://x/\"",
            "(d).url: must be an http:// or https://",
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"exec\"\ncommand = []",
            "destinations[0] (d).command: missing or empty",
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"exec\"\ncommand = [\"x\"]\nurl = \"http://a/\"",
            "(d).url: not used",
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"http\"\nurl = \"http://a/\"\nsign = {}",
            "destinations[0] (d).sign: set exactly one of secret_env or secret_file",
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"http\"\nurl = \"http://a/\"\ntimeout = \"30s\"\nlease = \"10s\"",
            "destinations[0] (d).lease: must be longer than the destination's timeout",
        ),
        ("[[destinations]]\nname = \"d\"\ntype = \"rust\"\nconcurrency = 0", "(d).concurrency: must be at least 1"),
        ("[[sources]]\nname = \"s\"\npath = \"s\"", "sources[0] (s).path: invalid path \"s\""),
        ("[[sources]]\nname = \"s\"\npath = \"/a b\"", "can never match a request"),
        ("[[sources]]\nname = \"s\"\npath = \"/healthz\"", "sources[0] (s).path: is reserved for health checks"),
        ("[[sources]]\nname = \"s\"", "sources[0] (s).path: missing"),
        ("[[sources]]\nname = \"s\"\npath = \"/s\"", "sources[0] (s).verify: missing"),
        ("[[sources]]\nname = \"s\"\npath = \"/s\"", "sources[0] (s).deliver_to: empty"),
        (
            "[[sources]]\nname = \"s\"\npath = \"/s\"\ndeliver_to = [\"nope\"]",
            "(s).deliver_to[0]: unknown destination \"nope\"",
        ),
        (
            "[[sources]]\nname = \"s\"\npath = \"/s\"\ndedupe = { json_pointer = \"id\" }",
            "(s).dedupe.json_pointer: invalid",
        ),
        (
            "[[sources]]\nname = \"s\"\npath = \"/s\"\ndedupe = { header = \"a b\" }",
            "(s).dedupe.header: invalid header",
        ),
        (
            "[[sources]]\nname = \"s\"\npath = \"/s\"\ndedupe = {}",
            "(s).dedupe: set exactly one of json_pointer or header",
        ),
        (
            "[[sources]]\nname = \"s\"\npath = \"/s\"\nrate_limit = { burst = 1 }",
            "(s).rate_limit.per_second: missing or zero",
        ),
        ("this is not toml", ": invalid TOML"),
    ] {
        let got = pure_problems(text, &Overrides::default());
        assert!(got.iter().any(|p| p.contains(want)), "case: {text:?}: want {want:?} in {got:?}");
    }
    let text = format!(
        "{BASE}\n[[sources]]\nname = \"s\"\npath = \"/s\"\nverify = {{ scheme = \"github\" }}\ndeliver_to = [\"rx\", \"rx\"]\n"
    );
    let got = pure_problems(&text, &Overrides::default());
    for want in [
        "sources[1] (s).name: duplicate source name; also used by sources[0]",
        "sources[1] (s).path: \"/s\" is already used by sources[0]",
        "sources[1] (s).deliver_to[1]: destination \"rx\" is listed twice",
    ] {
        assert!(got.iter().any(|p| p == want), "want {want:?} in {got:?}");
    }
    let many: Vec<String> = (0..=super::MAX_DELIVER_TO).map(|_| "\"rx\"".to_string()).collect();
    let text = format!("{BASE}\n[[sources]]\nname = \"t\"\npath = \"/t\"\ndeliver_to = [{}]\n", many.join(","));
    let got = pure_problems(&text, &Overrides::default());
    assert!(got.iter().any(|p| p.contains("(t).deliver_to: 1025 destinations; at most 1024")), "{got:?}");
    assert_eq!(pure_problems(BASE, &Overrides::default()), Vec::<String>::new());
}

#[test]
fn the_pure_step_names_secrets_without_reading_them() {
    let text = format!(
        "{BASE}\n[admin]\ntoken_file = \"tok\"\n\n[[destinations]]\nname = \"signed\"\ntype = \"http\"\n\
         url = \"http://127.0.0.1:9/\"\nsign = {{ secret_env = \"SIGN\" }}\n"
    );
    let (draft, p) = validate::parse(&text, Path::new("h.toml"), Path::new("/cfg"), &Overrides::default()).unwrap();
    assert!(p.is_empty());
    let token = draft.admin_token.unwrap();
    assert_eq!((token.key, token.source), ("admin.token_file", SecretRef::File("/cfg/tok".into())));
    assert_eq!(draft.sources[0].verify.secrets, vec![("secret_env", SecretRef::Env("GH".into()))]);
    assert_eq!(draft.sources[0].verify.at, "sources[0] (s).verify");
    let sign = draft.destinations[1].sign.clone().unwrap();
    assert_eq!(sign.key, "destinations[1] (signed).sign.secret_env");
    assert_eq!(sign.source, SecretRef::Env("SIGN".into()));
    assert!(draft.secret_env_vars.contains(&"GH".to_string()) && draft.secret_env_vars.contains(&"SIGN".into()));
}

#[test]
fn overrides_replace_the_file_and_come_from_the_edge() {
    let text = format!("{BASE}\n[server]\nlisten = \"127.0.0.1:1\"\n[storage]\nurl = \"sqlite://a.db\"\n");
    let overrides = Overrides {
        listen: Some("127.0.0.1:2".into()),
        admin_listen: Some("localhost:3".into()),
        database_url: Some("sqlite://b.db".into()),
    };
    let (draft, _) = validate::parse(&text, Path::new("h.toml"), Path::new("/cfg"), &overrides).unwrap();
    assert_eq!(draft.server.unwrap().listen, "127.0.0.1:2".parse::<SocketAddr>().unwrap());
    assert_eq!(draft.admin_listen, Some("127.0.0.1:3".parse().unwrap()));
    assert_eq!(draft.storage.unwrap().url, StorageUrl::Sqlite("/cfg/b.db".into()));
    let got = pure_problems(BASE, &Overrides { listen: Some("nowhere".into()), ..Overrides::default() });
    assert!(got.iter().any(|p| p.starts_with("server.listen: invalid listen address \"nowhere\"")), "{got:?}");

    let fake = Fake::default().env("HOOKGATE_LISTEN", "127.0.0.1:4").env("HOOKGATE_DATABASE_URL", "");
    let read = Overrides::from_env(&fake);
    assert_eq!(read, Overrides { listen: Some("127.0.0.1:4".into()), ..Overrides::default() }, "empty is no override");
}

#[test]
fn the_edge_reads_secrets_and_reports_each_under_its_key() {
    let fake = Fake::default().env("GH", "s3cret");
    let config = load(BASE, &fake).unwrap();
    assert_eq!(config.sources[0].dedupe, Dedupe::Default);
    assert!(config.admin.token.is_none(), "HOOKGATE_ADMIN_TOKEN is optional");

    let got = load(BASE, &Fake::default()).unwrap_err();
    assert_eq!(got, ["sources[0] (s).verify.secret_env: environment variable GH is not set"]);
    let got = load(BASE, &Fake::default().env("GH", "")).unwrap_err();
    assert_eq!(got, ["sources[0] (s).verify.secret_env: environment variable GH is empty"]);

    let files = BASE.replace("secret_env = \"GH\"", "secrets_file = [\"a\", \"b\", \"c\"]");
    let got = load(&files, &Fake::default().file("a", "one\r\n").file("b", "\n")).unwrap_err();
    assert_eq!(
        got,
        [
            "sources[0] (s).verify.secrets_file: secret file /cfg/b is empty",
            "sources[0] (s).verify.secrets_file: cannot read secret file /cfg/c: entity not found",
        ]
    );

    // A scheme that decodes its secrets says which one it refuses, never its value.
    let sw = BASE.replace("\"github\", secret_env = \"GH\"", "\"standard-webhooks\", secret_env = \"GH\"");
    let got = load(&sw, &Fake::default().env("GH", "not base64!")).unwrap_err();
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("sources[0] (s).verify.secret_env: environment variable GH: must be"), "{got:?}");
    assert!(!got[0].contains("not base64!"), "{got:?}");

    // The verify table's own problems are verify's, reported under the table's key.
    for (verify, want) in [
        ("{ scheme = \"pigeon\", secret_env = \"GH\" }", "sources[0] (s).verify.scheme: unknown scheme \"pigeon\""),
        ("{ scheme = \"github\" }", "sources[0] (s).verify.secret_env: missing"),
        ("{ scheme = \"github\", secret_env = \"GH\", tolerance = \"soon\" }", "verify.tolerance: not used by scheme"),
        ("{ scheme = \"stripe\", secret_env = \"GH\", tolerance = \"soon\" }", "verify.tolerance: invalid duration"),
        ("{ scheme = \"none\" }", "sources[0] (s).verify.insecure: scheme \"none\" accepts unsigned"),
        ("{ scheme = \"none\", insecure = true, secret_env = \"X\" }", "verify.secret_env: scheme \"none\" takes no"),
    ] {
        let text = BASE.replace("{ scheme = \"github\", secret_env = \"GH\" }", verify);
        let got = load(&text, &Fake::default().env("GH", "s")).unwrap_err();
        assert!(got.iter().any(|p| p.contains(want)), "case: {verify}: want {want:?} in {got:?}");
    }
    let github_bad_tolerance = BASE.replace("secret_env = \"GH\"", "secret_env = \"GH\", tolerance = \"soon\"");
    assert_eq!(load(&github_bad_tolerance, &fake).unwrap_err().len(), 1, "only the unused key, as before");
}

#[test]
fn the_edge_decodes_signing_keys_and_checks_the_admin_token() {
    let signed = format!(
        "{BASE}\n[[destinations]]\nname = \"out\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\
         sign = {{ secret_file = \"sign\" }}\n"
    );
    let fake = Fake::default().env("GH", "s").file("sign", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n");
    let config = load(&signed, &fake).unwrap();
    let Target::Http { sign: Some(key), .. } = &config.destination("out").unwrap().target else { panic!("signed") };
    assert_eq!(key.expose().len(), 24, "the key is the decoded base64");
    let got = load(&signed, &Fake::default().env("GH", "s").file("sign", "plain")).unwrap_err();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("destinations[1] (out).sign.secret_file: must be a Standard Webhooks secret"),
        "{got:?}"
    );

    let open = format!("{BASE}\n[admin]\nlisten = \"0.0.0.0:9081\"\n");
    let got = load(&open, &Fake::default().env("GH", "s")).unwrap_err();
    assert!(got[0].starts_with("admin.listen: 0.0.0.0:9081 is not a loopback address"), "{got:?}");
    let got = load(&open, &Fake::default().env("GH", "s").env("HOOKGATE_ADMIN_TOKEN", "short")).unwrap_err();
    assert!(got[0].starts_with("admin.token_env: the admin token has 5 characters"), "{got:?}");
    let token = "0123456789abcdef";
    let config = load(&open, &Fake::default().env("GH", "s").env("HOOKGATE_ADMIN_TOKEN", token)).unwrap();
    assert_eq!(config.admin.token.unwrap().expose(), token.as_bytes());
    let named = format!("{BASE}\n[admin]\ntoken_env = \"TOK\"\n");
    let got = load(&named, &Fake::default().env("GH", "s")).unwrap_err();
    assert_eq!(got, ["admin.token_env: environment variable TOK is not set"]);
}

#[test]
fn the_edge_has_the_store_check_a_postgres_url() {
    let pg = format!("{BASE}\n[storage]\nurl = \"postgres://u:pw@db/hg\"\n");
    let config = load(&pg, &Fake::default().env("GH", "s")).unwrap();
    assert!(matches!(&config.storage.url, StorageUrl::Postgres(url) if url.expose() == b"postgres://u:pw@db/hg"));
    assert!(!format!("{config:?}").contains("pw@"), "the URL is a Secret");
    let fake = Fake { postgres: Some("sslrootcert /x cannot be read".into()), ..Fake::default().env("GH", "s") };
    assert_eq!(load(&pg, &fake).unwrap_err(), ["storage.url: sslrootcert /x cannot be read"]);
}

#[test]
fn durations_and_defaults() {
    let config = load(BASE, &Fake::default().env("GH", "s")).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(config.admin.listen, "127.0.0.1:8081".parse::<SocketAddr>().unwrap());
    assert_eq!(config.storage.url, StorageUrl::Sqlite("/cfg/hookgate.db".into()));
    assert_eq!(config.storage.retention, Duration::from_secs(7 * 86400));
    let rx = config.destination("rx").unwrap();
    assert_eq!((rx.timeout, rx.lease), (Duration::from_secs(30), Duration::from_secs(60)));
    assert_eq!(config.server.max_requests_per_client, 256);
}

/// An http destination `d` with `extra` lines, and a source delivering to it.
fn http_with(extra: &str) -> String {
    format!("{BASE}\n[[destinations]]\nname = \"d\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n{extra}\n")
}

#[test]
fn http_destination_method_and_headers_are_checked_under_their_keys() {
    let at = "destinations[1] (d)";
    for (extra, want) in [
        ("method = \"GET\"", format!("{at}.method: unknown method \"GET\"; accepted: \"POST\", \"PUT\", \"PATCH\"")),
        ("method = \"put\"", format!("{at}.method: unknown method \"put\"; accepted: \"POST\", \"PUT\", \"PATCH\"")),
        ("headers = { \"X Team\" = \"a\" }", format!("{at}.headers.\"X Team\": \"X Team\" is not a valid header name")),
        ("headers = { \"X-A\" = \"a\\nb\" }", format!("{at}.headers.X-A: not a valid header value")),
        ("headers = { Host = \"evil\" }", format!("{at}.headers.Host: host cannot be set here")),
        ("headers = { Content-Type = \"text/plain\" }", format!("{at}.headers.Content-Type: content-type cannot")),
        ("headers = { Content-Length = \"1\" }", format!("{at}.headers.Content-Length: content-length cannot")),
        ("headers = { Transfer-Encoding = \"x\" }", format!("{at}.headers.Transfer-Encoding: transfer-encoding")),
        ("headers = { Webhook-Signature = \"v1,x\" }", format!("{at}.headers.Webhook-Signature: webhook-signature")),
        ("headers = { webhook-id = \"1\" }", format!("{at}.headers.webhook-id: webhook-id cannot be set here")),
        ("headers = { X-Hookgate-Source = \"s\" }", format!("{at}.headers.X-Hookgate-Source: x-hookgate-source")),
        ("headers = { X-A = \"1\", x-a = \"2\" }", format!("{at}.headers.x-a: the same header as \"X-A\"")),
        ("headers = { X-A = 5 }", "invalid type: integer `5`, expected a header value".to_string()),
        ("headers = { X-A = {} }", format!("{at}.headers.X-A: set exactly one of secret_env or secret_file")),
        (
            "headers = { X-A = { secret_env = \"A\", secret_file = \"f\" } }",
            format!("{at}.headers.X-A: set exactly one of secret_env or secret_file"),
        ),
        (
            "headers = { X-A = { secret_env = \"A\", prefix = \"Bearer\\n\" } }",
            format!("{at}.headers.X-A.prefix: not valid in a header value"),
        ),
        (
            "headers = { X-A = { secret_env = \"A\", prefx = \"Bearer \" } }",
            format!("{at}.headers.X-A.prefx: unknown key; accepted: secret_env, secret_file, prefix"),
        ),
    ] {
        let got = pure_problems(&http_with(extra), &Overrides::default());
        assert!(got.iter().any(|p| p.contains(&want)), "case: {extra}: want {want:?} in {got:?}");
    }
    // Every problem at once, as `check` lists them.
    let many = http_with("method = \"DELETE\"\nheaders = { Host = \"h\", \"a b\" = \"c\", X-Ok = \"fine\" }");
    assert_eq!(pure_problems(&many, &Overrides::default()).len(), 3);

    // Only http destinations take them.
    for (kind, extra) in [("exec", "command = [\"true\"]"), ("rust", "")] {
        let text = format!(
            "{BASE}\n[[destinations]]\nname = \"e\"\ntype = \"{kind}\"\n{extra}\nmethod = \"PUT\"\nheaders = {{ X-A = \"1\" }}\n"
        );
        let got = pure_problems(&text, &Overrides::default());
        for key in ["method", "headers"] {
            let want = format!("destinations[1] (e).{key}: not used by type = \"{kind}\"");
            assert!(got.contains(&want), "{kind}: want {want:?} in {got:?}");
        }
    }
}

#[test]
fn secret_valued_headers_are_read_at_the_edge_and_never_shown() {
    let text = http_with(
        "method = \"PATCH\"\nheaders = { X-Team = \"billing\", Authorization = { secret_env = \"CRM_TOKEN\", \
         prefix = \"Bearer \" }, X-Key = { secret_file = \"key\" } }",
    );
    let fake = Fake::default().env("GH", "s").env("CRM_TOKEN", "tok-9f2c").file("key", "file-key-77\n");
    let config = load(&text, &fake).unwrap();
    let Target::Http { method, headers, .. } = &config.destination("d").unwrap().target else { panic!("http") };
    assert_eq!(method, http::Method::PATCH);
    let shown: Vec<(String, Vec<u8>)> =
        headers.iter().map(|(name, source)| (name.to_string(), source.value().unwrap().as_bytes().to_vec())).collect();
    let want = [("x-team", "billing"), ("authorization", "Bearer tok-9f2c"), ("x-key", "file-key-77")]
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()));
    for w in &want {
        assert!(shown.contains(w), "{w:?} in {shown:?}");
    }
    assert!(headers.iter().all(|(n, s)| s.value().unwrap().is_sensitive() == (n != "x-team")), "secrets are sensitive");
    let debug = format!("{config:?}");
    assert!(!debug.contains("tok-9f2c") && !debug.contains("file-key-77"), "{debug}");
    assert!(debug.contains("billing"), "a static value is shown: {debug}");
    assert!(config.secret_env_vars.contains(&"CRM_TOKEN".to_string()), "exec children do not inherit it");
    assert_eq!(
        load(&http_with(""), &Fake::default().env("GH", "s")).map(|c| match &c.destination("d").unwrap().target {
            Target::Http { method, headers, .. } => (method.clone(), headers.len()),
            _ => panic!("http"),
        }),
        Ok((http::Method::POST, 0)),
        "POST and no headers by default"
    );

    // A missing or empty secret names the destination's key and the variable; a secret that cannot
    // be a header value names where it came from, never the value.
    let fake = Fake::default().env("GH", "s").env("CRM_TOKEN", "").file("key", "line one\nline two");
    assert_eq!(
        load(&text, &fake).unwrap_err(),
        [
            "destinations[1] (d).headers.Authorization.secret_env: environment variable CRM_TOKEN is empty",
            "destinations[1] (d).headers.X-Key.secret_file: the value of secret file /cfg/key is not valid in a header: \
             it has a control character such as a newline",
        ]
    );
    let got = load(&text, &Fake::default().env("GH", "s").file("key", "k")).unwrap_err();
    assert_eq!(
        got,
        ["destinations[1] (d).headers.Authorization.secret_env: environment variable CRM_TOKEN is not set"]
    );
}

/// Delivery control keys (CONTRACT §8): the breaker is on by default, `false` turns it off, a
/// table's missing keys come from `[delivery]`; rate limits default from `[delivery]`; every bad
/// value is named with its key.
#[test]
fn circuit_breaker_and_rate_limit_keys() {
    let dest = |extra: &str| {
        format!(
            "{extra}\n[[destinations]]\nname = \"a\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n[[destinations]]\nname = \"b\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\ncircuit_breaker = false\nrate_limit = {{ per_second = 3 }}\n"
        )
    };
    let config = Config::from_toml(&dest(""), Path::new("h.toml"), Path::new("/cfg")).unwrap();
    let (a, b) = (config.destination("a").unwrap(), config.destination("b").unwrap());
    assert_eq!(a.circuit_breaker, Some(super::CircuitBreaker { failures: 10, cooldown: Duration::from_secs(30) }));
    assert_eq!((b.circuit_breaker, a.rate_limit), (None, None));
    assert_eq!(b.rate_limit, Some(super::RateLimit { per_second: 3, burst: 3 }));
    let text = dest("[delivery]\ncircuit_breaker = { failures = 4 }\nrate_limit = { per_second = 50, burst = 100 }");
    let config = Config::from_toml(&text, Path::new("h.toml"), Path::new("/cfg")).unwrap();
    let a = config.destination("a").unwrap();
    assert_eq!(a.circuit_breaker, Some(super::CircuitBreaker { failures: 4, cooldown: Duration::from_secs(30) }));
    assert_eq!(a.rate_limit, Some(super::RateLimit { per_second: 50, burst: 100 }));
    assert!(a.ordering_key.is_none());
    for (text, want) in [
        ("[delivery]\ncircuit_breaker = { failures = 0 }", "delivery.circuit_breaker.failures: must be a whole number"),
        (
            "[delivery]\ncircuit_breaker = { cooldown = \"soon\" }",
            "delivery.circuit_breaker.cooldown: invalid duration",
        ),
        ("[delivery]\ncircuit_breaker = { cooldwn = \"1s\" }", "delivery.circuit_breaker.cooldwn: unknown key"),
        ("[delivery]\ncircuit_breaker = \"on\"", "delivery.circuit_breaker: must be false or a table"),
        ("[delivery]\nrate_limit = { burst = 2 }", "delivery.rate_limit.per_second: missing or zero"),
        (
            "[[destinations]]\nname = \"k\"\ntype = \"exec\"\ncommand = [\"true\"]\nordering_key = '.['",
            "destinations[0] (k).ordering_key: ",
        ),
    ] {
        let problems = pure_problems(&format!("{text}\n{BASE}"), &Overrides::default());
        assert!(problems.iter().any(|p| p.starts_with(want)), "{text}: {problems:?}");
    }
}

#[test]
fn pull_destinations_take_a_token_and_a_lease_and_nothing_of_http() {
    let pull = |extra: &str| {
        format!(
            "{}[[destinations]]\nname = \"laptop\"\ntype = \"pull\"\n{extra}\n",
            BASE.replace("deliver_to = [\"rx\"]", "deliver_to = [\"rx\", \"laptop\"]")
        )
    };
    let fake = Fake::default().env("GH", "s3cret").env("LAPTOP", "t0ken");
    let config = load(&pull("token_env = \"LAPTOP\""), &fake).unwrap();
    let laptop = config.destination("laptop").unwrap();
    assert_eq!(laptop.lease, Duration::from_secs(30), "a pull destination's own default");
    assert!(matches!(&laptop.target, Target::Pull { token: Some(t) } if t.expose() == b"t0ken"));
    assert!(config.secret_env_vars.contains(&"LAPTOP".to_string()), "hidden from exec commands");
    let config = load(&pull("lease = \"1s\""), &fake).unwrap();
    assert!(matches!(config.destination("laptop").unwrap().target, Target::Pull { token: None }));

    let got = load(&pull("token_env = \"UNSET\""), &fake).unwrap_err();
    assert_eq!(got, ["destinations[1] (laptop).token_env: environment variable UNSET is not set"]);
    for (extra, want) in [
        ("url = \"http://x/\"", "destinations[1] (laptop).url: not used by type = \"pull\""),
        ("sign = { secret_env = \"S\" }", "destinations[1] (laptop).sign: not used by type = \"pull\""),
        ("lease = \"500ms\"", "destinations[1] (laptop).lease: must be at least 1s for a pull destination"),
        (
            "token_env = \"A\"\ntoken_file = \"b\"",
            "destinations[1] (laptop).token_env: set only one of token_env or token_file",
        ),
    ] {
        assert_eq!(pure_problems(&pull(extra), &Overrides::default()), [want], "{extra}");
    }
    let http_token = BASE.replace("type = \"http\"", "type = \"http\"\ntoken_env = \"T\"");
    assert_eq!(
        pure_problems(&http_token, &Overrides::default()),
        ["destinations[0] (rx).token_env: not used by type = \"http\"; only a pull destination has a token"]
    );
}

#[test]
fn alerts_keys() {
    let gh = Fake::default().env("GH", "secret");
    let text = format!("{BASE}\n[alerts]\ndeliver_to = [\"rx\"]\n",);
    let config = load(&text, &gh).unwrap();
    let alerts = config.alerts.unwrap();
    assert_eq!(
        (alerts.deliver_to.as_slice(), alerts.on.as_slice()),
        (&["rx".to_string()][..], &super::AlertKind::ALL[..])
    );
    assert!(alerts.receives("rx") && !alerts.receives("other"));
    let text = format!(
        "{BASE}\n[alerts]\ndeliver_to = [{{ destination = \"rx\", filter = '.body.type == \"delivery.dead\"', transform = '.body.last_error' }}]\non = [\"delivery.dead\"]\n",
    );
    let config = load(&text, &gh).unwrap();
    assert!(config.has_expressions(), "alert routes' expressions start the routing threads");
    assert_eq!(config.alerts.unwrap().on, [super::AlertKind::DeliveryDead]);
    assert!(load(BASE, &gh).unwrap().alerts.is_none());
    for (text, want) in [
        ("[alerts]\ndeliver_to = []", "alerts.deliver_to: empty"),
        ("[alerts]\ndeliver_to = [\"nope\"]", "alerts.deliver_to[0]: unknown destination \"nope\""),
        ("[alerts]\ndeliver_to = [\"rx\", \"rx\"]", "alerts.deliver_to[1]: destination \"rx\" is listed twice"),
        ("[alerts]\ndeliver_to = [{ destination = \"rx\", filter = '.[' }]", "alerts.deliver_to[0].filter: "),
        (
            "[alerts]\ndeliver_to = [\"rx\"]\non = [\"delivery.died\"]",
            "alerts.on[0]: unknown alert \"delivery.died\"; accepted: delivery.dead, destination.circuit_opened, destination.circuit_closed",
        ),
        ("[alerts]\ndeliver_to = [\"rx\"]\nbogus = 1", "alerts.bogus: unknown key; accepted: deliver_to, on"),
        (
            "[[sources]]\nname = \"hookgate\"\npath = \"/h\"\nverify = { scheme = \"github\", secret_env = \"GH\" }\ndeliver_to = [\"rx\"]",
            "sources[1] (hookgate).name: is reserved",
        ),
    ] {
        let problems = pure_problems(&format!("{BASE}\n{text}"), &Overrides::default());
        assert!(problems.iter().any(|p| p.starts_with(want)), "{text}: {problems:?}");
    }
}

#[test]
fn telemetry_is_off_by_default_and_an_endpoint_becomes_its_traces_url() {
    let off = load(BASE, &Fake::default().env("GH", "s3cret")).unwrap();
    assert!(!off.telemetry.traces());
    assert_eq!(off.telemetry.service_name, "hookgate");
    for (endpoint, want) in [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example.com/prefix", "https://otel.example.com/prefix/v1/traces"),
        ("http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318/v1/traces"),
    ] {
        let text = format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"gw\"\n{BASE}");
        let config = load(&text, &Fake::default().env("GH", "s3cret")).unwrap();
        assert_eq!(config.telemetry.traces_url.as_deref(), Some(want), "{endpoint}");
        assert_eq!(config.telemetry.service_name, "gw");
    }
    for (text, want) in [
        ("[telemetry]\notlp_endpoint = \"127.0.0.1:4318\"", "telemetry.otlp_endpoint: \"127.0.0.1:4318\" is not a URL"),
        (
            "[telemetry]\notlp_endpoint = \"grpc://c:4317\"",
            "telemetry.otlp_endpoint: \"grpc://c:4317\" must be an http",
        ),
        ("[telemetry]\notlp_endpoint = \"not a url\"", "telemetry.otlp_endpoint: \"not a url\" is not a URL"),
        ("[telemetry]\notlp_endpoint = \"http://c/?a=b\"", "must have no query"),
        ("[telemetry]\nservice_name = \" \"", "telemetry.service_name: must not be empty"),
        (
            "[telemetry]\nendpoint = \"http://c\"",
            "telemetry.endpoint: unknown key; accepted: otlp_endpoint, service_name",
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"http\"\nurl = \"http://a/\"\nheaders = { traceparent = \"x\" }",
            "hookgate passes the W3C trace context on itself",
        ),
    ] {
        let problems = pure_problems(text, &Overrides::default());
        assert!(problems.iter().any(|p| p.contains(want)), "{text}: want {want:?} in {problems:?}");
    }
}
