//! The SQLite database: the connection pool, the schema migrations, and all SQL (one file per table).

pub mod backup;
pub mod dnc;
pub mod media_files;
pub mod metrics;
pub mod numbers;
pub mod sessions;
pub mod stats;
pub mod tasks;
pub mod users;
pub mod webhooks;

use std::{path::Path, time::Duration};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{
    types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef},
    Connection, ToSql,
};

use crate::domain::{Action, CallStatus, HangupCause, Role, TaskStatus};

pub use rusqlite;

const SCHEMA: &str = include_str!("../../schema.sql");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database worker failed: {0}")]
    Worker(String),
    #[error(
        "the database {path} is damaged ({detail}); outcall will not run on it. Restore it from a \
         backup made with `outcall backup <file>`: stop outcall, copy the backup over {path}, \
         delete {path}-wal and {path}-shm if present, and start outcall again"
    )]
    Corrupt { path: String, detail: String },
}

/// SQLite's `synchronous` setting: how hard a commit is pushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Synchronous {
    /// With WAL, a crash of outcall loses nothing; a power cut may lose the last commits.
    #[default]
    Normal,
    /// Every commit is synced: survives a power cut too, at the cost of write speed.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// A pool of connections to one SQLite file. Cloning shares the pool.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<SqliteConnectionManager>,
}

impl Db {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> DbResult<Self> {
        Self::open_with(path, Synchronous::Normal)
    }

    /// Like `open`, with the given `synchronous`. An existing file must pass SQLite's
    /// `quick_check` first: a damaged database is refused, not written to.
    pub fn open_with(path: &Path, synchronous: Synchronous) -> DbResult<Self> {
        {
            // One connection checks the file and switches it to WAL (a setting kept in the file)
            // before the pool opens its connections: pool connections racing to switch the
            // journal mode of a new file fail with "database is locked".
            let conn = Connection::open(path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            quick_check(&conn, path)?;
            let _mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        }
        let db = Self::pool(path, synchronous, 8)?;
        migrate(&mut *db.connection()?)?;
        Ok(db)
    }

    /// Another pool of `size` connections on a database `open_with` opened, for the dialer: HTTP
    /// requests holding every connection of the API's pool cannot make a claim or a result wait.
    pub fn open_another(path: &Path, synchronous: Synchronous, size: u32) -> DbResult<Self> {
        Self::pool(path, synchronous, size)
    }

    fn pool(path: &Path, synchronous: Synchronous, size: u32) -> DbResult<Self> {
        // Every pooled connection gets the same settings, whoever opens it.
        let manager = SqliteConnectionManager::file(path).with_init(move |conn| {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.execute_batch(&format!(
                "PRAGMA synchronous = {};
                 PRAGMA foreign_keys = ON;",
                synchronous.pragma_value()
            ))
        });
        let pool = r2d2::Pool::builder().max_size(size).build(manager)?;
        Ok(Db { pool })
    }

    pub fn connection(&self) -> DbResult<r2d2::PooledConnection<SqliteConnectionManager>> {
        Ok(self.pool.get()?)
    }

    /// Runs blocking database work on tokio's blocking pool, off the async workers.
    pub async fn run<T, F>(&self, work: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || work(&mut *pool.get()?))
            .await
            .map_err(|e| DbError::Worker(e.to_string()))?
    }

    pub async fn schema_version(&self) -> DbResult<u32> {
        self.run(|conn| Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?))
            .await
    }
}

/// How long a statement waits for another connection's write lock before failing with BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's quick integrity check (a new, empty file passes). A file that is not a database at
/// all counts as damaged too.
pub fn quick_check(conn: &Connection, path: &Path) -> DbResult<()> {
    let corrupt = |detail: String| DbError::Corrupt {
        path: path.display().to_string(),
        detail,
    };
    let mut statement = match conn.prepare("PRAGMA quick_check") {
        Ok(statement) => statement,
        Err(error) if is_damage(&error) => return Err(corrupt(error.to_string())),
        Err(error) => return Err(error.into()),
    };
    let findings: Vec<String> = match statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect())
    {
        Ok(findings) => findings,
        Err(error) if is_damage(&error) => return Err(corrupt(error.to_string())),
        Err(error) => return Err(error.into()),
    };
    if findings.len() == 1 && findings[0] == "ok" {
        return Ok(());
    }
    let mut detail = findings.into_iter().take(3).collect::<Vec<_>>().join("; ");
    if detail.is_empty() {
        detail = "quick_check reported nothing".into();
    }
    Err(corrupt(format!("quick_check: {detail}")))
}

fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// The `-- step N` blocks of schema.sql, in order.
fn schema_steps() -> Vec<&'static str> {
    SCHEMA
        .split("\n-- step ")
        .skip(1)
        .map(|step| step.split_once('\n').map_or("", |(_number, body)| body))
        .collect()
}

pub fn latest_schema_version() -> u32 {
    schema_steps().len() as u32
}

/// Applies every step newer than the database's `user_version`, each in its own transaction
/// together with the version bump, so a crash leaves either the old or the new version.
fn migrate(conn: &mut Connection) -> DbResult<()> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let steps = schema_steps();
    if current as usize > steps.len() {
        return Err(DbError::Conflict(format!(
            "the database is at schema version {current}, newer than this outcall ({}): refusing to touch it",
            steps.len()
        )));
    }
    for (index, step) in steps.iter().enumerate().skip(current as usize) {
        let version = index as u32 + 1;
        let tx = write_transaction(conn)?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied schema step");
    }
    Ok(())
}

/// Runs `work` all or nothing. Outside a transaction it is one of its own that takes the write lock
/// at once (`BEGIN IMMEDIATE`, see [`write_transaction`]: a deferred one that reads first fails
/// with SQLITE_BUSY when another connection writes between its read and its first write); inside
/// one it is a savepoint of it.
pub fn atomically<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> DbResult<T>,
) -> DbResult<T> {
    let (begin, commit, rollback) = if conn.is_autocommit() {
        ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
    } else {
        (
            "SAVEPOINT outcall_atomically",
            "RELEASE outcall_atomically",
            "ROLLBACK TO outcall_atomically; RELEASE outcall_atomically",
        )
    };
    conn.execute_batch(begin)?;
    let done = work(conn).and_then(|value| {
        conn.execute_batch(commit)?;
        Ok(value)
    });
    if done.is_err() && !conn.is_autocommit() {
        // The rollback's own error would hide the one that matters.
        let _ = conn.execute_batch(rollback);
    }
    done
}

/// A transaction that takes the write lock at once. A deferred one that reads first would fail
/// with SQLITE_BUSY, busy timeout or not, when another connection (the dialer) commits a write
/// between its read and its own first write.
pub fn write_transaction(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// The domain's named values are stored as their names.
fn name_from_sql<T: std::str::FromStr>(value: ValueRef<'_>) -> FromSqlResult<T> {
    let text = value.as_str()?;
    text.parse()
        .map_err(|_| FromSqlError::Other(format!("unknown stored value {text:?}").into()))
}

impl FromSql for TaskStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        name_from_sql(value)
    }
}

impl FromSql for CallStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        name_from_sql(value)
    }
}

impl FromSql for Role {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        name_from_sql(value)
    }
}

impl ToSql for Role {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for Action {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        name_from_sql(value)
    }
}

impl ToSql for TaskStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl ToSql for CallStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl ToSql for HangupCause {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// `LIMIT`/`OFFSET` of a 1-based page.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub number: u32,
    pub per_page: u32,
}

impl Page {
    fn offset(&self) -> i64 {
        (self.number as i64 - 1) * self.per_page as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        let conn = db.connection().unwrap();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, latest_schema_version());
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        drop(conn);
        drop(db);
        // Reopening applies nothing again (a second CREATE TABLE would fail).
        Db::open(&path).unwrap();
    }

    #[test]
    fn synchronous_is_set_on_every_pooled_connection() {
        let dir = tempfile::tempdir().unwrap();
        for (setting, expected) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
            let db = Db::open_with(&dir.path().join(format!("{setting:?}.db")), setting).unwrap();
            let connections: Vec<_> = (0..3).map(|_| db.connection().unwrap()).collect();
            for conn in &connections {
                let value: i64 = conn
                    .pragma_query_value(None, "synchronous", |r| r.get(0))
                    .unwrap();
                assert_eq!(value, expected, "{setting:?}");
            }
        }
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_naming_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outcall.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let error = Db::open(&path).err().expect("refused");
        assert!(matches!(error, DbError::Corrupt { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("outcall backup"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn an_older_database_is_brought_up_to_date_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema_steps()[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO tasks (group_name, created_at, updated_at) VALUES ('t', 0, 0)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO numbers (group_id, dest_number, created_at, updated_at) VALUES (1, '1000', 0, 0)",
                [],
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let conn = db.connection().unwrap();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, latest_schema_version());
        let (number, record_path): (String, String) = conn
            .query_row("SELECT dest_number, record_path FROM numbers", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((number.as_str(), record_path.as_str()), ("1000", ""));
    }
}
