//! The `sessions` table: login tokens, kept as their SHA-256.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

pub fn insert(
    conn: &Connection,
    token_sha256: &str,
    user_id: i64,
    now: i64,
    expires_at: i64,
) -> DbResult<()> {
    // Logging in is also when stale tokens are swept, so the table stays small without a timer.
    conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
    conn.execute(
        "INSERT INTO sessions (token_sha256, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![token_sha256, user_id, now, expires_at],
    )?;
    Ok(())
}

/// The user (id and role) a live token belongs to; `None` when unknown or expired.
pub fn user_of(
    conn: &Connection,
    token_sha256: &str,
    now: i64,
) -> DbResult<Option<(i64, crate::domain::Role)>> {
    Ok(conn
        .query_row(
            "SELECT users.id, users.role FROM sessions JOIN users ON users.id = sessions.user_id
             WHERE sessions.token_sha256 = ?1 AND sessions.expires_at > ?2",
            params![token_sha256, now],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?)
}

/// Revokes every token of a user; how many there were.
pub fn delete_all_of_user(conn: &Connection, user_id: i64) -> DbResult<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?)
}

/// Revokes a token; false when it was not there.
pub fn delete(conn: &Connection, token_sha256: &str) -> DbResult<bool> {
    Ok(conn.execute(
        "DELETE FROM sessions WHERE token_sha256 = ?1",
        [token_sha256],
    )? > 0)
}
