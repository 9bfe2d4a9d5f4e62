//! Typed configuration: `config/default.toml`, then `config/$ISSUESYNC_ENV.toml`, then the
//! conventional variables (`DATABASE_URL`, `REDIS_URL`), then `ISSUESYNC_<SECTION>__<KEY>`.
//!
//! A little over 600 lines: every key, its default, its check and the unknown-key warning
//! sit together so that a key cannot be added without its validation.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
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
    #[serde(serialize_with = "expose_admin_token")]
    pub admin_token: Option<SecretString>,
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
    pub jira: JiraSettings,
    #[serde(default)]
    pub jira_server: JiraServerSettings,
    #[serde(default)]
    pub sync_decisions: SyncDecisionSettings,
    #[serde(default)]
    pub otel: OtelSettings,
    /// Provider requests per second, per integration, by provider key.
    pub rate_limit: std::collections::HashMap<String, RateLimit>,
    /// Serve `/metrics` on this address instead of the receiver's (worker processes serve
    /// it too when set). Unset: `/metrics` is a route of the receiver.
    #[serde(default)]
    pub metrics_bind: Option<String>,
}

/// A provider's rate limit: a positive number of requests per second, or `"unlimited"`
/// written out (a `0` is refused: it used to mean unlimited, which is easy to set by mistake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimit {
    PerSecond(std::num::NonZeroU32),
    Unlimited,
}

impl Serialize for RateLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RateLimit::PerSecond(n) => s.serialize_u32(n.get()),
            RateLimit::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        let refuse = |what: &str| {
            serde::de::Error::custom(format!(
                "a rate limit is a positive number of requests per second or \"unlimited\", not {what}"
            ))
        };
        let n = match Raw::deserialize(d)? {
            Raw::S(s) if s.trim().eq_ignore_ascii_case("unlimited") => {
                return Ok(RateLimit::Unlimited);
            }
            Raw::S(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| refuse(&format!("{s:?}")))?,
            Raw::N(n) => n,
        };
        u32::try_from(n)
            .ok()
            .and_then(std::num::NonZeroU32::new)
            .map(RateLimit::PerSecond)
            .ok_or_else(|| refuse(&n.to_string()))
    }
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

/// OTLP/HTTP trace export; off while `endpoint` is unset.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct OtelSettings {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`); spans go to `/v1/traces`
    /// under it unless the URL already ends so.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for OtelSettings {
    fn default() -> Self {
        OtelSettings {
            endpoint: None,
            service_name: "issuesync".into(),
        }
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

/// Our Atlassian Connect app, as its descriptor shows it to Jira Cloud.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JiraSettings {
    /// The app key; empty: the public URL's host + ".jira", as Sentry's. Jira keeps it per
    /// installation, so changing it later makes the sites install a second app.
    pub app_key: String,
    /// The app's name in a Jira site's "Manage apps".
    pub app_name: String,
}

impl Default for JiraSettings {
    fn default() -> Self {
        JiraSettings {
            app_key: String::new(),
            app_name: "issuesync".into(),
        }
    }
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
    /// Open connections at most (lowered to fit the file-descriptor limit). A connection
    /// accepted at the cap waits while idle ones (no request in flight, no response being
    /// written) are closed to make room; further ones wait in the listen backlog.
    #[serde(default = "max_connections")]
    pub max_connections: usize,
    /// A request's headers must arrive within this; also the keep-alive idle timeout.
    #[serde(default = "header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Request bodies of authenticated senders buffered at once, in bytes, across all
    /// requests (503 past it).
    #[serde(default = "max_buffered_body_bytes")]
    pub max_buffered_body_bytes: usize,
    /// Bodies read before their sender can be authenticated (Discord signs the body, Jira
    /// Cloud lifecycle callbacks name their tenant in it), buffered at once: a budget of
    /// their own, so that unauthenticated clients cannot hold the room authenticated
    /// webhooks need.
    #[serde(default = "max_unauthenticated_body_bytes")]
    pub max_unauthenticated_body_bytes: usize,
    /// After SIGTERM, requests in flight get this long to finish; connections still busy
    /// then (a client reading its response slowly, or not at all) are closed.
    #[serde(default = "drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

fn max_connections() -> usize {
    4096
}

fn header_read_timeout_ms() -> u64 {
    5_000
}

fn max_buffered_body_bytes() -> usize {
    64 * 1024 * 1024
}

fn max_unauthenticated_body_bytes() -> usize {
    16 * 1024 * 1024
}

/// Above the default `request_timeout_ms` (10 s), so a request within its timeout finishes,
/// and below the 30 s most platforms wait after SIGTERM before they kill the process.
fn drain_timeout_ms() -> u64 {
    15_000
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Figment(#[from] Box<figment::Error>),
    /// A TOML syntax error: one line with the file, line and column.
    #[error("{path}:{line}:{column}: {message}")]
    Toml {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
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
        Self::load_with_warnings(explicit).map(|(s, _)| s)
    }

    /// [`Settings::load`], plus one warning per unknown key (with the closest valid one):
    /// the caller logs them once logging is set up.
    pub fn load_with_warnings(
        explicit: Option<&Path>,
    ) -> Result<(Settings, Vec<String>), ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        let on_disk = Path::new("config/default.toml");
        if on_disk.exists() {
            check_toml(on_disk)?;
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
            check_toml(&p)?;
            fig = fig.merge(Toml::file(p));
        }
        if let Some(p) = explicit {
            if let Err(source) = std::fs::metadata(p) {
                return Err(ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                });
            }
            check_toml(p)?;
            fig = fig.merge(Toml::file(p));
        }
        let fig = fig
            .merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL"]))
            .merge(Env::prefixed("ISSUESYNC_").split("__"));
        let settings: Settings = fig.extract().map_err(Box::new)?;
        settings.validate()?;
        let warnings = unknown_keys(&fig, &settings);
        Ok((settings, warnings))
    }

