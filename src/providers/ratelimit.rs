//! Per-integration rate limits for provider calls. In-process with governor (one process);
//! with Redis, one GCRA bucket per integration shared by every worker process.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::kv::Kv;

/// GCRA in a Lua script: hand-written because no maintained crate offers a Redis-backed
/// limiter for redis 1.x (governor is in-process; redis-cell is a server module we cannot
/// assume). It uses the server's clock, so every worker host agrees.
/// KEYS[1] bucket; ARGV[1] emission interval (µs); ARGV[2] burst tolerance (µs).
/// Returns 0 when the request may go now, else the microseconds to wait.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"#;

#[derive(Clone)]
pub enum Limiter {
    Local(
        Arc<HashMap<String, DefaultKeyedRateLimiter<i64>>>,
        HashMap<String, u32>,
    ),
    Redis(redis::aio::ConnectionManager, HashMap<String, u32>),
}

impl Limiter {
    /// `per_second` by provider; a provider absent from the map is not limited.
    pub fn new(kv: &Kv, per_second: &HashMap<String, u32>) -> Limiter {
        match kv {
            Kv::Redis(c) => Limiter::Redis(c.clone(), per_second.clone()),
            Kv::Local(_) => {
                let limiters = per_second
                    .iter()
                    .filter_map(|(p, n)| {
                        Some((
                            p.clone(),
                            RateLimiter::keyed(Quota::per_second(NonZeroU32::new(*n)?)),
                        ))
                    })
                    .collect();
                Limiter::Local(Arc::new(limiters), per_second.clone())
            }
        }
    }

    /// Waits until integration `id` of `provider` may make one more request.
    pub async fn acquire(&self, provider: &str, id: i64) {
        match self {
            Limiter::Local(limiters, _) => {
                if let Some(l) = limiters.get(provider) {
                    l.until_key_ready(&id).await;
                }
            }
            Limiter::Redis(conn, rates) => {
                let Some(rate) = rates.get(provider).copied().filter(|r| *r > 0) else {
                    return;
                };
                let interval_us = 1_000_000 / u64::from(rate);
                let script = redis::Script::new(GCRA);
                let key = format!("issuesync:ratelimit:{id}");
                loop {
                    let mut c = conn.clone();
                    let wait: Result<i64, _> = script
                        .key(&key)
                        .arg(interval_us)
                        .arg(0)
                        .invoke_async(&mut c)
                        .await;
                    match wait {
                        Ok(0) => return,
                        Ok(us) => tokio::time::sleep(Duration::from_micros(us.max(0) as u64)).await,
                        Err(e) => {
                            // Redis down: degrade to no shared limit rather than stop syncing;
                            // 429s from the provider still snooze the job.
                            tracing::warn!(error = %e, "rate limiter unavailable; proceeding unlimited");
                            return;
                        }
                    }
                }
            }
        }
    }
}
