//! Integrations, their installations on organizations (sync switches), external-project
//! status mappings, external issues and their links to groups. Secrets in `metadata` are
//! accepted here but never shown again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::redact::redact;
use crate::startup::AppState;
use crate::store::external::{self, NewExternalIssue};
use crate::store::integrations::{self, ExternalProject, Integration, NewIntegration};
use crate::store::{found, groups, organizations};

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

pub fn routes() -> Router<AppState> {
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

fn integration_json(i: &Integration) -> Value {
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
            .is_some_and(|s| !s.trim().is_empty() && s.len() <= 200)
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIntegration {
    provider: String,
    external_id: String,
    name: String,
    #[serde(default = "empty_object")]
    metadata: Value,
}

fn empty_object() -> Value {
    json!({})
}

async fn create_integration(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<CreateIntegration>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !PROVIDERS.contains(&b.provider.as_str()) {
        return Err(ApiError::bad_request(format!(
            "provider must be one of {PROVIDERS:?}"
        )));
    }
    if b.external_id.trim().is_empty() || b.external_id.len() > 64 {
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

#[derive(Deserialize)]
struct ProviderFilter {
    provider: Option<String>,
}

async fn list_integrations(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ProviderFilter>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let list = integrations::list_integrations(&mut tx, q.provider.as_deref()).await?;
    Ok(Json(json!(
        list.iter().map(integration_json).collect::<Vec<_>>()
    )))
}

async fn get_integration(
    State(s): State<AppState>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchIntegration {
    name: Option<String>,
    /// Merged key by key into the stored metadata; a null value removes the key.
    metadata: Option<Value>,
    status: Option<String>,
}

async fn update_integration(
    State(s): State<AppState>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Install {
    #[serde(default = "empty_object")]
    config: Value,
}

async fn install(
    State(s): State<AppState>,
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

async fn list_installs(
    State(s): State<AppState>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertExternalProject {
    external_id: String,
    #[serde(default)]
    name: String,
    resolved_status: String,
    unresolved_status: String,
}

async fn upsert_external_project(
    State(s): State<AppState>,
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

async fn list_external_projects(
    State(s): State<AppState>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateExternalIssue {
    organization_id: i64,
    integration_id: i64,
    key: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    /// Groups to link the issue to, in the same transaction.
    #[serde(default)]
    group_ids: Vec<i64>,
}

async fn create_external_issue(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<CreateExternalIssue>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if b.key.trim().is_empty() {
        return Err(ApiError::bad_request("key must not be empty"));
    }
    let mut tx = s.db.begin_write().await?;
    found(
        organizations::find_organization(&mut tx, b.organization_id).await?,
        "organization",
    )?;
    found(
        integrations::find_integration(&mut tx, b.integration_id).await?,
        "integration",
    )?;
    let now = crate::now_ms();
    let e = external::insert_external_issue(
        &mut tx,
        &NewExternalIssue {
            organization_id: b.organization_id,
            integration_id: b.integration_id,
            key: b.key.trim(),
            title: &b.title,
            description: &b.description,
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

/// Links a group of the issue's organization; other organizations' groups are refused.
async fn link_in_tx(
    tx: &mut crate::db::Tx,
    group_id: i64,
    external_issue_id: i64,
    organization_id: i64,
    now: i64,
) -> ApiResult<()> {
    let g = groups::find_group(tx, group_id)
        .await?
        .ok_or_else(|| ApiError::bad_request(format!("group {group_id} does not exist")))?;
    let p = found(
        crate::store::projects::find_project(tx, g.project_id).await?,
        "project",
    )?;
    if p.organization_id != organization_id {
        return Err(ApiError::bad_request(format!(
            "group {group_id} is not in organization {organization_id}"
        )));
    }
    external::link_group(tx, group_id, g.project_id, external_issue_id, now).await?;
    Ok(())
}

async fn get_external_issue(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let e = found(
        external::find_external_issue(&mut tx, id).await?,
        "external issue",
    )?;
    Ok(Json(json!(e)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkGroup {
    external_issue_id: i64,
}

async fn link_group(
    State(s): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
    ApiJson(b): ApiJson<LinkGroup>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    found(groups::find_group(&mut tx, group_id).await?, "group")?;
    let e = found(
        external::find_external_issue(&mut tx, b.external_issue_id).await?,
        "external issue",
    )?;
    link_in_tx(&mut tx, group_id, e.id, e.organization_id, crate::now_ms()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn install_routes() -> Router<AppState> {
    Router::new()
        .route("/integrations/vsts/install", post(install_vsts))
        .route(
            "/integrations/jira-server/install",
            post(install_jira_server),
        )
}

impl From<crate::sync::install::InstallError> for ApiError {
    fn from(e: crate::sync::install::InstallError) -> Self {
        use crate::sync::install::InstallError as E;
        match e {
            E::Invalid(d) => ApiError::bad_request(d),
            E::Refused(d) => {
                ApiError::new(axum::http::StatusCode::BAD_REQUEST, "provider_refused", d)
            }
            E::Unreachable(d) => ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "provider_unreachable",
                d,
            ),
            E::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VstsInstallBody {
    organization_id: i64,
    account_id: String,
    account_name: String,
    base_url: String,
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    /// Unix seconds when `access_token` expires.
    #[serde(default)]
    expires: Option<i64>,
    #[serde(default = "empty_object")]
    config: Value,
}

async fn install_vsts(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<VstsInstallBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_config(&b.config)?;
    if b.account_id.trim().is_empty()
        || b.access_token.is_empty()
        || !b.base_url.starts_with("http")
    {
        return Err(ApiError::bad_request(
            "account_id, access_token and an absolute base_url are required",
        ));
    }
    let req = crate::sync::install::VstsInstall {
        organization_id: b.organization_id,
        account_id: b.account_id,
        account_name: b.account_name,
        base_url: b.base_url,
        access_token: b.access_token,
        refresh_token: b.refresh_token.filter(|r| !r.is_empty()),
        expires: b.expires,
        config: b.config,
    };
    let i = crate::sync::install::install_vsts(&s, &req).await?;
    Ok((StatusCode::CREATED, Json(integration_json(&i))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JiraServerInstallBody {
    organization_id: i64,
    url: String,
    consumer_key: String,
    private_key: String,
    access_token: String,
    #[serde(default)]
    access_token_secret: String,
    #[serde(default = "yes")]
    verify_ssl: bool,
    #[serde(default = "empty_object")]
    config: Value,
}

fn yes() -> bool {
    true
}

async fn install_jira_server(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<JiraServerInstallBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_config(&b.config)?;
    let req = crate::sync::install::JiraServerInstall {
        organization_id: b.organization_id,
        url: b.url,
        consumer_key: b.consumer_key,
        private_key: b.private_key,
        access_token: b.access_token,
        access_token_secret: b.access_token_secret,
        verify_ssl: b.verify_ssl,
        config: b.config,
    };
    let i = crate::sync::install::install_jira_server(&s, &req).await?;
    Ok((StatusCode::CREATED, Json(integration_json(&i))))
}
