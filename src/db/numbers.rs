//! The `numbers` table: the phone numbers of a task and each one's call result.

use std::ops::ControlFlow;

use rusqlite::{params, params_from_iter, types::Value, Connection, OptionalExtension, Row};

use super::{stats::BUCKET_BITS, DbError, DbResult, Page};
use crate::domain::{CallStatus, DestNumber, HangupCause, Task};

#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    pub id: i64,
    pub group_id: i64,
    pub dest_number: String,
    pub external_id: String,
    pub uuid: String,
    pub call_status: CallStatus,
    pub outbound_call: i64,
    pub dtmf: String,
    /// `None` until the call has ended.
    pub cause: Option<HangupCause>,
    pub sip_code: Option<i64>,
    pub record_path: String,
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

const COLUMNS: &str =
    "id, group_id, dest_number, external_id, uuid, call_status, outbound_call, dtmf, cause,
    call_start_time, call_answer_time, call_end_time, created_at, updated_at, deleted_at, sip_code, record_path";

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
        cause: cause_from_row(row, 8)?,
        call_start_time: row.get(9)?,
        call_answer_time: row.get(10)?,
        call_end_time: row.get(11)?,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
        deleted_at: row.get(14)?,
        sip_code: row.get(15)?,
        record_path: row.get(16)?,
    })
}

fn cause_from_row(row: &Row, index: usize) -> rusqlite::Result<Option<HangupCause>> {
    let name: String = row.get(index)?;
    if name.is_empty() {
        return Ok(None);
    }
    name.parse().map(Some).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown hangup cause {name:?}").into(),
        )
    })
}

fn require_live_task(conn: &Connection, task_id: i64) -> DbResult<()> {
    super::tasks::require_live(conn, task_id)
}

/// The last `seq` given to a number of the task, 0 when none was: the next inserted number gets
/// the one after (see schema step 5).
pub(super) fn last_seq(conn: &Connection, task_id: i64) -> DbResult<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM numbers WHERE group_id = ?1")?
        .query_row([task_id], |row| row.get(0))?)
}

/// Adds numbers to a live task in one transaction, as [`import_streaming`] does.
pub fn import(
    conn: &mut Connection,
    task_id: i64,
    numbers: &[NewNumber],
    now: i64,
) -> DbResult<ImportCounts> {
    import_streaming(conn, task_id, now, |importer| {
        for number in numbers {
            importer.insert(&number.dest_number, &number.external_id)?;
        }
        Ok::<_, DbError>(())
    })
    .map(|((), counts)| counts)
}

/// Which of a task's numbers a list shows; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberFilter {
    pub call_status: Option<CallStatus>,
    pub cause: Option<HangupCause>,
    /// The start of `dest_number`.
    pub dest_number_prefix: Option<DestNumber>,
}

/// One page of a live task's numbers that pass `filter`, newest first (as the vendor lists
/// them), and their count. The unfiltered list is a range of `seq` (see schema step 5); a filtered
/// one walks the filter's index from whichever end of the list is nearer the page.
pub fn list(
    conn: &Connection,
    task_id: i64,
    filter: &NumberFilter,
    page: Page,
) -> DbResult<(Vec<Number>, i64)> {
    // One read transaction: the count and the page are of the same moment, even while the
    // dialer or an import writes.
    let tx = conn.unchecked_transaction()?;
    let conn: &Connection = &tx;
    require_live_task(conn, task_id)?;
    let mut filter = filter.clone();
    if let Some(prefix) = &filter.dest_number_prefix {
        if all_start_with(conn, task_id, prefix.as_str())? {
            // A prefix all of the task's numbers share (a country or area code) filters nothing.
            filter.dest_number_prefix = None;
        }
    }
    if filter == NumberFilter::default() {
        if let Some(listed) = list_by_seq(conn, task_id, page)? {
            return Ok(listed);
        }
    }
    // (The transaction only reads: dropping it ends it.)
    list_filtered(conn, task_id, &filter, page)
}

