//! Provider webhooks. Each delivery is verified on the raw body before anything is stored;
//! a verified one is stored with a unique delivery key and its `process_webhook` job in one
//! transaction, and only then answered. A duplicate answers 200 and enqueues nothing.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::providers::{WebhookError, discord, jira, jira_server, vsts};
use crate::receiver::error::{ApiError, ApiPath, ApiResult};
use crate::receiver::state::HttpState;
use crate::store::deliveries::{self, NewDelivery};
use crate::store::enqueue::enqueue;
use crate::store::integrations::{self, Integration};

mod body;
mod store;

use self::body::{PARSE_INLINE_BYTES, RawBody, Sender, json_body, raw_body};
use self::store::{check_key, kept_headers, store_and_enqueue};

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/extensions/vsts/issue-updated/", post(vsts_issue_updated))
        .route(
            "/extensions/jira-server/issue-updated/{token}/",
            post(jira_server_issue_updated),
        )
        .route("/extensions/jira/issue-updated/", post(jira_issue_updated))
        .route("/extensions/jira/descriptor/", get(jira_descriptor))
        .route("/extensions/jira/installed/", post(jira_installed))
        .route("/extensions/jira/uninstalled/", post(jira_uninstalled))
        .route(
            "/extensions/discord/interactions/",
            post(discord_interactions),
        )
}

/// The Atlassian Connect descriptor, built from the settings. No authentication: Jira
/// fetches it when a site admin uploads the app by its URL.
async fn jira_descriptor(State(s): State<crate::sync::Services>) -> Json<Value> {
    Json(jira::descriptor::connect_descriptor(
        &s.jira_app_key(),
        &s.settings.jira.app_name,
        &s.settings.public_url,
    ))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::BadRequest(d) => ApiError::bad_request(d),
            WebhookError::Unauthorized(d) => ApiError::unauthorized(d),
        }
    }
}

async fn find_active(
    state: &HttpState,
    provider: &str,
    external_id: &str,
) -> ApiResult<Integration> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_integration",
            format!("no active {provider} integration {external_id:?}"),
        )
    };
    // No stored id holds a NUL (Postgres text cannot): do not ask the database.
    if external_id.contains('\0') {
        return Err(unknown());
    }
    let key = (provider.to_string(), external_id.to_string());
    let lookup = async {
        let mut tx = state.db.begin().await?;
        match integrations::find_integration_by_external_id(&mut tx, provider, external_id).await? {
            Some(i) if i.status == integrations::STATUS_ACTIVE => Ok(i),
            _ => Err(unknown()),
        }
    };
    // Only found integrations are cached; unknown ones are looked up every time.
    state
        .integrations
        .try_get_with(key, lookup)
        .await
        .map_err(|e: std::sync::Arc<ApiError>| ApiError::new(e.status, e.code, e.detail.clone()))
}

/// The active integrations of a provider, a few seconds stale at most (as `find_active`).
async fn active_of(state: &HttpState, provider: &'static str) -> ApiResult<Arc<Vec<Integration>>> {
    let load = async {
        let mut tx = state.db.begin().await?;
        let all = integrations::list_integrations(&mut tx, Some(provider)).await?;
        Ok(Arc::new(
            all.into_iter()
                .filter(|i| i.status == integrations::STATUS_ACTIVE)
                .collect::<Vec<_>>(),
        ))
    };
    state
        .active_integrations
        .try_get_with(provider, load)
        .await
        .map_err(|e: Arc<ApiError>| ApiError::new(e.status, e.code, e.detail.clone()))
}

/// ADO's `shared-secret` header, checked before the body is read: present, and equal
/// (in constant time) to the secret of at least one active ADO integration.
async fn precheck_shared_secret(state: &HttpState, got: Option<&str>) -> ApiResult<()> {
    let got = got
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::unauthorized("missing shared-secret header"))?;
    let active = active_of(state, "vsts").await?;
    let known = active.iter().fold(false, |found, i| {
        let matches = meta_str(i, "/subscription/secret")
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(got.as_bytes())));
        found | matches
    });
    if known {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "shared-secret header does not match",
        ))
    }
}

