//! Jira (Cloud and Server) `jira:issue_updated` parsing and delivery keys.
#![no_main]
use issuesync::providers::jira::webhook;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = webhook::parse_issue_updated(&v);
        let _ = webhook::delivery_key_server(&v);
        let _ = webhook::delivery_key_cloud(None, &v);
        let _ = webhook::delivery_key_cloud(Some("id"), &v);
    }
});
