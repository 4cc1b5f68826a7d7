//! The live suite: the real outcall binary with `--backend freeswitch` against a real FreeSWITCH
//! (`tests/common/freeswitch.rs`: ours, started on `tests/freeswitch/conf/`, or the one
//! `OUTCALL_TEST_FREESWITCH=host:port:password` names), whose gateway `sipp` leads to sipp
//! callees playing `tests/freeswitch/sipp/`. Calls take the default dial string
//! `loopback/{number}/{dest_context}` with `dest_context` `context-1`, which the switch's
//! dialplan routes out through that gateway; one case uses `sofia/gateway/{dest_context}/{number}`.
//!
//! Where there is no FreeSWITCH (CI), each test prints `<test>: skipped: <why>` and passes. Our
//! own instances run one at a time (a lock file), so the tests wait for each other.
//!
//! Cases: an uploaded WAV played to its end, busy, no answer, the callee hanging up, confirm key
//! right and wrong, transfer, recording, a 40-number campaign (sipp's INVITEs are the numbers,
//! never more calls up than `max_concurrency`), FreeSWITCH stopped or killed and started again in a
//! campaign (every number ends once, none is dialed twice, no call starts while it is down), and
//! the gateway dial string (busy with its SIP code, an answered call, a confirm key).

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use common::{
    db,
    freeswitch::{invited_numbers, wait_backend_ok, LiveSwitch},
    poll,
    process::{database, Outcall, Server},
    sipp::{rang_until_cancel, received_at, time_of, wav_format, Sipp},
    Api,
};
use outcall::audio::wav::encode_wav;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The context the default dial string and transfers use: routed out to the `sipp` gateway.
const CONTEXT: &str = "context-1";

/// outcall running against a live switch.
struct Live {
    server: Server,
    api: Api,
    /// Holds outcall's data directory and log; kept until the test ends.
    dir: TempDir,
    switch: LiveSwitch,
}

impl Live {
    /// The switch (or `None`: skipped) and outcall on it with `extra` arguments.
    async fn start(test: &str, extra: &[&str]) -> Option<Live> {
        let switch = LiveSwitch::get(test)?;
        let dir = tempfile::tempdir().unwrap();
        let mut server = Outcall::in_dir(dir.path())
            .args(switch.outcall_args())
            .args(extra.iter().map(|a| a.to_string()))
            .env("OUTCALL_LOG", "info,outcall=debug")
            .spawn();
        let api = server.connect().await;
        // The back end is connected before a test dials: /healthz says so.
        wait_backend_ok(&api, Duration::from_secs(20)).await;
        Some(Live {
            server,
            api,
            dir,
            switch,
        })
    }

    /// A prompt of `seconds` (a 440/660 Hz tone, 8 kHz mono) uploaded to the media store: its
    /// media object as JSON text, what a task's `data` takes.
    async fn prompt(&self, name: &str, seconds: f64) -> String {
        let media = self.api.upload_media(name, &tone(seconds)).await;
        serde_json::to_string(&media).unwrap()
    }

    /// A task with `settings` (and `dest_context` context-1 unless given) and `numbers`,
    /// started; answers its id.
    async fn campaign(&self, name: &str, settings: Value, numbers: &[&str]) -> i64 {
        let mut settings = settings;
        if settings.get("dest_context").is_none() {
            settings["dest_context"] = json!(CONTEXT);
        }
        let numbers: Vec<String> = numbers.iter().map(|n| n.to_string()).collect();
        self.api.start_campaign(name, settings, &numbers).await
    }

    /// Waits until the task is done; answers its numbers. On a timeout, says what sipp saw.
    async fn finished(&self, id: i64, timeout: Duration, sipp: &Sipp) -> Vec<Value> {
        self.api
            .done_numbers(id, timeout, || {
                format!("{}\n{}", sipp.report(), self.switch.log_tail(30))
            })
            .await
    }

    /// One number dialed to its end: the task done, sipp finished with success; answers the number.
    async fn one_call(&self, id: i64, timeout: Duration, sipp: &mut Sipp) -> Value {
        let numbers = self.finished(id, timeout, sipp).await;
        assert_eq!(numbers.len(), 1, "{numbers:?}");
        sipp.assert_success().await;
        let number = numbers[0].clone();
        assert_eq!(number["call_status"], "done", "{number}");
        assert!(
            !number["uuid"].as_str().unwrap_or_default().is_empty(),
            "the number keeps its call's uuid: {number}"
        );
        println!("result: {number}");
        number
    }
}

