//! The tokens an Azure DevOps integration holds, and the refreshed ones this process has not
//! saved yet. Apart from the OAuth flow so that the HTTP client, which keeps the unsaved ones,
//! does not import the flow that calls it.

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::SecretString;
use serde_json::Value;

/// A token is refreshed this long before `expires`. Sentry refreshes when `expires <= now`;
/// the margin keeps a token from expiring between our check and the provider's.
pub const REFRESH_MARGIN_SECS: i64 = 60;

/// The tokens in an integration's metadata (`Debug` shows them redacted).
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access: SecretString,
    pub refresh: Option<SecretString>,
    /// Unix seconds (Sentry's `expires`); unknown when absent.
    pub expires: Option<i64>,
}

impl Tokens {
    pub fn from_metadata(m: &Value) -> Option<Tokens> {
        Some(Tokens {
            access: m.get("access_token")?.as_str()?.into(),
            refresh: m
                .get("refresh_token")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .map(SecretString::from),
            expires: m.get("expires").and_then(seconds),
        })
    }

    /// Expired, or about to: refresh before using it.
    pub fn expiring(&self, now: i64) -> bool {
        self.expires
            .is_some_and(|e| e <= now.saturating_add(REFRESH_MARGIN_SECS))
    }
}

/// Refreshed tokens this process could not save, per integration, with the refresh token they
/// replace. The provider has used that one up, so these are the integration's only working
/// tokens: they are saved by a background task, and no job uses the old refresh token meanwhile.
#[derive(Default)]
pub struct UnsavedTokens(Mutex<HashMap<i64, (String, Tokens)>>);

impl UnsavedTokens {
    pub(super) fn get(&self, id: i64) -> Option<(String, Tokens)> {
        self.0.lock().ok()?.get(&id).cloned()
    }

    /// False when tokens of `id` were already kept (their task is running).
    pub(super) fn keep(&self, id: i64, used: &str, tokens: &Tokens) -> bool {
        match self.0.lock() {
            Ok(mut m) => m.insert(id, (used.to_string(), tokens.clone())).is_none(),
            Err(_) => false,
        }
    }

    pub(super) fn forget(&self, id: i64) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&id);
        }
    }
}

/// A number, or a number in a string (the vssps endpoint answers `"expires_in": "3599"`).
pub(super) fn seconds(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}
