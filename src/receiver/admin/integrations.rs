//! Integrations, their installations on organizations (sync switches), external-project
//! status mappings, external issues and their links to groups. Secrets in `metadata` are
//! accepted here but never shown again.
//!
//! A little over 600 lines: these resources nest (integration → installation → project
//! mapping → external issue) and share their lookups and OpenAPI schemas.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::receiver::openapi::schemas::{
    ExternalIssueCreated, IntegrationDetail, IntegrationOut, ReadErrors, WriteErrors,
};
use crate::receiver::state::HttpState;
use crate::redact::redact;
use crate::store::external::ExternalIssue;
use crate::store::external::{self, NewExternalIssue};
use crate::store::integrations::OrganizationIntegration;
use crate::store::integrations::{self, ExternalProject, Integration, NewIntegration};
use crate::store::{found, groups, organizations};
use crate::sync::Services;

pub const PROVIDERS: &[&str] = &["vsts", "jira", "jira_server", "discord"];

/// Config keys of an installation and their type (Sentry's `OrganizationIntegration.config`).
const BOOL_SWITCHES: &[&str] = &[
    "sync_status_forward",
    "sync_status_reverse",
    "sync_forward_assignment",
    "sync_reverse_assignment",
    "sync_comments",
    "sync_status_reverse_overrides_ignored",
];
const RESOLUTION_STRATEGIES: &[&str] =
    &["resolve", "resolve_current_release", "resolve_next_release"];

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route(
            "/integrations",
            get(list_integrations).post(create_integration),
        )
        .route(
            "/integrations/{id}",
            get(get_integration).patch(update_integration),
        )
        .route("/integrations/{id}/organizations", get(list_installs))
        .route("/integrations/{id}/organizations/{org_id}", put(install))
        .route(
            "/organization-integrations/{id}/external-projects",
            get(list_external_projects).post(upsert_external_project),
        )
        .route("/external-issues", post(create_external_issue))
        .route("/external-issues/{id}", get(get_external_issue))
        .route("/groups/{id}/links", post(link_group))
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_integrations,
    create_integration,
    get_integration,
    update_integration,
    list_installs,
    install,
    list_external_projects,
    upsert_external_project,
    create_external_issue,
    get_external_issue,
    link_group,
))]
pub(super) struct Doc;

pub(super) fn integration_json(i: &Integration) -> Value {
    json!({
        "id": i.id, "provider": i.provider, "external_id": i.external_id, "name": i.name,
        "metadata": redact(&i.metadata.0), "status": if i.status == integrations::STATUS_ACTIVE { "active" } else { "disabled" },
        "date_added": i.date_added,
    })
}

fn check_metadata(v: &Value) -> ApiResult<()> {
    if !v.is_object() {
        return Err(ApiError::bad_request("metadata must be a JSON object"));
    }
    Ok(())
}

/// What a provider cannot work without: a Discord app's Ed25519 public key. Our own accounts
/// (`sync_actor_ids`, the echo guard) must be account ids or names.
fn check_provider_metadata(provider: &str, v: &Value) -> ApiResult<()> {
    let actor_ok = |a: &Value| {
        a.as_str()
            .is_some_and(|s| !s.trim().is_empty() && s.chars().count() <= 200)
    };
    let ok = match v.get("sync_actor_ids") {
        None => true,
        Some(Value::Array(a)) => a.len() <= 100 && a.iter().all(actor_ok),
        Some(one) => actor_ok(one),
    };
    if !ok {
        return Err(ApiError::bad_request(
            "metadata.sync_actor_ids must be an account id (or name) or a list of at most 100 of them: non-empty strings of up to 200 characters",
        ));
    }
    if provider == "discord" {
        let key = v.get("public_key").and_then(Value::as_str).unwrap_or("");
        crate::providers::discord::auth::parse_public_key(key).map_err(|e| {
            ApiError::bad_request(format!(
                "metadata.{e} (the application's public key from the Discord developer portal)"
            ))
        })?;
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateIntegration {
    /// vsts, jira, jira_server or discord.
    #[schema(pattern = "^(vsts|jira|jira_server|discord)$", example = "jira")]
    provider: String,
    /// The provider's id of the account, tenant or application: 1 to 64 characters, not blank.
    #[schema(
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        max_length = 64,
        example = "jira:0a1b2c3d"
    )]
    external_id: String,
    #[schema(example = "Acme Jira")]
    name: String,
    /// Provider settings and secrets (shown redacted afterwards). `sync_actor_ids`: our own
    /// accounts at the provider (non-empty strings of up to 200 characters, at most 100).
    /// Discord: `public_key`, the application's Ed25519 public key (64 hex digits).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object, example = json!({"base_url": "https://acme.atlassian.net", "shared_secret": "s3cret"}))]
    metadata: Value,
}

