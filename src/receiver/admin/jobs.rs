//! `/api/v1/jobs…`: the same operations as `issuesync jobs …`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use issuesync_jobs::Envelope;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ops::{self, OpsError};
use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::startup::AppState;
use crate::store::jobs::JobFilter;
use crate::worker::enqueue::enqueue_envelope;

pub fn routes() -> Router<AppState> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    queue: Option<String>,
    job: Option<String>,
    /// A text in the payload, e.g. an external issue key.
    search: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(s): State<AppState>,
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

async fn show(State(s): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(ops::show(&s.db, &id).await?)))
}

async fn stats(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(ops::stats(&s.db).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewJob {
    job: String,
    #[serde(default)]
    args: Value,
    /// Run this many seconds from now.
    #[serde(default)]
    delay_secs: Option<u64>,
}

async fn create(
    State(s): State<AppState>,
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
    let run_at = b
        .delay_secs
        .map(|d| chrono::Utc::now() + chrono::Duration::seconds(d.min(365 * 86_400) as i64));
    let mut tx = s.db.begin().await?;
    let r = enqueue_envelope(
        &mut tx,
        kind.queue,
        kind.max_attempts,
        &env,
        issuesync_jobs::dedup_key_of(&env),
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BulkRetry {
    #[serde(default)]
    ids: Vec<String>,
    state: Option<String>,
    queue: Option<String>,
}

async fn retry_bulk(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<BulkRetry>,
) -> ApiResult<Json<Value>> {
    let n = ops::retry(&s.db, &b.ids, b.state.as_deref(), b.queue.as_deref()).await?;
    Ok(Json(json!({"retried": n})))
}

async fn retry_one(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    ops::show(&s.db, &id).await?;
    let n = ops::retry(&s.db, std::slice::from_ref(&id), None, None).await?;
    Ok(Json(json!({"retried": n})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Kill {
    #[serde(default)]
    ids: Vec<String>,
    reason: Option<String>,
}

const DEFAULT_KILL_REASON: &str = "killed by an operator";

async fn kill_bulk(State(s): State<AppState>, ApiJson(b): ApiJson<Kill>) -> ApiResult<Json<Value>> {
    let n = ops::kill(
        &s.db,
        &b.ids,
        b.reason.as_deref().unwrap_or(DEFAULT_KILL_REASON),
    )
    .await?;
    Ok(Json(json!({"killed": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillQuery {
    reason: Option<String>,
}

async fn kill_one(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<KillQuery>,
) -> ApiResult<Json<Value>> {
    ops::show(&s.db, &id).await?;
    let reason = q.reason.unwrap_or_else(|| DEFAULT_KILL_REASON.into());
    let n = ops::kill(&s.db, std::slice::from_ref(&id), &reason).await?;
    Ok(Json(json!({"killed": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    state: String,
    older_than: String,
}

async fn purge(State(s): State<AppState>, ApiJson(b): ApiJson<Purge>) -> ApiResult<Json<Value>> {
    let age = ops::parse_age(&b.older_than)?;
    let n = ops::purge(&s.db, &b.state, age).await?;
    Ok(Json(json!({"purged": n})))
}
