//! Users and their (verified) emails.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::LIST_LIMIT;
use crate::db::Tx;
use crate::receiver::error::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::receiver::openapi::schemas::{ReadErrors, UserOut, WriteErrors};
use crate::receiver::state::HttpState;
use crate::store::identities::Identity;
use crate::store::{StoreError, found, identities, users};
use crate::sync::Services;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(get_user))
        .route("/users/{id}/emails", post(add_email))
        .route(
            "/users/{id}/identities",
            get(list_identities).post(link_identity),
        )
        .route("/identities/{id}", delete(unlink_identity))
}

/// This module's operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_users,
    create_user,
    get_user,
    add_email,
    list_identities,
    link_identity,
    unlink_identity
))]
pub(super) struct Doc;

/// Chat providers whose accounts can be linked.
const IDENTITY_PROVIDERS: &[&str] = &["discord"];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewIdentity {
    #[schema(pattern = "^discord$", example = "discord")]
    provider: String,
    /// The account id at the provider (a Discord user id: a snowflake in a string).
    #[schema(
        pattern = r"^[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[0-9]{1,32}[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "80351110224678912"
    )]
    external_id: String,
}

/// Links a chat account to the user: its clicks then act as this user.
#[utoipa::path(post, path = "/api/v1/users/{id}/identities", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    request_body = NewIdentity,
    responses((status = 201, description = "Linked", body = Identity), WriteErrors))]
async fn link_identity(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewIdentity>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !IDENTITY_PROVIDERS.contains(&body.provider.as_str()) {
        return Err(ApiError::bad_request(format!(
            "provider must be one of {IDENTITY_PROVIDERS:?}"
        )));
    }
    let external_id = body.external_id.trim();
    if external_id.is_empty()
        || external_id.len() > 32
        || !external_id.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ApiError::bad_request(
            "external_id must be the Discord user id (digits only)",
        ));
    }
    let mut tx = s.db.begin_write().await?;
    found(users::find_user(&mut tx, id).await?, "user")?;
    let identity =
        identities::insert_identity(&mut tx, &body.provider, external_id, id, crate::now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ApiError::conflict(format!(
                    "{} account {external_id} is linked to a user already; unlink it first",
                    body.provider
                )),
                other => other.into(),
            })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(json!(identity))))
}

#[utoipa::path(get, path = "/api/v1/users/{id}/identities", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "The user's linked chat accounts", body = Vec<Identity>), ReadErrors))]
async fn list_identities(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    found(users::find_user(&mut tx, id).await?, "user")?;
    Ok(Json(json!(
        identities::list_user_identities(&mut tx, id).await?
    )))
}

#[utoipa::path(delete, path = "/api/v1/identities/{id}", tag = "users",
    params(("id" = i64, Path, description = "Identity id")),
    responses((status = 204, description = "Unlinked"), WriteErrors))]
async fn unlink_identity(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let mut tx = s.db.begin_write().await?;
    if !identities::delete_identity(&mut tx, id).await? {
        return Err(ApiError::not_found("identity"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEmail {
    /// Something `@` something, no blanks, at most 254 characters.
    #[schema(
        pattern = r"^[^@\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+@[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+$",
        max_length = 254,
        example = "jane@example.com"
    )]
    email: String,
    #[serde(default)]
    is_verified: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// Not blank.
    #[schema(
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "Jane Doe"
    )]
    name: String,
    /// Distinct addresses (409 when one is given twice).
    #[serde(default)]
    emails: Vec<NewEmail>,
}

/// Something `@` something, no blanks, at most 254 characters (the document's pattern).
fn check_email(e: &str) -> ApiResult<&str> {
    let ok = e.chars().count() <= 254
        && !e.chars().any(char::is_whitespace)
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty());
    if ok {
        Ok(e)
    } else {
        Err(ApiError::bad_request(format!("invalid email {e:?}")))
    }
}

async fn user_json(tx: &mut Tx, id: i64) -> ApiResult<Value> {
    let user = found(users::find_user(tx, id).await?, "user")?;
    let emails = users::list_user_emails(tx, id).await?;
    Ok(
        json!({"id": user.id, "name": user.name, "is_active": user.is_active, "date_added": user.date_added, "emails": emails}),
    )
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = NewUser,
    responses((status = 201, description = "Created", body = UserOut), WriteErrors))]
async fn create_user(
    State(s): State<Services>,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    for e in &body.emails {
        check_email(&e.email)?;
    }
    let mut tx = s.db.begin().await?;
    let user = users::insert_user(&mut tx, body.name.trim(), crate::now_ms()).await?;
    for e in &body.emails {
        users::add_user_email(&mut tx, user.id, check_email(&e.email)?, e.is_verified)
            .await
            .map_err(|err| match err {
                StoreError::Conflict(_) => {
                    ApiError::conflict(format!("email {:?} is given twice", e.email))
                }
                other => other.into(),
            })?;
    }
    let out = user_json(&mut tx, user.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// The users (at most 500) with their emails.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, description = "The users", body = Vec<UserOut>), ReadErrors))]
async fn list_users(State(s): State<Services>) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    let mut out = Vec::new();
    for u in users::list_users(&mut tx, LIST_LIMIT).await? {
        out.push(user_json(&mut tx, u.id).await?);
    }
    Ok(Json(json!(out)))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "The user with its emails", body = UserOut), ReadErrors))]
async fn get_user(State(s): State<Services>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Value>> {
    let mut tx = s.db.begin().await?;
    Ok(Json(user_json(&mut tx, id).await?))
}

/// Adds an email to the user (409 when the user has it already).
#[utoipa::path(post, path = "/api/v1/users/{id}/emails", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    request_body = NewEmail,
    responses((status = 201, description = "The user with its emails", body = UserOut), WriteErrors))]
async fn add_email(
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewEmail>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let email = check_email(&body.email)?;
    let mut tx = s.db.begin_write().await?;
    found(users::find_user(&mut tx, id).await?, "user")?;
    users::add_user_email(&mut tx, id, email, body.is_verified).await?;
    let out = user_json(&mut tx, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}
