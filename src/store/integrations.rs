//! Integrations, their installations on organizations (with the sync switches), and the
//! external-project status mappings.

use serde::Serialize;
use sqlx::types::Json;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

pub const STATUS_ACTIVE: i32 = 0;
pub const STATUS_DISABLED: i32 = 1;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Integration {
    pub id: i64,
    pub provider: String,
    pub external_id: String,
    pub name: String,
    pub metadata: Json<serde_json::Value>,
    pub status: i32,
    pub date_added: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OrganizationIntegration {
    pub id: i64,
    pub organization_id: i64,
    pub integration_id: i64,
    #[schema(value_type = Object)]
    pub config: Json<serde_json::Value>,
    pub status: i32,
    pub date_added: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ExternalProject {
    pub id: i64,
    pub organization_integration_id: i64,
    pub external_id: String,
    pub name: String,
    pub resolved_status: String,
    pub unresolved_status: String,
}

pub struct NewIntegration<'a> {
    pub provider: &'a str,
    pub external_id: &'a str,
    pub name: &'a str,
    pub metadata: &'a serde_json::Value,
}

pub async fn insert_integration(
    tx: &mut Tx,
    i: &NewIntegration<'_>,
    now: i64,
) -> Result<Integration> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "INSERT INTO integrations (provider, external_id, name, metadata, status, date_added) \
         VALUES ($1, $2, $3, $4, 0, $5) \
         RETURNING id, provider, external_id, name, metadata, status, date_added"
    )
    .bind(i.provider)
    .bind(i.external_id)
    .bind(i.name)
    .bind(Json(i.metadata))
    .bind(now)
    .fetch_one(c)
    .await)?)
}

pub async fn find_integration(tx: &mut Tx, id: i64) -> Result<Option<Integration>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, provider, external_id, name, metadata, status, date_added FROM integrations WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await
    })?)
}

/// The integration of `provider` with `external_id`, whatever its status.
pub async fn find_integration_by_external_id(
    tx: &mut Tx,
    provider: &str,
    external_id: &str,
) -> Result<Option<Integration>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, provider, external_id, name, metadata, status, date_added FROM integrations \
         WHERE provider = $1 AND external_id = $2"
    )
    .bind(provider)
    .bind(external_id)
    .fetch_optional(c)
    .await)?)
}

pub async fn list_integrations(tx: &mut Tx, provider: Option<&str>) -> Result<Vec<Integration>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, provider, external_id, name, metadata, status, date_added FROM integrations \
         WHERE ($1 IS NULL OR provider = $1) ORDER BY id"
    )
    .bind(provider)
    .fetch_all(c)
    .await)?)
}

pub async fn update_integration(
    tx: &mut Tx,
    id: i64,
    name: &str,
    metadata: &serde_json::Value,
    status: i32,
) -> Result<Option<Integration>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "UPDATE integrations SET name = $2, metadata = $3, status = $4 WHERE id = $1 \
         RETURNING id, provider, external_id, name, metadata, status, date_added"
    )
    .bind(id)
    .bind(name)
    .bind(Json(metadata))
    .bind(status)
    .fetch_optional(c)
    .await)?)
}

/// Sets the top-level metadata keys of `patch` (a null value removes the key) in one
/// statement, with the name and status when given. Only these keys are written, so a
/// concurrent write of other keys (a token refresh) is kept, whichever commits first.
pub async fn patch_integration(
    tx: &mut Tx,
    id: i64,
    name: Option<&str>,
    patch: &serde_json::Map<String, serde_json::Value>,
    status: Option<i32>,
) -> Result<Option<Integration>> {
    let patch = serde_json::Value::Object(patch.clone());
    Ok(match tx {
        Tx::Pg(t) => {
            let (removed, set): (Vec<_>, Vec<_>) = patch
                .as_object()
                .into_iter()
                .flatten()
                .partition(|(_, v)| v.is_null());
            let removed: Vec<String> = removed.into_iter().map(|(k, _)| k.clone()).collect();
            let set: serde_json::Map<_, _> =
                set.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            sqlx::query_as(
                "UPDATE integrations SET name = COALESCE($2, name), status = COALESCE($3, status), \
                 metadata = (metadata - $4::text[]) || $5 WHERE id = $1 \
                 RETURNING id, provider, external_id, name, metadata, status, date_added",
            )
            .bind(id)
            .bind(name)
            .bind(status)
            .bind(removed)
            .bind(Json(set))
            .fetch_optional(&mut **t)
            .await?
        }
        // Top-level keys replaced as a whole (json_patch would merge nested objects).
        Tx::Sqlite(t) => sqlx::query_as(
            "UPDATE integrations SET name = COALESCE($2, name), status = COALESCE($3, status), \
             metadata = (SELECT json_group_object(key, json(CASE type WHEN 'text' THEN json_quote(value) \
               WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE value END)) \
               FROM (SELECT key, value, type FROM json_each(integrations.metadata) \
                     WHERE key NOT IN (SELECT key FROM json_each($4)) \
                     UNION ALL SELECT key, value, type FROM json_each($4) WHERE type <> 'null')) \
             WHERE id = $1 \
             RETURNING id, provider, external_id, name, metadata, status, date_added",
        )
        .bind(id)
        .bind(name)
        .bind(status)
        .bind(Json(&patch))
        .fetch_optional(&mut **t)
        .await?,
    })
}

