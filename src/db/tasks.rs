//! The `tasks` table: outbound campaigns and their settings.

use rusqlite::{
    params, params_from_iter, types::Value, Connection, ErrorCode, OptionalExtension, Row,
    Transaction,
};

use super::{DbError, DbResult, Page};
use crate::domain::{
    CallWindows, CallingTime, ConfirmTimeout, MaxAttempts, MaxCaps, MaxConcurrency, RetryCauses,
    RetryInterval, Task, TaskSettings, TaskStatus, TaskTimeZone, Text, WebhookUrl, Weekdays,
};

/// A checked settings change as (column, value) pairs, in the order the fields are declared.
fn assignments(settings: &TaskSettings) -> Vec<(&'static str, Value)> {
    fn text(value: &Text) -> Value {
        Value::Text(value.as_str().to_owned())
    }
    fn flag(value: bool) -> Value {
        Value::Integer(value as i64)
    }
    fn integer(value: i64) -> Value {
        Value::Integer(value)
    }
    let s = settings;
    let columns: [(&'static str, Option<Value>); 26] = [
        (
            "group_name",
            s.group_name
                .as_ref()
                .map(|v| Value::Text(v.as_str().to_owned())),
        ),
        ("description", s.description.as_ref().map(text)),
        ("cid_number", s.cid_number.as_ref().map(text)),
        ("cid_name", s.cid_name.as_ref().map(text)),
        ("context", s.context.as_ref().map(text)),
        ("dest_context", s.dest_context.as_ref().map(text)),
        ("calling_time", s.calling_time.map(|v| integer(v.get()))),
        ("max_caps", s.max_caps.map(|v| Value::Real(v.get()))),
        (
            "max_concurrency",
            s.max_concurrency.map(|v| integer(v.get())),
        ),
        (
            "task_start_time",
            s.task_start_time.map(|v| v.map_or(Value::Null, integer)),
        ),
        ("auto_dial", s.auto_dial.map(flag)),
        ("disable_ring_back", s.disable_ring_back.map(flag)),
        ("auto_record", s.auto_record.map(flag)),
        (
            "group_confirm_key",
            s.group_confirm_key
                .as_ref()
                .map(|v| Value::Text(v.as_str().to_owned())),
        ),
        (
            "group_confirm_read_timeout",
            s.group_confirm_read_timeout
                .map(|v| v.map_or(Value::Null, |t| integer(t.get()))),
        ),
        (
            "group_confirm_file",
            s.group_confirm_file.as_ref().map(text),
        ),
        (
            "action",
            s.action.map(|v| Value::Text(v.as_str().to_owned())),
        ),
        ("data", s.data.as_ref().map(text)),
        (
            "task_end_time",
            s.task_end_time.map(|v| v.map_or(Value::Null, integer)),
        ),
        ("max_attempts", s.max_attempts.map(|v| integer(v.get()))),
        ("retry_interval", s.retry_interval.map(|v| integer(v.get()))),
        (
            "retry_causes",
            s.retry_causes.as_ref().map(|v| Value::Text(v.to_string())),
        ),
        (
            "call_windows",
            s.call_windows
                .as_ref()
                .map(|v| Value::Text(v.as_str().to_owned())),
        ),
        (
            "call_weekdays",
            s.call_weekdays
                .as_ref()
                .map(|v| Value::Text(v.as_str().to_owned())),
        ),
        (
            "time_zone",
            s.time_zone.map(|v| Value::Text(v.as_str().to_owned())),
        ),
        (
            "webhook_url",
            s.webhook_url
                .as_ref()
                .map(|v| Value::Text(v.as_str().to_owned())),
        ),
    ];
    columns
        .into_iter()
        .filter_map(|(column, value)| value.map(|value| (column, value)))
        .collect()
}

/// What start/stop did to one task.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub id: i64,
    pub status: TaskStatus,
    pub updated_at: i64,
    pub task_start_time: Option<i64>,
    pub task_end_time: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Substring of `group_name`.
    pub name: Option<String>,
    pub status: Option<TaskStatus>,
}

