//! SIP flood benchmark: outcall's SIP back end in-process on 127.0.0.1, flooded with forged
//! requests as fast as two threads can send them, half the run from one source (INVITEs and
//! in-dialog BYEs for calls that do not exist), half from 1,000 source addresses (127.0.x.y) to
//! defeat a per-source budget. Meanwhile a trunk (a socket configured as one) pings with OPTIONS
//! every 100 ms, each resent every 500 ms until answered.
//!
//! Prints the datagrams sent and how many got an answer, the pings answered and the slowest,
//! the CPU seconds this process (outcall) used, and RSS before, at its peak and after.
//!
//! Run: `cargo bench --bench sip_flood` (20 s; OUTCALL_BENCH_SECONDS to change).

mod support;

use support::{bench_seconds, cpu_seconds, peak_rss_mib, rss_mib};

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use outcall::{
    config::Config,
    telephony::sip::{config::Trunk, SipBackend},
};

fn request(method: &str, call_id: &str, to_tag: bool, from: SocketAddr, to: SocketAddr) -> String {
    let tag = if to_tag { ";tag=t1" } else { "" };
    format!(
        "{method} sip:outcall@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\n\
         From: <sip:flood@{from}>;tag=f1\r\nTo: <sip:outcall@{to}>{tag}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\nContact: <sip:flood@{from}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends forged requests from `sockets` in turn until `stop`; counts what is sent and answered.
fn flood(
    sockets: Vec<UdpSocket>,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    thread: u32,
) {
    let mut buffer = [0u8; 2048];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let socket = &sockets[n as usize % sockets.len()];
        let from = socket.local_addr().unwrap();
        let call_id = format!("flood-{thread}-{n}");
        let text = if n.is_multiple_of(2) {
            request("INVITE", &call_id, false, from, target)
        } else {
            request("BYE", &call_id, true, from, target)
        };
        if socket.send_to(text.as_bytes(), target).is_ok() {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
        if n.is_multiple_of(64) {
            for socket in &sockets {
                while let Ok((length, _)) = socket.recv_from(&mut buffer) {
                    if !buffer[..length].starts_with(b"SIP/2.0 1") {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn sockets_from(addresses: impl Iterator<Item = [u8; 4]>) -> Vec<UdpSocket> {
    addresses
        .filter_map(|ip| UdpSocket::bind(SocketAddr::from((ip, 0))).ok())
        .inspect(|socket| socket.set_nonblocking(true).unwrap())
        .collect()
}

#[tokio::main]
async fn main() {
    let seconds = bench_seconds(20);
    let work = tempfile::tempdir().unwrap();
    let pinger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pinger_address = pinger.local_addr().unwrap();
    let unused = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = Config::for_data_dir(work.path()).sip;
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.trunks = vec![
        Trunk::parse(&unused.local_addr().unwrap().to_string()).unwrap(),
        Trunk::parse(&format!("keepalive={pinger_address}")).unwrap(),
    ];
    config.rtp_ports = (50000, 50999);
    let backend = SipBackend::start(config, work.path()).await.unwrap();
    let target = backend.local_address();

    let rss_before = rss_mib();
    let cpu_before = cpu_seconds();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let half = Duration::from_secs(seconds) / 2;

    let pings = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pinger
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let (mut latencies, mut count) = (Vec::new(), 0u32);
            let mut buffer = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let call_id = format!("ping-{count}");
                let ping = request("OPTIONS", &call_id, false, pinger_address, target);
                let sent_at = Instant::now();
                'answer: while sent_at.elapsed() < Duration::from_secs(5) {
                    pinger.send_to(ping.as_bytes(), target).unwrap();
                    while let Ok((length, _)) = pinger.recv_from(&mut buffer) {
                        if String::from_utf8_lossy(&buffer[..length]).contains(&call_id) {
                            latencies.push(sent_at.elapsed());
                            break 'answer;
                        }
                    }
                }
                count += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            latencies.sort();
            (count, latencies)
        })
    };

    let mut peak_rss = rss_before;
    for (phase, sources) in [("one source", 1usize), ("1,000 sources", 1000)] {
        let phase_stop = Arc::new(AtomicBool::new(false));
        let phase_sent = sent.load(Ordering::Relaxed);
        let phase_answered = answered.load(Ordering::Relaxed);
        let threads: Vec<_> = (0..2u32)
            .map(|thread| {
                let addresses = (0..sources as u32 / 2 + 1).map(move |n| {
                    if sources == 1 {
                        [127, 0, 0, 1]
                    } else {
                        let n = n * 2 + thread + 1;
                        [127, 1, (n >> 8) as u8, n as u8]
                    }
                });
                let sockets = sockets_from(addresses.take(sources.div_ceil(2)));
                let (stop, sent, answered) = (phase_stop.clone(), sent.clone(), answered.clone());
                std::thread::spawn(move || flood(sockets, target, stop, sent, answered, thread))
            })
            .collect();
        let started = Instant::now();
        while started.elapsed() < half {
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak_rss = peak_rss.max(rss_mib());
        }
        phase_stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
        println!(
            "{phase}: {} forged requests sent in {:.1} s, {} answered",
            sent.load(Ordering::Relaxed) - phase_sent,
            started.elapsed().as_secs_f64(),
            answered.load(Ordering::Relaxed) - phase_answered,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (count, latencies) = pings.join().unwrap();
    let at = |fraction: f64| {
        latencies
            .get(
                ((latencies.len() as f64 * fraction) as usize)
                    .min(latencies.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or_default()
    };
    let cpu = cpu_seconds() - cpu_before;
    // The stack forgets finished transactions after 32 s; RSS once it has.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_mib();
    println!(
        "trunk OPTIONS pings: {} of {count} answered; answer time median {:?}, 90th percentile {:?}, slowest {:?}",
        latencies.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    println!(
        "CPU of this process (outcall and the flooders): {cpu:.2} s in {seconds} s; \
         RSS {rss_before:.1} MiB before, peak {peak_rss:.1} MiB (VmHWM {:.1} MiB), {rss_after:.1} MiB after",
        peak_rss_mib()
    );
    drop(backend);
}
