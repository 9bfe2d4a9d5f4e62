//! Provider API failures (`ApiError`), the status → class mapping, and Retry-After parsing.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

use super::request::Request;

/// A provider API failure, classified.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 5xx, timeouts, connection errors: retry with backoff.
    #[error("{0}")]
    Transient(String),
    /// 401/403/404 and other 4xx: retrying will not help.
    #[error("HTTP {status}: {message}")]
    Permanent { status: u16, message: String },
    /// 429 (or 503 with Retry-After): wait until `until`. `by` names the integration
    /// (`provider integration id`) when the request had one.
    #[error("rate limited until {until}")]
    RateLimited {
        until: DateTime<Utc>,
        by: Option<String>,
    },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Permanent { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Classifies an answer by status: 429 (or 503 with Retry-After) is rate limited, other 5xx
/// transient, other non-2xx permanent; `Ok` for a success.
pub(super) fn classify(
    status: StatusCode,
    retry_after: Option<&str>,
    reset: Option<&str>,
    req: &Request<'_>,
    bytes: &[u8],
) -> Result<(), ApiError> {
    if status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some())
    {
        return Err(ApiError::RateLimited {
            until: rate_limit_until(retry_after, reset, Utc::now()),
            by: req
                .limit
                .as_ref()
                .map(|(provider, id)| format!("{provider} integration {id}")),
        });
    }
    if status.is_server_error() {
        return Err(ApiError::Transient(format!(
            "{} {} answered {}: {}",
            req.method,
            req.shown_url(),
            status.as_u16(),
            snippet(bytes)
        )));
    }
    if !status.is_success() {
        return Err(ApiError::Permanent {
            status: status.as_u16(),
            message: format!("{} {}: {}", req.method, req.shown_url(), snippet(bytes)),
        });
    }
    Ok(())
}

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).replace('\n', " ")
}

/// When a rate limit ends: `Retry-After` seconds (or an HTTP date), else `X-RateLimit-Reset`
/// (Unix seconds, or an ISO-8601 time), else 60 s.
pub fn rate_limit_until(
    retry_after: Option<&str>,
    reset: Option<&str>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let ra = retry_after.and_then(|v| {
        let v = v.trim();
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| now + chrono::Duration::milliseconds((s.min(86_400.0) * 1000.0) as i64))
            .or_else(|| {
                DateTime::parse_from_rfc2822(v)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            })
    });
    let rs = || {
        reset.and_then(|v| {
            let v = v.trim();
            v.parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .or_else(|| {
                    DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                })
                .or_else(|| {
                    chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%MZ")
                        .ok()
                        .map(|t| t.and_utc())
                })
        })
    };
    ra.or_else(rs)
        .filter(|t| *t > now)
        .unwrap_or(now + chrono::Duration::seconds(60))
        .min(now + chrono::Duration::hours(24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_reset() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        assert_eq!(
            rate_limit_until(Some("2"), None, now),
            now + chrono::Duration::seconds(2)
        );
        assert_eq!(
            rate_limit_until(None, Some("1700000030"), now),
            now + chrono::Duration::seconds(30)
        );
        assert_eq!(
            rate_limit_until(None, Some("2023-11-14T22:14Z"), now).timestamp(),
            1_700_000_040
        );
        assert_eq!(
            rate_limit_until(Some("junk"), None, now),
            now + chrono::Duration::seconds(60)
        );
    }
}
