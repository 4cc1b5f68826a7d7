//! The SIP back end end to end, trunks: 401 and 407 digest challenges, REGISTER, transfer by
//! REFER, requests inside a dialog, a TCP trunk, and the trunk a task's `dest_context` picks, all
//! against sipp on 127.0.0.1 (`tests/sipp/`).
//!
//! Every test checks two independent records of the same calls: the numbers' results as the REST
//! API stores them (call_status, cause, sip_code, dtmf, times, record_path), and sipp's own verdict
//! (its exit code: 0 when every call followed the scenario; its message trace and statistics).
//! The sipp harness and the SIP app are in `tests/common/sipp.rs`; every wait is bounded, and on
//! a failure the test prints sipp's message and error logs.

mod common;

use std::time::Duration;

use common::sipp::{spawn_sip_app, Expected, SipOptions, Sipp};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Trunks
// ---------------------------------------------------------------------------------------------

/// The trunk challenges the INVITE with a 401; we answer with digest credentials that sipp
/// verifies, the call is answered, and (no action) we hang up at once.
#[tokio::test]
async fn digest_challenge() {
    let mut sipp = Sipp::start("digest_challenge.xml", 1);
    let mut options = SipOptions::new(sipp.trunk(), 6);
    options.credentials = Some(("outcall", "secret"));
    let outcall = spawn_sip_app(options).await;
    let id = outcall
        .start_task("digest", json!({"calling_time": 10}), &["1007".to_owned()])
        .await;
    outcall
        .finish_one(
            id,
            Duration::from_secs(10),
            &mut sipp,
            &Expected::NORMAL_CLEARING,
        )
        .await;
    let invites = sipp
        .message_log()
        .into_iter()
        .filter(|m| m.received && m.is_request("INVITE"))
        .count();
    assert_eq!(invites, 2, "the INVITE, then again with credentials");
    assert!(
        sipp.messages().contains("Authorization: Digest"),
        "the second INVITE carries Authorization\n{}",
        sipp.report()
    );
}

/// A 407 from a proxy is answered with Proxy-Authorization (sipp checks the header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_digest_challenge() {
    let mut sipp = Sipp::start("proxy_challenge.xml", 1);
    let mut options = SipOptions::new(sipp.trunk(), 26);
    options.credentials = Some(("outcall", "secret"));
    let outcall = spawn_sip_app(options).await;
    let id = outcall
        .start_task("proxy", json!({}), &["8004".to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "USER_BUSY", "{}", numbers[0]);
    sipp.assert_success().await;
}

/// With --sip-register, outcall registers with the trunk, answering its digest challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_digest_credentials() {
    let mut sipp = Sipp::start("registrar.xml", 1);
    let mut options = SipOptions::new(sipp.trunk(), 22);
    options.register = true;
    options.credentials = Some(("outcall", "secret"));
    let _outcall = spawn_sip_app(options).await;
    sipp.assert_success().await;
}

/// `transfer` sends a REFER to `data` on the task's trunk and ends when the callee reports the
/// transfer done (NOTIFY with a sipfrag 200): then we hang up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_by_refer() {
    let mut sipp = Sipp::start("transfer.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 23)).await;
    let id = outcall
        .start_task(
            "transfer",
            json!({"action": "transfer", "data": "8001"}),
            &["5000".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "NORMAL_CLEARING", "{}", numbers[0]);
    assert_eq!(numbers[0]["sip_code"], "200", "{}", numbers[0]);
    sipp.assert_success().await;
    let refer = sipp.messages();
    assert!(refer.contains("REFER sip:"), "no REFER sent:\n{refer}");
    assert!(
        refer.contains("sip:8001@"),
        "the REFER does not name extension 8001:\n{refer}"
    );
}

/// The callee's OPTIONS and re-INVITE inside the call are answered 200 (the re-INVITE with our
/// SDP), and the call goes on until the callee hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dialog_options_and_reinvite_are_answered() {
    let mut sipp = Sipp::start("in_dialog_requests.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 24)).await;
    let prompt = outcall.prompt("in-dialog.wav", 5000);
    let id = outcall
        .start_task(
            "in dialog",
            json!({"action": "playback", "data": prompt}),
            &["6000".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "NORMAL_CLEARING", "{}", numbers[0]);
    sipp.assert_success().await;
}

/// A trunk reached over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_trunk() {
    let mut sipp = Sipp::start_on("busy.xml", 1, true);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 25)).await;
    let id = outcall
        .start_task("tcp", json!({}), &["7004".to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "USER_BUSY", "{}", numbers[0]);
    assert_eq!(numbers[0]["sip_code"], "486", "{}", numbers[0]);
    sipp.assert_success().await;
}

/// A task's `dest_context` picks the trunk configured under that name; other tasks use the
/// default trunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dest_context_picks_the_trunk() {
    let mut default_trunk = Sipp::start("busy.xml", 1);
    let mut named_trunk = Sipp::start("busy.xml", 1);
    let mut options = SipOptions::new(default_trunk.trunk(), 27);
    options
        .other_trunks
        .push(format!("pstn={}", named_trunk.trunk()));
    let outcall = spawn_sip_app(options).await;
    let via_named = outcall
        .start_task(
            "named",
            json!({"dest_context": "pstn"}),
            &["9104".to_owned()],
        )
        .await;
    outcall
        .finished_numbers(via_named, Duration::from_secs(10), &named_trunk)
        .await;
    named_trunk.assert_success().await;
    assert!(
        !default_trunk.messages().contains("INVITE sip:9104"),
        "the default trunk got the named trunk's call"
    );
    let via_default = outcall
        .start_task(
            "default",
            json!({"dest_context": "context-1"}),
            &["9204".to_owned()],
        )
        .await;
    outcall
        .finished_numbers(via_default, Duration::from_secs(10), &default_trunk)
        .await;
    default_trunk.assert_success().await;
    assert!(
        default_trunk.messages().contains("INVITE sip:9204@"),
        "{}",
        default_trunk.messages()
    );
}
