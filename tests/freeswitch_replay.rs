//! The freeswitch back end against a scripted event socket (`common::esl_peer`) that replays
//! real FreeSWITCH 1.11.2 wire captures (`tests/fixtures/esl/`): CI has no FreeSWITCH.
//!
//! First the peer itself (its captures, its originate parser, its dialogue through the real
//! `telephony::esl` client), then the real binary started `--backend freeswitch` against it.

mod common;

use std::time::Duration;

use common::{esl_peer::*, poll};
use outcall::telephony::esl::{EslClient, EslError, Event, EventStream};

const SECOND: Duration = Duration::from_secs(1);
const EVENTS: &[&str] = &[
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
    "DTMF",
];

// ---- the peer's captures and parser ----

#[test]
fn every_capture_conversation_holds_exactly_the_bytes_freeswitch_sent() {
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(stem) = name.strip_suffix(".s2c.txt") else {
            continue;
        };
        let sent: Vec<u8> = capture(stem)
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::Sent { bytes, .. } => Some(bytes.clone()),
                Step::Received { .. } => None,
            })
            .flatten()
            .collect();
        assert_eq!(sent, std::fs::read(&path).unwrap(), "{name}");
    }
}

#[test]
fn scenario_outcomes_and_event_orders_are_those_the_captures_index_describes() {
    // INDEX.txt / the issue, in words; the figures themselves are read from the captures.
    let outcome = |s: Scenario| s.outcome().unwrap();
    assert_eq!(outcome(Scenario::Busy).cause, "USER_BUSY");
    assert_eq!(outcome(Scenario::Busy).sip_code.as_deref(), Some("486"));
    assert_eq!(outcome(Scenario::Busy).job, "-ERR USER_BUSY");
    assert!(!outcome(Scenario::Busy).answered);
    assert_eq!(outcome(Scenario::NoAnswer).job, "-ERR NO_ANSWER");
    assert!(!outcome(Scenario::NoAnswer).answered);
    assert_eq!(outcome(Scenario::NoAnswer).sip_code.as_deref(), Some("487"));
    assert_eq!(
        outcome(Scenario::Unreachable).job,
        "-ERR NORMAL_TEMPORARY_FAILURE"
    );
    assert!(outcome(Scenario::AnswerPlayback).answered);
    assert_eq!(
        outcome(Scenario::DtmfCalleeBye).sip_code.as_deref(),
        Some("200")
    );
    assert!(outcome(Scenario::DtmfCalleeBye).dtmf.starts_with('1'));
    assert!(outcome(Scenario::GroupConfirm).dtmf.starts_with('1'));
    assert!(Scenario::Park.outcome().is_none());

    let order = |s: Scenario| -> Vec<String> {
        s.script()
            .events()
            .iter()
            .map(|e| e.name().to_owned())
            .filter(|n| EVENTS.contains(&n.as_str()))
            .collect()
    };
    let position = |names: &[String], name: &str| names.iter().position(|n| n == name).unwrap();
    let busy = order(Scenario::Busy);
    assert!(position(&busy, "CHANNEL_HANGUP_COMPLETE") < position(&busy, "BACKGROUND_JOB"));
    let no_answer = order(Scenario::NoAnswer);
    assert!(
        position(&no_answer, "BACKGROUND_JOB") < position(&no_answer, "CHANNEL_HANGUP_COMPLETE")
    );
    let confirm = order(Scenario::GroupConfirm);
    assert!(position(&confirm, "DTMF") < position(&confirm, "BACKGROUND_JOB"));
    let park = order(Scenario::Park);
    assert!(park.contains(&"CHANNEL_ANSWER".to_owned()));
    assert!(!park.contains(&"CHANNEL_HANGUP_COMPLETE".to_owned()));
}

