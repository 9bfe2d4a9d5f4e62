//! Projects (snowflake ids, generated slugs, teams) and their groups.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::LIST_LIMIT;
use crate::db::Tx;
use crate::domain::project;
use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::receiver::openapi::schemas::{
    GroupOut, GroupWithCache, OwnershipOut, ProjectOut, ReadErrors, WriteErrors,
};
use crate::receiver::state::HttpState;
use crate::store::groups::{self, NewGroup};
use crate::store::{found, organizations, projects, teams};
use crate::sync::Services;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route(
            "/organizations/{id}/projects",
            get(list_projects).post(create_project),
        )
        .route("/projects/{id}", get(get_project).delete(delete_project))
        .route(
            "/projects/{id}/teams/{team_id}",
            put(add_team).delete(remove_team),
        )
        .route("/projects/{id}/groups", get(list_groups).post(create_group))
        .route("/groups/{id}", get(get_group).put(update_group))
        .route(
            "/projects/{id}/ownership",
            get(get_ownership).put(put_ownership),
        )
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_projects,
    create_project,
    get_project,
    delete_project,
    add_team,
    remove_team,
    list_groups,
    create_group,
    get_group,
    update_group,
    get_ownership,
    put_ownership
))]
pub(super) struct Doc;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProject {
    /// Not blank.
    #[schema(
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "API"
    )]
    name: String,
    /// Lower-case letters, digits, `-` or `_`, not only digits; default: generated from the
    /// name, unique in the organization.
    #[schema(
        pattern = r"^[a-z0-9_-]*[a-z_-][a-z0-9_-]*$",
        max_length = 50,
        example = "api"
    )]
    slug: Option<String>,
    /// Teams of the organization that get the project.
    #[serde(default, deserialize_with = "crate::receiver::json_int::ints")]
    teams: Vec<i64>,
}

async fn project_json(tx: &mut Tx, id: i64) -> ApiResult<Value> {
    let p = found(projects::find_project(tx, id).await?, "project")?;
    let team_ids = projects::list_project_team_ids(tx, id).await?;
    let mut v = json!(p);
    v["teams"] = json!(team_ids);
    Ok(v)
}

/// Creates a project (snowflake id; the slug is generated under a per-organization lock).
#[utoipa::path(post, path = "/api/v1/organizations/{id}/projects", tag = "projects",
    params(("id" = i64, Path, description = "Organization id")),
    request_body = NewProject,
    responses((status = 201, description = "Created", body = ProjectOut), WriteErrors))]
async fn create_project(
    State(s): State<Services>,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewProject>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = project::create_project(
        &s.domain_ctx(),
        org_id,
        body.name.trim(),
        body.slug.as_deref(),
        &body.teams,
    )
    .await?;
    let mut tx = s.db.begin().await?;
    Ok((
        StatusCode::CREATED,
        Json(project_json(&mut tx, p.id).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}/projects", tag = "projects",
    params(("id" = i64, Path, description = "Organization id")),
    responses((status = 200, description = "The organization's projects", body = Vec<ProjectOut>), ReadErrors))]
async fn list_projects(
    State(s): State<Services>,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(
        organizations::find_organization(&mut tx, org_id).await?,
        "organization",
    )?;
    let mut out = Vec::new();
    for p in projects::list_projects(&mut tx, org_id).await? {
        out.push(project_json(&mut tx, p.id).await?);
    }
    Ok(Json(json!(out)))
}

#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    responses((status = 200, description = "The project with its team ids", body = ProjectOut), ReadErrors))]
async fn get_project(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    Ok(Json(project_json(&mut tx, id).await?))
}

/// Deletes the project and, by cascade, its groups and links.
#[utoipa::path(delete, path = "/api/v1/projects/{id}", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    responses((status = 204, description = "Deleted"), WriteErrors))]
async fn delete_project(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    project::delete_project(&s.db, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/projects/{id}/teams/{team_id}", tag = "projects",
    params(("id" = i64, Path, description = "Project id"), ("team_id" = i64, Path, description = "A team of the project's organization")),
    responses((status = 204, description = "The team has the project"), WriteErrors))]
async fn add_team(
    State(s): State<Services>,
    ApiPath((id, team_id)): ApiPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    let p = found(projects::find_project(&mut tx, id).await?, "project")?;
    match teams::find_team(&mut tx, team_id).await? {
        Some(t) if t.organization_id == p.organization_id => {}
        // A team of another organization is as unknown here as one that does not exist.
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("team {team_id} is not in the project's organization"),
            ));
        }
    }
    projects::add_project_team(&mut tx, id, team_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/projects/{id}/teams/{team_id}", tag = "projects",
    params(("id" = i64, Path, description = "Project id"), ("team_id" = i64, Path, description = "Team id")),
    responses((status = 204, description = "The team no longer has the project"), WriteErrors))]
