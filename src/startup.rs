//! Builds the application from a configuration: opens the database, binds the listener, starts
//! the dialer, and runs the HTTP server until stopped.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{dev::Server, http::KeepAlive, middleware::from_fn, web, App, HttpServer};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, AppState},
    auth,
    config::{BackendKind, Config},
    data_dir::{self, DataDirLock},
    db::Db,
    dialer::{self, DialerHandle},
    resources,
    telephony::{freeswitch::FreeswitchBackend, sim::SimBackend, sip::SipBackend, Telephony},
    webhooks,
};

/// HTTP limits: a client has this long to send a request's head, then its body is read under
/// `api::body_deadline`; an idle kept-alive connection is closed after `KEEP_ALIVE`.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Connections waiting to be accepted when every HTTP slot is taken.
const LISTEN_BACKLOG: i32 = 1024;

/// The dialer's own multi-threaded runtime: the supervisor, the runners, their calls and the
/// telephony back end (SIP signalling, RTP) run here, away from actix's HTTP workers, so nothing
/// HTTP traffic does can delay a call start.
pub struct DialerRuntime(Option<tokio::runtime::Runtime>);

impl DialerRuntime {
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("outcall-dialer")
            .enable_all()
            .build()?;
        Ok(DialerRuntime(Some(runtime)))
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until dropped")
            .handle()
    }

    /// Runs `work` on this runtime and waits for it from any other.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        match self.handle().spawn(work).await {
            Ok(value) => value,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

impl Drop for DialerRuntime {
    fn drop(&mut self) {
        // Dropped from async code (the HTTP runtime): shutting down must not block there.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

pub struct Application {
    port: u16,
    runtime: DialerRuntime,
    server: Server,
    db: Db,
    dialer: DialerHandle,
    events: api::events::Events,
    supervisor: JoinHandle<()>,
    /// The result webhooks' sender, and what stops it.
    webhooks: (JoinHandle<()>, CancellationToken),
    /// Held until the application ends: no second outcall on the same data directory.
    _data_dir_lock: DataDirLock,
}

/// The back end the configuration names.
pub async fn build_backend(config: &Config) -> anyhow::Result<Arc<dyn Telephony>> {
    match config.backend {
        BackendKind::Sim => {
            let mut sim = SimBackend::new(config.sim.time_scale);
            if let Some(path) = &config.sim.call_log {
                sim = sim
                    .with_call_log(path)
                    .with_context(|| format!("opening the sim call log {}", path.display()))?;
            }
            Ok(Arc::new(sim))
        }
        BackendKind::Sip => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
            Ok(Arc::new(
                SipBackend::start(config.sip.clone(), &config.data_dir).await?,
            ))
        }
        BackendKind::Freeswitch => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
            Ok(Arc::new(FreeswitchBackend::start(
                config.freeswitch.clone(),
                &config.data_dir,
                config.dialer.max_caps,
            )?))
        }
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // The lock first: a second instance must not even bind the SIP port.
        let lock = data_dir::prepare(&config.data_dir)?;
        let runtime = DialerRuntime::new().context("starting the dialer's runtime")?;
        let backend = {
            let config = config.clone();
            runtime
                .run(async move { build_backend(&config).await })
                .await?
        };
        Self::build_locked(config, backend, lock, runtime).await
    }

    /// Like `build`, with a back end made by the caller (tests keep a handle on it).
    pub async fn build_with_backend(
        config: Config,
        backend: Arc<dyn Telephony>,
    ) -> anyhow::Result<Self> {
        let lock = data_dir::prepare(&config.data_dir)?;
        let runtime = DialerRuntime::new().context("starting the dialer's runtime")?;
        Self::build_locked(config, backend, lock, runtime).await
    }

