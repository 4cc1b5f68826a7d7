//! `task_counts` and `task_cause_counts`: each task's progress, kept by triggers on `numbers` (see
//! schema step 4) in the transaction of every change, so reading it never scans the numbers.
//! `task_status_buckets` and `task_cause_buckets` (schema step 6) count the same per bucket of
//! 4,096 ids, for `db::numbers::list` to find where a filtered page starts.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row};

use super::DbResult;
use crate::domain::TaskStatus;

/// A task's numbers counted by status, answered and cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCounts {
    pub id: i64,
    pub status: TaskStatus,
    pub deleted: bool,
    pub total: i64,
    pub init: i64,
    pub calling: i64,
    pub done: i64,
    pub stop: i64,
    pub answered: i64,
    /// Finished numbers per hangup cause name; causes with no number are left out.
    pub causes: BTreeMap<String, i64>,
    /// Numbers waiting (`init`) for a retry or for the per-day cap.
    pub retry_pending: i64,
    /// The later of the task's own change and its numbers' last change, unix seconds.
    pub updated_at: i64,
    /// Its result webhooks by state.
    pub webhooks: super::webhooks::WebhookCounts,
}

const SELECT: &str = "SELECT t.id, t.status, t.deleted_at IS NOT NULL,
        coalesce(c.total, 0), coalesce(c.init, 0), coalesce(c.calling, 0), coalesce(c.done, 0),
        coalesce(c.stop, 0), coalesce(c.answered, 0), max(t.updated_at, coalesce(c.updated_at, 0))
    FROM tasks t LEFT JOIN task_counts c ON c.group_id = t.id";

fn from_row(row: &Row) -> rusqlite::Result<TaskCounts> {
    Ok(TaskCounts {
        id: row.get(0)?,
        status: row.get(1)?,
        deleted: row.get(2)?,
        total: row.get(3)?,
        init: row.get(4)?,
        calling: row.get(5)?,
        done: row.get(6)?,
        stop: row.get(7)?,
        answered: row.get(8)?,
        causes: BTreeMap::new(),
        retry_pending: 0,
        updated_at: row.get(9)?,
        webhooks: Default::default(),
    })
}

fn with_causes(conn: &Connection, mut counts: TaskCounts) -> DbResult<TaskCounts> {
    counts.causes = conn
        .prepare_cached(
            "SELECT cause, count FROM task_cause_counts WHERE group_id = ?1 AND count > 0 ORDER BY cause",
        )?
        .query_map([counts.id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    counts.webhooks = super::webhooks::task_counts(conn, counts.id)?;
    counts.retry_pending = retry_pending(conn, counts.id)?;
    Ok(counts)
}

/// A task's numbers waiting for a retry or for the per-day cap: a range of `numbers_retry_due`.
fn retry_pending(conn: &Connection, task_id: i64) -> DbResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM numbers INDEXED BY numbers_retry_due
             WHERE group_id = ?1 AND next_attempt_at IS NOT NULL AND deleted_at IS NULL
               AND call_status = 'init'",
        )?
        .query_row([task_id], |row| row.get(0))?)
}

/// Counts `added` numbers just inserted into a task, all waiting (`init`), live, unanswered and
/// without a cause, as every writer inserts them. Numbers have no trigger on INSERT (it would cost
/// a statement journal per row): whoever inserts numbers calls this in the same transaction.
pub fn count_added_numbers(
    conn: &Connection,
    task_id: i64,
    added: usize,
    now: i64,
) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE task_counts SET total = total + ?2, init = init + ?2, updated_at = max(updated_at, ?3)
         WHERE group_id = ?1",
    )?
    .execute(rusqlite::params![task_id, added as i64, now])?;
    count_added_in_buckets(conn, task_id, added)
}

/// log2 of the ids in a bucket of `task_status_buckets` and `task_cause_buckets` (schema step 6).
pub(super) const BUCKET_BITS: u32 = 12;

