//! The `users` table.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

pub struct StoredUser {
    pub id: i64,
    pub password_hash: String,
}

pub fn count(conn: &Connection) -> DbResult<i64> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))?)
}

pub fn insert(conn: &Connection, login: &str, password_hash: &str, now: i64) -> DbResult<i64> {
    conn.execute(
        "INSERT INTO users (login, password_hash, created_at) VALUES (?1, ?2, ?3)",
        params![login, password_hash, now],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn find_by_login(conn: &Connection, login: &str) -> DbResult<Option<StoredUser>> {
    Ok(conn
        .query_row(
            "SELECT id, password_hash FROM users WHERE login = ?1",
            [login],
            |row| {
                Ok(StoredUser {
                    id: row.get(0)?,
                    password_hash: row.get(1)?,
                })
            },
        )
        .optional()?)
}