/// 8 kHz mono 16-bit: alternating 440 and 660 Hz, a quarter second each.
fn tone(seconds: f64) -> Vec<u8> {
    let samples: Vec<i16> = (0..(seconds * 8000.0) as usize)
        .map(|i| {
            let frequency = if (i / 2000) % 2 == 0 { 440.0 } else { 660.0 };
            (9000.0 * (2.0 * std::f64::consts::PI * frequency * i as f64 / 8000.0).sin()) as i16
        })
        .collect();
    encode_wav(&samples, 1, 8000)
}

fn seconds_between(number: &Value, from: &str, to: &str) -> i64 {
    (time_of(number, to) - time_of(number, from)).num_seconds()
}

fn assert_answered(number: &Value) {
    let start = time_of(number, "call_start_time");
    let answer = time_of(number, "call_answer_time");
    let end = time_of(number, "call_end_time");
    assert!(
        start <= answer && answer <= end,
        "start <= answer <= end: {number}"
    );
}

fn assert_not_answered(number: &Value) {
    assert_eq!(number["call_answer_time"], "", "never answered: {number}");
    let start = time_of(number, "call_start_time");
    let end = time_of(number, "call_end_time");
    assert!(start <= end, "start <= end: {number}");
}

/// Each call's span as sipp saw it: from its INVITE to its BYE (either way), by Call-ID.
fn call_spans(sipp: &Sipp) -> Vec<(f64, f64)> {
    let mut spans: HashMap<String, (f64, f64)> = HashMap::new();
    for message in sipp.message_log() {
        if message.received && message.is_request("INVITE") {
            spans
                .entry(message.call_id.clone())
                .or_insert((message.at, f64::INFINITY));
        } else if message.is_request("BYE") {
            if let Some(span) = spans.get_mut(&message.call_id) {
                span.1 = span.1.min(message.at);
            }
        }
    }
    spans.into_values().collect()
}