/// Counts the `added` numbers just inserted (the task's last `seq` values) in the `init` buckets.
/// They are found from their first and last id: when those span exactly `added` ids (one writer
/// inserted them in one go, as always), each bucket's share is arithmetic; otherwise a scan of the
/// added rows groups them.
fn count_added_in_buckets(conn: &Connection, task_id: i64, added: usize) -> DbResult<()> {
    if added == 0 {
        return Ok(());
    }
    let added = added as i64;
    let last = super::numbers::last_seq(conn, task_id)?;
    let first = last - added + 1;
    let id_at = |seq: i64| -> DbResult<Option<i64>> {
        Ok(conn
            .prepare_cached("SELECT id FROM numbers WHERE group_id = ?1 AND seq = ?2")?
            .query_row([task_id, seq], |row| row.get(0))
            .optional()?)
    };
    if let (Some(low), Some(high)) = (id_at(first)?, id_at(last)?) {
        if high - low + 1 == added {
            let mut add = conn.prepare_cached(
                "INSERT INTO task_status_buckets (group_id, call_status, bucket, count)
                 VALUES (?1, 'init', ?2, ?3)
                 ON CONFLICT (group_id, call_status, bucket) DO UPDATE SET count = count + excluded.count",
            )?;
            for bucket in (low >> BUCKET_BITS)..=(high >> BUCKET_BITS) {
                let start = (bucket << BUCKET_BITS).max(low);
                let end = (((bucket + 1) << BUCKET_BITS) - 1).min(high);
                add.execute(rusqlite::params![task_id, bucket, end - start + 1])?;
            }
            return Ok(());
        }
    }
    conn.prepare_cached(
        "INSERT INTO task_status_buckets (group_id, call_status, bucket, count)
         SELECT ?1, 'init', id >> 12, count(*) FROM numbers
         WHERE group_id = ?1 AND seq BETWEEN ?2 AND ?3 AND deleted_at IS NULL
         GROUP BY id >> 12
         ON CONFLICT (group_id, call_status, bucket) DO UPDATE SET count = count + excluded.count",
    )?
    .execute(rusqlite::params![task_id, first, last])?;
    Ok(())
}

/// The counts of a live task; `None` when it does not exist or was deleted.
pub fn of_live_task(conn: &Connection, id: i64) -> DbResult<Option<TaskCounts>> {
    of_task(conn, id).map(|counts| counts.filter(|c| !c.deleted))
}

/// The counts of a task, deleted or not; `None` when it never existed.
pub fn of_task(conn: &Connection, id: i64) -> DbResult<Option<TaskCounts>> {
    let counts = conn
        .prepare_cached(&format!("{SELECT} WHERE t.id = ?1"))?
        .query_row([id], from_row)
        .optional()?;
    counts.map(|c| with_causes(conn, c)).transpose()
}

