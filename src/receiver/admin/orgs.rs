//! Organizations, teams and organization members (with their teams).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::LIST_LIMIT;
use crate::domain::project::{self, Ctx};
use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::startup::AppState;
use crate::store::{found, organizations, teams, users};

pub fn routes() -> Router<AppState> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrganization {
    name: String,
    slug: Option<String>,
}

async fn create_organization(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<NewOrganization>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let org = project::create_organization(&s.domain_ctx(), body.name.trim(), body.slug.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(json!(org))))
}

async fn list_organizations(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let orgs = organizations::list_organizations(&mut tx, LIST_LIMIT).await?;
    Ok(Json(json!(orgs)))
}

async fn get_organization(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let org = found(
        organizations::find_organization(&mut tx, id).await?,
        "organization",
    )?;
    Ok(Json(json!(org)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTeam {
    name: String,
    slug: Option<String>,
}

async fn create_team(
    State(s): State<AppState>,
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

async fn list_teams(
    State(s): State<AppState>,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(
        organizations::find_organization(&mut tx, org_id).await?,
        "organization",
    )?;
    Ok(Json(json!(teams::list_teams(&mut tx, org_id).await?)))
}

async fn get_team(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let team = found(teams::find_team(&mut tx, id).await?, "team")?;
    let members = teams::list_team_user_ids(&mut tx, id).await?;
    Ok(Json(json!({"team": team, "member_user_ids": members})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    user_id: i64,
    #[serde(default = "default_role")]
    role: String,
    #[serde(default)]
    teams: Vec<i64>,
}

fn default_role() -> String {
    "member".into()
}

async fn create_member(
    State(s): State<AppState>,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewMember>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut tx = s.db.begin_write().await?;
    found(
        organizations::find_organization(&mut tx, org_id).await?,
        "organization",
    )?;
    if users::find_user(&mut tx, body.user_id).await?.is_none() {
        return Err(ApiError::bad_request(format!(
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
        ensure_team_in_org(&mut tx, *team_id, org_id).await?;
        teams::add_member_to_team(&mut tx, member.id, *team_id).await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"member": member, "teams": body.teams})),
    ))
}

async fn ensure_team_in_org(tx: &mut crate::db::Tx, team_id: i64, org_id: i64) -> ApiResult<()> {
    match teams::find_team(tx, team_id).await? {
        Some(t) if t.organization_id == org_id => Ok(()),
        _ => Err(ApiError::bad_request(format!(
            "team {team_id} is not in organization {org_id}"
        ))),
    }
}

async fn list_members(
    State(s): State<AppState>,
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

async fn get_member(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let m = found(teams::find_member(&mut tx, id).await?, "member")?;
    let team_ids = teams::list_member_team_ids(&mut tx, m.id).await?;
    Ok(Json(json!({"member": m, "teams": team_ids})))
}

async fn delete_member(
    State(s): State<AppState>,
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

async fn add_member_team(
    State(s): State<AppState>,
    ApiPath((id, team_id)): ApiPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    let m = found(teams::find_member(&mut tx, id).await?, "member")?;
    ensure_team_in_org(&mut tx, team_id, m.organization_id).await?;
    teams::add_member_to_team(&mut tx, id, team_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member_team(
    State(s): State<AppState>,
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
