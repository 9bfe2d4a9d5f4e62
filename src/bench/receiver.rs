//! `bench receiver`: sustained Azure DevOps webhook ingest against `issuesync serve`, from a
//! load-generator process on loopback, at fixed rates and at the maximum. Every answer
//! counted as ok was committed first (the receiver never answers 2xx before the commit);
//! the report checks that the stored deliveries match. `pgbench` inserting the same payload
//! into a one-table schema on the same Postgres is the physical reference.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::load::LoadReport;
use super::{BenchError, WorkerProc};
use crate::store::integrations::{self, NewIntegration};
use crate::sync::Services;

pub const ADO_PAYLOAD: &str =
    include_str!("../../tests/fixtures/vsts_workitem_updated_assignee_change.json");
const SECRET: &str = "bench-shared-secret";

/// The ADO fixture with a fresh notification id: each request is a new delivery.
pub fn ado_body(template: &Value, i: u64) -> Vec<u8> {
    let mut v = template.clone();
    v["id"] = json!(format!("bench-{}-{i}", std::process::id()));
    serde_json::to_vec(&v).unwrap_or_default()
}

#[derive(Debug, Serialize)]
pub struct PgbenchReport {
    pub clients: usize,
    pub tps: f64,
    pub latency_avg_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ReceiverReport {
    pub backend: &'static str,
    pub payload_bytes: usize,
    pub runs: Vec<LoadReport>,
    /// The bare axum + sqlx handler (one INSERT per request) at the same rates, each run
    /// right after ours.
    pub reference_runs: Vec<LoadReport>,
    /// Answered "queued" in all runs, and deliveries stored: equal when nothing was lost.
    pub acknowledged: u64,
    pub stored: i64,
    pub pgbench: Option<PgbenchReport>,
}

/// A free loopback port.
pub(super) fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Setup(format!("no free port: {e}")))
}

