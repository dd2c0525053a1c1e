//! The shared schema: migrations/postgres/, applied once per version under an advisory lock.

use std::collections::HashSet;

use deadpool_postgres::Pool;

use super::*;

/// Schema versions, applied in order, each once (recorded in `hookgate_migrations`).
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../../migrations/postgres/0002_due_by_destination.sql")),
    (3, include_str!("../../../migrations/postgres/0003_derived_delivery_ids.sql")),
    (4, include_str!("../../../migrations/postgres/0004_routing.sql")),
    (5, include_str!("../../../migrations/postgres/0005_destination_state.sql")),
    (6, include_str!("../../../migrations/postgres/0006_ordering_key.sql")),
    (7, include_str!("../../../migrations/postgres/0007_traceparent.sql")),
];

pub(super) async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Rebuilding an index of a large table takes longer than any request may.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    // Nodes starting together queue here; the first applies, the others find it done. The key is
    // per schema, so separate schemas in one database (tests, tenants) do not wait for each other.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('hookgate migrations ' || coalesce(current_schema(), '')))", &[])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hookgate_migrations (
             version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: HashSet<i32> = tx
        .query("SELECT version FROM hookgate_migrations", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for (version, sql) in MIGRATIONS {
        if !applied.contains(version) {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO hookgate_migrations (version) VALUES ($1)", &[version]).await?;
            tracing::info!(version, "database schema migrated");
        }
    }
    let known = MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
        tracing::warn!(schema = newer, known, "the database schema is newer than this hookgate; upgrade this node");
    }
    tx.commit().await?;
    Ok(())
}