const COLUMNS: &str = "t.id, t.group_name, t.description, t.status, t.cid_number, t.cid_name, t.context,
    t.dest_context, t.calling_time, t.max_caps, t.max_concurrency, t.task_start_time, t.task_end_time,
    t.auto_dial, t.disable_ring_back, t.auto_record, t.group_confirm_key, t.group_confirm_read_timeout,
    t.group_confirm_file, t.action, t.data, t.created_at, t.updated_at, t.deleted_at,
    coalesce((SELECT c.total FROM task_counts c WHERE c.group_id = t.id), 0),
    coalesce((SELECT c.done FROM task_counts c WHERE c.group_id = t.id), 0),
    t.max_attempts, t.retry_interval, t.retry_causes, t.call_windows, t.call_weekdays, t.time_zone,
    t.webhook_url";

fn from_row(row: &Row) -> rusqlite::Result<Task> {
    Ok(Task {
        id: row.get(0)?,
        group_name: row.get(1)?,
        description: row.get(2)?,
        status: row.get(3)?,
        cid_number: row.get(4)?,
        cid_name: row.get(5)?,
        context: row.get(6)?,
        dest_context: row.get(7)?,
        calling_time: CallingTime::clamped(row.get(8)?),
        max_caps: MaxCaps::clamped(row.get(9)?),
        max_concurrency: MaxConcurrency::clamped(row.get(10)?),
        task_start_time: row.get(11)?,
        task_end_time: row.get(12)?,
        auto_dial: row.get(13)?,
        disable_ring_back: row.get(14)?,
        auto_record: row.get(15)?,
        group_confirm_key: row.get(16)?,
        group_confirm_read_timeout: row.get::<_, Option<i64>>(17)?.map(ConfirmTimeout::clamped),
        group_confirm_file: row.get(18)?,
        action: row.get(19)?,
        data: row.get(20)?,
        created_at: row.get(21)?,
        updated_at: row.get(22)?,
        deleted_at: row.get(23)?,
        total: row.get(24)?,
        done: row.get(25)?,
        max_attempts: MaxAttempts::clamped(row.get(26)?),
        retry_interval: RetryInterval::clamped(row.get(27)?),
        retry_causes: RetryCauses::stored(&row.get::<_, String>(28)?),
        call_windows: CallWindows::stored(&row.get::<_, String>(29)?),
        call_weekdays: Weekdays::stored(&row.get::<_, String>(30)?),
        time_zone: TaskTimeZone::stored(&row.get::<_, String>(31)?),
        webhook_url: WebhookUrl::stored(&row.get::<_, String>(32)?),
    })
}

fn name_taken(error: rusqlite::Error, name: &str) -> DbError {
    match &error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation => {
            DbError::Conflict(format!(
                "group_name {name:?} is already used by another task"
            ))
        }
        _ => DbError::Sqlite(error),
    }
}

fn not_found(id: i64) -> DbError {
    DbError::NotFound(format!("task {id}"))
}

/// A live (not deleted) task.
pub fn get(conn: &Connection, id: i64) -> DbResult<Option<Task>> {
    let sql = format!("SELECT {COLUMNS} FROM tasks t WHERE t.id = ?1 AND t.deleted_at IS NULL");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

pub fn require(conn: &Connection, id: i64) -> DbResult<Task> {
    get(conn, id)?.ok_or_else(|| not_found(id))
}

/// One page of live tasks, newest first, and the number of tasks matching the filter.
pub fn list(conn: &Connection, filter: &ListFilter, page: Page) -> DbResult<(Vec<Task>, i64)> {
    let mut condition = String::from("t.deleted_at IS NULL");
    let mut args: Vec<Value> = Vec::new();
    if let Some(name) = &filter.name {
        condition.push_str(" AND instr(t.group_name, ?) > 0");
        args.push(Value::Text(name.clone()));
    }
    if let Some(status) = &filter.status {
        condition.push_str(" AND t.status = ?");
        args.push(Value::Text(status.as_str().to_owned()));
    }
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM tasks t WHERE {condition}"),
        params_from_iter(args.iter()),
        |row| row.get(0),
    )?;
    args.push(Value::Integer(page.per_page as i64));
    args.push(Value::Integer(page.offset()));
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks t WHERE {condition} ORDER BY t.id DESC LIMIT ? OFFSET ?"
    );
    let tasks = conn
        .prepare(&sql)?
        .query_map(params_from_iter(args.iter()), from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((tasks, total))
}

