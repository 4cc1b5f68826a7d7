use clap::Parser;
use outcall::{
    config::{Cli, Command},
    startup::Application,
};
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("OUTCALL_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,rsipstack=warn")),
        )
        .init();
    let cli = Cli::parse();
    if let Some(Command::Backup(args)) = &cli.command {
        // `outcall --data-dir D backup FILE` reads D too.
        let data_dir = args.data_dir.as_ref().unwrap_or(&cli.serve.data_dir);
        return backup(data_dir, &args.file);
    }
    let args = cli.serve_args();
    let config = match args.into_config(std::env::var("OUTCALL_ADMIN_PASSWORD").ok()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("outcall: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("outcall stopped: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `outcall backup FILE`: needs no lock on the data directory, so it runs beside a live outcall.
fn backup(data_dir: &std::path::Path, file: &std::path::Path) -> std::process::ExitCode {
    // The copy holds what the database holds: private like it.
    // SAFETY: umask only swaps the process's file creation mask.
    unsafe { libc::umask(0o077) };
    let source = data_dir.join("outcall.db");
    if !source.is_file() {
        eprintln!("outcall: no database at {}", source.display());
        return std::process::ExitCode::from(2);
    }
    match outcall::db::backup::backup(&source, file) {
        Ok(report) => {
            println!(
                "backed up {} to {} ({} pages, integrity ok)",
                source.display(),
                file.display(),
                report.pages
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("outcall: backup of {} failed: {error}", source.display());
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: outcall::config::Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let stopper = app.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stopper.stop().await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
