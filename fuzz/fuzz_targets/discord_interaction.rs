//! Discord: Ed25519 verification of arbitrary headers and bodies, the interaction parser
//! and the custom_id parser.
#![no_main]
use issuesync::providers::discord::{auth, webhook};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = auth::parse_public_key(KEY) {
        let split = data.len().min(140);
        let (header, body) = data.split_at(split);
        let header = String::from_utf8_lossy(header);
        let cut = (0..=header.len().min(128)).rev().find(|i| header.is_char_boundary(*i)).unwrap_or(0);
        let (sig, ts) = header.split_at(cut);
        let _ = auth::verify(&key, Some(sig), Some(ts), body, 1_740_947_650, 300);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = auth::parse_public_key(s);
        let _ = webhook::parse_custom_id(s);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = webhook::application_id(&v);
        let _ = webhook::parse_interaction(&v);
    }
});