/// Whether every live number of the task starts with `prefix`: its lowest and its highest do
/// (two lookups in the index of numbers).
fn all_start_with(conn: &Connection, task_id: i64, prefix: &str) -> DbResult<bool> {
    for end in ["min", "max"] {
        let number: Option<String> = conn
            .prepare_cached(&format!(
                "SELECT {end}(dest_number) FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL"
            ))?
            .query_row([task_id], |row| row.get(0))?;
        if !number.is_some_and(|number| number.starts_with(prefix)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The live numbers of a task, from its counters.
fn live_count(conn: &Connection, task_id: i64) -> DbResult<i64> {
    Ok(conn
        .prepare_cached("SELECT total FROM task_counts WHERE group_id = ?1")?
        .query_row([task_id], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The page as a range of `seq`, when the task's live numbers are exactly `seq` 1..N (always, but
/// for rows written around the API); `None` otherwise.
fn list_by_seq(
    conn: &Connection,
    task_id: i64,
    page: Page,
) -> DbResult<Option<(Vec<Number>, i64)>> {
    let total = live_count(conn, task_id)?;
    if last_seq(conn, task_id)? != total {
        return Ok(None);
    }
    let high = total - page.offset();
    if high < 1 {
        return Ok(Some((Vec::new(), total)));
    }
    let low = (high - page.per_page as i64 + 1).max(1);
    let numbers = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM numbers
             WHERE group_id = ?1 AND seq BETWEEN ?2 AND ?3 AND deleted_at IS NULL ORDER BY seq DESC"
        ))?
        .query_map(params![task_id, low, high], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((numbers, total)))
}

fn list_filtered(
    conn: &Connection,
    task_id: i64,
    filter: &NumberFilter,
    page: Page,
) -> DbResult<(Vec<Number>, i64)> {
    let mut condition = String::from("group_id = ? AND deleted_at IS NULL");
    let mut args: Vec<Value> = vec![Value::Integer(task_id)];
    if let Some(status) = filter.call_status {
        condition.push_str(" AND call_status = ?");
        args.push(Value::Text(status.as_str().to_owned()));
    }
    if let Some(cause) = filter.cause {
        // `cause <> ''` lets SQLite use the partial index of ended calls.
        condition.push_str(" AND cause = ? AND cause <> ''");
        args.push(Value::Text(cause.as_str().to_owned()));
    }
    if let Some(prefix) = &filter.dest_number_prefix {
        // A range of the index: numbers are ASCII (digits, +, *, #), all below U+007F.
        condition.push_str(" AND dest_number >= ? AND dest_number < ?");
        args.push(Value::Text(prefix.as_str().to_owned()));
        args.push(Value::Text(format!("{}\u{7f}", prefix.as_str())));
    }
    let total = match filter {
        NumberFilter {
            call_status: Some(status),
            cause: None,
            dest_number_prefix: None,
        } => status_count(conn, task_id, *status)?,
        NumberFilter {
            call_status: None,
            cause: Some(cause),
            dest_number_prefix: None,
        } => conn
            .prepare_cached(
                "SELECT count FROM task_cause_counts WHERE group_id = ?1 AND cause = ?2",
            )?
            .query_row(params![task_id, cause], |row| row.get(0))
            .optional()?
            .unwrap_or(0),
        NumberFilter {
            call_status: Some(status),
            cause: Some(cause),
            dest_number_prefix: None,
        } if cause_buckets_add_up(conn, task_id, *cause)? => conn
            .prepare_cached(
                "SELECT coalesce(sum(count), 0) FROM task_cause_buckets
                 WHERE group_id = ?1 AND cause = ?2 AND call_status = ?3",
            )?
            .query_row(params![task_id, cause, status.as_str()], |row| row.get(0))?,
        _ => conn
            .prepare_cached(&format!("SELECT count(*) FROM numbers WHERE {condition}"))?
            .query_row(params_from_iter(args.iter()), |row| row.get(0))?,
    };
    // Newest first; a page in the older half is read oldest first from the other end, so that
    // no page skips more than half of the list.
    let offset = page.offset();
    let wanted = (total - offset).clamp(0, page.per_page as i64);
    if wanted == 0 {
        return Ok((Vec::new(), total));
    }
    let skip_from_oldest = total - offset - wanted;
    let (order, skip) = if skip_from_oldest < offset {
        ("ASC", skip_from_oldest)
    } else {
        ("DESC", offset)
    };
    // One status, one cause, or both: their bucket counts tell where the page starts (schema
    // step 6).
    let buckets = match filter {
        NumberFilter {
            call_status: Some(status),
            cause: None,
            dest_number_prefix: None,
        } => Some((
            "SELECT bucket, count FROM task_status_buckets
             WHERE group_id = ?1 AND call_status = ?2 AND count > 0",
            vec![status.as_str()],
        )),
        NumberFilter {
            call_status: None,
            cause: Some(cause),
            dest_number_prefix: None,
        } => Some((
            "SELECT bucket, sum(count) FROM task_cause_buckets WHERE group_id = ?1 AND cause = ?2
             GROUP BY bucket HAVING sum(count) > 0",
            vec![cause.as_str()],
        )),
        NumberFilter {
            call_status: Some(status),
            cause: Some(cause),
            dest_number_prefix: None,
        } => Some((
            "SELECT bucket, count FROM task_cause_buckets
                 WHERE group_id = ?1 AND cause = ?2 AND call_status = ?3 AND count > 0",
            vec![cause.as_str(), status.as_str()],
        )),
        _ => None,
    };
    let (bound, skip) = match &buckets {
        Some((sql, keys)) => match start_bucket(conn, sql, task_id, keys, order, skip, total)? {
            Some((bucket, skip_inside)) => {
                let (bound, value) = if order == "ASC" {
                    ("id >= ?", bucket << BUCKET_BITS)
                } else {
                    ("id < ?", (bucket + 1) << BUCKET_BITS)
                };
                args.push(Value::Integer(value));
                (format!(" AND {bound}"), skip_inside)
            }
            None => (String::new(), skip),
        },
        None => (String::new(), skip),
    };
    let condition = format!("{condition}{bound}");
    args.push(Value::Integer(wanted));
    args.push(Value::Integer(skip));
    let mut numbers = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM numbers WHERE id IN
                 (SELECT id FROM numbers WHERE {condition} ORDER BY id {order} LIMIT ? OFFSET ?)
             ORDER BY id DESC"
        ))?
        .query_map(params_from_iter(args.iter()), from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    numbers.truncate(page.per_page as usize);
    Ok((numbers, total))
}

/// The bucket (see schema step 6) that holds the filtered list's row `skip` counted from the
/// lowest id (`order` "ASC") or the highest ("DESC"), and how many of the bucket's rows come
/// before it in that order; `None` when the buckets do not add up to `total` (rows written around
/// the API), and the caller skips from the end of the list.
fn start_bucket(
    conn: &Connection,
    sql: &str,
    task_id: i64,
    keys: &[&str],
    order: &str,
    skip: i64,
    total: i64,
) -> DbResult<Option<(i64, i64)>> {
    let buckets = conn
        .prepare_cached(&format!("{sql} ORDER BY bucket {order}"))?
        .query_map(
            params_from_iter(
                std::iter::once(Value::Integer(task_id))
                    .chain(keys.iter().map(|key| Value::Text((*key).to_owned()))),
            ),
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    if buckets.iter().map(|(_, count)| count).sum::<i64>() != total {
        return Ok(None);
    }
    let mut before = 0;
    for (bucket, count) in buckets {
        if skip < before + count {
            return Ok(Some((bucket, skip - before)));
        }
        before += count;
    }
    Ok(None)
}

/// Whether the task's buckets of `cause` (all statuses) add up to its counter, so that the
/// buckets of the cause with one status can stand for a count of the numbers.
fn cause_buckets_add_up(conn: &Connection, task_id: i64, cause: HangupCause) -> DbResult<bool> {
    let (counted, bucketed): (i64, i64) = conn
        .prepare_cached(
            "SELECT (SELECT coalesce(sum(count), 0) FROM task_cause_counts WHERE group_id = ?1 AND cause = ?2),
                    (SELECT coalesce(sum(count), 0) FROM task_cause_buckets WHERE group_id = ?1 AND cause = ?2)",
        )?
        .query_row(params![task_id, cause], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(counted == bucketed)
}

/// A task's live numbers with this status, from its counters.
fn status_count(conn: &Connection, task_id: i64, status: CallStatus) -> DbResult<i64> {
    let column = match status {
        CallStatus::Init => "init",
        CallStatus::Calling => "calling",
        CallStatus::Done => "done",
        CallStatus::Stop => "stop",
    };
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {column} FROM task_counts WHERE group_id = ?1"
        ))?
        .query_row([task_id], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// In one read transaction, so that what is seen is one moment of the task: the live task to
/// `start`, then each of its numbers in id order to `visit` (with the task), one at a time (never
/// all in memory), until either breaks.
pub fn export(
    conn: &mut Connection,
    task_id: i64,
    start: impl FnOnce(&Task) -> ControlFlow<()>,
    mut visit: impl FnMut(&Task, Number) -> ControlFlow<()>,
) -> DbResult<()> {
    let tx = conn.transaction()?;
    let task = super::tasks::require(&tx, task_id)?;
    if start(&task).is_break() {
        return Ok(());
    }
    let mut statement = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL ORDER BY seq, id"
    ))?;
    let mut rows = statement.query([task_id])?;
    while let Some(row) = rows.next()? {
        if visit(&task, from_row(row).map_err(DbError::from)?).is_break() {
            break;
        }
    }
    Ok(())
}

/// How many numbers one INSERT writes: a statement per row costs more than SQLite's work for the
/// row (its cursors on the table, four indexes and the task, and the AUTOINCREMENT bookkeeping,
/// all set up for each statement). Also how many numbers are looked up in the task at once.
const BATCH: usize = 64;

/// `INSERT … VALUES (…), (…)` of `rows` numbers: `?1` the task, `?2` the time, then a number's
/// dest_number, external_id and seq, three parameters a row.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO numbers (group_id, dest_number, external_id, created_at, updated_at, seq) VALUES ",
    );
    for row in 0..rows {
        let first = 3 + row * 3;
        if row > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(?1, ?{first}, ?{}, ?2, ?2, ?{})",
            first + 1,
            first + 2
        ));
    }
    sql
}