/// Tests' task: named `name`, every other setting the default, created at `now`.
#[cfg(test)]
pub(crate) fn create_named(conn: &mut Connection, name: &str, now: i64) -> i64 {
    let settings = TaskSettings {
        group_name: Some(crate::domain::TaskName::new(name).unwrap()),
        ..Default::default()
    };
    create(conn, &settings, now).unwrap()
}

/// Creates a task from settings that include `group_name`; answers the new id.
pub fn create(conn: &mut Connection, settings: &TaskSettings, now: i64) -> DbResult<i64> {
    let name = settings
        .group_name
        .as_ref()
        .map(|name| name.as_str().to_owned())
        .ok_or_else(|| DbError::Conflict("a new task needs a group_name".into()))?;
    let tx = super::write_transaction(conn)?;
    tx.execute(
        "INSERT INTO tasks (group_name, created_at, updated_at) VALUES (?1, ?2, ?2)",
        params![name, now],
    )
    .map_err(|e| name_taken(e, &name))?;
    let id = tx.last_insert_rowid();
    apply_settings(&tx, id, settings, now)?;
    tx.commit()?;
    Ok(id)
}

/// Changes some settings of a live task.
pub fn update(conn: &mut Connection, id: i64, settings: &TaskSettings, now: i64) -> DbResult<()> {
    let tx = super::write_transaction(conn)?;
    require_live(&tx, id)?;
    apply_settings(&tx, id, settings, now)?;
    tx.commit()?;
    Ok(())
}

fn apply_settings(tx: &Transaction, id: i64, settings: &TaskSettings, now: i64) -> DbResult<()> {
    let columns = assignments(settings);
    if !columns.is_empty() {
        let assigned: Vec<String> = columns
            .iter()
            .map(|(column, _)| format!("{column} = ?"))
            .collect();
        let sql = format!(
            "UPDATE tasks SET {}, updated_at = ? WHERE id = ?",
            assigned.join(", ")
        );
        let values = columns
            .into_iter()
            .map(|(_, value)| value)
            .chain([Value::Integer(now), Value::Integer(id)]);
        tx.execute(&sql, params_from_iter(values)).map_err(|e| {
            let name = settings.group_name.as_ref().map_or("", |n| n.as_str());
            name_taken(e, name)
        })?;
    }
    if settings.touches_schedule() {
        reschedule(tx, id, now)?;
    }
    Ok(())
}

