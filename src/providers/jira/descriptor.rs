//! The Atlassian Connect descriptor (`atlassian-connect.json`): what a Jira Cloud admin
//! installs ("Upload app" with its URL). It points Jira at our lifecycle callbacks and our
//! issue webhook, all relative to `baseUrl`.

use serde_json::{Value, json};

/// The descriptor for app `key` named `name`, served from `base_url` (our public URL).
///
/// - `scopes`: `read` (Jira sends webhooks only to apps with it; issues, statuses and
///   transitions are read for status sync), `write` (setting the assignee, transitioning an
///   issue) and `access_email_addresses` (`GET /rest/api/3/user/email`, which matches a Jira
///   account to a user by verified email). No `act_as_user`: every call is made as the app.
/// - `apiMigrations`: `signed-install`, because the `installed` callback is verified by
///   Atlassian's RS256 install token (without it the first install is unsigned);
///   `context-qsh`, so that a context token can never pass for a request token (we accept
///   none); `gdpr`, users by `accountId`.
pub fn connect_descriptor(key: &str, name: &str, base_url: &str) -> Value {
    let base_url = base_url.trim_end_matches('/');
    json!({
        "key": key,
        "name": name,
        "description": "Keeps Jira issues and error-tracker issues in sync: status and assignee, both ways.",
        "vendor": {"name": name, "url": base_url},
        "baseUrl": base_url,
        "authentication": {"type": "jwt"},
        "apiVersion": 1,
        "apiMigrations": {"signed-install": true, "context-qsh": true, "gdpr": true},
        "lifecycle": {
            "installed": "/extensions/jira/installed/",
            "uninstalled": "/extensions/jira/uninstalled/"
        },
        "scopes": ["read", "write", "access_email_addresses"],
        "modules": {
            "webhooks": [{
                "event": "jira:issue_updated",
                "url": "/extensions/jira/issue-updated/",
                "excludeBody": false
            }]
        }
    })
}
