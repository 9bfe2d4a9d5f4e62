//! The fair reference of `bench receiver`: a bare axum + sqlx handler that stores each
//! request's body with one autocommitted INSERT and answers 200: no parsing, no
//! authentication, no job. It runs as its own process (`bench reference-serve`) on the same
//! database with the same pool size, under the same load generator as `issuesync serve`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::BenchError;
use crate::config::Settings;
use crate::db::{Db, PoolSettings};
use crate::sync::Services;

/// The table both the bare handler and pgbench insert into.
pub async fn create_table(state: &Services) -> Result<(), BenchError> {
    match &state.db {
        Db::Pg(p) => {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_ingest (id BIGSERIAL PRIMARY KEY, delivery_key TEXT NOT NULL UNIQUE, \
                 body BYTEA NOT NULL, received_at BIGINT NOT NULL)",
            )
            .execute(p)
            .await?;
        }
        Db::Sqlite(p) => {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_ingest (id INTEGER PRIMARY KEY AUTOINCREMENT, delivery_key TEXT NOT NULL UNIQUE, \
                 body BLOB NOT NULL, received_at BIGINT NOT NULL)",
            )
            .execute(p)
            .await?;
        }
    }
    Ok(())
}

async fn ingest(State(db): State<Db>, body: Bytes) -> (StatusCode, &'static str) {
    let key = uuid::Uuid::new_v4().to_string();
    let r = crate::on_pool!(&db, |p| sqlx::query(
        "INSERT INTO bench_ingest (delivery_key, body, received_at) VALUES ($1, $2, $3)"
    )
    .bind(&key)
    .bind(body.as_ref())
    .bind(crate::now_ms())
    .execute(p)
    .await
    .map(|_| ()));
    match r {
        Ok(()) => (StatusCode::OK, "{\"status\":\"queued\"}"),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\":\"unavailable\"}",
        ),
    }
}

/// Serves the bare handler on `settings.bind` until the process is stopped.
pub async fn serve(settings: &Settings) -> Result<(), BenchError> {
    let db = Db::connect(
        &settings.database_url,
        &PoolSettings {
            max_connections: settings.database.max_connections,
            acquire_timeout: std::time::Duration::from_millis(settings.database.acquire_timeout_ms),
        },
    )
    .await
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/extensions/vsts/issue-updated/", post(ingest))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind(&settings.bind)
        .await
        .map_err(|e| BenchError::Setup(format!("cannot listen on {}: {e}", settings.bind)))?;
    axum::serve(listener, app)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))
}