/// The most spans overlapping at any instant.
fn most_at_once(spans: &[(f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = spans
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    // At the same instant an end comes before a start.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

// ---------------------------------------------------------------------------------------------
// The switch itself
// ---------------------------------------------------------------------------------------------

/// The harness's switch is the one the cases assume: `context-1` routes a loopback call out
/// through the gateway `sipp` to the callee (an `originate` straight on the event socket, no
/// outcall), which gets the INVITE for the number and the switch's BYE after the tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_routes_context_1_to_the_sipp_callee() {
    let Some(switch) = LiveSwitch::get("the_switch_routes_context_1_to_the_sipp_callee") else {
        return;
    };
    let mut sipp = switch.callee("answer_wait_bye.xml", 1);
    let reply = switch
        .api(&format!(
            "originate {{originate_timeout=5}}loopback/4321/{CONTEXT} \
             &playback(tone_stream://%(500,0,440))"
        ))
        .expect("the event socket answers");
    assert!(reply.starts_with("+OK"), "originate: {reply}");
    sipp.assert_success().await;
    assert_eq!(invited_numbers(&sipp), ["4321"], "{}", sipp.report());
    assert!(
        !received_at(&sipp, "BYE").is_empty(),
        "the switch hung up after the tone\n{}",
        sipp.report()
    );
    let status = switch.api("status").unwrap();
    assert!(status.starts_with("UP"), "{status}");
}

// ---------------------------------------------------------------------------------------------
// One call each
// ---------------------------------------------------------------------------------------------

/// The callee answers; FreeSWITCH plays the uploaded 2 s WAV to its end and hangs up
/// (NORMAL_CLEARING): sipp gets the BYE about 2 s after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_plays_the_uploaded_wav_then_hangs_up() {
    let Some(live) = Live::start("answered_call_plays_the_uploaded_wav_then_hangs_up", &[]).await
    else {
        return;
    };
    let mut sipp = live.switch.callee("answer_wait_bye.xml", 1);
    let prompt = live.prompt("welcome", 2.0).await;
    let id = live
        .campaign(
            "playback",
            json!({"action": "playback", "data": prompt, "calling_time": 10}),
            &["1000"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(30), &mut sipp).await;
    assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    assert_eq!(number["dtmf"], "", "{number}");
    assert_answered(&number);
    assert_eq!(invited_numbers(&sipp), ["1000"], "{}", sipp.report());
    let ack = received_at(&sipp, "ACK");
    let bye = received_at(&sipp, "BYE");
    assert!(
        !ack.is_empty() && !bye.is_empty(),
        "the switch hung up\n{}",
        sipp.report()
    );
    let played = bye[0] - ack[0];
    assert!(
        (1.8..4.5).contains(&played),
        "the 2 s prompt played to its end before the BYE: {played:.2} s\n{}",
        sipp.report()
    );
}

/// 486 from the callee: USER_BUSY, never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_ends_user_busy() {
    let Some(live) = Live::start("busy_callee_ends_user_busy", &[]).await else {
        return;
    };
    let mut sipp = live.switch.callee("uas_486.xml", 1);
    let prompt = live.prompt("welcome", 1.0).await;
    let id = live
        .campaign(
            "busy",
            json!({"action": "playback", "data": prompt, "calling_time": 10}),
            &["1001"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(20), &mut sipp).await;
    assert_eq!(number["cause"], "USER_BUSY", "{number}");
    assert_not_answered(&number);
    assert_eq!(invited_numbers(&sipp), ["1001"], "{}", sipp.report());
}

/// A callee that rings and never answers: the switch CANCELs at `calling_time` (5 s, the least):
/// NO_ANSWER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_is_cancelled_at_calling_time() {
    let Some(live) = Live::start("unanswered_call_is_cancelled_at_calling_time", &[]).await else {
        return;
    };
    let mut sipp = live.switch.callee("uas_noanswer.xml", 1);
    let prompt = live.prompt("welcome", 1.0).await;
    let id = live
        .campaign(
            "no answer",
            json!({"action": "playback", "data": prompt, "calling_time": 5}),
            &["1002"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(20), &mut sipp).await;
    assert_eq!(number["cause"], "NO_ANSWER", "{number}");
    assert_not_answered(&number);
    let rang = rang_until_cancel(&sipp);
    assert!(
        (4.0..6.5).contains(&rang),
        "cancelled at the 5 s calling_time: {rang:.2} s"
    );
}

/// The callee hangs up a second into an 8 s prompt: NORMAL_CLEARING, and the call ends then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_hang_up_ends_the_call() {
    let Some(live) = Live::start("callee_hang_up_ends_the_call", &[]).await else {
        return;
    };
    let mut sipp = live.switch.callee("callee_hangs_up.xml", 1);
    let prompt = live.prompt("long", 8.0).await;
    let id = live
        .campaign(
            "callee hangs up",
            json!({"action": "playback", "data": prompt, "calling_time": 10}),
            &["1003"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(20), &mut sipp).await;
    assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    assert_answered(&number);
    let talk = seconds_between(&number, "call_answer_time", "call_end_time");
    assert!(
        talk <= 3,
        "ended with the callee's BYE at ~1 s, not after the 8 s prompt: {number}"
    );
    sipp.assert_callee_hung_up("the switch");
}

/// Confirm key 1, pressed by the callee (RFC 2833) after the confirm prompt: the action runs
/// (a 1 s prompt, then the switch hangs up), NORMAL_CLEARING, `dtmf` 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_with_the_right_key_runs_the_action() {
    let Some(live) = Live::start("confirm_with_the_right_key_runs_the_action", &[]).await else {
        return;
    };
    let mut sipp = live.switch.callee("confirm_right_key.xml", 1);
    let ask = live.prompt("press-one", 0.5).await;
    let prompt = live.prompt("welcome", 1.0).await;
    let id = live
        .campaign(
            "confirm right",
            json!({"action": "playback", "data": prompt, "calling_time": 15,
                   "group_confirm_key": "1", "group_confirm_file": ask,
                   "group_confirm_read_timeout": 5}),
            &["1004"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(30), &mut sipp).await;
    assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    assert_eq!(number["dtmf"], "1", "{number}");
    assert_answered(&number);
    assert!(
        !received_at(&sipp, "BYE").is_empty(),
        "the switch hung up after the action\n{}",
        sipp.report()
    );
}

/// A wrong key (2 for confirm key 1): CALL_REJECTED, `dtmf` 2, as on every back end; the call
/// ends well before `calling_time` runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_with_a_wrong_key_is_rejected() {
    let Some(live) = Live::start("confirm_with_a_wrong_key_is_rejected", &[]).await else {
        return;
    };
    let mut sipp = live.switch.callee("confirm_wrong_key.xml", 1);
    let ask = live.prompt("press-one", 0.5).await;
    let prompt = live.prompt("welcome", 1.0).await;
    let id = live
        .campaign(
            "confirm wrong",
            json!({"action": "playback", "data": prompt, "calling_time": 30,
                   "group_confirm_key": "1", "group_confirm_file": ask,
                   "group_confirm_read_timeout": 5}),
            &["1005"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(40), &mut sipp).await;
    assert_eq!(number["cause"], "CALL_REJECTED", "{number}");
    assert_eq!(number["dtmf"], "2", "{number}");
    assert_answered(&number);
    let talk = seconds_between(&number, "call_answer_time", "call_end_time");
    assert!(
        talk <= 8,
        "the wrong key ends the call, not the 30 s calling_time: {number}"
    );
}

/// Action transfer to 8001: the switch sends the answered call to `8001 XML context-1`, which
/// routes it back out to sipp: sipp gets a second INVITE, for 8001; that callee hangs up,
/// which ends the call (NORMAL_CLEARING).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_sends_the_call_to_the_extension() {
    let Some(live) = Live::start("transfer_sends_the_call_to_the_extension", &[]).await else {
        return;
    };
    let mut sipp = live.switch.callee("transfer_target.xml", 2);
    let id = live
        .campaign(
            "transfer",
            json!({"action": "transfer", "data": "8001", "calling_time": 10}),
            &["1006"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(30), &mut sipp).await;
    assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    assert_answered(&number);
    assert_eq!(
        invited_numbers(&sipp),
        ["1006", "8001"],
        "the callee, then the transfer's target\n{}",
        sipp.report()
    );
}

/// `auto_record=1`: the number's `record_path` is a WAV the switch wrote, served by the
/// recording route, about as long as the call (a 2 s prompt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_plays_back_through_the_api() {
    let Some(live) = Live::start("recording_plays_back_through_the_api", &[]).await else {
        return;
    };
    let mut sipp = live.switch.callee("answer_wait_bye.xml", 1);
    let prompt = live.prompt("welcome", 2.0).await;
    let id = live
        .campaign(
            "recording",
            json!({"action": "playback", "data": prompt, "calling_time": 10, "auto_record": 1}),
            &["1007"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(30), &mut sipp).await;
    assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    let record_path = number["record_path"].as_str().unwrap_or_default();
    assert!(!record_path.is_empty(), "auto_record=1 records: {number}");
    let number_id = number["id"].as_str().expect("the number's id");
    let url = live.api.url(&format!(
        "/api/out_call_tasks/{id}/numbers/{number_id}/recording"
    ));
    // The switch closes the file when the call ends: poll until the whole WAV is served.
    let (content_type, bytes) = poll(Duration::from_secs(10), "the recording", || {
        let request = live
            .api
            .client
            .get(&url)
            .header("X-XTRA-AUTH-ID", &live.api.token)
            .send();
        async move {
            let response = request.await.map_err(|e| e.to_string())?;
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let bytes = response.bytes().await.map_err(|e| e.to_string())?;
            if status == 200 && bytes.len() > 44 {
                Ok((content_type, bytes))
            } else {
                Err(format!("{status}, {} bytes", bytes.len()))
            }
        }
    })
    .await;
    assert_eq!(content_type, "audio/wav");
    let (channels, rate, bits, data) = wav_format(&bytes);
    let seconds = data as f64 / (channels as f64 * rate as f64 * bits as f64 / 8.0);
    println!("recording: {channels} channel(s), {rate} Hz, {bits} bits, {seconds:.2} s");
    assert!(
        (1.0..6.0).contains(&seconds),
        "the recording lasts about the 2 s call: {seconds:.2} s"
    );
    let samples = &bytes[bytes.len() - data..];
    let energy: f64 = samples
        .chunks_exact(2)
        .map(|s| (i16::from_le_bytes([s[0], s[1]]) as f64).powi(2))
        .sum();
    assert!(energy > 0.0, "the prompt is in the recording");
}

// ---------------------------------------------------------------------------------------------
// Campaigns
// ---------------------------------------------------------------------------------------------

fn numbers(first: u32, count: u32) -> Vec<String> {
    (first..first + count).map(|n| n.to_string()).collect()
}

/// 40 numbers at 10 CAPS with `max_concurrency` 4, each playing a 1 s prompt: sipp's INVITEs
/// are exactly the 40 numbers, each once, and sipp never has more than 4 calls up at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_of_40_dials_each_number_once_within_max_concurrency() {
    let Some(live) = Live::start(
        "campaign_of_40_dials_each_number_once_within_max_concurrency",
        &[],
    )
    .await
    else {
        return;
    };
    let mut sipp = live.switch.callee("answer_wait_bye.xml", 40);
    let prompt = live.prompt("welcome", 1.0).await;
    let all = numbers(2000, 40);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let id = live
        .campaign(
            "campaign",
            json!({"action": "playback", "data": prompt, "calling_time": 10,
                   "max_caps": 10, "max_concurrency": 4}),
            &refs,
        )
        .await;
    let results = live.finished(id, Duration::from_secs(90), &sipp).await;
    sipp.assert_success().await;
    for number in &results {
        assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    }
    let mut invited = invited_numbers(&sipp);
    assert_eq!(invited.len(), 40, "{invited:?}");
    invited.sort();
    assert_eq!(invited, all, "each number dialed once");
    let most = most_at_once(&call_spans(&sipp));
    println!("most calls up at once at sipp: {most}");
    assert!(most <= 4, "at most max_concurrency calls up: {most}");
    assert!(
        most >= 2,
        "calls overlapped at all (else the bound proves nothing): {most}"
    );
}

/// FreeSWITCH stopped (SIGTERM: it hangs up its calls) and started again in a 30-number
/// campaign: every number ends (`done`, a cause) exactly once, sipp got at most one INVITE per
/// number and one for every number that ended NORMAL_CLEARING, no number was claimed while
/// the switch was down, and the campaign went on after the restart. Needs our own instance
/// (one we may stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_restart_mid_campaign_ends_every_number_once() {
    restart_mid_campaign("switch_restart_mid_campaign_ends_every_number_once", false).await;
}

