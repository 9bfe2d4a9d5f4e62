//! Reading a webhook body: held against the sender's budget (authenticated or not), bounded
//! in size and time, and parsed off the runtime threads when it is large.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::receiver::error::{ApiError, ApiResult};
use crate::receiver::state::HttpState;

/// A body held in memory, with its share of its budget (`Sender`).
pub struct RawBody {
    pub(super) bytes: Bytes,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for RawBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Whose body is read, which decides the budget it is held in: unauthenticated clients
/// can only take `http.max_unauthenticated_body_bytes`, never the room that webhooks
/// authenticated before their body (ADO, Jira Server, Jira Cloud issue events) need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sender {
    /// Authenticated before the body: `http.max_buffered_body_bytes`.
    Authenticated,
    /// Authenticated only from the body (Discord's signature, the tenant of a Jira
    /// lifecycle callback): `http.max_unauthenticated_body_bytes`.
    Unauthenticated,
}

/// The raw body: 413 over the limit, 400 when the client cut it short, 408 when it is too
/// slow to arrive (a stalled client must not hold the request until the 503 timeout), 503
/// when the sender's budget is already taken by other requests.
pub(super) async fn raw_body(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
    sender: Sender,
) -> ApiResult<RawBody> {
    let http = &state.settings.http;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(http.body_timeout_ms);
    // Reserve what the body may take (its Content-Length, or the limit) before reading it.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > http.body_limit_bytes) {
        return Err(too_large());
    }
    let kib = declared
        .unwrap_or(http.body_limit_bytes)
        .div_ceil(1024)
        .max(1);
    let (budget, label) = match sender {
        Sender::Authenticated => (&state.bodies, "authenticated"),
        Sender::Unauthenticated => (&state.unauthenticated_bodies, "unauthenticated"),
    };
    let permit = match tokio::time::timeout_at(
        deadline,
        budget
            .clone()
            .acquire_many_owned(u32::try_from(kib).unwrap_or(u32::MAX)),
    )
    .await
    {
        Ok(Ok(p)) => p,
        _ => {
            metrics::counter!("issuesync_http_bodies_refused_total", "budget" => label)
                .increment(1);
            return Err(ApiError::unavailable(
                "too many request bodies are being received at once; retry later",
            ));
        }
    };
    let read = axum::body::to_bytes(body, http.body_limit_bytes);
    let bytes = match tokio::time::timeout_at(deadline, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {} ms", http.body_timeout_ms),
        )),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "the body could not be read: {e}"
        ))),
        Ok(Ok(b)) => Ok(b),
    }?;
    Ok(RawBody {
        bytes,
        _permit: permit,
    })
}

pub(super) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the body is larger than the 1 MiB limit",
    )
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Bodies larger than this are parsed on the blocking pool, off the runtime threads that
/// answer every other request.
pub(super) const PARSE_INLINE_BYTES: usize = 64 * 1024;

fn parse_object(raw: &[u8]) -> ApiResult<Value> {
    let v: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(v)
}

pub(super) async fn json_body(raw: &RawBody) -> ApiResult<Value> {
    if raw.len() <= PARSE_INLINE_BYTES {
        return parse_object(raw);
    }
    let bytes = raw.bytes.clone();
    tokio::task::spawn_blocking(move || parse_object(&bytes))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the body parser panicked");
            ApiError::internal()
        })?
}
