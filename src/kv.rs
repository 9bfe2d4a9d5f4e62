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
}

#[derive(Clone)]
pub enum Kv {
    Redis(ConnectionManager),
    Local(Arc<LocalKv>),
}

/// In-process stand-in for the few Redis features we use (single process only).
#[derive(Default)]
pub struct LocalKv {
    locks: Mutex<HashMap<String, (String, tokio::time::Instant)>>,
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