/// Which of [`BATCH`] numbers (`?2`…; unused places bound to NULL) the task already has, live: a
/// lookup each in the `numbers_by_task_dest` index.
fn existing_sql() -> String {
    let places: Vec<String> = (2..BATCH + 2).map(|place| format!("?{place}")).collect();
    format!(
        "SELECT dest_number FROM numbers
         WHERE group_id = ?1 AND deleted_at IS NULL AND dest_number IN ({})",
        places.join(", ")
    )
}

/// What an import did: `imported` numbers added to the task, of which `dnc` on the do-not-call
/// list (added already finished); `duplicates` skipped because the task had the number already,
/// or the import had it in an earlier row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub imported: usize,
    pub duplicates: usize,
    pub dnc: usize,
}

/// Inserts the numbers of one import inside its transaction (see [`import_streaming`]), [`BATCH`]
/// at a time: the batch's numbers are looked up in the task with one query, and the new ones
/// written with one statement (prepared once for each size seen). A batch is written before the
/// next is looked up, so a number repeated anywhere in the import is found, in the database or
/// in its own batch, with no set of the import's numbers kept in memory.
pub struct Importer<'conn> {
    conn: &'conn Connection,
    /// `INSERT` statements by their number of rows (index 0 unused), prepared when first needed.
    inserts: Vec<Option<rusqlite::Statement<'conn>>>,
    existing: rusqlite::CachedStatement<'conn>,
    /// The numbers not yet written, `pending` of them (their strings are reused).
    rows: Vec<(String, String)>,
    pending: usize,
    /// Of the pending rows, those to write (reused).
    new_rows: Vec<usize>,
    /// Of the pending numbers, those the task already has (reused).
    found: Vec<String>,
    task_id: i64,
    now: i64,
    counts: ImportCounts,
    /// The `seq` of the last number written.
    seq: i64,
}

