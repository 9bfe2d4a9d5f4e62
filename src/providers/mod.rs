//! Provider adapters. Each has `webhook.rs` (verify + parse into a typed event), `auth.rs`
//! where the provider needs it, and `client.rs` (outbound API).

pub mod discord;
pub mod http;
pub mod jira;
pub mod jira_server;
pub mod ratelimit;
pub mod vsts;

/// Why a delivery was refused before anything was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// 400: unparsable body or missing required fields.
    #[error("{0}")]
    BadRequest(String),
    /// 401: authentication missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
}

/// A change to an external issue's assignee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssigneeChange {
    /// Assigned to someone; `email` may be missing (Jira Cloud hides it) and then
    /// `account_id` is what we can look up.
    Assign {
        email: Option<String>,
        account_id: Option<String>,
    },
    Unassign,
}

/// A change to an external issue's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// Azure DevOps: state names; `old_state` is None for a new work item.
    Vsts {
        new_state: String,
        old_state: Option<String>,
        project: Option<String>,
    },
    /// Jira (Cloud and Server): status ids from the changelog item.
    Jira {
        from: Option<String>,
        to: Option<String>,
    },
}

/// What a provider event means for us, independent of the wire format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboundEvent {
    /// ADO work item id ("31") or Jira issue key ("APP-123").
    pub issue_key: String,
    pub assignee: Option<AssigneeChange>,
    pub status: Option<StatusChange>,
    /// Who made the change: ADO `revisedBy` (id and uniqueName), Jira Server `user.name`,
    /// Jira Cloud `user.accountId`.
    pub actor: Vec<String>,
    /// Jira Cloud `user.accountType == "app"`: the change was made by an app.
    pub actor_is_app: bool,
    /// Ordering of events of one issue: ADO `resource.rev`, Jira `timestamp` (ms).
    pub sequence: Option<i64>,
}
