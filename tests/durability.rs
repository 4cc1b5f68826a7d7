//! Durability and robustness with the real binary: one instance per data directory, private data
//! files, integrity check and online backup, a database stall that loses no result, slow HTTP
//! clients under a 1,024 descriptor limit, and repeated SIGKILLs in a campaign.

mod common;

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{
    db::{self, Placed},
    poll,
    process::{self, data_dir, database, Outcall},
    sim_cause,
    sipp::Sipp,
    Api,
};
use outcall::db::rusqlite::Connection;
use rand::Rng;
use serde_json::json;

const MEDIA: &str = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;

/// The sim's call log by number, asserting that no number was placed twice.
fn placed_by_number(dir: &Path) -> HashMap<String, Placed> {
    db::placed_by_number(&db::read_call_log(&process::call_log(dir)))
}

/// A playback task with `numbers` at `caps` and `concurrency`, started; answers its id.
async fn start_campaign(client: &Api, numbers: &[String], caps: u32, concurrency: u32) -> i64 {
    client
        .start_campaign(
            "durability",
            json!({"max_caps": caps, "max_concurrency": concurrency, "calling_time": 5,
                   "action": "playback", "data": MEDIA}),
            numbers,
        )
        .await
}

fn numbers(first: u32, count: u32) -> Vec<String> {
    (first..first + count).map(|n| n.to_string()).collect()
}