    async fn build_locked(
        config: Config,
        backend: Arc<dyn Telephony>,
        data_dir_lock: DataDirLock,
        runtime: DialerRuntime,
    ) -> anyhow::Result<Self> {
        let descriptor_limit = resources::raise_descriptor_limit();
        let descriptors = resources::descriptor_plan(descriptor_limit, config.dialer.max_channels);
        resources::log_descriptor_plan(&descriptors, config.dialer.max_channels);
        let http_connections = descriptors.http_connections;
        let db = Db::open_with(&config.database_path(), config.sqlite_synchronous).with_context(
            || format!("opening the database {}", config.database_path().display()),
        )?;
        auth::ensure_admin(&db, &config.data_dir, config.admin_password.clone()).await?;

        let listener = TcpListener::bind(&config.listen)
            .with_context(|| format!("listening on {}", config.listen))?;
        resources::set_listen_backlog(&listener, LISTEN_BACKLOG)
            .with_context(|| format!("setting the backlog of {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let backend_name = backend.name();
        // The dialer's connections are its own: no HTTP traffic can hold them.
        let dialer_db = Db::open_another(&config.database_path(), config.sqlite_synchronous, 4)?;
        let (dialer, supervisor) = dialer::start(
            dialer_db,
            backend,
            config.dialer.clone(),
            (config.clock.clone(), config.time_zone),
            runtime.handle(),
        )
        .await?;
        // The webhook sender has its own connections too, and runs beside the dialer.
        let webhooks_stop = CancellationToken::new();
        let webhooks_sender = webhooks::start(
            webhooks::Sender {
                db: Db::open_another(&config.database_path(), config.sqlite_synchronous, 2)?,
                clock: config.clock.clone(),
                time_zone: config.time_zone,
                secret: config.webhook_secret.clone(),
            },
            dialer.results_written(),
            webhooks_stop.clone(),
            runtime.handle(),
        )?;
        let events = api::events::Events::start(db.clone(), dialer.clone(), config.time_zone);
        let state = web::Data::new(AppState {
            db: db.clone(),
            time_zone: config.time_zone,
            body_limit: config.body_limit,
            dialer: dialer.clone(),
            data_dir: config.data_dir.clone(),
            accounts: auth::Accounts::new(db.clone(), config.token_ttl.as_secs() as i64),
            events: events.clone(),
            clock: config.clock.clone(),
            metrics_token: config.metrics_token.clone(),
        });
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let server = HttpServer::new(move || {
            App::new()
                .wrap(api::security_headers())
                .wrap(from_fn(api::log_request))
                .wrap(from_fn(api::metrics::record_request))
                .wrap(from_fn(api::body_deadline::body_deadline))
                .configure(|c| api::configure(c, state.clone()))
        })
        .workers(workers)
        // Per worker: all workers together stay within the descriptors left over by the calls.
        .max_connections((http_connections / workers).max(1))
        .max_connection_rate(256)
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
        .listen(listener)?
        // Shutdown is ours to order (HTTP first, then the dialer), not actix's.
        .disable_signals()
        .run();
        tracing::info!(
            listen = %config.listen,
            port,
            data_dir = %config.data_dir.display(),
            backend = backend_name,
            time_zone = config.time_zone.name(),
            descriptor_limit,
            http_connections,
            "outcall is ready"
        );
        Ok(Application {
            port,
            runtime,
            server,
            db,
            dialer,
            events,
            supervisor,
            webhooks: (webhooks_sender, webhooks_stop),
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A handle that stops the application from elsewhere (a signal, a test).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            server: self.server.handle(),
            dialer: self.dialer.clone(),
            events: self.events.clone(),
            webhooks: self.webhooks.1.clone(),
        }
    }

    /// Runs until stopped, and until the dialer has finished with its calls.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Err(error) = self.supervisor.await {
            tracing::error!(%error, "the dialer failed");
        }
        if let Err(error) = self.webhooks.0.await {
            tracing::error!(%error, "the webhook sender failed");
        }
        drop(self.runtime);
        drop(self._data_dir_lock);
        served
    }
}

#[derive(Clone)]
pub struct Stopper {
    server: actix_web::dev::ServerHandle,
    dialer: DialerHandle,
    events: api::events::Events,
    webhooks: CancellationToken,
}

impl Stopper {
    /// Stops taking requests and starting calls; lets live calls end within the grace period.
    pub async fn stop(&self) {
        // Event streams never end by themselves: closed first, or the graceful stop waits on them.
        self.events.close();
        self.server.stop(true).await;
        self.dialer.shutdown().await;
        // After the dialer: the results its last calls wrote are queued, sent at the next start.
        self.webhooks.cancel();
    }
}
