//! Atlassian Connect JWTs: extraction from the header or query, the unverified issuer
//! peek, verification with qsh, and the canonical request of arbitrary paths and queries.
#![no_main]
use issuesync::providers::jira::auth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let mid = (0..=s.len() / 2).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
    let (head, tail) = s.split_at(mid);
    let query = vec![("jwt".to_string(), tail.to_string()), (head.to_string(), tail.to_string())];
    if let Some(token) = auth::extract_token(Some(head), &query) {
        let _ = auth::peek_issuer(&token);
        let _ = auth::verify(&token, "shared-secret", "POST", "/extensions/jira/issue-updated/", &query, 1_700_000_000);
    }
    let _ = auth::peek_issuer(s);
    let _ = auth::verify(s, "shared-secret", "POST", head, &query, 1_700_000_000);
    let _ = auth::qsh("POST", head, &query);
});
