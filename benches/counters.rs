//! What the per-task counters (schema step 4) cost the database's bulk writes: an import of
//! 1,000,000 numbers in one transaction (counted once, `db::stats::count_added_numbers`), a stop
//! (1,000,000 waiting numbers become `stop`, each counted by the update trigger) and a start (back
//! to waiting); then the same with no counter trigger at all (the cost of the counters), and with a
//! per-row INSERT trigger added (why imports count their rows themselves). Also times the stats read and the full count it replaces.
//!
//! Run: `cargo bench --bench counters` (`OUTCALL_BENCH_NUMBERS` to change the count).

use std::time::{Duration, Instant};

use outcall::{
    db::{self, numbers::NewNumber, rusqlite::Connection, Db},
    domain::{TaskName, TaskSettings},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    AsBuilt,
    NoTriggers,
    InsertTrigger,
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = work();
    (value, started.elapsed())
}

fn task(conn: &mut Connection) -> i64 {
    let settings = TaskSettings {
        group_name: Some(TaskName::new("bench").unwrap()),
        ..Default::default()
    };
    db::tasks::create(conn, &settings, 1).unwrap()
}

fn main() {
    let count: usize = std::env::var("OUTCALL_BENCH_NUMBERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let numbers: Vec<NewNumber> = (0..count)
        .map(|n| NewNumber {
            dest_number: format!("+86138{n:08}"),
            external_id: format!("row-{n}"),
        })
        .collect();
    println!("{count} numbers, one transaction each step");
    for variant in [
        Variant::AsBuilt,
        Variant::NoTriggers,
        Variant::InsertTrigger,
    ] {
        let with_insert_trigger = variant == Variant::InsertTrigger;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("bench.db")).unwrap();
        let mut conn = db.connection().unwrap();
        if with_insert_trigger {
            // The trigger an import would need without its own count (which is then undone).
            conn.execute_batch(
                "CREATE TRIGGER bench_number_added AFTER INSERT ON numbers WHEN NEW.deleted_at IS NULL
                 BEGIN
                     UPDATE task_counts SET total = total + 1, init = init + (NEW.call_status = 'init')
                     WHERE group_id = NEW.group_id;
                 END;",
            )
            .unwrap();
        }
        if variant == Variant::NoTriggers {
            conn.execute_batch(
                "DROP TRIGGER task_counts_number_changed; DROP TRIGGER task_cause_counts_number_changed;
                 DROP TRIGGER task_counts_number_removed;",
            )
            .unwrap();
        }
        let id = task(&mut conn);
        let (_, import) = timed(|| {
            db::numbers::import(&mut conn, id, &numbers, 2).unwrap();
            if with_insert_trigger {
                conn.execute(
                    "UPDATE task_counts SET total = total - ?2, init = init - ?2 WHERE group_id = ?1",
                    [id, count as i64],
                )
                .unwrap();
            }
        });
        let (_, stop) = timed(|| db::tasks::stop(&mut conn, &[id], 3).unwrap());
        let (_, start) = timed(|| db::tasks::start(&mut conn, &[id], 4).unwrap());
        let (counts, read) = timed(|| db::stats::of_task(&conn, id).unwrap().unwrap());
        // What the event publisher reads every second: the running tasks' counters.
        let (_, publisher) = timed(|| {
            for _ in 0..1000 {
                assert_eq!(db::stats::of_running_tasks(&conn).unwrap().len(), 1);
            }
        });
        assert_eq!(counts.total, count as i64);
        if variant != Variant::NoTriggers {
            assert_eq!(counts.init, count as i64);
        }
        let (_, scan) = timed(|| {
            conn.query_row(
                "SELECT count(*) FROM numbers WHERE group_id = ?1 GROUP BY call_status",
                [id],
                |row| row.get::<_, i64>(0),
            )
            .unwrap()
        });
        println!(
            "{}: import {:.2} s, stop {:.2} s, start {:.2} s; stats read {:.0} µs (a full count: {:.0} ms); \
             the publisher's read of the running task {:.0} µs",
            match variant {
                Variant::AsBuilt => "as built (import counted once)",
                Variant::NoTriggers => "no counter triggers at all    ",
                Variant::InsertTrigger => "with a per-row INSERT trigger ",
            },
            import.as_secs_f64(),
            stop.as_secs_f64(),
            start.as_secs_f64(),
            read.as_secs_f64() * 1e6,
            scan.as_secs_f64() * 1e3,
            publisher.as_secs_f64() * 1e3,
        );
    }
}
