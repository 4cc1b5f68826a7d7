//! The `numbers` table: the phone numbers of a task and each one's call result.

use std::ops::ControlFlow;

use rusqlite::{params, params_from_iter, types::Value, Connection, OptionalExtension, Row};

use super::{stats::BUCKET_BITS, DbError, DbResult, Page};
use crate::domain::{CallStatus, DestNumber, HangupCause, RetryCauses, Task};

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

/// How many numbers one claim looks at, at most, when the do-not-call list or the per-day cap
/// holds them back; past that it claims nothing and says so (`ClaimOptions::more`).
pub const CLAIM_CANDIDATES: usize = 64;

/// What a claim needs besides the task, and what the caller keeps between its claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimOptions {
    /// Most calls to one number (across all tasks) in any 24 hours; `None`: no cap.
    pub max_attempts_per_day: Option<u32>,
    /// Never-dialed numbers of the task are looked for above this id: the claim moves it past
    /// each one it takes or holds back, so that numbers waiting for a retry below it are not
    /// walked again at every claim. 0 (a new runner, a changed task) looks from the start.
    pub fresh_after: i64,
    /// Set by a claim that looked at [`CLAIM_CANDIDATES`] numbers and dialed none of them (all
    /// on the do-not-call list or held back by the cap): more may be ready now.
    pub more: bool,
}

/// Claims the task's next number, before it is dialed, so that a crash can never dial it twice:
/// first a retry that is due (the one due first, `next_attempt_at <= now`), else the next
/// never-dialed number in id order. It becomes `calling`, dialed (`outbound_call = 0`), with the
/// call's uuid and start time, and the call is kept as its next row of `attempts`. Claims nothing
/// unless the task is running.
///
/// Before every call, a number on the do-not-call list (for all tasks or this one) ends `done`
/// with cause `DNC` and is not dialed; a number that already had `max_attempts_per_day` calls in
/// the last 24 hours waits (`next_attempt_at`: 24 hours after the oldest of them). Either way the
/// claim moves on, at most [`CLAIM_CANDIDATES`] numbers.
pub fn claim_next(
    conn: &Connection,
    task_id: i64,
    uuid: &str,
    now: i64,
    options: &mut ClaimOptions,
) -> DbResult<Option<Claimed>> {
    options.more = false;
    super::atomically(conn, |conn| {
        let max_attempts: Option<i64> = conn
            .prepare_cached(
                "SELECT max_attempts FROM tasks WHERE id = ?1 AND status = 'running' AND deleted_at IS NULL",
            )?
            .query_row([task_id], |row| row.get(0))
            .optional()?;
        let Some(max_attempts) = max_attempts else {
            return Ok(None);
        };
        for _ in 0..CLAIM_CANDIDATES {
            let Some((id, dest_number, attempts, fresh)) =
                candidate(conn, task_id, now, options.fresh_after)?
            else {
                return Ok(None);
            };
            if fresh {
                options.fresh_after = id;
            }
            if attempts >= max_attempts {
                // `max_attempts` was lowered while the number waited: no call is left.
                conn.prepare_cached(
                    "UPDATE numbers SET call_status = 'done', next_attempt_at = NULL, updated_at = ?2
                     WHERE id = ?1",
                )?
                .execute(params![id, now])?;
                continue;
            }
            if on_dnc_list(conn, task_id, &dest_number)? {
                end_dnc(conn, id, now)?;
                continue;
            }
            if let Some(cap) = options.max_attempts_per_day {
                if let Some(free_at) = capped_until(conn, &dest_number, now, cap)? {
                    conn.prepare_cached("UPDATE numbers SET next_attempt_at = ?2 WHERE id = ?1")?
                        .execute(params![id, free_at])?;
                    continue;
                }
            }
            let claimed = conn
                .prepare_cached(
                    "UPDATE numbers SET call_status = 'calling', outbound_call = 0, uuid = ?2, call_start_time = ?3,
                         updated_at = ?3, dtmf = '', cause = '', sip_code = NULL,
                         call_answer_time = NULL, call_end_time = NULL, record_path = '',
                         attempts = attempts + 1, next_attempt_at = NULL
                     WHERE id = ?1 AND call_status = 'init'
                     RETURNING id, dest_number, attempts",
                )?
                .query_row(params![id, uuid, now], |row| {
                    Ok(Claimed {
                        id: row.get(0)?,
                        dest_number: row.get(1)?,
                        attempt: row.get(2)?,
                    })
                })?;
            record_attempt(conn, task_id, &claimed, uuid, now)?;
            return Ok(Some(claimed));
        }
        options.more = true;
        Ok(None)
    })
}