impl<'conn> Importer<'conn> {
    pub fn insert(&mut self, dest_number: &str, external_id: &str) -> DbResult<()> {
        if self.rows.len() == self.pending {
            self.rows.push((String::new(), String::new()));
        }
        let (number, external) = &mut self.rows[self.pending];
        number.clear();
        number.push_str(dest_number);
        external.clear();
        external.push_str(external_id);
        self.pending += 1;
        if self.pending == BATCH {
            self.write_batch()?;
        }
        Ok(())
    }

    /// How many numbers were handed over so far.
    pub fn count(&self) -> usize {
        self.counts.imported + self.counts.duplicates + self.pending
    }

    /// Writes the pending rows that are new to the task and to the batch.
    fn write_batch(&mut self) -> DbResult<()> {
        let rows = &self.rows[..self.pending];
        self.existing.raw_bind_parameter(1, self.task_id)?;
        for place in 0..BATCH {
            let number = rows.get(place).map(|(number, _)| number.as_str());
            self.existing.raw_bind_parameter(place + 2, number)?;
        }
        self.found.clear();
        let mut found = self.existing.raw_query();
        while let Some(row) = found.next()? {
            self.found.push(row.get(0)?);
        }
        self.new_rows.clear();
        for (index, (number, _)) in rows.iter().enumerate() {
            let repeated = self.found.contains(number)
                || self
                    .new_rows
                    .iter()
                    .any(|&earlier| rows[earlier].0 == *number);
            if !repeated {
                self.new_rows.push(index);
            }
        }
        let written = self.new_rows.len();
        self.counts.duplicates += self.pending - written;
        self.pending = 0;
        if written == 0 {
            return Ok(());
        }
        let conn = self.conn;
        if self.inserts[written].is_none() {
            self.inserts[written] = Some(conn.prepare(&insert_sql(written))?);
        }
        let insert = self.inserts[written].as_mut().expect("prepared above");
        insert.raw_bind_parameter(1, self.task_id)?;
        insert.raw_bind_parameter(2, self.now)?;
        for (row, &index) in self.new_rows.iter().enumerate() {
            let (number, external) = &self.rows[index];
            let first = 3 + row * 3;
            insert.raw_bind_parameter(first, number.as_str())?;
            insert.raw_bind_parameter(first + 1, external.as_str())?;
            insert.raw_bind_parameter(first + 2, self.seq + 1 + row as i64)?;
        }
        insert.raw_execute()?;
        self.seq += written as i64;
        self.counts.imported += written;
        Ok(())
    }
}

