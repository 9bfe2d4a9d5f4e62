//! Typed configuration: `config/default.toml`, then `config/$ISSUESYNC_ENV.toml`, then the
//! conventional variables (`DATABASE_URL`, `REDIS_URL`), then `ISSUESYNC_<SECTION>__<KEY>`.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The defaults compiled in, so that the binary runs even without a `config/` folder.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Settings {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Unset: in-process cache, sequences and rate-limit buckets (one process only).
    pub redis_url: Option<String>,
    /// Receiver address.
    pub bind: String,
    /// Absolute URL that providers reach us at.
    pub public_url: String,
    /// Bearer token for /api/v1 and /ops. Unset: those routes answer 401.
    pub admin_token: Option<String>,
    /// `text` or `json`.
    pub log_format: String,
    /// Where Atlassian serves the public keys of Connect install callbacks.
    pub jira_install_keys_url: String,
    pub database: DatabaseSettings,
    pub snowflake: SnowflakeSettings,
    pub cache: CacheSettings,
    pub http: HttpSettings,
    pub queue: QueueSettings,
    pub discord: DiscordSettings,
    #[serde(default)]
    pub jira_server: JiraServerSettings,
    #[serde(default)]
    pub sync_decisions: SyncDecisionSettings,
    /// Provider requests per second, per integration, by provider key.
    pub rate_limit: std::collections::HashMap<String, u32>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct QueueSettings {
    /// Jobs run at once per queue, per worker process.
    pub concurrency: std::collections::BTreeMap<String, usize>,
    /// Worker heartbeat; a worker silent for `heartbeat_secs * missed_heartbeats` is dead
    /// and its running jobs are rescued by the next heartbeat of another worker.
    pub heartbeat_secs: u64,
    pub missed_heartbeats: u32,
    /// Safety-net poll of an idle worker (Postgres also wakes on LISTEN/NOTIFY).
    pub poll_interval_ms_postgres: u64,
    /// SQLite has no cross-process notification; it polls this often.
    pub poll_interval_ms_sqlite: u64,
    /// Retry delay: `base * 2^(attempt-1)`, capped, times a jitter in [0.75, 1].
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    /// How long in-flight jobs may take to finish after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Jobs fetched per round trip. 1 fetches only when a slot is free; more is faster, but
    /// a graceful shutdown hands back the fetched-but-unstarted jobs with one attempt used
    /// (apalis counts them).
    #[serde(default = "one")]
    pub fetch_batch_size: usize,
    /// Retention of finished jobs (purged hourly).
    pub retention_done_days: u64,
    pub retention_dead_days: u64,
}

fn body_timeout_ms() -> u64 {
    5_000
}

fn provider_timeout_ms() -> u64 {
    30_000
}

fn one() -> usize {
    1
}

