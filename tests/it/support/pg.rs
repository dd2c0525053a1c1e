//! PostgreSQL for tests: the server named by HOOKGATE_TEST_DATABASE_URL, one fresh schema per test
//! (so tests run in parallel and rerun), selected through the URL's `options=-csearch_path=...`.

use std::time::{SystemTime, UNIX_EPOCH};

/// The server under test, or None when it is not configured. In CI (`CI=true`) a missing
/// variable fails the test: the PostgreSQL suite must never be skipped silently there.
pub fn test_database_url() -> Option<String> {
    match std::env::var("HOOKGATE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!(
            "CI is set but HOOKGATE_TEST_DATABASE_URL is not: the PostgreSQL store would go untested. \
             Export e.g. HOOKGATE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        ),
        _ => {
            eprintln!("HOOKGATE_TEST_DATABASE_URL is not set: PostgreSQL cases skipped");
            None
        }
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to HOOKGATE_TEST_DATABASE_URL: {e}"));
    tokio::spawn(conn);
    client
}

/// Creates an empty schema and returns a URL whose connections use only it. Schemas left by
/// earlier runs (older than an hour) are dropped on the way.
pub async fn fresh_schema(base: &str) -> String {
    let client = connect(base).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let name = format!("hgt_{now}_{:08x}", rand::random::<u32>());
    client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
    let stale = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'hgt\\_%' AND nspname < $1",
            &[&format!("hgt_{}", now.saturating_sub(3_600_000))],
        )
        .await
        .unwrap_or_default();
    for row in stale {
        let old: String = row.get(0);
        let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {old} CASCADE")).await;
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{name}")
}

/// A fresh schema on the test server, if there is one.
pub async fn fresh_database() -> Option<String> {
    match test_database_url() {
        Some(base) => Some(fresh_schema(&base).await),
        None => None,
    }
}