pub(super) fn empty_object() -> Value {
    json!({})
}

/// Creates an integration (409 when the provider has one with the same external_id).
#[utoipa::path(post, path = "/api/v1/integrations", tag = "integrations", request_body = CreateIntegration,
    responses((status = 201, description = "Created", body = IntegrationOut), WriteErrors))]
async fn create_integration(
    State(s): State<Services>,
    ApiJson(b): ApiJson<CreateIntegration>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !PROVIDERS.contains(&b.provider.as_str()) {
        return Err(ApiError::bad_request(format!(
            "provider must be one of {PROVIDERS:?}"
        )));
    }
    if b.external_id.trim().is_empty() || b.external_id.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "external_id must be 1 to 64 characters",
        ));
    }
    check_metadata(&b.metadata)?;
    check_provider_metadata(&b.provider, &b.metadata)?;
    let mut tx = s.db.begin().await?;
    let i = integrations::insert_integration(
        &mut tx,
        &NewIntegration {
            provider: &b.provider,
            external_id: b.external_id.trim(),
            name: &b.name,
            metadata: &b.metadata,
        },
        crate::now_ms(),
    )
    .await
    .map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => ApiError::conflict(format!(
            "a {} integration with external_id {:?} exists",
            b.provider, b.external_id
        )),
        other => other.into(),
    })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(integration_json(&i))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProviderFilter {
    /// Only this provider's integrations.
    provider: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations", params(ProviderFilter),
    responses((status = 200, description = "The integrations (secrets redacted)", body = Vec<IntegrationOut>), ReadErrors))]
async fn list_integrations(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<ProviderFilter>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let list = integrations::list_integrations(&mut tx, q.provider.as_deref()).await?;
    Ok(Json(json!(
        list.iter().map(integration_json).collect::<Vec<_>>()
    )))
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = i64, Path, description = "Integration id")),
    responses((status = 200, description = "The integration with its installations", body = IntegrationDetail), ReadErrors))]
async fn get_integration(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let i = found(
        integrations::find_integration(&mut tx, id).await?,
        "integration",
    )?;
    let installs = integrations::list_organization_integrations(&mut tx, id).await?;
    let mut v = integration_json(&i);
    v["organizations"] = json!(installs);
    Ok(Json(v))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchIntegration {
    name: Option<String>,
    /// Merged key by key into the stored metadata; a null value removes the key.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    #[schema(value_type = Option<crate::receiver::openapi::schemas::IntegrationStatus>)]
    status: Option<String>,
}

/// Renames, enables or disables an integration, or merges keys into its metadata.
#[utoipa::path(patch, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = i64, Path, description = "Integration id")),
    request_body = PatchIntegration,
    responses((status = 200, description = "The changed integration", body = IntegrationOut), WriteErrors))]
async fn update_integration(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<PatchIntegration>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin_write().await?;
    let cur = found(
        integrations::find_integration(&mut tx, id).await?,
        "integration",
    )?;
    let empty = serde_json::Map::new();
    let patch = match &b.metadata {
        Some(p) => {
            check_metadata(p)?;
            p.as_object().unwrap_or(&empty)
        }
        None => &empty,
    };
    // Checked on the merge with what was read; written as the patch's keys only, so a token
    // refresh that commits meanwhile is not overwritten with the tokens read here.
    let mut metadata = cur.metadata.0.clone();
    if let Some(m) = metadata.as_object_mut() {
        for (k, v) in patch {
            if v.is_null() {
                m.remove(k);
            } else {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    check_provider_metadata(&cur.provider, &metadata)?;
    let status = match b.status.as_deref() {
        None => None,
        Some("active") => Some(integrations::STATUS_ACTIVE),
        Some("disabled") => Some(integrations::STATUS_DISABLED),
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "status must be active or disabled, not {o:?}"
            )));
        }
    };
    let i = found(
        integrations::patch_integration(&mut tx, id, b.name.as_deref(), patch, status).await?,
        "integration",
    )?;
    tx.commit().await?;
    s.forget_integrations();
    Ok(Json(integration_json(&i)))
}

