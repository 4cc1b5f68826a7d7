//! The SIP back end end to end, robustness: absent and silent trunks, the call time limit,
//! hostile datagrams, floods of forged requests during a campaign, and RTP and keys injected from
//! another port, against sipp on 127.0.0.1 (`tests/sipp/`).
//!
//! Every test checks two independent records of the same calls: the numbers' results as the REST
//! API stores them (call_status, cause, sip_code, dtmf, times, record_path), and sipp's own verdict
//! (its exit code: 0 when every call followed the scenario; its message trace and statistics).
//! The sipp harness and the SIP app are in `tests/common/sipp.rs`; every wait is bounded, and on
//! a failure the test prints sipp's message and error logs.

mod common;

use std::{
    collections::HashSet,
    net::UdpSocket,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    assert_number_shape,
    process::self_rss_kib,
    sipp::{free_udp_port, spawn_sip_app, time_of, Expected, SipOptions, Sipp},
};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Absent and silent trunks, the time limit
// ---------------------------------------------------------------------------------------------

/// Nobody listens at the trunk: the ring timer (calling_time 5), not SIP's 32 s Timer B, ends the
/// attempt with RECOVERY_ON_TIMER_EXPIRE, and the slot is freed so the task ends `done`.
#[tokio::test]
async fn nothing_listening() {
    let port = free_udp_port();
    let outcall = spawn_sip_app(SipOptions::new(format!("127.0.0.1:{port}"), 7)).await;
    let started = Instant::now();
    let id = outcall
        .start_task(
            "nobody there",
            json!({"calling_time": 5, "max_concurrency": 1}),
            &["1008".to_owned()],
        )
        .await;
    let numbers = outcall
        .done_numbers(id, Duration::from_secs(10), String::new)
        .await;
    let elapsed = started.elapsed();
    let number = &numbers[0];
    assert_number_shape(number);
    assert_eq!(number["call_status"], "done", "{number}");
    assert_eq!(number["cause"], "RECOVERY_ON_TIMER_EXPIRE", "{number}");
    assert!(
        number["sip_code"] == "" || number["sip_code"] == "408",
        "no response, or a local 408: {number}"
    );
    assert_eq!(number["call_answer_time"], "", "{number}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed <= Duration::from_secs(8),
        "given up at calling_time (5 s), not at Timer B (32 s): {elapsed:?}"
    );
    let rang =
        (time_of(number, "call_end_time") - time_of(number, "call_start_time")).num_seconds();
    assert!((4..=7).contains(&rang), "{rang} s: {number}");
}

/// A trunk that takes the INVITE and never answers anything: the ring timer ends the attempt with
/// RECOVERY_ON_TIMER_EXPIRE at calling_time, without a CANCEL (RFC 3261 §9.1: no CANCEL before a
/// provisional response), and nothing more is sent for the abandoned call.
#[tokio::test]
async fn silent_trunk() {
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a UDP socket");
    let trunk = peer.local_addr().unwrap();
    let heard: Arc<std::sync::Mutex<Vec<(Instant, String)>>> = Arc::default();
    let listener = {
        let heard = heard.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65536];
            while let Ok((length, _)) = peer.recv_from(&mut buffer).await {
                let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                let start_line = text.lines().next().unwrap_or_default().to_owned();
                heard.lock().unwrap().push((Instant::now(), start_line));
            }
        })
    };
    let outcall = spawn_sip_app(SipOptions::new(trunk.to_string(), 10)).await;
    let started = Instant::now();
    let id = outcall
        .start_task(
            "silent trunk",
            json!({"calling_time": 5}),
            &["1009".to_owned()],
        )
        .await;
    let numbers = outcall
        .done_numbers(id, Duration::from_secs(10), String::new)
        .await;
    let ended = Instant::now();
    let elapsed = ended - started;
    let number = &numbers[0];
    assert_number_shape(number);
    assert_eq!(number["cause"], "RECOVERY_ON_TIMER_EXPIRE", "{number}");
    assert_eq!(number["call_answer_time"], "", "{number}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed <= Duration::from_secs(8),
        "given up at calling_time (5 s), not at Timer B (32 s): {elapsed:?}"
    );
    // Timer A would retransmit the INVITE at 7.5 s and 15.5 s: wait past the first of those.
    tokio::time::sleep(Duration::from_secs(3)).await;
    listener.abort();
    let heard = heard.lock().unwrap().clone();
    let summary: Vec<String> = heard
        .iter()
        .map(|(at, line)| format!("{:.3} s: {line}", (*at - started).as_secs_f64()))
        .collect();
    assert!(
        heard.iter().any(|(_, line)| line.starts_with("INVITE ")),
        "the trunk got the INVITE: {summary:#?}"
    );
    assert!(
        !heard.iter().any(|(_, line)| line.starts_with("CANCEL ")),
        "no CANCEL before a provisional response: {summary:#?}"
    );
    assert!(
        !heard
            .iter()
            .any(|(at, _)| *at > ended + Duration::from_millis(500)),
        "nothing sent for the call after it was given up: {summary:#?}"
    );
}