/// The task's next number to dial: (id, dest_number, calls so far, whether it was never dialed).
fn candidate(
    conn: &Connection,
    task_id: i64,
    now: i64,
    fresh_after: i64,
) -> DbResult<Option<(i64, String, i64, bool)>> {
    // The queue of held-back numbers, by due time (`numbers_retry_due`).
    let due = conn
        .prepare_cached(
            "SELECT id, dest_number, attempts FROM numbers INDEXED BY numbers_retry_due
             WHERE group_id = ?1 AND next_attempt_at IS NOT NULL AND deleted_at IS NULL
               AND next_attempt_at <= ?2 AND call_status = 'init'
             ORDER BY next_attempt_at, id LIMIT 1",
        )?
        .query_row(params![task_id, now], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, false))
        })
        .optional()?;
    if due.is_some() {
        return Ok(due);
    }
    // Never dialed and not held back, in id order (`numbers_by_task_status`), from the cursor.
    Ok(conn
        .prepare_cached(
            "SELECT id, dest_number, attempts FROM numbers
             WHERE group_id = ?1 AND call_status = 'init' AND deleted_at IS NULL AND id > ?2
               AND outbound_call = 1 AND next_attempt_at IS NULL
             ORDER BY id LIMIT 1",
        )?
        .query_row(params![task_id, fresh_after], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, true))
        })
        .optional()?)
}

/// Whether `dest_number` is on the do-not-call list for every task or for this one.
fn on_dnc_list(conn: &Connection, task_id: i64, dest_number: &str) -> DbResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM dnc WHERE number = ?1 AND (task_id IS NULL OR task_id = ?2)",
        )?
        .exists(params![dest_number, task_id])?)
}

/// A number found on the do-not-call list at its claim: done, cause `DNC`, never dialed again.
fn end_dnc(conn: &Connection, number_id: i64, now: i64) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE numbers SET call_status = 'done', cause = ?2, call_end_time = ?3, updated_at = ?3,
             next_attempt_at = NULL
         WHERE id = ?1",
    )?
    .execute(params![number_id, HangupCause::DNC, now])?;
    Ok(())
}

/// When `dest_number` already had `cap` calls (any task) in the 24 hours before `now`: the time
/// the oldest of them leaves that window; `None` when it may be called now.
fn capped_until(conn: &Connection, dest_number: &str, now: i64, cap: u32) -> DbResult<Option<i64>> {
    let (count, oldest): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*), min(call_start_time) FROM attempts
             WHERE dest_number = ?1 AND call_start_time > ?2",
        )?
        .query_row(params![dest_number, now - DAY], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    Ok((count >= i64::from(cap))
        .then(|| oldest.map(|oldest| oldest + DAY))
        .flatten())
}

const DAY: i64 = 86_400;