/// The active Discord application whose key verifies the request's Ed25519 signature
/// (hashing a large body runs on the blocking pool, as parsing does).
async fn discord_signer(
    state: &HttpState,
    headers: &HeaderMap,
    raw: &RawBody,
) -> ApiResult<Integration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    };
    let (sig, ts) = (
        header("x-signature-ed25519"),
        header("x-signature-timestamp"),
    );
    let now = chrono::Utc::now().timestamp();
    let skew = state.settings.discord.max_timestamp_skew_secs;
    let candidates: Vec<(Integration, ed25519_dalek::VerifyingKey)> = active_of(state, "discord")
        .await?
        .iter()
        .filter_map(|i| {
            let key = meta_str(i, "/public_key")?;
            discord::auth::parse_public_key(key)
                .map_err(|e| tracing::error!(integration = i.id, "{e}"))
                .ok()
                .map(|k| (i.clone(), k))
        })
        .collect();
    let body = raw.bytes.clone();
    let check = move || {
        let mut last = ApiError::unauthorized("no active Discord application");
        for (integration, key) in candidates {
            match discord::auth::verify(&key, sig.as_deref(), ts.as_deref(), &body, now, skew) {
                Ok(()) => return Ok(integration),
                Err(e) => last = e.into(),
            }
        }
        Err(last)
    };
    if raw.len() <= PARSE_INLINE_BYTES {
        return check();
    }
    tokio::task::spawn_blocking(check).await.map_err(|e| {
        tracing::error!(error = %e, "the signature check panicked");
        ApiError::internal()
    })?
}

fn meta_str<'a>(i: &'a Integration, pointer: &str) -> Option<&'a str> {
    i.metadata
        .0
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn ignored(reason: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::OK,
        Json(json!({"status": "ignored", "reason": reason})),
    )
}

/// Counts refusals by reason, then passes the error on.
fn refused(state: &HttpState, provider: &'static str, e: ApiError) -> ApiError {
    state.refusals.record(crate::receiver::refusals::Refusal {
        at_ms: crate::now_ms(),
        provider,
        status: e.status.as_u16(),
        code: e.code,
        detail: e.detail.clone(),
    });
    metrics::counter!("issuesync_webhooks_total", "provider" => provider, "result" => e.code)
        .increment(1);
    tracing::info!(
        provider,
        status = e.status.as_u16(),
        detail = e.detail,
        "webhook refused"
    );
    e
}

async fn vsts_issue_updated(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let run = async {
        let got = headers.get("shared-secret").and_then(|h| h.to_str().ok());
        // Before the body: the secret must be some active ADO integration's (the body names
        // which one, and the full check below compares with that one).
        precheck_shared_secret(&state, got).await?;
        let raw = raw_body(&state, &headers, body, Sender::Authenticated).await?;
        let v = json_body(&raw).await?;
        let event_type = vsts::webhook::event_type(&v)?;
        let collection = vsts::webhook::collection_id(&v)?;
        let integration = find_active(&state, "vsts", &collection).await?;
        vsts::webhook::verify_shared_secret(meta_str(&integration, "/subscription/secret"), got)?;
        if event_type != "workitem.updated" {
            return Ok(ignored("event type is not workitem.updated"));
        }
        let key = vsts::webhook::delivery_key(&v)?;
        store_and_enqueue(&state, "vsts", &key, &integration, &headers, &raw).await
    };
    run.await.map_err(|e| refused(&state, "vsts", e))
}

async fn jira_server_issue_updated(
    State(state): State<HttpState>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let run = async {
        let external_id = jira_server::auth::peek_token_id(&token)?;
        let integration = find_active(&state, "jira_server", &external_id).await?;
        let secret = meta_str(&integration, "/webhook_secret")
            .ok_or_else(|| ApiError::unauthorized("the integration has no webhook secret"))?;
        jira_server::auth::verify_token(&token, secret)?;
        let raw = raw_body(&state, &headers, body, Sender::Authenticated).await?;
        let v = json_body(&raw).await?;
        if v.get("changelog")
            .is_none_or(|c| c.is_null() || c.as_object().is_some_and(|o| o.is_empty()))
        {
            return Ok(ignored("missing-changelog"));
        }
        let key = jira::webhook::delivery_key_server(&v)?;
        store_and_enqueue(&state, "jira_server", &key, &integration, &headers, &raw).await
    };
    run.await.map_err(|e| refused(&state, "jira_server", e))
}

/// Verifies a Connect JWT (header or `?jwt=`) for `POST path` and returns the tenant.
async fn connect_tenant(
    state: &HttpState,
    headers: &HeaderMap,
    query: &[(String, String)],
    path: &str,
) -> ApiResult<Integration> {
    let auth = headers.get("authorization").and_then(|h| h.to_str().ok());
    let token = jira::auth::extract_token(auth, query)
        .ok_or_else(|| ApiError::unauthorized("Missing/Invalid authorization header"))?;
    let client_key = jira::auth::peek_issuer(&token)?;
    let integration = find_active(state, "jira", &client_key).await?;
    let secret = meta_str(&integration, "/shared_secret")
        .ok_or_else(|| ApiError::unauthorized("the tenant has no shared secret"))?;
    jira::auth::verify(
        &token,
        secret,
        "POST",
        path,
        query,
        chrono::Utc::now().timestamp(),
    )?;
    Ok(integration)
}