#[test]
fn the_originate_parser_reads_the_captures_commands_and_freeswitch_quoting() {
    let confirm = Scenario::GroupConfirm.script();
    let parsed = Originate::parse(confirm.originate.strip_prefix("bgapi originate ").unwrap());
    assert_eq!(
        parsed.var("origination_uuid"),
        Some(confirm.channel_uuid.as_str())
    );
    assert_eq!(parsed.var("group_confirm_key"), Some("1"));
    // FreeSWITCH split this unquoted value at its commas: the channel's variable says so.
    assert_eq!(
        parsed.var("group_confirm_file"),
        Some("tone_stream://%(200")
    );
    assert_eq!(parsed.legs, ["sofia/gateway/sipp/1000"]);
    assert_eq!(parsed.number.as_deref(), Some("1000"));
    assert_eq!(
        parsed.application,
        Some((
            "playback".into(),
            Some("tone_stream://%(10000,0,440".into())
        ))
    );

    // Every variable of every captured originate reads as the channel variable FreeSWITCH set.
    for scenario in Scenario::ALL {
        let script = scenario.script();
        let parsed = Originate::parse(script.originate.strip_prefix("bgapi originate ").unwrap());
        let events = script.events();
        let create = events
            .iter()
            .find(|e| e.name() == "CHANNEL_ANSWER" || e.name() == "CHANNEL_HANGUP_COMPLETE")
            .unwrap();
        for (name, value) in &parsed.variables {
            if let Some(set) = create.get(&format!("variable_{name}")) {
                assert_eq!(set, value, "{scenario:?} {name}");
            }
        }
    }

    // Quotes keep blanks; `\,` keeps a comma; a comma splits the block.
    let parsed = Originate::parse("{a='x y',b=1\\,2,c='p,q'}loopback/123/ctx &park() XML 'my ctx'");
    assert_eq!(parsed.var("a"), Some("x y"));
    assert_eq!(parsed.var("b"), Some("1,2"));
    // The command line's split already took the quotes away: the comma splits the block.
    assert_eq!(parsed.var("c"), Some("p"));
    assert_eq!(parsed.context.as_deref(), Some("my ctx"));
    let split = Originate::parse("{a=1,2}loopback/123 &park()");
    assert_eq!(split.var("a"), Some("1"));
    let two_legs = Originate::parse("{}sofia/gateway/g/1,sofia/gateway/g/2 &park()");
    assert_eq!(two_legs.legs.len(), 2);
    // A leg's own `[…]` variables: its commas are not leg separators, and they win.
    let leg = Originate::parse("{a=1,k=0}[k=1,f='/x y.wav',g=p\\,q]loopback/123/ctx &park()");
    assert_eq!(leg.legs, ["loopback/123/ctx"]);
    assert_eq!(leg.var("k"), Some("1"));
    assert_eq!(leg.var("a"), Some("1"));
    assert_eq!(leg.var("f"), Some("/x y.wav"));
    assert_eq!(leg.var("g"), Some("p,q"));
    assert_eq!(leg.number.as_deref(), Some("123"));
    let enterprise = Originate::parse("{a=x:_:y}loopback/123 &park()");
    assert!(enterprise.error.is_some(), "{enterprise:?}");
    let blank = Originate::parse("{a=x y}loopback/123 &park()");
    assert!(blank.error.is_some() || blank.var("a") != Some("x y"));
}

// ---- the peer through the real client ----

async fn connect(peer: &EslPeer) -> (EslClient, EventStream) {
    EslClient::connect(&peer.addr(), "ClueCon", EVENTS, 5 * SECOND)
        .await
        .expect("the peer accepts the client")
}

/// Reads events until one satisfies `until` (bounded); answers all read.
async fn events_until(stream: &mut EventStream, until: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    tokio::time::timeout(10 * SECOND, async {
        loop {
            let event = stream.next().await.expect("an event");
            let done = until(&event);
            seen.push(event);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no awaited event; saw {:?}",
            seen.iter().map(|e| e.name().to_owned()).collect::<Vec<_>>()
        )
    });
    seen
}

#[tokio::test]
async fn the_peer_replays_each_scenario_with_this_originates_uuids_and_the_captures_order() {
    let peer = EslPeer::start().await;
    let (client, mut stream) = connect(&peer).await;
    for scenario in Scenario::ALL {
        // Longer than the captures' uuids: every Content-Length must be recomputed.
        let uuid = format!("{}-longer", uuid::Uuid::new_v4());
        let job = format!("job-{}", uuid::Uuid::new_v4());
        let number = format!("1380000000{}", scenario.digit());
        let command = format!(
            "originate {{origination_uuid={uuid},originate_timeout=20}}loopback/{number}/context-1 &park()"
        );
        client.bgapi(&command, &job).await.unwrap();
        let mine = |e: &Event| e.get("Unique-ID") == Some(&uuid) || e.get("Job-UUID") == Some(&job);
        let events: Vec<Event> = if scenario == Scenario::Park {
            let seen = events_until(&mut stream, |e| mine(e) && e.name() == "BACKGROUND_JOB").await;
            assert_eq!(
                client.api(&format!("uuid_exists {uuid}")).await.unwrap(),
                "true"
            );
            assert_eq!(
                client
                    .api(&format!("uuid_kill {uuid} USER_BUSY"))
                    .await
                    .unwrap(),
                "+OK\n"
            );
            let mut seen = seen;
            seen.extend(
                events_until(&mut stream, |e| {
                    mine(e) && e.name() == "CHANNEL_HANGUP_COMPLETE"
                })
                .await,
            );
            assert_eq!(
                client.api(&format!("uuid_exists {uuid}")).await.unwrap(),
                "false"
            );
            let complete = seen.last().unwrap();
            assert_eq!(complete.get("Hangup-Cause"), Some("USER_BUSY"));
            seen
        } else {
            let expected = scenario.outcome().unwrap();
            let job_is_last = {
                let names: Vec<String> = scenario
                    .script()
                    .events()
                    .iter()
                    .map(|e| e.name().to_owned())
                    .collect();
                names.iter().rposition(|n| n == "BACKGROUND_JOB")
                    > names.iter().rposition(|n| n == "CHANNEL_HANGUP_COMPLETE")
            };
            let seen = events_until(&mut stream, |e| {
                mine(e)
                    && e.name()
                        == if job_is_last {
                            "BACKGROUND_JOB"
                        } else {
                            "CHANNEL_HANGUP_COMPLETE"
                        }
            })
            .await;
            let complete = seen
                .iter()
                .find(|e| mine(e) && e.name() == "CHANNEL_HANGUP_COMPLETE")
                .expect("the hang-up");
            assert_eq!(complete.get("Hangup-Cause"), Some(expected.cause.as_str()));
            let captured = scenario.script().events();
            let captured = captured
                .iter()
                .find(|e| e.name() == "CHANNEL_HANGUP_COMPLETE")
                .unwrap();
            for name in [
                "variable_sip_term_status",
                "variable_billmsec",
                "variable_billsec",
            ] {
                assert_eq!(complete.get(name), captured.get(name), "{name}");
            }
            let job_event = seen
                .iter()
                .find(|e| mine(e) && e.name() == "BACKGROUND_JOB")
                .unwrap();
            let body = job_event.body().unwrap().trim();
            assert_eq!(
                body,
                expected.job.replace(&scenario.script().channel_uuid, &uuid)
            );
            // Timestamps moved to now.
            let answered: i64 = complete
                .get("Caller-Channel-Created-Time")
                .unwrap()
                .parse()
                .unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as i64;
            assert!(
                (now - answered).abs() < 60_000_000,
                "{answered} vs now {now}"
            );
            seen
        };
        // Only the subscribed events, and the capture's own channel uuid never shows.
        for event in &events {
            assert!(EVENTS.contains(&event.name()), "{}", event.name());
            assert!(event
                .headers()
                .all(|(_, v)| !v.contains(&scenario.script().channel_uuid)));
        }
        let names: Vec<&str> = events
            .iter()
            .filter(|e| mine(e))
            .map(|e| e.name())
            .collect();
        let capture_names: Vec<String> = scenario
            .script()
            .events()
            .iter()
            .map(|e| e.name().to_owned())
            .filter(|n| EVENTS.contains(&n.as_str()))
            .collect();
        if scenario != Scenario::Park {
            assert_eq!(names, capture_names, "{scenario:?}");
        }
        assert_eq!(peer.originate_count(&number), 1);
    }
    assert_eq!(peer.live_channels(), 0);
    assert!(peer.max_live_channels() >= 1);
}

