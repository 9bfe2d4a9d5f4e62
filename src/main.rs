//! The `issuesync` command line (CONTRACT.md): run | serve | migrate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use issuesync::config::Settings;
use issuesync::startup;

#[derive(Parser)]
#[command(
    name = "issuesync",
    version,
    about = "Two-way issue sync with Azure DevOps, Jira and Discord"
)]
struct Cli {
    /// A config file merged over config/default.toml (replaces config/$ISSUESYNC_ENV.toml).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Embedded all-in-one: migrate, then the receiver and all worker pools (the default).
    Run,
    /// Receiver and admin API only.
    Serve,
    /// Apply migrations (ours and the queue's), then exit.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    issuesync::telemetry::init(&settings.log_format);
    match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => {
            let state = startup::build_state(settings).await?;
            state.db.migrate().await?;
            tracing::info!(backend = state.db.backend(), "migrations applied");
            Ok(())
        }
        Command::Serve => serve(settings, false).await,
        Command::Run => serve(settings, true).await,
    }
}

async fn serve(settings: Settings, migrate: bool) -> anyhow::Result<()> {
    if settings.admin_token.is_none() {
        tracing::warn!(
            "ISSUESYNC_ADMIN_TOKEN is not set: /api/v1 and /ops answer 401. Set it, e.g. ISSUESYNC_ADMIN_TOKEN=$(openssl rand -hex 32)"
        );
    }
    let state = startup::build_state(settings).await?;
    if migrate {
        state.db.migrate().await.context("migrate")?;
    }
    let server = startup::bind(state.clone()).await?;
    tracing::info!(addr = %server.addr, backend = state.db.backend(), redis = state.kv.is_redis(), "listening");
    server.run_until(startup::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
