//! Azure DevOps `workitem.updated` parsing and the shared-secret check.
#![no_main]
use issuesync::providers::vsts::webhook;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = webhook::event_type(&v);
        let _ = webhook::collection_id(&v);
        let _ = webhook::delivery_key(&v);
        let _ = webhook::parse_workitem_updated(&v);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = webhook::parse_email(s);
        let _ = webhook::verify_shared_secret(Some("secret"), Some(s));
    }
});
