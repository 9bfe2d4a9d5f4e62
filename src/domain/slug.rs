//! Slugs as Sentry's `slugify_instance` makes them.

use rand::Rng;
use unicode_normalization::UnicodeNormalization;

pub const PROJECT_SLUG_MAX_LENGTH: usize = 50;

pub const RESERVED_PROJECT_SLUGS: &[&str] = &[
    "$all",
    "api-keys",
    "audit-log",
    "auth",
    "members",
    "projects",
    "rate-limits",
    "repos",
    "settings",
    "teams",
    "billing",
    "payments",
    "legal",
    "subscription",
    "support",
    "integrations",
    "developer-settings",
    "usage",
];

/// Sentry's alphabet, typo included: no '8', and '0' twice.
const SUFFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456790";

/// (suffix length, tries) in the order Sentry tries them: 28 tries in all.
pub const SUFFIX_PLAN: &[(usize, usize)] = &[(2, 2), (3, 5), (5, 20), (12, 1)];

/// Django's `slugify` (allow_unicode=False): NFKD, drop what is not ASCII (no
/// transliteration: "ß" goes, "é" becomes "e"), lower-case, keep word characters, whitespace
/// and '-', turn runs of '-' and whitespace into one '-', strip '-' and '_' at both ends.
/// Hand-written because the `slug` crate maps punctuation to '-' where Django drops it, and
/// slugs must match the main product's.
pub fn django_slugify(value: &str) -> String {
    let ascii: String = value
        .nfkd()
        .filter(char::is_ascii)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut out = String::with_capacity(ascii.len());
    let mut in_run = false;
    for c in ascii.chars() {
        if c == '-' || is_python_space(c) {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        }
    }
    out.trim_matches(|c| c == '-' || c == '_').to_string()
}

/// Python's `\s` on ASCII: Rust's whitespace plus the separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_ascii_whitespace() || matches!(c, '\x0b' | '\x1c'..='\x1f')
}

/// The base slug of a name: slugify, cut to `max_len`, strip '-', or 12 random hex when the
/// result is empty or reserved.
pub fn base_slug(name: &str, reserved: &[&str], max_len: usize) -> String {
    let slug: String = django_slugify(name).chars().take(max_len).collect();
    let slug = slug.trim_matches('-').trim().to_string();
    if slug.is_empty() || reserved.contains(&slug.as_str()) {
        return random_hex12();
    }
    slug
}

pub fn random_hex12() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

pub fn is_all_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// A slug given by a user must look like one we would make, and not be all digits.
pub fn is_valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= PROJECT_SLUG_MAX_LENGTH
        && !is_all_digits(s)
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `base[:max_len - n - 1] + "-" + random(n)`.
pub fn with_suffix(base: &str, n: usize, max_len: usize) -> String {
    let keep = max_len.saturating_sub(n + 1);
    let head: String = base.chars().take(keep).collect();
    let mut rng = rand::rng();
    let tail: String = (0..n)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect();
    format!("{head}-{tail}")
}

/// The candidates to try in order: the base (unless all digits), then the 28 suffixed ones.
pub fn candidates(base: &str, max_len: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(29);
    if !is_all_digits(base) {
        out.push(base.to_string());
    }
    for (n, tries) in SUFFIX_PLAN {
        for _ in 0..*tries {
            out.push(with_suffix(base, *n, max_len));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Django's own `test_slugify` inputs and more, with the output of Django's `slugify`
    /// (see `source` in the fixture).
    #[test]
    fn slugify_matches_the_django_vectors() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/django_slugify_vectors.json"
        ))
        .unwrap_or_default();
        let vectors = fixture["vectors"].as_array().cloned().unwrap_or_default();
        assert!(vectors.len() > 40);
        let wrong: Vec<String> = vectors
            .iter()
            .filter_map(|v| {
                let (input, expected) = (v[0].as_str()?, v[1].as_str()?);
                let got = django_slugify(input);
                (got != expected).then(|| format!("{input:?}: {got:?}, Django {expected:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn slugify_like_django() {
        assert_eq!(django_slugify("Hello World!"), "hello-world");
        assert_eq!(django_slugify("  My  --  Project_ "), "my-project");
        assert_eq!(django_slugify("Crème Brûlée"), "creme-brulee");
        assert_eq!(django_slugify("a.b,c"), "abc");
    }

    #[test]
    fn reserved_and_empty_become_random_hex() {
        let s = base_slug("Settings", RESERVED_PROJECT_SLUGS, 50);
        assert_eq!(s.len(), 12);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(base_slug("!!!", RESERVED_PROJECT_SLUGS, 50).len(), 12);
    }

    #[test]
    fn all_digit_base_is_never_a_candidate() {
        let c = candidates("12345", 50);
        assert_eq!(c.len(), 28);
        assert!(c.iter().all(|s| s.starts_with("12345-")));
    }

    #[test]
    fn suffix_respects_max_length_and_alphabet() {
        let base = "x".repeat(60);
        let s = with_suffix(&base, 5, 50);
        assert_eq!(s.len(), 50);
        assert!(!s[45..].contains('8'));
    }
}
