//! `webhook_outbox` and `webhook_counts`: the result webhooks waiting to be sent, their tries and
//! outcomes (schema step 7). Rows are queued by a trigger on `attempts`, never by Rust code, so a
//! finished attempt and its webhook are written together.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

/// A row to send: its `body` as stored (see `webhooks::body`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: i64,
    pub group_id: i64,
    pub url: String,
    pub body: String,
    pub created_at: i64,
    pub tries: i64,
}

/// A task's webhooks by state, and the latest error while any is pending or failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub last_error: String,
}

/// Pending rows due at `now`, earliest due first (never-tried rows, due at once, in the order
/// they were queued), at most `limit`, from the index of pending rows.
pub fn due(conn: &Connection, now: i64, limit: usize) -> DbResult<Vec<Outgoing>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, group_id, url, body, created_at, tries FROM webhook_outbox
             WHERE state = 'pending' AND next_try_at <= ?1
             ORDER BY next_try_at, id LIMIT ?2",
        )?
        .query_map(params![now, limit as i64], |row| {
            Ok(Outgoing {
                id: row.get(0)?,
                group_id: row.get(1)?,
                url: row.get(2)?,
                body: row.get(3)?,
                created_at: row.get(4)?,
                tries: row.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// When the first pending row due after `now` is due, if any.
pub fn next_due_after(conn: &Connection, now: i64) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT min(next_try_at) FROM webhook_outbox WHERE state = 'pending' AND next_try_at > ?1",
        )?
        .query_row([now], |row| row.get(0))?)
}

/// A try answered 2xx.
pub fn mark_delivered(conn: &Connection, id: i64, now: i64) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE webhook_outbox SET state = 'delivered', tries = tries + 1, delivered_at = ?2
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// A try that failed with `error`: the row is tried again at `next_try_at`, or, when `None`, it
/// has `failed` for good.
pub fn mark_failed_try(
    conn: &Connection,
    id: i64,
    error: &str,
    next_try_at: Option<i64>,
) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE webhook_outbox SET tries = tries + 1, last_error = ?2,
             state = CASE WHEN ?3 IS NULL THEN 'failed' ELSE 'pending' END,
             next_try_at = coalesce(?3, next_try_at)
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, error, next_try_at])?;
    Ok(())
}