/// Merges `tokens` (new OAuth tokens and their `expires`) into the integration's metadata in one
/// statement, only while its `refresh_token` is still `used`: a refresh token is single-use, so
/// a second refresh of the same one must not overwrite the first. False when it had changed.
pub async fn save_refreshed_tokens(
    tx: &mut Tx,
    id: i64,
    used: &str,
    tokens: &serde_json::Value,
) -> Result<bool> {
    let n = match tx {
        Tx::Pg(t) => sqlx::query(
            "UPDATE integrations SET metadata = metadata || $2 \
             WHERE id = $1 AND metadata->>'refresh_token' = $3",
        )
        .bind(id)
        .bind(Json(tokens))
        .bind(used)
        .execute(&mut **t)
        .await?
        .rows_affected(),
        Tx::Sqlite(t) => sqlx::query(
            "UPDATE integrations SET metadata = json_patch(metadata, $2) \
             WHERE id = $1 AND json_extract(metadata, '$.refresh_token') = $3",
        )
        .bind(id)
        .bind(Json(tokens))
        .bind(used)
        .execute(&mut **t)
        .await?
        .rows_affected(),
    };
    Ok(n == 1)
}

/// Installs the integration on an organization, or replaces the config of an installation.
pub async fn upsert_organization_integration(
    tx: &mut Tx,
    organization_id: i64,
    integration_id: i64,
    config: &serde_json::Value,
    now: i64,
) -> Result<OrganizationIntegration> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "INSERT INTO organization_integrations (organization_id, integration_id, config, status, date_added) \
         VALUES ($1, $2, $3, 0, $4) \
         ON CONFLICT (organization_id, integration_id) DO UPDATE SET config = excluded.config, status = 0 \
         RETURNING id, organization_id, integration_id, config, status, date_added"
    )
    .bind(organization_id)
    .bind(integration_id)
    .bind(Json(config))
    .bind(now)
    .fetch_one(c)
    .await
    })?)
}

pub async fn find_organization_integration(
    tx: &mut Tx,
    id: i64,
) -> Result<Option<OrganizationIntegration>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, organization_id, integration_id, config, status, date_added FROM organization_integrations WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await
    })?)
}

pub async fn list_organization_integrations(
    tx: &mut Tx,
    integration_id: i64,
) -> Result<Vec<OrganizationIntegration>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, organization_id, integration_id, config, status, date_added FROM organization_integrations \
         WHERE integration_id = $1 ORDER BY id"
    )
    .bind(integration_id)
    .fetch_all(c)
    .await
    })?)
}

pub async fn upsert_external_project(tx: &mut Tx, p: &ExternalProject) -> Result<ExternalProject> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "INSERT INTO integration_external_projects \
         (organization_integration_id, external_id, name, resolved_status, unresolved_status) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (organization_integration_id, external_id) DO UPDATE SET \
         name = excluded.name, resolved_status = excluded.resolved_status, unresolved_status = excluded.unresolved_status \
         RETURNING id, organization_integration_id, external_id, name, resolved_status, unresolved_status"
    )
    .bind(p.organization_integration_id)
    .bind(&p.external_id)
    .bind(&p.name)
    .bind(&p.resolved_status)
    .bind(&p.unresolved_status)
    .fetch_one(c)
    .await
    })?)
}

pub async fn list_external_projects(
    tx: &mut Tx,
    organization_integration_id: i64,
) -> Result<Vec<ExternalProject>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, organization_integration_id, external_id, name, resolved_status, unresolved_status \
         FROM integration_external_projects WHERE organization_integration_id = $1 ORDER BY id"
    )
    .bind(organization_integration_id)
    .fetch_all(c)
    .await
    })?)
}

/// Whether the integration is installed (and enabled) on the organization.
pub async fn is_installed_on(
    tx: &mut Tx,
    integration_id: i64,
    organization_id: i64,
) -> Result<bool> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM organization_integrations \
         WHERE integration_id = $1 AND organization_id = $2 AND status = 0"
    )
    .bind(integration_id)
    .bind(organization_id)
    .fetch_one(c)
    .await)?
        > 0)
}
