//! The real binary (`CARGO_BIN_EXE_outcall`) as a process: `Outcall` says how to start it,
//! `Server` is the running process (SIGKILLed when dropped, the end of its log printed when a
//! test fails), and `Server::connect` waits until it is ready and logs in, answering an `Api`.
//!
//! A test gives a work directory; by default the data directory is `<dir>/data`, the sim's call
//! log `<dir>/calls.log`, and stdout and stderr go to `<dir>/server-<port>.log`.

use std::{
    ffi::OsString,
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use super::{poll, Api, ADMIN_PASSWORD};

/// How long a server may take to answer `/healthz`, or to exit by itself.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// `<dir>/data`, the data directory `Outcall::in_dir` uses.
pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// `<dir>/calls.log`, the sim's call log `Outcall::in_dir` asks for.
pub fn call_log(dir: &Path) -> PathBuf {
    dir.join("calls.log")
}

/// `<dir>/data/outcall.db`.
pub fn database(dir: &Path) -> PathBuf {
    data_dir(dir).join("outcall.db")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// The binary with no `OUTCALL_` variable of the test's environment (e.g. for `outcall backup`).
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outcall"));
    remove_outcall_variables(&mut command);
    command
}

fn remove_outcall_variables(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("OUTCALL_") {
            command.env_remove(name);
        }
    }
}

/// How to start the binary (a builder; `spawn` may be called again for a restart).
#[derive(Clone)]
pub struct Outcall {
    dir: PathBuf,
    data_dir: PathBuf,
    password: Option<String>,
    scale: f64,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    nofile: Option<(u32, u32)>,
}

impl Outcall {
    /// The binary on `<dir>/data`, sim time scale 0.01, `--sim-call-log <dir>/calls.log`,
    /// `--tz UTC`, `OUTCALL_LOG=info`, `OUTCALL_ADMIN_PASSWORD=ADMIN_PASSWORD`, and no other
    /// `OUTCALL_` variable of the test's environment.
    pub fn in_dir(dir: &Path) -> Outcall {
        Outcall {
            dir: dir.to_owned(),
            data_dir: data_dir(dir),
            password: Some(ADMIN_PASSWORD.to_owned()),
            scale: 0.01,
            args: Vec::new(),
            envs: vec![("OUTCALL_LOG".into(), "info".into())],
            nofile: None,
        }
    }

    /// Another data directory than `<dir>/data`.
    pub fn data_dir(mut self, path: &Path) -> Outcall {
        self.data_dir = path.to_owned();
        self
    }

    /// `--sim-time-scale`, 0.01 unless set.
    pub fn sim_time_scale(mut self, scale: f64) -> Outcall {
        self.scale = scale;
        self
    }

    /// `OUTCALL_ADMIN_PASSWORD`; `None` leaves it unset (the password is generated and saved).
    pub fn password(mut self, password: Option<&str>) -> Outcall {
        self.password = password.map(str::to_owned);
        self
    }

    /// More command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Outcall
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn arg(self, arg: impl Into<OsString>) -> Outcall {
        self.args([arg])
    }

    /// An environment variable (`OUTCALL_LOG` replaces the default `info`).
    pub fn env(mut self, name: &str, value: &str) -> Outcall {
        self.envs.retain(|(n, _)| n != name);
        self.envs.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs the binary under `prlimit --nofile=SOFT:HARD`.
    pub fn nofile(mut self, soft: u32, hard: u32) -> Outcall {
        self.nofile = Some((soft, hard));
        self
    }

    /// The password `connect` logs in with.
    pub fn admin_password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Starts the binary on a free port (it is not ready yet: see `Server::connect`).
    pub fn spawn(&self) -> Server {
        let port = free_port();
        let log = self.dir.join(format!("server-{port}.log"));
        let out = File::create(&log).expect("the server log file");
        let mut command = match self.nofile {
            Some((soft, hard)) => {
                let mut command = Command::new("prlimit");
                command
                    .arg(format!("--nofile={soft}:{hard}"))
                    .arg(env!("CARGO_BIN_EXE_outcall"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_outcall")),
        };
        remove_outcall_variables(&mut command);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--sim-time-scale")
            .arg(self.scale.to_string())
            .arg("--sim-call-log")
            .arg(call_log(&self.dir))
            .args(["--tz", "UTC"])
            .args(&self.args)
            .envs(self.envs.iter().map(|(n, v)| (n, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(password) = &self.password {
            command.env("OUTCALL_ADMIN_PASSWORD", password);
        }
        Server {
            child: Some(command.spawn().expect("the outcall binary starts")),
            port,
            log,
            password: self.password.clone(),
        }
    }
}

/// A running `outcall`; killed (SIGKILL) when dropped. When a test fails, the end of its log is
/// printed.
pub struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    password: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.log.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

impl Server {
    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the server process")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server process").id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and reap it: no shutdown code runs.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the server process");
        child.kill().expect("SIGKILL the server");
        child.wait().expect("reap the server");
    }

    /// SIGTERM (it goes on running until it exits by itself: see `exit_status`).
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid, not reaped yet.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM: {}", std::io::Error::last_os_error());
    }

    /// The exit status when it has exited, else `None`.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child().try_wait().expect("try_wait")
    }

    /// Waits (bounded) for the process to exit by itself.
    pub async fn exit_status(&mut self) -> ExitStatus {
        let status = poll(READY_WITHIN, "the server to exit", || {
            let exited = self.try_exit();
            async move { exited.ok_or_else(|| "still running".to_owned()) }
        })
        .await;
        self.child = None;
        status
    }

    /// Waits (bounded) until it answers `/healthz` with a 2xx; panics if it exits first.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let url = format!("{}/healthz", self.base_url());
        poll(READY_WITHIN, "GET /healthz", || {
            let exited = self.try_exit();
            let request = http.get(&url).send();
            async move {
                if let Some(status) = exited {
                    panic!("the server exited before it was ready: {status}");
                }
                match request.await {
                    Ok(reply) if reply.status().is_success() => Ok(()),
                    Ok(reply) => Err(format!("status {}", reply.status())),
                    Err(error) => Err(error.to_string()),
                }
            }
        })
        .await;
    }

    /// A client that waited until the server is ready, with nobody logged in.
    pub async fn client(&mut self) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        self.wait_ready(&http).await;
        Api::new(self.base_url(), http)
    }

    /// Waits until ready and logs in as `admin` with the password it was started with.
    pub async fn connect(&mut self) -> Api {
        let password = self
            .password
            .clone()
            .expect("started with OUTCALL_ADMIN_PASSWORD; else use connect_with");
        self.connect_with(&password).await
    }

    /// Waits until ready and logs in as `admin` with `password`.
    pub async fn connect_with(&mut self, password: &str) -> Api {
        let mut api = self.client().await;
        api.token = api.log_in("admin", password).await;
        api
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which is in parentheses): utime is the 14th field of
        // the line, stime the 15th.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a system constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// How many descriptors it has open.
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`, …).
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.pid(), field)
    }
}

/// A `/proc/<pid>/status` figure in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The test process's own resident memory (an in-process outcall runs in it), in KiB.
pub fn self_rss_kib() -> u64 {
    proc_status_kib(std::process::id(), "VmRSS")
}
