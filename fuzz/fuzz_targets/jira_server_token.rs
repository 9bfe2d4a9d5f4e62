//! The Jira Server webhook URL token: the unverified id peek and HS256 verification.
#![no_main]
use issuesync::providers::jira_server::auth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = auth::peek_token_id(s);
    let _ = auth::verify_token(s, "a long secret value");
    let _ = auth::webhook_secret(s);
});