/// A callee that answers and never hangs up is cut at the configured call limit, and the slot
/// it held is given back (the task finishes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_that_never_hangs_up_is_cut_at_the_time_limit() {
    let mut sipp = Sipp::start("campaign_callee.xml", 1);
    let mut options = SipOptions::new(sipp.trunk(), 20);
    options.max_call_duration = Duration::from_secs(2);
    let outcall = spawn_sip_app(options).await;
    let prompt = outcall.prompt("long.wav", 20_000);
    let id = outcall
        .start_task(
            "endless",
            json!({"action": "playback", "data": prompt}),
            &["3000".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    let number = &numbers[0];
    assert_eq!(number["cause"], "ALLOTTED_TIMEOUT", "{number}");
    let talked = time_of(number, "call_end_time") - time_of(number, "call_answer_time");
    assert!(
        talked.num_seconds() >= 1 && talked.num_seconds() <= 4,
        "talked {talked}: {number}"
    );
    sipp.assert_success().await;
}

// ---------------------------------------------------------------------------------------------
// Hostile datagrams and floods
// ---------------------------------------------------------------------------------------------

/// A request from `from` outside any of our calls; `to_tag` makes it look in-dialog.
fn forged_request(
    method: &str,
    call_id: &str,
    to_tag: Option<&str>,
    from: std::net::SocketAddr,
    target: std::net::SocketAddr,
) -> String {
    let to_tag = to_tag.map(|tag| format!(";tag={tag}")).unwrap_or_default();
    format!(
        "{method} sip:outcall@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\n\
         From: <sip:flood@{from}>;tag=f1\r\n\
         To: <sip:outcall@{target}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:flood@{from}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Garbage, malformed SIP and requests for calls that do not exist get sensible answers or are
/// dropped, and calls go on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_do_not_wedge_the_user_agent() {
    let mut sipp = Sipp::start("busy.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 21)).await;
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let attacker_address = attacker.local_addr().unwrap();
    let target = outcall.sip_address;
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n".to_vec(),
        vec![0xff; 1500],
        vec![b'A'; 60_000],
        b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\nCSeq: banana\r\n\r\n".to_vec(),
        format!(
            "OPTIONS sip:outcall@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {attacker_address};branch=z9hG4bKbad\r\n\
             Content-Length: 99999\r\n\r\nshort"
        )
        .into_bytes(),
    ];
    for seed in 0..200u32 {
        garbage.push(
            (0..(seed % 300))
                .map(|i| (i.wrapping_mul(2654435761u32.wrapping_add(seed)) >> 13) as u8)
                .collect(),
        );
    }
    for datagram in &garbage {
        let _ = attacker.send_to(datagram, target);
    }
    // Well-formed requests outside any call: OPTIONS is answered, an INVITE declined (we take
    // no calls), a BYE for an unknown call refused.
    for (method, expected) in [("OPTIONS", "200"), ("INVITE", "603"), ("BYE", "481")] {
        let request = format!(
            "{method} sip:outcall@{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {attacker_address};branch=z9hG4bK{method}1\r\n\
             From: <sip:attacker@{attacker_address}>;tag=a1\r\n\
             To: <sip:outcall@{target}>\r\n\
             Call-ID: hostile-{method}@test\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:attacker@{attacker_address}>\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        // The flood may have filled the user agent's socket buffer, and UDP drops what does not
        // fit: like any SIP client, send the request again until it is answered.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = 'answered: loop {
            assert!(Instant::now() < deadline, "no final answer to {method}");
            attacker.send_to(request.as_bytes(), target).unwrap();
            let mut buffer = [0u8; 4096];
            while let Ok((length, _)) = attacker.recv_from(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..length]).to_string();
                let status = text
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                // Skip provisional answers (100 Trying) and answers to the flood.
                if !status.starts_with('1') && text.contains(&format!("hostile-{method}@test")) {
                    break 'answered status;
                }
            }
        };
        assert_eq!(status, expected, "{method}");
    }
    // A forged in-dialog BYE (a To tag, a Call-ID that is none of ours) is refused at once: it
    // does not wait for a dialog that might still be registered, as one of our calls' would.
    let forged = forged_request(
        "BYE",
        "forged-in-dialog@test",
        Some("t9"),
        attacker_address,
        target,
    );
    let sent_at = Instant::now();
    attacker.send_to(forged.as_bytes(), target).unwrap();
    let mut buffer = [0u8; 4096];
    let answer = loop {
        let (length, _) = attacker
            .recv_from(&mut buffer)
            .expect("an answer to the forged BYE");
        let text = String::from_utf8_lossy(&buffer[..length]).to_string();
        if text.contains("forged-in-dialog@test") {
            break text;
        }
    };
    let waited = sent_at.elapsed();
    assert!(answer.starts_with("SIP/2.0 481"), "{answer}");
    assert!(
        waited < Duration::from_millis(400),
        "the forged BYE was answered after {waited:?}"
    );
    let id = outcall
        .start_task("after the storm", json!({}), &["4000".to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "USER_BUSY", "{}", numbers[0]);
    sipp.assert_success().await;
}

/// An INVITE flood and a flood of forged in-dialog BYEs (5,000 requests a second for 5 s) while
/// a campaign runs: the campaign keeps its pace and its calls all succeed, the trunk's OPTIONS
/// pings are answered promptly throughout (with a User-Agent that carries no version), the
/// flood's requests are mostly dropped unanswered (each source has a small budget), and memory
/// does not grow with the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_forged_requests_leave_calls_and_pings_alone() {
    const CALLS: usize = 10;
    const FLOOD: Duration = Duration::from_secs(5);
    const FLOOD_RATE: u32 = 5000;
    let mut sipp = Sipp::start("campaign_callee.xml", CALLS as u32);
    // The pinger is a configured trunk, as a PBX sending keep-alives would be.
    let pinger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pinger_address = pinger.local_addr().unwrap();
    let mut options = SipOptions::new(sipp.trunk(), 28);
    options.other_trunks = vec![format!("keepalive={pinger_address}")];
    let outcall = spawn_sip_app(options).await;
    let target = outcall.sip_address;
    let prompt = outcall.prompt("flood.wav", 300);
    let baseline = self_rss_kib();

    // The flood, paced, from one socket; a second thread counts what it gets back.
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let flooder_address = flooder.local_addr().unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let listener = flooder.try_clone().unwrap();
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let answers = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let mut answered = HashSet::new();
            let mut buffer = [0u8; 4096];
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((length, _)) = listener.recv_from(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..length]).to_string();
                    let final_answer =
                        text.starts_with("SIP/2.0 ") && !text.starts_with("SIP/2.0 1");
                    let call_id = text
                        .lines()
                        .find_map(|line| line.strip_prefix("Call-ID: "))
                        .map(str::to_owned);
                    if let (true, Some(call_id)) = (final_answer, call_id) {
                        answered.insert(call_id);
                    }
                }
            }
            answered.len()
        })
    };
    let sender = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0u32;
        while started.elapsed() < FLOOD {
            // Paced: datagram n leaves at n / FLOOD_RATE seconds.
            let due = Duration::from_secs_f64(sent as f64 / FLOOD_RATE as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let call_id = format!("flood-{sent}");
            let request = if sent.is_multiple_of(2) {
                forged_request("INVITE", &call_id, None, flooder_address, target)
            } else {
                forged_request("BYE", &call_id, Some("t1"), flooder_address, target)
            };
            let _ = flooder.send_to(request.as_bytes(), target);
            sent += 1;
        }
        sent
    });

    let numbers: Vec<String> = (0..CALLS).map(|i| format!("5{i:03}")).collect();
    let id = outcall
        .start_task(
            "under the flood",
            json!({"max_caps": 2, "max_concurrency": 4, "calling_time": 10,
                   "action": "playback", "data": prompt}),
            &numbers,
        )
        .await;

    // Pings every 200 ms during the flood, each resent every 500 ms until answered.
    pinger
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut slowest = Duration::ZERO;
    let mut peak_rss = baseline;
    let mut pings = 0;
    let flood_started = Instant::now();
    while flood_started.elapsed() < FLOOD {
        let call_id = format!("ping-{pings}");
        let ping = forged_request("OPTIONS", &call_id, None, pinger_address, target);
        let sent_at = Instant::now();
        let answer = 'answered: loop {
            assert!(
                sent_at.elapsed() < Duration::from_secs(3),
                "OPTIONS {pings} unanswered for 3 s during the flood"
            );
            pinger.send_to(ping.as_bytes(), target).unwrap();
            let mut buffer = [0u8; 4096];
            while let Ok((length, _)) = pinger.recv_from(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..length]).to_string();
                if text.contains(&call_id) {
                    break 'answered text;
                }
            }
        };
        slowest = slowest.max(sent_at.elapsed());
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
        let user_agent = answer
            .lines()
            .find(|line| {
                let lower = line.to_ascii_lowercase();
                lower.starts_with("user-agent:") || lower.starts_with("server:")
            })
            .unwrap_or_default();
        assert!(
            !user_agent.contains(env!("CARGO_PKG_VERSION")) && !user_agent.contains('/'),
            "no version in {user_agent:?}"
        );
        pings += 1;
        peak_rss = peak_rss.max(self_rss_kib());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent = tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
    assert!(
        sent >= FLOOD_RATE * 4,
        "the flood sent {sent} requests (the machine is too slow to flood)"
    );

    let results = outcall
        .finished_numbers(id, Duration::from_secs(20), &sipp)
        .await;
    peak_rss = peak_rss.max(self_rss_kib());
    sipp.assert_success().await;
    for number in &results {
        assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    }
    // The campaign kept its pace: 2 a second, 10 INVITEs over ~4.5 s, never a burst.
    let mut invited = HashSet::new();
    let invites: Vec<f64> = sipp
        .message_log()
        .iter()
        .filter(|m| m.received && m.is_request("INVITE") && invited.insert(m.call_id.clone()))
        .map(|m| m.at)
        .collect();
    assert_eq!(invites.len(), CALLS);
    let span = invites[CALLS - 1] - invites[0];
    assert!(
        (4.0..6.5).contains(&span),
        "10 INVITEs at 2 a second span {span} s"
    );
    for (i, &at) in invites.iter().enumerate() {
        let in_window = invites[i..].iter().take_while(|&&t| t < at + 0.9).count();
        assert!(in_window <= 3, "{in_window} INVITEs within 0.9 s of {at}");
    }

    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let answered = tokio::task::spawn_blocking(move || answers.join().unwrap())
        .await
        .unwrap();
    // One source's budget: a burst of 40 and 20 a second, whatever it sends.
    assert!(
        answered <= 40 + 20 * (FLOOD.as_secs() as usize + 2),
        "{answered} of {sent} forged requests were answered"
    );
    let grown_mib = peak_rss.saturating_sub(baseline) / 1024;
    eprintln!(
        "flood: {sent} sent, {answered} answered; {pings} pings, slowest {slowest:?}; RSS +{grown_mib} MiB"
    );
    assert!(slowest < Duration::from_secs(2), "slowest ping {slowest:?}");
    assert!(
        grown_mib < 48,
        "memory grew by {grown_mib} MiB during the flood"
    );
}

