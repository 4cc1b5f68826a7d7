//! Run-time configuration: every flag has an environment twin, flags win over the environment.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    clock::{Clock, TimeZone},
    db::Synchronous,
    dialer::DialerConfig,
    telephony::{
        freeswitch::config::{
            FreeswitchConfig, DEFAULT_DIAL_STRING, DEFAULT_ESL_ADDR, DEFAULT_ESL_PASSWORD,
        },
        sip::config::{parse_port_range, SipConfig, Trunk, DEFAULT_REQUEST_URI},
    },
};

/// Which telephony back end places the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A deterministic simulated callee: runs a whole campaign with no phone system.
    Sim,
    /// The built-in SIP user agent, calling through a SIP trunk or PBX.
    Sip,
    /// A FreeSWITCH driven over its inbound event socket.
    Freeswitch,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds; port 0 picks a free one.
    pub listen: String,
    /// Holds `outcall.db` and the generated admin password file.
    pub data_dir: PathBuf,
    pub backend: BackendKind,
    pub time_zone: TimeZone,
    /// Largest request body accepted, in bytes (an import of a million numbers is ~50 MB).
    pub body_limit: usize,
    /// How long a login token stays valid.
    pub token_ttl: Duration,
    /// Password for the `admin` user created on first start; random when unset.
    pub admin_password: Option<String>,
    /// Box-wide ceilings and shutdown behaviour of the dialer.
    pub dialer: DialerConfig,
    /// SQLite's `synchronous`: `full` also survives a power cut with the last commits.
    pub sqlite_synchronous: Synchronous,
    pub sim: SimConfig,
    pub sip: SipConfig,
    pub freeswitch: FreeswitchConfig,
    /// Key of the webhooks' `X-Outcall-Signature` HMAC; none: webhooks are sent unsigned.
    pub webhook_secret: Option<String>,
    /// Token `/metrics` requires (`Authorization: Bearer …`); none: open.
    pub metrics_token: Option<String>,
    /// The wall clock of schedules: the system's, or a test's manual one.
    pub clock: Clock,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Multiplies every duration of a simulated call (0.01: a 5 s call lasts 50 ms).
    pub time_scale: f64,
    /// Appends a line for every call placed, for checks from outside the process.
    pub call_log: Option<PathBuf>,
}

impl Config {
    /// A configuration for tests and embedding: loopback on a free port, UTC, the sim back end.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.into(),
            backend: BackendKind::Sim,
            time_zone: TimeZone::named("UTC").expect("UTC is a zone"),
            body_limit: DEFAULT_BODY_LIMIT,
            token_ttl: Duration::from_secs(DEFAULT_TOKEN_TTL_SECONDS),
            admin_password: None,
            dialer: DialerConfig {
                max_caps: DEFAULT_MAX_CAPS,
                max_channels: DEFAULT_MAX_CHANNELS,
                shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_SECONDS),
                max_attempts_per_day: None,
            },
            sqlite_synchronous: Synchronous::Normal,
            sim: SimConfig {
                time_scale: 1.0,
                call_log: None,
            },
            sip: SipConfig {
                bind: "127.0.0.1:0".parse().expect("an address"),
                trunks: Vec::new(),
                from: "outcall".into(),
                username: None,
                password: None,
                register: false,
                rtp_ports: DEFAULT_RTP_PORTS,
                symmetric_rtp: false,
                request_uri: DEFAULT_REQUEST_URI.into(),
                max_call_duration: Duration::from_secs(DEFAULT_MAX_CALL_SECONDS),
            },
            freeswitch: FreeswitchConfig::new(
                DEFAULT_ESL_ADDR,
                DEFAULT_ESL_PASSWORD,
                DEFAULT_DIAL_STRING,
            )
            .expect("the defaults are valid"),
            webhook_secret: None,
            metrics_token: None,
            clock: Clock::system(),
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("outcall.db")
    }
}

