//! Rows read straight from outcall's SQLite file, as an operator would, and the sim's call log
//! (`--sim-call-log`: a line `<unix ms> <uuid> <number>` per call placed, written with write(2)
//! so that it survives a SIGKILL).

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use outcall::db::rusqlite::{Connection, OpenFlags};

/// A connection to the database file, with a 10 s busy timeout.
pub fn open(database: &Path) -> Connection {
    let conn = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .unwrap_or_else(|e| panic!("the database file {} opens: {e}", database.display()));
    conn.busy_timeout(Duration::from_secs(10))
        .expect("a busy timeout");
    conn
}

/// A number's call fields as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub call_status: String,
    pub outbound_call: i64,
    pub uuid: String,
    pub cause: String,
    pub dtmf: String,
    pub sip_code: Option<i64>,
    pub call_start_time: Option<i64>,
    pub call_answer_time: Option<i64>,
    pub call_end_time: Option<i64>,
}

/// Every number of the task by dest_number.
pub fn numbers(database: &Path, task_id: i64) -> HashMap<String, Row> {
    let conn = open(database);
    let mut statement = conn
        .prepare(
            "SELECT dest_number, call_status, outbound_call, uuid, cause, dtmf, sip_code,
                    call_start_time, call_answer_time, call_end_time
             FROM numbers WHERE group_id = ?1 ORDER BY id",
        )
        .unwrap();
    let rows = statement
        .query_map([task_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                Row {
                    call_status: row.get(1)?,
                    outbound_call: row.get(2)?,
                    uuid: row.get(3)?,
                    cause: row.get(4)?,
                    dtmf: row.get(5)?,
                    sip_code: row.get(6)?,
                    call_start_time: row.get(7)?,
                    call_answer_time: row.get(8)?,
                    call_end_time: row.get(9)?,
                },
            ))
        })
        .unwrap()
        .collect::<Result<HashMap<_, _>, _>>()
        .unwrap();
    rows
}

/// The task's stored status.
pub fn task_status(database: &Path, task_id: i64) -> String {
    open(database)
        .query_row("SELECT status FROM tasks WHERE id = ?1", [task_id], |row| {
            row.get(0)
        })
        .unwrap()
}

/// The numbers whose `call_status` is `status`.
pub fn with_status<'a>(rows: &'a HashMap<String, Row>, status: &str) -> HashSet<&'a str> {
    rows.iter()
        .filter(|(_, row)| row.call_status == status)
        .map(|(number, _)| number.as_str())
        .collect()
}

/// One line of the sim's call log.
#[derive(Debug, Clone)]
pub struct Placed {
    pub unix_ms: u128,
    pub uuid: String,
    pub number: String,
}

/// The sim's call log (empty when there is none yet).
pub fn read_call_log(path: &Path) -> Vec<Placed> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(
                parts.len(),
                3,
                "a call log line is `<ms> <uuid> <number>`: {line:?}"
            );
            Placed {
                unix_ms: parts[0].parse().expect("unix ms"),
                uuid: parts[1].to_owned(),
                number: parts[2].to_owned(),
            }
        })
        .collect()
}

/// The call log by number, asserting no number was placed twice.
pub fn placed_by_number(log: &[Placed]) -> HashMap<String, Placed> {
    let mut by_number = HashMap::new();
    for line in log {
        if let Some(earlier) = by_number.insert(line.number.clone(), line.clone()) {
            panic!(
                "number {} was placed twice: {earlier:?} and {line:?}",
                line.number
            );
        }
    }
    by_number
}