async fn remove_team(
    State(s): State<Services>,
    ApiPath((id, team_id)): ApiPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    if !projects::remove_project_team(&mut tx, id, team_id).await? {
        return Err(ApiError::not_found("project team"));
    }
    // The team's members may no longer see the project: assignee caches are stale.
    crate::domain::caches::enqueue_invalidation(
        &mut tx,
        id,
        issuesync_jobs::invalidate_project_caches::CacheKind::AssigneeExists,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroup {
    /// Not blank.
    #[schema(
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "TypeError: x is undefined"
    )]
    title: String,
    /// "unresolved" (default) | "resolved" | "ignored"
    #[schema(value_type = Option<crate::receiver::openapi::schemas::StatusName>)]
    status: Option<String>,
    /// Epoch milliseconds; default now.
    #[serde(default, deserialize_with = "crate::receiver::json_int::opt_int")]
    last_seen: Option<i64>,
    /// Epoch milliseconds; default `last_seen`.
    #[serde(default, deserialize_with = "crate::receiver::json_int::opt_int")]
    first_seen: Option<i64>,
}

/// GroupStatus and the substatus a new group of that status gets.
pub fn parse_status(s: &str) -> ApiResult<(i32, Option<i32>)> {
    match s {
        "unresolved" => Ok((0, Some(7))),
        "resolved" => Ok((1, None)),
        "ignored" => Ok((2, Some(5))),
        other => Err(ApiError::bad_request(format!(
            "status must be unresolved, resolved or ignored, not {other:?}"
        ))),
    }
}

pub fn status_name(status: i32) -> &'static str {
    match status {
        1 => "resolved",
        2 => "ignored",
        _ => "unresolved",
    }
}

/// Creates a group (an issue of the error tracker) in the project.
#[utoipa::path(post, path = "/api/v1/projects/{id}/groups", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    request_body = CreateGroup,
    responses((status = 201, description = "Created", body = GroupOut), WriteErrors))]
async fn create_group(
    State(s): State<Services>,
    ApiPath(project_id): ApiPath<i64>,
    ApiJson(body): ApiJson<CreateGroup>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.title.trim().is_empty() {
        return Err(ApiError::bad_request("title must not be empty"));
    }
    let (status, substatus) = parse_status(body.status.as_deref().unwrap_or("unresolved"))?;
    let now = crate::now_ms();
    let last_seen = body.last_seen.unwrap_or(now);
    let mut tx = s.db.begin_write().await?;
    found(
        projects::find_project(&mut tx, project_id).await?,
        "project",
    )?;
    let g = groups::insert_group(
        &mut tx,
        &NewGroup {
            project_id,
            title: body.title.trim(),
            status,
            substatus,
            first_seen: body.first_seen.unwrap_or(last_seen),
            last_seen,
        },
    )
    .await?;
    let out = group_json(&mut tx, g.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GroupPage {
    /// Groups with a smaller id than this.
    before: Option<i64>,
    /// Page size, clamped to 1..=500; default 100.
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/projects/{id}/groups", tag = "projects",
    params(("id" = i64, Path, description = "Project id"), GroupPage),
    responses((status = 200, description = "A page of the project's groups, newest first", body = Vec<crate::store::groups::Group>), ReadErrors))]
async fn list_groups(
    State(s): State<Services>,
    ApiPath(project_id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<GroupPage>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(
        projects::find_project(&mut tx, project_id).await?,
        "project",
    )?;
    let limit = q.limit.unwrap_or(100).clamp(1, LIST_LIMIT);
    Ok(Json(json!(
        groups::list_groups(&mut tx, project_id, q.before, limit).await?
    )))
}

/// A group with its status name, assignee, activity and history.
pub async fn group_json(tx: &mut Tx, id: i64) -> ApiResult<Value> {
    let g = found(groups::find_group(tx, id).await?, "group")?;
    let assignee = groups::find_assignee(tx, id)
        .await?
        .map(|a| match (a.user_id, a.team_id) {
            (Some(u), _) => format!("user:{u}"),
            (_, Some(t)) => format!("team:{t}"),
            _ => String::new(),
        });
    let mut v = json!(g);
    v["status_name"] = json!(status_name(g.status));
    v["assignedTo"] = json!(assignee);
    v["activity"] = json!(groups::list_activities(tx, id).await?);
    v["history"] = json!(groups::list_history(tx, id).await?);
    Ok(v)
}

#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "projects",
    params(("id" = i64, Path, description = "Group id")),
    responses((status = 200, description = "The group", body = GroupWithCache), ReadErrors))]
