//! The admin API under `/api/v1`, behind `Authorization: Bearer $ISSUESYNC_ADMIN_TOKEN`.

mod decisions;
mod deliveries;
mod install;
mod integrations;
mod jobs;
mod links;
mod orgs;
mod projects;
mod users;

pub use integrations::PROVIDERS;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::receiver::error::ApiError;
use crate::receiver::state::HttpState;
use crate::sync::Services;

/// Default and upper bound of list sizes.
pub const LIST_LIMIT: i64 = 500;

pub fn routes(state: HttpState) -> Router<HttpState> {
    Router::new()
        .merge(orgs::routes())
        .merge(users::routes())
        .merge(projects::routes())
        .merge(install::routes())
        .merge(integrations::routes())
        .merge(links::routes())
        .merge(jobs::routes())
        .merge(deliveries::routes())
        .merge(decisions::routes())
        .route_layer(middleware::from_fn_with_state(state, require_admin_token))
}

/// The admin operations of the OpenAPI document (`receiver::openapi::document`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = orgs::Doc::openapi();
    for part in [
        users::Doc::openapi(),
        projects::Doc::openapi(),
        integrations::Doc::openapi(),
        links::Doc::openapi(),
        install::Doc::openapi(),
        jobs::Doc::openapi(),
        deliveries::Doc::openapi(),
        decisions::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// Refuses every request without the admin token; with no token configured, refuses all.
async fn require_admin_token(
    State(state): State<Services>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.settings.admin_token.as_ref() else {
        return Err(ApiError::unauthorized(
            "the admin API is disabled: set ISSUESYNC_ADMIN_TOKEN",
        ));
    };
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <admin token>"))?;
    if !bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
        return Err(ApiError::unauthorized("wrong admin token"));
    }
    Ok(next.run(req).await)
}
