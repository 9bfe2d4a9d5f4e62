//! `/api/v1/deliveries…`: stored webhook deliveries and their replay.

use axum::extract::State;
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

async fn list(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let list = ops::list_deliveries(
        &s.db,
        q.provider.as_deref(),
        q.before,
        q.limit.unwrap_or(100),
    )
    .await?;
    Ok(Json(json!(list)))
}

async fn replay(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Value>> {
    let r = ops::replay_delivery(&s.db, id).await?;
    Ok(Json(json!({"job_id": r.id()})))
}
