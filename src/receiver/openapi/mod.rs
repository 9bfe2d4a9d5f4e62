//! The OpenAPI 3.1 document of the HTTP surface, generated from the handlers' `#[utoipa::path]`
//! attributes and the types they take and return; served at `GET /api/v1/openapi.json`
//! without a token.

mod refine;
pub mod schemas;
mod webhooks;

use std::sync::LazyLock;

use axum::Json;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's path, under which it is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// Name of the admin token's security scheme.
pub const ADMIN_TOKEN: &str = "admin_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "issuesync",
        description = "The admin API (`/api/v1`, behind `Authorization: Bearer $ISSUESYNC_ADMIN_TOKEN`), \
the provider webhooks with their verification, and the health probes. Every error answers \
`{\"error\": \"<machine code>\", \"detail\": \"<sentence>\"}`. Times are epoch milliseconds; ids \
are 64-bit integers (jobs: ULID strings).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    security(("admin_token" = [])),
    modifiers(&SecuritySchemes),
    paths(openapi_json),
    tags(
        (name = "organizations", description = "Organizations, teams and members"),
        (name = "users", description = "Users, their emails and linked chat accounts"),
        (name = "projects", description = "Projects, their teams, groups and ownership rules"),
        (name = "integrations", description = "Integrations, installations, external projects and issues"),
        (name = "jobs", description = "The job queue (as `issuesync jobs ...`)"),
        (name = "deliveries", description = "Stored webhook deliveries and their replay"),
        (name = "decisions", description = "Why changes did or did not sync"),
        (name = "webhooks", description = "Provider callbacks; each is verified on the raw body before anything is stored"),
        (name = "health", description = "Probes"),
    ),
)]
struct Base;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token: ISSUESYNC_ADMIN_TOKEN (admin_token).",
                    ))
                    .build(),
            ),
        );
        c.add_security_scheme(
            webhooks::JIRA_JWT,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`JWT <token>` signed by Jira: HS256 with the tenant's shared secret for issue \
                 events, RS256 with Atlassian's published key for lifecycle callbacks; its `qsh` \
                 claim binds the method, path and query.",
            ))),
        );
        c.add_security_scheme(
            webhooks::JIRA_JWT_QUERY,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "jwt",
                "The same JWT as a `?jwt=` query parameter.",
            ))),
        );
    }
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.merge(crate::receiver::admin::openapi());
    doc.merge(webhooks::Doc::openapi());
    doc
}

/// The document as served: [`document`] with what [`refine::refine`] adds.
pub fn document_json() -> Value {
    let mut v = serde_json::to_value(document()).unwrap_or(Value::Null);
    refine::refine(&mut v);
    v
}

static DOCUMENT: LazyLock<Value> = LazyLock::new(document_json);

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Json<Value> {
    Json(DOCUMENT.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_builds_and_is_3_1() {
        let v = serde_json::to_value(super::document()).unwrap_or_default();
        assert!(v["openapi"].as_str().is_some_and(|s| s.starts_with("3.1.")));
        assert!(v["paths"]["/api/v1/organizations"]["post"].is_object());
        assert!(v["components"]["schemas"]["ApiErrorBody"].is_object());
    }
}
