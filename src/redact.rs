//! Secrets never leave the process: integration metadata and job payloads are redacted
//! before they are logged or shown.

use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

/// Does a JSON key name a secret?
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "token",
        "password",
        "private_key",
        "privatekey",
        "authorization",
        "api_key",
        "apikey",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A copy of `v` with the value of every secret-named key replaced.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_secrets_are_redacted() {
        let v = json!({"base_url": "https://x", "subscription": {"id": "1", "secret": "abc"}, "shared_secret": "s", "list": [{"access_token": "t"}]});
        let r = redact(&v);
        assert_eq!(r["base_url"], "https://x");
        assert_eq!(r["subscription"]["id"], "1");
        assert_eq!(r["subscription"]["secret"], REDACTED);
        assert_eq!(r["shared_secret"], REDACTED);
        assert_eq!(r["list"][0]["access_token"], REDACTED);
        assert!(!r.to_string().contains("abc"));
    }
}