/// Validates an installation config: known switches are booleans, the strategy is known.
pub fn check_config(config: &Value) -> ApiResult<()> {
    let Some(m) = config.as_object() else {
        return Err(ApiError::bad_request("config must be a JSON object"));
    };
    for (k, v) in m {
        if BOOL_SWITCHES.contains(&k.as_str()) && !v.is_boolean() {
            return Err(ApiError::bad_request(format!(
                "config.{k} must be true or false"
            )));
        }
        if k == "resolution_strategy"
            && !v
                .as_str()
                .is_some_and(|s| RESOLUTION_STRATEGIES.contains(&s))
        {
            return Err(ApiError::bad_request(format!(
                "config.resolution_strategy must be one of {RESOLUTION_STRATEGIES:?}"
            )));
        }
    }
    Ok(())
}

/// An installation's config: the sync switches and the resolution strategy (other keys are
/// kept as given).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct InstallConfig {
    #[serde(default)]
    sync_status_forward: bool,
    #[serde(default)]
    sync_status_reverse: bool,
    #[serde(default)]
    sync_forward_assignment: bool,
    #[serde(default)]
    sync_reverse_assignment: bool,
    #[serde(default)]
    sync_comments: bool,
    #[serde(default)]
    sync_status_reverse_overrides_ignored: bool,
    #[serde(default)]
    resolution_strategy: ResolutionStrategy,
}

#[derive(ToSchema, Default)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ResolutionStrategy {
    #[default]
    Resolve,
    ResolveCurrentRelease,
    ResolveNextRelease,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Install {
    #[serde(default = "empty_object")]
    #[schema(value_type = InstallConfig)]
    config: Value,
}

/// Installs the integration on an organization, or replaces the installation's config.
#[utoipa::path(put, operation_id = "install_integration", path = "/api/v1/integrations/{id}/organizations/{org_id}", tag = "integrations",
    params(("id" = i64, Path, description = "Integration id"), ("org_id" = i64, Path, description = "Organization id")),
    request_body = Install,
    responses((status = 200, description = "The installation", body = OrganizationIntegration), WriteErrors))]
async fn install(
    State(s): State<Services>,
    ApiPath((id, org_id)): ApiPath<(i64, i64)>,
    ApiJson(b): ApiJson<Install>,
) -> ApiResult<Json<Value>> {
    check_config(&b.config)?;
    let mut tx = s.db.begin_write().await?;
    found(
        integrations::find_integration(&mut tx, id).await?,
        "integration",
    )?;
    found(
        organizations::find_organization(&mut tx, org_id).await?,
        "organization",
    )?;
    let oi = integrations::upsert_organization_integration(
        &mut tx,
        org_id,
        id,
        &b.config,
        crate::now_ms(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!(oi)))
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}/organizations", tag = "integrations",
    params(("id" = i64, Path, description = "Integration id")),
    responses((status = 200, description = "The integration's installations", body = Vec<OrganizationIntegration>), ReadErrors))]
async fn list_installs(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(
        integrations::find_integration(&mut tx, id).await?,
        "integration",
    )?;
    Ok(Json(json!(
        integrations::list_organization_integrations(&mut tx, id).await?
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpsertExternalProject {
    #[schema(min_length = 1, example = "10000")]
    external_id: String,
    #[serde(default)]
    name: String,
    /// The provider's status that means resolved.
    #[schema(min_length = 1, example = "Done")]
    resolved_status: String,
    #[schema(min_length = 1, example = "To Do")]
    unresolved_status: String,
}

/// Sets the status mapping of one external project of an installation.
#[utoipa::path(post, path = "/api/v1/organization-integrations/{id}/external-projects", tag = "integrations",
    params(("id" = i64, Path, description = "Organization integration (installation) id")),
    request_body = UpsertExternalProject,
    responses((status = 200, description = "The stored mapping", body = ExternalProject), WriteErrors))]
async fn upsert_external_project(
    State(s): State<Services>,
    ApiPath(oi_id): ApiPath<i64>,
    ApiJson(b): ApiJson<UpsertExternalProject>,
) -> ApiResult<Json<Value>> {
    if b.external_id.is_empty() || b.resolved_status.is_empty() || b.unresolved_status.is_empty() {
        return Err(ApiError::bad_request(
            "external_id, resolved_status and unresolved_status must not be empty",
        ));
    }
    let mut tx = s.db.begin_write().await?;
    found(
        integrations::find_organization_integration(&mut tx, oi_id).await?,
        "organization integration",
    )?;
    let p = integrations::upsert_external_project(
        &mut tx,
        &ExternalProject {
            id: 0,
            organization_integration_id: oi_id,
            external_id: b.external_id,
            name: b.name,
            resolved_status: b.resolved_status,
            unresolved_status: b.unresolved_status,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!(p)))
}

#[utoipa::path(get, path = "/api/v1/organization-integrations/{id}/external-projects", tag = "integrations",
    params(("id" = i64, Path, description = "Organization integration (installation) id")),
    responses((status = 200, description = "The installation's status mappings", body = Vec<ExternalProject>), ReadErrors))]