/// Adds numbers to a live task as `produce` hands them over (a file being parsed, say), in one
/// transaction: all are written when `produce` succeeds, none when it fails. A number the task
/// already has (live), or that came earlier in the import, is skipped as a duplicate and takes no
/// `seq`; a number on the do-not-call list (for every task or this one) is added already
/// finished: `done`, cause `DNC`, never dialed (`outbound_call` 1), ended now.
pub fn import_streaming<T, E: From<DbError>>(
    conn: &mut Connection,
    task_id: i64,
    now: i64,
    produce: impl FnOnce(&mut Importer) -> Result<T, E>,
) -> Result<(T, ImportCounts), E> {
    let tx = super::write_transaction(conn).map_err(DbError::from)?;
    require_live_task(&tx, task_id)?;
    let first_seq = last_seq(&tx, task_id)?;
    let (result, mut counts) = {
        let mut importer = Importer {
            conn: &tx,
            inserts: (0..=BATCH).map(|_| None).collect(),
            existing: tx.prepare_cached(&existing_sql()).map_err(DbError::from)?,
            rows: Vec::with_capacity(BATCH),
            pending: 0,
            new_rows: Vec::with_capacity(BATCH),
            found: Vec::new(),
            task_id,
            now,
            counts: ImportCounts::default(),
            seq: first_seq,
        };
        let result = produce(&mut importer)?;
        if importer.pending > 0 {
            importer.write_batch()?;
        }
        (result, importer.counts)
    };
    // Counted as waiting first, so that the triggers then move the listed ones to `done`.
    super::stats::count_added_numbers(&tx, task_id, counts.imported, now)?;
    counts.dnc = finish_listed(&tx, task_id, first_seq, counts.imported, now)?;
    tx.commit().map_err(DbError::from)?;
    Ok((result, counts))
}

