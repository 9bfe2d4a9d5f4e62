//! Sync logic: inbound (provider event → our groups) and outbound (our change → provider),
//! with the loop guards: an assignee change is never pushed back to the integration it came
//! from, and an inbound status change is pushed to no integration.

pub mod decision;
pub mod discord;
pub mod inbound;
pub mod install;
pub mod intent;
pub mod outbound;
pub mod resolve;
pub mod webhook;

use serde_json::Value;

use crate::store::integrations::OrganizationIntegration;

/// The sync switch `key` of an installation (Sentry's `should_sync`); missing means off.
pub fn switch(oi: &OrganizationIntegration, key: &str) -> bool {
    oi.status == 0
        && oi
            .config
            .0
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
}

/// Display name and key of a provider, as written into activity data.
pub fn provider_name(provider: &str) -> &'static str {
    match provider {
        "vsts" => "Azure DevOps",
        "jira" => "Jira",
        "jira_server" => "Jira Server",
        "discord" => "Discord",
        _ => "Unknown",
    }
}
