//! `issuesync bench …`: the benchmark and chaos harness (bench/README.md runs it).

use std::path::Path;

use clap::Subcommand;

use issuesync::config::Settings;
use issuesync::startup;

#[derive(Subcommand)]
pub enum BenchCmd {
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
        /// RUST_LOG of the worker processes; `info` is what a deployment runs (every job gets
        /// its span), `warn` leaves the job spans disabled.
        #[arg(long, default_value = "warn")]
        worker_log: String,
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
pub enum ChaosCmd {
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
        /// Webhooks sent per second (every one is drained by the workers afterwards).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        rate: u32,
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

/// The state of a bench run, its database migrated.
async fn migrated(settings: Settings) -> anyhow::Result<issuesync::sync::Services> {
    let state = startup::build_state(settings).await?;
    state.db.migrate().await?;
    Ok(state)
}

pub async fn bench(settings: Settings, config: Option<&Path>, cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Pickup {
            samples,
            gap_ms,
            json,
        } => {
            let state = migrated(settings).await?;
            let r = issuesync::bench::pickup(
                &state,
                samples,
                std::time::Duration::from_millis(gap_ms),
                config,
            )
            .await?;
            if json {
                return super::print_json(&r);
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
        BenchCmd::Queue {
            jobs,
            processes,
            concurrency,
            fetch_batch,
            worker_log,
            json,
        } => {
            let state = migrated(settings).await?;
            let r = issuesync::bench::queue::burn_down(
                &state,
                jobs,
                (processes, concurrency),
                fetch_batch,
                &worker_log,
                config,
            )
            .await?;
            if json {
                return super::print_json(&r);
            }
            println!(
                "{}: {} jobs, {} processes × {} concurrency, {} per fetch, workers' RUST_LOG {}",
                r.backend, r.jobs, r.processes, r.concurrency, r.fetch_batch, r.worker_log
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
        BenchCmd::ReferenceServe => {
            issuesync::bench::reference::serve(&settings).await?;
            Ok(())
        }
        BenchCmd::Receiver {
            rates,
            duration_secs,
            connections,
            reference,
            json,
        } => {
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
            let state = migrated(settings).await?;
            let r = issuesync::bench::receiver::receiver(
                &state,
                &rates,
                std::time::Duration::from_secs(duration_secs),
                connections,
                reference,
                config,
            )
            .await?;
            if json {
                return super::print_json(&r);
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
        BenchCmd::E2e {
            webhooks,
            rate_limit,
            outbound_concurrency,
            json,
        } => {
            let state = migrated(settings).await?;
            let r = issuesync::bench::e2e::e2e(
                &state,
                webhooks,
                rate_limit,
                outbound_concurrency,
                config,
            )
            .await?;
            if json {
                return super::print_json(&r);
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
        BenchCmd::Chaos(scenario) => {
            let state = migrated(settings).await?;
            use issuesync::bench::chaos::{self, Invariants};
            fn out<R: serde::Serialize + Invariants>(
                r: R,
                json: bool,
                check: bool,
            ) -> anyhow::Result<()> {
                if json {
                    super::print_json(&r)?;
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
                    rate,
                    json,
                    check,
                } => out(
                    chaos::restart(
                        &state,
                        &target,
                        secs,
                        std::time::Duration::from_secs(down_secs),
                        rate,
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
        BenchCmd::Load {
            url,
            rate,
            duration_secs,
            connections,
            header,
            json: _,
        } => {
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
            super::print_json(&r)
        }
        BenchCmd::Invalidate {
            groups,
            recent,
            json,
        } => {
            let state = migrated(settings).await?;
            let r = issuesync::bench::invalidate(&state, groups, recent).await?;
            if json {
                return super::print_json(&r);
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
    }
}