#[tokio::test]
async fn the_peer_refuses_a_wrong_password_like_capture_01b_and_reports_status() {
    let peer = EslPeer::start_with(PeerOptions {
        sessions_per_second: 30,
        ..Default::default()
    })
    .await;
    match EslClient::connect(&peer.addr(), "wrong", EVENTS, 5 * SECOND).await {
        Err(EslError::AuthFailed(text)) => assert_eq!(text, "-ERR invalid"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a wrong password accepted"),
    }
    assert_eq!(peer.logins(), (0, 1));
    let (client, _stream) = connect(&peer).await;
    let status = client.api("status").await.unwrap();
    assert!(
        status.contains("session(s) per Sec out of max 30,"),
        "{status}"
    );
    assert_eq!(
        client
            .api("uuid_exists 00000000-0000-0000-0000-000000000000")
            .await
            .unwrap(),
        "false"
    );
    assert_eq!(
        client
            .api("uuid_kill 00000000-0000-0000-0000-000000000000")
            .await
            .unwrap(),
        "-ERR No such channel!\n"
    );
    assert_eq!(
        client.api("no_such_command").await.unwrap(),
        "-ERR no_such_command Command not found!\n"
    );
    let commands: Vec<String> = peer.commands().into_iter().map(|c| c.text).collect();
    assert_eq!(commands[0], "auth wrong");
    assert_eq!(commands[1], "auth ClueCon");
    assert!(commands[2].starts_with("event plain "));
}

#[tokio::test]
async fn the_peer_drops_refuses_rejects_and_accepts_again_on_command() {
    let peer = EslPeer::start().await;
    let (client, mut stream) = connect(&peer).await;
    let uuid = uuid::Uuid::new_v4().to_string();
    client
        .bgapi(
            &format!("originate {{origination_uuid={uuid}}}loopback/5558/ctx &park()"),
            "job-1",
        )
        .await
        .unwrap();
    events_until(&mut stream, |e| e.name() == "BACKGROUND_JOB").await;

    peer.drop_connections();
    assert!(stream.next().await.is_err(), "EOF after the drop");
    peer.stop_listening();
    poll(5 * SECOND, "connections refused", || async {
        match tokio::net::TcpStream::connect(peer.addr()).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The call lives on meanwhile; its hang-up goes to nobody.
    assert_eq!(peer.live_uuids("5558"), std::slice::from_ref(&uuid));
    peer.start_listening();
    let (client, mut stream) = poll(5 * SECOND, "listening again", || async {
        EslClient::connect(&peer.addr(), "ClueCon", EVENTS, 5 * SECOND)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(
        client.api(&format!("uuid_exists {uuid}")).await.unwrap(),
        "true"
    );
    assert!(peer.hang_up(&uuid, "NORMAL_CLEARING"));
    let seen = events_until(&mut stream, |e| e.name() == "CHANNEL_HANGUP_COMPLETE").await;
    assert_eq!(seen.last().unwrap().get("Unique-ID"), Some(uuid.as_str()));
    assert_eq!(
        client.api(&format!("uuid_exists {uuid}")).await.unwrap(),
        "false"
    );

    peer.set_rude(true);
    match EslClient::connect(&peer.addr(), "ClueCon", EVENTS, 5 * SECOND).await {
        Err(EslError::Rejected(text)) => assert_eq!(text, "Access Denied, go away."),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted while rude"),
    }
}

// ---- the real binary, `--backend freeswitch`, against the peer ----

use common::{
    process::{Outcall, Server},
    sipp::{assert_result, sine_wav, Expected},
    success_data, Api,
};
use serde_json::{json, Value};

/// The peer, outcall started against it, and a logged-in client.
struct Rig {
    peer: EslPeer,
    server: Server,
    api: Api,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Rig {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// outcall `--backend freeswitch --esl-addr <peer>` (password ClueCon) with `args` more.
async fn rig(options: PeerOptions, args: &[&str]) -> Rig {
    rig_with(EslPeer::start_with(options).await, args).await
}

/// Like `rig`, with a peer already set up (e.g. rude, or with another password).
async fn rig_with(peer: EslPeer, args: &[&str]) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Outcall::in_dir(dir.path())
        .args(["--backend", "freeswitch", "--esl-addr", &peer.addr()])
        .args(args.iter().copied())
        .spawn();
    let api = answering(&mut server).await;
    Rig {
        peer,
        server,
        api,
        dir,
    }
}

/// Logs in once `/healthz` answers at all: 200, or 503 while the back end is down (which
/// `Server::connect` would wait out).
async fn answering(server: &mut Server) -> Api {
    let http = reqwest::Client::builder()
        .timeout(10 * SECOND)
        .build()
        .unwrap();
    let url = format!("{}/healthz", server.base_url());
    poll(30 * SECOND, "GET /healthz to answer", || {
        let exited = server.try_exit();
        let request = http.get(&url).send();
        async move {
            if let Some(status) = exited {
                panic!("outcall exited: {status}");
            }
            match request.await {
                Ok(reply) if matches!(reply.status().as_u16(), 200 | 503) => Ok(()),
                Ok(reply) => Err(format!("status {}", reply.status())),
                Err(error) => Err(error.to_string()),
            }
        }
    })
    .await;
    let mut api = Api::new(server.base_url(), http);
    api.token = api.log_in("admin", common::ADMIN_PASSWORD).await;
    api
}

/// Waits (bounded) until `/healthz`'s back end satisfies `check` (given its status code, its
/// `backend.status` and `backend.detail`); answers the body.
async fn health_until(api: &Api, what: &str, check: impl Fn(u16, &str, &str) -> bool) -> Value {
    poll(20 * SECOND, what, || async {
        let (code, body) = api.health().await;
        let status = body["backend"]["status"].as_str().unwrap_or_default();
        let detail = body["backend"]["detail"].as_str().unwrap_or_default();
        if check(code, status, detail) {
            Ok(body)
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await
}

/// `POST /api/media_files` of a short WAV; answers the media object.
async fn upload_prompt(api: &Api, name: &str) -> Value {
    let boundary = "----outcall-freeswitch-replay-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&sine_wav(300, 440.0));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    success_data(&api.post_multipart("/api/media_files", boundary, body).await)
}

/// Waits (bounded) until the peer has received `count` originates; answers them.
async fn originates(peer: &EslPeer, count: usize) -> Vec<Originate> {
    poll(
        20 * SECOND,
        &format!("{count} originates at the peer"),
        || async {
            let seen = peer.originates();
            if seen.len() >= count {
                Ok(seen)
            } else {
                Err(format!("{} so far", seen.len()))
            }
        },
    )
    .await
}

/// Numbers ending in `digit`, `count` of them, distinct across calls of this test by `first`.
fn numbers_ending(digit: char, first: u32, count: u32) -> Vec<String> {
    (first..first + count)
        .map(|i| format!("138{i:07}{digit}"))
        .collect()
}

/// A finished number checked against what its scenario's capture says.
fn assert_as_captured(number: &Value) {
    let dialed = number["dest_number"].as_str().unwrap();
    let outcome = Scenario::for_number(dialed)
        .outcome()
        .expect("a scenario that ends by itself");
    assert_result(
        number,
        &Expected {
            cause: &outcome.cause,
            sip_code: outcome.sip_code.as_deref().unwrap_or(""),
            dtmf: &outcome.dtmf,
            answered: outcome.answered,
        },
        None,
    );
}

#[tokio::test]
async fn every_task_setting_reaches_the_originate_exactly() {
    let rig = rig(PeerOptions::default(), &[]).await;
    let prompt = upload_prompt(&rig, "welcome").await;
    let confirm = upload_prompt(&rig, "press-one").await;
    let prompt_path = prompt["media_path"].as_str().unwrap().to_owned();
    let confirm_path = confirm["media_path"].as_str().unwrap().to_owned();
    let number = numbers_ending('7', 1, 1);
    let id = rig
        .start_campaign(
            "every setting",
            json!({
                "calling_time": 17,
                "dest_context": "context-1",
                "cid_number": "4000123",
                "cid_name": "outcall desk",
                "disable_ring_back": 1,
                "group_confirm_key": "1",
                "group_confirm_file": serde_json::to_string(&confirm).unwrap(),
                "group_confirm_read_timeout": 4,
                "auto_record": 1,
                "action": "playback",
                "data": serde_json::to_string(&prompt).unwrap(),
            }),
            &number,
        )
        .await;
    rig.wait_done(id, 20 * SECOND).await;
    let stored = &rig.all_numbers(id).await[0];
    assert_as_captured(stored);
    let sent = originates(&rig.peer, 1).await;
    let originate = &sent[0];
    assert!(originate.error.is_none(), "{originate:?}");
    assert_eq!(originate.var("origination_uuid"), stored["uuid"].as_str());
    assert_eq!(originate.var("originate_timeout"), Some("17"));
    assert_eq!(
        originate.var("origination_caller_id_number"),
        Some("4000123")
    );
    assert_eq!(
        originate.var("origination_caller_id_name"),
        Some("outcall desk")
    );
    assert_eq!(originate.var("ignore_early_media"), Some("true"));
    assert_eq!(originate.var("group_confirm_key"), Some("1"));
    assert_eq!(
        originate.var("group_confirm_file"),
        Some(confirm_path.as_str())
    );
    assert_eq!(originate.var("group_confirm_read_timeout"), Some("4000"));
    let record_path = stored["record_path"].as_str().unwrap();
    assert!(!record_path.is_empty(), "{stored}");
    assert_eq!(
        originate.var("execute_on_answer"),
        Some(format!("record_session {record_path}").as_str())
    );
    assert_eq!(
        originate.application_expanded(),
        Some(("playback".to_owned(), Some(prompt_path)))
    );
    assert_eq!(originate.legs.len(), 1, "{originate:?}");
    assert_eq!(originate.number.as_deref(), Some(number[0].as_str()));
    // The Job-UUID is outcall's own, one per call, and sent as the bgapi's header.
    let bgapi = rig
        .peer
        .commands()
        .into_iter()
        .find(|c| c.text.starts_with("bgapi originate "))
        .unwrap();
    assert!(bgapi
        .text
        .ends_with(&format!("\nJob-UUID: {}", originate.job_uuid)));
    uuid::Uuid::parse_str(&originate.job_uuid).expect("a uuid");

    // Transfer: `<data> XML <dest_context>`; no confirm key, no recording, no caller id.
    let number = numbers_ending('2', 2, 1);
    let id = rig
        .start_campaign(
            "transfer",
            json!({"action": "transfer", "data": "8001", "dest_context": "sales-1"}),
            &number,
        )
        .await;
    rig.wait_done(id, 20 * SECOND).await;
    let sent = originates(&rig.peer, 2).await;
    let transfer = &sent[1];
    assert_eq!(transfer.exten, "8001");
    assert_eq!(transfer.dialplan.as_deref(), Some("XML"));
    assert_eq!(transfer.context.as_deref(), Some("sales-1"));
    for absent in [
        "group_confirm_key",
        "execute_on_answer",
        "origination_caller_id_name",
        "origination_caller_id_number",
    ] {
        assert_eq!(transfer.var(absent), None, "{absent}: {transfer:?}");
    }
    // The default dial string routes through the box's own dialplan.
    assert_eq!(transfer.legs, [format!("loopback/{}/sales-1", number[0])]);
    assert_as_captured(&rig.all_numbers(id).await[0]);

    // No action: the call is hung up after the answer by an application, never parked.
    let number = numbers_ending('2', 3, 1);
    let id = rig
        .start_campaign(
            "hang up",
            json!({"action": "", "data": "", "dest_context": "context-1"}),
            &number,
        )
        .await;
    rig.wait_done(id, 20 * SECOND).await;
    let sent = originates(&rig.peer, 3).await;
    let (application, _) = sent[2].application.clone().expect("an &application");
    assert_eq!(application, "hangup", "{:?}", sent[2]);
}

/// Hostile task fields: each comes back from FreeSWITCH's reading of the command exactly, or
/// the task is refused (when saved or started) with a 4xx naming the field.
#[tokio::test]
async fn hostile_field_values_come_back_exactly_or_are_refused_naming_the_field() {
    let values = [
        "a,b",
        "x}",
        "{y",
        "it's",
        "say \"hi\"",
        "two words",
        " lead",
        "trail ",
        "back\\slash",
        "end\\",
        "a=b",
        "50%",
        "\\'",
        "''",
        "x|y",
        "$x",
        "(paren)",
        "\\s",
    ];
    let sent = hostile_values_round_trip(&values).await;
    // Escaped, not merely refused: at least one field's worth goes through.
    assert!(sent >= values.len(), "{sent} of {} sent", values.len() * 4);
}

/// FreeSWITCH looks for `:_:` (its "enterprise originate" separator) in the whole dial argument
/// before it reads the variables, and no escape hides it: a field holding it must be refused.
#[tokio::test]
async fn a_value_holding_freeswitchs_enterprise_separator_is_refused() {
    hostile_values_round_trip(&["a:_:b", ":_:"]).await;
}

/// Each value in each field (cid_name, cid_number, dest_context, transfer data): read back
/// exactly from the originate, or refused with a 4xx naming the field.
async fn hostile_values_round_trip(values: &[&str]) -> usize {
    let rig = rig(PeerOptions::default(), &[]).await;
    // (field, settings with the value, what FreeSWITCH must read back).
    type Readback = fn(&Originate, &str) -> Option<String>;
    type Settings = fn(&str) -> Value;
    let fields: [(&str, Settings, Readback); 4] = [
        (
            "cid_name",
            |v| json!({"cid_name": v, "dest_context": "context-1"}),
            |o, _| o.var("origination_caller_id_name").map(str::to_owned),
        ),
        (
            "cid_number",
            |v| json!({"cid_number": v, "dest_context": "context-1"}),
            |o, _| o.var("origination_caller_id_number").map(str::to_owned),
        ),
        (
            "dest_context",
            |v| json!({"dest_context": v}),
            // The default dial string is loopback/{number}/{dest_context}: one leg, exactly.
            |o, number| match &o.legs[..] {
                [leg] => leg
                    .strip_prefix(&format!("loopback/{number}/"))
                    .map(str::to_owned),
                _ => None,
            },
        ),
        (
            "data",
            |v| json!({"action": "transfer", "data": v, "dest_context": "sales"}),
            |o, _| Some(o.exten.clone()),
        ),
    ];
    let mut started = Vec::new();
    let mut serial = 100;
    for (field, settings, readback) in fields {
        for &value in values {
            serial += 1;
            let number = numbers_ending('4', serial, 1).remove(0);
            let mut body = settings(value);
            body["group_name"] = json!(format!("hostile {field} {serial}"));
            let created = rig.post("/api/out_call_tasks", body).await;
            if created.status.is_client_error() {
                common::assert_error(&created, created.status.as_u16(), field);
                continue;
            }
            let id = success_data(&created).as_i64().unwrap();
            rig.import(id, std::slice::from_ref(&number)).await;
            let reply = rig.start_stop("start", &[id]).await;
            if reply.status.is_client_error() {
                common::assert_error(&reply, reply.status.as_u16(), field);
                assert_eq!(rig.all_numbers(id).await[0]["call_status"], "init");
                continue;
            }
            success_data(&reply);
            // What the task holds is what must reach the switch (the dialer transfers to the
            // data trimmed, whatever the back end).
            let stored = rig.task(id).await[field].as_str().unwrap().to_owned();
            let stored = match field {
                "data" => stored.trim().to_owned(),
                _ => stored,
            };
            started.push((field, stored, id, number, readback));
        }
    }
    let sent = started.len();
    for (field, value, id, number, readback) in started {
        let uuid = poll(20 * SECOND, "the number's uuid", || async {
            let numbers = rig.all_numbers(id).await;
            match numbers[0]["uuid"].as_str() {
                Some(uuid) if !uuid.is_empty() => Ok(uuid.to_owned()),
                _ => Err(numbers[0].to_string()),
            }
        })
        .await;
        let originate = poll(20 * SECOND, "its originate", || async {
            rig.peer
                .originates()
                .into_iter()
                .find(|o| o.raw.contains(&uuid))
                .ok_or_else(|| "not yet".to_owned())
        })
        .await;
        assert!(
            originate.error.is_none(),
            "{field}={value:?}: {originate:?}"
        );
        assert_eq!(
            originate.var("origination_uuid"),
            Some(uuid.as_str()),
            "{field}={value:?}: {}",
            originate.raw
        );
        assert_eq!(
            readback(&originate, &number).as_deref(),
            Some(value.as_str()),
            "{field}={value:?} sent as {}",
            originate.raw
        );
        assert_eq!(rig.peer.originate_count(&number), 1, "{}", originate.raw);
    }
    sent
}

/// 30 numbers over two tasks mixing every scenario that ends by itself: each number's result
/// (status, cause, sip_code, answer and end times, dtmf) is what its capture says.
#[tokio::test]
async fn a_campaign_ends_every_number_as_its_capture_says() {
    // Through a gateway, as the captures were made (the default dial string is loopback/…).
    let rig = rig(
        PeerOptions::default(),
        &["--esl-dial-string", "sofia/gateway/{dest_context}/{number}"],
    )
    .await;
    let prompt = upload_prompt(&rig, "welcome").await;
    let mut plain = Vec::new();
    for (i, digit) in ['2', '3', '4', '5', '9']
        .iter()
        .cycle()
        .take(25)
        .enumerate()
    {
        plain.extend(numbers_ending(*digit, 200 + i as u32, 1));
    }
    let confirmed = numbers_ending('7', 300, 5);
    let before = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(2);
    let playback = json!({
        "action": "playback",
        "data": serde_json::to_string(&prompt).unwrap(),
        "calling_time": 20,
        "dest_context": "sipp",
        "max_caps": 20,
        "max_concurrency": 6,
    });
    let first = rig.start_campaign("mixed", playback.clone(), &plain).await;
    let mut confirm = playback;
    confirm["group_confirm_key"] = json!("1");
    confirm["max_concurrency"] = json!(2);
    let second = rig.start_campaign("confirm", confirm, &confirmed).await;
    rig.wait_done(first, 30 * SECOND).await;
    rig.wait_done(second, 30 * SECOND).await;
    let after = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(2);

    let mut numbers = rig.all_numbers(first).await;
    numbers.extend(rig.all_numbers(second).await);
    assert_eq!(numbers.len(), 30);
    let originates = rig.peer.originates();
    for number in &numbers {
        assert_as_captured(number);
        let dialed = number["dest_number"].as_str().unwrap();
        assert_eq!(rig.peer.originate_count(dialed), 1, "{number}");
        let originate = originates
            .iter()
            .find(|o| o.number.as_deref() == Some(dialed))
            .unwrap();
        assert_eq!(originate.var("origination_uuid"), number["uuid"].as_str());
        assert_eq!(originate.legs, [format!("sofia/gateway/sipp/{dialed}")]);
        for field in ["call_start_time", "call_end_time"] {
            let at = common::sipp::time_of(number, field);
            assert!(before <= at && at <= after, "{field} now-ish: {number}");
        }
    }
    assert_eq!(originates.len(), 30);
    assert!(
        rig.peer.max_live_channels() <= 8,
        "6 + 2 channels at most: {}",
        rig.peer.max_live_channels()
    );
    assert_eq!(rig.peer.live_channels(), 0);
}

/// The event socket drops mid-campaign with calls alive and stays down a while: nothing is
/// dialed meanwhile; after the reconnect the calls still alive are followed to their end, those
/// that ended unseen are finished as unknown, no number is dialed twice and every one ends.
#[tokio::test]
async fn a_reconnect_mid_campaign_follows_live_calls_and_dials_nothing_twice() {
    let rig = rig(PeerOptions::default(), &[]).await;
    let parked = numbers_ending('8', 400, 6);
    let quick = numbers_ending('2', 410, 10);
    let all: Vec<String> = parked.iter().chain(&quick).cloned().collect();
    let id = rig
        .start_campaign(
            "reconnect",
            json!({"action": "", "data": "", "dest_context": "context-1", "max_caps": 20, "max_concurrency": 7}),
            &all,
        )
        .await;
    // The six parked calls are up, and the campaign goes on through the seventh slot.
    poll(
        20 * SECOND,
        "six parked calls and a finished one",
        || async {
            let live: usize = parked.iter().map(|n| rig.peer.live_uuids(n).len()).sum();
            let done = rig.done_count(id).await;
            if live == 6 && done >= 1 {
                Ok(())
            } else {
                Err(format!("{live} parked, {done} done"))
            }
        },
    )
    .await;

    rig.peer.stop_listening();
    let alive = rig.peer.drop_connections();
    let parked_uuids: Vec<String> = parked.iter().flat_map(|n| rig.peer.live_uuids(n)).collect();
    assert_eq!(parked_uuids.len(), 6);
    health_until(
        &rig,
        "the back end to say it is disconnected",
        |code, status, _| code == 503 && status != "ok",
    )
    .await;
    let originated = rig.peer.originates().len();
    let claimed = |numbers: Vec<Value>| {
        numbers
            .iter()
            .filter(|n| n["call_status"] != "init")
            .count()
    };
    let claimed_at_drop = claimed(rig.all_numbers(id).await);
    // Three parked calls end while nobody listens: their events are lost.
    let (lost, followed) = parked_uuids.split_at(3);
    for uuid in lost {
        assert!(rig.peer.hang_up(uuid, "NORMAL_CLEARING"));
    }
    // A while without the switch: no number is claimed for a call that cannot be placed.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(claimed(rig.all_numbers(id).await), claimed_at_drop);
    }

    rig.peer.start_listening();
    poll(20 * SECOND, "outcall to log in again", || async {
        match rig.peer.logins() {
            (ok, _) if ok >= 2 => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    // The lost ones are found gone and finished; the followed ones still ring on.
    poll(
        20 * SECOND,
        "the calls lost while away to be finished",
        || async {
            let numbers = rig.all_numbers(id).await;
            let finished = numbers
                .iter()
                .filter(|n| {
                    lost.iter().any(|u| n["uuid"] == u.as_str()) && n["call_status"] == "done"
                })
                .count();
            if finished == 3 {
                Ok(())
            } else {
                Err(format!("{finished} of 3"))
            }
        },
    )
    .await;
    let after_reconnect: Vec<String> = rig
        .peer
        .commands()
        .into_iter()
        .filter(|c| c.connection > 1)
        .map(|c| c.text)
        .collect();
    for uuid in &alive {
        assert!(
            after_reconnect
                .iter()
                .any(|c| c == &format!("api uuid_exists {uuid}")
                    || c.starts_with("api show channels")),
            "{uuid}, alive at the drop, is looked up after the reconnect: {after_reconnect:?}"
        );
    }
    for uuid in followed {
        assert!(rig.peer.hang_up(uuid, "NORMAL_UNSPECIFIED"));
    }
    rig.wait_done(id, 30 * SECOND).await;
    assert!(rig.peer.originates().len() > originated, "dialing resumed");

    let numbers = rig.all_numbers(id).await;
    assert_eq!(numbers.len(), all.len());
    for number in &numbers {
        let dialed = number["dest_number"].as_str().unwrap();
        // Once at most: an originate cut off by the drop may never have reached the switch.
        let dialed_times = rig.peer.originate_count(dialed);
        assert!(dialed_times <= 1, "dialed {dialed_times} times: {number}");
        assert_eq!(number["call_status"], "done", "{number}");
        let uuid = number["uuid"].as_str().unwrap();
        let cause = number["cause"].as_str().unwrap();
        if dialed_times == 0 {
            assert!(!cause.is_empty(), "{number}");
        } else if followed.iter().any(|u| u == uuid) {
            assert_eq!(
                cause, "NORMAL_UNSPECIFIED",
                "followed by its events: {number}"
            );
        } else if lost.iter().any(|u| u == uuid) {
            assert!(
                !cause.is_empty() && cause != "NORMAL_CLEARING",
                "its end was never seen, so it cannot be known: {number}"
            );
        } else if !alive.iter().any(|u| u == uuid) {
            assert_as_captured(number);
        }
    }
}

/// A wrong password: named on `/healthz`, nothing dialed while it lasts; once the switch takes
/// outcall's password, the waiting task is dialed.
#[tokio::test]
async fn an_authentication_failure_is_named_and_dials_nothing_until_the_password_works() {
    let peer = EslPeer::start_with(PeerOptions {
        password: "not-ClueCon".into(),
        ..Default::default()
    })
    .await;
    let rig = rig_with(peer, &[]).await;
    let body = health_until(
        &rig,
        "/healthz to name the failed login",
        |code, status, detail| {
            code == 503 && status != "ok" && detail.to_lowercase().contains("auth")
        },
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("auth"),
        "{body}"
    );

    let numbers = numbers_ending('2', 500, 2);
    let id = rig.create_task("waits for the switch").await;
    rig.update_task(id, json!({"dest_context": "context-1"}))
        .await;
    rig.import(id, &numbers).await;
    let started = rig.start_stop("start", &[id]).await;
    let (_, failed) = rig.peer.logins();
    poll(20 * SECOND, "outcall to try its password again", || async {
        match rig.peer.logins() {
            (0, now) if now > failed => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    assert!(rig.peer.originates().is_empty());
    for number in rig.all_numbers(id).await {
        assert_eq!(number["call_status"], "init", "{number}");
    }

    rig.peer.set_password("ClueCon");
    health_until(&rig, "/healthz to be ok", |code, status, _| {
        code == 200 && status == "ok"
    })
    .await;
    if !started.status.is_success() {
        success_data(&rig.start_stop("start", &[id]).await);
    }
    rig.wait_done(id, 20 * SECOND).await;
    for number in rig.all_numbers(id).await {
        assert_as_captured(&number);
    }
}

/// `text/rude-rejection` (the switch's ACL refuses us) is named on `/healthz`; once it lets us
/// in, the back end is ready.
#[tokio::test]
async fn a_rude_rejection_is_named_on_healthz() {
    let peer = EslPeer::start().await;
    peer.set_rude(true);
    let rig = rig_with(peer, &[]).await;
    health_until(
        &rig,
        "/healthz to name the rejection",
        |code, status, detail| {
            code == 503 && status != "ok" && detail.to_lowercase().contains("reject")
        },
    )
    .await;
    assert_eq!(rig.peer.logins(), (0, 0));
    rig.peer.set_rude(false);
    health_until(&rig, "/healthz to be ok", |code, status, _| {
        code == 200 && status == "ok"
    })
    .await;
    assert_eq!(rig.peer.logins().0, 1);
}

/// The switch's own `sessions-per-second` (from `api status`) is on `/healthz` when it is lower
/// than `--max-caps`, and not when it is higher.
#[tokio::test]
async fn the_switchs_sessions_per_second_is_reported_when_below_max_caps() {
    let options = PeerOptions {
        sessions_per_second: 37,
        ..Default::default()
    };
    let reports = |backend: &Value| {
        backend["switch_max_sps"] == 37
            || backend["detail"]
                .as_str()
                .is_some_and(|d| d.contains("sessions-per-second") && d.contains("37"))
    };
    let low = rig(options.clone(), &["--max-caps", "100"]).await;
    let body = health_until(&low, "/healthz to be ok", |code, status, _| {
        code == 200 && status == "ok"
    })
    .await;
    assert!(reports(&body["backend"]), "{body}");
    assert!(low.peer.commands().iter().any(|c| c.text == "api status"));

    let high = rig(options, &["--max-caps", "20"]).await;
    let body = health_until(&high, "/healthz to be ok", |code, status, _| {
        code == 200 && status == "ok"
    })
    .await;
    assert!(!reports(&body["backend"]), "{body}");
}

/// SIGTERM with calls alive: after `--shutdown-grace` outcall hangs them up through the switch
/// (`uuid_kill … SYSTEM_SHUTDOWN`), the switch ends them, and outcall exits having stored it.
#[tokio::test]
async fn sigterm_hangs_up_live_calls_through_the_switch() {
    let mut rig = rig(PeerOptions::default(), &["--shutdown-grace", "1"]).await;
    let parked = numbers_ending('8', 600, 3);
    let id = rig
        .start_campaign(
            "shutdown",
            json!({"action": "", "data": "", "dest_context": "context-1",
                   "max_caps": 10, "max_concurrency": 5}),
            &parked,
        )
        .await;
    let uuids = poll(20 * SECOND, "three parked calls", || async {
        let uuids: Vec<String> = parked.iter().flat_map(|n| rig.peer.live_uuids(n)).collect();
        if uuids.len() == 3 {
            Ok(uuids)
        } else {
            Err(format!("{uuids:?}"))
        }
    })
    .await;
    rig.server.terminate();
    let status = rig.server.exit_status().await;
    assert!(status.success(), "{status}");
    let commands: Vec<String> = rig.peer.commands().into_iter().map(|c| c.text).collect();
    for uuid in &uuids {
        assert!(
            commands.contains(&format!("api uuid_kill {uuid} SYSTEM_SHUTDOWN")),
            "{uuid} hung up: {commands:?}"
        );
    }
    assert_eq!(rig.peer.live_channels(), 0);
    let rows = common::db::numbers(&common::process::database(rig.dir.path()), id);
    for number in &parked {
        assert_eq!(
            rows[number].call_status, "done",
            "{number}: {:?}",
            rows[number]
        );
        assert_eq!(
            rows[number].cause, "SYSTEM_SHUTDOWN",
            "{number}: {:?}",
            rows[number]
        );
        assert_eq!(rig.peer.originate_count(number), 1);
    }
}
