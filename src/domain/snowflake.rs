//! Snowflake IDs exactly as Sentry's `utils/snowflake.py`: 53 bits, MSB first
//! version(5, bit-reversed) | seconds since epoch(32) | region(12) | sequence(4).
//! The sequence is a per-second counter: Redis `INCR <bare second>` shared by every process,
//! or an in-process map; when 16 ids of a second are gone it borrows earlier seconds.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

use crate::kv::Kv;
use crate::store::StoreError;

pub const VERSION_ID: u64 = 1;
pub const VERSION_BITS: u32 = 5;
pub const TIME_BITS: u32 = 32;
pub const REGION_BITS: u32 = 12;
pub const SEQUENCE_BITS: u32 = 4;
pub const MAX_AVAILABLE_REGION_SEQUENCES: u64 = 16;
/// Counter keys expire after this, and overflow walks back at most this far.
pub const SEQUENCE_TTL_SECS: u64 = 300;
pub const MAX_REDIS_SNOWFLAKE_RETRY_COUNTER: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SnowflakeError {
    #[error("{0} exceed max bit value of {1}")]
    SegmentOverflow(&'static str, u32),
    #[error("No available ID")]
    NoAvailableId,
    #[error("clock is before the snowflake epoch")]
    BeforeEpoch,
    #[error("sequence store unavailable: {0}")]
    Sequence(#[from] redis::RedisError),
}

/// Error of [`save_with_snowflake_id`]: the API maps `MaxRetries` to 409.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("Max allowed ID retry reached. Please try again in a second")]
    MaxRetries,
    #[error(transparent)]
    Snowflake(#[from] SnowflakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes `value` as a `width`-bit binary string, reverses it and reads it back.
pub fn msb_0_ordering(value: u64, width: u32) -> u64 {
    value.reverse_bits() >> (64 - width)
}

fn check(name: &'static str, value: u64, bits: u32) -> Result<u64, SnowflakeError> {
    if value >> bits != 0 {
        return Err(SnowflakeError::SegmentOverflow(name, bits));
    }
    Ok(value)
}

/// Puts the four segments together, validating each as Sentry does.
pub fn compose(version: u64, time: u64, region: u64, sequence: u64) -> Result<i64, SnowflakeError> {
    let version = check(
        "Version ID",
        msb_0_ordering(version, VERSION_BITS),
        VERSION_BITS,
    )?;
    let time = check("Time difference", time, TIME_BITS)?;
    let region = check("Region ID", region, REGION_BITS)?;
    let sequence = check("Region sequence", sequence, SEQUENCE_BITS)?;
    let id =
        (((((version << TIME_BITS) | time) << REGION_BITS) | region) << SEQUENCE_BITS) | sequence;
    let id = check(
        "Snowflake ID",
        id,
        VERSION_BITS + TIME_BITS + REGION_BITS + SEQUENCE_BITS,
    )?;
    // 53 bits always fit in an i64.
    Ok(id as i64)
}

/// The segments of an id: (version bits as stored, seconds, region, sequence).
pub fn decompose(id: i64) -> (u64, u64, u64, u64) {
    let id = id as u64;
    let sequence = id & ((1 << SEQUENCE_BITS) - 1);
    let region = (id >> SEQUENCE_BITS) & ((1 << REGION_BITS) - 1);
    let time = (id >> (SEQUENCE_BITS + REGION_BITS)) & ((1 << TIME_BITS) - 1);
    let version = id >> (SEQUENCE_BITS + REGION_BITS + TIME_BITS);
    (version, time, region, sequence)
}

/// Where per-second sequence numbers come from.
#[derive(Clone)]
pub enum SequenceSource {
    /// `INCR <second>` on Redis: shared by every process.
    Redis(ConnectionManager),
    /// A map in this process: one process only.
    Local(Arc<Mutex<HashMap<u64, u64>>>),
}

impl SequenceSource {
    pub fn from_kv(kv: &Kv) -> SequenceSource {
        match kv {
            Kv::Redis(c) => SequenceSource::Redis(c.clone()),
            Kv::Local(_) => SequenceSource::Local(Arc::default()),
        }
    }

    /// Takes a sequence value for second `ts`, walking back up to 300 s on overflow.
    pub async fn next(&self, ts: u64) -> Result<(u64, u64), SnowflakeError> {
        let range = ts.min(SEQUENCE_TTL_SECS);
        for i in 0..range {
            let t = ts - i;
            let v = self.incr(t).await?;
            if v < MAX_AVAILABLE_REGION_SEQUENCES {
                return Ok((t, v));
            }
        }
        Err(SnowflakeError::NoAvailableId)
    }

    /// Returns the counter of second `t` before the increment.
    async fn incr(&self, t: u64) -> Result<u64, SnowflakeError> {
        match self {
            SequenceSource::Redis(c) => {
                let mut c = c.clone();
                let key = t.to_string();
                let v: u64 = redis::cmd("INCR").arg(&key).query_async(&mut c).await?;
                let v = v.saturating_sub(1);
                if v == 0 {
                    let _: i64 = redis::cmd("EXPIRE")
                        .arg(&key)
                        .arg(SEQUENCE_TTL_SECS)
                        .query_async(&mut c)
                        .await?;
                }
                Ok(v)
            }
            SequenceSource::Local(m) => {
                let mut m = m.lock().await;
                if !m.contains_key(&t) {
                    // Same expiry as the Redis keys: forget seconds older than the TTL.
                    m.retain(|k, _| *k + SEQUENCE_TTL_SECS > t);
                }
                let slot = m.entry(t).or_insert(0);
                let v = *slot;
                *slot += 1;
                Ok(v)
            }
        }
    }
}

#[derive(Clone)]
pub struct Snowflake {
    pub sequence: SequenceSource,
    pub region_id: u64,
    pub epoch_start: i64,
}

impl Snowflake {
    pub async fn generate(&self) -> Result<i64, SnowflakeError> {
        let now = chrono::Utc::now().timestamp();
        let ts = u64::try_from(now - self.epoch_start).map_err(|_| SnowflakeError::BeforeEpoch)?;
        let (t, seq) = self.sequence.next(ts).await?;
        compose(VERSION_ID, t, self.region_id, seq)
    }
}

/// Runs `save(id)` with fresh ids until it does not hit a unique violation, 5 tries at most.
/// Like Sentry, any unique violation retries (the id is the likely culprit).
pub async fn save_with_snowflake_id<T, F, Fut>(sf: &Snowflake, mut save: F) -> Result<T, SaveError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    for _ in 0..MAX_REDIS_SNOWFLAKE_RETRY_COUNTER {
        let id = sf.generate().await?;
        match save(id).await {
            Ok(v) => return Ok(v),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SaveError::MaxRetries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_is_reversed_to_sixteen() {
        assert_eq!(msb_0_ordering(1, 5), 16);
        assert_eq!(msb_0_ordering(0b00011, 5), 0b11000);
    }

    #[test]
    fn compose_matches_the_bit_layout() {
        let id = compose(1, 102_345_678, 0, 3).unwrap_or_default();
        assert!(id >= 1 << 52);
        assert!(id < 1 << 53);
        assert_eq!(decompose(id), (16, 102_345_678, 0, 3));
        let id = compose(1, 5, 4095, 15).unwrap_or_default();
        assert_eq!(decompose(id), (16, 5, 4095, 15));
    }

    #[test]
    fn segments_are_validated() {
        assert!(matches!(
            compose(1, 1 << 32, 0, 0),
            Err(SnowflakeError::SegmentOverflow("Time difference", 32))
        ));
        assert!(compose(1, 0, 4096, 0).is_err());
        assert!(compose(1, 0, 0, 16).is_err());
    }

    #[tokio::test]
    async fn local_sequence_walks_back_on_overflow() {
        let s = SequenceSource::Local(Arc::default());
        for v in 0..16 {
            assert_eq!(s.next(1000).await.ok(), Some((1000, v)));
        }
        assert_eq!(s.next(1000).await.ok(), Some((999, 0)));
    }

    #[tokio::test]
    async fn five_unique_violations_give_max_retries() {
        let sf = Snowflake {
            sequence: SequenceSource::Local(Arc::default()),
            region_id: 0,
            epoch_start: 1_659_916_800,
        };
        let mut calls = 0;
        let r: Result<(), SaveError> = save_with_snowflake_id(&sf, |_| {
            calls += 1;
            async { Err(StoreError::Conflict("id".into())) }
        })
        .await;
        assert!(matches!(r, Err(SaveError::MaxRetries)));
        assert_eq!(calls, 5);
        assert_eq!(
            SaveError::MaxRetries.to_string(),
            "Max allowed ID retry reached. Please try again in a second"
        );
    }

    #[tokio::test]
    async fn exhausted_range_is_an_error() {
        let s = SequenceSource::Local(Arc::default());
        for _ in 0..32 {
            let _ = s.next(2).await;
        }
        assert!(matches!(
            s.next(2).await,
            Err(SnowflakeError::NoAvailableId)
        ));
    }
}
