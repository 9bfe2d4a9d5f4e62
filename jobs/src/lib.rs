//! The queue contract of issuesync. One module per job kind: its payload (serde), name, queue,
//! max attempts, timeout and dedup key. No I/O: producers (the receiver, the admin API, other
//! services) and the workers both depend on this crate.
//!
//! A job is stored as the JSON envelope `{"job": JOB_NAME, "args": <payload>}` in the queue
//! named `QUEUE`. Queue names are explicit strings, never Rust type names.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod discord_interaction;
pub mod invalidate_project_caches;
pub mod noop;
pub mod process_webhook;
pub mod purge_jobs;
pub mod sync_assignee_inbound;
pub mod sync_assignee_outbound;
pub mod sync_status_inbound;
pub mod sync_status_outbound;

/// The queues; each has its own worker pool and concurrency.
pub mod queues {
    /// Stored webhook deliveries waiting to be parsed.
    pub const WEBHOOKS: &str = "webhooks";
    /// Changes that came from a provider, applied to our groups.
    pub const INBOUND: &str = "inbound";
    /// Changes pushed to providers (rate-limited).
    pub const OUTBOUND: &str = "outbound";
    /// Cache invalidation, retention and diagnostics.
    pub const MAINTENANCE: &str = "maintenance";
    pub const ALL: &[&str] = &[WEBHOOKS, INBOUND, OUTBOUND, MAINTENANCE];
}

/// A kind of job.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Unique name; the `job` field of the envelope.
    const JOB_NAME: &'static str;
    /// The queue it runs on.
    const QUEUE: &'static str;
    /// Attempts before it is dead (a rate-limit snooze does not count).
    const MAX_ATTEMPTS: u32;
    /// Wall-clock limit of one attempt.
    const TIMEOUT_SECS: u64 = 60;

    /// Coalescing kinds (outbound syncs, whose handlers push the current state): a new
    /// enqueue replaces the payload of a pending job with the same key, and when that job is
    /// already running a new one is queued behind it. Others: the second enqueue is a no-op.
    const COALESCE: bool = false;

    /// While a job with this key is not finished, enqueueing another does nothing.
    fn dedup_key(&self) -> Option<String> {
        None
    }

    /// What this job shares with others of the same integration (its id), so that one
    /// integration's jobs can be paused or limited without reading payloads.
    fn partition_key(&self) -> Option<String> {
        None
    }
}

/// The stored form of every job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub job: String,
    pub args: serde_json::Value,
    /// W3C `traceparent` of the span that enqueued the job, when traces are exported: the
    /// worker continues that trace. Absent from rows written without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    pub fn of<J: Job>(job: &J) -> Result<Envelope, serde_json::Error> {
        Ok(Envelope {
            job: J::JOB_NAME.to_string(),
            args: serde_json::to_value(job)?,
            traceparent: None,
        })
    }

    /// Decodes the args as `J`; fails when the name differs or the args do not fit.
    pub fn decode<J: Job>(&self) -> Result<J, String> {
        if self.job != J::JOB_NAME {
            return Err(format!("expected job {}, got {}", J::JOB_NAME, self.job));
        }
        serde_json::from_value(self.args.clone())
            .map_err(|e| format!("bad args for {}: {e}", J::JOB_NAME))
    }
}

/// Name, queue, max attempts, timeout and coalescing of every kind, for validation, the admin
/// API's enqueue and the operator surface.
pub struct KindInfo {
    pub name: &'static str,
    pub queue: &'static str,
    pub max_attempts: u32,
    pub timeout_secs: u64,
    pub coalesce: bool,
    /// Decodes an envelope's args as this kind (its error says why they do not fit).
    check: fn(&Envelope) -> Result<(), String>,
    /// The dedup key this kind derives from an envelope's args.
    dedup_key: fn(&Envelope) -> Option<String>,
}

const fn info<J: Job>() -> KindInfo {
    fn check<J: Job>(env: &Envelope) -> Result<(), String> {
        env.decode::<J>().map(|_| ())
    }
    fn dedup_key<J: Job>(env: &Envelope) -> Option<String> {
        env.decode::<J>().ok().and_then(|j| j.dedup_key())
    }
    KindInfo {
        name: J::JOB_NAME,
        queue: J::QUEUE,
        max_attempts: J::MAX_ATTEMPTS,
        timeout_secs: J::TIMEOUT_SECS,
        coalesce: J::COALESCE,
        check: check::<J>,
        dedup_key: dedup_key::<J>,
    }
}

pub const KINDS: &[KindInfo] = &[
    info::<process_webhook::ProcessWebhook>(),
    info::<discord_interaction::DiscordInteraction>(),
    info::<sync_assignee_inbound::SyncAssigneeInbound>(),
    info::<sync_status_inbound::SyncStatusInbound>(),
    info::<sync_status_outbound::SyncStatusOutbound>(),
    info::<sync_assignee_outbound::SyncAssigneeOutbound>(),
    info::<invalidate_project_caches::InvalidateProjectCaches>(),
    info::<purge_jobs::PurgeJobs>(),
    info::<noop::Noop>(),
];

pub fn kind(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

#[cfg(test)]
pub(crate) fn round_trip<J: Job + PartialEq + std::fmt::Debug>(job: J) {
    let bytes = serde_json::to_vec(&Envelope::of(&job).expect("encode")).expect("bytes");
    let env: Envelope = serde_json::from_slice(&bytes).expect("decode envelope");
    assert_eq!(env.job, J::JOB_NAME);
    assert_eq!(env.decode::<J>().expect("decode args"), job);
    assert!(
        queues::ALL.contains(&J::QUEUE),
        "{} is on an unknown queue",
        J::JOB_NAME
    );
    assert!(J::MAX_ATTEMPTS >= 1 && J::MAX_ATTEMPTS <= 20);
}

/// Checks that an envelope names a known kind and that its args decode as that kind.
pub fn validate(env: &Envelope) -> Result<&'static KindInfo, String> {
    let kind = kind(&env.job).ok_or_else(|| format!("unknown job kind {:?}", env.job))?;
    (kind.check)(env)?;
    Ok(kind)
}

/// The dedup key an envelope's kind derives from its args.
pub fn dedup_key_of(env: &Envelope) -> Option<String> {
    kind(&env.job).and_then(|k| (k.dedup_key)(env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_queues_known() {
        let mut names: Vec<_> = KINDS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        assert!(KINDS.iter().all(|k| queues::ALL.contains(&k.queue)));
    }

    #[test]
    fn wrong_name_is_refused() {
        let env = Envelope {
            job: "other".into(),
            args: serde_json::json!({}),
            traceparent: None,
        };
        assert!(env.decode::<noop::Noop>().is_err());
    }
}
