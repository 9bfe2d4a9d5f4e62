//! `/ops/groups/{id}` (a group with its sync timeline) and `/ops/decisions` (the decisions
//! of a reason, direction, outcome or integration). Reads go through `crate::explain`, as
//! the admin API and `issuesync explain` do.

use axum::extract::{Query, State};
use minijinja::context;
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};

use super::auth::Operator;
use super::views::{base, nonempty, with};
use super::{PageError, render};
use crate::explain::{self, Search};
use crate::receiver::error::ApiPath;
use crate::store::decisions::Timeline;
use crate::store::{external, groups};
use crate::sync::Services;
use crate::sync::decision::{self, OUTCOMES, REASONS};

type Page = Result<axum::response::Html<String>, PageError>;

#[derive(Deserialize)]
pub struct PageQuery {
    before: Option<String>,
}

pub async fn group(
    op: Operator,
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    Query(q): Query<PageQuery>,
) -> Page {
    let before = nonempty(&q.before);
    let page = explain::timeline(&s.db, Timeline::Group(id), before.as_deref(), None).await?;
    let mut tx = s.db.begin().await?;
    let g = groups::find_group(&mut tx, id)
        .await?
        .ok_or_else(|| PageError::from(crate::ops::OpsError::NotFound(format!("group {id}"))))?;
    let assignee = groups::find_assignee(&mut tx, id)
        .await?
        .and_then(|a| decision::assignee_value(a.user_id, a.team_id));
    let issues = external::list_group_external_issues(&mut tx, id).await?;
    drop(tx);
    render(
        "group.html",
        with(
            base(&op, &format!("Group {id}"), "decisions"),
            context! {
                status => decision::status_value(g.status), group => Serde(g), assignee,
                issues => Serde(issues), decisions => Serde(page.decisions), next_cursor => page.next_cursor,
            },
        ),
    )
}

#[derive(Deserialize, Serialize, Default)]
pub struct SearchQuery {
    reason: Option<String>,
    direction: Option<String>,
    outcome: Option<String>,
    integration: Option<String>,
    since: Option<String>,
    before: Option<String>,
}

pub async fn decisions(
    op: Operator,
    State(s): State<Services>,
    Query(q): Query<SearchQuery>,
) -> Page {
    let f = SearchQuery {
        reason: nonempty(&q.reason),
        direction: nonempty(&q.direction),
        outcome: nonempty(&q.outcome),
        integration: nonempty(&q.integration),
        since: nonempty(&q.since),
        before: nonempty(&q.before),
    };
    let integration = match &f.integration {
        None => None,
        Some(i) => Some(i.parse::<i64>().map_err(|_| {
            PageError::bad_request(format!("integration must be an id, not {i:?}"))
        })?),
    };
    let page = explain::search(
        &s.db,
        &Search {
            reason: f.reason.as_deref(),
            integration,
            since: f.since.as_deref(),
            direction: f.direction.as_deref(),
            outcome: f.outcome.as_deref(),
            before: f.before.as_deref(),
            limit: None,
        },
    )
    .await?;
    // The same filter, one page older.
    let next = page.next_cursor.as_ref().map(|c| {
        let mut parts: Vec<String> = [
            ("reason", &f.reason),
            ("direction", &f.direction),
            ("outcome", &f.outcome),
            ("integration", &f.integration),
            ("since", &f.since),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
        })
        .collect();
        parts.push(format!("before={c}"));
        format!("/ops/decisions?{}", parts.join("&"))
    });
    let reasons: Vec<&str> = REASONS.iter().map(|r| r.code).collect();
    render(
        "decisions.html",
        with(
            base(&op, "Sync decisions", "decisions"),
            context! {
                f => Serde(&f), reasons => Serde(reasons), outcomes => Serde(OUTCOMES),
                decisions => Serde(page.decisions), next,
            },
        ),
    )
}
