//! What the API's answers look like: the vendor's field lists and the envelope and shape checks.

use serde_json::Value;

use super::Reply;

/// `max_caps` for tasks a test starts: one call per 1000 s, so that a started task keeps numbers
/// waiting (and stays `running`) for the whole test, whatever the dialer does.
pub const SLOW_CAPS: f64 = 0.001;

/// outcall's additions to a task's keys (issue 11), in the list and by id alike.
pub const TASK_ADDED_FIELDS: [&str; 7] = [
    "max_attempts",
    "retry_interval",
    "retry_causes",
    "call_windows",
    "call_weekdays",
    "time_zone",
    "webhook_url",
];

/// `first`'s keys followed by `then`'s (`M` is `N` + `K`, checked at compile time).
const fn concat<const N: usize, const K: usize, const M: usize>(
    first: [&'static str; N],
    then: [&'static str; K],
) -> [&'static str; M] {
    assert!(M == N + K);
    let mut all = [""; M];
    let mut i = 0;
    while i < N {
        all[i] = first[i];
        i += 1;
    }
    let mut j = 0;
    while j < K {
        all[N + j] = then[j];
        j += 1;
    }
    all
}

/// `vendor`'s keys followed by `TASK_ADDED_FIELDS`.
const fn with_task_additions<const N: usize, const M: usize>(
    vendor: [&'static str; N],
) -> [&'static str; M] {
    concat(vendor, TASK_ADDED_FIELDS)
}

/// The keys of an attempt (the attempts route's items and a result webhook's `attempt`): the
/// two numbers and the strings below.
pub const ATTEMPT_FIELDS: [&str; 11] = concat(["attempt", "billsec"], ATTEMPT_STRING_FIELDS);

/// The keys of an attempt shown as strings (all but `attempt` and `billsec`); a number's row
/// has them too.
pub const ATTEMPT_STRING_FIELDS: [&str; 9] = [
    "uuid",
    "dest_number",
    "call_start_time",
    "call_answer_time",
    "call_end_time",
    "cause",
    "sip_code",
    "dtmf",
    "record_path",
];

/// The keys of a task in the list, as the vendor's example shows them, and outcall's additions.
pub const TASK_LIST_FIELDS: [&str; 33] = with_task_additions([
    "auto_record",
    "description",
    "task_end_time",
    "dest_context",
    "group_confirm_file",
    "status",
    "cid_name",
    "total",
    "done",
    "deleted_at",
    "group_confirm_read_timeout",
    "updated_at",
    "created_at",
    "id",
    "action",
    "task_start_time",
    "context",
    "max_concurrency",
    "disable_ring_back",
    "data",
    "group_name",
    "max_caps",
    "auto_dial",
    "group_confirm_key",
    "cid_number",
    "calling_time",
]);

/// The keys of a task got by id, as the vendor's example shows them, and outcall's additions.
pub const TASK_GET_FIELDS: [&str; 31] = with_task_additions([
    "done_total",
    "id",
    "action",
    "auto_record",
    "task_start_time",
    "context",
    "task_end_time",
    "group_confirm_file",
    "description",
    "updated_at",
    "data",
    "created_at",
    "calling_time",
    "max_concurrency",
    "disable_ring_back",
    "group_name",
    "group_confirm_key",
    "auto_dial",
    "max_caps",
    "cid_name",
    "status",
    "deleted_at",
    "cid_number",
    "dest_context",
]);

/// The fields of a task got by id that are JSON numbers (API.md, "Value types").
pub const TASK_GET_NUMBER_FIELDS: [&str; 9] = [
    "max_attempts",
    "retry_interval",
    "id",
    "calling_time",
    "max_concurrency",
    "disable_ring_back",
    "auto_dial",
    "max_caps",
    "auto_record",
];

/// The keys of a number in a task's numbers list; all strings. The vendor's fifteen, plus
/// `sip_code` (the SIP final code behind `cause`) and `record_path` (the call's recording).
pub const NUMBER_FIELDS: [&str; 17] = [
    "sip_code",
    "record_path",
    "id",
    "dest_number",
    "group_id",
    "external_id",
    "uuid",
    "call_status",
    "outbound_call",
    "dtmf",
    "cause",
    "call_start_time",
    "call_answer_time",
    "call_end_time",
    "created_at",
    "updated_at",
    "deleted_at",
];

pub const DOWNLOAD_HEADER: [&str; 10] = [
    "任务名称",
    "接通后动作",
    "被叫号码",
    "呼叫状态",
    "呼叫开始时间",
    "呼叫应答时间",
    "呼叫结束时间",
    "总时长",
    "计费时长",
    "挂机原因",
];

/// Asserts an error reply: the status, and `{"code":<same status>,"message":"…"}` whose message
/// mentions `mentions` (case-insensitively; `""` checks nothing).
pub fn assert_error(reply: &Reply, status: u16, mentions: &str) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "expected {status}, got {}: {}",
        reply.status,
        reply.body
    );
    assert_error_envelope(reply);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains(&mentions.to_lowercase()),
        "the message should mention {mentions:?}: {message:?}"
    );
}

/// Asserts a 4xx with the error envelope, whatever the exact status.
pub fn assert_client_error(reply: &Reply) {
    assert!(
        reply.status.is_client_error(),
        "expected a 4xx, got {}: {}",
        reply.status,
        reply.body
    );
    assert_error_envelope(reply);
}

