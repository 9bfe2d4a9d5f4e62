//! Organizations, teams and organization members (with their teams).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::LIST_LIMIT;
use crate::domain::project::{self, Ctx};
use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::receiver::openapi::schemas::{MemberOut, ReadErrors, TeamOut, WriteErrors};
use crate::receiver::state::HttpState;
use crate::store::{found, organizations, teams, users};
use crate::sync::Services;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route(
            "/organizations",
            get(list_organizations).post(create_organization),
        )
        .route("/organizations/{id}", get(get_organization))
        .route(
            "/organizations/{id}/teams",
            get(list_teams).post(create_team),
        )
        .route("/teams/{id}", get(get_team))
        .route(
            "/organizations/{id}/members",
            get(list_members).post(create_member),
        )
        .route("/members/{id}", get(get_member).delete(delete_member))
        .route(
            "/members/{id}/teams/{team_id}",
            put(add_member_team).delete(remove_member_team),
        )
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_organization,
    list_organizations,
    get_organization,
    create_team,
    list_teams,
    get_team,
    create_member,
    list_members,
    get_member,
    delete_member,
    add_member_team,
    remove_member_team
))]
pub(super) struct Doc;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrganization {
    /// Not blank.
    #[schema(
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "Acme"
    )]
    name: String,
    /// Lower-case letters, digits, `-` or `_`, not only digits; default: from the name.
    #[schema(
        pattern = r"^[a-z0-9_-]*[a-z_-][a-z0-9_-]*$",
        max_length = 50,
        example = "acme"
    )]
    slug: Option<String>,
}

/// Creates an organization (snowflake id; the slug defaults to the slugified name).
#[utoipa::path(post, path = "/api/v1/organizations", tag = "organizations",
    request_body = NewOrganization,
    responses((status = 201, description = "Created", body = crate::store::organizations::Organization), WriteErrors))]
async fn create_organization(
    State(s): State<Services>,
    ApiJson(body): ApiJson<NewOrganization>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let org = project::create_organization(&s.domain_ctx(), body.name.trim(), body.slug.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(json!(org))))
}

/// The organizations (at most 500).
#[utoipa::path(get, path = "/api/v1/organizations", tag = "organizations",
    responses((status = 200, description = "The organizations", body = Vec<crate::store::organizations::Organization>), ReadErrors))]
async fn list_organizations(State(s): State<Services>) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let orgs = organizations::list_organizations(&mut tx, LIST_LIMIT).await?;
    Ok(Json(json!(orgs)))
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}", tag = "organizations",
    params(("id" = i64, Path, description = "Organization id")),
    responses((status = 200, description = "The organization", body = crate::store::organizations::Organization), ReadErrors))]
async fn get_organization(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let org = found(
        organizations::find_organization(&mut tx, id).await?,
        "organization",
    )?;
    Ok(Json(json!(org)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTeam {
    /// Not blank.
    #[schema(
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "Backend"
    )]
    name: String,
    /// Lower-case letters, digits, `-` or `_`, not only digits; default: from the name.
    #[schema(
        pattern = r"^[a-z0-9_-]*[a-z_-][a-z0-9_-]*$",
        max_length = 50,
        example = "backend"
    )]
    slug: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/organizations/{id}/teams", tag = "organizations",
    params(("id" = i64, Path, description = "Organization id")),
    request_body = NewTeam,
    responses((status = 201, description = "Created", body = crate::store::teams::Team), WriteErrors))]
async fn create_team(
    State(s): State<Services>,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewTeam>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let ctx: Ctx<'_> = s.domain_ctx();
    let team = project::create_team(&ctx, org_id, body.name.trim(), body.slug.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(json!(team))))
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}/teams", tag = "organizations",
    params(("id" = i64, Path, description = "Organization id")),
    responses((status = 200, description = "The organization's teams", body = Vec<crate::store::teams::Team>), ReadErrors))]
async fn list_teams(
    State(s): State<Services>,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(
        organizations::find_organization(&mut tx, org_id).await?,
        "organization",
    )?;
    Ok(Json(json!(teams::list_teams(&mut tx, org_id).await?)))
}

#[utoipa::path(get, path = "/api/v1/teams/{id}", tag = "organizations",
    params(("id" = i64, Path, description = "Team id")),
    responses((status = 200, description = "The team and its members' user ids", body = TeamOut), ReadErrors))]
