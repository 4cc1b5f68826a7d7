//! The `users` table.

use rusqlite::{params, Connection, OptionalExtension};

use super::{DbError, DbResult};
use crate::domain::Role;

pub struct StoredUser {
    pub id: i64,
    pub login: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: i64,
}

const COLUMNS: &str = "id, login, password_hash, role, created_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredUser> {
    Ok(StoredUser {
        id: row.get(0)?,
        login: row.get(1)?,
        password_hash: row.get(2)?,
        role: row.get(3)?,
        created_at: row.get(4)?,
    })
}

pub fn count(conn: &Connection) -> DbResult<i64> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))?)
}

/// A new user; `Conflict` when the login is taken.
pub fn insert(
    conn: &Connection,
    login: &str,
    password_hash: &str,
    role: Role,
    now: i64,
) -> DbResult<i64> {
    let inserted = conn.execute(
        "INSERT INTO users (login, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![login, password_hash, role, now],
    );
    match inserted {
        Ok(_) => Ok(conn.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Err(DbError::Conflict(format!(
                "login {login:?} is already taken"
            )))
        }
        Err(error) => Err(error.into()),
    }
}

pub fn find_by_login(conn: &Connection, login: &str) -> DbResult<Option<StoredUser>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM users WHERE login = ?1"),
            [login],
            from_row,
        )
        .optional()?)
}

pub fn find_by_id(conn: &Connection, id: i64) -> DbResult<Option<StoredUser>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

/// Every user, by id.
pub fn list(conn: &Connection) -> DbResult<Vec<StoredUser>> {
    let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY id"))?;
    let users = statement
        .query_map([], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(users)
}

/// Sets a user's password and revokes all of their tokens, together.
pub fn change_password(conn: &mut Connection, id: i64, password_hash: &str) -> DbResult<()> {
    let tx = super::write_transaction(conn)?;
    let changed = tx.execute(
        "UPDATE users SET password_hash = ?1 WHERE id = ?2",
        params![password_hash, id],
    )?;
    if changed == 0 {
        return Err(DbError::NotFound(format!("user {id}")));
    }
    super::sessions::delete_all_of_user(&tx, id)?;
    tx.commit()?;
    Ok(())
}
