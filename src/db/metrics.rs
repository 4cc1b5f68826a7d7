//! What `/metrics` reads from the database at each scrape: one short count each (the webhook
//! outbox's is `db::webhooks::outbox_size`).

use rusqlite::Connection;

use super::DbResult;

/// Numbers waiting for a retry or for the per-day cap: live numbers still to dial with a due
/// time. Walks the `numbers_retry_due` index, so it costs the queue's length, not the table's.
pub fn retry_queue(conn: &Connection) -> DbResult<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM numbers INDEXED BY numbers_retry_due
         WHERE next_attempt_at IS NOT NULL AND deleted_at IS NULL AND call_status = 'init'",
        [],
        |row| row.get(0),
    )?)
}
