//! The command line from outside: exit codes and messages of `check`, `serve` and `send`.

use std::process::Command;

use crate::support::app::{Extra, hmac_source, write_config, write_config_with};
use crate::support::{TestApp, TestReceiver, binary};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out =
        Command::new(binary()).args(args).envs(env.iter().copied()).env_remove("HOOKGATE_CONFIG").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const ENV_SOURCE: &str = "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n\n\
    [[sources]]\nname = \"s\"\npath = \"/s\"\nverify = { scheme = \"hmac-sha256\", secret_env = \"HG_TEST_MISSING_SECRET\" }\ndeliver_to = [\"rx\"]\n";

#[test]
fn missing_secret_fails_check_and_serve_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", ENV_SOURCE);
    let config = config.to_str().unwrap();
    for cmd in ["check", "serve"] {
        let (code, _, err) = run(&[cmd, "--config", config], &[]);
        assert_eq!(code, 1, "{cmd}: {err}");
        assert!(err.contains("HG_TEST_MISSING_SECRET"), "{cmd}: {err}");
        assert!(err.contains("sources[0] (s).verify.secret_env"), "{cmd}: {err}");
        assert!(!err.contains("panicked"), "{cmd}: {err}");
    }
    let (code, out, err) = run(&["check", "--config", config], &[("HG_TEST_MISSING_SECRET", "x")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"));
}

#[test]
fn check_lists_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[delivery]\ninitial_backoff = \"soon\"\nretries = 3\n\n\
        [[destinations]]\nname = \"rx\"\ntype = \"carrier-pigeon\"\n\n\
        [[sources]]\nname = \"a\"\npath = \"/same\"\nverify = { scheme = \"hmac-sha256\", secret_file = \"secret.txt\", algo = \"md5\" }\ndeliver_to = [\"nowhere\"]\n\n\
        [[sources]]\nname = \"b\"\npath = \"/same\"\nverify = { scheme = \"none\" }\ndeliver_to = [\"rx\"]\n";
    let config = write_config(dir.path(), "listn = \"x\"", body);
    let (code, _, err) = run(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    for want in [
        "delivery.initial_backoff",
        "destinations[0] (rx).type",
        "unknown destination \"nowhere\"",
        "sources[1] (b).path",
        "sources[1] (b).verify.insecure",
        "hookgate.toml",
        // Unknown keys are listed with the rest, each with what its table accepts.
        "server.listn: unknown key; accepted: listen,",
        "delivery.retries: unknown key; accepted:",
        "sources[0] (a).verify.algo: unknown key; accepted:",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// A path a request can never carry (not ASCII, a space, a broken escape) is refused with the
/// percent-encoded form to write instead; a bad `redact_headers` name is named; a retention
/// shorter than Stripe's retry window is a warning, not an error.
#[test]
fn check_refuses_paths_that_can_never_match_and_warns_on_short_retention() {
    let dir = tempfile::tempdir().unwrap();
    let source = |name: &str, path: &str| {
        format!(
            "[[sources]]\nname = \"{name}\"\npath = \"{path}\"\nverify = {{ scheme = \"hmac-sha256\", secret_file = \"secret.txt\" }}\ndeliver_to = [\"rx\"]\n\n"
        )
    };
    let rx = "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n\n";
    let body = format!(
        "{rx}{}{}{}{}",
        source("accent", "/\u{e9}"),
        source("space", "/x y"),
        source("escape", "/50%"),
        source("fine", "/caf%C3%A9/x-y_z.~!$&'()*+,;=:@"),
    );
    let config = write_config(dir.path(), "redact_headers = [\"X-Ticket\", \"bad header\"]", &body);
    let (code, _, err) = run(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{err}");
    for want in [
        "sources[0] (accent).path: \"/\u{e9}\" can never match a request",
        "write \"/%C3%A9\"",
        "sources[1] (space).path",
        "write \"/x%20y\"",
        "sources[2] (escape).path",
        "server.redact_headers[1]: \"bad header\" is not a valid header name",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("(fine)"), "{err}");
    assert!(!err.contains("redact_headers[0]"), "{err}");

    let short = Extra { storage: "retention = \"1d\"", ..Extra::default() };
    let ok = write_config_with(dir.path(), &short, &format!("{rx}{}", source("fine", "/ok")));
    let (code, out, err) = run(&["check", "--config", ok.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warning: storage.retention: 1day is shorter than 3 days"), "{out}");
}

#[test]
fn check_names_a_bad_postgres_tls_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", ENV_SOURCE);
    let config = config.to_str().unwrap();
    let env = [("HG_TEST_MISSING_SECRET", "x")];
    for (url, want) in [
        ("postgres://u@db.internal/hg?sslmode=allow", "sslmode=\"allow\" is not supported"),
        (
            "postgres://u@db.internal/hg?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert /nonexistent/ca.pem",
        ),
    ] {
        let (code, _, err) = run(&["check", "--config", config], &[env[0], ("HOOKGATE_DATABASE_URL", url)]);
        assert_eq!(code, 1, "{url}: {err}");
        assert!(err.contains("storage.url") && err.contains(want), "{url}: {err}");
    }
    // The admin API open to the network without a token: `serve` would refuse it, so `check` does.
    let other = tempfile::tempdir().unwrap();
    let exposed = write_config(other.path(), "", ENV_SOURCE);
    let text = std::fs::read_to_string(&exposed)
        .unwrap()
        .replace("[admin]\nlisten = \"127.0.0.1:0\"", "[admin]\nlisten = \"0.0.0.0:0\"");
    std::fs::write(&exposed, text).unwrap();
    let (code, _, err) = run(&["check", "--config", exposed.to_str().unwrap()], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("admin.listen") && err.contains("not a loopback address"), "{err}");
    // With a token, but one too short to stand guessing from the network: check and serve refuse
    // it under the key that names it, without showing it.
    for (admin, key, env) in [
        ("token_file = \"short.txt\"", "admin.token_file", vec![env[0]]),
        ("token_env = \"HG_TEST_SHORT_TOKEN\"", "admin.token_env", vec![env[0], ("HG_TEST_SHORT_TOKEN", "t-k")]),
    ] {
        std::fs::write(other.path().join("short.txt"), "t-k\n").unwrap();
        let text = std::fs::read_to_string(&exposed).unwrap();
        let text =
            text.replace("token_file = \"short.txt\"\n", "").replace("token_env = \"HG_TEST_SHORT_TOKEN\"\n", "");
        std::fs::write(&exposed, text.replace("[admin]\n", &format!("[admin]\n{admin}\n"))).unwrap();
        for cmd in ["check", "serve"] {
            let (code, _, err) = run(&[cmd, "--config", exposed.to_str().unwrap()], &env);
            assert_eq!(code, 1, "{cmd} {key}: {err}");
            assert!(err.contains(key) && err.contains("has 3 characters") && err.contains("at least 16"), "{err}");
            assert!(!err.contains("t-k"), "the token is never shown: {err}");
        }
    }
    // 16 characters are enough there, and on loopback any token is.
    std::fs::write(other.path().join("short.txt"), "0123456789abcdef").unwrap();
    let text = std::fs::read_to_string(&exposed)
        .unwrap()
        .replace("token_env = \"HG_TEST_SHORT_TOKEN\"", "token_file = \"short.txt\"");
    std::fs::write(&exposed, &text).unwrap();
    let (code, _, err) = run(&["check", "--config", exposed.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{err}");
    // Checked without connecting: nothing listens at db.internal.
    let url = "postgres://u@db.internal/hg?sslmode=require";
    let (code, _, err) = run(&["check", "--config", config], &[env[0], ("HOOKGATE_DATABASE_URL", url)]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_source_delivers_to_at_most_1024_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for i in 0..1025 {
        body.push_str(&format!("[[destinations]]\nname = \"d{i}\"\ntype = \"exec\"\ncommand = [\"true\"]\n\n"));
    }
    let names: Vec<String> = (0..1025).map(|i| format!("\"d{i}\"")).collect();
    body.push_str(&format!(
        "[[sources]]\nname = \"s\"\npath = \"/s\"\nverify = {{ scheme = \"none\", insecure = true }}\ndeliver_to = [{}]\n",
        names.join(", ")
    ));
    let config = write_config(dir.path(), "", &body);
    let (code, _, err) = run(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sources[0] (s).deliver_to") && err.contains("1025 destinations; at most 1024"), "{err}");
}

#[test]
fn config_defaults_to_hookgate_config_then_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", ENV_SOURCE);
    let check = || {
        let mut cmd = Command::new(binary());
        cmd.arg("check").env("HG_TEST_MISSING_SECRET", "x").env_remove("HOOKGATE_CONFIG");
        cmd
    };
    let out = check().env("HOOKGATE_CONFIG", &config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{}: ok", config.display())));
    // Without either: ./hookgate.toml.
    let out = check().current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hookgate.toml: ok"));
}

#[test]
fn bad_toml_and_unknown_keys_are_user_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "listn = \"x\"", "");
    let (code, _, err) = run(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("listn"), "{err}");
    let (code, _, err) = run(&["check", "--config", "/nonexistent/hookgate.toml"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read config file"), "{err}");
    let (code, _, _) = run(&["serve", "--no-such-flag"], &[]);
    assert_eq!(code, 1, "usage errors exit 1");
    let (code, out, _) = run(&["send", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("SOURCE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_signs_like_the_provider_and_prints_the_answer() {
    let rx = TestReceiver::start(200).await;
    let body = format!(
        "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"{}\"\n\n{}",
        rx.url(),
        hmac_source("s", &["rx"])
    );
    let app = TestApp::spawn(&body).await;
    let config = app.dir.path().join("hookgate.toml");
    let url = format!("http://{}", app.ingest);
    let args: Vec<String> =
        ["send", "s", "--config", config.to_str().unwrap(), "--url", &url, "--data", r#"{"id":"x1"}"#]
            .map(String::from)
            .to_vec();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("200"), "{out}");
    assert!(out.contains("\"queued\""), "{out}");
    let (code, _, err) =
        run(&["send", "nope", "--config", app.dir.path().join("hookgate.toml").to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown source"), "{err}");
}

#[test]
fn the_example_configs_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let env = [
        ("CONTACT_WEBHOOK_SECRET", "x"),
        ("STRIPE_WEBHOOK_SECRET", "y"),
        ("HOOKGATE_ADMIN_TOKEN", "t"),
        ("GITHUB_WEBHOOK_SECRET", "g"),
        ("SHOPIFY_WEBHOOK_SECRET", "s"),
    ];
    for file in ["hookgate.example.toml", "examples/hookgate.toml", "examples/routing.toml"] {
        let (code, out, err) = run(&["check", "--config", &format!("{root}/{file}")], &env);
        assert_eq!(code, 0, "{file}: {out}{err}");
    }
}

#[test]
fn serve_explains_that_rust_destinations_need_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("[[destinations]]\nname = \"fn\"\ntype = \"rust\"\n\n{}", hmac_source("s", &["fn"]));
    let config = write_config(dir.path(), "", &body);
    let (code, _, err) = run(&["serve", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("hookgate::Gateway"), "{err}");
    // `check` accepts the config (it is valid for the library) and says the same.
    let (code, out, err) = run(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("note: destinations [\"fn\"]") && out.contains("--role ingest"), "{out}");
}