/// Finishes the numbers just imported (`seq` after `first_seq`, `imported` of them) that are on
/// the do-not-call list for the task, as never dialed; answers how many. The smaller side leads:
/// the list's entries looked up in the task's numbers, or the numbers looked up in the list.
fn finish_listed(
    conn: &Connection,
    task_id: i64,
    first_seq: i64,
    imported: usize,
    now: i64,
) -> DbResult<usize> {
    if imported == 0 {
        return Ok(0);
    }
    let entries = super::dnc::count_for_task(conn, task_id)?;
    if entries == 0 {
        return Ok(0);
    }
    let listed = if entries < imported as i64 {
        "id IN (SELECT n.id FROM dnc d CROSS JOIN numbers n
                WHERE (d.task_id IS NULL OR d.task_id = ?1)
                  AND n.group_id = ?1 AND n.dest_number = d.number AND n.deleted_at IS NULL
                  AND n.seq > ?2)"
    } else {
        "group_id = ?1 AND seq > ?2 AND deleted_at IS NULL
         AND EXISTS (SELECT 1 FROM dnc d WHERE d.number = numbers.dest_number
                                          AND coalesce(d.task_id, 0) IN (0, ?1))"
    };
    Ok(conn.execute(
        &format!(
            "UPDATE numbers SET call_status = 'done', cause = ?3, call_end_time = ?4, updated_at = ?4
             WHERE {listed}"
        ),
        params![task_id, first_seq, HangupCause::DNC, now],
    )?)
}

/// A number claimed for dialing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub dest_number: String,
    /// Which call of the number this is: 1 for the first.
    pub attempt: i64,
}

/// Claims the task's next never-dialed number in id order, before it is dialed, so that a crash
/// can never dial it twice: it becomes `calling`, dialed (`outbound_call = 0`), with the call's
/// uuid and start time, and the call is kept as its next row of `attempts`. Claims nothing unless
/// the task is running.
pub fn claim_next(
    conn: &Connection,
    task_id: i64,
    uuid: &str,
    now: i64,
) -> DbResult<Option<Claimed>> {
    super::atomically(conn, |conn| {
        let claimed = conn
            .query_row(
                "UPDATE numbers SET call_status = 'calling', outbound_call = 0, uuid = ?2, call_start_time = ?3,
                     updated_at = ?3, dtmf = '', cause = '', sip_code = NULL,
                     call_answer_time = NULL, call_end_time = NULL, record_path = '',
                     attempts = attempts + 1, next_attempt_at = NULL
                 WHERE id = (SELECT id FROM numbers
                             WHERE group_id = ?1 AND call_status = 'init' AND outbound_call = 1 AND deleted_at IS NULL
                             ORDER BY id LIMIT 1)
                   AND EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND status = 'running' AND deleted_at IS NULL)
                 RETURNING id, dest_number, attempts",
                params![task_id, uuid, now],
                |row| {
                    Ok(Claimed {
                        id: row.get(0)?,
                        dest_number: row.get(1)?,
                        attempt: row.get(2)?,
                    })
                },
            )
            .optional()?;
        if let Some(number) = &claimed {
            record_attempt(conn, task_id, number, uuid, now)?;
        }
        Ok(claimed)
    })
}

/// The row of a call just claimed.
fn record_attempt(
    conn: &Connection,
    task_id: i64,
    number: &Claimed,
    uuid: &str,
    now: i64,
) -> DbResult<()> {
    conn.execute(
        "INSERT INTO attempts (number_id, group_id, attempt, dest_number, uuid, call_start_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            number.id,
            task_id,
            number.attempt,
            number.dest_number,
            uuid,
            now
        ],
    )?;
    Ok(())
}

/// Gives back a claimed number whose call was never placed: it is waiting again as before the
/// claim, and the attempt is forgotten.
pub fn release_claim(conn: &Connection, number_id: i64, uuid: &str) -> DbResult<()> {
    super::atomically(conn, |conn| {
        let released = conn.execute(
            "UPDATE numbers SET call_status = 'init', outbound_call = (attempts <= 1), uuid = '',
                 call_start_time = NULL, attempts = attempts - 1
             WHERE id = ?1 AND uuid = ?2 AND call_status = 'calling'",
            params![number_id, uuid],
        )?;
        if released > 0 {
            conn.execute(
                "DELETE FROM attempts WHERE number_id = ?1 AND uuid = ?2",
                params![number_id, uuid],
            )?;
        }
        Ok(())
    })
}

