//! The resolve decision of an inbound status change (Sentry's `ResolveSyncAction` and the
//! providers' `get_resolve_sync_action`): which provider states are done, and whether a
//! change resolves, unresolves or does nothing.

use serde_json::Value;

use super::provider_name;
use crate::providers::jira::client::JiraClient;
use crate::providers::vsts::client::VstsClient;
use crate::store::integrations::Integration;
use crate::sync::JobError;
use crate::sync::Services;

/// RESOLVE / UNRESOLVE / NOOP (Sentry's `ResolveSyncAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveAction {
    Noop,
    Resolve,
    Unresolve,
}

impl ResolveAction {
    /// Both flags set is a config conflict and does nothing.
    pub fn from_flags(should_resolve: bool, should_unresolve: bool) -> ResolveAction {
        match (should_resolve, should_unresolve) {
            (true, true) => {
                tracing::warn!("sync-config-conflict");
                ResolveAction::Noop
            }
            (true, false) => ResolveAction::Resolve,
            (false, true) => ResolveAction::Unresolve,
            (false, false) => ResolveAction::Noop,
        }
    }
}

/// Azure DevOps: New → done is a NOOP (both flags), any move into a non-done
/// state unresolves.
pub fn vsts_action(done: &[String], new_state: &str, old_state: Option<&str>) -> ResolveAction {
    let is_done = |s: &str| done.iter().any(|d| d == s);
    let should_resolve = old_state.is_none_or(|o| !is_done(o)) && is_done(new_state);
    let should_unresolve = !is_done(new_state) || old_state.is_none();
    ResolveAction::from_flags(should_resolve, should_unresolve)
}

/// Jira: status ids moving into or out of the done category.
pub fn jira_action(done: &[String], from: Option<&str>, to: Option<&str>) -> ResolveAction {
    let is_done = |s: Option<&str>| s.is_some_and(|s| done.iter().any(|d| d == s));
    ResolveAction::from_flags(is_done(to) && !is_done(from), is_done(from) && !is_done(to))
}

/// How a status change reads in a decision: "Active → Resolved", "status 3 → 10101".
pub(super) fn describe_change(provider: &str, data: &Value) -> String {
    let (from, to) = if provider == "vsts" {
        (
            data.get("old_state").and_then(Value::as_str),
            data.get("new_state").and_then(Value::as_str),
        )
    } else {
        (
            data.pointer("/changelog/from").and_then(Value::as_str),
            data.pointer("/changelog/to").and_then(Value::as_str),
        )
    };
    let word = if provider == "vsts" {
        "state"
    } else {
        "status"
    };
    format!(
        "{} {word} {} → {}",
        provider_name(provider),
        from.unwrap_or("(none)"),
        to.unwrap_or("(none)")
    )
}

/// The resolve action of a provider status change; asks the provider which states are done.
pub(super) async fn resolve_action(
    state: &Services,
    integration: &Integration,
    data: &Value,
) -> Result<ResolveAction, JobError> {
    Ok(match integration.provider.as_str() {
        "vsts" => {
            let new_state = data
                .get("new_state")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let old_state = data.get("old_state").and_then(Value::as_str);
            let project = data
                .get("project")
                .and_then(Value::as_str)
                .ok_or_else(|| JobError::Permanent("no project in the event".into()))?;
            let done = VstsClient::new(&state.http, integration)?
                .with_db(&state.db)
                .done_states(project)
                .await?;
            vsts_action(&done, new_state, old_state)
        }
        "jira" | "jira_server" => {
            let from = data.pointer("/changelog/from").and_then(Value::as_str);
            let to = data.pointer("/changelog/to").and_then(Value::as_str);
            let done = JiraClient::new(&state.http, integration, &state.jira_app_key())?
                .done_status_ids()
                .await?;
            jira_action(&done, from, to)
        }
        other => {
            return Err(JobError::Permanent(format!(
                "no status sync for provider {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn vsts_decisions() {
        let done = s(&["Resolved", "Closed"]);
        assert_eq!(
            vsts_action(&done, "Resolved", Some("New")),
            ResolveAction::Resolve
        );
        assert_eq!(vsts_action(&done, "Resolved", None), ResolveAction::Noop);
        assert_eq!(
            vsts_action(&done, "Active", Some("Resolved")),
            ResolveAction::Unresolve
        );
        assert_eq!(
            vsts_action(&done, "Active", Some("New")),
            ResolveAction::Unresolve
        );
        assert_eq!(
            vsts_action(&done, "Closed", Some("Resolved")),
            ResolveAction::Noop
        );
        assert_eq!(
            vsts_action(&[], "Resolved", Some("Active")),
            ResolveAction::Unresolve
        );
    }

    #[test]
    fn jira_decisions() {
        let done = s(&["10101"]);
        assert_eq!(
            jira_action(&done, Some("3"), Some("10101")),
            ResolveAction::Resolve
        );
        assert_eq!(
            jira_action(&done, Some("10101"), Some("3")),
            ResolveAction::Unresolve
        );
        assert_eq!(
            jira_action(&done, Some("1"), Some("3")),
            ResolveAction::Noop
        );
    }
}
