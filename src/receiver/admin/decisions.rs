//! `/api/v1/…/sync` and `/api/v1/sync-decisions`: why changes did or did not sync.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::explain::{self, Search};
use crate::receiver::error::{ApiPath, ApiQuery, ApiResult};
use crate::receiver::openapi::schemas::ReadErrors;
use crate::receiver::state::HttpState;
use crate::store::decisions::Timeline;
use crate::sync::Services;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/groups/{id}/sync", get(group_sync))
        .route("/external-issues/{id}/sync", get(issue_sync))
        .route("/sync-decisions", get(search))
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(group_sync, issue_sync, search))]
pub(super) struct Doc;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// The `next_cursor` of the previous page: `{at_ms}.{id}`.
    #[param(pattern = r"^[+-]?[0-9]{1,18}\.[+-]?[0-9]{1,18}$")]
    before: Option<String>,
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Why changes of the group did or did not sync, newest first.
#[utoipa::path(get, path = "/api/v1/groups/{id}/sync", tag = "decisions",
    params(("id" = i64, Path, description = "Group id"), PageQuery),
    responses((status = 200, description = "A page of sync decisions", body = crate::explain::Page), ReadErrors))]
async fn group_sync(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Value>> {
    let page = explain::timeline(&s.db, Timeline::Group(id), q.before.as_deref(), q.limit).await?;
    Ok(Json(json!(page)))
}

/// Why changes of the external issue did or did not sync, newest first.
#[utoipa::path(get, path = "/api/v1/external-issues/{id}/sync", tag = "decisions",
    params(("id" = i64, Path, description = "External issue id"), PageQuery),
    responses((status = 200, description = "A page of sync decisions", body = crate::explain::Page), ReadErrors))]
async fn issue_sync(
    State(s): State<Services>,
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// A reason code, e.g. `echo`.
    reason: Option<String>,
    /// An integration id.
    integration: Option<i64>,
    /// Epoch ms, or an age such as `24h`.
    #[param(
        pattern = r"^[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*([0-9]{1,12}[dhms]|[+-]?[0-9]{1,18})[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
    )]
    since: Option<String>,
    /// inbound or outbound.
    direction: Option<String>,
    /// synced or skipped.
    outcome: Option<String>,
    /// The `next_cursor` of the previous page: `{at_ms}.{id}`.
    #[param(pattern = r"^[+-]?[0-9]{1,18}\.[+-]?[0-9]{1,18}$")]
    before: Option<String>,
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Sync decisions matching the filters, newest first.
#[utoipa::path(get, operation_id = "search_sync_decisions", path = "/api/v1/sync-decisions", tag = "decisions", params(SearchQuery),
    responses((status = 200, description = "A page of sync decisions", body = crate::explain::Page), ReadErrors))]
async fn search(
    State(s): State<Services>,
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