/// The counts of every live running task: a point lookup each, no scan of their numbers.
pub fn of_running_tasks(conn: &Connection) -> DbResult<Vec<TaskCounts>> {
    let tasks = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE t.status = 'running' AND t.deleted_at IS NULL ORDER BY t.id"
        ))?
        .query_map([], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    tasks.into_iter().map(|c| with_causes(conn, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, numbers::NewNumber, Db};

    /// The counters as a full scan of the numbers table finds them.
    fn scanned(conn: &Connection, id: i64) -> (Vec<i64>, BTreeMap<String, i64>) {
        let row = conn
            .query_row(
                "SELECT count(*), count(CASE WHEN call_status = 'init' THEN 1 END),
                    count(CASE WHEN call_status = 'calling' THEN 1 END),
                    count(CASE WHEN call_status = 'done' THEN 1 END),
                    count(CASE WHEN call_status = 'stop' THEN 1 END), count(call_answer_time)
                 FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL",
                [id],
                |r| (0..6).map(|i| r.get(i)).collect::<Result<Vec<i64>, _>>(),
            )
            .unwrap();
        let causes = conn
            .prepare("SELECT cause, count(*) FROM numbers WHERE group_id = ?1 AND cause <> '' AND deleted_at IS NULL GROUP BY cause")
            .unwrap()
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (row, causes)
    }

    fn counted(conn: &Connection, id: i64) -> (Vec<i64>, BTreeMap<String, i64>) {
        let c = of_task(conn, id).unwrap().unwrap();
        (
            vec![c.total, c.init, c.calling, c.done, c.stop, c.answered],
            c.causes,
        )
    }

    #[test]
    fn every_writer_keeps_the_counters_equal_to_a_full_count() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let mut conn = db.connection().unwrap();
        let id = db::tasks::create_named(&mut conn, "t", 10);
        let numbers: Vec<NewNumber> = (0..6)
            .map(|i| NewNumber {
                dest_number: format!("100{i}"),
                external_id: String::new(),
            })
            .collect();
        db::numbers::import(&mut conn, id, &numbers, 11).unwrap();
        assert_eq!(counted(&conn, id), scanned(&conn, id));
        assert_eq!(counted(&conn, id).0, vec![6, 6, 0, 0, 0, 0]);
        db::tasks::start(&mut conn, &[id], 12).unwrap();
        let first = db::numbers::claim_next(&conn, id, "u1", 13, &mut Default::default())
            .unwrap()
            .unwrap();
        let second = db::numbers::claim_next(&conn, id, "u2", 13, &mut Default::default())
            .unwrap()
            .unwrap();
        let third = db::numbers::claim_next(&conn, id, "u3", 13, &mut Default::default())
            .unwrap()
            .unwrap();
        db::numbers::release_claim(&conn, third.id, "u3").unwrap();
        db::numbers::record_answer(&conn, first.id, "u1", 14).unwrap();
        assert_eq!(counted(&conn, id), scanned(&conn, id));
        let result = db::numbers::CallResult {
            cause: crate::domain::HangupCause::NORMAL_CLEARING,
            sip_code: None,
            answered_at: None,
            ended_at: 15,
            dtmf: String::new(),
            record_path: String::new(),
        };
        db::numbers::finish(&conn, first.id, "u1", &result).unwrap();
        assert_eq!(counted(&conn, id), scanned(&conn, id));
        db::tasks::stop(&mut conn, &[id], 16).unwrap();
        db::numbers::finish_interrupted(&conn, crate::domain::HangupCause::SYSTEM_SHUTDOWN)
            .unwrap();
        let (counts, causes) = counted(&conn, id);
        assert_eq!((counts.clone(), causes.clone()), scanned(&conn, id));
        assert_eq!(counts, vec![6, 0, 0, 2, 4, 1]);
        assert_eq!(causes.get("SYSTEM_SHUTDOWN"), Some(&1));
        assert_eq!(second.id, first.id + 1);
        db::tasks::start(&mut conn, &[id], 17).unwrap();
        assert_eq!(counted(&conn, id), scanned(&conn, id));
        let copy = db::tasks::clone(&mut conn, id, "copy", "", true, 18).unwrap();
        assert_eq!(counted(&conn, copy), scanned(&conn, copy));
        assert_eq!(counted(&conn, copy).0, vec![6, 6, 0, 0, 0, 0]);
        conn.execute(
            "UPDATE numbers SET deleted_at = 19 WHERE id = ?1",
            [first.id],
        )
        .unwrap();
        conn.execute("DELETE FROM numbers WHERE id = ?1", [second.id])
            .unwrap();
        assert_eq!(counted(&conn, id), scanned(&conn, id));
        db::tasks::delete(&mut conn, id, 20).unwrap();
        assert!(of_live_task(&conn, id).unwrap().is_none());
        assert!(of_task(&conn, id).unwrap().unwrap().deleted);
    }

    /// (task, call_status or "cause call_status", bucket, count) rows.
    type Buckets = Vec<(i64, String, i64, i64)>;

    /// The bucket counts of every task (schema step 6), zeros left out, and the same as a full
    /// scan of the numbers table finds them.
    fn buckets(conn: &Connection) -> (Buckets, Buckets) {
        let read = |sql: &str| {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        };
        let kept = (
            read("SELECT group_id, call_status, bucket, count FROM task_status_buckets WHERE count <> 0 ORDER BY 1, 2, 3"),
            read("SELECT group_id, cause || ' ' || call_status, bucket, count FROM task_cause_buckets WHERE count <> 0 ORDER BY 1, 2, 3"),
        );
        let scanned = (
            read("SELECT group_id, call_status, id >> 12, count(*) FROM numbers WHERE deleted_at IS NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
            read("SELECT group_id, cause || ' ' || call_status, id >> 12, count(*) FROM numbers WHERE deleted_at IS NULL AND cause <> '' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
        );
        assert_eq!(kept, scanned);
        kept
    }

    #[test]
    fn every_writer_keeps_the_bucket_counts_equal_to_a_full_count() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let mut conn = db.connection().unwrap();
        let id = db::tasks::create_named(&mut conn, "t", 10);
        let other = db::tasks::create_named(&mut conn, "other", 10);
        // Across two buckets (ids 1..=5000), then a second import that shares the last one.
        let numbers = |n: usize, from: usize| -> Vec<NewNumber> {
            (from..from + n)
                .map(|i| NewNumber {
                    dest_number: format!("1{i:06}"),
                    external_id: String::new(),
                })
                .collect()
        };
        db::numbers::import(&mut conn, id, &numbers(5000, 0), 11).unwrap();
        db::numbers::import(&mut conn, other, &numbers(10, 0), 11).unwrap();
        db::numbers::import(&mut conn, id, &numbers(100, 5000), 11).unwrap();
        let (status, _) = buckets(&conn);
        assert_eq!(
            status,
            vec![
                (id, "init".to_owned(), 0, 4095),
                (id, "init".to_owned(), 1, 905 + 100),
                (other, "init".to_owned(), 1, 10),
            ]
        );
        // Numbers added with ids that are not one run (two writers' rows interleaved) are
        // counted by a scan.
        {
            let tx = conn.transaction().unwrap();
            for (i, task) in [id, other, id, other, id].into_iter().enumerate() {
                let seq = db::numbers::last_seq(&tx, task).unwrap() + 1;
                tx.execute(
                    "INSERT INTO numbers (group_id, dest_number, created_at, updated_at, seq) VALUES (?1, ?2, 0, 0, ?3)",
                    rusqlite::params![task, format!("2{i}"), seq],
                )
                .unwrap();
            }
            count_added_numbers(&tx, id, 3, 12).unwrap();
            count_added_numbers(&tx, other, 2, 12).unwrap();
            tx.commit().unwrap();
        }
        buckets(&conn);
        db::tasks::start(&mut conn, &[id], 12).unwrap();
        let claimed: Vec<_> = (0..5)
            .map(|i| {
                db::numbers::claim_next(&conn, id, &format!("u{i}"), 13, &mut Default::default())
                    .unwrap()
                    .unwrap()
            })
            .collect();
        db::numbers::release_claim(&conn, claimed[4].id, "u4").unwrap();
        db::numbers::record_answer(&conn, claimed[0].id, "u0", 14).unwrap();
        buckets(&conn);
        let result = db::numbers::CallResult {
            cause: crate::domain::HangupCause::USER_BUSY,
            sip_code: None,
            answered_at: None,
            ended_at: 15,
            dtmf: String::new(),
            record_path: String::new(),
        };
        db::numbers::finish(&conn, claimed[0].id, "u0", &result).unwrap();
        db::numbers::finish(&conn, claimed[1].id, "u1", &result).unwrap();
        buckets(&conn);
        db::tasks::stop(&mut conn, &[id], 16).unwrap();
        db::numbers::finish_interrupted(&conn, crate::domain::HangupCause::SYSTEM_SHUTDOWN)
            .unwrap();
        let (_, causes) = buckets(&conn);
        assert_eq!(causes.iter().map(|c| c.3).sum::<i64>(), 4);
        db::tasks::start(&mut conn, &[id], 17).unwrap();
        buckets(&conn);
        db::tasks::clone(&mut conn, id, "copy", "", true, 18).unwrap();
        buckets(&conn);
        conn.execute(
            "UPDATE numbers SET deleted_at = 19 WHERE id = ?1",
            [claimed[0].id],
        )
        .unwrap();
        conn.execute("DELETE FROM numbers WHERE id = ?1", [claimed[1].id])
            .unwrap();
        conn.execute(
            "UPDATE numbers SET group_id = ?1, seq = NULL WHERE id = ?2",
            [other, claimed[2].id],
        )
        .unwrap();
        conn.execute(
            "UPDATE numbers SET id = 100000 WHERE id = ?1",
            [claimed[3].id],
        )
        .unwrap();
        buckets(&conn);
        db::tasks::delete(&mut conn, id, 20).unwrap();
        buckets(&conn);
    }

    /// Listed numbers are imported as `done`/`DNC` and duplicates skipped: the counters and the
    /// buckets stay equal to a full count, in a task's first import (no bucket row yet) and in
    /// later ones across a bucket edge.
    #[test]
    fn imports_of_listed_and_repeated_numbers_keep_the_counts() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let mut conn = db.connection().unwrap();
        let id = db::tasks::create_named(&mut conn, "t", 10);
        let other = db::tasks::create_named(&mut conn, "other", 10);
        let entry = |number: String, task_id: Option<i64>| db::dnc::NewEntry {
            number,
            task_id,
            note: String::new(),
        };
        // Every 7th number for every task, every 11th for `id` only.
        let mut entries: Vec<_> = (0..6000)
            .step_by(7)
            .map(|i| entry(format!("1{i:06}"), None))
            .collect();
        entries.extend(
            (0..6000)
                .step_by(11)
                .map(|i| entry(format!("1{i:06}"), Some(id))),
        );
        db::dnc::add(&mut conn, &entries, 10).unwrap();
        let numbers = |range: std::ops::Range<usize>| -> Vec<NewNumber> {
            range
                .map(|i| NewNumber {
                    dest_number: format!("1{i:06}"),
                    external_id: String::new(),
                })
                .collect()
        };
        let listed = |range: std::ops::Range<usize>, own: bool| {
            range.filter(|i| i % 7 == 0 || (own && i % 11 == 0)).count()
        };
        let counts = db::numbers::import(&mut conn, id, &numbers(0..3000), 11).unwrap();
        assert_eq!(
            counts,
            db::numbers::ImportCounts {
                imported: 3000,
                duplicates: 0,
                dnc: listed(0..3000, true)
            }
        );
        assert_eq!(counted(&conn, id), scanned(&conn, id));
        buckets(&conn);
        // Half already there, repeated within the import too; across the bucket edge at 4,096.
        let mut again = numbers(1500..5000);
        again.extend(numbers(4990..5010));
        let counts = db::numbers::import(&mut conn, id, &again, 12).unwrap();
        assert_eq!(
            counts,
            db::numbers::ImportCounts {
                imported: 2010,
                duplicates: 1500 + 10,
                dnc: listed(3000..5010, true)
            }
        );
        let (all, causes) = counted(&conn, id);
        assert_eq!((all.clone(), causes.clone()), scanned(&conn, id));
        let dnc = listed(0..5010, true) as i64;
        assert_eq!(all, vec![5010, 5010 - dnc, 0, dnc, 0, 0]);
        assert_eq!(causes.get("DNC"), Some(&dnc));
        buckets(&conn);
        // Another task sees only the entries for every task; seq stays dense.
        let counts = db::numbers::import(&mut conn, other, &numbers(0..100), 13).unwrap();
        assert_eq!(counts.dnc, listed(0..100, false));
        assert_eq!(counted(&conn, other), scanned(&conn, other));
        buckets(&conn);
        for task in [id, other] {
            let (count, max_seq): (i64, i64) = conn
                .query_row(
                    "SELECT count(*), max(seq) FROM numbers WHERE group_id = ?1",
                    [task],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(count, max_seq, "task {task}: seq 1..N");
        }
        let never_dialed: i64 = conn
            .query_row(
                "SELECT count(*) FROM numbers WHERE cause = 'DNC'
                 AND (outbound_call <> 1 OR call_status <> 'done' OR call_end_time IS NULL)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            never_dialed, 0,
            "listed numbers are done, never dialed, ended"
        );
    }

    /// Schema step 6 counts the numbers already there into their buckets.
    #[test]
    fn the_migration_fills_the_buckets_from_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            for step in &db::schema_steps()[..3] {
                conn.execute_batch(step).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute_batch(
                "INSERT INTO tasks (group_name, created_at, updated_at) VALUES ('a', 0, 0), ('b', 0, 0);
                 WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 9000)
                 INSERT INTO numbers (group_id, dest_number, created_at, updated_at, call_status, cause, deleted_at)
                 SELECT 1 + (n % 5 = 0), '1' || n, 0, 0,
                     CASE n % 3 WHEN 0 THEN 'done' WHEN 1 THEN 'init' ELSE 'stop' END,
                     CASE n % 3 WHEN 0 THEN (CASE WHEN n % 2 = 0 THEN 'USER_BUSY' ELSE 'NORMAL_CLEARING' END) ELSE '' END,
                     CASE WHEN n % 11 = 0 THEN 1 END
                 FROM s;",
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let conn = db.connection().unwrap();
        let (status, causes) = buckets(&conn);
        // Two tasks, three statuses, three buckets; two causes.
        assert_eq!(status.len(), 2 * 3 * 3, "{status:?}");
        assert_eq!(causes.len(), 2 * 2 * 3, "{causes:?}");
    }
}
