//! The per-group caches the flows keep fresh (Sentry's `GroupOwner` helpers), with Django's
//! key function so that a main product sharing the Redis sees the same keys:
//! `{KEY_PREFIX}:{VERSION}:{key}`, e.g. `:1:assignee_exists:1:42`. Values are ours ("1"/"0");
//! only the keys and their deletion are shared with Django, whose values are pickled.

use std::time::Duration;

use crate::config::CacheSettings;
use crate::kv::{Kv, KvError};

pub const ASSIGNEE_EXISTS_DURATION: Duration = Duration::from_secs(86_400);
pub const ASSIGNEE_DOES_NOT_EXIST_DURATION: Duration = Duration::from_secs(60);
pub const ISSUE_OWNERS_DEBOUNCE_DURATION: Duration = Duration::from_secs(86_400);

pub fn assignee_exists_key(group_id: i64) -> String {
    format!("assignee_exists:1:{group_id}")
}

pub fn owner_exists_key(group_id: i64) -> String {
    format!("owner_exists:1:{group_id}")
}

#[derive(Clone)]
pub struct Caches {
    pub kv: Kv,
    pub prefix: String,
    pub version: u32,
}

impl Caches {
    pub fn new(kv: Kv, settings: &CacheSettings) -> Caches {
        Caches {
            kv,
            prefix: settings.key_prefix.clone(),
            version: settings.version,
        }
    }

    /// Django's `make_key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}:{}:{}", self.prefix, self.version, key)
    }

    /// Deletes both per-group keys of each group (one round trip).
    pub async fn invalidate_groups(&self, group_ids: &[i64]) -> Result<u64, KvError> {
        let keys: Vec<String> = group_ids
            .iter()
            .flat_map(|g| {
                [
                    self.key(&assignee_exists_key(*g)),
                    self.key(&owner_exists_key(*g)),
                ]
            })
            .collect();
        self.kv.delete_many(&keys).await
    }

    /// Deletes the given (unprefixed) keys in one round trip.
    pub async fn delete_many(&self, keys: &[String]) -> Result<u64, KvError> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.kv.delete_many(&keys).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, KvError> {
        self.kv.get(&self.key(key)).await
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), KvError> {
        self.kv.set_ex(&self.key(key), value, ttl).await
    }
}

/// Groups seen within this window have their keys deleted by a project-wide invalidation.
pub const RECENT_WINDOW_MS: i64 = 86_400_000;
/// Keys deleted per round trip (Sentry's batches of 1000).
pub const BATCH: i64 = 1000;

/// The unprefixed key of a group for a cache kind.
pub fn key_for(
    kind: issuesync_jobs::invalidate_project_caches::CacheKind,
    group_id: i64,
) -> String {
    use issuesync_jobs::invalidate_project_caches::CacheKind;
    match kind {
        CacheKind::AssigneeExists => assignee_exists_key(group_id),
        CacheKind::OwnerDebounce => owner_exists_key(group_id),
    }
}

/// `GroupOwner`'s assignee_exists read-through: cached 86,400 s when true, 60 s when
/// false. A cache outage falls back to the database.
pub async fn assignee_exists(caches: &Caches, group_id: i64, from_db: bool) -> bool {
    let key = assignee_exists_key(group_id);
    if let Ok(Some(v)) = caches.get(&key).await {
        return v == "1";
    }
    let ttl = if from_db {
        ASSIGNEE_EXISTS_DURATION
    } else {
        ASSIGNEE_DOES_NOT_EXIST_DURATION
    };
    if let Err(e) = caches.set(&key, if from_db { "1" } else { "0" }, ttl).await {
        tracing::warn!(error = %e, "cache unavailable");
    }
    from_db
}

/// Enqueues a project-wide invalidation in the caller's transaction (one pending per kind).
pub async fn enqueue_invalidation(
    tx: &mut crate::db::Tx,
    project_id: i64,
    kind: issuesync_jobs::invalidate_project_caches::CacheKind,
) -> Result<(), crate::store::StoreError> {
    let job = issuesync_jobs::invalidate_project_caches::InvalidateProjectCaches {
        project_id,
        kind,
        fail_after_pages: None,
    };
    crate::store::enqueue::enqueue(tx, &job).await.map(|_| ())
}

/// `assignee_exists` invalidation for every project of the given teams.
pub async fn invalidate_team_projects(
    tx: &mut crate::db::Tx,
    team_ids: &[i64],
) -> Result<(), crate::store::StoreError> {
    let mut projects = Vec::new();
    for t in team_ids {
        projects.extend(crate::store::groups::team_project_ids(tx, *t).await?);
    }
    projects.sort_unstable();
    projects.dedup();
    for p in projects {
        enqueue_invalidation(
            tx,
            p,
            issuesync_jobs::invalidate_project_caches::CacheKind::AssigneeExists,
        )
        .await?;
    }
    Ok(())
}
