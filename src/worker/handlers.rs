//! One handler per job kind. Sync handlers live in `crate::sync`; the ones here are the
//! queue's own.

use issuesync_jobs::noop::{Behaviour, Noop};
use issuesync_jobs::purge_jobs::PurgeJobs;

use crate::store::jobs;
use crate::sync::{JobCtx, JobError};

crate::handles!(Noop => noop);

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
        Behaviour::ExhaustMemory => {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            for _ in 0..32 {
                // vec![1; n] writes every page, so the memory is really taken.
                hog.push(vec![1u8; 256 << 20]);
            }
            Err(JobError::Permanent(format!(
                "took {} MiB without running out: no memory limit on this process",
                hog.len() * 256
            )))
        }
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

/// Sync decisions deleted per transaction by the retention purge.
const DECISION_PURGE_BATCH: i64 = 5_000;

crate::handles!(PurgeJobs => purge_jobs);

/// `purge_jobs`: retention of finished jobs and of sync decisions.
pub async fn purge_jobs(_job: PurgeJobs, ctx: &JobCtx) -> Result<(), JobError> {
    let q = &ctx.state.settings.queue;
    let decisions = purge_decisions(ctx).await?;
    let mut tx = ctx.state.db.begin_write().await?;
    let done = jobs::purge_jobs(&mut tx, "done", (q.retention_done_days * 86_400) as i64).await?;
    let dead = jobs::purge_jobs(&mut tx, "dead", (q.retention_dead_days * 86_400) as i64).await?;
    crate::store::groups::purge_backlog(
        &mut tx,
        crate::now_ms() - 2 * crate::domain::caches::RECENT_WINDOW_MS,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        done,
        dead,
        decisions,
        "purged finished jobs and old sync decisions"
    );
    Ok(())
}

/// Deletes sync decisions past `sync_decisions.retention_days`, in batches of their own
/// transactions so that a month of rows never holds the write lock for long.
async fn purge_decisions(ctx: &JobCtx) -> Result<u64, JobError> {
    let days = ctx.state.settings.sync_decisions.retention_days;
    let before =
        crate::now_ms() - i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    let mut total = 0;
    loop {
        let mut tx = ctx.state.db.begin_write().await?;
        let n =
            crate::store::decisions::purge_decisions_before(&mut tx, before, DECISION_PURGE_BATCH)
                .await?;
        tx.commit().await?;
        total += n;
        if n < DECISION_PURGE_BATCH as u64 {
            return Ok(total);
        }
    }
}

crate::handles!(issuesync_jobs::invalidate_project_caches::InvalidateProjectCaches => invalidate_project_caches);

/// `invalidate_project_caches`: deletes a cache key of every group of the project seen in
/// the last 24 h, 1000 keys a round trip, walking the groups by id (keyset, never OFFSET).
/// The cursor is saved after each page, so a retry resumes where the last attempt stopped.
pub async fn invalidate_project_caches(
    job: issuesync_jobs::invalidate_project_caches::InvalidateProjectCaches,
    ctx: &JobCtx,
) -> Result<(), JobError> {
    use crate::domain::caches::{BATCH, RECENT_WINDOW_MS, key_for};
    let state = &ctx.state;
    let mut progress = {
        let mut tx = state.db.begin().await?;
        jobs::find_progress(&mut tx, &ctx.job_id)
            .await?
            .unwrap_or_default()
    };
    let since = crate::now_ms() - RECENT_WINDOW_MS;
    let mut pages_this_attempt = 0u32;
    loop {
        let ids = {
            let mut tx = state.db.begin().await?;
            // A deleted project's groups are gone; their ids were kept in the backlog.
            if crate::store::projects::find_project(&mut tx, job.project_id)
                .await?
                .is_some()
            {
                crate::store::groups::recent_group_ids_page(
                    &mut tx,
                    job.project_id,
                    since,
                    progress.cursor,
                    BATCH,
                )
                .await?
            } else {
                crate::store::groups::backlog_page(&mut tx, job.project_id, progress.cursor, BATCH)
                    .await?
            }
        };
        let Some(&last) = ids.last() else { break };
        let keys: Vec<String> = ids.iter().map(|g| key_for(job.kind, *g)).collect();
        let deleted = state
            .caches
            .delete_many(&keys)
            .await
            .map_err(|e| JobError::Transient(format!("cache unavailable: {e}")))?;
        progress.cursor = last;
        progress.pages += 1;
        progress.keys_deleted += deleted as i64;
        let mut tx = state.db.begin().await?;
        jobs::save_progress(&mut tx, &ctx.job_id, &progress).await?;
        tx.commit().await?;
        pages_this_attempt += 1;
        if job
            .fail_after_pages
            .is_some_and(|n| pages_this_attempt >= n)
            && (ids.len() as i64) == BATCH
        {
            return Err(JobError::Transient(format!(
                "injected failure after {pages_this_attempt} page(s)"
            )));
        }
        if (ids.len() as i64) < BATCH {
            break;
        }
    }
    tracing::info!(
        project_id = job.project_id,
        pages = progress.pages,
        keys_deleted = progress.keys_deleted,
        "project caches invalidated"
    );
    Ok(())
}
