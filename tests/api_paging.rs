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
