//! Integers in JSON bodies as JSON Schema reads them: a number with a zero fraction (`2.0`)
//! is the integer 2. serde reads `2.0` into an `i64` as an error, so the body fields that the
//! OpenAPI document declares as integers are read through these.

use serde::de::{Deserialize, Deserializer, Error};

/// One integer: `7` or `7.0`; `7.5` and values out of the `i64` range are refused.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    of_number(&n).ok_or_else(|| D::Error::custom(format!("invalid type: {n} is not an integer")))
}

/// An optional integer (absent or null: `None`); use with `#[serde(default)]`.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => of_number(&n)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("invalid type: {n} is not an integer"))),
    }
}

/// A list of integers.
pub fn ints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    Vec::<serde_json::Number>::deserialize(d)?
        .iter()
        .map(|n| {
            of_number(n)
                .ok_or_else(|| D::Error::custom(format!("invalid type: {n} is not an integer")))
        })
        .collect()
}

fn of_number(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    // A u64 above i64::MAX, or a float. serde_json reads an integer literal out of the i64
    // range as a float too (-9223372036854775809 becomes -2^63), so only whole floats that
    // are exact (|f| <= 2^53) are integers here; larger ones are refused as ambiguous.
    let f = n.as_f64()?;
    const EXACT: f64 = 9_007_199_254_740_992.0;
    (f.fract() == 0.0 && (-EXACT..=EXACT).contains(&f)).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct B {
        #[serde(deserialize_with = "super::int")]
        a: i64,
        #[serde(default, deserialize_with = "super::opt_int")]
        b: Option<i64>,
        #[serde(default, deserialize_with = "super::ints")]
        c: Vec<i64>,
    }

    fn parse(s: &str) -> Option<(i64, Option<i64>, Vec<i64>)> {
        serde_json::from_str::<B>(s).ok().map(|b| (b.a, b.b, b.c))
    }

    #[test]
    fn whole_floats_are_integers() {
        assert_eq!(parse(r#"{"a": -952.0}"#), Some((-952, None, vec![])));
        assert_eq!(
            parse(r#"{"a": 1, "b": 2.0, "c": [3, 4.0]}"#),
            Some((1, Some(2), vec![3, 4]))
        );
        assert_eq!(parse(r#"{"a": 1, "b": null}"#), Some((1, None, vec![])));
        assert_eq!(
            parse(r#"{"a": 9223372036854775807}"#).map(|p| p.0),
            Some(i64::MAX)
        );
    }

    #[test]
    fn fractions_and_out_of_range_are_refused() {
        assert_eq!(parse(r#"{"a": 1.5}"#), None);
        assert_eq!(parse(r#"{"a": 9223372036854775808}"#), None);
        assert_eq!(parse(r#"{"a": 1e300}"#), None);
        // Out of range, though serde_json reads it as the float -2^63.
        assert_eq!(parse(r#"{"a": -9223372036854775809}"#), None);
        assert_eq!(parse(r#"{"a": "1"}"#), None);
        assert_eq!(parse(r#"{"a": 1, "c": [1.25]}"#), None);
    }
}
