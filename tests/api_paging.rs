//! Paging (`page`, `perPage`, `rowCount`, `pageCount`) and the `name` / `status` filters of the
//! task list, and paging and filters of a task's numbers.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

const TASKS: &str = "/api/out_call_tasks";

/// One page: asserts the envelope and its counts, answers the items.
async fn page(app: &TestApp, path: &str, page: u64, row_count: u64, page_count: u64) -> Vec<Value> {
    let reply = app.get(path).await;
    assert_eq!(
        reply.status,
        reqwest::StatusCode::OK,
        "GET {path}: {}",
        reply.body
    );
    let data = list_data(&reply.body);
    assert_eq!(
        (
            reply.body["page"].clone(),
            reply.body["rowCount"].clone(),
            reply.body["pageCount"].clone()
        ),
        (json!(page), json!(row_count), json!(page_count)),
        "page, rowCount, pageCount of GET {path}"
    );
    data
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().expect("id is a string").to_owned())
        .collect()
}

/// The pages together hold every row exactly once.
fn assert_partition(pages: &[Vec<Value>], all: usize) {
    let listed: Vec<String> = pages.iter().flat_map(|p| ids(p)).collect();
    let distinct: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), all, "{listed:?}");
    assert_eq!(distinct.len(), all, "no row on two pages: {listed:?}");
}

async fn create_tasks(app: &TestApp, names: impl IntoIterator<Item = String>) -> Vec<i64> {
    let mut ids = Vec::new();
    for name in names {
        ids.push(app.create_task(&name).await);
    }
    ids
}

