//! `/api/v1/deliveries…`: stored webhook deliveries and their replay.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::ops;
use crate::receiver::error::{ApiPath, ApiQuery, ApiResult};
use crate::receiver::openapi::schemas::{ReadErrors, Replayed, WriteErrors};
use crate::receiver::state::HttpState;
use crate::sync::Services;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/deliveries", get(list))
        .route("/deliveries/{id}/replay", post(replay))
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, replay))]
pub(super) struct Doc;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// vsts, jira, jira_server or discord.
    provider: Option<String>,
    /// Deliveries with a smaller id than this (the `Link` header's next page).
    before: Option<i64>,
    /// 1 to 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// A page of deliveries (a JSON array); when more follow, a `Link: <…>; rel="next"` header
/// (RFC 8288) points at the next page.
#[utoipa::path(get, operation_id = "list_deliveries", path = "/api/v1/deliveries", tag = "deliveries", params(ListQuery),
    responses((status = 200, description = "Deliveries, newest first", body = Vec<crate::ops::DeliveryView>,
        headers(("link" = String, description = "`</api/v1/deliveries?before=N&limit=N>; rel=\"next\"` when more follow"))),
        ReadErrors))]
async fn list(State(s): State<Services>, ApiQuery(q): ApiQuery<ListQuery>) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(100);
    let page = ops::list_deliveries(&s.db, q.provider.as_deref(), q.before, limit).await?;
    let mut r = Json(json!(page.deliveries)).into_response();
    if let Some(before) = page.next_before {
        let provider = q
            .provider
            .as_deref()
            .map(|p| {
                format!(
                    "&provider={}",
                    percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .unwrap_or_default();
        let link =
            format!("</api/v1/deliveries?before={before}&limit={limit}{provider}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(r)
}

/// Enqueues the delivery's job again; refused (400) while its last job is unfinished.
#[utoipa::path(post, operation_id = "replay_delivery", path = "/api/v1/deliveries/{id}/replay", tag = "deliveries",
    params(("id" = i64, Path, description = "Delivery id")),
    responses((status = 200, description = "The job that was enqueued", body = Replayed), WriteErrors))]
async fn replay(State(s): State<Services>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Value>> {
    let r = ops::replay_delivery(&s.db, id).await?;
    Ok(Json(json!({"job_id": r.id()})))
}
