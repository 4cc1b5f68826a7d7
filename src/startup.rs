//! Builds the application from a configuration: opens the database, binds the listener, starts
//! the dialer, and runs the HTTP server until stopped.

use std::{net::TcpListener, sync::Arc};

use actix_web::{dev::Server, middleware::from_fn, web, App, HttpServer};
use anyhow::Context;
use tokio::task::JoinHandle;

use crate::{
    api::{self, AppState},
    auth,
    config::{BackendKind, Config},
    db::Db,
    dialer::{self, DialerHandle},
    telephony::{sim::SimBackend, sip::SipBackend, Telephony},
};

pub struct Application {
    port: u16,
    server: Server,
    db: Db,
    dialer: DialerHandle,
    supervisor: JoinHandle<()>,
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
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let backend = build_backend(&config).await?;
        Self::build_with_backend(config, backend).await
    }

    /// Like `build`, with a back end made by the caller (tests keep a handle on it).
    pub async fn build_with_backend(
        config: Config,
        backend: Arc<dyn Telephony>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let db = Db::open(&config.database_path()).with_context(|| {
            format!("opening the database {}", config.database_path().display())
        })?;
        auth::ensure_admin(&db, &config.data_dir, config.admin_password.clone()).await?;

        let listener = TcpListener::bind(&config.listen)
            .with_context(|| format!("listening on {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let backend_name = backend.name();
        let (dialer, supervisor) =
            dialer::start(db.clone(), backend, config.dialer.clone()).await?;
        let state = web::Data::new(AppState {
            db: db.clone(),
            time_zone: config.time_zone,
            token_ttl_seconds: config.token_ttl.as_secs() as i64,
            body_limit: config.body_limit,
            dialer: dialer.clone(),
            data_dir: config.data_dir.clone(),
            accounts: auth::Accounts::new(db.clone(), config.token_ttl.as_secs() as i64),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(api::log_request))
                .configure(|c| api::configure(c, state.clone()))
        })
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
            "outcall is ready"
        );
        Ok(Application {
            port,
            server,
            db,
            dialer,
            supervisor,
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
        }
    }

    /// Runs until stopped, and until the dialer has finished with its calls.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Err(error) = self.supervisor.await {
            tracing::error!(%error, "the dialer failed");
        }
        served
    }
}

#[derive(Clone)]
pub struct Stopper {
    server: actix_web::dev::ServerHandle,
    dialer: DialerHandle,
}

impl Stopper {
    /// Stops taking requests and starting calls; lets live calls end within the grace period.
    pub async fn stop(&self) {
        self.server.stop(true).await;
        self.dialer.shutdown().await;
    }
}
