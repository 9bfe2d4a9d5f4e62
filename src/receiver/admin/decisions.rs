//! `/api/v1/…/sync` and `/api/v1/sync-decisions`: why changes did or did not sync.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::explain::{self, Search};
use crate::receiver::error::{ApiPath, ApiQuery, ApiResult};
use crate::startup::AppState;
use crate::store::decisions::Timeline;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/groups/{id}/sync", get(group_sync))
        .route("/external-issues/{id}/sync", get(issue_sync))
        .route("/sync-decisions", get(search))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    before: Option<String>,
    limit: Option<i64>,
}

async fn group_sync(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Value>> {
    let page = explain::timeline(&s.db, Timeline::Group(id), q.before.as_deref(), q.limit).await?;
    Ok(Json(json!(page)))
}

async fn issue_sync(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Value>> {
    let page = explain::timeline(
        &s.db,
        Timeline::ExternalIssue(id),
        q.before.as_deref(),
        q.limit,
    )
    .await?;
    Ok(Json(json!(page)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    reason: Option<String>,
    /// An integration id.
    integration: Option<i64>,
    /// Epoch ms, or an age such as `24h`.
    since: Option<String>,
    direction: Option<String>,
    outcome: Option<String>,
    before: Option<String>,
    limit: Option<i64>,
}

async fn search(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Value>> {
    let page = explain::search(
        &s.db,
        &Search {
            reason: q.reason.as_deref(),
            integration: q.integration,
            since: q.since.as_deref(),
            direction: q.direction.as_deref(),
            outcome: q.outcome.as_deref(),
            before: q.before.as_deref(),
            limit: q.limit,
        },
    )
    .await?;
    Ok(Json(json!(page)))
}