    /// Rates by provider for the limiter; an `unlimited` provider is left out.
    pub fn rate_limits_per_second(&self) -> std::collections::HashMap<String, u32> {
        self.rate_limit
            .iter()
            .filter_map(|(p, r)| match r {
                RateLimit::PerSecond(n) => Some((p.clone(), n.get())),
                RateLimit::Unlimited => None,
            })
            .collect()
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

    /// Our Atlassian Connect app key: `jira.app_key`, else the host of the public URL plus
    /// ".jira", as Sentry does. It is the `key` of the descriptor and the `iss` of our
    /// requests to Jira Cloud.
    pub fn jira_app_key(&self) -> String {
        if !self.jira.app_key.is_empty() {
            return self.jira.app_key.clone();
        }
        let host = self
            .public_url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split(['/', ':'])
            .next()
            .unwrap_or("");
        // A Connect key allows only these characters (an IPv6 host has others).
        let host: String = host
            .chars()
            .map(|c| if connect_key_char(c) { c } else { '-' })
            .collect();
        let host = if host.is_empty() { "issuesync" } else { &host };
        format!("{host}.jira")
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
        if let Some(e) = &self.otel.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "otel.endpoint must be an http:// or https:// URL (the collector's OTLP/HTTP address), not {e:?}"
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
        let key = &self.jira.app_key;
        if !key.is_empty() && (key.len() > 64 || !key.chars().all(connect_key_char)) {
            return Err(ConfigError::Invalid(format!(
                "jira.app_key {key:?} is not a Connect app key: at most 64 of A-Z a-z 0-9 - . _"
            )));
        }
        if self.jira.app_name.trim().is_empty() {
            return Err(ConfigError::Invalid("jira.app_name is empty".into()));
        }
        if self.redis_url.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::Invalid("REDIS_URL is set but empty".into()));
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().is_empty())
        {
            return Err(ConfigError::Invalid(
                "admin_token (ISSUESYNC_ADMIN_TOKEN) is set but empty: unset it to disable /api/v1 and /ops, or set a long random value".into(),
            ));
        }
        let positive = [
            (
                "database.max_connections",
                self.database.max_connections as usize,
            ),
            ("queue.fetch_batch_size", self.queue.fetch_batch_size),
            ("http.max_connections", self.http.max_connections),
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms as usize,
            ),
            // 0 days would make every hourly purge delete all decisions (all finished jobs).
            (
                "queue.retention_done_days",
                usize::try_from(self.queue.retention_done_days).unwrap_or(usize::MAX),
            ),
            (
                "queue.retention_dead_days",
                usize::try_from(self.queue.retention_dead_days).unwrap_or(usize::MAX),
            ),
            (
                "sync_decisions.retention_days",
                usize::try_from(self.sync_decisions.retention_days).unwrap_or(usize::MAX),
            ),
            ("http.drain_timeout_ms", self.http.drain_timeout_ms as usize),
        ];
        let concurrency = self
            .queue
            .concurrency
            .iter()
            .map(|(q, n)| (format!("queue.concurrency.{q}"), *n));
        for (key, n) in positive
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .chain(concurrency)
        {
            if n == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key} ({}) must be at least 1, not 0",
                    env_name(&key)
                )));
            }
        }
        if self.http.max_buffered_body_bytes < self.http.body_limit_bytes {
            return Err(ConfigError::Invalid(
                "http.max_buffered_body_bytes must be at least http.body_limit_bytes".into(),
            ));
        }
        if self.http.max_unauthenticated_body_bytes < self.http.body_limit_bytes {
            return Err(ConfigError::Invalid(
                "http.max_unauthenticated_body_bytes must be at least http.body_limit_bytes".into(),
            ));
        }
        Ok(())
    }
}

/// `ISSUESYNC_<SECTION>__<KEY>` of a dotted key.
fn env_name(key: &str) -> String {
    format!("ISSUESYNC_{}", key.replace('.', "__").to_uppercase())
}

/// Parses a TOML file on its own first, so that a syntax error is one line with the file,
/// line and column (figment's message spans several lines with an excerpt).
fn check_toml(path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let Err(e) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Err(ConfigError::Toml {
        path: path.display().to_string(),
        line,
        column,
        message: e.message().replace('\n', " "),
    })
}

