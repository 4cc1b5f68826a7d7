//! A real FreeSWITCH for the live suite (`tests/freeswitch_live.rs`) and the `freeswitch` bench.
//!
//! `LiveSwitch::get` answers, in this order:
//! - the FreeSWITCH `OUTCALL_TEST_FREESWITCH=host:port:password` points at (already running,
//!   with the team's configuration: gateway `sipp` → 127.0.0.1:`OUTCALL_TEST_FREESWITCH_SIPP_PORT`,
//!   default 5099, dialplan context `context-1`); it is never stopped;
//! - else, when `/opt/freeswitch/bin/freeswitch` exists (or under
//!   `OUTCALL_TEST_FREESWITCH_PREFIX`), an instance of our own, started on
//!   `tests/freeswitch/conf/` in a temporary run directory, on free loopback ports (event
//!   socket, SIP profile, the `sipp` gateway's target, RTP 17000–18999), so that it meets no
//!   other FreeSWITCH (e.g. the shared one of `../shared/freeswitch/start.sh`). It is ready when
//!   the event socket answers `api status` with `UP` and `sofia status` shows the profile
//!   `external` RUNNING, and is stopped (SIGTERM, then SIGKILL) when dropped;
//! - else `None`: the caller prints that it skipped and why.
//!
//! Instances of our own are taken one at a time, across threads and processes, by a lock file
//! (`<tmp>/outcall-freeswitch-live.lock`): two switches and their calls would share the two
//! cores and spoil each other's timings.
//!
//! `esl_api` is a minimal blocking event-socket client (auth, one `api` command) for the
//! harness's own checks; outcall itself talks to the switch with its own client.
//! `OUTCALL_TEST_FREESWITCH_KEEP=1` keeps our instance's run directory (its log) after a test.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::sipp::{callee_args, free_udp_ports, Sipp, SIPP};

/// Where FreeSWITCH is installed: `OUTCALL_TEST_FREESWITCH_PREFIX`, else `/opt/freeswitch`.
pub fn prefix() -> PathBuf {
    std::env::var_os("OUTCALL_TEST_FREESWITCH_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/freeswitch"))
}
/// How long our own instance may take to be ready (it takes about 2 s).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// RTP ports of our own instance: apart from the shared instance (16384–16484) and from the SIP
/// tests' ranges (21000 and up).
const RTP_PORTS: (u16, u16) = (17000, 18999);

/// A FreeSWITCH the live tests may use.
pub struct LiveSwitch {
    /// The event socket, `host:port`.
    pub esl: String,
    pub password: String,
    /// Where the gateway `sipp` sends its calls: the callee (sipp) listens there.
    pub sipp_port: u16,
    own: Option<OwnSwitch>,
}

/// Our own instance.
struct OwnSwitch {
    child: Option<Child>,
    run: TempDir,
    _lock: File,
}

/// Why the live tests cannot run here, or the switch they run against.
pub enum Availability {
    Live(LiveSwitch),
    Skipped(String),
}

impl LiveSwitch {
    /// The switch for a live test, or `None` after printing `<test>: skipped: <why>`.
    pub fn get(test: &str) -> Option<LiveSwitch> {
        match LiveSwitch::find() {
            Availability::Live(switch) => Some(switch),
            Availability::Skipped(why) => {
                println!("{test}: skipped: {why}");
                eprintln!("{test}: skipped: {why}");
                None
            }
        }
    }

    pub fn find() -> Availability {
        if let Ok(spec) = std::env::var("OUTCALL_TEST_FREESWITCH") {
            let mut parts = spec.rsplitn(2, ':');
            let (Some(password), Some(addr)) = (parts.next(), parts.next()) else {
                panic!("OUTCALL_TEST_FREESWITCH={spec}: expected host:port:password");
            };
            let sipp_port = std::env::var("OUTCALL_TEST_FREESWITCH_SIPP_PORT")
                .ok()
                .map(|p| {
                    p.parse()
                        .expect("OUTCALL_TEST_FREESWITCH_SIPP_PORT is a port")
                })
                .unwrap_or(5099);
            let switch = LiveSwitch {
                esl: addr.to_owned(),
                password: password.to_owned(),
                sipp_port,
                own: None,
            };
            let status = esl_api(&switch.esl, &switch.password, "status")
                .unwrap_or_else(|e| panic!("OUTCALL_TEST_FREESWITCH={spec} does not answer: {e}"));
            assert!(status.starts_with("UP"), "{spec}: status {status}");
            return Availability::Live(switch);
        }
        let binary = prefix().join("bin/freeswitch");
        if !binary.exists() {
            return Availability::Skipped(format!(
                "no FreeSWITCH: set OUTCALL_TEST_FREESWITCH=host:port:password, or build one into \
                 {} (../shared/freeswitch/build.sh)",
                prefix().display()
            ));
        }
        if !Path::new(SIPP).exists() {
            return Availability::Skipped(format!("no sipp ({SIPP}): apt-get install sip-tester"));
        }
        Availability::Live(LiveSwitch::start_own())
    }

