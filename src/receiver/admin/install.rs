//! Installing Azure DevOps and Jira Server on an organization: the provider is called to
//! check the credentials and register the webhook before the integration is stored.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::integrations::{InstallConfig, check_config, empty_object, integration_json};
use crate::receiver::error::{ApiError, ApiJson, ApiResult};
use crate::receiver::openapi::schemas::{IntegrationOut, WriteErrors};
use crate::receiver::state::HttpState;
use crate::sync::Services;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/integrations/vsts/install", post(install_vsts))
        .route(
            "/integrations/jira-server/install",
            post(install_jira_server),
        )
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(install_vsts, install_jira_server))]
pub(super) struct Doc;

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
            E::UnknownOrganization(_) => ApiError::conflict(e.to_string()),
            E::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VstsInstallBody {
    /// 404 when it does not exist.
    #[serde(deserialize_with = "crate::receiver::json_int::int")]
    organization_id: i64,
    /// The Azure DevOps account (organization) id; not blank.
    #[schema(
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    account_id: String,
    account_name: String,
    /// `https://dev.azure.com/{account}/` (anything starting with `http`).
    #[schema(pattern = "^http", example = "http://127.0.0.1:9/acme/")]
    base_url: String,
    #[schema(min_length = 1, value_type = String)]
    access_token: SecretString,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    refresh_token: Option<SecretString>,
    /// Unix seconds when `access_token` expires.
    #[serde(default, deserialize_with = "crate::receiver::json_int::opt_int")]
    expires: Option<i64>,
    #[serde(default = "empty_object")]
    #[schema(value_type = InstallConfig)]
    config: Value,
}

/// Installs Azure DevOps on an organization: checks the token with the account, creates
/// the work item webhook subscription (with its shared secret) and stores the integration.
#[utoipa::path(post, path = "/api/v1/integrations/vsts/install", tag = "integrations", request_body = VstsInstallBody,
    responses((status = 201, description = "Installed", body = IntegrationOut),
        (status = 502, description = "The provider could not be reached", body = crate::receiver::openapi::schemas::ApiErrorBody,
            example = json!({"error": "provider_unreachable", "detail": "could not reach https://dev.azure.com/acme/"})),
        WriteErrors))]
async fn install_vsts(
    State(s): State<Services>,
    ApiJson(b): ApiJson<VstsInstallBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_config(&b.config)?;
    if b.account_id.trim().is_empty()
        || b.access_token.expose_secret().is_empty()
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
        refresh_token: b.refresh_token.filter(|r| !r.expose_secret().is_empty()),
        expires: b.expires,
        config: b.config,
    };
    let i = crate::sync::install::install_vsts(&s, &req).await?;
    Ok((StatusCode::CREATED, Json(integration_json(&i))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JiraServerInstallBody {
    #[serde(deserialize_with = "crate::receiver::json_int::int")]
    organization_id: i64,
    url: String,
    consumer_key: String,
    #[schema(value_type = String)]
    private_key: SecretString,
    #[schema(value_type = String)]
    access_token: SecretString,
    #[serde(default = "no_secret")]
    #[schema(value_type = String, default = "")]
    access_token_secret: SecretString,
    #[serde(default = "yes")]
    verify_ssl: bool,
    #[serde(default = "empty_object")]
    #[schema(value_type = InstallConfig)]
    config: Value,
}

fn yes() -> bool {
    true
}

fn no_secret() -> SecretString {
    SecretString::from("")
}

/// Installs Jira Server on an organization with an OAuth 1.0a consumer (RSA-SHA1) and
/// access token, and registers its webhook.
#[utoipa::path(post, path = "/api/v1/integrations/jira-server/install", tag = "integrations", request_body = JiraServerInstallBody,
    responses((status = 201, description = "Installed", body = IntegrationOut),
        (status = 502, description = "The provider could not be reached", body = crate::receiver::openapi::schemas::ApiErrorBody,
            example = json!({"error": "provider_unreachable", "detail": "could not reach https://jira.acme.com/"})),
        WriteErrors))]
async fn install_jira_server(
    State(s): State<Services>,
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