/// Every number of the task ended with the sim's real cause and was placed exactly once, as its
/// recorded call.
fn assert_every_number_ended_for_real(dir: &Path, task_id: i64, numbers: &[String]) {
    let rows = db::numbers(&database(dir), task_id);
    let placed = placed_by_number(dir);
    assert_eq!(rows.len(), numbers.len());
    for number in numbers {
        let row = &rows[number];
        assert_eq!(row.call_status, "done", "{number}: {row:?}");
        assert_eq!(row.cause, sim_cause(number, 5), "{number}: {row:?}");
        assert_eq!(
            placed.get(number).map(|p| &p.uuid),
            Some(&row.uuid),
            "{number} placed once, as its call"
        );
    }
    assert_eq!(placed.len(), numbers.len(), "one call placed per number");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

// ---------------------------------------------------------------------------------------------
// One instance, private files, a clean first start
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut first = Outcall::in_dir(dir).spawn();
    let client = first.connect().await;

    let mut second = Outcall::in_dir(dir).spawn();
    let status = second.exit_status().await;
    assert!(!status.success(), "the second instance exits: {status}");
    let log = second.log_text();
    let expected = format!(
        "another outcall is already running on the data directory {}",
        data_dir(dir).display()
    );
    assert!(
        log.contains(&expected),
        "the refusal names the directory:\n{log}"
    );

    let (status, _) = client.health().await;
    assert_eq!(status, 200, "the first instance runs on");
    // Once the first is gone (even by SIGKILL), the directory is free again.
    first.kill();
    let mut third = Outcall::in_dir(dir).spawn();
    third.connect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private_and_a_fresh_start_logs_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // A data directory left open by an older outcall: tightened at start.
    let data = data_dir(dir);
    std::fs::create_dir_all(data.join("recordings")).unwrap();
    std::fs::write(data.join("recordings/old.wav"), b"RIFF").unwrap();
    std::fs::set_permissions(
        data.join("recordings/old.wav"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        data.join("recordings"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();

    let launch = Outcall::in_dir(dir).password(None);
    let mut server = launch.spawn();
    // The generated password is in the data directory.
    let password_file = data.join("admin-password.txt");
    let password = poll(Duration::from_secs(20), "the password file", || {
        let text = std::fs::read_to_string(&password_file);
        async move { text.map_err(|e| e.to_string()) }
    })
    .await;
    let client = server.connect_with(password.trim()).await;
    let id = start_campaign(&client, &numbers(1000, 20), 100, 20).await;
    client.wait_done(id, Duration::from_secs(20)).await;

    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("recordings")), 0o700);
    for file in [
        "outcall.db",
        "outcall.db-wal",
        "outcall.db-shm",
        "admin-password.txt",
        "outcall.lock",
        "recordings/old.wav",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }

    let log = server.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "a fresh start logs no error: {errors:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Integrity check and online backup
// ---------------------------------------------------------------------------------------------

fn integrity(path: &Path) -> String {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_dialing_is_a_sound_database() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let launch = Outcall::in_dir(dir).sim_time_scale(0.05);
    let mut server = launch.spawn();
    let client = server.connect().await;
    let all = numbers(2000, 300);
    let id = start_campaign(&client, &all, 50, 20).await;
    poll(Duration::from_secs(20), "some numbers done", || async {
        let done = client.done_count(id).await;
        if done >= 20 {
            Ok(())
        } else {
            Err(format!("{done} done"))
        }
    })
    .await;

    for round in 0..3 {
        let copy = dir.join(format!("backup-{round}.db"));
        let output = process::command()
            .arg("backup")
            .arg("--data-dir")
            .arg(data_dir(dir))
            .arg(&copy)
            .output()
            .expect("outcall backup runs");
        assert!(
            output.status.success(),
            "outcall backup: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("integrity ok"));
        assert_eq!(mode(&copy), 0o600, "the copy is private");
        assert_eq!(integrity(&copy), "ok");
        let conn = Connection::open(&copy).unwrap();
        let (count, done): (i64, i64) = conn
            .query_row(
                "SELECT count(*), count(*) FILTER (WHERE call_status = 'done') FROM numbers WHERE group_id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(count, all.len() as i64, "the copy has every number");
        eprintln!("backup {round}: {done} numbers done in the copy");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let task = client.ok_get(&format!("/api/out_call_tasks/{id}")).await;
    assert_eq!(
        task["status"], "running",
        "dialing went on during the backups"
    );
    client.wait_done(id, Duration::from_secs(60)).await;
    assert_every_number_ended_for_real(dir, id, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_is_refused_with_how_to_restore() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut server = Outcall::in_dir(dir).spawn();
    let client = server.connect().await;
    let id = start_campaign(&client, &numbers(3000, 50), 100, 20).await;
    client.wait_done(id, Duration::from_secs(20)).await;
    server.kill();
    {
        // Everything into the main file, then damage a page in its middle.
        let conn = Connection::open(database(dir)).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(database(dir)).unwrap();
    let pages = bytes.len() / 4096;
    assert!(pages >= 3, "a database of {pages} pages");
    for byte in &mut bytes[4096..(pages - 1) * 4096] {
        *byte = 0xA5;
    }
    std::fs::write(database(dir), &bytes).unwrap();

    let mut refused = Outcall::in_dir(dir).spawn();
    let status = refused.exit_status().await;
    assert!(
        !status.success(),
        "a damaged database stops the start: {status}"
    );
    let log = refused.log_text();
    assert!(
        log.contains("is damaged") && log.contains("outcall backup"),
        "the message says how to restore:\n{log}"
    );
    assert!(log.contains(&database(dir).display().to_string()), "{log}");
}

// ---------------------------------------------------------------------------------------------
// A database stall
// ---------------------------------------------------------------------------------------------

/// The test holds the database's write lock for 70 s in mid-campaign (the audit's stall: long
/// enough that the old five attempts of a result, 10 s of busy wait each, ran out): no result is
/// lost (every number ends with its real cause, none SYSTEM_SHUTDOWN) and the process idles
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stall_loses_no_result_and_burns_no_core() {
    const STALL: Duration = Duration::from_secs(70);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let launch = Outcall::in_dir(dir).sim_time_scale(0.05);
    let mut server = launch.spawn();
    let client = server.connect().await;
    let all = numbers(4000, 120);
    let id = start_campaign(&client, &all, 20, 10).await;
    poll(Duration::from_secs(20), "some numbers done", || async {
        let done = client.done_count(id).await;
        if done >= 10 {
            Ok(())
        } else {
            Err(format!("{done} done"))
        }
    })
    .await;

    let staller = Connection::open(database(dir)).unwrap();
    staller.busy_timeout(Duration::from_secs(10)).unwrap();
    staller.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let cpu_before = server.cpu_time();
    let stalled_at = Instant::now();
    let done_at_stall = db::numbers(&database(dir), id)
        .values()
        .filter(|row| row.call_status == "done")
        .count();
    let (status, health) = client.health().await;
    eprintln!("health during the stall: {status} {health}");
    tokio::time::sleep_until((stalled_at + STALL).into()).await;
    let cpu = server.cpu_time() - cpu_before;
    let wall = stalled_at.elapsed();
    staller.execute_batch("ROLLBACK").unwrap();
    drop(staller);
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "during the {wall:?} stall: {cpu:?} of CPU = {:.1} % of one core; {done_at_stall} done at its start",
        share * 100.0
    );
    assert!(
        share < 0.20,
        "the process idles while the database is stalled: {:.1} %",
        share * 100.0
    );
    assert!(done_at_stall < all.len(), "the stall came in mid-campaign");

    client.wait_done(id, Duration::from_secs(90)).await;
    assert_every_number_ended_for_real(dir, id, &all);
    let log = server.log_text();
    assert!(!log.contains("gave up"), "no result was given up");
}

// ---------------------------------------------------------------------------------------------
// Slow HTTP clients
// ---------------------------------------------------------------------------------------------

/// A login head, then a body trickled a byte a second: what held every descriptor.
fn slow_client(port: u16, stop: &AtomicBool, open: &AtomicUsize) {
    const BODY: &[u8] = br#"{"login":"admin","password":"trickled-password-that-takes-long"}"#;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
        else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let head = format!(
            "POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            BODY.len()
        );
        if stream.write_all(head.as_bytes()).is_err() {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        for byte in BODY {
            if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// 1,100 clients trickling login bodies at a server limited to 1,024 descriptors: /healthz
/// answers, a campaign started meanwhile completes with every call's real cause, and the
/// server's descriptors stay under its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_calls_survive_1100_slow_clients_under_1024_descriptors() {
    const CLIENTS: usize = 1100;
    // The clients need their own descriptors.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    assert!(
        limit.rlim_cur >= 2 * CLIENTS as u64,
        "the test needs {} descriptors, has {}",
        2 * CLIENTS,
        limit.rlim_cur
    );
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let launch = Outcall::in_dir(dir).nofile(1024, 1024);
    let mut server = launch.spawn();
    server.connect().await;

    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, open, port) = (stop.clone(), open.clone(), server.port());
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || slow_client(port, &stop, &open))
                .unwrap()
        })
        .collect();
    poll(
        Duration::from_secs(30),
        "the slow clients connected",
        || {
            let open = open.load(Ordering::Relaxed);
            async move {
                if open >= CLIENTS * 9 / 10 {
                    Ok(())
                } else {
                    Err(format!("{open} open"))
                }
            }
        },
    )
    .await;

    let asked = Instant::now();
    let client = server.connect().await;
    eprintln!(
        "/healthz and a login answered {:?} into the attack, {} slow clients connected, {} descriptors open in the server",
        asked.elapsed(),
        open.load(Ordering::Relaxed),
        server.open_descriptors()
    );
    let all = numbers(5000, 100);
    let id = start_campaign(&client, &all, 50, 20).await;
    let most_descriptors = AtomicUsize::new(0);
    poll(Duration::from_secs(60), "the campaign done", || async {
        most_descriptors.fetch_max(server.open_descriptors(), Ordering::Relaxed);
        let (status, health) = client.health().await;
        assert_eq!(status, 200, "{health}");
        let task = client.ok_get(&format!("/api/out_call_tasks/{id}")).await;
        if task["status"] == "done" {
            Ok(())
        } else {
            Err(format!("{} {}", task["status"], task["done_total"]))
        }
    })
    .await;
    let still_open = open.load(Ordering::Relaxed);
    let most_descriptors = most_descriptors.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    eprintln!("campaign done with {still_open} slow clients connected; at most {most_descriptors} descriptors open");
    assert!(
        still_open >= CLIENTS / 2,
        "the attack went on: {still_open} connected"
    );
    assert!(most_descriptors < 1024, "{most_descriptors} descriptors");
    assert_every_number_ended_for_real(dir, id, &all);
    let log = server.log_text();
    assert!(
        !log.contains("Too many open files"),
        "no descriptor ran out"
    );
    for thread in threads {
        thread.join().unwrap();
    }
}

/// Started with a soft limit of 512 open files under a hard limit of 4,096, outcall raises its
/// soft limit to 4,096 and logs it with the calls it leaves room for; 500 channels fit, so no
/// warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let launch = Outcall::in_dir(dir)
        .nofile(512, 4096)
        .args(["--max-channels", "500"]);
    let mut server = launch.spawn();
    server.connect().await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
    // 4,096 - 128 kept - 1,024 (HTTP's quarter) leaves 2,944 descriptors: 981 calls of 3.
    let log = server.log_text();
    assert!(
        log.contains("open files limit 4096: room for 981 calls at once"),
        "{log}"
    );
    assert!(!log.contains("needs"), "no warning expected: {log}");
}

/// Under a hard limit of 1,024 open files (systemd's default), the default 1,000 channels need
/// more than the limit: outcall starts, and warns with the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_low_an_open_files_limit_for_max_channels_is_warned_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut server = Outcall::in_dir(dir).nofile(1024, 1024).spawn();
    server.connect().await;
    let log = server.log_text();
    let warning = log
        .lines()
        .find(|line| line.contains("WARN") && line.contains("--max-channels 1000 needs"))
        .unwrap_or_else(|| panic!("a warning about the open files limit: {log}"));
    // 128 kept + 3 x 1,000 for the calls + 256 (HTTP's quarter) = 3,384; 213 calls fit.
    assert!(
        warning.contains("needs 3384 open files but the limit is 1024, enough for 213 calls"),
        "{warning}"
    );
}

/// A body trickled slower than the server accepts is cut off with 408, naming the body.
#[tokio::test]
async fn a_trickled_body_is_cut_off_with_408() {
    let app = common::spawn_app().await;
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"login\"")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request body"), "{answer}");
    assert!(took < Duration::from_secs(20), "cut off after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Crashes
// ---------------------------------------------------------------------------------------------

/// 500 numbers, 10 SIGKILLs at random moments: every number is dialed at most once and ends
/// exactly once (its real cause, or SYSTEM_SHUTDOWN when a kill cut its call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_in_a_campaign_dial_no_number_twice() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let launch = Outcall::in_dir(dir).sim_time_scale(0.05);
    let all = numbers(6000, 500);
    let mut rng = rand::thread_rng();
    let mut id = None;
    for kill in 0..10 {
        let mut server = launch.spawn();
        let client = server.connect().await;
        if id.is_none() {
            id = Some(start_campaign(&client, &all, 25, 20).await);
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1500))).await;
        server.kill();
        eprintln!("kill {kill}: {} placed", placed_by_number(dir).len());
    }
    let id = id.unwrap();
    let mut server = launch.spawn();
    let client = server.connect().await;
    client.wait_done(id, Duration::from_secs(60)).await;

    let rows = db::numbers(&database(dir), id);
    let placed = placed_by_number(dir);
    let mut cut = HashSet::new();
    for number in &all {
        let row = &rows[number];
        assert_eq!(row.call_status, "done", "{number}: {row:?}");
        if row.cause == "SYSTEM_SHUTDOWN" {
            cut.insert(number.clone());
            if let Some(line) = placed.get(number) {
                assert_eq!(&line.uuid, &row.uuid, "{number}: the cut call is its call");
            }
        } else {
            assert_eq!(row.cause, sim_cause(number, 5), "{number}: {row:?}");
            assert_eq!(
                placed.get(number).map(|p| &p.uuid),
                Some(&row.uuid),
                "{number} placed once, as its call"
            );
        }
    }
    for number in placed.keys() {
        assert!(rows.contains_key(number), "{number} is one of the task's");
    }
    eprintln!(
        "{} placed, {} cut by the kills (SYSTEM_SHUTDOWN)",
        placed.len(),
        cut.len()
    );
    assert!(
        cut.len() < all.len() / 2,
        "the kills cut {} calls",
        cut.len()
    );
}

