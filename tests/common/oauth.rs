//! An independent RFC 5849 RSA-SHA1 verifier for what a wiremock provider received.
#![allow(dead_code)]

use wiremock::Request;

const PUBLIC: &str = include_str!("../fixtures/test_rsa_public.pem");

/// An independent RFC 5849 verifier: rebuilds the base string from what the mock received
/// and checks the RSA-SHA1 signature with the public key.
pub fn verify_oauth1(r: &Request, consumer_key: &str, token: &str) -> bool {
    use base64::Engine;
    use rsa::pkcs8::DecodePublicKey;
    let enc = |s: &str| {
        const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        percent_encoding::utf8_percent_encode(s, SET).to_string()
    };
    let Some(h) = r.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(h) = h.strip_prefix("OAuth ") else {
        return false;
    };
    let mut params: Vec<(String, String)> = Vec::new();
    let mut signature = String::new();
    for part in h.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return false;
        };
        let v = percent_encoding::percent_decode_str(v.trim_matches('"'))
            .decode_utf8_lossy()
            .to_string();
        if k == "oauth_signature" {
            signature = v;
        } else if k != "realm" {
            params.push((k.to_string(), v));
        }
    }
    for (k, v) in r.url.query_pairs() {
        params.push((k.to_string(), v.to_string()));
    }
    let mut encoded: Vec<(String, String)> = params.iter().map(|(k, v)| (enc(k), enc(v))).collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    // wiremock's `url` says localhost without the port; the Host header is what was signed.
    let host = r
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let url = format!("http://{host}{}", r.url.path());
    let base = format!("{}&{}&{}", r.method.as_str(), enc(&url), enc(&normalized));
    let key = rsa::RsaPublicKey::from_public_key_pem(PUBLIC).unwrap();
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    let digest = <sha1::Sha1 as sha1::Digest>::digest(base.as_bytes());
    key.verify(rsa::Pkcs1v15Sign::new::<sha1::Sha1>(), &digest, &sig)
        .is_ok()
        && params
            .iter()
            .any(|(k, v)| k == "oauth_consumer_key" && v == consumer_key)
        && params.iter().any(|(k, v)| k == "oauth_token" && v == token)
}
