//! The real binary, killed and started again on the same data directory: every task, setting and
//! number is still there, unchanged.

mod common;

use std::time::Duration;

use common::{
    assert_fresh_number, assert_get_task_shape, assert_list_task_shape, assert_number_shape,
    list_data, phone_numbers, poll, process::Outcall, Api, SLOW_CAPS,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const TASKS: &str = "/api/out_call_tasks";
const CALLS_END_WITHIN: Duration = Duration::from_secs(10);

/// What this test asks of a server, beyond `Api`.
trait RestartApi {
    async fn create(&self, name: &str, settings: Value) -> i64;
    async fn numbers(&self, id: i64) -> Vec<Value>;
    async fn wait_for_calls_to_end(&self, ids: &[i64]);
}

impl RestartApi for Api {
    async fn create(&self, name: &str, settings: Value) -> i64 {
        let mut body = settings;
        body["group_name"] = json!(name);
        self.ok(Method::POST, TASKS, Some(body)).await["data"]
            .as_i64()
            .expect("an id")
    }

    async fn numbers(&self, id: i64) -> Vec<Value> {
        list_data(
            &self
                .ok_get(&format!("{TASKS}/{id}/numbers?perPage=10000"))
                .await,
        )
    }

    /// Waits (bounded) until no call is alive, so that what is stored no longer moves.
    async fn wait_for_calls_to_end(&self, ids: &[i64]) {
        poll(CALLS_END_WITHIN, "no call alive", || async {
            let mut calling = 0;
            for id in ids {
                calling += self
                    .numbers(*id)
                    .await
                    .iter()
                    .filter(|n| n["call_status"] == "calling")
                    .count();
            }
            if calling == 0 {
                Ok(())
            } else {
                Err(format!("{calling} calls still alive"))
            }
        })
        .await;
    }
}

/// Everything the API shows of the live tasks.
#[derive(Debug, PartialEq)]
struct Snapshot {
    list: Vec<Value>,
    tasks: Vec<Value>,
    numbers: Vec<Vec<Value>>,
    downloads: Vec<Value>,
}

async fn snapshot(server: &Api, ids: &[i64]) -> Snapshot {
    let list = list_data(&server.ok_get(&format!("{TASKS}?perPage=10000")).await);
    list.iter().for_each(assert_list_task_shape);
    let mut snapshot = Snapshot {
        list,
        tasks: Vec::new(),
        numbers: Vec::new(),
        downloads: Vec::new(),
    };
    for id in ids {
        let task = server.ok_get(&format!("{TASKS}/{id}")).await;
        assert_get_task_shape(&task);
        snapshot.tasks.push(task);
        let numbers = server.numbers(*id).await;
        numbers.iter().for_each(assert_number_shape);
        snapshot.numbers.push(numbers);
        snapshot
            .downloads
            .push(server.ok_get(&format!("{TASKS}/{id}/download")).await);
    }
    snapshot
}

fn rows(first: u64, n: usize) -> Vec<Value> {
    phone_numbers(first, n)
        .into_iter()
        .enumerate()
        .map(
            |(i, number)| json!({"dest_number": number, "external_id": format!("ext-{first}-{i}")}),
        )
        .collect()
}

/// The fields of a number that nothing but an import writes.
fn identity(number: &Value) -> Value {
    json!([
        number["id"],
        number["dest_number"],
        number["external_id"],
        number["group_id"],
        number["created_at"]
    ])
}

#[tokio::test]
async fn a_killed_server_comes_back_with_everything() {
    let dir = tempfile::tempdir().expect("a work directory");
    let launch = Outcall::in_dir(dir.path());
    let mut process = launch.spawn();
    let server = process.connect().await;

    let configured = server
        .create(
            "configured",
            json!({
                "description": "全部设置", "cid_number": "01088886666", "cid_name": "张三", "context": "context-2",
                "dest_context": "trunk-a", "calling_time": 45, "max_caps": 0.5, "max_concurrency": 7,
                "task_start_time": "2099-01-02 03:04:05", "auto_dial": 1, "disable_ring_back": 0,
                "auto_record": 1, "group_confirm_key": "#", "group_confirm_read_timeout": 5,
                "group_confirm_file": "{\"media_id\":205}", "action": "playback",
                "data": "{\"media_id\":205,\"media_path\":\"phrase:welcome_short@xui\"}"
            }),
        )
        .await;
    server.import_rows(configured, rows(0, 5)).await;
    let plain = server.create("plain", json!({})).await;
    let running = server
        .create(
            "running",
            json!({"max_caps": SLOW_CAPS, "action": "transfer", "data": "1001"}),
        )
        .await;
    server.import_rows(running, rows(100, 4)).await;
    server.start(&[running]).await;
    let stopped = server
        .create("stopped", json!({"max_caps": SLOW_CAPS}))
        .await;
    server.import_rows(stopped, rows(200, 3)).await;
    server.start(&[stopped]).await;
    server.stop(&[stopped]).await;
    let cloned = server
        .ok(
            Method::POST,
            &format!("{TASKS}/clone"),
            Some(json!({"group_name": "cloned", "is_clone_numbers": true, "id": configured})),
        )
        .await["data"]
        .as_i64()
        .expect("an id");
    let deleted = server.create("deleted", json!({})).await;
    server.import_rows(deleted, rows(300, 2)).await;
    server
        .ok(Method::DELETE, &format!("{TASKS}/{deleted}"), None)
        .await;

    let ids = [configured, plain, running, stopped, cloned];
    server.wait_for_calls_to_end(&ids).await;
    let before = snapshot(&server, &ids).await;
    assert_eq!(before.list.len(), ids.len());
    assert_eq!(before.tasks[2]["status"], "running");
    assert_eq!(before.numbers[0].len(), 5);
    before.numbers[0]
        .iter()
        .for_each(|n| assert_fresh_number(n, configured));
    process.kill();

    let mut process = launch.spawn();
    let server = process.connect().await;
    let after = snapshot(&server, &ids).await;

    // Every task but the running one is exactly as it was, by id, in the list, its numbers and
    // its download.
    for (index, id) in ids.iter().enumerate() {
        if *id == running {
            continue;
        }
        assert_eq!(after.tasks[index], before.tasks[index], "task {id}");
        assert_eq!(
            after.numbers[index], before.numbers[index],
            "the numbers of task {id}"
        );
        assert_eq!(
            after.downloads[index], before.downloads[index],
            "the download of task {id}"
        );
        let listed = |snapshot: &Snapshot| {
            snapshot
                .list
                .iter()
                .find(|t| t["id"].as_str() == Some(id.to_string().as_str()))
                .cloned()
        };
        assert_eq!(listed(&after), listed(&before), "task {id} in the list");
    }
    assert_eq!(
        after.list.len(),
        before.list.len(),
        "no task appeared or vanished"
    );

    // The running task resumes: its settings are as they were and it is still running. Its dialer
    // may place the next call at once, so only what a call never changes is compared for its
    // numbers; a number dialed before the kill is exactly as it was (never dialed again).
    let index = 2;
    let mut task_before = before.tasks[index].clone();
    let mut task_after = after.tasks[index].clone();
    for volatile in ["done_total", "updated_at"] {
        task_before.as_object_mut().unwrap().remove(volatile);
        task_after.as_object_mut().unwrap().remove(volatile);
    }
    assert_eq!(task_after, task_before, "the running task");
    assert_eq!(after.tasks[index]["status"], "running");
    let (numbers_before, numbers_after) = (&before.numbers[index], &after.numbers[index]);
    assert_eq!(
        numbers_after.iter().map(identity).collect::<Vec<_>>(),
        numbers_before.iter().map(identity).collect::<Vec<_>>()
    );
    for (old, new) in numbers_before.iter().zip(numbers_after) {
        if old["outbound_call"] == "0" {
            assert_eq!(new, old, "a number dialed before the kill is unchanged");
        }
    }

    // The deleted task stays deleted, and new ids follow the old ones.
    let reply = server.get(&format!("{TASKS}/{deleted}")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let newer = server.create("after-restart", json!({})).await;
    assert!(
        newer > deleted,
        "ids are not reused: {newer} after {deleted}"
    );
}
