//! Per-integration rate limits for provider calls. In-process with governor (one process);
//! with Redis, one GCRA bucket per integration shared by every worker process. A Redis
//! call that fails or takes over [`REDIS_TIMEOUT`] switches this process to an in-process
//! bucket for its share of the rate (the rate ÷ the live worker processes), logged once per
//! outage; a background probe pings Redis every [`PROBE_EVERY`] (whether or not requests are
//! made), and it is used again as soon as it answers. A slow answer alone is not an outage:
//! only [`SLOW_CALLS_TO_SWITCH`] in a row switch.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::db::Db;
use crate::kv::Kv;

/// Longest wait for Redis per acquire: past it the process limits in-process.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// While Redis is unavailable, a background probe pings it this often...
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// ... and gives it this long to answer (reconnecting included).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How old the count of live worker processes may get.
const WORKERS_MAX_AGE: Duration = Duration::from_secs(10);
/// Calls over [`REDIS_TIMEOUT`] in a row that switch to the in-process share (a refused or
/// broken connection switches at once): on a busy host one call can be slow while Redis is
/// fine, and each needless switch costs a warning and a slower share.
const SLOW_CALLS_TO_SWITCH: u32 = 3;

/// GCRA with reservations, in a Lua script: hand-written because no maintained crate
/// offers a Redis-backed limiter for redis 1.x (governor is in-process; redis-cell is a
/// server module we cannot assume). A caller whose slot is at most the horizon away takes
/// it and sleeps until then, so no capacity is lost between a slot coming free and a
/// waiter waking up; one further away is told when to ask again (nothing is reserved far
/// ahead, so a Redis outage leaves few reservations behind). A booking takes slots
/// without a request: what this process sent in-process during an outage. It uses the
/// server's clock, so every worker host agrees.
/// KEYS[1] bucket; ARGV[1] emission interval (µs); ARGV[2] horizon (µs); ARGV[3] slots;
/// ARGV[4] 1 for a request (0 books slots without one).
/// Returns the µs until our slot (>= 0), or minus the µs after which to ask again.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local charge = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now
if ARGV[4] == '1' and wait > horizon then return -(wait - horizon) end
local new_tat = tat + interval * charge
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return wait
"#;

/// A share bucket made this soon after the switch starts with its first slot taken (see
/// [`Limiter::fallback_bucket`]).
const SWITCH_WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Limiter(Arc<Inner>);

struct Inner {
    rates: HashMap<String, u32>,
    /// Behind a lock so that a probe can replace it with a fresh one after an outage
    /// (the manager's own reconnection backs off for seconds).
    redis: Option<Mutex<redis::aio::ConnectionManager>>,
    /// Where a probe connects to (set by `with_fallback_share`).
    client: std::sync::OnceLock<redis::Client>,
    script: redis::Script,
    /// Without Redis: the whole rate, in this process.
    local: HashMap<String, DefaultKeyedRateLimiter<i64>>,
    fallback: Mutex<Fallback>,
    /// Where the live worker processes are counted, and the heartbeat window.
    workers: std::sync::OnceLock<(Db, u64)>,
}

#[derive(Default)]
struct Fallback {
    /// Set while Redis is unavailable.
    since: Option<Instant>,
    /// Live worker processes, and when they were counted. Kept when a recount fails: the
    /// last count is a better share than assuming this process is alone.
    processes: Option<(u64, Instant)>,
    /// Recount now (the switch), however fresh the count.
    recount: bool,
    counting: bool,
    /// Calls over [`REDIS_TIMEOUT`] in a row.
    slow_calls: u32,
    /// This process's share, per integration, with the process count it was made for.
    buckets: HashMap<i64, (u64, Arc<DefaultDirectRateLimiter>)>,
    /// When in-process requests went out lately, per integration (see `take_fallback_usage`).
    used: HashMap<i64, Vec<Instant>>,
}

impl Limiter {
    /// `per_second` by provider; a provider absent from the map is not limited.
    pub fn new(kv: &Kv, per_second: &HashMap<String, u32>) -> Limiter {
        let rates: HashMap<String, u32> = per_second
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        let (redis, local) = match kv {
            Kv::Redis(c) => (Some(Mutex::new(c.clone())), HashMap::new()),
            Kv::Local(_) => (
                None,
                rates
                    .iter()
                    .filter_map(|(p, n)| {
                        Some((
                            p.clone(),
                            RateLimiter::keyed(Quota::per_second(NonZeroU32::new(*n)?)),
                        ))
                    })
                    .collect(),
            ),
        };
        Limiter(Arc::new(Inner {
            rates,
            redis,
            client: std::sync::OnceLock::new(),
            script: redis::Script::new(GCRA),
            local,
            fallback: Mutex::default(),
            workers: std::sync::OnceLock::new(),
        }))
    }