/// The bench's ADO integration (secret `SECRET`), created once.
pub(super) async fn seed(state: &Services) -> Result<(), BenchError> {
    let template: Value =
        serde_json::from_str(ADO_PAYLOAD).map_err(|e| BenchError::Setup(e.to_string()))?;
    let collection = template
        .pointer("/resourceContainers/collection/id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut tx = state.db.begin_write().await?;
    if integrations::find_integration_by_external_id(&mut tx, "vsts", &collection)
        .await?
        .is_none()
    {
        integrations::insert_integration(
            &mut tx,
            &NewIntegration {
                provider: "vsts",
                external_id: &collection,
                name: "bench",
                metadata: &json!({"subscription": {"id": "bench", "secret": SECRET}}),
            },
            crate::now_ms(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn count_deliveries(state: &Services) -> Result<i64, BenchError> {
    let mut tx = state.db.begin().await?;
    Ok(crate::store::deliveries::count_deliveries(&mut tx).await?)
}

/// How `spawn_receiver_with` starts its process.
#[derive(Default)]
pub struct ServeOptions {
    /// RLIMIT_NOFILE of the process (through `prlimit`).
    pub nofile: Option<u64>,
    pub env: Vec<(String, String)>,
    /// Run `bench reference-serve` (the bare handler) instead of `serve`.
    pub reference: bool,
}

/// Starts `issuesync serve` on a free port and waits until it answers.
pub async fn spawn_receiver(
    state: &Services,
    config: Option<&std::path::Path>,
) -> Result<(WorkerProc, String), BenchError> {
    spawn_receiver_with(state, config, &ServeOptions::default()).await
}

pub async fn spawn_receiver_with(
    state: &Services,
    config: Option<&std::path::Path>,
    opts: &ServeOptions,
) -> Result<(WorkerProc, String), BenchError> {
    let port = free_port()?;
    let exe = std::env::current_exe().map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut cmd = match opts.nofile {
        Some(n) => {
            let mut c = std::process::Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if opts.reference {
        cmd.args(["bench", "reference-serve"]);
    } else {
        cmd.arg("serve");
    }
    cmd.env("DATABASE_URL", &state.settings.database_url)
        .env("ISSUESYNC_BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null());
    if let Some(r) = &state.settings.redis_url {
        cmd.env("REDIS_URL", r);
    }
    let proc = WorkerProc(
        cmd.spawn()
            .map_err(|e| BenchError::Setup(format!("cannot start serve: {e}")))?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        if Instant::now() > deadline {
            return Err(BenchError::Setup("issuesync serve did not come up".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((proc, base))
}

/// Runs the load generator process (`bench load`) against `base`'s ADO route.
pub(super) async fn run_load(
    base: &str,
    rate: Option<f64>,
    duration: Duration,
    connections: usize,
) -> Result<LoadReport, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args([
        "bench",
        "load",
        "--url",
        &format!("{base}/extensions/vsts/issue-updated/"),
    ])
    .args(["--duration-secs", &duration.as_secs().to_string()])
    .args(["--connections", &connections.to_string()])
    .args(["--header", &format!("shared-secret:{SECRET}")])
    .args(["--header", "content-type:application/json"])
    .arg("--json");
    if let Some(r) = rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| BenchError::Setup(format!("load generator: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Setup(format!(
            "load generator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| BenchError::Setup(format!("load generator output: {e}")))
}

pub async fn receiver(
    state: &Services,
    rates: &[Option<f64>],
    duration: Duration,
    connections: usize,
    reference: bool,
    config: Option<&std::path::Path>,
) -> Result<ReceiverReport, BenchError> {
    seed(state).await?;
    let before = count_deliveries(state).await?;
    let (_serve, base) = spawn_receiver(state, config).await?;
    let bare = if reference {
        super::reference::create_table(state).await?;
        Some(
            spawn_receiver_with(
                state,
                config,
                &ServeOptions {
                    reference: true,
                    ..Default::default()
                },
            )
            .await?,
        )
    } else {
        None
    };
    let mut runs = Vec::new();
    let mut reference_runs = Vec::new();
    for rate in rates {
        let label = rate.map_or("max rate".into(), |r| format!("{r} req/s"));
        eprintln!("receiver: {label} for {}s", duration.as_secs());
        runs.push(run_load(&base, *rate, duration, connections).await?);
        // Side by side: the bare handler right after ours, under the same generator.
        if let Some((_, bare_base)) = &bare {
            eprintln!(
                "receiver: bare handler, {label} for {}s",
                duration.as_secs()
            );
            reference_runs.push(run_load(bare_base, *rate, duration, connections).await?);
        }
    }
    let acknowledged = runs.iter().map(|r| r.ok).sum();
    let stored = count_deliveries(state).await? - before;
    let pgbench = match &state.db {
        crate::db::Db::Pg(_) => Some(pgbench(state, connections, duration).await?),
        crate::db::Db::Sqlite(_) => None,
    };
    Ok(ReceiverReport {
        backend: state.db.backend(),
        payload_bytes: ADO_PAYLOAD.len(),
        runs,
        reference_runs,
        acknowledged,
        stored,
        pgbench,
    })
}

/// Single-row inserts of the same payload with a unique key, by pgbench, same client count.
async fn pgbench(
    state: &Services,
    clients: usize,
    duration: Duration,
) -> Result<PgbenchReport, BenchError> {
    if let crate::db::Db::Pg(p) = &state.db {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_ingest (id BIGSERIAL PRIMARY KEY, delivery_key TEXT NOT NULL UNIQUE, \
             body BYTEA NOT NULL, received_at BIGINT NOT NULL)",
        )
        .execute(p)
        .await?;
    }
    let dir = std::env::temp_dir().join(format!("issuesync-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Setup(e.to_string()))?;
    let script = dir.join("insert.sql");
    let payload = ADO_PAYLOAD.replace('\'', "''").replace('\n', " ");
    std::fs::write(
        &script,
        format!(
            "INSERT INTO bench_ingest (delivery_key, body, received_at) VALUES \
             (md5(random()::text || clock_timestamp()::text), convert_to('{payload}', 'UTF8'), 0);\n"
        ),
    )
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let out = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &duration.as_secs().to_string(),
        ])
        .arg("-f")
        .arg(&script)
        .arg(&state.settings.database_url)
        .output()
        .await
        .map_err(|e| {
            BenchError::Setup(format!(
                "pgbench (install postgresql-contrib or the client): {e}"
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let grab = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let tps = grab("tps =").ok_or_else(|| {
        BenchError::Setup(format!(
            "pgbench printed no tps: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    Ok(PgbenchReport {
        clients,
        tps,
        latency_avg_ms: grab("latency average =").unwrap_or(0.0),
    })
}
