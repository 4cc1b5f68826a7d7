//! The `numbers` table: the phone numbers of a task and each one's call result.

use rusqlite::{params, Connection, Row};

use super::{DbError, DbResult, Page};

#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    pub id: i64,
    pub group_id: i64,
    pub dest_number: String,
    pub external_id: String,
    pub uuid: String,
    pub call_status: String,
    pub outbound_call: i64,
    pub dtmf: String,
    pub cause: String,
    pub call_start_time: Option<i64>,
    pub call_answer_time: Option<i64>,
    pub call_end_time: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNumber {
    pub dest_number: String,
    pub external_id: String,
}

const COLUMNS: &str = "id, group_id, dest_number, external_id, uuid, call_status, outbound_call, dtmf, cause,
    call_start_time, call_answer_time, call_end_time, created_at, updated_at, deleted_at";

fn from_row(row: &Row) -> rusqlite::Result<Number> {
    Ok(Number {
        id: row.get(0)?,
        group_id: row.get(1)?,
        dest_number: row.get(2)?,
        external_id: row.get(3)?,
        uuid: row.get(4)?,
        call_status: row.get(5)?,
        outbound_call: row.get(6)?,
        dtmf: row.get(7)?,
        cause: row.get(8)?,
        call_start_time: row.get(9)?,
        call_answer_time: row.get(10)?,
        call_end_time: row.get(11)?,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
        deleted_at: row.get(14)?,
    })
}

fn require_live_task(conn: &Connection, task_id: i64) -> DbResult<()> {
    super::tasks::require_live(conn, task_id)
}

/// Adds numbers to a live task in one transaction: all are written or none.
pub fn import(conn: &mut Connection, task_id: i64, numbers: &[NewNumber], now: i64) -> DbResult<usize> {
    let tx = conn.transaction()?;
    require_live_task(&tx, task_id)?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO numbers (group_id, dest_number, external_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
        )?;
        for number in numbers {
            insert.execute(params![task_id, number.dest_number, number.external_id, now])?;
        }
    }
    tx.commit()?;
    Ok(numbers.len())
}

/// One page of a live task's numbers, newest first (as the vendor lists them), and their count.
pub fn list(conn: &Connection, task_id: i64, page: Page) -> DbResult<(Vec<Number>, i64)> {
    require_live_task(conn, task_id)?;
    let total: i64 =
        conn.query_row("SELECT count(*) FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL", [task_id], |row| {
            row.get(0)
        })?;
    let numbers = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL
             ORDER BY id DESC LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![task_id, page.per_page, page.offset()], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((numbers, total))
}

/// Visits every number of a live task in id order without holding them all in memory.
pub fn for_each(conn: &Connection, task_id: i64, mut visit: impl FnMut(Number)) -> DbResult<()> {
    require_live_task(conn, task_id)?;
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL ORDER BY id"
    ))?;
    let mut rows = statement.query([task_id])?;
    while let Some(row) = rows.next()? {
        visit(from_row(row).map_err(DbError::from)?);
    }
    Ok(())
}
