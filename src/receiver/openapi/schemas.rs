//! Schemas of the answers that handlers build as JSON objects around stored rows, the error
//! shape, and the error answers shared by the operations. The rows themselves (`Organization`,
//! `Group`, `JobView`, ...) derive their schemas where they are defined.

use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};

use crate::store::groups::{Activity, Group, History};
use crate::store::integrations::OrganizationIntegration;
use crate::store::projects::Project;
use crate::store::teams::{Member, Team};
use crate::store::users::UserEmail;

/// Every error answer: a machine code and a sentence for humans.
#[derive(ToSchema)]
#[schema(example = json!({"error": "not_found", "detail": "no such organization"}))]
pub struct ApiErrorBody {
    /// `bad_request`, `unauthorized`, `not_found`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `provider_refused`, `provider_unreachable`,
    /// `unknown_integration`, `request_timeout`, `unavailable` or `internal`.
    #[schema(example = "not_found")]
    pub error: String,
    #[schema(example = "no such organization")]
    pub detail: String,
}

/// The error answers of an operation that reads.
#[derive(IntoResponses)]
pub enum ReadErrors {
    /// A path or query parameter is malformed or out of range.
    #[response(status = 400, example = json!({"error": "bad_request", "detail": "Invalid URL: Cannot parse `abc` to a `i64`"}))]
    BadRequest(ApiErrorBody),
    /// No or a wrong admin token (or the admin API is disabled: no token configured).
    #[response(status = 401, example = json!({"error": "unauthorized", "detail": "missing Authorization: Bearer <admin token>"}))]
    Unauthorized(ApiErrorBody),
    /// The resource (or one named in the path) does not exist.
    #[response(status = 404, example = json!({"error": "not_found", "detail": "no such organization"}))]
    NotFound(ApiErrorBody),
    /// The database is unreachable or the request timed out; retry later.
    #[response(status = 503, example = json!({"error": "unavailable", "detail": "storage is unavailable; retry later"}))]
    Unavailable(ApiErrorBody),
}

/// The error answers of an operation that writes.
#[derive(IntoResponses)]
pub enum WriteErrors {
    /// The body or a parameter is malformed, or a value is refused.
    #[response(status = 400, example = json!({"error": "bad_request", "detail": "name must not be empty"}))]
    BadRequest(ApiErrorBody),
    /// No or a wrong admin token (or the admin API is disabled: no token configured).
    #[response(status = 401, example = json!({"error": "unauthorized", "detail": "wrong admin token"}))]
    Unauthorized(ApiErrorBody),
    /// The resource named in the path does not exist (or, for a pair of ids in the path, the
    /// second is not the first's organization's).
    #[response(status = 404, example = json!({"error": "not_found", "detail": "no such user"}))]
    NotFound(ApiErrorBody),
    /// A row with the same unique key exists, or the body names something that does not
    /// exist or belongs to another organization.
    #[response(status = 409, example = json!({"error": "conflict", "detail": "user 42 does not exist"}))]
    Conflict(ApiErrorBody),
    /// The body is larger than `http.body_limit_bytes`.
    #[response(status = 413, example = json!({"error": "payload_too_large", "detail": "Failed to buffer the request body: length limit exceeded"}))]
    PayloadTooLarge(ApiErrorBody),
    /// The body is not `Content-Type: application/json`.
    #[response(status = 415, example = json!({"error": "unsupported_media_type", "detail": "Expected request with `Content-Type: application/json`"}))]
    UnsupportedMediaType(ApiErrorBody),
    /// The database or Redis is unreachable, or the request timed out; retry later.
    #[response(status = 503, example = json!({"error": "unavailable", "detail": "storage is unavailable; retry later"}))]
    Unavailable(ApiErrorBody),
}

/// A user with its emails.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserOut {
    pub id: i64,
    pub name: String,
    pub is_active: bool,
    /// Epoch milliseconds.
    pub date_added: i64,
    pub emails: Vec<UserEmail>,
}

/// A team with the user ids of its members.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TeamOut {
    pub team: Team,
    pub member_user_ids: Vec<i64>,
}

/// An organization member with its team ids.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MemberOut {
    pub member: Member,
    pub teams: Vec<i64>,
}

/// A project with its team ids.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProjectOut {
    #[serde(flatten)]
    pub project: Project,
    pub teams: Vec<i64>,
}

/// A group with its status name, assignee, activity and status history.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GroupOut {
    #[serde(flatten)]
    pub group: Group,
    #[schema(value_type = String, example = "unresolved")]
    pub status_name: StatusName,
    /// `user:ID` or `team:ID`; null when unassigned.
    #[serde(rename = "assignedTo")]
    #[schema(example = "user:42")]
    pub assigned_to: Option<String>,
    pub activity: Vec<Activity>,
    pub history: Vec<History>,
}

/// `GET /groups/{id}`: the group and whether its assignee exists (read through the cache).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GroupWithCache {
    #[serde(flatten)]
    pub group: GroupOut,
    pub assignee_exists: bool,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StatusName {
    Unresolved,
    Resolved,
    Ignored,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum IntegrationStatus {
    Active,
    Disabled,
}

/// An integration; secrets in `metadata` are shown as `"[redacted]"`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IntegrationOut {
    pub id: i64,
    #[schema(example = "jira")]
    pub provider: String,
    pub external_id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub status: IntegrationStatus,
    /// Epoch milliseconds.
    pub date_added: i64,
}

/// An integration with its installations on organizations.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IntegrationDetail {
    #[serde(flatten)]
    pub integration: IntegrationOut,
    pub organizations: Vec<OrganizationIntegration>,
}

/// A new external issue and the groups linked to it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ExternalIssueCreated {
    pub external_issue: crate::store::external::ExternalIssue,
    pub group_ids: Vec<i64>,
}

/// A project's ownership rules; `raw` is null when none were stored.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OwnershipOut {
    pub project_id: i64,
    pub raw: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Retried {
    /// How many jobs were set to run again.
    #[schema(minimum = 0)]
    pub retried: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Killed {
    /// How many jobs were killed.
    #[schema(minimum = 0)]
    pub killed: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Purged {
    /// How many finished jobs were deleted.
    #[schema(minimum = 0)]
    pub purged: u64,
}

/// The job a replay enqueued (or the unfinished one that already exists).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Replayed {
    #[schema(example = "01JE5Z8M3R4K6T7V8W9X0Y1Z2A")]
    pub job_id: String,
}