async fn list_external_projects(
    State(s): State<Services>,
    ApiPath(oi_id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(
        integrations::find_organization_integration(&mut tx, oi_id).await?,
        "organization integration",
    )?;
    Ok(Json(json!(
        integrations::list_external_projects(&mut tx, oi_id).await?
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateExternalIssue {
    #[serde(deserialize_with = "crate::receiver::json_int::int")]
    organization_id: i64,
    #[serde(deserialize_with = "crate::receiver::json_int::int")]
    integration_id: i64,
    /// The provider's issue key, e.g. `PROJ-1`; not blank.
    #[schema(
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "PROJ-1"
    )]
    key: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    /// Groups to link the issue to, in the same transaction.
    #[serde(default, deserialize_with = "crate::receiver::json_int::ints")]
    group_ids: Vec<i64>,
}

/// Records an issue of the provider and links it to groups of the organization.
#[utoipa::path(post, path = "/api/v1/external-issues", tag = "integrations", request_body = CreateExternalIssue,
    responses((status = 201, description = "Created", body = ExternalIssueCreated), WriteErrors))]
async fn create_external_issue(
    State(s): State<Services>,
    ApiJson(b): ApiJson<CreateExternalIssue>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if b.key.trim().is_empty() {
        return Err(ApiError::bad_request("key must not be empty"));
    }
    let mut tx = s.db.begin_write().await?;
    // Named in the body: a conflict (409) when missing, as every body reference.
    if organizations::find_organization(&mut tx, b.organization_id)
        .await?
        .is_none()
    {
        return Err(ApiError::conflict(format!(
            "organization {} does not exist",
            b.organization_id
        )));
    }
    if integrations::find_integration(&mut tx, b.integration_id)
        .await?
        .is_none()
    {
        return Err(ApiError::conflict(format!(
            "integration {} does not exist",
            b.integration_id
        )));
    }
    let now = crate::now_ms();
    let e = external::insert_external_issue(
        &mut tx,
        &NewExternalIssue {
            organization_id: b.organization_id,
            integration_id: b.integration_id,
            key: b.key.trim(),
            title: &b.title,
            description: &b.description,
            metadata: serde_json::json!({}),
        },
        now,
    )
    .await?;
    for gid in &b.group_ids {
        link_in_tx(&mut tx, *gid, e.id, b.organization_id, now).await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"external_issue": e, "group_ids": b.group_ids})),
    ))
}

/// Links a group of the issue's organization; a group that does not exist or is another
/// organization's is a conflict (409).
async fn link_in_tx(
    tx: &mut crate::db::Tx,
    group_id: i64,
    external_issue_id: i64,
    organization_id: i64,
    now: i64,
) -> ApiResult<()> {
    let unknown = ApiError::conflict;
    let g = groups::find_group(tx, group_id)
        .await?
        .ok_or_else(|| unknown(format!("group {group_id} does not exist")))?;
    let p = found(
        crate::store::projects::find_project(tx, g.project_id).await?,
        "project",
    )?;
    if p.organization_id != organization_id {
        return Err(unknown(format!(
            "group {group_id} is not in organization {organization_id}"
        )));
    }
    external::link_group(tx, group_id, g.project_id, external_issue_id, now).await?;
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/external-issues/{id}", tag = "integrations",
    params(("id" = i64, Path, description = "External issue id")),
    responses((status = 200, description = "The external issue", body = ExternalIssue), ReadErrors))]
async fn get_external_issue(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let e = found(
        external::find_external_issue(&mut tx, id).await?,
        "external issue",
    )?;
    Ok(Json(json!(e)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkGroup {
    /// An external issue of the group's organization.
    #[serde(deserialize_with = "crate::receiver::json_int::int")]
    external_issue_id: i64,
}

#[utoipa::path(post, path = "/api/v1/groups/{id}/links", tag = "integrations",
    params(("id" = i64, Path, description = "Group id")),
    request_body = LinkGroup,
    responses((status = 204, description = "Linked"), WriteErrors))]
async fn link_group(
    State(s): State<Services>,
    ApiPath(group_id): ApiPath<i64>,
    ApiJson(b): ApiJson<LinkGroup>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    found(groups::find_group(&mut tx, group_id).await?, "group")?;
    let e = external::find_external_issue(&mut tx, b.external_issue_id)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "external issue {} does not exist",
                b.external_issue_id
            ))
        })?;
    link_in_tx(&mut tx, group_id, e.id, e.organization_id, crate::now_ms()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
