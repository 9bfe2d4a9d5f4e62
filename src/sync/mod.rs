//! Sync logic: inbound (provider event → our groups) and outbound (our change → provider),
//! with the loop guards: an assignee change is never pushed back to the integration it came
//! from, and an inbound status change is pushed to no integration.

pub mod decision;
pub mod discord;
pub mod inbound;
pub mod install;
pub mod intent;
pub mod job;
pub mod link;
pub mod outbound;
pub mod resolve;
pub mod services;
pub mod webhook;

use serde_json::Value;

pub use self::job::{JobCtx, JobError};
pub use self::services::Services;
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

/// Why `switch_key` lets no change through for organization `org`, whose installation (if
/// any) is `oi`: the detail of a `sync_disabled` decision.
pub fn off_detail(oi: Option<&OrganizationIntegration>, switch_key: &str, org: i64) -> String {
    match oi {
        None => format!("the integration is not installed on organization {org}"),
        Some(oi) if oi.status != 0 => {
            format!("the integration's installation on organization {org} is disabled")
        }
        Some(_) => format!("{switch_key} is off for organization {org}"),
    }
}

/// The detail of a `sync_disabled` decision when the integration itself is disabled.
pub fn disabled_detail(integration_id: i64) -> String {
    format!("integration {integration_id} is disabled")
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
