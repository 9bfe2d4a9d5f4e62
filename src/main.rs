//! The `issuesync` command line; README's "Commands" lists every command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

use issuesync::config::Settings;
use issuesync::ops;
use issuesync::startup::{self, AppState};
use issuesync::store::jobs::JobFilter;

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

#[derive(Subcommand)]
enum DeliveriesCmd {
    /// Recent deliveries, newest first.
    List {
        #[arg(long, value_parser = ["vsts", "jira", "jira_server", "discord"])]
        provider: Option<String>,
        /// At most 1000; more are paged with --before.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only deliveries older than this id (the next page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Enqueue a stored delivery again.
    Replay { id: i64 },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Idle pickup latency (enqueue commit -> start, worker in another process) and the delay
    /// error of scheduled jobs.
    Pickup {
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Idle time before each sample.
        #[arg(long, default_value_t = 100)]
        gap_ms: u64,
        #[arg(long)]
        json: bool,
    },
    /// Burn-down: insert N no-op jobs, then drain them with P worker processes × C.
    Queue {
        #[arg(long, default_value_t = 200_000)]
        jobs: usize,
        #[arg(long, default_value_t = 2)]
        processes: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Jobs per fetch (queue.fetch_batch_size of the workers).
        #[arg(long, default_value_t = 1)]
        fetch_batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// Sustained ADO webhook ingest against `issuesync serve` at fixed rates and the max
    /// (plus pgbench single-row inserts of the same payload on Postgres).
    Receiver {
        /// Comma-separated requests/s; "max" runs closed-loop.
        #[arg(long, default_value = "500,2000,max", value_delimiter = ',')]
        rates: Vec<String>,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Also run the bare axum + sqlx handler (one INSERT a request) after each rate.
        #[arg(long)]
        reference: bool,
        #[arg(long)]
        json: bool,
    },
    /// The bare reference handler of `bench receiver --reference` (one INSERT a request).
    #[command(hide = true)]
    ReferenceServe,
    /// N Jira Server assignee webhooks until every assignment reached a mock Jira (20 ms).
    E2e {
        #[arg(long, default_value_t = 10_000)]
        webhooks: u64,
        /// Requests/s allowed to the outbound Jira (rate_limit.jira_server).
        #[arg(long, default_value_t = 100)]
        rate_limit: u32,
        /// Outbound slots of the worker (queue.concurrency.outbound); default: the config's.
        #[arg(long)]
        outbound_concurrency: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Reliability scenarios: kill workers, restart Postgres or Redis, a provider storm.
    #[command(subcommand)]
    Chaos(ChaosCmd),
    /// The load generator process of `bench receiver` (POSTs ADO webhooks).
    #[command(hide = true)]
    Load {
        #[arg(long)]
        url: String,
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// name:value, repeatable.
        #[arg(long)]
        header: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Project-wide cache invalidation (batched job vs one DEL per key); Postgres + Redis.
    Invalidate {
        #[arg(long, default_value_t = 1_000_000)]
        groups: usize,
        #[arg(long, default_value_t = 400_000)]
        recent: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ChaosCmd {
    /// Idle connections and a slowloris (optionally under a low descriptor limit) while
    /// /healthz is probed on fresh connections.
    Connections {
        #[arg(long, default_value_t = 2000)]
        idle: usize,
        #[arg(long, default_value_t = 200)]
        slowloris: usize,
        /// RLIMIT_NOFILE of the server process.
        #[arg(long)]
        nofile: Option<u64>,
        #[arg(long, default_value_t = 20)]
        secs: u64,
        #[arg(long)]
        json: bool,
        /// Exit 1 when /healthz p99 > 100 ms, a probe fails or no slowloris is closed.
        #[arg(long)]
        check: bool,
    },
    /// N concurrent 1 MiB bodies; the server's resident memory before, during and after.
    Bodies {
        #[arg(long, default_value_t = 400)]
        bodies: usize,
        #[arg(long)]
        json: bool,
        /// Exit 1 when the memory after the burst is over twice the idle memory.
        #[arg(long)]
        check: bool,
    },
    /// Unauthenticated 1 MiB requests to every webhook route while /healthz is probed.
    Flood {
        #[arg(long, default_value_t = 48)]
        connections: usize,
        #[arg(long, default_value_t = 20)]
        secs: u64,
        #[arg(long)]
        json: bool,
        /// Exit 1 when /healthz p99 > 100 ms or a probe fails.
        #[arg(long)]
        check: bool,
    },
    /// Concurrent /metrics scrapers over a large queue, webhooks at 100/s.
    Scrape {
        #[arg(long, default_value_t = 300_000)]
        jobs: usize,
        #[arg(long, default_value_t = 16)]
        scrapers: usize,
        #[arg(long, default_value_t = 20)]
        secs: u64,
        #[arg(long)]
        json: bool,
        /// Exit 1 when the webhook p99 with the scrapers is over 50 ms.
        #[arg(long)]
        check: bool,
    },
    /// Worker processes share a rate limit through a private Redis, which goes away.
    RedisDown {
        #[arg(long, default_value_t = 3)]
        workers: usize,
        #[arg(long, default_value_t = 50)]
        slots: usize,
        #[arg(long, default_value_t = 10)]
        rate_limit: u32,
        #[arg(long, default_value_t = 10)]
        down_secs: u64,
        #[arg(long)]
        json: bool,
        /// Exit 1 when the limit is exceeded, a Redis call took over 100 ms, or the
        /// fallback was not reported / logged once.
        #[arg(long)]
        check: bool,
    },
    /// SIGKILL a random worker process every few seconds during a burn-down (restarting it).
    Crash {
        #[arg(long, default_value_t = 50_000)]
        jobs: usize,
        #[arg(long, default_value_t = 3)]
        workers: usize,
        #[arg(long, default_value_t = 3.0)]
        kill_every_secs: f64,
        #[arg(long)]
        json: bool,
        /// Exit 1 when an invariant is broken (lost jobs, too many duplicates, slow recovery).
        #[arg(long)]
        check: bool,
    },
    /// Stop PostgreSQL (or Redis) for a while under webhook load, then start it again.
    Restart {
        #[arg(value_parser = ["postgres", "redis"])]
        target: String,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        #[arg(long, default_value_t = 5)]
        down_secs: u64,
        #[arg(long)]
        json: bool,
        /// Exit 1 when an invariant is broken (a lost delivery, a crash, slow recovery).
        #[arg(long)]
        check: bool,
    },
    /// The provider fails (30 % 5xx, 20 % 429, 10 % timeouts) for a while, then recovers.
    Storm {
        #[arg(long, default_value_t = 500)]
        jobs: usize,
        #[arg(long, default_value_t = 120)]
        storm_secs: u64,
        #[arg(long, default_value_t = 20)]
        rate_limit: u32,
        #[arg(long)]
        json: bool,
        /// Exit 1 when an invariant is broken (limit exceeded, a 429 charged, a job unfinished).
        #[arg(long)]
        check: bool,
    },
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

#[derive(Subcommand)]
enum JobsCmd {
    /// List jobs.
    List {
        #[arg(long, value_parser = ["pending", "running", "failed", "dead", "done", "scheduled"])]
        state: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        /// Only jobs of this kind.
        #[arg(long)]
        job: Option<String>,
        /// A text in the payload (e.g. an external issue key).
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One job: payload, attempts, last error, next run and the history of attempts.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Make jobs runnable now with attempts reset.
    Retry {
        ids: Vec<String>,
        /// Retry every job matching --state (and --queue).
        #[arg(long)]
        all: bool,
        #[arg(long, value_parser = ["failed", "dead"])]
        state: Option<String>,
        #[arg(long)]
        queue: Option<String>,
    },
    /// Stop jobs from running again (they move to dead, with a reason).
    Kill {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, default_value = "killed by an operator")]
        reason: String,
    },
    /// Delete finished jobs older than an age (e.g. 7d, 12h).
    Purge {
        #[arg(long, value_parser = ["done", "dead"])]
        state: String,
        #[arg(long)]
        older_than: String,
    },
    /// Counts per queue and state, oldest pending age, throughput of the last hour.
    Stats {
        #[arg(long)]
        json: bool,
    },
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
        Command::Bench(BenchCmd::Pickup {
            samples,
            gap_ms,
            json,
        }) => {
            let state = startup::build_state(settings).await?;
            state.db.migrate().await?;
            let r = issuesync::bench::pickup(
                &state,
                samples,
                std::time::Duration::from_millis(gap_ms),
                cli.config.as_deref(),
            )
            .await?;
            if json {
                return print_json(&r);
            }
            let p = |x: &issuesync::bench::Percentiles| {
                format!(
                    "min {:.1} ms  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} samples)",
                    x.min_ms, x.p50_ms, x.p99_ms, x.max_ms, x.samples
                )
            };
            println!("backend: {}", r.backend);
            println!(
                "idle pickup (commit -> start, other process): {}",
                p(&r.idle_pickup)
            );
            println!(
                "scheduled job start - due time:               {}",
                p(&r.scheduled_delay_error)
            );
            Ok(())
        }
        Command::Bench(BenchCmd::Queue {
            jobs,
            processes,
            concurrency,
            fetch_batch,
            json,
        }) => {
            let state = startup::build_state(settings).await?;
            state.db.migrate().await?;
            let r = issuesync::bench::queue::burn_down(
                &state,
                jobs,
                processes,
                concurrency,
                fetch_batch,
                cli.config.as_deref(),
            )
            .await?;
            if json {
                return print_json(&r);
            }
            println!(
                "{}: {} jobs, {} processes × {} concurrency, {} per fetch",
                r.backend, r.jobs, r.processes, r.concurrency, r.fetch_batch
            );
            println!(
                "insert: {:.1} s ({:.0} jobs/s)",
                r.insert_secs, r.inserts_per_sec
            );
            println!(
                "drain:  {:.1} s ({:.0} jobs/s), {} executions, worker RSS max {:.1} MiB",
                r.drain_secs, r.jobs_per_sec, r.executions, r.max_worker_rss_mib
            );
            Ok(())
        }
        Command::Bench(BenchCmd::ReferenceServe) => {
            issuesync::bench::reference::serve(&settings).await?;
            Ok(())
        }
        Command::Bench(BenchCmd::Receiver {
            rates,
            duration_secs,
            connections,
            reference,
            json,
        }) => {
            let rates = rates
                .iter()
                .map(|r| match r.as_str() {
                    "max" => Ok(None),
                    n => n
                        .parse::<f64>()
                        .map(Some)
                        .map_err(|_| anyhow::anyhow!("--rates takes numbers or max, not {n:?}")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let state = startup::build_state(settings).await?;
            state.db.migrate().await?;
            let r = issuesync::bench::receiver::receiver(
                &state,
                &rates,
                std::time::Duration::from_secs(duration_secs),
                connections,
                reference,
                cli.config.as_deref(),
            )
            .await?;
            if json {
                return print_json(&r);
            }
            println!(
                "{}: ADO payload {} bytes, {connections} connections",
                r.backend, r.payload_bytes
            );
            for run in &r.runs {
                println!(
                    "  target {:>8}: {:>7.0} req/s ok  p50 {:.1} ms  p99 {:.1} ms  p999 {:.1} ms  failed {}",
                    run.target_rate
                        .map_or("max".into(), |t| format!("{t:.0}/s")),
                    run.achieved_rate,
                    run.latency.p50_ms,
                    run.latency.p99_ms,
                    run.p999_ms,
                    run.failed
                );
            }
            println!("  acknowledged {} = stored {}", r.acknowledged, r.stored);
            if let Some(p) = &r.pgbench {
                println!(
                    "  pgbench single-row insert, {} clients: {:.0} tps, latency avg {:.2} ms",
                    p.clients, p.tps, p.latency_avg_ms
                );
            }
            Ok(())
        }
        Command::Bench(BenchCmd::E2e {
            webhooks,
            rate_limit,
            outbound_concurrency,
            json,
        }) => {
            let state = startup::build_state(settings).await?;
            state.db.migrate().await?;
            let r = issuesync::bench::e2e::e2e(
                &state,
                webhooks,
                rate_limit,
                outbound_concurrency,
                cli.config.as_deref(),
            )
            .await?;
            if json {
                return print_json(&r);
            }
            println!(
                "{}: {} webhooks stored in {:.1} s; drained in {:.1} s; {} assignments; {} outbound requests, {:.1}/s avg, {}/s max (limit {}/s, mock {} ms)",
                r.backend,
                r.webhooks,
                r.send_secs,
                r.drain_secs,
                r.assignments_applied,
                r.outbound_requests,
                r.outbound_per_sec_avg,
                r.outbound_per_sec_max,
                r.rate_limit_per_sec,
                r.mock_latency_ms
            );
            Ok(())
        }
        Command::Bench(BenchCmd::Chaos(scenario)) => {
            let state = startup::build_state(settings).await?;
            state.db.migrate().await?;
            let config = cli.config.as_deref();
            use issuesync::bench::chaos::{self, Invariants};
            fn out<R: serde::Serialize + Invariants>(
                r: R,
                json: bool,
                check: bool,
            ) -> anyhow::Result<()> {
                if json {
                    print_json(&r)?;
                } else {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                }
                let broken = r.violations();
                for b in &broken {
                    eprintln!("broken: {b}");
                }
                if check && !broken.is_empty() {
                    anyhow::bail!("{} invariant(s) broken", broken.len());
                }
                Ok(())
            }
            use issuesync::bench::{limiter, siege};
            match scenario {
                ChaosCmd::Connections {
                    idle,
                    slowloris,
                    nofile,
                    secs,
                    json,
                    check,
                } => out(
                    siege::connections(&state, idle, slowloris, nofile, secs, config).await?,
                    json,
                    check,
                ),
                ChaosCmd::Bodies {
                    bodies,
                    json,
                    check,
                } => out(siege::bodies(&state, bodies, config).await?, json, check),
                ChaosCmd::Flood {
                    connections,
                    secs,
                    json,
                    check,
                } => out(
                    siege::flood(&state, connections, secs, config).await?,
                    json,
                    check,
                ),
                ChaosCmd::Scrape {
                    jobs,
                    scrapers,
                    secs,
                    json,
                    check,
                } => out(
                    siege::scrape(&state, jobs, scrapers, secs, config).await?,
                    json,
                    check,
                ),
                ChaosCmd::RedisDown {
                    workers,
                    slots,
                    rate_limit,
                    down_secs,
                    json,
                    check,
                } => out(
                    limiter::redis_down(&state, workers, slots, rate_limit, down_secs, config)
                        .await?,
                    json,
                    check,
                ),
                ChaosCmd::Crash {
                    jobs,
                    workers,
                    kill_every_secs,
                    json,
                    check,
                } => out(
                    chaos::crash(
                        &state,
                        jobs,
                        workers,
                        std::time::Duration::from_secs_f64(kill_every_secs),
                        config,
                    )
                    .await?,
                    json,
                    check,
                ),
                ChaosCmd::Restart {
                    target,
                    secs,
                    down_secs,
                    json,
                    check,
                } => out(
                    chaos::restart(
                        &state,
                        &target,
                        secs,
                        std::time::Duration::from_secs(down_secs),
                        config,
                    )
                    .await?,
                    json,
                    check,
                ),
                ChaosCmd::Storm {
                    jobs,
                    storm_secs,
                    rate_limit,
                    json,
                    check,
                } => out(
                    chaos::storm(&state, jobs, storm_secs, rate_limit, config).await?,
                    json,
                    check,
                ),
            }
        }
        Command::Bench(BenchCmd::Load {
            url,
            rate,
            duration_secs,
            connections,
            header,
            json: _,
        }) => {
            let headers = header
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| anyhow::anyhow!("--header takes name:value"))?;
            let spec = issuesync::bench::load::LoadSpec {
                url,
                rate,
                duration: std::time::Duration::from_secs(duration_secs),
                connections,
                headers,
            };
            let template: serde_json::Value =
                serde_json::from_str(issuesync::bench::receiver::ADO_PAYLOAD)?;
            let r = issuesync::bench::load::run(&spec, move |i| {
                issuesync::bench::receiver::ado_body(&template, i)
            })
            .await?;
            print_json(&r)
        }
        Command::Bench(BenchCmd::Invalidate {
            groups,
            recent,
            json,
        }) => {
            let state = startup::build_state(settings).await?;
            state.db.migrate().await?;
            let r = issuesync::bench::invalidate(&state, groups, recent).await?;
            if json {
                return print_json(&r);
            }
            println!("{} groups, {} recent", r.groups, r.recent);
            println!(
                "batched job:  {:.2} s, {} Redis round trips, {} keys deleted",
                r.batched_secs, r.batched_round_trips, r.batched_keys_deleted
            );
            println!(
                "one DEL/key:  {:.2} s, {} Redis round trips",
                r.naive_secs, r.naive_round_trips
            );
            println!("speedup:      {:.1}x", r.speedup);
            Ok(())
        }
        Command::Deliveries(cmd) => {
            let state = startup::build_state(settings).await?;
            match cmd {
                DeliveriesCmd::List {
                    provider,
                    limit,
                    before,
                    json,
                } => {
                    let page =
                        ops::list_deliveries(&state.db, provider.as_deref(), before, limit).await?;
                    if let Some(next) = page.next_before {
                        eprintln!("more deliveries follow: page on with --before {next}");
                    }
                    let list = page.deliveries;
                    if json {
                        return print_json(&list);
                    }
                    println!(
                        "{:>8}  {:<11}  {:<19}  {:<40}  {:<26}  job state",
                        "id", "provider", "received (UTC)", "delivery key", "job"
                    );
                    for d in &list {
                        let key: String = d.delivery_key.chars().take(40).collect();
                        println!(
                            "{:>8}  {:<11}  {:<19}  {:<40}  {:<26}  {}",
                            d.id,
                            d.provider,
                            fmt_ms(d.received_at_ms),
                            key,
                            d.job_id.as_deref().unwrap_or("-"),
                            d.job_state.as_deref().unwrap_or("-")
                        );
                    }
                    Ok(())
                }
                DeliveriesCmd::Replay { id } => {
                    let r = ops::replay_delivery(&state.db, id).await?;
                    println!("delivery {id} enqueued as job {}", r.id());
                    Ok(())
                }
            }
        }
        Command::Jobs(cmd) => {
            let state = startup::build_state(settings).await?;
            jobs(&state, cmd).await
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
    state: AppState,
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

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

async fn jobs(state: &AppState, cmd: JobsCmd) -> anyhow::Result<()> {
    let db = &state.db;
    match cmd {
        JobsCmd::List {
            state: st,
            queue,
            job,
            search,
            limit,
            json,
        } => {
            let filter = JobFilter {
                state: st,
                queue,
                job_name: job,
                search,
                ids: None,
                ..Default::default()
            };
            let list = ops::list(db, &filter, limit).await?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<26}  {:<11}  {:<24}  {:<9}  {:>8}  {:<19}  last error",
                "id", "queue", "job", "state", "attempts", "next run (UTC)"
            );
            for j in &list {
                let err: String = j
                    .last_error
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(60)
                    .collect();
                println!(
                    "{:<26}  {:<11}  {:<24}  {:<9}  {:>4}/{:<3}  {:<19}  {}",
                    j.id,
                    j.queue,
                    j.job,
                    j.state,
                    j.attempts,
                    j.max_attempts,
                    fmt_ms(j.next_run_ms),
                    err
                );
            }
            Ok(())
        }
        JobsCmd::Show { id, json } => {
            let d = ops::show(db, &id).await?;
            if json {
                return print_json(&d);
            }
            let j = &d.job;
            println!(
                "id:          {}\nqueue:       {}\njob:         {}\nstate:       {}\nattempts:    {}/{}",
                j.id, j.queue, j.job, j.state, j.attempts, j.max_attempts
            );
            println!("next run:    {} UTC", fmt_ms(j.next_run_ms));
            println!("last error:  {}", j.last_error.as_deref().unwrap_or("-"));
            println!("dedup key:   {}", j.dedup_key.as_deref().unwrap_or("-"));
            println!("traceparent: {}", j.traceparent.as_deref().unwrap_or("-"));
            println!("payload:     {}", serde_json::to_string(&j.payload)?);
            if let Some(p) = &d.progress {
                println!(
                    "progress:    {} page(s), {} key(s) deleted, cursor {}",
                    p.pages, p.keys_deleted, p.cursor
                );
            }
            println!("history:");
            for a in &d.history {
                println!(
                    "  #{:<3} {:<8} {} ({} ms) on {}{}",
                    a.attempt,
                    a.outcome,
                    fmt_ms(a.started_at),
                    a.finished_at - a.started_at,
                    a.worker,
                    a.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        JobsCmd::Retry {
            ids,
            all,
            state: st,
            queue,
        } => {
            let valid = if all {
                ids.is_empty() && st.is_some()
            } else {
                !ids.is_empty()
            };
            if !valid {
                anyhow::bail!("give job ids, or --all --state failed|dead [--queue Q]");
            }
            let n = ops::retry(db, &ids, st.as_deref(), queue.as_deref()).await?;
            println!("retried {n} job(s)");
            Ok(())
        }
        JobsCmd::Kill { ids, reason } => {
            let n = ops::kill(db, &ids, &reason).await?;
            println!("killed {n} job(s)");
            if n < ids.len() as u64 {
                eprintln!(
                    "note: {} job(s) were unknown or already finished",
                    ids.len() as u64 - n
                );
            }
            Ok(())
        }
        JobsCmd::Purge {
            state: st,
            older_than,
        } => {
            let age = ops::parse_age(&older_than)?;
            let n = ops::purge(db, &st, age).await?;
            println!("purged {n} job(s)");
            Ok(())
        }
        JobsCmd::Stats { json } => {
            let s = ops::stats(db).await?;
            if json {
                return print_json(&s);
            }
            println!("{:<12} {:<10} {:>8}", "queue", "state", "count");
            for c in &s.counts {
                println!("{:<12} {:<10} {:>8}", c.queue, c.state, c.count);
            }
            for (q, age) in &s.oldest_pending_age_s {
                println!("oldest pending in {q}: {age}s");
            }
            for t in &s.last_hour {
                println!("last hour {:<12} {:<8} {:>8}", t.queue, t.outcome, t.count);
            }
            Ok(())
        }
    }
}