impl QueueSettings {
    pub fn concurrency_of(&self, queue: &str) -> usize {
        self.concurrency.get(queue).copied().unwrap_or(2).max(1)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SyncDecisionSettings {
    /// Sync decisions older than this are pruned by the hourly maintenance job.
    pub retention_days: u64,
}

impl Default for SyncDecisionSettings {
    fn default() -> Self {
        SyncDecisionSettings { retention_days: 30 }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DiscordSettings {
    /// Discord's REST API, for the follow-up webhooks of deferred interactions.
    pub api_base_url: String,
    /// Work on an interaction that takes longer than this is deferred to a job (Discord
    /// waits 3 s for the answer).
    pub inline_budget_ms: u64,
    /// Requests whose signed timestamp is further than this from our clock are refused.
    pub max_timestamp_skew_secs: i64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JiraServerSettings {
    /// Name of the webhook an install registers; Sentry's, so that Jira admins who know
    /// Sentry's integration recognise it.
    pub webhook_name: String,
}

impl Default for JiraServerSettings {
    fn default() -> Self {
        JiraServerSettings {
            webhook_name: "Sentry Issue Sync".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SnowflakeSettings {
    /// 12-bit region id; 0 in a single-region deployment.
    pub region_id: u64,
    /// Unix seconds of the epoch; 1659916800 = 2022-08-08 UTC.
    pub epoch_start: i64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CacheSettings {
    /// Django's KEY_PREFIX: keys are `{prefix}:{version}:{key}`.
    pub key_prefix: String,
    /// Django's VERSION.
    pub version: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct HttpSettings {
    /// Webhook and API body limit.
    pub body_limit_bytes: usize,
    /// Whole-request timeout of the receiver.
    pub request_timeout_ms: u64,
    /// A request body must arrive within this (408 otherwise); below `request_timeout_ms`.
    #[serde(default = "body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Whole-request timeout of calls to provider APIs (a timeout is retried with backoff).
    #[serde(default = "provider_timeout_ms")]
    pub provider_timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads settings. `explicit` is `--config PATH`; it replaces `config/$ISSUESYNC_ENV.toml`.
    pub fn load(explicit: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        let on_disk = Path::new("config/default.toml");
        if on_disk.exists() {
            fig = fig.merge(Toml::file(on_disk));
        }
        // Set but empty (an `ISSUESYNC_ENV=` line in an env file) means unset.
        if let Some(env) = std::env::var("ISSUESYNC_ENV")
            .ok()
            .filter(|e| !e.trim().is_empty())
        {
            let p = PathBuf::from(format!("config/{env}.toml"));
            if !p.exists() {
                return Err(ConfigError::Read {
                    path: p,
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            fig = fig.merge(Toml::file(p));
        }
        if let Some(p) = explicit {
            if let Err(source) = std::fs::metadata(p) {
                return Err(ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                });
            }
            fig = fig.merge(Toml::file(p));
        }
        let settings: Settings = fig
            .merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL"]))
            .merge(Env::prefixed("ISSUESYNC_").split("__"))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Settings for tests: the compiled defaults plus overrides, without reading the environment.
    pub fn for_tests(database_url: &str, redis_url: Option<&str>) -> Result<Settings, ConfigError> {
        let mut s: Settings = Figment::from(Toml::string(DEFAULT_TOML))
            .extract()
            .map_err(Box::new)?;
        s.database_url = database_url.to_string();
        s.redis_url = redis_url.map(str::to_string);
        s.bind = "127.0.0.1:0".into();
        s.admin_token = Some("test-admin-token".into());
        // Fast enough for tests: 1 s retry base, a dead worker noticed after 5 s (not less:
        // a busy test machine can delay a live worker's heartbeat by seconds).
        s.queue.backoff_base_ms = 1000;
        s.queue.heartbeat_secs = 1;
        s.queue.missed_heartbeats = 5;
        s.queue.shutdown_timeout_secs = 10;
        s.validate()?;
        Ok(s)
    }

    pub fn with_overrides(self, patch: serde_json::Value) -> Result<Settings, ConfigError> {
        let s: Settings = Figment::from(Serialized::defaults(self))
            .merge(Serialized::defaults(patch))
            .extract()
            .map_err(Box::new)?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.snowflake.region_id >> 12 != 0 {
            return Err(ConfigError::Invalid(
                "snowflake.region_id exceeds 12 bits".into(),
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log_format must be text or json, not {:?}",
                self.log_format
            )));
        }
        if self.queue.heartbeat_secs == 0 || self.queue.missed_heartbeats == 0 {
            return Err(ConfigError::Invalid(
                "queue.heartbeat_secs and queue.missed_heartbeats must be positive".into(),
            ));
        }
        if let Some(q) = self
            .queue
            .concurrency
            .keys()
            .find(|q| !issuesync_jobs::queues::ALL.contains(&q.as_str()))
        {
            return Err(ConfigError::Invalid(format!(
                "queue.concurrency names an unknown queue {q:?}"
            )));
        }
        if self.http.body_timeout_ms >= self.http.request_timeout_ms {
            return Err(ConfigError::Invalid(
                "http.body_timeout_ms must be below http.request_timeout_ms".into(),
            ));
        }
        if self.redis_url.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::Invalid("REDIS_URL is set but empty".into()));
        }
        Ok(())
    }
}