async fn jira_issue_updated(
    State(state): State<HttpState>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let run = async {
        let integration =
            connect_tenant(&state, &headers, &query, "/extensions/jira/issue-updated/").await?;
        let raw = raw_body(&state, &headers, body, Sender::Authenticated).await?;
        let v = json_body(&raw).await?;
        if v.get("changelog")
            .is_none_or(|c| c.is_null() || c.as_object().is_some_and(|o| o.is_empty()))
        {
            return Ok(ignored("jira.missing-changelog"));
        }
        let id = headers
            .get("x-atlassian-webhook-identifier")
            .and_then(|h| h.to_str().ok());
        let key = jira::webhook::delivery_key_cloud(id, &v)?;
        store_and_enqueue(&state, "jira", &key, &integration, &headers, &raw).await
    };
    run.await.map_err(|e| refused(&state, "jira", e))
}

/// `installed`: stores or updates the tenant (clientKey, sharedSecret, baseUrl). A first
/// install carries an RS256 JWT from Atlassian's install keys; a re-install may be signed
/// with the tenant's current shared secret.
async fn jira_installed(
    State(state): State<HttpState>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // The tenant that signs the callback is named in the body.
    let raw = raw_body(&state, &headers, body, Sender::Unauthenticated).await?;
    let v = json_body(&raw).await?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (Some(client_key), Some(shared_secret), Some(base_url)) =
        (field("clientKey"), field("sharedSecret"), field("baseUrl"))
    else {
        return Err(ApiError::bad_request(
            "clientKey, sharedSecret and baseUrl are required",
        ));
    };
    crate::receiver::jira_lifecycle::verify_lifecycle(
        &state,
        &headers,
        &query,
        "/extensions/jira/installed/",
        &client_key,
    )
    .await?;
    let metadata = json!({
        "base_url": base_url,
        "domain_name": base_url.trim_start_matches("https://").trim_start_matches("http://"),
        "shared_secret": shared_secret,
        "oauth_client_id": field("oauthClientId"),
        "public_key": field("publicKey"),
    });
    let mut tx = state.db.begin_write().await?;
    let existing =
        integrations::find_integration_by_external_id(&mut tx, "jira", &client_key).await?;
    let integration = match existing {
        // Only the callback's keys are written (our learned `sync_actor_ids` stays).
        Some(i) => {
            let keys = metadata.as_object().cloned().unwrap_or_default();
            integrations::patch_integration(
                &mut tx,
                i.id,
                None,
                &keys,
                Some(integrations::STATUS_ACTIVE),
            )
            .await?
        }
        None => Some(
            integrations::insert_integration(
                &mut tx,
                &integrations::NewIntegration {
                    provider: "jira",
                    external_id: &client_key,
                    name: "JIRA",
                    metadata: &metadata,
                },
                crate::now_ms(),
            )
            .await?,
        ),
    };
    tx.commit().await?;
    state.forget_integrations();
    Ok((
        StatusCode::OK,
        Json(json!({"status": "installed", "integration_id": integration.map(|i| i.id)})),
    ))
}

async fn jira_uninstalled(
    State(state): State<HttpState>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // The tenant that signs the callback is named in the body.
    let raw = raw_body(&state, &headers, body, Sender::Unauthenticated).await?;
    let v = json_body(&raw).await?;
    let client_key = v
        .get("clientKey")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("clientKey is required"))?;
    crate::receiver::jira_lifecycle::verify_lifecycle(
        &state,
        &headers,
        &query,
        "/extensions/jira/uninstalled/",
        client_key,
    )
    .await?;
    let mut tx = state.db.begin_write().await?;
    let i = integrations::find_integration_by_external_id(&mut tx, "jira", client_key)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_integration",
                format!("no jira tenant {client_key:?}"),
            )
        })?;
    integrations::patch_integration(
        &mut tx,
        i.id,
        None,
        &serde_json::Map::new(),
        Some(integrations::STATUS_DISABLED),
    )
    .await?;
    tx.commit().await?;
    state.forget_integrations();
    Ok((
        StatusCode::OK,
        Json(json!({"status": "uninstalled", "integration_id": i.id})),
    ))
}

