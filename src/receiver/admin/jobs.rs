//! `/api/v1/jobs…`: the same operations as `issuesync jobs …`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use issuesync_jobs::Envelope;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::ops::{self, OpsError};
use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::receiver::openapi::schemas::{Killed, Purged, ReadErrors, Retried, WriteErrors};
use crate::receiver::state::HttpState;
use crate::store::enqueue::enqueue_envelope;
use crate::store::jobs::JobFilter;
use crate::sync::Services;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/jobs", get(list).post(create))
        .route("/jobs/stats", get(stats))
        .route("/jobs/retry", post(retry_bulk))
        .route("/jobs/kill", post(kill_bulk))
        .route("/jobs/purge", post(purge))
        .route("/jobs/{id}", get(show))
        .route("/jobs/{id}/retry", post(retry_one))
        .route("/jobs/{id}/kill", post(kill_one))
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list, create, stats, retry_bulk, kill_bulk, purge, show, retry_one, kill_one
))]
pub(super) struct Doc;

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Invalid(d) => ApiError::bad_request(d),
            OpsError::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
            }
            OpsError::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// pending, scheduled, running, failed, dead or done.
    state: Option<String>,
    /// webhooks, inbound, outbound or maintenance.
    queue: Option<String>,
    /// A job kind, e.g. `process_webhook`.
    job: Option<String>,
    /// A text in the payload, e.g. an external issue key.
    search: Option<String>,
    limit: Option<i64>,
}

/// Jobs, newest first (`issuesync jobs list`).
#[utoipa::path(get, operation_id = "list_jobs", path = "/api/v1/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, description = "The jobs; payloads are redacted", body = Vec<crate::ops::JobView>), ReadErrors))]
async fn list(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let filter = JobFilter {
        state: q.state,
        queue: q.queue,
        job_name: q.job,
        search: q.search,
        ids: None,
        ..Default::default()
    };
    let jobs = ops::list(&s.db, &filter, q.limit.unwrap_or(100)).await?;
    Ok(Json(json!(jobs)))
}

/// A job with its attempt history (`issuesync jobs show`).
#[utoipa::path(get, operation_id = "show_job", path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id (a ULID)")),
    responses((status = 200, description = "The job", body = crate::ops::JobDetail), ReadErrors))]
async fn show(State(s): State<Services>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(ops::show(&s.db, &id).await?)))
}

/// Counts per queue and state, the oldest due job's wait, the last hour's outcomes.
#[utoipa::path(get, operation_id = "job_stats", path = "/api/v1/jobs/stats", tag = "jobs",
    responses((status = 200, description = "Queue statistics", body = crate::ops::Stats), ReadErrors))]
async fn stats(State(s): State<Services>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(ops::stats(&s.db).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewJob {
    /// A job kind (see `issuesync jobs kinds`).
    #[schema(example = "noop")]
    job: String,
    /// The job's arguments, checked against its kind.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({}))]
    args: Value,
    /// Run this many seconds from now (at most a year: longer delays are cut to a year).
    #[serde(default, deserialize_with = "crate::receiver::json_int::opt_int")]
    #[schema(minimum = 0)]
    delay_secs: Option<i64>,
}

/// Enqueues a job: 201 when new, 200 with the existing job when an unfinished one has the
/// same dedup key.
#[utoipa::path(post, operation_id = "create_job", path = "/api/v1/jobs", tag = "jobs", request_body = NewJob,
    responses(
        (status = 201, description = "Enqueued", body = crate::store::jobs::Enqueued),
        (status = 200, description = "A duplicate of an unfinished job; nothing enqueued", body = crate::store::jobs::Enqueued),
        WriteErrors))]
