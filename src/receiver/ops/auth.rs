//! Operator sessions: the admin token, entered once, becomes a signed session cookie
//! (HttpOnly, SameSite=Strict, 12 h); every form carries a CSRF token bound to that session.
//! Scripts may send `Authorization: Bearer <token>` instead, which needs no CSRF token
//! (browsers never attach it by themselves).

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::PageError;
use crate::sync::Services;

pub const COOKIE_NAME: &str = "issuesync_ops";
pub const SESSION_MS: i64 = 12 * 3600 * 1000;

fn mac(key: &str, message: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(message.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The cookie value of a session issued at `issued_ms`: it proves the holder knew the
/// token, without being the token; changing the token ends every session.
pub fn session_value(token: &str, issued_ms: i64) -> String {
    format!(
        "{issued_ms}.{}",
        mac(token, &format!("ops-session:{issued_ms}"))
    )
}

pub fn valid_session(token: &str, value: &str, now_ms: i64) -> bool {
    let Some((issued, _)) = value.split_once('.') else {
        return false;
    };
    let Ok(issued_ms) = issued.parse::<i64>() else {
        return false;
    };
    let fresh = issued_ms <= now_ms + 60_000 && now_ms - issued_ms <= SESSION_MS;
    fresh && same(value, &session_value(token, issued_ms))
}

pub fn csrf_for(token: &str, session: &str) -> String {
    mac(token, &format!("ops-csrf:{session}"))
}

pub fn token_matches(expected: &str, given: &str) -> bool {
    same(expected, given)
}

/// What the revocation table stores of a session cookie (never the cookie itself).
pub fn session_digest(value: &str) -> String {
    hex::encode(<Sha256 as sha2::Digest>::digest(value.as_bytes()))
}

/// When a session cookie expires (epoch ms); None when it is not a session value.
pub fn session_expiry(value: &str) -> Option<i64> {
    let issued: i64 = value.split_once('.')?.0.parse().ok()?;
    Some(issued + SESSION_MS)
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// An authenticated operator. `csrf` is the token forms must send back (None when the
/// request was authenticated by a header).
pub struct Operator {
    pub csrf: Option<String>,
    /// The session cookie's value (None when authenticated by a header).
    pub session: Option<String>,
}

impl Operator {
    /// Refuses a state-changing request whose form does not carry this session's token.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), PageError> {
        match &self.csrf {
            None => Ok(()),
            Some(expected) if given.is_some_and(|g| same(g, expected)) => Ok(()),
            Some(_) => Err(PageError::forbidden(
                "the form's CSRF token is missing or wrong; reload the page and try again",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Operator
where
    Services: FromRef<S>,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        let state = &Services::from_ref(state);
        let Some(token) = state.settings.admin_token.as_ref() else {
            return Err(PageError::login(
                parts,
                "the operator page is disabled: set ISSUESYNC_ADMIN_TOKEN",
            ));
        };
        if let Some(given) = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return if same(given, token.expose_secret()) {
                Ok(Operator {
                    csrf: None,
                    session: None,
                })
            } else {
                Err(PageError::login(parts, "wrong admin token"))
            };
        }
        match cookie(parts, COOKIE_NAME) {
            Some(v) if valid_session(token.expose_secret(), &v, crate::now_ms()) => {
                if revoked(state, &v).await? {
                    return Err(PageError::login(
                        parts,
                        "you logged out of this session; log in again",
                    ));
                }
                Ok(Operator {
                    csrf: Some(csrf_for(token.expose_secret(), &v)),
                    session: Some(v),
                })
            }
            Some(_) => Err(PageError::login(
                parts,
                "your session has expired or the token changed; log in again",
            )),
            None => Err(PageError::login(parts, "log in with the admin token")),
        }
    }
}

/// Logged out: the database holds the digest, so the logout holds for every receiver.
async fn revoked(state: &Services, session: &str) -> Result<bool, PageError> {
    let mut tx = state.db.begin().await?;
    Ok(crate::store::sessions::is_session_revoked(&mut tx, &session_digest(session)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_depend_on_the_token() {
        let v = session_value("tok", 1_000);
        assert!(valid_session("tok", &v, 1_000 + SESSION_MS));
        assert!(!valid_session("tok", &v, 1_001 + SESSION_MS));
        assert!(!valid_session("other", &v, 2_000));
        assert!(!valid_session("tok", "1000.00", 2_000));
        assert!(!valid_session("tok", "garbage", 2_000));
        assert!(
            !valid_session("tok", &session_value("tok", 100_000), 2_000),
            "issued in the future"
        );
        assert_ne!(
            csrf_for("tok", &v),
            csrf_for("tok", &session_value("tok", 1_001))
        );
    }
}