async fn get_group(State(s): State<Services>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let mut v = group_json(&mut tx, id).await?;
    drop(tx);
    // Read through the shared cache, as the main product's post-processing does.
    let has = !v["assignedTo"].is_null();
    v["assignee_exists"] = json!(crate::domain::caches::assignee_exists(&s.caches, id, has).await);
    Ok(Json(v))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupUpdate {
    /// "resolved" | "unresolved" | "ignored"
    #[schema(value_type = Option<crate::receiver::openapi::schemas::StatusName>)]
    status: Option<String>,
    /// With "unresolved": "ongoing" (default) or "regressed"; with "ignored":
    /// "archived_until_escalating" (default) or "archived_forever".
    #[schema(value_type = Option<String>, example = "regressed")]
    substatus: Option<String>,
    /// "user:ID" | "team:ID" | null (unassign). Absent: unchanged.
    #[serde(default, rename = "assignedTo", deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^(user|team):[+-]?[0-9]{1,18}$", example = "user:42")]
    assigned_to: Option<Option<String>>,
    /// The acting user, recorded in the activity.
    #[serde(default, deserialize_with = "crate::receiver::json_int::opt_int")]
    acting_user_id: Option<i64>,
}

/// Distinguishes an explicit null (unassign) from an absent field.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// Parses "user:ID" / "team:ID".
pub fn parse_actor(s: &str) -> ApiResult<crate::domain::assign::Actor> {
    crate::domain::assign::Actor::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "assignedTo must be \"user:ID\", \"team:ID\" or null, not {s:?}"
        ))
    })
}

/// The status/assignee change intent (Sentry's update_groups / handle_assigned_to).
#[utoipa::path(put, path = "/api/v1/groups/{id}", tag = "projects",
    params(("id" = i64, Path, description = "Group id")),
    request_body = GroupUpdate,
    responses((status = 200, description = "The changed group", body = GroupOut), WriteErrors))]
async fn update_group(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<GroupUpdate>,
) -> ApiResult<Json<Value>> {
    use crate::sync::intent::{ChangeError, ChangeSource, GroupChange, StatusIntent};
    let status = match (b.status.as_deref(), b.substatus.as_deref()) {
        (None, None) => None,
        (Some("resolved"), None) => Some(StatusIntent::Resolved),
        (Some("unresolved"), None | Some("ongoing")) => {
            Some(StatusIntent::Unresolved { regressed: false })
        }
        (Some("unresolved"), Some("regressed")) => {
            Some(StatusIntent::Unresolved { regressed: true })
        }
        (Some("ignored"), None | Some("archived_until_escalating")) => {
            Some(StatusIntent::Ignored { forever: false })
        }
        (Some("ignored"), Some("archived_forever")) => {
            Some(StatusIntent::Ignored { forever: true })
        }
        (st, sub) => {
            return Err(ApiError::bad_request(format!(
                "unsupported status/substatus {st:?}/{sub:?}"
            )));
        }
    };
    let assigned_to = match &b.assigned_to {
        None => None,
        Some(None) => Some(None),
        Some(Some(a)) => Some(Some(parse_actor(a)?)),
    };
    if status.is_none() && assigned_to.is_none() {
        return Err(ApiError::bad_request("give status and/or assignedTo"));
    }
    // Recorded in the activity and subscribed to the group: it must exist.
    if let Some(u) = b.acting_user_id {
        let mut tx = s.db.begin().await?;
        if crate::store::users::find_user(&mut tx, u).await?.is_none() {
            return Err(ApiError::conflict(format!(
                "acting user {u} does not exist"
            )));
        }
    }
    let change = GroupChange {
        status,
        assigned_to,
    };
    crate::sync::intent::apply_group_change(
        &s,
        id,
        &change,
        &ChangeSource {
            acting_user: b.acting_user_id,
            integration: None,
        },
    )
    .await
    .map_err(|e| match e {
        ChangeError::NotFound => ApiError::not_found("group"),
        ChangeError::Invalid(d) => ApiError::bad_request(d),
        ChangeError::UnknownAssignee(d) => ApiError::conflict(d),
        ChangeError::Store(e) => e.into(),
    })?;
    let mut tx = s.db.begin().await?;
    Ok(Json(group_json(&mut tx, id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ownership {
    /// The ownership rules text (evaluated by the main product).
    #[schema(max_length = 100_000, example = "path:src/* #backend")]
    raw: String,
}

/// Stores the rules and, in the same transaction, enqueues the owner-debounce invalidation.
#[utoipa::path(put, path = "/api/v1/projects/{id}/ownership", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    request_body = Ownership,
    responses((status = 200, description = "The stored rules", body = OwnershipOut), WriteErrors))]
async fn put_ownership(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<Ownership>,
) -> ApiResult<Json<Value>> {
    if b.raw.chars().count() > 100_000 {
        return Err(ApiError::bad_request(
            "ownership rules are limited to 100,000 characters",
        ));
    }
    let mut tx = s.db.begin_write().await?;
    found(projects::find_project(&mut tx, id).await?, "project")?;
    groups::set_ownership(&mut tx, id, &b.raw, crate::now_ms()).await?;
    crate::domain::caches::enqueue_invalidation(
        &mut tx,
        id,
        issuesync_jobs::invalidate_project_caches::CacheKind::OwnerDebounce,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({"project_id": id, "raw": b.raw})))
}

#[utoipa::path(get, path = "/api/v1/projects/{id}/ownership", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    responses((status = 200, description = "The rules; raw is null when none are stored", body = OwnershipOut), ReadErrors))]
async fn get_ownership(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(projects::find_project(&mut tx, id).await?, "project")?;
    Ok(Json(
        json!({"project_id": id, "raw": groups::find_ownership(&mut tx, id).await?}),
    ))
}
