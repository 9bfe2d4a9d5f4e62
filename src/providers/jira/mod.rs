//! Jira Cloud (provider key `jira`, an Atlassian Connect app): JWT + qsh authentication and
//! `jira:issue_updated` parsing (the parser is shared with Jira Server).

pub mod auth;
pub mod client;
pub mod descriptor;
pub mod webhook;
