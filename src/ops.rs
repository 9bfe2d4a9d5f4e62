//! The operator surface shared by the CLI (`issuesync jobs …`) and the admin API
//! (`/api/v1/jobs…`): views of jobs with secrets redacted, stats, and the actions.

use serde::Serialize;
use serde_json::{Value, json};

use crate::db::Db;
use crate::redact::redact;
use crate::store::StoreError;
use crate::store::jobs::{self, AttemptRow, JobFilter, JobRow, QueueStateCount};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    Invalid(String),
    #[error("no {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OpsError {
    fn from(e: sqlx::Error) -> Self {
        OpsError::Store(e.into())
    }
}

/// A job as operators see it: the payload decoded and redacted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub queue: String,
    pub job: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// When it runs next (pending/scheduled/failed) or ran last, epoch ms.
    pub next_run_ms: i64,
    pub last_error: Option<String>,
    pub worker: Option<String>,
    pub finished_at_ms: Option<i64>,
    pub dedup_key: Option<String>,
    pub payload: Value,
    /// W3C `traceparent` of the span that enqueued the job (only with `otel.endpoint` set):
    /// its trace id finds the job's trace in the collector.
    pub traceparent: Option<String>,
}

impl From<&JobRow> for JobView {
    fn from(r: &JobRow) -> Self {
        let env: Value = serde_json::from_slice(&r.job)
            .unwrap_or_else(|_| json!({"undecodable": String::from_utf8_lossy(&r.job)}));
        JobView {
            id: r.id.clone(),
            queue: r.queue.clone(),
            job: env
                .get("job")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            state: r.state.clone(),
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            next_run_ms: r.run_at_ms,
            last_error: r.last_error(),
            worker: r.lock_by.clone(),
            finished_at_ms: r.done_at_ms,
            dedup_key: r.idempotency_key.clone(),
            payload: redact(env.get("args").unwrap_or(&Value::Null)),
            traceparent: env
                .get("traceparent")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    pub history: Vec<AttemptRow>,
    /// Pages done and keys deleted so far, for resumable jobs.
    pub progress: Option<jobs::Progress>,
}

pub fn check_state(state: Option<&str>) -> Result<(), OpsError> {
    match state {
        Some(s) if !jobs::STATES.contains(&s) => Err(OpsError::Invalid(format!(
            "state must be one of {:?}, not {s:?}",
            jobs::STATES
        ))),
        _ => Ok(()),
    }
}

pub fn check_queue(queue: Option<&str>) -> Result<(), OpsError> {
    match queue {
        Some(q) if !issuesync_jobs::queues::ALL.contains(&q) => Err(OpsError::Invalid(format!(
            "queue must be one of {:?}, not {q:?}",
            issuesync_jobs::queues::ALL
        ))),
        _ => Ok(()),
    }
}

pub async fn list(db: &Db, filter: &JobFilter, limit: i64) -> Result<Vec<JobView>, OpsError> {
    check_state(filter.state.as_deref())?;
    check_queue(filter.queue.as_deref())?;
    let mut tx = db.begin().await?;
    let rows = jobs::list_jobs(&mut tx, filter, limit).await?;
    Ok(rows.iter().map(JobView::from).collect())
}

pub async fn show(db: &Db, id: &str) -> Result<JobDetail, OpsError> {
    let mut tx = db.begin().await?;
    let row = jobs::find_job(&mut tx, id)
        .await?
        .ok_or_else(|| OpsError::NotFound(format!("job {id}")))?;
    let history = jobs::list_attempts(&mut tx, id).await?;
    let progress = jobs::find_progress(&mut tx, id).await?;
    Ok(JobDetail {
        job: JobView::from(&row),
        history,
        progress,
    })
}

/// Retries the given ids, or every job of a state (failed|dead) and optional queue.
pub async fn retry(
    db: &Db,
    ids: &[String],
    state: Option<&str>,
    queue: Option<&str>,
) -> Result<u64, OpsError> {
    let filter = action_filter(ids, state, queue, &["failed", "dead"])?;
    let mut tx = db.begin_write().await?;
    let n = jobs::retry_jobs(&mut tx, &filter).await?;
    tx.commit().await?;
    Ok(n)
}

pub async fn kill(db: &Db, ids: &[String], reason: &str) -> Result<u64, OpsError> {
    let filter = action_filter(ids, None, None, &[])?;
    let mut tx = db.begin_write().await?;
    let n = jobs::kill_jobs(&mut tx, &filter, reason).await?;
    tx.commit().await?;
    Ok(n)
}

fn action_filter(
    ids: &[String],
    state: Option<&str>,
    queue: Option<&str>,
    bulk_states: &[&str],
) -> Result<JobFilter, OpsError> {
    check_queue(queue)?;
    if !ids.is_empty() {
        if state.is_some() || queue.is_some() {
            return Err(OpsError::Invalid(
                "give job ids or a --state/--queue filter, not both".into(),
            ));
        }
        return Ok(JobFilter {
            ids: Some(ids.to_vec()),
            ..Default::default()
        });
    }
    match state {
        Some(s) if bulk_states.contains(&s) => Ok(JobFilter {
            state: Some(s.to_string()),
            queue: queue.map(str::to_string),
            ..Default::default()
        }),
        Some(s) => Err(OpsError::Invalid(format!(
            "bulk actions take --state {}, not {s:?}",
            bulk_states.join("|")
        ))),
        None => Err(OpsError::Invalid(
            "give job ids, or --all with --state".into(),
        )),
    }
}

pub async fn purge(db: &Db, state: &str, older_than_secs: i64) -> Result<u64, OpsError> {
    if !matches!(state, "done" | "dead") {
        return Err(OpsError::Invalid(format!(
            "purge takes --state done|dead, not {state:?}"
        )));
    }
    let mut tx = db.begin_write().await?;
    let n = jobs::purge_jobs(&mut tx, state, older_than_secs).await?;
    tx.commit().await?;
    Ok(n)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub counts: Vec<QueueStateCount>,
    /// Seconds the oldest due job of each queue has waited.
    #[schema(value_type = Vec<Vec<Value>>, example = json!([["webhooks", 3]]))]
    pub oldest_pending_age_s: Vec<(String, i64)>,
    /// Attempts finished in the last hour, per queue and outcome.
    pub last_hour: Vec<jobs::Throughput>,
}

pub async fn stats(db: &Db) -> Result<Stats, OpsError> {
    let mut tx = db.begin().await?;
    Ok(Stats {
        counts: jobs::count_by_queue_and_state(&mut tx).await?,
        oldest_pending_age_s: jobs::oldest_pending_age(&mut tx).await?,
        last_hour: jobs::attempts_since(&mut tx, crate::now_ms() - 3_600_000).await?,
    })
}

/// "7d", "12h", "30m", "45s" or plain seconds: 1 to 12 digits (the OpenAPI document's
/// pattern `^\s*[0-9]{1,12}[dhms]?\s*$`, blanks as `str::trim` reads them).
pub fn parse_age(s: &str) -> Result<i64, OpsError> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('d') => (&s[..s.len() - 1], 86_400),
        Some('h') => (&s[..s.len() - 1], 3_600),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('s') => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    Some(num)
        .filter(|n| (1..=12).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<i64>().ok())
        .map(|n| n * mult)
        .ok_or_else(|| OpsError::Invalid(format!("bad age {s:?}: use e.g. 7d, 12h, 30m or 45s")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d").ok(), Some(604_800));
        assert_eq!(parse_age("90").ok(), Some(90));
        assert!(parse_age("x").is_err());
        assert!(parse_age("-1d").is_err());
        assert!(parse_age("+1d").is_err());
        // At most 12 digits: no overflow of the seconds.
        assert_eq!(
            parse_age("999999999999d").ok(),
            Some(999_999_999_999 * 86_400)
        );
        assert!(parse_age("9999999999999999999d").is_err());
    }
}

/// A stored delivery as operators see it (the body is not shown: it may be large).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub provider: String,
    pub delivery_key: String,
    pub integration_id: Option<i64>,
    pub received_at_ms: i64,
    pub headers: Value,
    pub body_bytes: usize,
    pub job_id: Option<String>,
    pub job_state: Option<String>,
}

/// Most deliveries one page holds.
pub const DELIVERIES_PAGE_MAX: i64 = 1000;

/// One page of deliveries, newest first; `next_before` pages on when there are more.
#[derive(Debug, Serialize)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    pub next_before: Option<i64>,
}