/// Keys whose children are free-form names: checked by `validate`, or by name here.
const MAP_KEYS: &[&str] = &["queue.concurrency", "rate_limit"];
/// Providers that take a rate limit.
const RATE_LIMITED: &[&str] = &["jira", "jira_server", "vsts", "discord"];
/// Variables under the prefix that are not keys: `ISSUESYNC_ENV` picks a file, and
/// `ISSUESYNC_ADVISORY_DB` is read by `.ci/deny` only.
const NOT_KEYS: &[&str] = &["env", "advisory_db"];

/// The characters Atlassian allows in a Connect app key.
fn connect_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// One warning for each key that no setting reads, naming its source and the closest key.
/// `with_overrides` and `unknown_keys` round-trip `Settings` through serde, so the token must
/// survive it; `Settings` is never serialized for output.
fn expose_admin_token<S: serde::Serializer>(
    token: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    token.as_ref().map(ExposeSecret::expose_secret).serialize(s)
}

fn unknown_keys(fig: &Figment, settings: &Settings) -> Vec<String> {
    /// Dotted paths of the leaves (and of the free-form maps) of a serialized `Settings`.
    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        for (k, child) in v.as_object().into_iter().flatten() {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match child.as_object() {
                Some(_) if !MAP_KEYS.contains(&p.as_str()) => leaves(&p, child, out),
                _ => out.push(p),
            }
        }
    }
    fn given(
        prefix: &str,
        v: &figment::value::Value,
        out: &mut Vec<(String, figment::value::Tag)>,
    ) {
        for (k, child) in v.as_dict().into_iter().flatten() {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match child.as_dict() {
                // Queue names are checked by `validate`.
                Some(_) if p == "queue.concurrency" => {}
                Some(d) if !d.is_empty() => given(&p, child, out),
                _ => out.push((p, child.tag())),
            }
        }
    }
    let mut known = Vec::new();
    leaves(
        "",
        &serde_json::to_value(settings).unwrap_or_default(),
        &mut known,
    );
    known.retain(|k| k != "rate_limit");
    known.extend(RATE_LIMITED.iter().map(|p| format!("rate_limit.{p}")));
    let Ok(value) = fig.find_value("") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    given("", &value, &mut found);
    let mut warnings = Vec::new();
    for (key, tag) in found {
        if known.contains(&key) || NOT_KEYS.contains(&key.as_str()) {
            continue;
        }
        let closest = known
            .iter()
            .max_by(|a, b| strsim::jaro_winkler(&key, a).total_cmp(&strsim::jaro_winkler(&key, b)))
            .cloned()
            .unwrap_or_default();
        let source = match fig.get_metadata(tag) {
            Some(m) => match m.source.as_ref().and_then(|s| s.file_path()) {
                Some(p) => format!("in {}", p.display()),
                None if m.name.contains("environment") => format!("from {}", env_name(&key)),
                None => format!("in {}", m.name),
            },
            None => String::new(),
        };
        warnings.push((
            key.clone(),
            format!(
                "unknown configuration key `{key}` {source}: ignored; did you mean `{closest}`?"
            ),
        ));
    }
    warnings.into_iter().map(|(_, w)| w).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_app_key_is_derived_or_set_and_checked() {
        let mut s = Settings::for_tests("sqlite::memory:", None).unwrap_or_else(|e| panic!("{e}"));
        s.public_url = "https://Sync.Example.com:8443/base".into();
        assert_eq!(s.jira_app_key(), "Sync.Example.com.jira");
        // An IPv6 host has characters a key cannot have.
        s.public_url = "http://[::1]:8080".into();
        assert_eq!(s.jira_app_key(), "-.jira");
        assert!(s.validate().is_ok());
        s.jira.app_key = "com.acme.sync".into();
        assert_eq!(s.jira_app_key(), "com.acme.sync");
        assert!(s.validate().is_ok());
        for bad in ["com acme", "x".repeat(65).as_str(), "acme/sync"] {
            s.jira.app_key = bad.into();
            let e = s
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("jira.app_key"), "{bad}: {e}");
        }
    }

    #[test]
    fn debug_does_not_show_the_admin_token() {
        let mut s = Settings::for_tests("sqlite::memory:", None).unwrap_or_else(|e| panic!("{e}"));
        s.admin_token = Some("s3cret-admin-token-value".into());
        let shown = format!("{s:?}");
        assert!(shown.contains("admin_token"), "{shown}");
        assert!(!shown.contains("s3cret-admin-token-value"), "{shown}");
    }

    #[test]
    fn overrides_keep_the_admin_token() {
        let s = Settings::for_tests("sqlite::memory:", None)
            .and_then(|s| s.with_overrides(serde_json::json!({"bind": "127.0.0.1:1"})))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.admin_token.as_ref().map(ExposeSecret::expose_secret),
            Some("test-admin-token")
        );
    }
}
