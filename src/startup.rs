//! Builds the application from a configuration: opens the database, binds the listener, and runs
//! the HTTP server (and the dialer) until stopped.

use std::net::TcpListener;

use actix_web::{dev::Server, middleware::from_fn, web, App, HttpServer};
use anyhow::Context;

use crate::{
    api::{self, AppState},
    auth,
    config::Config,
    db::Db,
    dialer::DialerHandle,
};

pub struct Application {
    port: u16,
    server: Server,
    db: Db,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
        let db = Db::open(&config.database_path())
            .with_context(|| format!("opening the database {}", config.database_path().display()))?;
        auth::ensure_admin(&db, &config.data_dir, config.admin_password.clone()).await?;

        let listener = TcpListener::bind(&config.listen).with_context(|| format!("listening on {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            db: db.clone(),
            time_zone: config.time_zone,
            token_ttl_seconds: config.token_ttl.as_secs() as i64,
            body_limit: config.body_limit,
            dialer: DialerHandle::default(),
        });
        let server = HttpServer::new(move || {
            App::new().wrap(from_fn(api::log_request)).configure(|c| api::configure(c, state.clone()))
        })
        .listen(listener)?
        // Shutdown is ours to order (HTTP first, then the dialer), not actix's.
        .disable_signals()
        .run();
        tracing::info!(
            listen = %config.listen,
            port,
            data_dir = %config.data_dir.display(),
            backend = ?config.backend,
            time_zone = config.time_zone.name(),
            "outcall is ready"
        );
        Ok(Application { port, server, db })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A handle that stops the application from elsewhere (a signal, a test).
    pub fn stopper(&self) -> Stopper {
        Stopper { server: self.server.handle() }
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

#[derive(Clone)]
pub struct Stopper {
    server: actix_web::dev::ServerHandle,
}

impl Stopper {
    /// Stops taking requests, lets those in flight finish, then lets `run_until_stopped` return.
    pub async fn stop(&self) {
        self.server.stop(true).await;
    }
}