/// An auto_dial start is pending while auto_dial is on and the start time is still ahead; a task
/// already running has nothing to start.
fn reschedule(tx: &Transaction, id: i64, now: i64) -> DbResult<()> {
    tx.execute(
        "UPDATE tasks SET auto_dial_pending =
             (auto_dial = 1 AND task_start_time IS NOT NULL AND task_start_time > ?2 AND status <> 'running')
         WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// Fails with NotFound unless the task exists and is not deleted.
pub fn require_live(conn: &Connection, id: i64) -> DbResult<()> {
    conn.query_row(
        "SELECT 1 FROM tasks WHERE id = ?1 AND deleted_at IS NULL",
        [id],
        |_| Ok(()),
    )
    .optional()?
    .ok_or_else(|| not_found(id))
}

fn state_change(conn: &Connection, id: i64) -> DbResult<StateChange> {
    Ok(conn.query_row(
        "SELECT status, updated_at, task_start_time, task_end_time FROM tasks WHERE id = ?1",
        [id],
        |row| {
            Ok(StateChange {
                id,
                status: row.get(0)?,
                updated_at: row.get(1)?,
                task_start_time: row.get(2)?,
                task_end_time: row.get(3)?,
            })
        },
    )?)
}

/// Starts the given tasks, all or none: an unknown id changes nothing. A task already running is
/// left as it is. Numbers a stop left waiting are waiting again, pending retries included (they
/// keep their due time); dialed numbers with no call left stay as they are.
pub fn start(conn: &mut Connection, ids: &[i64], now: i64) -> DbResult<Vec<StateChange>> {
    let tx = super::write_transaction(conn)?;
    let mut changes = Vec::with_capacity(ids.len());
    for &id in ids {
        require_live(&tx, id)?;
        start_one(&tx, id, now)?;
        changes.push(state_change(&tx, id)?);
    }
    tx.commit()?;
    Ok(changes)
}

/// An auto_dial task keeps a future `task_end_time` (it stops by itself then); any other end time
/// is cleared.
fn start_one(tx: &Transaction, id: i64, now: i64) -> DbResult<bool> {
    let started = tx.execute(
        "UPDATE tasks SET status = 'running', task_start_time = ?2,
             task_end_time = CASE WHEN auto_dial = 1 AND task_end_time > ?2 THEN task_end_time END,
             auto_dial_pending = 0, updated_at = ?2
         WHERE id = ?1 AND status <> 'running'",
        params![id, now],
    )? > 0;
    if started {
        tx.execute(
            "UPDATE numbers SET call_status = 'init', updated_at = ?2
             WHERE group_id = ?1 AND call_status = 'stop'
               AND (outbound_call = 1 OR next_attempt_at IS NOT NULL)",
            params![id, now],
        )?;
    }
    Ok(started)
}

/// Stops the given tasks, all or none. Waiting numbers become `stop`; calls alive are left to
/// finish. A finished (`done`) task stays done.
pub fn stop(conn: &mut Connection, ids: &[i64], now: i64) -> DbResult<Vec<StateChange>> {
    let tx = super::write_transaction(conn)?;
    let mut changes = Vec::with_capacity(ids.len());
    for &id in ids {
        require_live(&tx, id)?;
        stop_one(&tx, id, now)?;
        changes.push(state_change(&tx, id)?);
    }
    tx.commit()?;
    Ok(changes)
}

fn stop_one(tx: &Transaction, id: i64, now: i64) -> DbResult<()> {
    let stopped = tx.execute(
        "UPDATE tasks SET status = 'stop', task_end_time = ?2, auto_dial_pending = 0, updated_at = ?2
         WHERE id = ?1 AND status IN ('init', 'running')",
        params![id, now],
    )? > 0;
    if stopped {
        tx.execute(
            "UPDATE numbers SET call_status = 'stop', updated_at = ?2 WHERE group_id = ?1 AND call_status = 'init'",
            params![id, now],
        )?;
    }
    Ok(())
}

/// Soft-deletes a task, stopping it first so that nothing more is dialed for it.
pub fn delete(conn: &mut Connection, id: i64, now: i64) -> DbResult<()> {
    let tx = super::write_transaction(conn)?;
    require_live(&tx, id)?;
    stop_one(&tx, id, now)?;
    tx.execute(
        "UPDATE tasks SET deleted_at = ?2, auto_dial_pending = 0, updated_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    tx.commit()?;
    Ok(())
}

/// A new task with the settings of `source`, a new name and description, status `init`; with
/// `with_numbers`, a copy of every number, reset to never dialed.
pub fn clone(
    conn: &mut Connection,
    source: i64,
    group_name: &str,
    description: &str,
    with_numbers: bool,
    now: i64,
) -> DbResult<i64> {
    let tx = super::write_transaction(conn)?;
    require_live(&tx, source)?;
    tx.execute(
        "INSERT INTO tasks (group_name, description, cid_number, cid_name, context, dest_context,
             calling_time, max_caps, max_concurrency, task_start_time, auto_dial, disable_ring_back,
             auto_record, group_confirm_key, group_confirm_read_timeout, group_confirm_file, action, data,
             max_attempts, retry_interval, retry_causes, call_windows, call_weekdays, time_zone,
             webhook_url, created_at, updated_at)
         SELECT ?2, ?3, cid_number, cid_name, context, dest_context,
             calling_time, max_caps, max_concurrency, task_start_time, auto_dial, disable_ring_back,
             auto_record, group_confirm_key, group_confirm_read_timeout, group_confirm_file, action, data,
             max_attempts, retry_interval, retry_causes, call_windows, call_weekdays, time_zone,
             webhook_url, ?4, ?4
         FROM tasks WHERE id = ?1",
        params![source, group_name, description, now],
    )
    .map_err(|e| name_taken(e, group_name))?;
    let id = tx.last_insert_rowid();
    reschedule(&tx, id, now)?;
    if with_numbers {
        let copied = tx.execute(
            "INSERT INTO numbers (group_id, dest_number, external_id, created_at, updated_at, seq)
             SELECT ?2, dest_number, external_id, ?3, ?3, row_number() OVER (ORDER BY id) FROM numbers
             WHERE group_id = ?1 AND deleted_at IS NULL ORDER BY id",
            params![source, id, now],
        )?;
        super::stats::count_added_numbers(&tx, id, copied, now)?;
    }
    tx.commit()?;
    Ok(id)
}

/// Live tasks with status `running`.
pub fn running_ids(conn: &Connection) -> DbResult<Vec<i64>> {
    let ids = conn
        .prepare(
            "SELECT id FROM tasks WHERE status = 'running' AND deleted_at IS NULL ORDER BY id",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// Starts every task whose auto_dial start time has come; answers their ids.
pub fn start_due(conn: &mut Connection, now: i64) -> DbResult<Vec<i64>> {
    let tx = super::write_transaction(conn)?;
    let due: Vec<i64> = tx
        .prepare(
            "SELECT id FROM tasks WHERE auto_dial_pending = 1 AND deleted_at IS NULL AND task_start_time <= ?1
               AND (task_end_time IS NULL OR task_end_time > ?1)
             ORDER BY id",
        )?
        .query_map([now], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    // A start whose end time has passed too is not made at all.
    tx.execute(
        "UPDATE tasks SET auto_dial_pending = 0
         WHERE auto_dial_pending = 1 AND task_start_time <= ?1 AND task_end_time <= ?1",
        [now],
    )?;
    for &id in &due {
        start_one(&tx, id, now)?;
        tx.execute("UPDATE tasks SET auto_dial_pending = 0 WHERE id = ?1", [id])?;
    }
    tx.commit()?;
    Ok(due)
}

/// Stops every running auto_dial task whose `task_end_time` has come, as a stop would (waiting
/// numbers become `stop`, live calls end normally); answers their ids.
pub fn stop_due(conn: &mut Connection, now: i64) -> DbResult<Vec<i64>> {
    const DUE: &str = "SELECT id FROM tasks WHERE status = 'running' AND auto_dial = 1
                         AND deleted_at IS NULL AND task_end_time <= ?1 ORDER BY id";
    let due = |conn: &Connection| -> DbResult<Vec<i64>> {
        Ok(conn
            .prepare_cached(DUE)?
            .query_map([now], |row| row.get(0))?
            .collect::<Result<_, _>>()?)
    };
    // Looked at twice a second: the write lock is only taken when a task is due.
    if due(conn)?.is_empty() {
        return Ok(Vec::new());
    }
    let tx = super::write_transaction(conn)?;
    let due = due(&tx)?;
    for &id in &due {
        stop_one(&tx, id, now)?;
    }
    tx.commit()?;
    Ok(due)
}

/// A running task with no number waiting and none calling becomes `done`; answers whether it did.
pub fn finish_if_complete(conn: &Connection, id: i64, now: i64) -> DbResult<bool> {
    Ok(conn.execute(
        "UPDATE tasks SET status = 'done', task_end_time = ?2, updated_at = ?2
         WHERE id = ?1 AND status = 'running' AND deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM numbers
                           WHERE group_id = ?1 AND call_status IN ('init', 'calling') AND deleted_at IS NULL)",
        params![id, now],
    )? > 0)
}
