//! Jira Server / Data Center (provider key `jira_server`): the per-install token in the webhook
//! URL, and `jira:issue_updated` parsing (shared with Jira Cloud).

pub mod auth;
pub mod webhook;