    /// Counts live worker processes in `db` (heartbeat within `alive_within_secs`) to
    /// size this process's share when Redis is unavailable.
    /// `redis_url` is where a probe reconnects after an outage.
    pub fn with_fallback_share(
        self,
        db: Db,
        alive_within_secs: u64,
        redis_url: Option<&str>,
    ) -> Limiter {
        let _ = self.0.workers.set((db, alive_within_secs));
        if let Some(client) = redis_url.and_then(|u| redis::Client::open(u).ok()) {
            let _ = self.0.client.set(client);
        }
        self
    }

    fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        self.0.redis.as_ref()?.lock().ok().map(|c| c.clone())
    }

    /// `local` (no Redis), `shared` (the Redis bucket) or `fallback` (Redis unavailable).
    pub fn mode(&self) -> &'static str {
        match (&self.0.redis, self.is_fallback()) {
            (None, _) => "local",
            (Some(_), false) => "shared",
            (Some(_), true) => "fallback",
        }
    }

    pub fn is_fallback(&self) -> bool {
        self.0
            .fallback
            .lock()
            .map(|f| f.since.is_some())
            .unwrap_or(false)
    }

    /// Waits until integration `id` of `provider` may make one more request.
    pub async fn acquire(&self, provider: &str, id: i64) {
        let Some(rate) = self.0.rates.get(provider).copied() else {
            return;
        };
        let Some(conn) = self.connection() else {
            if let Some(l) = self.0.local.get(provider) {
                l.until_key_ready(&id).await;
            }
            return;
        };
        let conn = &conn;
        self.refresh_processes_in_background();
        let key = format!("issuesync:ratelimit:{id}");
        // 2 % slower than the rate: sends wake up a little late, which must not put the
        // rate + 1 into one second.
        let interval_us = 1_020_000 / u64::from(rate);
        let horizon_us = (2 * interval_us).max(10_000);
        while self.try_redis_now(conn) {
            if let Some(n) = self.take_fallback_usage(id)
                && self
                    .call(conn, &key, interval_us, horizon_us, n, false)
                    .await
                    .is_some()
            {
                continue;
            }
            match self
                .call(conn, &key, interval_us, horizon_us, 1, true)
                .await
            {
                Some(wait_us) if wait_us >= 0 => {
                    tokio::time::sleep(Duration::from_micros(wait_us as u64)).await;
                    return;
                }
                // Too far ahead to reserve: ask again later, spread over one interval.
                Some(retry_us) => {
                    let jitter = rand::random_range(0..interval_us.max(1));
                    tokio::time::sleep(Duration::from_micros(retry_us.unsigned_abs() + jitter))
                        .await;
                }
                // Slow but not (yet) taken for down: ask again.
                None if !self.is_fallback() => continue,
                None => break,
            }
        }
        // Reservations of the shared bucket reach at most `horizon` past the switch.
        let ready_at =
            self.fallback_since().unwrap_or_else(Instant::now) + Duration::from_micros(horizon_us);
        tokio::time::sleep_until(ready_at.into()).await;
        self.fallback_bucket(id, rate).await.until_ready().await;
        self.record_fallback_use(id);
    }

    /// One script call, at most [`REDIS_TIMEOUT`]; None when Redis failed (and this
    /// process now limits in-process).
    async fn call(
        &self,
        conn: &redis::aio::ConnectionManager,
        key: &str,
        interval_us: u64,
        horizon_us: u64,
        slots: u64,
        request: bool,
    ) -> Option<i64> {
        let started = Instant::now();
        let mut c = conn.clone();
        let mut invocation = self.0.script.key(key);
        invocation
            .arg(interval_us)
            .arg(horizon_us)
            .arg(slots)
            .arg(if request { 1 } else { 0 });
        let call = invocation.invoke_async::<i64>(&mut c);
        let outcome = tokio::time::timeout(REDIS_TIMEOUT, call).await;
        metrics::histogram!("issuesync_ratelimit_redis_seconds")
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(v)) => {
                self.redis_answered();
                Some(v)
            }
            Ok(Err(e)) => {
                self.redis_failed(&e.to_string());
                None
            }
            Err(_) => {
                let slow = self
                    .0
                    .fallback
                    .lock()
                    .map(|mut f| {
                        f.slow_calls += 1;
                        f.slow_calls
                    })
                    .unwrap_or(SLOW_CALLS_TO_SWITCH);
                if slow >= SLOW_CALLS_TO_SWITCH {
                    self.redis_failed(&format!(
                        "{slow} calls in a row without an answer within {REDIS_TIMEOUT:?}"
                    ));
                }
                None
            }
        }
    }

    /// Requests sent in-process for `id` in the last second, once, after Redis is back:
    /// they are booked in the shared bucket before the next request.
    fn take_fallback_usage(&self, id: i64) -> Option<u64> {
        let mut f = self.0.fallback.lock().ok()?;
        let used = f.used.remove(&id)?;
        let n = used
            .iter()
            .filter(|t| t.elapsed() < Duration::from_secs(1))
            .count() as u64;
        (n > 0).then_some(n)
    }

    fn record_fallback_use(&self, id: i64) {
        if let Ok(mut f) = self.0.fallback.lock() {
            let used = f.used.entry(id).or_default();
            used.retain(|t| t.elapsed() < Duration::from_secs(1));
            used.push(Instant::now());
        }
    }

    /// True unless Redis is known to be down.
    fn try_redis_now(&self, _conn: &redis::aio::ConnectionManager) -> bool {
        !self.is_fallback()
    }

    /// While Redis is known to be down, pings it every [`PROBE_EVERY`] with a longer timeout
    /// until it answers: in the background, so that an idle process goes back too (and the
    /// connection manager reconnects only while it is polled, which 50 ms windows of acquires
    /// would not give it).
    fn probe_until_back(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if !this.is_fallback() {
                    return;
                }
                let Some(old) = this.connection() else {
                    return;
                };
                let ok = tokio::time::timeout(PROBE_TIMEOUT, this.probe(old))
                    .await
                    .unwrap_or(false);
                if ok {
                    this.redis_answered();
                    return;
                }
            }
        });
    }

    /// Pings Redis on a fresh connection manager, and uses it from now on when it answers;
    /// without a URL, pings the current one.
    async fn probe(&self, old: redis::aio::ConnectionManager) -> bool {
        let mut conn = match self.0.client.get() {
            Some(client) => {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(PROBE_TIMEOUT))
                    .set_response_timeout(Some(PROBE_TIMEOUT))
                    .set_number_of_retries(0);
                match redis::aio::ConnectionManager::new_with_config(client.clone(), cfg).await {
                    Ok(c) => c,
                    Err(_) => return false,
                }
            }
            None => old,
        };
        let cmd = redis::cmd("PING");
        if cmd.query_async::<String>(&mut conn).await.is_err() {
            return false;
        }
        if let Some(Ok(mut current)) = self.0.redis.as_ref().map(|m| m.lock()) {
            *current = conn;
        }
        true
    }

    fn redis_answered(&self) {
        let was = self.0.fallback.lock().ok().and_then(|mut f| {
            f.slow_calls = 0;
            let since = f.since.take();
            if since.is_some() {
                f.buckets.clear();
            }
            since
        });
        if let Some(since) = was {
            tracing::info!(
                outage_secs = since.elapsed().as_secs_f64(),
                "rate limiter: Redis answers again; back to the shared bucket"
            );
            metrics::gauge!("issuesync_ratelimit_fallback").set(0.0);
        }
    }

    fn redis_failed(&self, error: &str) {
        let Ok(mut f) = self.0.fallback.lock() else {
            return;
        };
        f.slow_calls = 0;
        if f.since.is_none() {
            f.since = Some(Instant::now());
            let processes = f.processes.map(|(n, _)| n);
            tracing::warn!(
                error,
                processes,
                "rate limiter: Redis unavailable; limiting in-process to this process's share (rate ÷ live worker processes) until it answers"
            );
            metrics::gauge!("issuesync_ratelimit_fallback").set(1.0);
            // Count the processes again now; until then the last count is used.
            f.recount = true;
            drop(f);
            self.refresh_processes_in_background();
            self.probe_until_back();
        }
    }

    fn fallback_since(&self) -> Option<Instant> {
        self.0.fallback.lock().ok().and_then(|f| f.since)
    }

    /// This process's bucket for integration `id` (see [`share_quota`]). One made in the
    /// second after the switch starts with its first slot taken: the shared bucket may have
    /// let the whole rate through in the second before, and both are evenly spaced, so the
    /// two together stay under the rate in any second (instead of a whole quiet second).
    async fn fallback_bucket(&self, id: i64, rate: u32) -> Arc<DefaultDirectRateLimiter> {
        let known = self.0.fallback.lock().ok().and_then(|f| f.processes);
        let known = match known {
            Some((n, _)) => Some(n),
            // Never counted yet: count now (bounded), so the share is right from the start.
            None => tokio::time::timeout(Duration::from_secs(1), self.count_processes())
                .await
                .ok()
                .flatten(),
        };
        let processes = share_processes(known, rate);
        let Ok(mut f) = self.0.fallback.lock() else {
            return Arc::new(RateLimiter::direct(share_quota(rate, processes)));
        };
        match f.buckets.get(&id) {
            Some((n, b)) if *n == processes => b.clone(),
            _ => {
                let b = RateLimiter::direct(share_quota(rate, processes));
                if f.since.is_some_and(|t| t.elapsed() < SWITCH_WINDOW) {
                    let _ = b.check();
                }
                let b = Arc::new(b);
                f.buckets.insert(id, (processes, b.clone()));
                b
            }
        }
    }

    /// Recounts the live worker processes when the count is older than `WORKERS_MAX_AGE`.
    fn refresh_processes_in_background(&self) {
        if self.0.workers.get().is_none() {
            return;
        }
        {
            let Ok(mut f) = self.0.fallback.lock() else {
                return;
            };
            let fresh = !f.recount
                && f.processes
                    .is_some_and(|(_, at)| at.elapsed() < WORKERS_MAX_AGE);
            if fresh || f.counting {
                return;
            }
            f.counting = true;
            f.recount = false;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let n = this.count_processes().await;
            if let Ok(mut f) = this.0.fallback.lock() {
                f.counting = false;
                if let Some(n) = n {
                    f.processes = Some((n, Instant::now()));
                }
            }
        });
    }

    async fn count_processes(&self) -> Option<u64> {
        let (db, within) = self.0.workers.get()?;
        let mut tx = db.begin().await.ok()?;
        let live = crate::store::jobs::list_live_workers(&mut tx, *within as i64)
            .await
            .ok()?;
        let n = live_processes(&live);
        if let Ok(mut f) = self.0.fallback.lock() {
            f.processes = Some((n, Instant::now()));
        }
        Some(n)
    }
}