/// The Call-IDs of the INVITEs sipp received (retransmissions counted once).
fn invites_received(sipp: &Sipp) -> HashSet<String> {
    sipp.message_log()
        .into_iter()
        .filter(|message| message.received && message.is_request("INVITE"))
        .map(|message| {
            assert!(
                !message.call_id.is_empty(),
                "an INVITE without Call-ID: {message:?}"
            );
            message.call_id
        })
        .collect()
}

/// The same on the sip back end against sipp, with 3 SIGKILLs: every INVITE sipp received is
/// the call of exactly one number (its uuid is the Call-ID), and every number whose call ended
/// for real was dialed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sigkills_on_sip_dial_no_number_twice() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let sipp = Sipp::start_untimed("campaign_callee.xml", 100_000);
    let launch = Outcall::in_dir(dir).args([
        "--backend".into(),
        "sip".into(),
        "--sip-trunk".into(),
        format!("udp:{}", sipp.trunk()),
        "--sip-bind".into(),
        "127.0.0.1:0".into(),
        "--rtp-ports".into(),
        "33000-33199".into(),
    ]);
    let all = numbers(7000, 500);
    let mut rng = rand::thread_rng();
    let mut id = None;
    for kill in 0..3 {
        let mut server = launch.spawn();
        let client = server.connect().await;
        if id.is_none() {
            // No action: each answered call is hung up at once, NORMAL_CLEARING.
            let task = client
                .ok(
                    reqwest::Method::POST,
                    "/api/out_call_tasks",
                    Some(json!({"group_name": "sip crash", "description": "test",
                                "max_caps": 40, "max_concurrency": 20, "calling_time": 10})),
                )
                .await["data"]
                .as_i64()
                .unwrap();
            client.import(task, &all).await;
            client.start(&[task]).await;
            id = Some(task);
        }
        // 500 numbers at 40 CAPS take some 12 s: the kills fall all through the campaign.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1000..3000))).await;
        server.kill();
        eprintln!(
            "kill {kill}: sipp has seen {} INVITEs",
            invites_received(&sipp).len()
        );
    }
    let id = id.unwrap();
    let mut server = launch.spawn();
    let client = server.connect().await;
    client.wait_done(id, Duration::from_secs(60)).await;

    let rows = db::numbers(&database(dir), id);
    let invites = invites_received(&sipp);
    let uuid_to_number: HashMap<&str, &str> = rows
        .iter()
        .map(|(number, row)| (row.uuid.as_str(), number.as_str()))
        .collect();
    for call_id in &invites {
        assert!(
            uuid_to_number.contains_key(call_id.as_str()),
            "sipp got INVITE {call_id}, which is no number's recorded call: a number was dialed twice"
        );
    }
    let mut cut = 0;
    for number in &all {
        let row = &rows[number];
        assert_eq!(row.call_status, "done", "{number}: {row:?}");
        if row.cause == "SYSTEM_SHUTDOWN" {
            cut += 1;
        } else {
            assert_eq!(row.cause, "NORMAL_CLEARING", "{number}: {row:?}");
            assert!(invites.contains(&row.uuid), "{number}'s call reached sipp");
        }
    }
    let dialed = rows
        .values()
        .filter(|row| invites.contains(&row.uuid))
        .count();
    eprintln!(
        "{} INVITEs, {dialed} numbers dialed, {cut} cut by the kills",
        invites.len()
    );
    assert_eq!(
        invites.len(),
        dialed,
        "sipp's INVITE count is the numbers dialed"
    );
    assert!(dialed >= all.len() - cut, "every number not cut was dialed");
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// A sim whose trunk is down, as a back end reports it.
struct DownBackend(outcall::telephony::sim::SimBackend);

