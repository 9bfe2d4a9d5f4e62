//! Sync decisions as operators see them, shared by the admin API (`/api/v1/…/sync`,
//! `/api/v1/sync-decisions`), `issuesync explain` and `/ops`: timelines newest first,
//! keyset-paged, each decision with its sentence.

use std::collections::HashMap;

use serde::Serialize;

use crate::db::{Db, Tx};
use crate::ops::OpsError;
use crate::store::decisions::{self, Cursor, Decision, DecisionFilter, ReasonCount, Timeline};
use crate::store::{external, groups, integrations};
use crate::sync::decision::{self as sync_decision, INBOUND, OUTBOUND, OUTCOMES};

/// Default and largest page.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// A decision with its sentence.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionView {
    #[serde(flatten)]
    pub decision: Decision,
    pub sentence: String,
}

/// One page of a timeline; `next_cursor` fetches the older rows (`?before=`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub decisions: Vec<DecisionView>,
    pub next_cursor: Option<String>,
}

/// A cursor as the API shows it: `{at_ms}.{id}` of the last row of a page.
pub fn cursor_of(d: &Decision) -> String {
    format!("{}.{}", d.at_ms, d.id)
}

pub fn parse_cursor(s: &str) -> Result<Cursor, OpsError> {
    let bad = || {
        OpsError::Invalid(format!(
            "before must be a cursor from next_cursor (AT_MS.ID), not {s:?}"
        ))
    };
    let (at, id) = s.split_once('.').ok_or_else(bad)?;
    Ok((
        small_int(at).ok_or_else(bad)?,
        small_int(id).ok_or_else(bad)?,
    ))
}

/// An optional sign and 1 to 18 digits (`[+-]?[0-9]{1,18}` in the OpenAPI document): always
/// an `i64`, so the document's pattern and this parser accept the same texts.
fn small_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    ((1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

pub fn check_limit(limit: Option<i64>) -> Result<i64, OpsError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(OpsError::Invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// `since`: epoch milliseconds, or an age such as `24h`, `7d`, `30m`.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, OpsError> {
    let s = s.trim();
    if s.chars().last().is_some_and(|c| c.is_ascii_alphabetic()) {
        let age = crate::ops::parse_age(s)?;
        return Ok(now_ms - age.saturating_mul(1000));
    }
    small_int(s).ok_or_else(|| {
        OpsError::Invalid(format!(
            "since must be epoch milliseconds or an age like 24h, not {s:?}"
        ))
    })
}

/// The provider of each integration the decisions name (for their sentences).
async fn providers(tx: &mut Tx, ds: &[Decision]) -> Result<HashMap<i64, String>, OpsError> {
    let mut out = HashMap::new();
    for id in ds.iter().filter_map(|d| d.refs.integration_id) {
        if let std::collections::hash_map::Entry::Vacant(e) = out.entry(id)
            && let Some(i) = integrations::find_integration(tx, id).await?
        {
            e.insert(i.provider);
        }
    }
    Ok(out)
}

async fn views(tx: &mut Tx, ds: Vec<Decision>) -> Result<Vec<DecisionView>, OpsError> {
    let providers = providers(tx, &ds).await?;
    let now = crate::now_ms();
    Ok(ds
        .into_iter()
        .map(|d| {
            let p = d
                .refs
                .integration_id
                .and_then(|i| providers.get(&i))
                .map(String::as_str);
            DecisionView {
                sentence: sync_decision::sentence(&d, p, now),
                decision: d,
            }
        })
        .collect())
}

async fn page(tx: &mut Tx, ds: Vec<Decision>, limit: i64) -> Result<Page, OpsError> {
    let next_cursor = (ds.len() as i64 == limit)
        .then(|| ds.last().map(cursor_of))
        .flatten();
    Ok(Page {
        decisions: views(tx, ds).await?,
        next_cursor,
    })
}

/// A group's or an external issue's timeline; NotFound when it does not exist.
pub async fn timeline(
    db: &Db,
    of: Timeline,
    before: Option<&str>,
    limit: Option<i64>,
) -> Result<Page, OpsError> {
    let limit = check_limit(limit)?;
    let before = before.map(parse_cursor).transpose()?;
    let mut tx = db.begin().await?;
    let exists = match of {
        Timeline::Group(id) => groups::find_group(&mut tx, id).await?.is_some(),
        Timeline::ExternalIssue(id) => external::find_external_issue(&mut tx, id).await?.is_some(),
    };
    if !exists {
        return Err(OpsError::NotFound(match of {
            Timeline::Group(id) => format!("group {id}"),
            Timeline::ExternalIssue(id) => format!("external issue {id}"),
        }));
    }
    let ds = decisions::list_timeline(&mut tx, of, before, limit).await?;
    page(&mut tx, ds, limit).await
}

/// The search parameters of `/api/v1/sync-decisions`, as given.
#[derive(Debug, Default)]
pub struct Search<'a> {
    pub reason: Option<&'a str>,
    pub integration: Option<i64>,
    pub since: Option<&'a str>,
    pub direction: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub before: Option<&'a str>,
    pub limit: Option<i64>,
}

pub fn filter_of(q: &Search<'_>) -> Result<DecisionFilter, OpsError> {
    if let Some(r) = q.reason
        && sync_decision::reason_info(r).is_none()
    {
        let codes: Vec<&str> = sync_decision::REASONS.iter().map(|r| r.code).collect();
        return Err(OpsError::Invalid(format!(
            "unknown reason {r:?}; reasons are {}",
            codes.join(", ")
        )));
    }
    if let Some(d) = q.direction
        && d != INBOUND
        && d != OUTBOUND
    {
        return Err(OpsError::Invalid(format!(
            "direction must be inbound or outbound, not {d:?}"
        )));
    }
    if let Some(o) = q.outcome
        && !OUTCOMES.contains(&o)
    {
        return Err(OpsError::Invalid(format!(
            "outcome must be one of {}, not {o:?}",
            OUTCOMES.join(", ")
        )));
    }
    Ok(DecisionFilter {
        reason: q.reason.map(str::to_string),
        integration_id: q.integration,
        since_ms: q
            .since
            .map(|s| parse_since(s, crate::now_ms()))
            .transpose()?,
        direction: q.direction.map(str::to_string),
        outcome: q.outcome.map(str::to_string),
    })
}

pub async fn search(db: &Db, q: &Search<'_>) -> Result<Page, OpsError> {
    let filter = filter_of(q)?;
    let limit = check_limit(q.limit)?;
    let before = q.before.map(parse_cursor).transpose()?;
    let mut tx = db.begin().await?;
    let ds = decisions::search_decisions(&mut tx, &filter, before, limit).await?;
    page(&mut tx, ds, limit).await
}

/// What `issuesync explain` explains.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    Group {
        id: i64,
        title: String,
    },
    /// Every external issue with this key (in any integration).
    ExternalIssue {
        key: String,
        ids: Vec<i64>,
    },
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub subject: Subject,
    pub decisions: Vec<DecisionView>,
}

