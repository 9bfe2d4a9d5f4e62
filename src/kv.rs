//! Redis when configured, in-process otherwise: the cache, distributed locks and the
//! snowflake sequence all pick their implementation from this one handle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub enum Kv {
    Redis(ConnectionManager),
    Local(Arc<LocalKv>),
}

/// In-process stand-in for the few Redis features we use (single process only).
pub struct LocalKv {
    locks: Mutex<HashMap<String, (String, tokio::time::Instant)>>,
    /// Values with their own expiry instant (moka's TTL is per cache, ours per key).
    cache: moka::future::Cache<String, (String, std::time::Instant)>,
}

impl Default for LocalKv {
    fn default() -> Self {
        LocalKv {
            locks: Mutex::default(),
            cache: moka::future::Cache::builder()
                .max_capacity(1_000_000)
                .build(),
        }
    }
}

impl Kv {
    pub async fn connect(redis_url: Option<&str>) -> Result<Kv, KvError> {
        match redis_url {
            None => Ok(Kv::Local(Arc::default())),
            Some(url) => {
                let client = redis::Client::open(url)?;
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)));
                Ok(Kv::Redis(
                    ConnectionManager::new_with_config(client, cfg).await?,
                ))
            }
        }
    }

    pub fn is_redis(&self) -> bool {
        matches!(self, Kv::Redis(_))
    }

    pub async fn ping(&self) -> Result<(), KvError> {
        if let Kv::Redis(c) = self {
            let mut c = c.clone();
            let _: String = redis::cmd("PING").query_async(&mut c).await?;
        }
        Ok(())
    }

    /// `SET key token NX PX ttl`: true when we got the lock.
    pub async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, KvError> {
        match self {
            Kv::Redis(c) => {
                let mut c = c.clone();
                let ok: Option<String> = redis::cmd("SET")
                    .arg(key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async(&mut c)
                    .await?;
                Ok(ok.is_some())
            }
            Kv::Local(l) => {
                let mut locks = l.locks.lock().await;
                let now = tokio::time::Instant::now();
                match locks.get(key) {
                    Some((_, until)) if *until > now => Ok(false),
                    _ => {
                        locks.insert(key.to_string(), (token.to_string(), now + ttl));
                        Ok(true)
                    }
                }
            }
        }
    }

    /// Releases a lock only if we still hold it (compare-and-delete).
    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), KvError> {
        match self {
            Kv::Redis(c) => {
                let mut c = c.clone();
                let script = redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
                );
                let _: i64 = script.key(key).arg(token).invoke_async(&mut c).await?;
                Ok(())
            }
            Kv::Local(l) => {
                let mut locks = l.locks.lock().await;
                if locks.get(key).is_some_and(|(t, _)| t == token) {
                    locks.remove(key);
                }
                Ok(())
            }
        }
    }
}

/// A held lock; release it with [`Kv::unlock`]. The TTL frees it if we crash.
pub struct LockGuard {
    pub key: String,
    pub token: String,
}

impl Kv {
    /// Takes `key`, retrying for up to `wait` (Sentry: TimedRetryPolicy(10) on a 5 s lock).
    pub async fn lock(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<LockGuard>, KvError> {
        let token = uuid::Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.try_lock(key, &token, ttl).await? {
                return Ok(Some(LockGuard {
                    key: key.to_string(),
                    token,
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn release(&self, guard: LockGuard) -> Result<(), KvError> {
        self.unlock(&guard.key, &guard.token).await
    }
}

impl Kv {
    /// GET; `None` when missing or expired.
    pub async fn get(&self, key: &str) -> Result<Option<String>, KvError> {
        match self {
            Kv::Redis(c) => {
                let mut c = c.clone();
                Ok(redis::cmd("GET").arg(key).query_async(&mut c).await?)
            }
            Kv::Local(l) => Ok(l
                .cache
                .get(key)
                .await
                .filter(|(_, until)| *until > std::time::Instant::now())
                .map(|(v, _)| v)),
        }
    }

    /// SET with an expiry.
    pub async fn set_ex(&self, key: &str, value: &str, ttl: Duration) -> Result<(), KvError> {
        match self {
            Kv::Redis(c) => {
                let mut c = c.clone();
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async(&mut c)
                    .await?;
                Ok(())
            }
            Kv::Local(l) => {
                l.cache
                    .insert(
                        key.to_string(),
                        (value.to_string(), std::time::Instant::now() + ttl),
                    )
                    .await;
                Ok(())
            }
        }
    }

    /// Deletes keys in one round trip (a single UNLINK on Redis); returns how many existed.
    pub async fn delete_many(&self, keys: &[String]) -> Result<u64, KvError> {
        if keys.is_empty() {
            return Ok(0);
        }
        match self {
            Kv::Redis(c) => {
                let mut c = c.clone();
                Ok(redis::cmd("UNLINK").arg(keys).query_async(&mut c).await?)
            }
            Kv::Local(l) => {
                let mut n = 0;
                for k in keys {
                    if l.cache.remove(k).await.is_some() {
                        n += 1;
                    }
                }
                Ok(n)
            }
        }
    }
}
