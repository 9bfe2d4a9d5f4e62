//! What the sync, the worker and the HTTP layer share: the database, Redis, the caches, the
//! provider client and the settings. Built once by the composition root (`startup`); the HTTP
//! layer and the worker wrap it with their own state.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::db::Db;
use crate::domain::caches::Caches;
use crate::domain::project::Ctx;
use crate::domain::snowflake::Snowflake;
use crate::kv::Kv;
use crate::providers::http::Http;
use crate::store::integrations::Integration;

/// How long a looked-up integration is trusted: a disabled integration or a rotated secret
/// takes effect within this.
pub const INTEGRATION_CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Services {
    pub db: Db,
    pub kv: Kv,
    pub caches: Caches,
    pub http: Http,
    pub snowflake: Snowflake,
    pub settings: Arc<Settings>,
    /// Active integrations by (provider, external id), for the receiver: a few seconds
    /// stale at most (see [`INTEGRATION_CACHE_TTL`]).
    pub integrations: moka::future::Cache<(String, String), Integration>,
    /// All active integrations of a provider, for checks before a body is read (ADO's
    /// shared secret, Discord's signature); as stale as `integrations` at most.
    pub active_integrations: moka::future::Cache<&'static str, Arc<Vec<Integration>>>,
}

impl Services {
    pub fn new(
        db: Db,
        kv: Kv,
        caches: Caches,
        http: Http,
        snowflake: Snowflake,
        settings: Settings,
    ) -> Services {
        Services {
            db,
            kv,
            caches,
            http,
            snowflake,
            settings: Arc::new(settings),
            integrations: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(INTEGRATION_CACHE_TTL)
                .build(),
            active_integrations: moka::future::Cache::builder()
                .max_capacity(16)
                .time_to_live(INTEGRATION_CACHE_TTL)
                .build(),
        }
    }

    /// Our Atlassian Connect app key (`iss` of outbound Jira Cloud requests).
    pub fn jira_app_key(&self) -> String {
        self.settings.jira_app_key()
    }

    /// Drops the cached integrations after one was written.
    pub fn forget_integrations(&self) {
        self.integrations.invalidate_all();
        self.active_integrations.invalidate_all();
    }

    pub fn domain_ctx(&self) -> Ctx<'_> {
        Ctx {
            db: &self.db,
            kv: &self.kv,
            snowflake: &self.snowflake,
        }
    }
}
