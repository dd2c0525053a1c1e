//! The embedded schema: migrations/sqlite/, applied in order at open.

use rusqlite::Connection;

/// Applied in order, each once; `PRAGMA user_version` counts those applied. (Databases made before
/// the count say 0: the first two are idempotent and run again harmlessly.)
pub(super) const MIGRATIONS: [&str; 12] = [
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_received_at_index.sql"),
    include_str!("../../../migrations/sqlite/0003_derived_delivery_ids.sql"),
    include_str!("../../../migrations/sqlite/0004_due_by_destination.sql"),
    include_str!("../../../migrations/sqlite/0005_status_check.sql"),
    include_str!("../../../migrations/sqlite/0006_routing.sql"),
    include_str!("../../../migrations/sqlite/0007_destination_state.sql"),
    include_str!("../../../migrations/sqlite/0008_ordering_key.sql"),
    include_str!("../../../migrations/sqlite/0009_dedupe_table.sql"),
    include_str!("../../../migrations/sqlite/0010_traceparent.sql"),
    include_str!("../../../migrations/sqlite/0011_failed_index.sql"),
    include_str!("../../../migrations/sqlite/0012_checks_without_in_lists.sql"),
];

/// Brings the schema up to date, each migration in its own transaction.
pub(super) fn migrate(conn: &Connection) -> Result<(), String> {
    let applied: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if applied > MIGRATIONS.len() {
        return Err(format!(
            "its schema version ({applied}) is newer than this hookgate knows ({}); upgrade hookgate",
            MIGRATIONS.len()
        ));
    }
    if applied < MIGRATIONS.len() {
        // A rebuild of a large table takes a while (about 1.4 s per 500,000 deliveries): say why.
        tracing::info!(from = applied, to = MIGRATIONS.len(), "upgrading the database schema");
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let done = conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {};\nCOMMIT;", i + 1));
        if done.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        done.map_err(|e| format!("schema migration {} failed: {e}", i + 1))?;
    }
    Ok(())
}
