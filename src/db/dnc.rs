//! The `dnc` table: the do-not-call list (schema step 7). An entry with `task_id` NULL holds for
//! every task, one with a task id for that task only; a number has at most one entry per scope.
//! Imports add listed numbers already finished (`db::numbers::import_streaming`); the dialer checks
//! the list again before every call.

use rusqlite::{params, params_from_iter, types::Value, Connection, Row};

use super::{DbError, DbResult, Page};
use crate::domain::DestNumber;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncEntry {
    pub id: i64,
    pub number: String,
    /// `None`: every task.
    pub task_id: Option<i64>,
    pub note: String,
    pub created_at: i64,
}

/// An entry to add, its values checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub number: String,
    pub task_id: Option<i64>,
    pub note: String,
}

/// Which entries a list shows; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DncFilter {
    /// The start of `number`.
    pub number_prefix: Option<DestNumber>,
    /// Only the entries limited to this task.
    pub task_id: Option<i64>,
}

/// What an add did: entries written, and entries already listed in the same scope (or given
/// twice in the same request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    pub added: usize,
    pub duplicates: usize,
}

const COLUMNS: &str = "id, number, task_id, note, created_at";

fn from_row(row: &Row) -> rusqlite::Result<DncEntry> {
    Ok(DncEntry {
        id: row.get(0)?,
        number: row.get(1)?,
        task_id: row.get(2)?,
        note: row.get(3)?,
        created_at: row.get(4)?,
    })
}

/// One page of the entries that pass `filter`, newest first (highest id first), and their count.
/// A number prefix is a range of the `dnc_entry` index, a task a range of `dnc_by_task`.
pub fn list(conn: &Connection, filter: &DncFilter, page: Page) -> DbResult<(Vec<DncEntry>, i64)> {
    // One read transaction: the count and the page are of the same moment.
    let tx = conn.unchecked_transaction()?;
    let mut condition = String::from("1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(prefix) = &filter.number_prefix {
        // Numbers are ASCII (digits, +, *, #), all below U+007F.
        condition.push_str(" AND number >= ? AND number < ?");
        args.push(Value::Text(prefix.as_str().to_owned()));
        args.push(Value::Text(format!("{}\u{7f}", prefix.as_str())));
    }
    if let Some(task_id) = filter.task_id {
        condition.push_str(" AND task_id = ?");
        args.push(Value::Integer(task_id));
    }
    let total: i64 = tx
        .prepare_cached(&format!("SELECT count(*) FROM dnc WHERE {condition}"))?
        .query_row(params_from_iter(args.iter()), |row| row.get(0))?;
    args.push(Value::Integer(page.per_page as i64));
    args.push(Value::Integer(page.offset()));
    let entries = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM dnc WHERE {condition} ORDER BY id DESC LIMIT ? OFFSET ?"
        ))?
        .query_map(params_from_iter(args.iter()), from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((entries, total))
}

/// Adds `entries` in one transaction, all or none: an entry whose `task_id` is not a live task
/// refuses the whole request (`NotFound` naming `data[i].task_id`). An entry already listed for
/// its scope, or given earlier in `entries`, is a duplicate and changes nothing.
pub fn add(conn: &mut Connection, entries: &[NewEntry], now: i64) -> DbResult<Added> {
    let tx = super::write_transaction(conn)?;
    {
        let mut live_task =
            tx.prepare_cached("SELECT 1 FROM tasks WHERE id = ?1 AND deleted_at IS NULL")?;
        let mut checked = std::collections::HashSet::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(task_id) = entry.task_id else {
                continue;
            };
            if checked.insert(task_id) && !live_task.exists([task_id])? {
                return Err(DbError::NotFound(format!(
                    "data[{index}].task_id: task {task_id}"
                )));
            }
        }
    }
    let mut added = 0;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO dnc (number, task_id, note, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )?;
        for entry in entries {
            added += insert.execute(params![entry.number, entry.task_id, entry.note, now])?;
        }
    }
    tx.commit()?;
    Ok(Added {
        added,
        duplicates: entries.len() - added,
    })
}

/// Removes an entry; `NotFound` when there is none with this id.
pub fn delete(conn: &Connection, id: i64) -> DbResult<()> {
    match conn.execute("DELETE FROM dnc WHERE id = ?1", [id])? {
        0 => Err(DbError::NotFound(format!("do-not-call entry {id}"))),
        _ => Ok(()),
    }
}

/// How many entries hold for `task_id`: those for every task and its own (a range of
/// `dnc_by_task` each).
pub(super) fn count_for_task(conn: &Connection, task_id: i64) -> DbResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM dnc WHERE task_id IS NULL)
                  + (SELECT count(*) FROM dnc WHERE task_id = ?1)",
        )?
        .query_row([task_id], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, Db};

    fn entry(number: &str, task_id: Option<i64>) -> NewEntry {
        NewEntry {
            number: number.into(),
            task_id,
            note: String::new(),
        }
    }

    #[test]
    fn one_entry_per_number_and_scope() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let mut conn = db.connection().unwrap();
        let task = db::tasks::create_named(&mut conn, "t", 1);
        let added = add(
            &mut conn,
            &[
                entry("1000", None),
                entry("1000", Some(task)),
                entry("1000", None),
                entry("2000", Some(task)),
            ],
            2,
        )
        .unwrap();
        assert_eq!(
            added,
            Added {
                added: 3,
                duplicates: 1
            }
        );
        assert_eq!(count_for_task(&conn, task).unwrap(), 3);
        assert_eq!(count_for_task(&conn, task + 1).unwrap(), 1);
        // An unknown task refuses everything.
        let refused = add(
            &mut conn,
            &[entry("3000", None), entry("3000", Some(99))],
            3,
        );
        assert!(
            matches!(refused, Err(DbError::NotFound(ref what)) if what.starts_with("data[1].task_id"))
        );
        let all = Page {
            number: 1,
            per_page: 10,
        };
        let (entries, total) = list(&conn, &DncFilter::default(), all).unwrap();
        assert_eq!(total, 3);
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.number.as_str(), e.task_id))
                .collect::<Vec<_>>(),
            vec![("2000", Some(task)), ("1000", Some(task)), ("1000", None)],
            "newest first; the duplicate took no row"
        );
        let (_, of_task) = list(
            &conn,
            &DncFilter {
                task_id: Some(task),
                ..Default::default()
            },
            all,
        )
        .unwrap();
        assert_eq!(of_task, 2);
        delete(&conn, entries[0].id).unwrap();
        assert!(matches!(
            delete(&conn, entries[0].id),
            Err(DbError::NotFound(_))
        ));
    }
}