#[tokio::test]
async fn the_task_list_pages() {
    let app = spawn_app().await;
    create_tasks(&app, (1..=25).map(|i| format!("task-{i:02}"))).await;

    // Default: 20 a page.
    let first = page(&app, TASKS, 1, 25, 2).await;
    assert_eq!(first.len(), 20);
    first.iter().for_each(assert_list_task_shape);
    let second = page(&app, &format!("{TASKS}?page=2"), 2, 25, 2).await;
    assert_eq!(second.len(), 5);
    assert_partition(&[first, second], 25);

    // perPage=7: pages of 7, 7, 7, 4, then nothing.
    let mut pages = Vec::new();
    for (number, expected) in [(1, 7), (2, 7), (3, 7), (4, 4)] {
        let items = page(
            &app,
            &format!("{TASKS}?perPage=7&page={number}"),
            number,
            25,
            4,
        )
        .await;
        assert_eq!(items.len(), expected, "page {number}");
        pages.push(items);
    }
    assert_partition(&pages, 25);
    assert!(page(&app, &format!("{TASKS}?perPage=7&page=5"), 5, 25, 4)
        .await
        .is_empty());
    assert!(page(&app, &format!("{TASKS}?page=1000"), 1000, 25, 2)
        .await
        .is_empty());

    // The extremes of perPage.
    assert_eq!(
        page(&app, &format!("{TASKS}?perPage=1&page=25"), 25, 25, 25)
            .await
            .len(),
        1
    );
    assert_eq!(
        page(&app, &format!("{TASKS}?perPage=10000"), 1, 25, 1)
            .await
            .len(),
        25
    );
    assert_eq!(
        page(&app, &format!("{TASKS}?perPage=25"), 1, 25, 1)
            .await
            .len(),
        25
    );
    assert_eq!(
        page(&app, &format!("{TASKS}?perPage=24&page=2"), 2, 25, 2)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_paging_parameters_are_400() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    for path in [TASKS.to_owned(), format!("{TASKS}/{id}/numbers")] {
        for (query, field) in [
            ("perPage=0", "perPage"),
            ("perPage=10001", "perPage"),
            ("perPage=-5", "perPage"),
            ("perPage=abc", "perPage"),
            ("perPage=2.5", "perPage"),
            ("page=0", "page"),
            ("page=abc", "page"),
            ("page=-1", "page"),
        ] {
            assert_error(&app.get(&format!("{path}?{query}")).await, 400, field);
        }
    }
    assert_error(
        &app.get(&format!("{TASKS}?status=paused")).await,
        400,
        "status",
    );
}

#[tokio::test]
async fn name_filters_by_substring() {
    let app = spawn_app().await;
    create_tasks(&app, (1..=12).map(|i| format!("alpha-{i:02}"))).await;
    create_tasks(&app, (1..=13).map(|i| format!("beta-{i:02}"))).await;
    create_tasks(
        &app,
        ["外呼测试".to_owned(), "test".to_owned(), "test2".to_owned()],
    )
    .await;

    let alpha = page(&app, &format!("{TASKS}?name=alpha"), 1, 12, 1).await;
    assert!(alpha
        .iter()
        .all(|t| t["group_name"].as_str().unwrap().starts_with("alpha-")));
    let middle = page(&app, &format!("{TASKS}?name=ta-1"), 1, 4, 1).await;
    let mut names: Vec<&str> = middle
        .iter()
        .map(|t| t["group_name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["beta-10", "beta-11", "beta-12", "beta-13"]);
    let beta_paged = page(
        &app,
        &format!("{TASKS}?name=beta&perPage=5&page=3"),
        3,
        13,
        3,
    )
    .await;
    assert_eq!(beta_paged.len(), 3);

    let chinese = page(&app, &format!("{TASKS}?name=%E6%B5%8B%E8%AF%95"), 1, 1, 1).await; // 测试
    assert_eq!(chinese[0]["group_name"], "外呼测试");
    let test = page(&app, &format!("{TASKS}?name=test"), 1, 2, 1).await;
    assert_eq!(test.len(), 2);

    let none = app.get(&format!("{TASKS}?name=zzz")).await;
    assert!(list_data(&none.body).is_empty());
    assert_eq!(none.body["rowCount"], json!(0));
    // An empty name is no filter.
    assert_eq!(
        app.get(&format!("{TASKS}?name=&perPage=100")).await.body["rowCount"],
        json!(28)
    );
}

#[tokio::test]
async fn status_filters_exactly() {
    let app = spawn_app().await;
    let idle = create_tasks(&app, (1..=5).map(|i| format!("idle-{i}"))).await;
    let running = app.create_running_task("runs", 3).await;
    let stopped = app.create_running_task("stops", 3).await;
    app.stop(&[stopped]).await;

    let listed = page(&app, &format!("{TASKS}?status=running"), 1, 1, 1).await;
    assert_eq!(ids(&listed), [running.to_string()]);
    assert_eq!(listed[0]["status"], "running");

    let listed = page(&app, &format!("{TASKS}?status=stop"), 1, 1, 1).await;
    assert_eq!(ids(&listed), [stopped.to_string()]);

    let listed = page(&app, &format!("{TASKS}?status=init"), 1, 5, 1).await;
    let mut listed = ids(&listed);
    listed.sort();
    let mut expected: Vec<String> = idle.iter().map(i64::to_string).collect();
    expected.sort();
    assert_eq!(listed, expected);

    assert!(page(&app, &format!("{TASKS}?status=done"), 1, 0, 0)
        .await
        .is_empty());
    // Both filters at once.
    let listed = page(&app, &format!("{TASKS}?status=init&name=idle-3"), 1, 1, 1).await;
    assert_eq!(listed[0]["group_name"], "idle-3");
    assert!(
        page(&app, &format!("{TASKS}?status=running&name=idle"), 1, 0, 0)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_tasks_numbers_page() {
    let app = spawn_app().await;
    let id = app.create_task("many").await;
    let other = app.create_task("other").await;
    let imported = phone_numbers(0, 45);
    app.import(id, &imported).await;
    app.import(other, &phone_numbers(500, 3)).await;
    let path = format!("{TASKS}/{id}/numbers");

    let first = page(&app, &path, 1, 45, 3).await;
    assert_eq!(first.len(), 20);
    for number in &first {
        assert_fresh_number(number, id);
    }
    let second = page(&app, &format!("{path}?page=2"), 2, 45, 3).await;
    let third = page(&app, &format!("{path}?page=3"), 3, 45, 3).await;
    assert_eq!((second.len(), third.len()), (20, 5));
    assert_partition(&[first.clone(), second.clone(), third.clone()], 45);
    let mut listed: Vec<String> = [first, second, third]
        .iter()
        .flatten()
        .map(|n| n["dest_number"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed, imported,
        "exactly the imported numbers, none of the other task's"
    );

    let mut pages = Vec::new();
    for number in 1..=7 {
        let items = page(
            &app,
            &format!("{path}?perPage=7&page={number}"),
            number,
            45,
            7,
        )
        .await;
        assert_eq!(
            items.len(),
            if number == 7 { 3 } else { 7 },
            "page {number}"
        );
        pages.push(items);
    }
    assert_partition(&pages, 45);
    assert!(page(&app, &format!("{path}?perPage=7&page=8"), 8, 45, 7)
        .await
        .is_empty());
    assert_eq!(
        page(&app, &format!("{path}?perPage=10000"), 1, 45, 1)
            .await
            .len(),
        45
    );

    // The list's counts agree.
    let task = app.task(id).await;
    assert_eq!(task["done_total"], "0/45");
    let empty = app.create_task("empty").await;
    assert!(page(&app, &format!("{TASKS}/{empty}/numbers"), 1, 0, 0)
        .await
        .is_empty());
}

/// The numbers list's filters (`call_status`, `cause`, a `dest_number` prefix) narrow the page
/// and its counts, alone and together; a bad filter is a 400 naming it.
#[tokio::test]
async fn numbers_filter_by_status_cause_and_prefix() {
    let app = spawn_app_with(|config| config.sim.time_scale = 0.01).await;
    let id = app.create_task("filtered").await;
    app.update_task(
        id,
        json!({"max_caps": 100, "max_concurrency": 20, "calling_time": 30,
               "action": "playback", "data": "p.wav"}),
    )
    .await;
    let mut numbers: Vec<String> = (0..10).map(|d| format!("138000000{d}")).collect();
    numbers.extend((0..5).map(|d| format!("139000000{d}")));
    app.import(id, &numbers).await;
    let path = |query: &str| format!("{TASKS}/{id}/numbers?{query}");
    // Before the campaign: all waiting.
    page(&app, &path("call_status=init"), 1, 15, 1).await;
    page(&app, &path("call_status=done"), 1, 0, 0).await;
    app.start(&[id]).await;
    app.wait_done(id, std::time::Duration::from_secs(60)).await;

    page(&app, &path("call_status=done&perPage=100"), 1, 15, 1).await;
    page(&app, &path("call_status=init"), 1, 0, 0).await;
    let busy: BTreeSet<&String> = numbers
        .iter()
        .filter(|n| sim_cause(n, 30) == "USER_BUSY")
        .collect();
    assert_eq!(busy.len(), 2, "the sim's table: {busy:?}");
    let listed = page(&app, &path("cause=USER_BUSY"), 1, 2, 1).await;
    let listed: BTreeSet<String> = listed
        .iter()
        .map(|n| n["dest_number"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, busy.into_iter().cloned().collect());
    page(&app, &path("dest_number=139"), 1, 5, 1).await;
    let both = page(&app, &path("dest_number=1390&cause=USER_BUSY"), 1, 1, 1).await;
    assert_eq!(both[0]["dest_number"], "1390000004");
    // A filtered list pages like any other, newest first.
    let third = page(&app, &path("dest_number=138&perPage=4&page=3"), 3, 10, 3).await;
    let third: Vec<&str> = third
        .iter()
        .map(|n| n["dest_number"].as_str().unwrap())
        .collect();
    assert_eq!(third, ["1380000001", "1380000000"]);
    // Empty values filter nothing, as forms send them.
    page(&app, &path("call_status=&cause=&dest_number="), 1, 15, 1).await;

    for (query, field) in [
        ("call_status=waiting", "call_status"),
        ("cause=busy", "cause"),
        ("dest_number=13a", "dest_number"),
        ("dest_number=%25", "dest_number"),
    ] {
        assert_error(&app.get(&path(query)).await, 400, field);
    }
}

/// The ids of a task's live numbers passing `filters` (`column`, SQL test, value), newest first,
/// read straight from the SQLite file with the list's old OFFSET-free definition: what every
/// page must show, in order.
fn expected_ids(database: &std::path::Path, task: i64, filters: &[(&str, &str)]) -> Vec<String> {
    let conn = common::db::open(database);
    let mut sql = String::from("SELECT id FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL");
    let mut args: Vec<String> = vec![task.to_string()];
    for (field, value) in filters {
        args.push((*value).to_owned());
        let n = args.len();
        sql.push_str(&match *field {
            "call_status" => format!(" AND call_status = ?{n}"),
            "cause" => format!(" AND cause = ?{n}"),
            "dest_number" => format!(" AND substr(dest_number, 1, length(?{n})) = ?{n}"),
            other => panic!("no filter {other}"),
        });
    }
    sql.push_str(" ORDER BY id DESC");
    let expected = conn
        .prepare(&sql)
        .unwrap()
        .query_map(
            outcall::db::rusqlite::params_from_iter(args.iter()),
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
        .map(|id| id.unwrap().to_string())
        .collect();
    expected
}

/// The items of every page of a task's numbers (`query`: `&filter=value…`), and of the page after
/// the last, each answered OK with the counts of `rows` rows.
async fn read_pages(
    api: &Api,
    task: i64,
    query: &str,
    per_page: usize,
    rows: usize,
) -> Vec<Vec<Value>> {
    let pages = rows.div_ceil(per_page);
    let mut read = Vec::new();
    for number in 1..=pages + 1 {
        let path = format!("{TASKS}/{task}/numbers?perPage={per_page}&page={number}{query}");
        let reply = api.get(&path).await;
        assert_eq!(
            reply.status,
            reqwest::StatusCode::OK,
            "{path}: {}",
            reply.body
        );
        assert_eq!(
            (
                reply.body["rowCount"].clone(),
                reply.body["pageCount"].clone()
            ),
            (json!(rows), json!(pages)),
            "{path}"
        );
        read.push(list_data(&reply.body));
    }
    read
}

/// Every page of the task's numbers, unfiltered and with each of `filters` and their pairs, at
/// several page sizes, lists exactly the rows of [`expected_ids`] in its order, with its counts;
/// the page after the last is empty.
async fn assert_pages_match(
    api: &Api,
    database: &std::path::Path,
    task: i64,
    filters: &[(&str, &str)],
) -> usize {
    let mut sets: Vec<Vec<(&str, &str)>> = vec![vec![]];
    sets.extend(filters.iter().map(|f| vec![*f]));
    for (i, a) in filters.iter().enumerate() {
        for b in &filters[i + 1..] {
            if a.0 != b.0 {
                sets.push(vec![*a, *b]);
            }
        }
    }
    let mut checked = 0;
    for set in sets {
        let expected = expected_ids(database, task, &set);
        let query: String = set.iter().map(|(f, v)| format!("&{f}={v}")).collect();
        for per_page in [1usize, 7, 20] {
            let pages = read_pages(api, task, &query, per_page, expected.len()).await;
            let past_the_last = pages.last().expect("one page past the last");
            assert!(past_the_last.is_empty(), "{query}: past the last page");
            let listed: Vec<String> = pages.iter().flat_map(|items| ids(items)).collect();
            assert_eq!(listed, expected, "pages of {query:?}, {per_page} a page");
            checked += 1;
        }
    }
    checked
}

/// Pages are the same rows in the same order as a full query of the table finds them: after
/// imports into a task that already has numbers (interleaved with another task's), after a
/// campaign, and in a clone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_match_a_full_query_after_imports_a_campaign_and_a_clone() {
    let app = spawn_app_with(|config| config.sim.time_scale = 0.01).await;
    let id = app.create_task("appended").await;
    let other = app.create_task("interleaved").await;
    app.update_task(
        id,
        json!({"max_caps": 100, "max_concurrency": 20, "calling_time": 30,
               "action": "playback", "data": "p.wav"}),
    )
    .await;
    app.import(id, &phone_numbers(0, 23)).await;
    app.import(other, &phone_numbers(100, 5)).await;
    let mut more: Vec<String> = (0..14).map(|n| format!("139000{n:04}")).collect();
    more.push("1380000001".into());
    app.import(id, &more).await;
    app.import(other, &phone_numbers(200, 3)).await;
    let database = app.database_path();
    let filters = [
        ("call_status", "init"),
        ("call_status", "done"),
        ("dest_number", "139"),
        ("dest_number", "1380000001"),
        ("dest_number", "13"),
    ];
    assert_pages_match(&app, &database, id, &filters).await;
    assert_pages_match(&app, &database, other, &filters).await;

    app.start(&[id]).await;
    app.wait_done(id, std::time::Duration::from_secs(60)).await;
    let filters = [
        ("call_status", "done"),
        ("call_status", "init"),
        ("cause", "USER_BUSY"),
        ("cause", "NORMAL_CLEARING"),
        ("dest_number", "1390"),
        ("dest_number", "1"),
    ];
    assert!(!expected_ids(&database, id, &[("cause", "USER_BUSY")]).is_empty());
    assert_pages_match(&app, &database, id, &filters).await;

    let clone = app
        .ok(
            reqwest::Method::POST,
            "/api/out_call_tasks/clone",
            Some(json!({"id": id, "group_name": "copy", "is_clone_numbers": true})),
        )
        .await["data"]
        .as_i64()
        .unwrap();
    app.import(clone, &phone_numbers(300, 4)).await;
    let copied: Vec<String> = list_data(
        &app.get(&format!("{TASKS}/{clone}/numbers?perPage=100"))
            .await
            .body,
    )
    .iter()
    .map(|n| n["dest_number"].as_str().unwrap().to_owned())
    .collect();
    let mut original: Vec<String> = phone_numbers(300, 4).into_iter().rev().collect();
    original.extend(
        list_data(
            &app.get(&format!("{TASKS}/{id}/numbers?perPage=100"))
                .await
                .body,
        )
        .iter()
        .map(|n| n["dest_number"].as_str().unwrap().to_owned()),
    );
    assert_eq!(
        copied, original,
        "the clone lists the same numbers in the same order"
    );
    assert_pages_match(&app, &database, clone, &filters).await;
    for task in [id, other, clone] {
        assert_dense_seq(&database, task);
    }
}

/// A database from before `seq` (and the counters: schema step 3), with two tasks' numbers interleaved and some
/// deleted, lists the same pages after the migration, and after an import appends to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_database_pages_as_a_full_query_does() {
    use common::process::{database, Outcall};
    use outcall::db::rusqlite::{params, Connection};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let outcall = Outcall::in_dir(dir);
    std::fs::create_dir_all(common::process::data_dir(dir)).unwrap();
    let schema = include_str!("../schema.sql");
    let steps: Vec<&str> = schema
        .split("\n-- step ")
        .skip(1)
        .map(|step| step.split_once('\n').unwrap().1)
        .collect();
    {
        let conn = Connection::open(database(dir)).unwrap();
        for step in &steps[..3] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        for task in 0..2 {
            conn.execute(
                "INSERT INTO tasks (group_name, created_at, updated_at) VALUES (?1, 0, 0)",
                [format!("old {task}")],
            )
            .unwrap();
        }
        let statuses = ["init", "done", "stop"];
        for n in 0..90i64 {
            let status = statuses[(n / 3 % 3) as usize];
            let cause = if status == "done" { "USER_BUSY" } else { "" };
            conn.execute(
                "INSERT INTO numbers (group_id, dest_number, call_status, cause, deleted_at,
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 1, 2)",
                params![
                    n % 2 + 1,
                    format!("13{}00000{n:03}", 8 + n % 3),
                    status,
                    cause,
                    (n % 11 == 0).then_some(7)
                ],
            )
            .unwrap();
        }
    }
    let mut server = outcall.spawn();
    let client = server.connect().await;
    let filters = [
        ("call_status", "done"),
        ("call_status", "init"),
        ("cause", "USER_BUSY"),
        ("dest_number", "139"),
    ];
    for task in [1, 2] {
        assert_pages_match(&client, &database(dir), task, &filters).await;
    }
    // Numbers the migrated task does not have (an import skips those it has).
    client.import(1, &phone_numbers(500, 9)).await;
    assert_pages_match(&client, &database(dir), 1, &filters).await;
    assert_dense_seq(&database(dir), 1);
    assert_dense_seq(&database(dir), 2);
}

/// The task's live numbers have `seq` 1..N in id order, so its pages are ranges (schema step 5).
fn assert_dense_seq(database: &std::path::Path, task: i64) {
    let seqs: Vec<Option<i64>> = common::db::open(database)
        .prepare("SELECT seq FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL ORDER BY id")
        .unwrap()
        .query_map([task], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let dense: Vec<Option<i64>> = (1..=seqs.len() as i64).map(Some).collect();
    assert!(!seqs.is_empty());
    assert_eq!(seqs, dense, "task {task}: seq is 1..N in id order");
}

/// A task of many buckets (schema step 6 counts a filter's rows per 4,096 ids): its numbers in
/// three imports, another task's between them, with results written in a pattern across the
/// buckets. Every page of each single filter and of status-and-cause pairs, at page sizes that do
/// and do not divide a bucket, and single rows at the bucket edges, are the rows of the full query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_pages_across_many_buckets_match_a_full_query() {
    let app = spawn_app().await;
    let id = app.create_task("big").await;
    let other = app.create_task("between").await;
    app.import(id, &phone_numbers(0, 9_000)).await;
    app.import(other, &phone_numbers(0, 300)).await;
    app.import(id, &phone_numbers(10_000, 4_000)).await;
    app.import(other, &phone_numbers(20_000, 5)).await;
    app.import(id, &phone_numbers(30_000, 10)).await;
    let database = app.database_path();
    {
        // Results as a campaign leaves them, written by the triggers' path (an UPDATE).
        let conn = common::db::open(&database);
        conn.execute_batch(
            "UPDATE numbers SET call_status = 'done', cause = 'USER_BUSY' WHERE id % 7 = 0;
             UPDATE numbers SET call_status = 'done', cause = 'NORMAL_CLEARING' WHERE id % 7 = 3 AND id < 6000;
             UPDATE numbers SET call_status = 'stop' WHERE id BETWEEN 4090 AND 4200 AND id % 7 NOT IN (0, 3);
             UPDATE numbers SET call_status = 'stop' WHERE id % 7 = 0 AND id % 5 = 0;",
        )
        .unwrap();
    }
    let sets: [&[(&str, &str)]; 10] = [
        &[("call_status", "done")],
        &[("call_status", "init")],
        &[("call_status", "stop")],
        &[("call_status", "calling")],
        &[("cause", "USER_BUSY")],
        &[("cause", "NORMAL_CLEARING")],
        &[("call_status", "done"), ("cause", "USER_BUSY")],
        &[("call_status", "stop"), ("cause", "USER_BUSY")],
        &[("call_status", "init"), ("cause", "USER_BUSY")],
        &[("call_status", "done"), ("cause", "NORMAL_CLEARING")],
    ];
    for set in sets {
        let query: String = set.iter().map(|(f, v)| format!("&{f}={v}")).collect();
        let expected = expected_ids(&database, id, set);
        for per_page in [97usize, 1000] {
            let pages = read_pages(&app, id, &query, per_page, expected.len()).await;
            let listed: Vec<String> = pages.iter().flat_map(|items| ids(items)).collect();
            assert_eq!(listed, expected, "pages of {query}, {per_page} a page");
        }
        // One row a page, around every bucket edge and at both ends.
        let mut rows: BTreeSet<usize> = [0, 1, expected.len().saturating_sub(1)].into();
        for (row, window) in expected.windows(2).enumerate() {
            let bucket = |id: &String| id.parse::<i64>().unwrap() >> 12;
            if bucket(&window[0]) != bucket(&window[1]) {
                rows.extend([row.saturating_sub(1), row, row + 1, row + 2]);
            }
        }
        for row in rows.into_iter().filter(|row| *row < expected.len()) {
            let path = format!("{TASKS}/{id}/numbers?perPage=1&page={}{query}", row + 1);
            let items = list_data(&app.get(&path).await.body);
            assert_eq!(ids(&items), [expected[row].clone()], "{path}");
        }
    }
}
