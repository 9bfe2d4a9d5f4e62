//! The composition root: builds the application once, for `main`, the bench and the tests
//! (Zero To Production style). Nothing else imports it.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::db::{Db, DbError, PoolSettings};
use crate::domain::caches::Caches;
use crate::domain::snowflake::{SequenceSource, Snowflake};
use crate::kv::{Kv, KvError};
use crate::providers::http::Http;
use crate::receiver::state::HttpState;
use crate::sync::Services;

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
pub async fn build_state(settings: Settings) -> Result<Services, StartupError> {
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
    let caches = Caches::new(kv.clone(), &settings.cache);
    let mut http = Http::new(
        kv.clone(),
        &settings.rate_limits_per_second(),
        Duration::from_millis(settings.http.provider_timeout_ms),
    );
    // While Redis is unavailable, each process takes its share of the rate (÷ live workers).
    http.limiter = http.limiter.with_fallback_share(
        db.clone(),
        settings.queue.heartbeat_secs * u64::from(settings.queue.missed_heartbeats),
        settings.redis_url.as_deref(),
    );
    Ok(Services::new(db, kv, caches, http, snowflake, settings))
}

/// A bound but not yet serving HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    listener: TcpListener,
    router: Router,
    limits: crate::receiver::serve::Limits,
    /// `/metrics` on its own address (`metrics_bind`).
    metrics: Option<(TcpListener, Router)>,
    state: HttpState,
}

async fn listen(addr: &str) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartupError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok((listener, local))
}

/// The connection cap that fits the file-descriptor limit: the soft limit is raised to the
/// hard one first, and 256 descriptors stay for the database, Redis and provider calls.
fn connection_cap(configured: usize) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let fits = usize::try_from(limit.saturating_sub(256))
        .unwrap_or(usize::MAX)
        .max(16);
    if fits < configured {
        tracing::info!(
            configured,
            nofile = limit,
            cap = fits,
            "http.max_connections lowered to fit the file-descriptor limit"
        );
    }
    configured.min(fits)
}

pub async fn bind(services: Services) -> Result<Server, StartupError> {
    let state = HttpState::new(services);
    let (listener, addr) = listen(&state.settings.bind).await?;
    let metrics = match &state.settings.metrics_bind {
        Some(m) => Some((
            listen(m).await?.0,
            crate::receiver::metrics_router(state.clone()),
        )),
        None => None,
    };
    let http = &state.settings.http;
    Ok(Server {
        addr,
        listener,
        router: crate::receiver::router(state.clone()),
        limits: crate::receiver::serve::Limits {
            max_connections: connection_cap(http.max_connections),
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            drain_timeout: Duration::from_millis(http.drain_timeout_ms),
        },
        metrics,
        state,
    })
}

impl Server {
    /// The address `/metrics` is served on when `metrics_bind` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(crate::receiver::health::refresh_queue_gauges(
            self.state.services.clone(),
            stop.clone(),
        ));
        if let Some((listener, router)) = self.metrics {
            let stop = stop.clone();
            let limits = self.limits.clone();
            tokio::spawn(async move {
                let done = async move { stop.cancelled().await };
                crate::receiver::serve::serve(listener, router, limits, done).await
            });
        }
        let result =
            crate::receiver::serve::serve(self.listener, self.router, self.limits, shutdown).await;
        stop.cancel();
        result
    }
}

/// `/metrics` alone on `metrics_bind`, for processes without a receiver (`issuesync work`);
/// None when `metrics_bind` is unset.
pub async fn serve_metrics_only(
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, StartupError> {
    let state = HttpState::new(services);
    let Some(addr) = state.settings.metrics_bind.clone() else {
        return Ok(None);
    };
    let (listener, local) = listen(&addr).await?;
    tracing::info!(addr = %local, "metrics listening");
    let limits = crate::receiver::serve::Limits {
        max_connections: 64,
        header_read_timeout: Duration::from_millis(state.settings.http.header_read_timeout_ms),
        drain_timeout: Duration::from_millis(state.settings.http.drain_timeout_ms),
    };
    let router = crate::receiver::metrics_router(state.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::receiver::health::refresh_queue_gauges(
        state.services,
        stop.clone(),
    ));
    Ok(Some(tokio::spawn(async move {
        let r = crate::receiver::serve::serve(listener, router, limits, shutdown).await;
        stop.cancel();
        r
    })))
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