async fn create(
    State(s): State<Services>,
    ApiJson(b): ApiJson<NewJob>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let env = Envelope {
        job: b.job,
        args: if b.args.is_null() { json!({}) } else { b.args },
        traceparent: None,
    };
    let kind = issuesync_jobs::validate(&env).map_err(ApiError::bad_request)?;
    if kind.name == "noop"
        && let Ok(noop) = env.decode::<issuesync_jobs::noop::Noop>()
        && noop.harms_the_worker()
    {
        return Err(ApiError::bad_request(format!(
            "noop behaviour {} would crash the worker; it is for the test harness only",
            serde_json::to_string(&noop.behaviour).unwrap_or_default()
        )));
    }
    if b.delay_secs.is_some_and(|d| d < 0) {
        return Err(ApiError::bad_request("delay_secs must not be negative"));
    }
    let run_at = b
        .delay_secs
        .map(|d| chrono::Utc::now() + chrono::Duration::seconds(d.min(365 * 86_400)));
    let dedup_key = issuesync_jobs::dedup_key_of(&env);
    let mut tx = s.db.begin().await?;
    let r = enqueue_envelope(
        &mut tx,
        kind.queue,
        kind.max_attempts,
        env,
        dedup_key,
        run_at,
        kind.coalesce,
    )
    .await?;
    tx.commit().await?;
    let status = match r {
        crate::store::jobs::Enqueued::New(_) => StatusCode::CREATED,
        crate::store::jobs::Enqueued::Duplicate(_) => StatusCode::OK,
    };
    Ok((status, Json(json!(r))))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRetry {
    /// These jobs; or, when empty, the jobs matching `state` and `queue`.
    #[serde(default)]
    ids: Vec<String>,
    state: Option<String>,
    queue: Option<String>,
}

/// Sets failed or dead jobs to run again (`issuesync jobs retry`).
#[utoipa::path(post, operation_id = "retry_jobs", path = "/api/v1/jobs/retry", tag = "jobs", request_body = BulkRetry,
    responses((status = 200, description = "How many jobs will run again", body = Retried), WriteErrors))]
async fn retry_bulk(
    State(s): State<Services>,
    ApiJson(b): ApiJson<BulkRetry>,
) -> ApiResult<Json<Value>> {
    let n = ops::retry(&s.db, &b.ids, b.state.as_deref(), b.queue.as_deref()).await?;
    Ok(Json(json!({"retried": n})))
}

#[utoipa::path(post, operation_id = "retry_job", path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "1 when the job will run again, 0 when it is not failed or dead", body = Retried), WriteErrors))]
async fn retry_one(
    State(s): State<Services>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    ops::show(&s.db, &id).await?;
    let n = ops::retry(&s.db, std::slice::from_ref(&id), None, None).await?;
    Ok(Json(json!({"retried": n})))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Kill {
    /// The jobs to kill (finished ones are left as they are).
    #[serde(default)]
    #[schema(required = true, min_items = 1)]
    ids: Vec<String>,
    /// Recorded as the jobs' last error; default "killed by an operator".
    reason: Option<String>,
}

const DEFAULT_KILL_REASON: &str = "killed by an operator";

/// Marks unfinished jobs dead (`issuesync jobs kill`).
#[utoipa::path(post, operation_id = "kill_jobs", path = "/api/v1/jobs/kill", tag = "jobs", request_body = Kill,
    responses((status = 200, description = "How many jobs were killed", body = Killed), WriteErrors))]
async fn kill_bulk(State(s): State<Services>, ApiJson(b): ApiJson<Kill>) -> ApiResult<Json<Value>> {
    let n = ops::kill(
        &s.db,
        &b.ids,
        b.reason.as_deref().unwrap_or(DEFAULT_KILL_REASON),
    )
    .await?;
    Ok(Json(json!({"killed": n})))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct KillQuery {
    /// Recorded as the job's last error; default "killed by an operator".
    reason: Option<String>,
}

#[utoipa::path(post, operation_id = "kill_job", path = "/api/v1/jobs/{id}/kill", tag = "jobs",
    params(("id" = String, Path, description = "Job id"), KillQuery),
    responses((status = 200, description = "1 when the job was killed, 0 when it had finished", body = Killed), WriteErrors))]
async fn kill_one(
    State(s): State<Services>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<KillQuery>,
) -> ApiResult<Json<Value>> {
    ops::show(&s.db, &id).await?;
    let reason = q.reason.unwrap_or_else(|| DEFAULT_KILL_REASON.into());
    let n = ops::kill(&s.db, std::slice::from_ref(&id), &reason).await?;
    Ok(Json(json!({"killed": n})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Purge {
    /// A finished state: done or dead.
    #[schema(pattern = "^(done|dead)$", example = "done")]
    state: String,
    /// An age: `7d`, `12h`, `30m`, `45s` or plain seconds.
    #[schema(
        pattern = r"^[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[0-9]{1,12}[dhms]?[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "7d"
    )]
    older_than: String,
}

/// Deletes finished jobs older than the age (`issuesync jobs purge`).
#[utoipa::path(post, operation_id = "purge_jobs", path = "/api/v1/jobs/purge", tag = "jobs", request_body = Purge,
    responses((status = 200, description = "How many jobs were deleted", body = Purged), WriteErrors))]
async fn purge(State(s): State<Services>, ApiJson(b): ApiJson<Purge>) -> ApiResult<Json<Value>> {
    let age = ops::parse_age(&b.older_than)?;
    let n = ops::purge(&s.db, &b.state, age).await?;
    Ok(Json(json!({"purged": n})))
}