/// The earliest time a held-back number of a running task (a retry, or one the per-day cap
/// holds) may be dialed; `None` when none waits, or the task is not running (its held-back
/// numbers are `stop`).
pub fn next_due(conn: &Connection, task_id: i64) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT min(next_attempt_at) FROM numbers
             WHERE group_id = ?1 AND next_attempt_at IS NOT NULL AND deleted_at IS NULL
               AND EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND status = 'running' AND deleted_at IS NULL)",
        )?
        .query_row([task_id], |row| row.get(0))?)
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
                 next_attempt_at = CASE WHEN attempts > 1 THEN call_start_time END,
                 call_start_time = NULL, attempts = attempts - 1
             WHERE id = ?1 AND uuid = ?2 AND call_status = 'calling'",
            params![number_id, uuid],
        )?;
        if released > 0 {
            conn.execute(
                "DELETE FROM attempts WHERE number_id = ?1 AND uuid = ?2",
                params![number_id, uuid],
            )?;
            // A retry given back shows its previous call again, as before the claim.
            conn.execute(
                "UPDATE numbers SET (uuid, call_start_time, call_answer_time, call_end_time, cause,
                         sip_code, dtmf, record_path) =
                     (SELECT uuid, call_start_time, call_answer_time, call_end_time, cause, sip_code,
                             dtmf, record_path
                      FROM attempts WHERE number_id = ?1 ORDER BY attempt DESC LIMIT 1)
                 WHERE id = ?1 AND attempts > 0",
                [number_id],
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
/// claimed the number (same uuid) can finish it. The task's settings of this moment decide what
/// follows: when the number has calls left (`attempts < max_attempts`) and the cause is one of
/// `retry_causes`, it waits for its next call (`init`, or `stop` when its task was stopped
/// meanwhile) from `ended_at + retry_interval` on; otherwise it is `done`.
pub fn finish(
    conn: &Connection,
    number_id: i64,
    uuid: &str,
    result: &CallResult,
) -> DbResult<bool> {
    super::atomically(conn, |conn| {
        let settings = conn
            .prepare_cached(
                "SELECT t.max_attempts, t.retry_interval, t.retry_causes, t.status, n.attempts
                 FROM numbers n JOIN tasks t ON t.id = n.group_id
                 WHERE n.id = ?1 AND n.uuid = ?2 AND n.call_status = 'calling'",
            )?
            .query_row(params![number_id, uuid], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .optional()?;
        let Some((max_attempts, retry_interval, retry_causes, task_status, attempts)) = settings
        else {
            return Ok(false);
        };
        let retry =
            attempts < max_attempts && RetryCauses::stored(&retry_causes).contains(result.cause);
        let (status, next_attempt_at) = match (retry, task_status.as_str()) {
            (false, _) => (CallStatus::Done, None),
            (true, "running") => (CallStatus::Init, Some(result.ended_at + retry_interval)),
            (true, _) => (CallStatus::Stop, Some(result.ended_at + retry_interval)),
        };
        let finished = conn
            .prepare_cached(
                "UPDATE numbers SET call_status = ?9, next_attempt_at = ?10, cause = ?3, sip_code = ?4,
                     call_answer_time = coalesce(?5, call_answer_time), call_end_time = ?6, dtmf = ?7,
                     updated_at = ?6, record_path = ?8
                 WHERE id = ?1 AND uuid = ?2 AND call_status = 'calling'",
            )?
            .execute(params![
                number_id,
                uuid,
                result.cause,
                result.sip_code,
                result.answered_at,
                result.ended_at,
                result.dtmf,
                result.record_path,
                status.as_str(),
                next_attempt_at
            ])?
            > 0;
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
/// `SYSTEM_SHUTDOWN` at the last time anything was known of them, and are never redialed. The
/// numbers first, then their attempts: an attempt's end queues its webhook (schema step 7), whose
/// body shows the number as the call left it.
pub fn finish_interrupted(conn: &Connection, cause: HangupCause) -> DbResult<usize> {
    super::atomically(conn, |conn| {
        let interrupted = conn
            .prepare(
                "UPDATE numbers SET call_status = 'done', cause = ?1, call_end_time = updated_at
                 WHERE call_status = 'calling'
                 RETURNING id, uuid",
            )?
            .query_map([cause], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut complete = conn.prepare(
            "UPDATE attempts SET cause = ?3,
                 call_end_time = (SELECT updated_at FROM numbers WHERE id = ?1)
             WHERE number_id = ?1 AND uuid = ?2 AND call_end_time IS NULL",
        )?;
        for (number_id, uuid) in &interrupted {
            complete.execute(params![number_id, uuid, cause])?;
        }
        Ok(interrupted.len())
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

/// One call of a number (a row of `attempts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: i64,
    pub uuid: String,
    pub dest_number: String,
    pub call_start_time: i64,
    pub call_answer_time: Option<i64>,
    /// `None` while the call is alive.
    pub call_end_time: Option<i64>,
    /// `None` while the call is alive.
    pub cause: Option<HangupCause>,
    pub sip_code: Option<i64>,
    pub billsec: i64,
    pub dtmf: String,
    pub record_path: String,
}

/// The calls of a live number of a live task, in attempt order.
pub fn attempts(conn: &Connection, task_id: i64, number_id: i64) -> DbResult<Vec<Attempt>> {
    // One read transaction: the number checked is the one whose calls are listed.
    let tx = conn.unchecked_transaction()?;
    require_live_task(&tx, task_id)?;
    let exists = tx
        .prepare_cached(
            "SELECT 1 FROM numbers WHERE id = ?1 AND group_id = ?2 AND deleted_at IS NULL",
        )?
        .exists([number_id, task_id])?;
    if !exists {
        return Err(DbError::NotFound(format!(
            "number {number_id} of task {task_id}"
        )));
    }
    let attempts = tx
        .prepare_cached(
            "SELECT attempt, uuid, dest_number, call_start_time, call_answer_time, call_end_time, cause,
                    sip_code, billsec, dtmf, record_path
             FROM attempts WHERE number_id = ?1 ORDER BY attempt",
        )?
        .query_map([number_id], |row| {
            Ok(Attempt {
                attempt: row.get(0)?,
                uuid: row.get(1)?,
                dest_number: row.get(2)?,
                call_start_time: row.get(3)?,
                call_answer_time: row.get(4)?,
                call_end_time: row.get(5)?,
                cause: cause_from_row(row, 6)?,
                sip_code: row.get(7)?,
                billsec: row.get(8)?,
                dtmf: row.get(9)?,
                record_path: row.get(10)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(attempts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::{self, Db},
        domain::{MaxAttempts, RetryInterval, TaskName, TaskSettings},
    };

    struct Fixture {
        _dir: tempfile::TempDir,
        conn: r2d2::PooledConnection<r2d2_sqlite::SqliteConnectionManager>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        Fixture {
            conn: db.connection().unwrap(),
            _dir: dir,
        }
    }

    /// A running task with `numbers`, `max_attempts` calls each, 300 s apart, default causes.
    fn running_task(conn: &mut Connection, name: &str, max_attempts: i64, numbers: &[&str]) -> i64 {
        let settings = TaskSettings {
            group_name: Some(TaskName::new(name).unwrap()),
            max_attempts: Some(MaxAttempts::new(max_attempts).unwrap()),
            retry_interval: Some(RetryInterval::new(300).unwrap()),
            ..Default::default()
        };
        let id = db::tasks::create(conn, &settings, 10).unwrap();
        let numbers: Vec<NewNumber> = numbers
            .iter()
            .map(|n| NewNumber {
                dest_number: (*n).to_owned(),
                external_id: String::new(),
            })
            .collect();
        import(conn, id, &numbers, 10).unwrap();
        db::tasks::start(conn, &[id], 10).unwrap();
        id
    }

    fn ended(cause: HangupCause, at: i64) -> CallResult {
        CallResult {
            cause,
            sip_code: Some(486),
            answered_at: None,
            ended_at: at,
            dtmf: String::new(),
            record_path: String::new(),
        }
    }

    /// (call_status, outbound_call, attempts, next_attempt_at, cause) of a number.
    fn state(conn: &Connection, id: i64) -> (String, i64, i64, Option<i64>, String) {
        conn.query_row(
            "SELECT call_status, outbound_call, attempts, next_attempt_at, cause FROM numbers WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
    }

    fn claim(
        conn: &Connection,
        task: i64,
        uuid: &str,
        now: i64,
        options: &mut ClaimOptions,
    ) -> Option<Claimed> {
        claim_next(conn, task, uuid, now, options).unwrap()
    }

    #[test]
    fn a_retried_cause_waits_its_interval_then_is_claimed_first_until_no_attempt_is_left() {
        let mut f = fixture();
        let task = running_task(&mut f.conn, "t", 3, &["1004", "1000"]);
        let conn = &f.conn;
        let mut options = ClaimOptions::default();
        let busy = claim(conn, task, "u1", 100, &mut options).unwrap();
        assert_eq!((busy.dest_number.as_str(), busy.attempt), ("1004", 1));
        assert!(finish(conn, busy.id, "u1", &ended(HangupCause::USER_BUSY, 110)).unwrap());
        assert_eq!(
            state(conn, busy.id),
            ("init".into(), 0, 1, Some(410), "USER_BUSY".into())
        );
        assert_eq!(next_due(conn, task).unwrap(), Some(410));
        assert_eq!(
            db::stats::of_task(conn, task)
                .unwrap()
                .unwrap()
                .retry_pending,
            1
        );
        // Not due: the fresh number comes next, then nothing.
        let fresh = claim(conn, task, "u2", 200, &mut options).unwrap();
        assert_eq!(fresh.dest_number, "1000");
        assert_eq!(claim(conn, task, "u3", 409, &mut options), None);
        assert!(!options.more);
        // Due: the same number again, its second call.
        let again = claim(conn, task, "u4", 410, &mut options).unwrap();
        assert_eq!((again.id, again.attempt), (busy.id, 2));
        finish(conn, again.id, "u4", &ended(HangupCause::NO_ANSWER, 420)).unwrap();
        let third = claim(conn, task, "u5", 720, &mut options).unwrap();
        assert_eq!(third.attempt, 3);
        finish(conn, third.id, "u5", &ended(HangupCause::USER_BUSY, 730)).unwrap();
        // No call left: done, although the cause is retried.
        assert_eq!(
            state(conn, busy.id),
            ("done".into(), 0, 3, None, "USER_BUSY".into())
        );
        assert_eq!(claim(conn, task, "u6", 10_000, &mut options), None);
        assert_eq!(next_due(conn, task).unwrap(), None);
        let calls: Vec<(i64, String, String)> = conn
            .prepare(
                "SELECT attempt, uuid, cause FROM attempts WHERE number_id = ?1 ORDER BY attempt",
            )
            .unwrap()
            .query_map([busy.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            calls,
            vec![
                (1, "u1".into(), "USER_BUSY".into()),
                (2, "u4".into(), "NO_ANSWER".into()),
                (3, "u5".into(), "USER_BUSY".into())
            ]
        );
    }

    #[test]
    fn a_retry_left_by_a_lowered_max_attempts_ends_done_uncalled() {
        let mut f = fixture();
        let task = running_task(&mut f.conn, "t", 3, &["1004"]);
        let busy = claim(&f.conn, task, "u1", 100, &mut ClaimOptions::default()).unwrap();
        finish(&f.conn, busy.id, "u1", &ended(HangupCause::USER_BUSY, 110)).unwrap();
        f.conn
            .execute("UPDATE tasks SET max_attempts = 1 WHERE id = ?1", [task])
            .unwrap();
        assert_eq!(
            claim(&f.conn, task, "u2", 500, &mut ClaimOptions::default()),
            None
        );
        assert_eq!(
            state(&f.conn, busy.id),
            ("done".into(), 0, 1, None, "USER_BUSY".into())
        );
        assert!(db::tasks::finish_if_complete(&f.conn, task, 500).unwrap());
    }

    #[test]
    fn a_cause_not_retried_and_a_single_attempt_end_done() {
        let mut f = fixture();
        let task = running_task(&mut f.conn, "t", 3, &["1003"]);
        let once = running_task(&mut f.conn, "once", 1, &["1004"]);
        let conn = &f.conn;
        let answered = claim(conn, task, "u1", 100, &mut ClaimOptions::default()).unwrap();
        finish(
            conn,
            answered.id,
            "u1",
            &ended(HangupCause::NORMAL_CLEARING, 110),
        )
        .unwrap();
        assert_eq!(state(conn, answered.id).0, "done");
        let busy = claim(conn, once, "u2", 100, &mut ClaimOptions::default()).unwrap();
        finish(conn, busy.id, "u2", &ended(HangupCause::USER_BUSY, 110)).unwrap();
        assert_eq!(
            state(conn, busy.id),
            ("done".into(), 0, 1, None, "USER_BUSY".into())
        );
    }

    #[test]
    fn stop_and_start_keep_a_pending_retry_and_its_due_time() {
        let mut f = fixture();
        let task = running_task(&mut f.conn, "t", 2, &["1004"]);
        let busy = claim(&f.conn, task, "u1", 100, &mut ClaimOptions::default()).unwrap();
        finish(&f.conn, busy.id, "u1", &ended(HangupCause::USER_BUSY, 110)).unwrap();
        db::tasks::stop(&mut f.conn, &[task], 120).unwrap();
        assert_eq!(
            state(&f.conn, busy.id),
            ("stop".into(), 0, 1, Some(410), "USER_BUSY".into())
        );
        assert_eq!(
            next_due(&f.conn, task).unwrap(),
            None,
            "a stopped task waits for nothing"
        );
        db::tasks::start(&mut f.conn, &[task], 130).unwrap();
        assert_eq!(
            state(&f.conn, busy.id),
            ("init".into(), 0, 1, Some(410), "USER_BUSY".into())
        );
        assert_eq!(
            claim(&f.conn, task, "u2", 409, &mut ClaimOptions::default()),
            None
        );
        assert_eq!(
            claim(&f.conn, task, "u2", 410, &mut ClaimOptions::default())
                .unwrap()
                .attempt,
            2
        );
    }

    #[test]
    fn a_call_ending_after_its_task_stopped_waits_stopped() {
        let mut f = fixture();
        let task = running_task(&mut f.conn, "t", 2, &["1004"]);
        let busy = claim(&f.conn, task, "u1", 100, &mut ClaimOptions::default()).unwrap();
        db::tasks::stop(&mut f.conn, &[task], 105).unwrap();
        finish(&f.conn, busy.id, "u1", &ended(HangupCause::USER_BUSY, 110)).unwrap();
        assert_eq!(
            state(&f.conn, busy.id),
            ("stop".into(), 0, 1, Some(410), "USER_BUSY".into())
        );
        db::tasks::start(&mut f.conn, &[task], 130).unwrap();
        assert_eq!(state(&f.conn, busy.id).0, "init");
    }

    #[test]
    fn a_released_retry_is_due_again_not_a_first_call() {
        let mut f = fixture();
        let task = running_task(&mut f.conn, "t", 3, &["1004"]);
        let conn = &f.conn;
        let busy = claim(conn, task, "u1", 100, &mut ClaimOptions::default()).unwrap();
        finish(conn, busy.id, "u1", &ended(HangupCause::USER_BUSY, 110)).unwrap();
        let again = claim(conn, task, "u2", 500, &mut ClaimOptions::default()).unwrap();
        release_claim(conn, again.id, "u2").unwrap();
        assert_eq!(
            state(conn, busy.id),
            ("init".into(), 0, 1, Some(500), "USER_BUSY".into())
        );
        assert_eq!(
            claim(conn, task, "u3", 500, &mut ClaimOptions::default())
                .unwrap()
                .attempt,
            2
        );
    }

    #[test]
    fn the_do_not_call_list_is_checked_before_every_call() {
        let mut f = fixture();
        let task = running_task(&mut f.conn, "t", 3, &["1004", "1000", "1003"]);
        let other = running_task(&mut f.conn, "other", 1, &["1003"]);
        let conn = &f.conn;
        let busy = claim(conn, task, "u1", 100, &mut ClaimOptions::default()).unwrap();
        finish(conn, busy.id, "u1", &ended(HangupCause::USER_BUSY, 110)).unwrap();
        conn.execute_batch(
            "INSERT INTO dnc (number, task_id, created_at) VALUES ('1004', NULL, 1);
             INSERT INTO dnc (number, task_id, created_at) VALUES ('1000', NULL, 1);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO dnc (number, task_id, created_at) VALUES ('1003', ?1, 1)",
            [task],
        )
        .unwrap();
        // The due retry and the fresh 1000 end DNC; 1003 is listed for this task only.
        assert_eq!(
            claim(conn, task, "u2", 1_000, &mut ClaimOptions::default()),
            None
        );
        let ended: Vec<(String, String, String, i64, Option<i64>)> = conn
            .prepare("SELECT dest_number, call_status, cause, outbound_call, call_end_time FROM numbers WHERE group_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([task], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            ended,
            vec![
                ("1004".into(), "done".into(), "DNC".into(), 0, Some(1_000)),
                ("1000".into(), "done".into(), "DNC".into(), 1, Some(1_000)),
                ("1003".into(), "done".into(), "DNC".into(), 1, Some(1_000)),
            ]
        );
        let attempts: i64 = conn
            .query_row(
                "SELECT count(*) FROM attempts WHERE group_id = ?1",
                [task],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(attempts, 1, "only the first call of 1004 was placed");
        assert_eq!(
            claim(conn, other, "u3", 1_000, &mut ClaimOptions::default())
                .unwrap()
                .dest_number,
            "1003"
        );
    }

    #[test]
    fn a_claim_looks_at_a_bounded_number_of_candidates() {
        let mut f = fixture();
        let listed: Vec<String> = (0..CLAIM_CANDIDATES + 6)
            .map(|i| format!("2{i:04}"))
            .collect();
        let mut numbers: Vec<&str> = listed.iter().map(String::as_str).collect();
        numbers.push("1000");
        let task = running_task(&mut f.conn, "t", 1, &numbers);
        for number in &listed {
            f.conn
                .execute(
                    "INSERT INTO dnc (number, created_at) VALUES (?1, 1)",
                    [number],
                )
                .unwrap();
        }
        let mut options = ClaimOptions::default();
        assert_eq!(claim(&f.conn, task, "u1", 100, &mut options), None);
        assert!(options.more, "more may be ready");
        let claimed = claim(&f.conn, task, "u1", 100, &mut options).unwrap();
        assert_eq!(claimed.dest_number, "1000");
        assert!(!options.more);
        let refused: i64 = f
            .conn
            .query_row(
                "SELECT count(*) FROM numbers WHERE group_id = ?1 AND cause = 'DNC' AND call_status = 'done'",
                [task],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(refused, listed.len() as i64);
    }

    #[test]
    fn the_per_day_cap_holds_a_number_back_across_tasks_without_failing_it() {
        let mut f = fixture();
        let first = running_task(&mut f.conn, "a", 1, &["1003"]);
        let second = running_task(&mut f.conn, "b", 1, &["1003", "1000"]);
        let conn = &f.conn;
        let capped = |cap| ClaimOptions {
            max_attempts_per_day: Some(cap),
            ..ClaimOptions::default()
        };
        let a = claim(conn, first, "u1", 1_000, &mut capped(1)).unwrap();
        finish(
            conn,
            a.id,
            "u1",
            &ended(HangupCause::NORMAL_CLEARING, 1_010),
        )
        .unwrap();
        // Task b's 1003 already had its call today: it waits, 1000 is dialed instead.
        let mut options = capped(1);
        let b = claim(conn, second, "u2", 2_000, &mut options).unwrap();
        assert_eq!(b.dest_number, "1000");
        let held = conn
            .query_row(
                "SELECT id FROM numbers WHERE group_id = ?1 AND dest_number = '1003'",
                [second],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
        assert_eq!(
            state(conn, held),
            ("init".into(), 1, 0, Some(1_000 + 86_400), String::new())
        );
        assert_eq!(
            claim(conn, second, "u3", 1_000 + 86_399, &mut options),
            None
        );
        let later = claim(conn, second, "u3", 1_000 + 86_400, &mut options).unwrap();
        assert_eq!((later.id, later.attempt), (held, 1));
        // Without the cap nothing is held back.
        let third = running_task(&mut f.conn, "c", 1, &["1003"]);
        assert!(claim(
            &f.conn,
            third,
            "u4",
            1_000 + 86_400,
            &mut ClaimOptions::default()
        )
        .is_some());
    }
}
