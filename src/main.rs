//! The `issuesync` command line; README's "Commands" lists every command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

mod cli;

use issuesync::config::Settings;
use issuesync::startup;
use issuesync::sync::Services;

use crate::cli::bench::BenchCmd;
use crate::cli::deliveries::DeliveriesCmd;
use crate::cli::jobs::JobsCmd;
use crate::cli::print_json;

/// mimalloc gives freed memory back to the OS within milliseconds; glibc's arenas kept most
/// of a burst of large request bodies (measured in docs/reliability.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Worker pools only.
    Work(WorkArgs),
    /// Apply migrations (ours and the queue's), then exit.
    Migrate,
    /// Inspect, retry, kill and purge jobs.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// Stored webhook deliveries.
    #[command(subcommand)]
    Deliveries(DeliveriesCmd),
    /// Why changes of a group (or an external issue key) did or did not sync.
    Explain {
        /// A group id, or an external issue key (PROJ-123; an ADO work item id).
        what: String,
        #[arg(long)]
        json: bool,
        /// How many decisions, newest first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// The benchmark harness (use a release build).
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Shell completions on standard output (e.g. `issuesync completions bash > /etc/bash_completion.d/issuesync`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff) on standard output (e.g. `issuesync man | man -l -`).
    Man,
}

#[derive(Args)]
struct WorkArgs {
    /// Comma-separated queues (default: all).
    #[arg(long, value_delimiter = ',')]
    queues: Vec<String>,
    /// Jobs at once per queue (default: queue.concurrency from config).
    #[arg(long)]
    concurrency: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Idle blocking-pool threads (large bodies are hashed there) end after 1 s instead of
    // tokio's 10 s: each keeps its allocator heap, which held a burst's memory for as long.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The chain of causes on one line, each once: many of our errors already show their
/// source in their own message (`"…: {0}"` with `#[source]`), so a cause whose text is
/// already there is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace('\n', " ")
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    // These describe the command line itself: no config, database or logging needed.
    let command = match cli.command.unwrap_or(Command::Run) {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "issuesync", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            return Ok(());
        }
        other => other,
    };
    let (settings, warnings) = Settings::load_with_warnings(cli.config.as_deref())?;
    // Held to the end: dropping it flushes the spans not exported yet.
    let _telemetry = issuesync::telemetry::init(&settings.log_format, &settings.otel)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match command {
        // Answered above, before the config was loaded.
        Command::Completions { .. } | Command::Man => Ok(()),
        Command::Migrate => {
            let state = startup::build_state(settings).await?;
            state.db.migrate().await?;
            tracing::info!(backend = state.db.backend(), "migrations applied");
            Ok(())
        }
        Command::Serve => serve(settings, false, None).await,
        Command::Run => {
            serve(
                settings,
                true,
                Some(WorkArgs {
                    queues: vec![],
                    concurrency: None,
                }),
            )
            .await
        }
        Command::Work(args) => {
            let state = startup::build_state(settings).await?;
            let (tx, rx) = watch::channel(false);
            tokio::spawn(async move {
                startup::shutdown_signal().await;
                tracing::info!("shutting down: finishing in-flight jobs");
                let _ = tx.send(true);
            });
            let mut stop = rx.clone();
            let metrics = startup::serve_metrics_only(state.clone(), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await?;
            work(state, args, rx).await?;
            if let Some(m) = metrics {
                m.await??;
            }
            Ok(())
        }
        Command::Bench(cmd) => crate::cli::bench::bench(settings, cli.config.as_deref(), cmd).await,
        Command::Deliveries(cmd) => crate::cli::deliveries::deliveries(settings, cmd).await,
        Command::Jobs(cmd) => {
            let state = startup::build_state(settings).await?;
            crate::cli::jobs::jobs(&state, cmd).await
        }
        Command::Explain { what, json, limit } => {
            let state = startup::build_state(settings).await?;
            let e = issuesync::explain::explain(&state.db, &what, limit).await?;
            if json {
                return print_json(&e);
            }
            match &e.subject {
                issuesync::explain::Subject::Group { id, title } => {
                    println!("group {id} ({title}):")
                }
                issuesync::explain::Subject::ExternalIssue { key, .. } => println!("{key}:"),
            }
            if e.decisions.is_empty() {
                println!("  no sync decisions recorded");
            }
            // Oldest first, so it reads as a story; the newest is the last line.
            for d in e.decisions.iter().rev() {
                println!("  {}", d.sentence);
            }
            Ok(())
        }
    }
}

async fn work(
    state: Services,
    args: WorkArgs,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let pools = issuesync::worker::pools(&state, &args.queues, args.concurrency)
        .map_err(anyhow::Error::msg)?;
    issuesync::worker::run_pools(state, pools, shutdown).await;
    Ok(())
}

async fn serve(settings: Settings, migrate: bool, workers: Option<WorkArgs>) -> anyhow::Result<()> {
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
    if let Some(m) = server.metrics_addr() {
        tracing::info!(addr = %m, "metrics listening");
    }
    let (tx, rx) = watch::channel(false);
    let pools = workers.map(|args| tokio::spawn(work(state.clone(), args, rx.clone())));
    let mut stop = rx.clone();
    let http = tokio::spawn(server.run_until(async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    startup::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests and jobs");
    let _ = tx.send(true);
    if let Some(p) = pools {
        p.await??;
    }
    http.await??;
    tracing::info!("stopped");
    Ok(())
}