pub const DEFAULT_BODY_LIMIT: usize = 128 * 1024 * 1024;
pub const DEFAULT_TOKEN_TTL_SECONDS: u64 = 24 * 60 * 60;
pub const DEFAULT_MAX_CAPS: f64 = 200.0;
pub const DEFAULT_MAX_CHANNELS: usize = 1000;
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;
pub const DEFAULT_RTP_PORTS: (u16, u16) = (20000, 30000);
pub const DEFAULT_MAX_CALL_SECONDS: u64 = 3600;

/// outcall: an outbound auto-dialer speaking XSwitch's /api/out_call_tasks REST API.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Environment only: OUTCALL_ADMIN_PASSWORD (at least 10 characters) is the password of the `admin` user created on \
                  first start (random, and saved in <data-dir>/admin-password.txt, when unset); \
                  OUTCALL_LOG filters the logs (e.g. `info`, `outcall=debug`)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the dialer (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Copy the database to FILE with SQLite's online backup, safe while outcall is dialing.
    Backup(BackupArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The data directory whose outcall.db is copied (default: as for serving, ./data).
    #[arg(long, env = "OUTCALL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the copy is written (replaced if it exists).
    pub file: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address and port the HTTP API listens on.
    #[arg(long, env = "OUTCALL_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Directory for the database (outcall.db) and other state; created if missing.
    #[arg(long, env = "OUTCALL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Telephony back end that places the calls.
    #[arg(long, env = "OUTCALL_BACKEND", value_enum, default_value_t = BackendKind::Sim)]
    pub backend: BackendKind,
    /// Time zone of the timestamps the API reads and writes (IANA name, e.g. Asia/Shanghai).
    /// Default: the host's.
    #[arg(long, env = "OUTCALL_TZ")]
    pub tz: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "OUTCALL_BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Lifetime of a login token, in seconds.
    #[arg(long, env = "OUTCALL_TOKEN_TTL", default_value_t = DEFAULT_TOKEN_TTL_SECONDS)]
    pub token_ttl: u64,
    /// Calls started per second by all tasks together (protects the trunk); fractions allowed.
    #[arg(long, env = "OUTCALL_MAX_CAPS", default_value_t = DEFAULT_MAX_CAPS)]
    pub max_caps: f64,
    /// Calls alive at once across all tasks.
    #[arg(long, env = "OUTCALL_MAX_CHANNELS", default_value_t = DEFAULT_MAX_CHANNELS)]
    pub max_channels: usize,
    /// On SIGTERM, seconds live calls may go on before they are hung up with SYSTEM_SHUTDOWN.
    #[arg(long, env = "OUTCALL_SHUTDOWN_GRACE", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECONDS)]
    pub shutdown_grace: u64,
    /// SQLite durability: `normal` may lose the last commits on a power cut (never on a crash of
    /// outcall), `full` syncs every commit.
    #[arg(long, env = "OUTCALL_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Normal)]
    pub sqlite_synchronous: Synchronous,
    /// sim back end: multiplies every simulated duration (0.01 makes a 5 s call last 50 ms).
    #[arg(long, env = "OUTCALL_SIM_TIME_SCALE", default_value_t = 1.0)]
    pub sim_time_scale: f64,
    /// sim back end: file to which a line is appended for every call placed.
    #[arg(long, env = "OUTCALL_SIM_CALL_LOG")]
    pub sim_call_log: Option<PathBuf>,
    /// sip back end: trunk or PBX, `[context=][udp:|tcp:]host[:port]`; comma-separated for several,
    /// a task's dest_context picks the trunk named so, else the one without a context.
    #[arg(long, env = "OUTCALL_SIP_TRUNK", value_delimiter = ',')]
    pub sip_trunk: Vec<String>,
    /// sip back end: local SIP address.
    #[arg(long, env = "OUTCALL_SIP_BIND", default_value = "0.0.0.0:5060")]
    pub sip_bind: std::net::SocketAddr,
    /// sip back end: From `user@domain` (the user is replaced by a task's cid_number; the domain
    /// defaults to the trunk).
    #[arg(long, env = "OUTCALL_SIP_FROM", default_value = "outcall")]
    pub sip_from: String,
    /// sip back end: digest user name for 401/407 challenges (default: the From user).
    #[arg(long, env = "OUTCALL_SIP_USERNAME")]
    pub sip_username: Option<String>,
    /// sip back end: digest password.
    #[arg(long, env = "OUTCALL_SIP_PASSWORD", hide_env_values = true)]
    pub sip_password: Option<String>,
    /// sip back end: REGISTER with the default trunk and keep refreshing it.
    #[arg(long, env = "OUTCALL_SIP_REGISTER")]
    pub sip_register: bool,
    /// sip back end: RTP port range, low-high.
    #[arg(long, env = "OUTCALL_RTP_PORTS", default_value = "20000-30000")]
    pub rtp_ports: String,
    /// sip back end: symmetric RTP, for callees behind NAT (RTP from another port of the SDP's IP).
    #[arg(long, env = "OUTCALL_RTP_SYMMETRIC")]
    pub rtp_symmetric: bool,
    /// sip back end: Request-URI template; {number} and {trunk} are replaced.
    #[arg(long, env = "OUTCALL_SIP_REQUEST_URI", default_value = DEFAULT_REQUEST_URI)]
    pub sip_request_uri: String,
    /// sip back end: a call still up after this many seconds is hung up.
    #[arg(long, env = "OUTCALL_MAX_CALL_SECONDS", default_value_t = DEFAULT_MAX_CALL_SECONDS)]
    pub max_call_seconds: u64,
    /// freeswitch back end: the inbound event socket, host:port.
    #[arg(long, env = "OUTCALL_ESL_ADDR", default_value = DEFAULT_ESL_ADDR)]
    pub esl_addr: String,
    /// freeswitch back end: the event socket's password.
    #[arg(long, env = "OUTCALL_ESL_PASSWORD", default_value = DEFAULT_ESL_PASSWORD, hide_env_values = true)]
    pub esl_password: String,
    /// freeswitch back end: how a number is dialed; {number}, {dest_context} and {context} are
    /// replaced by the number and the task's fields (e.g. sofia/gateway/{dest_context}/{number}).
    #[arg(long, env = "OUTCALL_ESL_DIAL_STRING", default_value = DEFAULT_DIAL_STRING)]
    pub esl_dial_string: String,
    /// Most calls to one number over any 24 hours, across all tasks; a number held back waits
    /// like a retry. Default: no cap.
    #[arg(long, env = "OUTCALL_MAX_ATTEMPTS_PER_DAY")]
    pub max_attempts_per_day: Option<u32>,
    /// Key of the HMAC-SHA256 in each webhook's `X-Outcall-Signature: sha256=<hex>` header.
    #[arg(long, env = "OUTCALL_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>`; otherwise it is open.
    #[arg(long, env = "OUTCALL_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

impl Cli {
    pub fn serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => *args,
            Some(Command::Backup(_)) | None => self.serve,
        }
    }
}

