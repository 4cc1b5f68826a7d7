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
        let uuid = uuid::Uuid::new_v4().to_string();
        let job = uuid::Uuid::new_v4().to_string();
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
            assert_eq!(
                complete.get("variable_sip_term_status").map(str::to_owned),
                expected.sip_code
            );
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