/// Worker ids are `{queue}-{process instance}-{restart}`: one process runs a worker per
/// queue, so distinct instances are processes. At least 1 (this one).
fn live_processes(live: &[crate::store::jobs::WorkerRow]) -> u64 {
    let instances: std::collections::HashSet<&str> = live
        .iter()
        .filter_map(|w| {
            let rest = w.id.strip_prefix(&w.queue)?.strip_prefix('-')?;
            Some(rest.rsplit_once('-').map_or(rest, |(i, _)| i))
        })
        .collect();
    (instances.len() as u64).max(1)
}

/// The process count a share is made for: the last count, or when the processes were never
/// counted (the database is unavailable too), as many as the rate, i.e. about one request a
/// second per process: never the whole rate for each of an unknown number of processes.
fn share_processes(counted: Option<u64>, rate: u32) -> u64 {
    counted.unwrap_or(u64::from(rate)).max(1)
}

/// This process's share: `floor(rate ÷ processes)` requests per second, evenly spaced with
/// a 2 % margin for timer jitter and no burst, so that N processes together stay at or
/// under the rate in any one-second window (with fewer, `rate ÷ processes` on average).
fn share_quota(rate: u32, processes: u64) -> Quota {
    let whole = u64::from(rate) / processes.max(1);
    let period = if whole >= 1 {
        Duration::from_secs_f64(1.02 / whole as f64)
    } else {
        Duration::from_secs_f64(processes as f64 / f64::from(rate.max(1)))
    };
    Quota::with_period(period.max(Duration::from_micros(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::WorkerRow;

    fn row(id: &str, queue: &str) -> WorkerRow {
        WorkerRow {
            id: id.into(),
            queue: queue.into(),
            last_seen_age_s: 0,
            started_at_ms: None,
        }
    }

    #[test]
    fn processes_are_distinct_instances() {
        let live = [
            row("outbound-101-a1b2c3-0", "outbound"),
            row("inbound-101-a1b2c3-0", "inbound"),
            row("outbound-202-d4e5f6-1", "outbound"),
            row("webhooks-303-aaaaaa-0", "webhooks"),
        ];
        assert_eq!(live_processes(&live), 3);
        assert_eq!(live_processes(&[]), 1);
    }

    #[test]
    fn unknown_processes_get_a_conservative_share() {
        assert_eq!(share_processes(Some(3), 10), 3);
        assert_eq!(share_processes(Some(0), 10), 1);
        // Never counted: about one request a second per process, not the whole rate.
        let q = share_quota(10, share_processes(None, 10));
        assert_eq!(q.replenish_interval(), Duration::from_millis(1020));
        assert_eq!(
            share_quota(200, share_processes(None, 200)).replenish_interval(),
            Duration::from_millis(1020)
        );
    }

    #[test]
    fn a_share_is_the_rate_over_the_processes() {
        // 3 processes × 3/s (spaced 340 ms) stay under 10 in any second.
        let q = share_quota(10, 3);
        assert_eq!(q.replenish_interval(), Duration::from_millis(340));
        assert_eq!(q.burst_size().get(), 1);
        assert_eq!(
            share_quota(200, 1).replenish_interval(),
            Duration::from_micros(5100)
        );
    }
}
