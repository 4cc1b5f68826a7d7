//! The `media_files` table: uploaded prompts.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{DbError, DbResult, Page};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    pub id: i64,
    pub name: String,
    pub path: String,
    pub media_type: String,
    pub bytes: i64,
    pub duration_ms: i64,
    pub created_at: i64,
}

fn from_row(row: &Row) -> rusqlite::Result<MediaFile> {
    Ok(MediaFile {
        id: row.get(0)?,
        name: row.get(1)?,
        path: row.get(2)?,
        media_type: row.get(3)?,
        bytes: row.get(4)?,
        duration_ms: row.get(5)?,
        created_at: row.get(6)?,
    })
}

/// Records a stored file. `store` writes it once its id is known, inside the same transaction,
/// so that a failure leaves neither a row without a file nor the reverse.
pub fn insert(
    conn: &mut Connection,
    name: &str,
    bytes: i64,
    duration_ms: i64,
    now: i64,
    store: impl FnOnce(i64) -> std::io::Result<String>,
) -> DbResult<MediaFile> {
    let tx = super::write_transaction(conn)?;
    tx.execute(
        "INSERT INTO media_files (name, path, bytes, duration_ms, created_at) VALUES (?1, '', ?2, ?3, ?4)",
        params![name, bytes, duration_ms, now],
    )?;
    let id = tx.last_insert_rowid();
    let path =
        store(id).map_err(|e| super::DbError::Worker(format!("storing media file {id}: {e}")))?;
    tx.execute(
        "UPDATE media_files SET path = ?2 WHERE id = ?1",
        params![id, path],
    )?;
    tx.commit()?;
    Ok(MediaFile {
        id,
        name: name.to_owned(),
        path,
        media_type: "UPLOAD".into(),
        bytes,
        duration_ms,
        created_at: now,
    })
}

/// One page of the stored files, newest first, and their count.
pub fn list(conn: &Connection, page: Page) -> DbResult<(Vec<MediaFile>, i64)> {
    let total = conn.query_row(
        "SELECT count(*) FROM media_files WHERE deleted_at IS NULL",
        [],
        |row| row.get(0),
    )?;
    let files = conn
        .prepare(
            "SELECT id, name, path, media_type, bytes, duration_ms, created_at FROM media_files
             WHERE deleted_at IS NULL ORDER BY id DESC LIMIT ?1 OFFSET ?2",
        )?
        .query_map(params![page.per_page, page.offset()], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((files, total))
}

/// Where a live media file is stored (as recorded when it was uploaded).
pub fn stored_path(conn: &Connection, id: i64) -> DbResult<String> {
    conn.query_row(
        "SELECT path FROM media_files WHERE id = ?1 AND deleted_at IS NULL",
        [id],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound(format!("media file {id}")))
}
