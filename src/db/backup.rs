//! `outcall backup`: a consistent copy of the database, taken with SQLite's online backup API
//! while outcall may be running (and dialing) on the same file.

use std::path::Path;

use std::time::Duration;

use rusqlite::{
    backup::{Backup, StepResult},
    Connection, OpenFlags,
};

use super::{quick_check, DbResult, BUSY_TIMEOUT};

/// What a backup copied.
#[derive(Debug, Clone, Copy)]
pub struct BackupReport {
    pub pages: i32,
}

/// Copies `source` to `destination` (replacing it) and checks the copy. The source is opened
/// without creating it and read in one step, inside one read transaction: with WAL that snapshot
/// is consistent and does not hold up the writers of a running outcall. A missing database is an
/// error, not an empty copy.
pub fn backup(source: &Path, destination: &Path) -> DbResult<BackupReport> {
    let source_conn = Connection::open_with_flags(
        source,
        // Read-write (never written) rather than read-only: a read-only connection cannot open a
        // WAL database whose -shm file no running outcall has made.
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source_conn.busy_timeout(BUSY_TIMEOUT)?;
    quick_check(&source_conn, source)?;
    let mut destination_conn = Connection::open(destination)?;
    destination_conn.busy_timeout(BUSY_TIMEOUT)?;
    let pages = {
        let backup = Backup::new(&source_conn, &mut destination_conn)?;
        // -1: every page in one step, so no writer can restart the copy half-way. BUSY or LOCKED
        // (a checkpoint, a writer switching the file) are retried for a bounded time.
        let mut attempts = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked if attempts < 300 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => {
                    return Err(super::DbError::Conflict(format!(
                        "the backup could not read the database ({other:?}); try again"
                    )))
                }
            }
        }
        backup.progress().pagecount
    };
    quick_check(&destination_conn, destination)?;
    Ok(BackupReport { pages })
}
