//! Builds the application once, for `main` and for the tests (Zero To Production style).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::db::{Db, DbError, PoolSettings};
use crate::domain::caches::Caches;
use crate::domain::project::Ctx;
use crate::domain::snowflake::{SequenceSource, Snowflake};
use crate::kv::{Kv, KvError};
use crate::providers::http::Http;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub kv: Kv,
    pub caches: Caches,
    pub http: Http,
    pub snowflake: Snowflake,
    pub settings: Arc<Settings>,
    /// Webhook requests this process refused lately (the ops page shows them).
    pub refusals: Arc<crate::receiver::refusals::RefusalLog>,
    /// Active integrations by (provider, external id), for the receiver: a few seconds
    /// stale at most (see `INTEGRATION_CACHE_TTL`).
    pub integrations:
        moka::future::Cache<(String, String), crate::store::integrations::Integration>,
    /// Writes successful job attempts in batches (worker processes only use it).
    pub completer: crate::worker::completer::Completer,
}

impl AppState {
    /// Our Atlassian Connect app key (`iss` of outbound Jira Cloud requests): the host of
    /// the public URL plus ".jira", as Sentry does.
    pub fn jira_app_key(&self) -> String {
        let host = self
            .settings
            .public_url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split(['/', ':'])
            .next()
            .unwrap_or("");
        format!("{host}.jira")
    }

    pub fn domain_ctx(&self) -> Ctx<'_> {
        Ctx {
            db: &self.db,
            kv: &self.kv,
            snowflake: &self.snowflake,
        }
    }
}

/// How long the receiver trusts a looked-up integration: a disabled integration or a
/// rotated secret takes effect within this.
pub const INTEGRATION_CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot connect to Redis: {0}")]
    Kv(#[from] KvError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Connects to the database (and Redis when configured). Does not migrate.
pub async fn build_state(settings: Settings) -> Result<AppState, StartupError> {
    crate::telemetry::metrics();
    let db = Db::connect(
        &settings.database_url,
        &PoolSettings {
            max_connections: settings.database.max_connections,
            acquire_timeout: Duration::from_millis(settings.database.acquire_timeout_ms),
        },
    )
    .await?;
    let kv = Kv::connect(settings.redis_url.as_deref()).await?;
    let snowflake = Snowflake {
        sequence: SequenceSource::from_kv(&kv),
        region_id: settings.snowflake.region_id,
        epoch_start: settings.snowflake.epoch_start,
    };
    Ok(AppState {
        db,
        caches: Caches::new(kv.clone(), &settings.cache),
        http: Http::new(
            kv.clone(),
            &settings.rate_limit,
            Duration::from_millis(settings.http.provider_timeout_ms),
        ),
        kv,
        snowflake,
        settings: Arc::new(settings),
        refusals: Arc::default(),
        completer: Default::default(),
        integrations: moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(INTEGRATION_CACHE_TTL)
            .build(),
    })
}

/// A bound but not yet serving HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    listener: TcpListener,
    router: Router,
}

pub async fn bind(state: AppState) -> Result<Server, StartupError> {
    let addr = state.settings.bind.clone();
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| StartupError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?;
    Ok(Server {
        addr,
        listener,
        router: crate::receiver::router(state),
    })
}

impl Server {
    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