impl outcall::telephony::Telephony for DownBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn health(&self) -> outcall::telephony::BackendHealth {
        outcall::telephony::BackendHealth {
            healthy: false,
            detail: "the trunk does not answer".into(),
            switch_max_sps: None,
        }
    }

    fn place_call(
        &self,
        request: outcall::telephony::CallRequest,
    ) -> outcall::telephony::CallHandle {
        self.0.place_call(request)
    }
}

/// /healthz reports the dialer's last pass and the back end's state besides the database, and
/// answers 503 naming what is wrong when the back end says it cannot place calls.
#[tokio::test]
async fn healthz_reports_the_dialer_and_the_back_end() {
    let app = common::spawn_app().await;
    let reply = app.get("/healthz").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(body["status"], "ok");
    assert!(body["schema_version"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(body["dialer"]["status"], "ok", "{body}");
    let since = body["dialer"]["last_pass_seconds_ago"].as_f64().unwrap();
    assert!((0.0..5.0).contains(&since), "{body}");
    assert_eq!(body["backend"]["name"], "sim");
    assert_eq!(body["backend"]["status"], "ok");

    let down = Arc::new(DownBackend(outcall::telephony::sim::SimBackend::new(0.01)));
    let app = common::spawn_app_with_backend(down, |_| {}).await;
    let reply = app.get("/healthz").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(body["code"], 503);
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["backend"]["status"], "unhealthy");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("back end") && message.contains("the trunk does not answer"),
        "{message}"
    );
    assert_eq!(body["dialer"]["status"], "ok", "{body}");
}