    /// Our own instance on free ports, ready.
    fn start_own() -> LiveSwitch {
        let lock = take_lock();
        let run = tempfile::Builder::new()
            .prefix("outcall-fs-")
            .tempdir()
            .expect("a run directory");
        let esl_port = free_tcp_port();
        let sip_port = loop {
            let port = free_tcp_port();
            if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let sipp_port = free_udp_ports(2);
        for sub in [
            "log",
            "db",
            "run",
            "temp",
            "storage",
            "recordings",
            "cache",
            "sounds",
        ] {
            std::fs::create_dir_all(run.path().join(sub)).unwrap();
        }
        let conf = run.path().join("conf");
        copy_dir(&config_dir(), &conf);
        let vars = conf.join("vars.xml");
        let text = std::fs::read_to_string(&vars).unwrap();
        let text = text
            .replace("esl_port=8021", &format!("esl_port={esl_port}"))
            .replace(
                "external_sip_port=5080",
                &format!("external_sip_port={sip_port}"),
            )
            .replace("sipp_port=5099", &format!("sipp_port={sipp_port}"))
            .replace(
                "rtp_start_port=16384",
                &format!("rtp_start_port={}", RTP_PORTS.0),
            )
            .replace(
                "rtp_end_port=16484",
                &format!("rtp_end_port={}", RTP_PORTS.1),
            );
        std::fs::write(&vars, text).unwrap();
        let mut switch = LiveSwitch {
            esl: format!("127.0.0.1:{esl_port}"),
            password: "ClueCon".into(),
            sipp_port,
            own: Some(OwnSwitch {
                child: None,
                run,
                _lock: lock,
            }),
        };
        switch.start();
        switch
    }

    /// Whether this is our own instance (which may be stopped and started again).
    pub fn is_own(&self) -> bool {
        self.own.is_some()
    }

    /// Our instance's log (`freeswitch.log`), for failure messages.
    pub fn log_path(&self) -> Option<PathBuf> {
        self.own
            .as_ref()
            .map(|own| own.run.path().join("log/freeswitch.log"))
    }

    /// The process id of our instance.
    pub fn pid(&self) -> Option<u32> {
        self.own
            .as_ref()
            .and_then(|own| own.child.as_ref())
            .map(Child::id)
    }

    /// Starts our instance (again: same run directory and ports) and waits until it is ready.
    pub fn start(&mut self) {
        let own = self.own.as_mut().expect("our own FreeSWITCH");
        assert!(own.child.is_none(), "FreeSWITCH is running already");
        let run = own.run.path();
        let dir = |name: &str| run.join(name).display().to_string();
        let out = File::create(run.join("log/stdout.log")).unwrap();
        let prefix = prefix();
        let mut command = Command::new(prefix.join("bin/freeswitch"));
        command
            .args(["-nc", "-nf", "-nonat"])
            .args([
                "-conf",
                &dir("conf"),
                "-log",
                &dir("log"),
                "-db",
                &dir("db"),
            ])
            .args(["-run", &dir("run"), "-temp", &dir("temp")])
            .args([
                "-storage",
                &dir("storage"),
                "-recordings",
                &dir("recordings"),
            ])
            .args(["-cache", &dir("cache"), "-sounds", &dir("sounds")])
            .arg("-mod")
            .arg(prefix.join("mod"))
            .env("LD_LIBRARY_PATH", prefix.join("lib"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // SAFETY: prctl in the child before exec; it only sets the signal the child gets when
        // this thread ends, so that a test killed mid-way leaves no FreeSWITCH behind.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("FreeSWITCH starts");
        own.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.own_child().try_wait().unwrap() {
                panic!(
                    "FreeSWITCH exited with {status} before it was ready\n{}",
                    self.log_tail(40)
                );
            }
            let status = esl_api(&self.esl, &self.password, "status").unwrap_or_default();
            let sofia = esl_api(&self.esl, &self.password, "sofia status").unwrap_or_default();
            if status.starts_with("UP")
                && sofia
                    .lines()
                    .any(|l| l.contains("external") && l.contains("RUNNING"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "FreeSWITCH not ready within {READY_WITHIN:?}: status {status:?}, sofia {sofia:?}\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn own_child(&mut self) -> &mut Child {
        self.own
            .as_mut()
            .and_then(|own| own.child.as_mut())
            .expect("our FreeSWITCH runs")
    }

    /// Stops our instance: SIGTERM (FreeSWITCH hangs up its calls and says goodbye on the event
    /// socket), SIGKILL if it is still there after 15 s; waits until it is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.own.as_mut().and_then(|own| own.child.take()) else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let sent = Instant::now();
        let deadline = sent + Duration::from_secs(15);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                eprintln!(
                    "FreeSWITCH exited {:.1} s after SIGTERM",
                    sent.elapsed().as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("FreeSWITCH still runs 15 s after SIGTERM: SIGKILL");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills our instance (SIGKILL: its calls are left without a goodbye) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.own.as_mut().and_then(|own| own.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `lines` lines of our instance's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(path) = self.log_path() else {
            return String::new();
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!(
            "--- last lines of {} ---\n{}",
            path.display(),
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// `api <command>` on this switch.
    pub fn api(&self, command: &str) -> Result<String, String> {
        esl_api(&self.esl, &self.password, command)
    }

    /// A sipp callee on the gateway's port playing `tests/freeswitch/sipp/<scenario>` for at most
    /// `calls` calls; killed when dropped.
    pub fn callee(&self, scenario: &str, calls: u32) -> Sipp {
        sipp_on(scenario, self.sipp_port, calls)
    }

    /// The arguments that run outcall's FreeSWITCH back end against this switch.
    pub fn outcall_args(&self) -> Vec<String> {
        vec![
            "--backend".into(),
            "freeswitch".into(),
            "--esl-addr".into(),
            self.esl.clone(),
            "--esl-password".into(),
            self.password.clone(),
        ]
    }
}

impl Drop for LiveSwitch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
        }
        self.stop();
        // OUTCALL_TEST_FREESWITCH_KEEP=1 keeps our instance's run directory (its whole log).
        if std::env::var_os("OUTCALL_TEST_FREESWITCH_KEEP").is_some() {
            if let Some(own) = self.own.take() {
                eprintln!(
                    "kept FreeSWITCH's run directory {}",
                    own.run.keep().display()
                );
            }
        }
    }
}

/// `tests/freeswitch/conf`.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/freeswitch/conf")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One of our own instances at a time (flock(2): held until the file is closed).
fn take_lock() -> File {
    let path = std::env::temp_dir().join("outcall-freeswitch-live.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("the lock file");
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor we own; it blocks until the lock is ours.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "flock {}", path.display());
    file
}

/// Waits at most `timeout` until outcall's freeswitch back end is ok on `/healthz`.
pub async fn wait_backend_ok(api: &super::Api, timeout: Duration) {
    super::poll(
        timeout,
        "the freeswitch back end to be ok on /healthz",
        || async {
            let (status, body) = api.health().await;
            if status == 200 && body["backend"]["status"] == "ok" {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        },
    )
    .await;
}

/// A sipp callee on `port` playing `tests/freeswitch/sipp/<scenario>` (no global timeout: the
/// tests bound their own waits); killed when dropped.
pub fn sipp_on(scenario: &str, port: u16, calls: u32) -> Sipp {
    sipp_with(scenario, port, calls, true)
}

/// The same, with sipp's message trace only when `trace` (a benchmark's thousands of calls
/// would make it large, and cost sipp).
pub fn sipp_with(scenario: &str, port: u16, calls: u32, trace: bool) -> Sipp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let scenario_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/freeswitch/sipp")
        .join(scenario);
    assert!(scenario_path.is_file(), "{}", scenario_path.display());
    let media = free_udp_ports(4);
    let mut args = callee_args(dir.path(), &scenario_path, port, media, calls);
    let path = |name: &str| dir.path().join(name).display().to_string();
    if trace {
        args.extend([
            "-trace_msg".into(),
            "-message_file".into(),
            path("messages.log"),
        ]);
    }
    Sipp::spawn(dir, scenario, port, false, &args)
}

/// The numbers (Request-URI users) of the INVITEs sipp received, retransmissions counted once
/// (by Call-ID), in order.
pub fn invited_numbers(sipp: &Sipp) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    sipp.message_log()
        .into_iter()
        .filter(|m| m.received && m.is_request("INVITE") && seen.insert(m.call_id.clone()))
        .map(|m| request_user(&m.start_line))
        .collect()
}

/// `INVITE sip:1000@127.0.0.1:5099 SIP/2.0` → `1000`.
pub fn request_user(start_line: &str) -> String {
    start_line
        .split_whitespace()
        .nth(1)
        .and_then(|uri| uri.strip_prefix("sip:"))
        .and_then(|uri| uri.split('@').next())
        .unwrap_or_default()
        .to_owned()
}

/// One `api <command>` over a fresh event-socket connection: its reply body.
pub fn esl_api(addr: &str, password: &str, command: &str) -> Result<String, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let (headers, _) = read_frame(&mut reader)?;
    if !headers.contains("auth/request") {
        return Err(format!("expected auth/request, got {headers:?}"));
    }
    writer
        .write_all(format!("auth {password}\n\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let (headers, _) = read_frame(&mut reader)?;
    if !headers.contains("+OK") {
        return Err(format!("auth refused: {headers:?}"));
    }
    writer
        .write_all(format!("api {command}\n\n").as_bytes())
        .map_err(|e| e.to_string())?;
    loop {
        let (headers, body) = read_frame(&mut reader)?;
        if headers.contains("api/response") {
            let _ = writer.write_all(b"exit\n\n");
            return Ok(body);
        }
    }
}

/// One frame: its header block and its `Content-Length` body.
fn read_frame(reader: &mut impl BufRead) -> Result<(String, String), String> {
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("connection closed after {headers:?}"));
        }
        if line.trim_end().is_empty() {
            if headers.is_empty() {
                continue;
            }
            break;
        }
        headers.push_str(&line);
    }
    let length = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length:"))
        .map(|v| v.trim().parse::<usize>().map_err(|e| e.to_string()))
        .transpose()?
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((headers, String::from_utf8_lossy(&body).into_owned()))
}