fn assert_error_envelope(reply: &Reply) {
    assert_keys(&reply.body, &["code", "message"]);
    assert_eq!(
        reply.body["code"].as_u64(),
        Some(reply.status.as_u16() as u64),
        "code = status: {}",
        reply.body
    );
    let message = reply.body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a message string: {}", reply.body));
    assert!(
        !message.trim().is_empty(),
        "an empty message: {}",
        reply.body
    );
}

/// The key set of an object is exactly `keys`.
pub fn assert_keys(value: &Value, keys: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"));
    let mut actual: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = keys.to_vec();
    actual.sort_unstable();
    expected.sort_unstable();
    assert_eq!(actual, expected, "keys of {value}");
}

/// `YYYY-MM-DD HH:MM:SS`.
pub fn is_timestamp(text: &str) -> bool {
    text.len() == 19 && chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").is_ok()
}

/// A timestamp string close to now (the test configuration's zone is UTC).
pub fn assert_recent_timestamp(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {value}"));
    let time = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .filter(|_| text.len() == 19)
        .unwrap_or_else(|| panic!("{what} is a YYYY-MM-DD HH:MM:SS time: {text:?}"));
    let skew = (chrono::Utc::now().naive_utc() - time).num_seconds().abs();
    assert!(skew <= 120, "{what} {text:?} is {skew} s away from now");
}

/// A time field: `""` when unset, else a timestamp; never null.
pub fn assert_optional_timestamp(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string, not {value}"));
    assert!(
        text.is_empty() || is_timestamp(text),
        "{what} is \"\" or YYYY-MM-DD HH:MM:SS: {text:?}"
    );
}

/// A list envelope: exactly `page`, `data`, `rowCount`, `pageCount`, the three counts numbers.
/// Answers `data`.
pub fn list_data(body: &Value) -> Vec<Value> {
    assert_keys(body, &["page", "data", "rowCount", "pageCount"]);
    for key in ["page", "rowCount", "pageCount"] {
        assert!(
            body[key].is_u64(),
            "{key} is a non-negative integer: {body}"
        );
    }
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data is an array: {body}"))
        .clone()
}

/// A task in the list: the vendor's keys; every value a string except `total` and `done`.
pub fn assert_list_task_shape(task: &Value) {
    assert_keys(task, &TASK_LIST_FIELDS);
    for (key, value) in task.as_object().unwrap() {
        match key.as_str() {
            "total" | "done" => assert!(value.is_u64(), "{key} is a number: {task}"),
            _ => assert!(value.is_string(), "{key} is a string: {task}"),
        }
    }
    assert_time_fields(task);
}

/// A task got by id: the vendor's keys (and optionally `group_confirm_read_timeout`, a string),
/// the seven numeric settings as numbers, every other value a string, `done_total` "done/total".
pub fn assert_get_task_shape(task: &Value) {
    let mut keys = TASK_GET_FIELDS.to_vec();
    if task.get("group_confirm_read_timeout").is_some() {
        keys.push("group_confirm_read_timeout");
    }
    assert_keys(task, &keys);
    for (key, value) in task.as_object().unwrap() {
        if TASK_GET_NUMBER_FIELDS.contains(&key.as_str()) {
            assert!(value.is_number(), "{key} is a number: {task}");
        } else {
            assert!(value.is_string(), "{key} is a string: {task}");
        }
    }
    let done_total = task["done_total"].as_str().unwrap();
    let parts: Vec<&str> = done_total.split('/').collect();
    assert!(
        parts.len() == 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "done_total is \"done/total\": {done_total:?}"
    );
    assert_time_fields(task);
}

fn assert_time_fields(task: &Value) {
    for key in ["created_at", "updated_at"] {
        assert!(
            is_timestamp(task[key].as_str().unwrap_or_default()),
            "{key} is a timestamp: {task}"
        );
    }
    for key in ["task_start_time", "task_end_time", "deleted_at"] {
        assert_optional_timestamp(&task[key], key);
    }
    assert_eq!(
        task["deleted_at"], "",
        "a listed task is not deleted: {task}"
    );
}

/// A number in a numbers list: exactly the vendor's keys, all strings.
pub fn assert_number_shape(number: &Value) {
    assert_keys(number, &NUMBER_FIELDS);
    for (key, value) in number.as_object().unwrap() {
        assert!(value.is_string(), "{key} is a string: {number}");
    }
    for key in ["created_at", "updated_at"] {
        assert!(
            is_timestamp(number[key].as_str().unwrap()),
            "{key} is a timestamp: {number}"
        );
    }
    for key in [
        "call_start_time",
        "call_answer_time",
        "call_end_time",
        "deleted_at",
    ] {
        assert_optional_timestamp(&number[key], key);
    }
}

/// A number as imported and never dialed.
pub fn assert_fresh_number(number: &Value, task_id: i64) {
    assert_number_shape(number);
    assert_eq!(
        number["group_id"],
        Value::String(task_id.to_string()),
        "{number}"
    );
    assert_eq!(number["call_status"], "init", "{number}");
    assert_eq!(number["outbound_call"], "1", "{number}");
    for key in [
        "uuid",
        "dtmf",
        "cause",
        "call_start_time",
        "call_answer_time",
        "call_end_time",
        "deleted_at",
        "sip_code",
        "record_path",
    ] {
        assert_eq!(number[key], "", "{key} of a fresh number: {number}");
    }
}

/// The JSON text of a value, e.g. to tell `1` from `1.0`.
pub fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap()
}