/// A task's webhooks by state (one row of `webhook_counts`; zeros when it never had one).
pub fn task_counts(conn: &Connection, task_id: i64) -> DbResult<WebhookCounts> {
    Ok(conn
        .prepare_cached(
            "SELECT pending, delivered, failed, last_error FROM webhook_counts WHERE group_id = ?1",
        )?
        .query_row([task_id], |row| {
            Ok(WebhookCounts {
                pending: row.get(0)?,
                delivered: row.get(1)?,
                failed: row.get(2)?,
                last_error: row.get(3)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// Webhooks waiting to be delivered, all tasks together (for `/metrics`).
pub fn outbox_size(conn: &Connection) -> DbResult<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(sum(pending), 0) FROM webhook_counts")?
        .query_row([], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::{self, numbers::CallResult, Db},
        domain::{HangupCause, TaskName, TaskSettings, WebhookUrl},
    };

    /// A task with a webhook and `n` numbers, each claimed and finished (busy, at time 1000 + i).
    fn finished_calls(conn: &mut Connection, webhook: &str, n: usize) -> i64 {
        let settings = TaskSettings {
            group_name: Some(TaskName::new(format!("hooked {webhook:?}")).unwrap()),
            webhook_url: Some(WebhookUrl::new(webhook).unwrap()),
            ..Default::default()
        };
        let id = db::tasks::create(conn, &settings, 10).unwrap();
        let numbers: Vec<_> = (0..n)
            .map(|i| db::numbers::NewNumber {
                dest_number: format!("1380000{i:04}"),
                external_id: format!("x{i}"),
            })
            .collect();
        db::numbers::import(conn, id, &numbers, 10).unwrap();
        conn.execute("UPDATE tasks SET status = 'running' WHERE id = ?1", [id])
            .unwrap();
        for i in 0..n as i64 {
            let uuid = format!("uuid-{i}");
            let claimed =
                db::numbers::claim_next(conn, id, &uuid, 900 + i, &mut Default::default())
                    .unwrap()
                    .unwrap();
            let result = CallResult {
                cause: HangupCause::USER_BUSY,
                sip_code: Some(486),
                answered_at: None,
                ended_at: 1000 + i,
                dtmf: String::new(),
                record_path: String::new(),
            };
            assert!(db::numbers::finish(conn, claimed.id, &uuid, &result).unwrap());
        }
        id
    }

    #[test]
    fn a_finished_attempt_is_queued_with_its_number_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let mut conn = db.connection().unwrap();
        let id = finished_calls(&mut conn, "http://127.0.0.1:9/hook", 3);
        let quiet = finished_calls(&mut conn, "", 2);
        let queued = due(&conn, 0, 10).unwrap();
        assert_eq!(
            queued.len(),
            3,
            "one row per finished attempt of the hooked task"
        );
        assert!(queued
            .iter()
            .all(|row| row.group_id == id && row.tries == 0));
        assert_eq!(queued[0].url, "http://127.0.0.1:9/hook");
        assert_eq!(queued[0].created_at, 1000);
        let body: serde_json::Value = serde_json::from_str(&queued[0].body).unwrap();
        assert_eq!(body["task"]["id"], id);
        assert_eq!(body["number"]["call_status"], "done", "{body}");
        assert_eq!(body["number"]["cause"], "USER_BUSY");
        assert_eq!(body["number"]["external_id"], "x0");
        assert_eq!(body["attempt"]["attempt"], 1);
        assert_eq!(body["attempt"]["sip_code"], 486);
        assert_eq!(body["attempt"]["call_end_time"], 1000);
        assert_eq!(task_counts(&conn, quiet).unwrap(), WebhookCounts::default());
        assert_eq!(outbox_size(&conn).unwrap(), 3);

        mark_failed_try(&conn, queued[0].id, "HTTP 500", Some(2000)).unwrap();
        mark_failed_try(&conn, queued[1].id, "connection refused", None).unwrap();
        mark_delivered(&conn, queued[2].id, 1500).unwrap();
        assert_eq!(
            task_counts(&conn, id).unwrap(),
            WebhookCounts {
                pending: 1,
                delivered: 1,
                failed: 1,
                last_error: "connection refused".into()
            }
        );
        assert_eq!(due(&conn, 1999, 10).unwrap(), vec![]);
        assert_eq!(next_due_after(&conn, 1999).unwrap(), Some(2000));
        assert_eq!(due(&conn, 2000, 10).unwrap()[0].tries, 1);
        assert_eq!(outbox_size(&conn).unwrap(), 1);
    }

    #[test]
    fn last_error_clears_when_nothing_is_pending_or_failed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let mut conn = db.connection().unwrap();
        let id = finished_calls(&mut conn, "https://example.com/hook", 1);
        let row = due(&conn, 0, 1).unwrap().remove(0);
        mark_failed_try(&conn, row.id, "HTTP 503", Some(5)).unwrap();
        assert_eq!(task_counts(&conn, id).unwrap().last_error, "HTTP 503");
        mark_delivered(&conn, row.id, 6).unwrap();
        // A second outcome for the same row changes nothing.
        mark_failed_try(&conn, row.id, "late", None).unwrap();
        assert_eq!(
            task_counts(&conn, id).unwrap(),
            WebhookCounts {
                delivered: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn an_interrupted_call_is_queued_with_its_number_finished() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let mut conn = db.connection().unwrap();
        let id = finished_calls(&mut conn, "http://127.0.0.1:9/hook", 0);
        db::numbers::import(
            &mut conn,
            id,
            &[db::numbers::NewNumber {
                dest_number: "13800001111".into(),
                external_id: String::new(),
            }],
            10,
        )
        .unwrap();
        db::numbers::claim_next(&conn, id, "left-calling", 50, &mut Default::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            db::numbers::finish_interrupted(&conn, HangupCause::SYSTEM_SHUTDOWN).unwrap(),
            1
        );
        let rows = due(&conn, 0, 10).unwrap();
        assert_eq!(rows.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&rows[0].body).unwrap();
        assert_eq!(body["number"]["call_status"], "done", "{body}");
        assert_eq!(body["number"]["cause"], "SYSTEM_SHUTDOWN");
        assert_eq!(body["attempt"]["cause"], "SYSTEM_SHUTDOWN");
        assert_eq!(body["attempt"]["uuid"], "left-calling");
        assert_eq!(body["attempt"]["call_end_time"], 50);
    }
}