/// The same with FreeSWITCH killed (SIGKILL: no goodbye, its calls just vanish): the calls that
/// were up are found gone after the reconnect and end once, never redialed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_killed_mid_campaign_ends_every_number_once() {
    restart_mid_campaign("switch_killed_mid_campaign_ends_every_number_once", true).await;
}

async fn restart_mid_campaign(test: &str, kill: bool) {
    let Some(mut live) = Live::start(test, &[]).await else {
        return;
    };
    if !live.switch.is_own() {
        println!("{test}: skipped: OUTCALL_TEST_FREESWITCH's switch is not ours to restart");
        return;
    }
    let sipp = live.switch.callee("answer_wait_bye.xml", 1000);
    let prompt = live.prompt("welcome", 2.0).await;
    let all = numbers(3000, 30);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let id = live
        .campaign(
            "restart",
            json!({"action": "playback", "data": prompt, "calling_time": 10,
                   "max_caps": 5, "max_concurrency": 5}),
            &refs,
        )
        .await;
    poll(Duration::from_secs(30), "8 INVITEs at sipp", || {
        let seen = invited_numbers(&sipp).len();
        async move {
            if seen >= 8 {
                Ok(())
            } else {
                Err(format!("{seen}"))
            }
        }
    })
    .await;
    let stop_began = chrono::Utc::now().timestamp();
    if kill {
        live.switch.kill();
    } else {
        live.switch.stop();
    }
    let down_at = chrono::Utc::now().timestamp();
    println!(
        "{} FreeSWITCH after {} INVITEs",
        if kill { "killed" } else { "stopped" },
        invited_numbers(&sipp).len()
    );
    // outcall sees the switch gone.
    let (status, health) = poll(Duration::from_secs(15), "/healthz to say so", || async {
        let (status, body) = live.api.health().await;
        if body["backend"]["status"] != "ok" {
            Ok((status, body))
        } else {
            Err(body.to_string())
        }
    })
    .await;
    println!("while down: /healthz {status} {health}");
    // Down for a while: the dialer must start nothing meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let up_at = chrono::Utc::now().timestamp();
    live.switch.start();
    if let Some(status) = live.server.try_exit() {
        panic!("outcall exited: {status}");
    }
    wait_backend_ok(&live.api, Duration::from_secs(30)).await;
    let results = live.finished(id, Duration::from_secs(120), &sipp).await;
    assert_eq!(results.len(), 30);

    let rows = db::numbers(&database(live.dir.path()), id);
    let invited = invited_numbers(&sipp);
    let mut per_number: BTreeMap<&str, usize> = BTreeMap::new();
    for number in &invited {
        *per_number.entry(number.as_str()).or_default() += 1;
    }
    for (number, count) in &per_number {
        assert_eq!(
            *count,
            1,
            "{number} dialed {count} times\n{}",
            sipp.report()
        );
        assert!(rows.contains_key(*number), "sipp got {number}, not ours");
    }
    let mut causes: BTreeMap<String, usize> = BTreeMap::new();
    for number in &all {
        let row = &rows[number];
        assert_eq!(row.call_status, "done", "{number}: {row:?}");
        assert!(!row.cause.is_empty(), "{number} has a cause: {row:?}");
        *causes.entry(row.cause.clone()).or_default() += 1;
        if row.cause == "NORMAL_CLEARING" {
            assert!(
                per_number.contains_key(number.as_str()),
                "{number} ended NORMAL_CLEARING, so sipp got its INVITE"
            );
        }
        let start = row.call_start_time.expect("a start time");
        assert!(
            !(down_at + 2..up_at).contains(&start),
            "{number} was claimed at {start}, while the switch was down ({down_at}..{up_at})"
        );
    }
    println!(
        "{} INVITEs for 30 numbers; causes {causes:?}; stop began {stop_began}, down {down_at}, \
         up {up_at}",
        invited.len()
    );
    for number in &all {
        let row = &rows[number];
        println!(
            "  {number}: {} claimed at {:+} s from the stop's start, invited {}",
            row.cause,
            row.call_start_time.unwrap_or_default() - stop_began,
            per_number.contains_key(number.as_str())
        );
    }
    assert!(
        causes.get("NORMAL_CLEARING").copied().unwrap_or(0) >= 15,
        "the campaign went on after the restart: {causes:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The gateway dial string
// ---------------------------------------------------------------------------------------------

/// `--esl-dial-string sofia/gateway/{dest_context}/{number}` with `dest_context` `sipp`: a busy
/// callee ends USER_BUSY with its SIP code 486, an answered call plays its prompt, and a
/// callee who presses the confirm key gets the action (NORMAL_CLEARING, `dtmf` 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_dial_string_busy_answered_and_confirmed() {
    let Some(live) = Live::start(
        "gateway_dial_string_busy_answered_and_confirmed",
        &["--esl-dial-string", "sofia/gateway/{dest_context}/{number}"],
    )
    .await
    else {
        return;
    };
    let prompt = live.prompt("welcome", 1.0).await;
    let mut busy = live.switch.callee("uas_486.xml", 1);
    let id = live
        .campaign(
            "gateway busy",
            json!({"action": "playback", "data": prompt, "calling_time": 10,
                   "dest_context": "sipp"}),
            &["1008"],
        )
        .await;
    let number = live.one_call(id, Duration::from_secs(20), &mut busy).await;
    assert_eq!(number["cause"], "USER_BUSY", "{number}");
    assert_eq!(number["sip_code"], "486", "{number}");
    assert_not_answered(&number);
    assert_eq!(invited_numbers(&busy), ["1008"]);
    drop(busy);

    let mut answer = live.switch.callee("answer_wait_bye.xml", 1);
    let id = live
        .campaign(
            "gateway answered",
            json!({"action": "playback", "data": prompt, "calling_time": 10,
                   "dest_context": "sipp"}),
            &["1009"],
        )
        .await;
    let number = live
        .one_call(id, Duration::from_secs(20), &mut answer)
        .await;
    assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    assert_answered(&number);
    assert_eq!(invited_numbers(&answer), ["1009"]);
    assert!(
        !received_at(&answer, "BYE").is_empty(),
        "the switch hung up after the prompt\n{}",
        answer.report()
    );
    drop(answer);

    let mut confirm = live.switch.callee("confirm_right_key.xml", 1);
    let ask = live.prompt("press-one", 0.5).await;
    let id = live
        .campaign(
            "gateway confirm",
            json!({"action": "playback", "data": prompt, "calling_time": 15,
                   "dest_context": "sipp", "group_confirm_key": "1",
                   "group_confirm_file": ask, "group_confirm_read_timeout": 5}),
            &["1010"],
        )
        .await;
    let number = live
        .one_call(id, Duration::from_secs(30), &mut confirm)
        .await;
    assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    assert_eq!(number["dtmf"], "1", "{number}");
    assert_answered(&number);
}
