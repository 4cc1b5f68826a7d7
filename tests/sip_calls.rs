//! The SIP back end end to end, calls: the real dialer places real SIP calls through the built-in
//! user agent to sipp on 127.0.0.1 (`tests/sipp/`): answer and hang-up with a recording, busy,
//! our CANCEL, early media then a failure, confirm keys (right, wrong, none), an uploaded prompt,
//! and a 100-number campaign.
//!
//! Every test checks two independent records of the same calls: the numbers' results as the REST
//! API stores them (call_status, cause, sip_code, dtmf, times, record_path), and sipp's own verdict
//! (its exit code: 0 when every call followed the scenario; its message trace and statistics).
//! The sipp harness and the SIP app are in `tests/common/sipp.rs`; every wait is bounded, and on
//! a failure the test prints sipp's message and error logs.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use common::{
    assert_error,
    sipp::{
        assert_result, rang_until_cancel, received_at, spawn_sip_app, time_of, wav_format,
        Expected, SipOptions, Sipp,
    },
    success_data,
};
use outcall::audio::wav;
use reqwest::StatusCode;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

/// The callee answers and hangs up after a second, in the middle of our 3 s prompt: the call ends
/// NORMAL_CLEARING by the callee's BYE, and the recording is a stereo 8 kHz WAV of the call.
#[tokio::test]
async fn answer_then_callee_hangs_up_with_recording() {
    let mut sipp = Sipp::start("answer_then_hangup.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 0)).await;
    let prompt = outcall.prompt("long.wav", 3000);
    let id = outcall
        .start_task(
            "callee hangs up",
            json!({"action": "playback", "data": prompt, "auto_record": 1, "calling_time": 10}),
            &["1001".to_owned()],
        )
        .await;
    let number = &outcall
        .finish_one(
            id,
            Duration::from_secs(10),
            &mut sipp,
            &Expected::NORMAL_CLEARING,
        )
        .await;
    // The callee's BYE came first, a second into the call: we sent none.
    sipp.assert_callee_hung_up("outcall");
    let talk =
        (time_of(number, "call_end_time") - time_of(number, "call_answer_time")).num_seconds();
    assert!(
        talk <= 2,
        "the call ended with the callee's BYE at ~1 s, not after our 3 s prompt: {number}"
    );

    let record_path = number["record_path"].as_str().unwrap();
    assert!(!record_path.is_empty(), "auto_record=1 records: {number}");
    let bytes = std::fs::read(record_path)
        .unwrap_or_else(|e| panic!("the recording {record_path} exists: {e}"));
    let (channels, rate, bits, data) = wav_format(&bytes);
    assert_eq!((channels, rate, bits), (2, 8000, 16), "stereo 8 kHz 16-bit");
    let seconds = data as f64 / (2.0 * 2.0 * 8000.0);
    assert!(
        (0.5..=2.5).contains(&seconds),
        "the recording lasts about the 1 s call: {seconds} s"
    );
    // Our prompt is on the left channel (what we sent).
    let left_energy: f64 = bytes[bytes.len() - data..]
        .chunks_exact(4)
        .map(|frame| (i16::from_le_bytes([frame[0], frame[1]]) as f64).powi(2))
        .sum();
    assert!(left_energy > 0.0, "our prompt is in the recording");
    assert_eq!(outcall.app.task(id).await["status"], "done");
}

/// 486: USER_BUSY, never answered.
#[tokio::test]
async fn busy() {
    let mut sipp = Sipp::start("busy.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 1)).await;
    let id = outcall
        .start_task(
            "busy",
            json!({"calling_time": 10, "cid_number": "4008001234", "cid_name": "Outcall Test"}),
            &["1002".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    sipp.assert_success().await;
    // The task's caller id is the INVITE's From: cid_name shown, cid_number as the user.
    let invite = sipp.messages();
    let from = invite
        .lines()
        .find(|line| line.starts_with("From:"))
        .unwrap_or_else(|| panic!("no From header:\n{invite}"));
    assert!(
        from.contains("Outcall Test") && from.contains("sip:4008001234@"),
        "{from}"
    );
    assert_result(
        &numbers[0],
        &Expected {
            cause: "USER_BUSY",
            sip_code: "486",
            dtmf: "",
            answered: false,
        },
        Some(&sipp),
    );
    assert_eq!(numbers[0]["record_path"], "");
}

/// The callee rings and never answers: at calling_time we CANCEL, the callee answers 487, and the
/// number ends NO_ANSWER.
#[tokio::test]
async fn ring_until_our_cancel() {
    let mut sipp = Sipp::start("ring_until_cancel.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 2)).await;
    let started = Instant::now();
    let id = outcall
        .start_task(
            "no answer",
            json!({"calling_time": 5, "auto_record": 1}),
            &["1003".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(12), &sipp)
        .await;
    let elapsed = started.elapsed();
    sipp.assert_success().await;
    let number = &numbers[0];
    assert_result(
        number,
        &Expected {
            cause: "NO_ANSWER",
            sip_code: "487",
            dtmf: "",
            answered: false,
        },
        Some(&sipp),
    );
    assert_eq!(number["record_path"], "", "nothing to record: {number}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed < Duration::from_secs(9),
        "the ring timer is calling_time (5 s): {elapsed:?}"
    );
    let rang = rang_until_cancel(&sipp);
    assert!(
        (4.5..6.5).contains(&rang),
        "CANCEL {rang} s after the INVITE, at calling_time"
    );
}

/// 183 with early media, then 480: NO_USER_RESPONSE.
#[tokio::test]
async fn early_media_then_failure() {
    let mut sipp = Sipp::start("early_media_then_failure.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 3)).await;
    let id = outcall
        .start_task(
            "early media",
            json!({"calling_time": 10}),
            &["1004".to_owned()],
        )
        .await;
    outcall
        .finish_one(
            id,
            Duration::from_secs(10),
            &mut sipp,
            &Expected {
                cause: "NO_USER_RESPONSE",
                sip_code: "480",
                dtmf: "",
                answered: false,
            },
        )
        .await;
}

// ---------------------------------------------------------------------------------------------
// Confirm keys
// ---------------------------------------------------------------------------------------------

/// Settings of the confirm cases: key 1 within 5 s, then a 1 s prompt.
fn confirm_settings(prompt: &str) -> Value {
    json!({
        "group_confirm_key": "1",
        "group_confirm_read_timeout": 5,
        "action": "playback",
        "data": prompt,
        "calling_time": 10,
    })
}

const CONFIRM_PROMPT_MS: u32 = 1000;

/// Runs one confirm case: a task with a confirm key against `scenario`, whose result must be
/// `expected`. Answers how long after its answer (sipp's ACK) sipp received our BYE.
async fn confirm_case(
    scenario: &str,
    test: u16,
    number: &str,
    prompt_ms: u32,
    expected: Expected<'_>,
) -> f64 {
    let mut sipp = Sipp::start(scenario, 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), test)).await;
    let prompt = outcall.prompt("short.wav", prompt_ms);
    let id = outcall
        .start_task(scenario, confirm_settings(&prompt), &[number.to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(12), &sipp)
        .await;
    sipp.assert_success().await;
    assert_result(&numbers[0], &expected, Some(&sipp));
    let ack = received_at(&sipp, "ACK");
    let bye = received_at(&sipp, "BYE");
    assert!(!bye.is_empty(), "sipp received our BYE\n{}", sipp.report());
    bye[0] - ack[0]
}

/// The callee presses the confirm key: the prompt plays, then we hang up.
#[tokio::test]
async fn confirm_right_key() {
    let expected = Expected {
        cause: "NORMAL_CLEARING",
        sip_code: "200",
        dtmf: "1",
        answered: true,
    };
    let after = confirm_case(
        "confirm_right_key.xml",
        4,
        "1005",
        CONFIRM_PROMPT_MS,
        expected,
    )
    .await;
    // The key at ~0.3 s, then 1 s of prompt.
    assert!(
        after >= (300 + CONFIRM_PROMPT_MS) as f64 / 1000.0 - 0.1 && after < 4.0,
        "our BYE {after} s after the answer: after the key and the whole prompt"
    );
}

/// The callee presses another key: CALL_REJECTED, no prompt, our BYE.
#[tokio::test]
async fn confirm_wrong_key() {
    let expected = Expected {
        cause: "CALL_REJECTED",
        sip_code: "200",
        dtmf: "2",
        answered: true,
    };
    let after = confirm_case("confirm_wrong_key.xml", 5, "1006", 3000, expected).await;
    assert!(
        after < 2.5,
        "our BYE {after} s after the answer: at the wrong key, without the 3 s prompt"
    );
}

/// The callee answers and presses nothing: at group_confirm_read_timeout (5 s) we hang up with
/// the back end's no-key cause, NO_USER_RESPONSE, without playing the action's prompt.
#[tokio::test]
async fn confirm_no_key() {
    let expected = Expected {
        cause: "NO_USER_RESPONSE",
        sip_code: "200",
        dtmf: "",
        answered: true,
    };
    let after = confirm_case("campaign_callee.xml", 11, "1012", 3000, expected).await;
    assert!(
        (4.8..7.0).contains(&after),
        "our BYE {after} s after the answer: at the 5 s confirm timeout, without the 3 s prompt"
    );
}

// ---------------------------------------------------------------------------------------------
// A campaign
// ---------------------------------------------------------------------------------------------

/// A campaign: 100 numbers at 10 calls a second, at most 4 at once, each answered by sipp and
/// hung up by us after a 300 ms prompt. A call lasts ~0.4 s, so at 10 calls a second the dialer
/// would have more than 4 up at once if it did not wait for hang-ups: the cap is really tested.
/// sipp sees exactly 100 calls, never more than 4 at a time.
#[tokio::test]
async fn campaign_of_100_numbers() {
    const CALLS: usize = 100;
    const CONCURRENCY: usize = 4;
    let mut sipp = Sipp::start("campaign_callee.xml", CALLS as u32);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 8)).await;
    let prompt = outcall.prompt("campaign.wav", 300);
    let numbers: Vec<String> = (0..CALLS).map(|i| format!("2{i:04}")).collect();
    let started = Instant::now();
    let id = outcall
        .start_task(
            "campaign",
            json!({
                "max_caps": 10,
                "max_concurrency": CONCURRENCY,
                "calling_time": 10,
                "action": "playback",
                "data": prompt,
            }),
            &numbers,
        )
        .await;
    let results = outcall
        .finished_numbers(id, Duration::from_secs(20), &sipp)
        .await;
    let elapsed = started.elapsed();
    sipp.assert_success().await;

    assert_eq!(results.len(), CALLS);
    for number in &results {
        assert_result(number, &Expected::NORMAL_CLEARING, None);
    }
    let uuids: HashSet<&str> = results
        .iter()
        .map(|n| n["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(uuids.len(), CALLS, "a uuid per call");
    assert!(
        elapsed >= Duration::from_secs(9),
        "100 calls at 10 a second take ~10 s: {elapsed:?}"
    );

    // sipp's statistics: exactly 100 calls, never more than 4 alive at a sample.
    let rows = sipp.stat_rows();
    assert!(!rows.is_empty(), "sipp wrote statistics\n{}", sipp.report());
    let column = |row: &HashMap<String, String>, name: &str| -> u64 {
        row.get(name)
            .unwrap_or_else(|| panic!("sipp's statistics have a {name} column: {row:?}"))
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a count: {row:?}"))
    };
    let last = rows.last().unwrap();
    assert_eq!(column(last, "TotalCallCreated"), CALLS as u64, "{last:?}");
    assert_eq!(column(last, "IncomingCall(C)"), CALLS as u64, "{last:?}");
    assert_eq!(column(last, "SuccessfulCall(C)"), CALLS as u64, "{last:?}");
    assert_eq!(column(last, "FailedCall(C)"), 0, "{last:?}");
    let max_current = rows.iter().map(|r| column(r, "CurrentCall")).max().unwrap();
    assert!(
        max_current <= CONCURRENCY as u64,
        "sipp saw {max_current} calls at once"
    );

    // The same from the message trace, exactly: each call is alive from its INVITE to its BYE.
    let log = sipp.message_log();
    let mut events: Vec<(f64, i32)> = Vec::new();
    let (mut invited, mut hung_up) = (HashSet::new(), HashSet::new());
    for message in log.iter().filter(|m| m.received) {
        // Retransmissions count once.
        if message.is_request("INVITE") && invited.insert(message.call_id.clone()) {
            events.push((message.at, 1));
        } else if message.is_request("BYE") && hung_up.insert(message.call_id.clone()) {
            events.push((message.at, -1));
        }
    }
    assert_eq!(invited.len(), CALLS, "sipp received 100 calls");
    let mut alive = 0;
    let mut most = 0;
    for (_, change) in &events {
        alive += change;
        most = most.max(alive);
    }
    assert_eq!(
        most, CONCURRENCY as i32,
        "calls alive at once in sipp's trace: the cap is reached and never passed"
    );
    assert_eq!(alive, 0, "every call ended with our BYE");
    // CAPS 10, evenly spaced: 100 INVITEs over at least ~10 s, and no burst. (Evenly spaced at
    // 100 ms, a 0.9 s window holds 9; one more is allowed for the jitter of a loaded machine.)
    let invites: Vec<f64> = events.iter().filter(|e| e.1 == 1).map(|e| e.0).collect();
    let span = invites[CALLS - 1] - invites[0];
    assert!(span >= 9.0, "100 INVITEs at 10 a second span {span} s");
    for (i, &at) in invites.iter().enumerate() {
        let in_window = invites[i..].iter().take_while(|&&t| t < at + 0.9).count();
        assert!(in_window <= 10, "{in_window} INVITEs within 0.9 s of {at}");
    }
    for uuid in &uuids {
        assert!(invited.contains(*uuid), "sipp saw the call {uuid}");
    }
}

// ---------------------------------------------------------------------------------------------
// Media files
// ---------------------------------------------------------------------------------------------

/// An uploaded WAV plays in a real call when a task references the returned media object; a
/// FreeSWITCH-only reference (`phrase:…`) is refused when the task starts.
#[tokio::test]
async fn uploaded_media_plays_and_freeswitch_phrases_are_refused() {
    let mut sipp = Sipp::start("campaign_callee.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 9)).await;
    let app = &outcall.app;

    // A 2 s prompt at 16 kHz: stored as 8 kHz mono.
    let samples: Vec<i16> = (0..32000)
        .map(|n| ((n as f64 / 16000.0 * 2.0 * std::f64::consts::PI * 300.0).sin() * 9000.0) as i16)
        .collect();
    let reply = app
        .upload_media_reply(
            "welcome",
            "welcome.wav",
            &wav::encode_wav(&samples, 1, 16000),
        )
        .await;
    let media = success_data(&reply);
    assert_eq!(media["media_name"], "welcome", "{media}");
    let media_path = media["media_path"]
        .as_str()
        .expect("a media_path")
        .to_owned();
    let stored = std::fs::read(&media_path).expect("the stored prompt exists");
    let (channels, rate, bits, data) = wav_format(&stored);
    assert_eq!(
        (channels, rate, bits),
        (1, 8000, 16),
        "stored as 8 kHz mono"
    );
    assert!(
        (31000..=33000).contains(&data),
        "2 s at 8 kHz: {data} bytes"
    );

    // A FreeSWITCH phrase cannot be played by the sip back end: refused at start, naming it.
    let phrase = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;
    let refused = app.create_task("phrase").await;
    app.update_task(refused, json!({"action": "playback", "data": phrase}))
        .await;
    app.import(refused, &["1010".to_owned()]).await;
    let reply = app.start_stop("start", &[refused]).await;
    assert_error(&reply, 400, "phrase:welcome_short@xui");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("data"), "names the field: {message}");
    assert_eq!(app.task(refused).await["status"], "init");
    assert_eq!(app.all_numbers(refused).await[0]["call_status"], "init");

    // The same phrase as the confirm prompt: refused too, naming group_confirm_file.
    app.update_task(
        refused,
        json!({"action": "", "data": "", "group_confirm_key": "1", "group_confirm_file": phrase}),
    )
    .await;
    let reply = app.start_stop("start", &[refused]).await;
    assert_error(&reply, 400, "group_confirm_file");

    // The uploaded prompt, referenced as the media object's JSON text, plays to the end.
    let data = serde_json::to_string(&media).unwrap();
    let id = outcall
        .start_task(
            "uploaded prompt",
            json!({"action": "playback", "data": data, "calling_time": 10}),
            &["1011".to_owned()],
        )
        .await;
    assert_eq!(app.task(id).await["data"], Value::String(data.clone()));
    outcall
        .finish_one(
            id,
            Duration::from_secs(12),
            &mut sipp,
            &Expected::NORMAL_CLEARING,
        )
        .await;
    let ack = received_at(&sipp, "ACK");
    let bye = received_at(&sipp, "BYE");
    assert!(!bye.is_empty(), "our BYE\n{}", sipp.report());
    let after = bye[0] - ack[0];
    assert!(
        (1.9..5.0).contains(&after),
        "our BYE {after} s after the answer: after the 2 s prompt"
    );
    let listed = app.get("/api/media_files").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(
        listed.body["data"]
            .as_array()
            .is_some_and(|files| files.iter().any(|f| f["media_path"] == media["media_path"])),
        "the upload is listed: {}",
        listed.body
    );
}