/// Discord interactions: verified with the application's Ed25519 key, PING answered at
/// once. A component's work runs inline when it fits in the budget (Discord waits 3 s);
/// otherwise the interaction is answered "deferred" and finished by a job.
async fn discord_interactions(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let run = async {
        // Discord signs the body: it is read before anything is known of its sender.
        let raw = raw_body(&state, &headers, body, Sender::Unauthenticated).await?;
        // The signature comes first: nothing of an unsigned body is parsed.
        let integration = discord_signer(&state, &headers, &raw).await?;
        let v = json_body(&raw).await?;
        let application_id = discord::webhook::application_id(&v)?;
        if application_id != integration.external_id {
            return Err(ApiError::unauthorized(
                "the interaction names another application than the one that signed it",
            ));
        }
        let interaction = discord::webhook::parse_interaction(&v)?;
        if interaction.kind == discord::webhook::PING {
            return Ok((
                StatusCode::OK,
                Json(json!({"type": discord::webhook::PONG})),
            ));
        }
        let budget = std::time::Duration::from_millis(state.settings.discord.inline_budget_ms);
        let inline = discord_inline(&state, &integration, &interaction, &headers, &raw);
        let answer = if budget.is_zero() {
            None
        } else {
            tokio::time::timeout(budget, inline).await.ok()
        };
        let answer = match answer {
            Some(a) => a?,
            // Over budget: the inline transaction was dropped (rolled back) unfinished.
            None => discord_defer(&state, &integration, &interaction, &headers, &raw).await?,
        };
        Ok((StatusCode::OK, Json(answer)))
    };
    run.await.map_err(|e| refused(&state, "discord", e))
}

/// Stores the interaction (unique by its id) and applies it in one transaction.
async fn discord_inline(
    state: &HttpState,
    integration: &Integration,
    interaction: &discord::webhook::Interaction,
    headers: &HeaderMap,
    raw: &[u8],
) -> ApiResult<Value> {
    let mut tx = state.db.begin_write().await?;
    let Some(_) = insert_interaction(&mut tx, integration, interaction, headers, raw).await? else {
        return Ok(json!({"type": discord::webhook::DEFERRED_UPDATE_MESSAGE}));
    };
    let (reply, effects) = crate::sync::discord::respond(&mut tx, integration, interaction).await?;
    tx.commit().await?;
    metrics::counter!("issuesync_webhooks_total", "provider" => "discord", "result" => "applied")
        .increment(1);
    crate::sync::inbound::after_commit(state, effects).await;
    Ok(reply.response())
}

/// Stores the interaction with a `discord_interaction` job and answers type 6.
async fn discord_defer(
    state: &HttpState,
    integration: &Integration,
    interaction: &discord::webhook::Interaction,
    headers: &HeaderMap,
    raw: &[u8],
) -> ApiResult<Value> {
    let mut tx = state.db.begin_write().await?;
    if let Some(delivery_id) =
        insert_interaction(&mut tx, integration, interaction, headers, raw).await?
    {
        let job = enqueue(
            &mut tx,
            &issuesync_jobs::discord_interaction::DiscordInteraction { delivery_id },
        )
        .await?;
        deliveries::set_delivery_job(&mut tx, delivery_id, job.id()).await?;
        tx.commit().await?;
        metrics::counter!("issuesync_webhooks_total", "provider" => "discord", "result" => "deferred")
            .increment(1);
    }
    Ok(json!({"type": discord::webhook::DEFERRED_UPDATE_MESSAGE}))
}

/// The delivery row of an interaction; None for a duplicate (same interaction id).
async fn insert_interaction(
    tx: &mut crate::db::Tx,
    integration: &Integration,
    interaction: &discord::webhook::Interaction,
    headers: &HeaderMap,
    raw: &[u8],
) -> ApiResult<Option<i64>> {
    check_key(&interaction.id)?;
    let kept = kept_headers(headers);
    let id = deliveries::insert_delivery(
        tx,
        &NewDelivery {
            provider: "discord",
            delivery_key: &interaction.id,
            integration_id: Some(integration.id),
            headers: &kept,
            body: raw,
            job_id: None,
        },
        crate::now_ms(),
    )
    .await?;
    if id.is_none() {
        tracing::info!(
            interaction = interaction.id,
            "duplicate Discord interaction"
        );
        metrics::counter!("issuesync_webhooks_total", "provider" => "discord", "result" => "duplicate")
            .increment(1);
    }
    Ok(id)
}
