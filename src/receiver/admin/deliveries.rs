//! `/api/v1/deliveries…`: stored webhook deliveries and their replay.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ops;
use crate::receiver::error::{ApiPath, ApiQuery, ApiResult};
use crate::startup::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deliveries", get(list))
        .route("/deliveries/{id}/replay", post(replay))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    provider: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// A page of deliveries (a JSON array); when more follow, a `Link: <…>; rel="next"` header
/// (RFC 8288) points at the next page.
async fn list(State(s): State<AppState>, ApiQuery(q): ApiQuery<ListQuery>) -> ApiResult<Response> {
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

async fn replay(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Value>> {
    let r = ops::replay_delivery(&s.db, id).await?;
    Ok(Json(json!({"job_id": r.id()})))
}