async fn get_team(State(s): State<Services>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let team = found(teams::find_team(&mut tx, id).await?, "team")?;
    let members = teams::list_team_user_ids(&mut tx, id).await?;
    Ok(Json(json!({"team": team, "member_user_ids": members})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMember {
    /// An existing user (409 when it does not exist).
    #[serde(deserialize_with = "crate::receiver::json_int::int")]
    user_id: i64,
    #[serde(default = "default_role")]
    #[schema(default = "member", example = "member")]
    role: String,
    /// Teams of the organization the member joins.
    #[serde(default, deserialize_with = "crate::receiver::json_int::ints")]
    teams: Vec<i64>,
}

fn default_role() -> String {
    "member".into()
}

/// Makes a user a member of the organization (409 when it is one already).
#[utoipa::path(post, path = "/api/v1/organizations/{id}/members", tag = "organizations",
    params(("id" = i64, Path, description = "Organization id")),
    request_body = NewMember,
    responses((status = 201, description = "Created", body = MemberOut), WriteErrors))]
async fn create_member(
    State(s): State<Services>,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewMember>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut tx = s.db.begin_write().await?;
    found(
        organizations::find_organization(&mut tx, org_id).await?,
        "organization",
    )?;
    if users::find_user(&mut tx, body.user_id).await?.is_none() {
        return Err(ApiError::conflict(format!(
            "user {} does not exist",
            body.user_id
        )));
    }
    if teams::find_member_by_user(&mut tx, org_id, body.user_id)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "user {} is already a member of organization {org_id}",
            body.user_id
        )));
    }
    let member =
        teams::insert_member(&mut tx, org_id, body.user_id, &body.role, crate::now_ms()).await?;
    for team_id in &body.teams {
        // Named in the body, not the path: a conflict, not a missing resource.
        ensure_team_in_org(&mut tx, *team_id, org_id)
            .await
            .map_err(|e| match e.status {
                StatusCode::NOT_FOUND => ApiError::conflict(e.detail),
                _ => e,
            })?;
        teams::add_member_to_team(&mut tx, member.id, *team_id).await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"member": member, "teams": body.teams})),
    ))
}

/// A team of another organization is as unknown here as one that does not exist: 404.
async fn ensure_team_in_org(tx: &mut crate::db::Tx, team_id: i64, org_id: i64) -> ApiResult<()> {
    match teams::find_team(tx, team_id).await? {
        Some(t) if t.organization_id == org_id => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("team {team_id} is not in organization {org_id}"),
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}/members", tag = "organizations",
    params(("id" = i64, Path, description = "Organization id")),
    responses((status = 200, description = "The members with their team ids", body = Vec<MemberOut>), ReadErrors))]
async fn list_members(
    State(s): State<Services>,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(
        organizations::find_organization(&mut tx, org_id).await?,
        "organization",
    )?;
    let mut out = Vec::new();
    for m in teams::list_members(&mut tx, org_id).await? {
        let team_ids = teams::list_member_team_ids(&mut tx, m.id).await?;
        out.push(json!({"member": m, "teams": team_ids}));
    }
    Ok(Json(json!(out)))
}

#[utoipa::path(get, path = "/api/v1/members/{id}", tag = "organizations",
    params(("id" = i64, Path, description = "Member id")),
    responses((status = 200, description = "The member with its team ids", body = MemberOut), ReadErrors))]
async fn get_member(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let m = found(teams::find_member(&mut tx, id).await?, "member")?;
    let team_ids = teams::list_member_team_ids(&mut tx, m.id).await?;
    Ok(Json(json!({"member": m, "teams": team_ids})))
}

#[utoipa::path(delete, path = "/api/v1/members/{id}", tag = "organizations",
    params(("id" = i64, Path, description = "Member id")),
    responses((status = 204, description = "Deleted"), WriteErrors))]
async fn delete_member(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    let team_ids = teams::list_member_team_ids(&mut tx, id).await?;
    if !teams::delete_member(&mut tx, id).await? {
        return Err(ApiError::not_found("member"));
    }
    crate::domain::caches::invalidate_team_projects(&mut tx, &team_ids).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/members/{id}/teams/{team_id}", tag = "organizations",
    params(("id" = i64, Path, description = "Member id"), ("team_id" = i64, Path, description = "A team of the member's organization")),
    responses((status = 204, description = "The member is in the team"), WriteErrors))]
async fn add_member_team(
    State(s): State<Services>,
    ApiPath((id, team_id)): ApiPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    let m = found(teams::find_member(&mut tx, id).await?, "member")?;
    ensure_team_in_org(&mut tx, team_id, m.organization_id).await?;
    teams::add_member_to_team(&mut tx, id, team_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/members/{id}/teams/{team_id}", tag = "organizations",
    params(("id" = i64, Path, description = "Member id"), ("team_id" = i64, Path, description = "Team id")),
    responses((status = 204, description = "The member left the team"), WriteErrors))]
async fn remove_member_team(
    State(s): State<Services>,
    ApiPath((id, team_id)): ApiPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    if !teams::remove_member_from_team(&mut tx, id, team_id).await? {
        return Err(ApiError::not_found("team membership"));
    }
    crate::domain::caches::invalidate_team_projects(&mut tx, &[team_id]).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
