//! issuesync: two-way sync of error-tracker issues with Azure DevOps, Jira and Discord.
//!
//! Layout (docs/design.md): `store` is SQL, `domain` the model logic, `receiver` the HTTP
//! surface; `startup` builds the app once for `main` and for the tests.

pub mod bench;
pub mod config;
pub mod db;
pub mod domain;
pub mod explain;
pub mod kv;
pub mod ops;
pub mod providers;
pub mod receiver;
pub mod redact;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod trace;
pub mod worker;

/// Milliseconds since the Unix epoch: the one time format of our tables on both backends.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
