//! Linking a group to an issue that exists at the provider (the provider is asked first).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::receiver::openapi::schemas::{ApiErrorBody, WriteErrors};
use crate::receiver::state::HttpState;
use crate::sync::Services;
use crate::sync::link::{LinkError, link_existing_issue};

pub fn routes() -> Router<HttpState> {
    Router::new().route("/groups/{id}/external-issues", post(link_issue))
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(link_issue))]
pub(super) struct Doc;

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::NoGroup(_) => ApiError::not_found("group"),
            LinkError::Conflict(d) => ApiError::conflict(d),
            LinkError::NotFound(d) => ApiError::new(StatusCode::NOT_FOUND, "not_found", d),
            LinkError::Provider(d) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider_unreachable", d)
            }
            LinkError::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkIssue {
    /// An integration installed on the group's organization (409 otherwise).
    #[serde(deserialize_with = "crate::receiver::json_int::int")]
    integration_id: i64,
    /// The Jira issue key (`PROJ-1`) or the Azure DevOps work item id (`1234`); not blank.
    #[schema(
        max_length = 255,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "PROJ-1"
    )]
    key: String,
}

/// Links the group to an issue that exists at the provider: asks the provider for it (its
/// title, description and web URL are kept), writes the external issue, the link and a
/// `CREATE_ISSUE` activity in one transaction, then pushes the group's user assignee and its
/// status when the installation's `sync_forward_assignment` / `sync_status_forward` are on.
/// Linking the same issue again answers 200 and changes nothing.
#[utoipa::path(post, path = "/api/v1/groups/{id}/external-issues", tag = "integrations", request_body = LinkIssue,
    params(("id" = i64, Path, description = "Group id")),
    responses(
        (status = 201, description = "Linked", body = Object,
            example = json!({"external_issue": {"id": 7, "key": "PROJ-1", "title": "Crash on save"}, "created": true, "enqueued": ["sync_status_outbound"]})),
        (status = 200, description = "Already linked: nothing changed", body = Object),
        (status = 502, description = "The provider could not be asked", body = ApiErrorBody,
            example = json!({"error": "provider_unreachable", "detail": "jira answered 401: Unauthorized"})),
        WriteErrors))]
async fn link_issue(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<LinkIssue>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let key = b.key.trim();
    if key.is_empty() || b.key.chars().count() > 255 {
        return Err(ApiError::bad_request(
            "key must not be blank, and at most 255 characters",
        ));
    }
    let linked = link_existing_issue(&s, id, b.integration_id, key).await?;
    let status = if linked.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(
            json!({"external_issue": linked.external_issue, "created": linked.created,
            "enqueued": linked.enqueued}),
        ),
    ))
}
