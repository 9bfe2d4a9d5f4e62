//! One handler per job kind. Sync handlers live in `crate::sync`; the ones here are the
//! queue's own.

use issuesync_jobs::noop::{Behaviour, Noop};
use issuesync_jobs::purge_jobs::PurgeJobs;

use super::JobCtx;
use super::error::JobError;
use crate::store::jobs;

/// `noop`: the diagnostic job (benchmarks, reliability scenarios, liveness checks).
pub async fn noop(job: Noop, ctx: &JobCtx) -> Result<(), JobError> {
    if let Some(marker) = &job.ledger {
        let mut tx = ctx.state.db.begin().await?;
        jobs::insert_ledger(&mut tx, &ctx.job_id, marker, ctx.attempt).await?;
        tx.commit().await?;
    }
    if job.sleep_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(job.sleep_ms)).await;
    }
    let rate_limited = || JobError::RateLimited {
        reason: "noop asked to be rate limited".into(),
        until: chrono::Utc::now() + chrono::Duration::seconds(job.retry_after_secs as i64),
    };
    match job.behaviour {
        Behaviour::Succeed => Ok(()),
        Behaviour::FailTransient => Err(JobError::Transient("noop failed on purpose".into())),
        Behaviour::FailPermanent => Err(JobError::Permanent(
            "noop failed permanently on purpose".into(),
        )),
        Behaviour::RateLimited => Err(rate_limited()),
        Behaviour::Panic => panic!("noop panicked on purpose"),
        Behaviour::FailUntilAttempt(n) if ctx.attempt < n as i32 => {
            Err(JobError::Transient(format!("noop fails until attempt {n}")))
        }
        Behaviour::FailUntilAttempt(_) => Ok(()),
        Behaviour::RateLimitedTimes(n) => {
            let mut tx = ctx.state.db.begin().await?;
            let snoozes = jobs::list_attempts(&mut tx, &ctx.job_id)
                .await?
                .iter()
                .filter(|a| a.outcome == "snoozed")
                .count();
            if snoozes < n as usize {
                Err(rate_limited())
            } else {
                Ok(())
            }
        }
    }
}

/// `purge_jobs`: retention of finished jobs.
pub async fn purge_jobs(_job: PurgeJobs, ctx: &JobCtx) -> Result<(), JobError> {
    let q = &ctx.state.settings.queue;
    let mut tx = ctx.state.db.begin_write().await?;
    let done = jobs::purge_jobs(&mut tx, "done", (q.retention_done_days * 86_400) as i64).await?;
    let dead = jobs::purge_jobs(&mut tx, "dead", (q.retention_dead_days * 86_400) as i64).await?;
    tx.commit().await?;
    tracing::info!(done, dead, "purged finished jobs");
    Ok(())
}
