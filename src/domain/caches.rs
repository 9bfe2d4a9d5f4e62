//! The per-group caches the flows keep fresh (spec §8), with Django's key function so that a
//! main product sharing the Redis sees the same keys: `{KEY_PREFIX}:{VERSION}:{key}`, e.g.
//! `:1:assignee_exists:1:42`. Values are ours ("1"/"0"); only the keys and their deletion are
//! shared with Django, whose values are pickled.

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