pub async fn list_deliveries(
    db: &Db,
    provider: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<DeliveryPage, OpsError> {
    if !(1..=DELIVERIES_PAGE_MAX).contains(&limit) {
        return Err(OpsError::Invalid(format!(
            "limit must be 1 to {DELIVERIES_PAGE_MAX}, not {limit}; page on with before"
        )));
    }
    let mut tx = db.begin().await?;
    // One more than asked tells whether another page follows.
    let mut rows =
        crate::store::deliveries::list_deliveries(&mut tx, provider, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_before = if more {
        rows.last().map(|d| d.id)
    } else {
        None
    };
    let mut out = Vec::with_capacity(rows.len());
    for d in rows {
        let job_state = match &d.job_id {
            Some(id) => jobs::find_job(&mut tx, id).await?.map(|j| j.state),
            None => None,
        };
        out.push(DeliveryView {
            id: d.id,
            provider: d.provider,
            delivery_key: d.delivery_key,
            integration_id: d.integration_id,
            received_at_ms: d.received_at,
            headers: d.headers.0,
            body_bytes: d.body.len(),
            job_id: d.job_id,
            job_state,
        });
    }
    Ok(DeliveryPage {
        deliveries: out,
        next_before,
    })
}

/// Enqueues a stored delivery again. Refused while its last job is unfinished.
pub async fn replay_delivery(db: &Db, id: i64) -> Result<jobs::Enqueued, OpsError> {
    let mut tx = db.begin_write().await?;
    let delivery = crate::store::deliveries::find_delivery(&mut tx, id)
        .await?
        .ok_or_else(|| OpsError::NotFound(format!("delivery {id}")))?;
    // A Discord interaction is re-applied by its own job (its follow-up token lasts 15 min).
    let r = if delivery.provider == crate::sync::discord::PROVIDER {
        crate::store::enqueue::enqueue(
            &mut tx,
            &issuesync_jobs::discord_interaction::DiscordInteraction { delivery_id: id },
        )
        .await?
    } else {
        crate::store::enqueue::enqueue(
            &mut tx,
            &issuesync_jobs::process_webhook::ProcessWebhook { delivery_id: id },
        )
        .await?
    };
    if let jobs::Enqueued::Duplicate(job) = &r {
        return Err(OpsError::Invalid(format!(
            "delivery {id} is still being processed by job {job}"
        )));
    }
    crate::store::deliveries::set_delivery_job(&mut tx, id, r.id()).await?;
    tx.commit().await?;
    Ok(r)
}