pub fn record_answer(
    conn: &Connection,
    number_id: i64,
    uuid: &str,
    answered_at: i64,
) -> DbResult<()> {
    conn.execute(
        "UPDATE numbers SET call_answer_time = ?3, updated_at = ?3
         WHERE id = ?1 AND uuid = ?2 AND call_status = 'calling'",
        params![number_id, uuid, answered_at],
    )?;
    Ok(())
}

/// The final result of a number's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    pub cause: HangupCause,
    pub sip_code: Option<u16>,
    pub answered_at: Option<i64>,
    pub ended_at: i64,
    pub dtmf: String,
    /// The recording's path, `""` when the call was not recorded.
    pub record_path: String,
}

/// Writes a call's result, to the number and to its attempt, in one step; only the call that
/// claimed the number (same uuid) can finish it.
pub fn finish(
    conn: &Connection,
    number_id: i64,
    uuid: &str,
    result: &CallResult,
) -> DbResult<bool> {
    super::atomically(conn, |conn| {
        let finished = conn.execute(
            "UPDATE numbers SET call_status = 'done', cause = ?3, sip_code = ?4,
                 call_answer_time = coalesce(?5, call_answer_time), call_end_time = ?6, dtmf = ?7, updated_at = ?6,
                 record_path = ?8
             WHERE id = ?1 AND uuid = ?2 AND call_status = 'calling'",
            params![
                number_id,
                uuid,
                result.cause,
                result.sip_code,
                result.answered_at,
                result.ended_at,
                result.dtmf,
                result.record_path
            ],
        )? > 0;
        if finished {
            finish_attempt(conn, number_id, uuid, result)?;
        }
        Ok(finished)
    })
}

/// Completes the attempt row of a call with its result (`billsec`: answer to end).
fn finish_attempt(
    conn: &Connection,
    number_id: i64,
    uuid: &str,
    result: &CallResult,
) -> DbResult<()> {
    conn.execute(
        "UPDATE attempts SET call_answer_time = ?3, call_end_time = ?4, cause = ?5, sip_code = ?6,
             billsec = CASE WHEN ?3 IS NOT NULL AND ?4 >= ?3 THEN ?4 - ?3 ELSE 0 END,
             dtmf = ?7, record_path = ?8
         WHERE number_id = ?1 AND uuid = ?2 AND call_end_time IS NULL",
        params![
            number_id,
            uuid,
            result.answered_at,
            result.ended_at,
            result.cause,
            result.sip_code,
            result.dtmf,
            result.record_path
        ],
    )?;
    Ok(())
}

/// After a crash, calls left `calling` cannot be followed any more: they end with
/// `SYSTEM_SHUTDOWN` at the last time anything was known of them, and are never redialed.
pub fn finish_interrupted(conn: &Connection, cause: HangupCause) -> DbResult<usize> {
    super::atomically(conn, |conn| {
        conn.execute(
            "UPDATE attempts SET cause = ?1,
                 call_end_time = (SELECT n.updated_at FROM numbers n WHERE n.id = attempts.number_id)
             WHERE call_end_time IS NULL
               AND (number_id, uuid) IN (SELECT id, uuid FROM numbers WHERE call_status = 'calling')",
            [cause],
        )?;
        Ok(conn.execute(
            "UPDATE numbers SET call_status = 'done', cause = ?1, call_end_time = updated_at
             WHERE call_status = 'calling'",
            [cause],
        )?)
    })
}

/// The recording of a live number of a live task: its `record_path`, empty when it has none.
pub fn record_path(conn: &Connection, task_id: i64, number_id: i64) -> DbResult<String> {
    require_live_task(conn, task_id)?;
    conn.query_row(
        "SELECT record_path FROM numbers WHERE id = ?1 AND group_id = ?2 AND deleted_at IS NULL",
        [number_id, task_id],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound(format!("number {number_id} of task {task_id}")))
}