impl ServeArgs {
    /// The admin password comes only from the environment (`OUTCALL_ADMIN_PASSWORD`): a flag
    /// would show it to every user of `ps`.
    pub fn into_config(self, admin_password: Option<String>) -> Result<Config, String> {
        let time_zone = match self.tz.as_deref().filter(|tz| !tz.is_empty()) {
            Some(name) => TimeZone::named(name)?,
            None => TimeZone::host(),
        };
        if self.token_ttl == 0 {
            return Err("--token-ttl must be at least 1 second".into());
        }
        if !(self.max_caps > 0.0 && self.max_caps.is_finite()) {
            return Err(format!(
                "--max-caps must be a positive number, not {}",
                self.max_caps
            ));
        }
        if self.max_channels == 0 {
            return Err("--max-channels must be at least 1".into());
        }
        if self.max_attempts_per_day == Some(0) {
            return Err(
                "--max-attempts-per-day must be at least 1 (leave it unset for no cap)".into(),
            );
        }
        let admin_password = admin_password.filter(|p| !p.is_empty());
        if let Some(password) = &admin_password {
            crate::auth::check_new_password("OUTCALL_ADMIN_PASSWORD", password)?;
        }
        if !(self.sim_time_scale > 0.0 && self.sim_time_scale.is_finite()) {
            return Err(format!(
                "--sim-time-scale must be a positive number, not {}",
                self.sim_time_scale
            ));
        }
        // Absolute, so that paths stored in the database (recordings, media) stay valid whatever
        // directory outcall is started from next time.
        let data_dir = std::path::absolute(&self.data_dir)
            .map_err(|error| format!("--data-dir {}: {error}", self.data_dir.display()))?;
        Ok(Config {
            listen: self.listen,
            data_dir,
            backend: self.backend,
            time_zone,
            body_limit: self.body_limit,
            token_ttl: Duration::from_secs(self.token_ttl),
            admin_password,
            dialer: DialerConfig {
                max_caps: self.max_caps,
                max_channels: self.max_channels,
                shutdown_grace: Duration::from_secs(self.shutdown_grace),
                max_attempts_per_day: self.max_attempts_per_day,
            },
            sqlite_synchronous: self.sqlite_synchronous,
            sim: SimConfig {
                time_scale: self.sim_time_scale,
                call_log: self.sim_call_log,
            },
            sip: SipConfig {
                bind: self.sip_bind,
                trunks: self
                    .sip_trunk
                    .iter()
                    .map(|t| Trunk::parse(t))
                    .collect::<Result<_, _>>()?,
                from: self.sip_from,
                username: self.sip_username,
                password: self.sip_password,
                register: self.sip_register,
                rtp_ports: parse_port_range(&self.rtp_ports)?,
                symmetric_rtp: self.rtp_symmetric,
                request_uri: self.sip_request_uri,
                max_call_duration: Duration::from_secs(self.max_call_seconds.max(1)),
            },
            freeswitch: FreeswitchConfig::new(
                &self.esl_addr,
                &self.esl_password,
                &self.esl_dial_string,
            )?,
            webhook_secret: self.webhook_secret.filter(|s| !s.is_empty()),
            metrics_token: self.metrics_token.filter(|s| !s.is_empty()),
            clock: Clock::system(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn a_relative_data_dir_becomes_absolute_under_the_working_directory() {
        let config = Cli::parse_from(["outcall", "--data-dir", "some/data"])
            .serve_args()
            .into_config(None)
            .unwrap();
        assert!(
            config.data_dir.is_absolute(),
            "{}",
            config.data_dir.display()
        );
        assert_eq!(
            config.data_dir,
            std::env::current_dir().unwrap().join("some/data")
        );
    }

    #[test]
    fn the_freeswitch_flags_and_their_defaults() {
        let config = Cli::parse_from(["outcall", "--backend", "freeswitch"])
            .serve_args()
            .into_config(None)
            .unwrap();
        assert_eq!(config.backend, BackendKind::Freeswitch);
        assert_eq!(config.freeswitch.addr, "127.0.0.1:8021");
        assert_eq!(config.freeswitch.password, "ClueCon");
        assert_eq!(
            config.freeswitch.dial_string.as_str(),
            "loopback/{number}/{dest_context}"
        );
        let config = Cli::parse_from([
            "outcall",
            "--esl-addr",
            "10.0.0.9:8022",
            "--esl-password",
            "secret",
            "--esl-dial-string",
            "sofia/gateway/{dest_context}/{number}",
        ])
        .serve_args()
        .into_config(None)
        .unwrap();
        assert_eq!(config.freeswitch.addr, "10.0.0.9:8022");
        assert_eq!(config.freeswitch.password, "secret");
        assert_eq!(
            config.freeswitch.dial_string.as_str(),
            "sofia/gateway/{dest_context}/{number}"
        );
    }

    #[test]
    fn an_unknown_dial_string_placeholder_stops_the_start_naming_it() {
        let error = Cli::parse_from([
            "outcall",
            "--esl-dial-string",
            "sofia/gateway/{gw}/{number}",
        ])
        .serve_args()
        .into_config(None)
        .unwrap_err();
        assert!(error.contains("{gw}"), "{error}");
    }
}
