//! A result webhook's body as POSTed: the outbox row's stored body (schema step 7: the task, the
//! number's row and the attempt's, times in unix seconds) in the API's shapes, times as
//! `YYYY-MM-DD HH:MM:SS` in the server's zone. The same stored body and zone always give the
//! same bytes, so every try of a row sends (and signs) the same body.

use serde::Deserialize;
use serde_json::json;

use super::{attempts::attempt_item, numbers::number_item};
use crate::{
    clock::TimeZone,
    db::numbers::{Attempt, Number},
    domain::{CallStatus, HangupCause},
};

#[derive(Deserialize)]
struct Stored {
    task: StoredTask,
    number: StoredNumber,
    attempt: StoredAttempt,
}

#[derive(Deserialize)]
struct StoredTask {
    id: i64,
    group_name: String,
}

#[derive(Deserialize)]
struct StoredNumber {
    id: i64,
    group_id: i64,
    dest_number: String,
    external_id: String,
    uuid: String,
    call_status: String,
    outbound_call: i64,
    dtmf: String,
    cause: String,
    call_start_time: Option<i64>,
    call_answer_time: Option<i64>,
    call_end_time: Option<i64>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    sip_code: Option<i64>,
    record_path: String,
}

#[derive(Deserialize)]
struct StoredAttempt {
    attempt: i64,
    uuid: String,
    dest_number: String,
    call_start_time: i64,
    call_answer_time: Option<i64>,
    call_end_time: Option<i64>,
    cause: String,
    sip_code: Option<i64>,
    billsec: i64,
    dtmf: String,
    record_path: String,
}

/// A stored cause: `""` (none) or a cause's name.
fn stored_cause(name: &str) -> Result<Option<HangupCause>, String> {
    match name {
        "" => Ok(None),
        name => name
            .parse::<HangupCause>()
            .map(Some)
            .map_err(|_| format!("unknown cause {name:?}")),
    }
}

impl StoredNumber {
    fn into_number(self) -> Result<Number, String> {
        let call_status: CallStatus = self
            .call_status
            .parse()
            .map_err(|_| format!("unknown call_status {:?}", self.call_status))?;
        let cause = stored_cause(&self.cause)?;
        Ok(Number {
            id: self.id,
            group_id: self.group_id,
            dest_number: self.dest_number,
            external_id: self.external_id,
            uuid: self.uuid,
            call_status,
            outbound_call: self.outbound_call,
            dtmf: self.dtmf,
            cause,
            sip_code: self.sip_code,
            record_path: self.record_path,
            call_start_time: self.call_start_time,
            call_answer_time: self.call_answer_time,
            call_end_time: self.call_end_time,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
        })
    }
}

impl StoredAttempt {
    fn into_attempt(self) -> Result<Attempt, String> {
        Ok(Attempt {
            attempt: self.attempt,
            uuid: self.uuid,
            dest_number: self.dest_number,
            call_start_time: self.call_start_time,
            call_answer_time: self.call_answer_time,
            call_end_time: self.call_end_time,
            cause: stored_cause(&self.cause)?,
            sip_code: self.sip_code,
            billsec: self.billsec,
            dtmf: self.dtmf,
            record_path: self.record_path,
        })
    }
}

/// `{"task":{"id","group_name"},"number":{…as the numbers list…},"attempt":{…as the attempts
/// route…}}` from a stored body; an error says what is wrong with it.
pub fn render(stored: &str, tz: TimeZone) -> Result<Vec<u8>, String> {
    let stored: Stored =
        serde_json::from_str(stored).map_err(|e| format!("unreadable stored body: {e}"))?;
    let body = json!({
        "task": {"id": stored.task.id, "group_name": stored.task.group_name},
        "number": number_item(&stored.number.into_number()?, tz),
        "attempt": attempt_item(&stored.attempt.into_attempt()?, tz),
    });
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORED: &str = r#"{"task":{"id":3,"group_name":"t"},"number":{"id":7,"group_id":3,
        "dest_number":"13800000004","external_id":"e","uuid":"u1","call_status":"done",
        "outbound_call":0,"dtmf":"","cause":"USER_BUSY","call_start_time":1776979100,
        "call_answer_time":null,"call_end_time":1776979103,"created_at":1776979000,
        "updated_at":1776979103,"deleted_at":null,"sip_code":486,"record_path":""},
        "attempt":{"attempt":1,"uuid":"u1","dest_number":"13800000004",
        "call_start_time":1776979100,"call_answer_time":null,"call_end_time":1776979103,
        "cause":"USER_BUSY","sip_code":486,"billsec":0,"dtmf":"","record_path":""}}"#;

    #[test]
    fn renders_the_api_shapes_in_the_zone_and_the_same_bytes_every_time() {
        let shanghai = TimeZone::named("Asia/Shanghai").unwrap();
        let bytes = render(STORED, shanghai).unwrap();
        assert_eq!(bytes, render(STORED, shanghai).unwrap());
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["task"], json!({"id": 3, "group_name": "t"}));
        assert_eq!(body["number"]["id"], "7");
        assert_eq!(body["number"]["outbound_call"], "0");
        assert_eq!(body["number"]["sip_code"], "486");
        assert_eq!(body["number"]["call_answer_time"], "");
        assert_eq!(body["number"]["call_end_time"], "2026-04-24 05:18:23");
        assert_eq!(body["attempt"]["attempt"], 1);
        assert_eq!(body["attempt"]["billsec"], 0);
        assert_eq!(body["attempt"]["sip_code"], "486");
        assert_eq!(body["attempt"]["call_start_time"], "2026-04-24 05:18:20");
        assert_eq!(body["attempt"]["cause"], "USER_BUSY");
        let utc = render(STORED, TimeZone::named("UTC").unwrap()).unwrap();
        let utc: serde_json::Value = serde_json::from_slice(&utc).unwrap();
        assert_eq!(utc["attempt"]["call_end_time"], "2026-04-23 21:18:23");
    }

    #[test]
    fn a_damaged_body_is_an_error() {
        let utc = TimeZone::named("UTC").unwrap();
        assert!(render("{", utc).is_err());
        let bad_status = STORED.replace(r#""call_status":"done""#, r#""call_status":"gone""#);
        assert!(render(&bad_status, utc).unwrap_err().contains("gone"));
    }
}