// ---------------------------------------------------------------------------------------------
// RTP injection
// ---------------------------------------------------------------------------------------------

/// A stranger on the callee's host who learns our RTP port (here from the INVITE's SDP, as an
/// eavesdropper would) and sends first, from another port: one PCMU packet, to take over where
/// our prompt goes, and RFC 4733 presses of the confirm key. The callee (sipp) answers offering
/// telephone-events and sends nothing. Neither the audio nor the keys are taken: the call ends
/// for want of a key, and the stranger hears none of our prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_rtp_and_keys_from_another_port_are_ignored() {
    use outcall::telephony::sip::media::{RtpPacket, TelephoneEvent};

    let mut sipp = Sipp::start("silent_callee.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 29)).await;
    let prompt = outcall.prompt("confirm.wav", 2000);
    let id = outcall
        .start_task(
            "injected",
            json!({"group_confirm_key": "1", "group_confirm_read_timeout": 3,
                   "group_confirm_file": prompt, "calling_time": 10}),
            &["6000".to_owned()],
        )
        .await;

    // Our RTP address, from the INVITE's SDP in sipp's trace.
    let rtp_port: u16 = common::poll(Duration::from_secs(5), "the INVITE's SDP", || {
        let messages = sipp.messages();
        async move {
            messages
                .lines()
                .find_map(|line| line.trim().strip_prefix("m=audio "))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .ok_or(messages)
        }
    })
    .await;
    let our_rtp = std::net::SocketAddr::from(([127, 0, 0, 1], rtp_port));
    let injector = UdpSocket::bind("127.0.0.1:0").unwrap();
    injector
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut heard = 0;
    let mut buffer = [0u8; 2048];
    let mut sequence = 1u16;
    // Every 100 ms for 2.5 s (the call is answered within it): audio, then a whole key press
    // with a new timestamp each time.
    for round in 0..25u32 {
        let timestamp = 10_000 + round * 1600;
        let audio = RtpPacket::new(0, sequence, timestamp, 0xBAD, &[0xFF; 160])
            .to_bytes()
            .unwrap();
        injector.send_to(&audio, our_rtp).unwrap();
        sequence = sequence.wrapping_add(1);
        for (step, end) in [(1, false), (2, false), (5, true), (5, true), (5, true)] {
            let event = TelephoneEvent {
                event: 1,
                end,
                volume: 10,
                duration: 160 * step,
            };
            let packet = RtpPacket::new(101, sequence, timestamp, 0xBAD, &event.to_bytes())
                .to_bytes()
                .unwrap();
            injector.send_to(&packet, our_rtp).unwrap();
            sequence = sequence.wrapping_add(1);
        }
        let round_end = Instant::now() + Duration::from_millis(100);
        while Instant::now() < round_end {
            if injector.recv_from(&mut buffer).is_ok() {
                heard += 1;
            }
        }
    }

    outcall
        .finish_one(
            id,
            Duration::from_secs(12),
            &mut sipp,
            &Expected {
                cause: "NO_USER_RESPONSE",
                sip_code: "200",
                dtmf: "",
                answered: true,
            },
        )
        .await;
    assert_eq!(heard, 0, "the injector received {heard} of our RTP packets");
}