/// A group id (a number naming an existing group) or an external issue key (an ADO work
/// item id too, when no group has that number). NotFound when it is neither.
pub async fn explain(db: &Db, what: &str, limit: i64) -> Result<Explanation, OpsError> {
    let limit = check_limit(Some(limit))?;
    let what = what.trim();
    let mut tx = db.begin().await?;
    if let Ok(id) = what.parse::<i64>()
        && let Some(g) = groups::find_group(&mut tx, id).await?
    {
        let ds = decisions::list_timeline(&mut tx, Timeline::Group(id), None, limit).await?;
        return Ok(Explanation {
            subject: Subject::Group { id, title: g.title },
            decisions: views(&mut tx, ds).await?,
        });
    }
    let ids = external::external_issue_ids_by_key(&mut tx, what).await?;
    if ids.is_empty() {
        return Err(OpsError::NotFound(format!(
            "group or external issue {what:?}"
        )));
    }
    let ds = decisions::list_decisions_of_issues(&mut tx, &ids, limit).await?;
    Ok(Explanation {
        subject: Subject::ExternalIssue {
            key: what.to_string(),
            ids,
        },
        decisions: views(&mut tx, ds).await?,
    })
}

/// Decisions of the last `window_ms` by direction, outcome and reason (the dashboard).
pub async fn reason_counts(db: &Db, window_ms: i64) -> Result<Vec<ReasonCount>, OpsError> {
    let mut tx = db.begin().await?;
    Ok(decisions::count_reasons_since(&mut tx, crate::now_ms() - window_ms).await?)
}

/// The decisions a job wrote (the job page).
pub async fn job_decisions(db: &Db, job_id: &str) -> Result<Vec<DecisionView>, OpsError> {
    let mut tx = db.begin().await?;
    let ds = decisions::list_job_decisions(&mut tx, job_id, MAX_LIMIT).await?;
    views(&mut tx, ds).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_parameters() {
        assert_eq!(
            parse_cursor("1700000000000.42").ok(),
            Some((1_700_000_000_000, 42))
        );
        assert!(parse_cursor("42").is_err());
        assert!(parse_cursor("a.b").is_err());
        assert_eq!(check_limit(None).ok(), Some(DEFAULT_LIMIT));
        assert!(check_limit(Some(0)).is_err());
        assert!(check_limit(Some(MAX_LIMIT + 1)).is_err());
        assert_eq!(
            parse_since("24h", 100_000_000).ok(),
            Some(100_000_000 - 86_400_000)
        );
        assert_eq!(
            parse_since("1700000000000", 0).ok(),
            Some(1_700_000_000_000)
        );
        assert!(parse_since("yesterday", 0).is_err());
        let bad = Search {
            reason: Some("nope"),
            ..Default::default()
        };
        assert!(filter_of(&bad).is_err());
        let bad = Search {
            direction: Some("sideways"),
            ..Default::default()
        };
        assert!(filter_of(&bad).is_err());
    }
}
