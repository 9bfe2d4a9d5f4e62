//! Sync decisions: what the flows write into `sync_decisions` at every decision point, with a
//! stable reason code (documented in docs/api.md, "Sync decisions").
//!
//! Rules: a decision is written in the transaction of the change it describes; a skip is
//! written by the job that skipped; an outbound job writes what it decided (and a failed
//! provider call) in a small transaction of its own before it returns, so the record
//! outlives a failed attempt and never rides on the batch completer's done marks. A
//! decision about a group deleted meanwhile is not written. The counter
//! `issuesync_sync_decisions_total` counts decisions after their commit (their labels
//! travel in `Effects` to `after_commit`).

use crate::db::{Db, Tx};
use crate::domain::assign::{Effects, OutboundNote};
use crate::store::StoreError;
use crate::store::decisions::{self, Decision, NewDecision};
use crate::store::external::AffectedGroup;

pub const INBOUND: &str = "inbound";
pub const OUTBOUND: &str = "outbound";
pub const STATUS: &str = "status";
pub const ASSIGNEE: &str = "assignee";

pub const OUTCOMES: &[&str] = &["applied", "skipped", "deferred", "failed"];

/// A reason code: its outcome, the directions it occurs in, and what it means.
pub struct ReasonInfo {
    pub code: &'static str,
    pub outcome: &'static str,
    pub directions: &'static [&'static str],
    pub meaning: &'static str,
}

const IN: &[&str] = &[INBOUND];
const OUT: &[&str] = &[OUTBOUND];
const BOTH: &[&str] = &[INBOUND, OUTBOUND];

macro_rules! reasons {
    ($($name:ident = $code:literal, $outcome:literal, $dirs:expr, $meaning:literal;)*) => {
        /// Every reason code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason { $($name),* }

        pub const REASONS: &[ReasonInfo] = &[
            $(ReasonInfo { code: $code, outcome: $outcome, directions: $dirs, meaning: $meaning }),*
        ];

        impl Reason {
            pub fn code(self) -> &'static str {
                match self { $(Reason::$name => $code),* }
            }
            pub fn outcome(self) -> &'static str {
                match self { $(Reason::$name => $outcome),* }
            }
        }
    };
}

reasons! {
    Applied = "applied", "applied", IN, "the provider's change was applied to the group";
    SyncDisabled = "sync_disabled", "skipped", BOTH, "the organization's installation has this sync switch off (or the integration is disabled)";
    OwnEcho = "own_echo", "skipped", IN, "the change was made by our own account (metadata.sync_actor_ids): an echo of a change we pushed";
    StaleEvent = "stale_event", "skipped", IN, "a newer event of the same field of this issue was applied already (both sequences in the detail)";
    UserNotFound = "user_not_found", "skipped", IN, "no user of ours has the assignee's email (or the provider did not give one)";
    EmailNotVerified = "email_not_verified", "skipped", IN, "the assignee's email belongs to a user of ours, but is not verified";
    UserNotInProject = "user_not_in_project", "skipped", IN, "the users with that verified email are not members of a team of the group's project";
    NoStatusMapping = "no_status_mapping", "skipped", IN, "the provider's status change maps to neither resolve nor unresolve";
    AlreadyInState = "already_in_state", "skipped", IN, "the group already had that status or assignee";
    ArchivedKept = "archived_kept", "skipped", IN, "the group is archived (ignored) and sync_status_reverse_overrides_ignored is off";
    ProviderError = "provider_error", "failed", BOTH, "a provider call failed (5xx, timeout, connection); the job retries";
    Sent = "sent", "applied", OUT, "the change was pushed to the provider";
    AlreadyAtTarget = "already_at_target", "skipped", OUT, "the external issue already had the target status";
    SourceIntegration = "source_integration", "skipped", OUT, "the change came from this integration; it is never pushed back (ping-pong guard)";
    TeamAssignee = "team_assignee", "skipped", OUT, "the group is assigned to a team; team assignments are not pushed";
    NoTransition = "no_transition", "failed", OUT, "no Jira transition leads to the target status; the job is dead";
    NoMapping = "no_mapping", "failed", OUT, "the external project has no status mapping; the job is dead";
    ExternalUserNotFound = "external_user_not_found", "skipped", OUT, "no provider account matches a verified email of the assignee (or the user is gone); the external issue is left alone";
    ProviderRefused = "provider_refused", "failed", OUT, "the provider refused the request (4xx, its message in the detail); the job is dead";
    RateLimitedUntil = "rate_limited_until", "deferred", OUT, "the provider asked us to wait; the job runs again at the time in the detail";
    Coalesced = "coalesced", "skipped", OUT, "a newer change of the same external issue was queued before this one was sent; the waiting job pushes the group's latest state once";
    GroupArchived = "group_archived", "skipped", OUT, "archiving (ignoring) a group is never pushed";
    LinkGone = "link_gone", "skipped", OUT, "the group or the external issue no longer exists";
}

pub fn reason_info(code: &str) -> Option<&'static ReasonInfo> {
    REASONS.iter().find(|r| r.code == code)
}

/// What a decision is about and what caused it; the flows fill what they know.
pub use crate::store::decisions::Refs as About;

impl About {
    /// This event's record for one group linked to its external issue.
    pub fn for_group(&self, g: &AffectedGroup) -> About {
        About {
            external_issue_id: Some(g.external_issue_id),
            ..self.clone().group(g.group_id, g.organization_id)
        }
    }

    /// A decision of `direction` on `field`, whose outcome follows from `reason`.
    pub fn decide(
        &self,
        direction: &'static str,
        field: &'static str,
        reason: Reason,
        detail: impl Into<String>,
    ) -> NewDecision {
        NewDecision {
            at_ms: crate::now_ms(),
            direction,
            field,
            refs: self.clone(),
            outcome: reason.outcome(),
            reason: reason.code(),
            before: None,
            after: None,
            detail: detail.into(),
        }
    }

    pub fn group(mut self, group_id: i64, organization_id: i64) -> Self {
        self.group_id = Some(group_id);
        self.organization_id = Some(organization_id);
        self
    }
}

/// Writes a decision in the caller's transaction (none for a group deleted meanwhile); it
/// is counted when the caller hands `effects` to `after_commit`.
pub async fn write(tx: &mut Tx, effects: &mut Effects, d: NewDecision) -> Result<(), StoreError> {
    if decisions::insert_decision(tx, &d).await? {
        effects
            .decisions
            .push([d.direction, d.field, d.outcome, d.reason]);
    } else {
        tracing::debug!(
            group_id = d.refs.group_id,
            reason = d.reason,
            "the group is gone; its decision is not recorded"
        );
    }
    Ok(())
}

/// Counts committed decisions (`issuesync_sync_decisions_total`).
pub fn count(labels: &[[&'static str; 4]]) {
    for [direction, field, outcome, reason] in labels {
        metrics::counter!("issuesync_sync_decisions_total", "direction" => *direction, "field" => *field, "outcome" => *outcome, "reason" => *reason).increment(1);
    }
}

/// Writes decisions in a transaction of their own: a failure the job is about to return,
/// or what a job decided before it returns. Tried twice: a group deleted by a transaction
/// that was still open fails the foreign key once, and the second try sees it gone.
pub async fn write_alone(db: &Db, ds: Vec<NewDecision>) -> Result<(), StoreError> {
    match write_once(db, &ds).await {
        Err(e) => {
            tracing::debug!(error = %e, "writing sync decisions failed; trying once more");
            write_once(db, &ds).await
        }
        ok => ok,
    }
}

async fn write_once(db: &Db, ds: &[NewDecision]) -> Result<(), StoreError> {
    let mut tx = db.begin_write().await?;
    let mut effects = Effects::default();
    for d in ds {
        write(&mut tx, &mut effects, d.clone()).await?;
    }
    tx.commit().await?;
    count(&effects.decisions);
    Ok(())
}

/// Records (and drains) the outbound pushes a change decided on the spot: not pushed back
/// to its source, a team assignee, coalesced into a waiting job, archiving.
pub async fn record_outbound_notes(
    tx: &mut Tx,
    base: &About,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    for n in std::mem::take(&mut effects.outbound) {
        let about = About {
            group_id: Some(n.group.group_id),
            organization_id: Some(n.group.organization_id),
            integration_id: Some(n.issue.integration_id),
            external_issue_id: Some(n.issue.id),
            external_key: Some(n.issue.key.clone()),
            actor_user_id: n.acting_user.or(base.actor_user_id),
            ..base.clone()
        };
        let (reason, detail) = match &n.note {
            OutboundNote::SourceIntegration => (
                Reason::SourceIntegration,
                "the change came from this integration".to_string(),
            ),
            OutboundNote::TeamAssignee => (
                Reason::TeamAssignee,
                "team assignments are not pushed".to_string(),
            ),
            OutboundNote::Coalesced { job_id } => (
                Reason::Coalesced,
                format!("job {job_id} was still waiting and takes this change instead"),
            ),
            OutboundNote::GroupArchived => {
                (Reason::GroupArchived, "archiving is not pushed".to_string())
            }
        };
        let d = about.decide(OUTBOUND, n.field, reason, detail);
        write(tx, effects, d).await?;
    }
    Ok(())
}

/// The assignee as decisions show it.
pub fn assignee_value(user_id: Option<i64>, team_id: Option<i64>) -> Option<String> {
    match (user_id, team_id) {
        (Some(u), _) => Some(format!("user:{u}")),
        (_, Some(t)) => Some(format!("team:{t}")),
        _ => None,
    }
}

/// A group status as decisions show it.
pub fn status_value(status: i32) -> String {
    match status {
        crate::domain::types::group_status::UNRESOLVED => "unresolved",
        crate::domain::types::group_status::RESOLVED => "resolved",
        crate::domain::types::group_status::IGNORED => "ignored",
        _ => "unknown",
    }
    .to_string()
}

/// A decision in one sentence, e.g. "12:04 inbound assignee from Jira Server PROJ-123:
/// skipped, email_not_verified: alice@example.com is not a verified email of …". The time
/// is UTC; it carries the date unless it is today's. `provider` is the integration's.
pub fn sentence(d: &Decision, provider: Option<&str>, now_ms: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(d.at_ms);
    let today = chrono::DateTime::from_timestamp_millis(now_ms).map(|t| t.date_naive());
    let time = match at {
        Some(t) if Some(t.date_naive()) == today => t.format("%H:%M").to_string(),
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => "?".into(),
    };
    let side = if d.direction == INBOUND { "from" } else { "to" };
    let provider = provider
        .map(super::provider_name)
        .unwrap_or("an integration");
    let key = d.refs.external_key.as_deref().unwrap_or("?");
    let mut s = format!(
        "{time} {} {} {side} {provider} {key}: {}, {}",
        d.direction, d.field, d.outcome, d.reason
    );
    if !d.detail.is_empty() {
        s.push_str(": ");
        s.push_str(&d.detail);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_unique_and_have_valid_outcomes() {
        let mut codes: Vec<&str> = REASONS.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), REASONS.len());
        assert!(REASONS.iter().all(|r| OUTCOMES.contains(&r.outcome)));
        assert_eq!(Reason::RateLimitedUntil.outcome(), "deferred");
        assert_eq!(reason_info("sent").map(|r| r.outcome), Some("applied"));
    }

    #[test]
    fn every_reason_code_is_documented() {
        let doc = include_str!("../../docs/api.md");
        for r in REASONS {
            assert!(
                doc.contains(&format!("| `{}` |", r.code)),
                "docs/api.md has no row for reason {}",
                r.code
            );
        }
    }

    #[test]
    fn every_reason_code_happens_in_an_end_to_end_test() {
        let tests = [
            include_str!("../../tests/decisions_inbound.rs"),
            include_str!("../../tests/decisions_outbound.rs"),
            include_str!("../../tests/decisions_surface.rs"),
            include_str!("../../tests/event_order.rs"),
        ]
        .concat();
        for r in REASONS {
            assert!(
                tests.contains(&format!("\"{}\"", r.code))
                    || tests.contains(&format!("reason={}&", r.code)),
                "no end-to-end test asserts reason {}",
                r.code
            );
        }
    }

    #[test]
    fn sentence_reads_like_the_example() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:04:30Z")
            .map(|t| t.timestamp_millis())
            .unwrap_or_default();
        let d = Decision {
            id: 1,
            at_ms: at,
            direction: "inbound".into(),
            field: "assignee".into(),
            refs: About {
                group_id: Some(7),
                organization_id: Some(1),
                integration_id: Some(2),
                external_issue_id: Some(3),
                external_key: Some("PROJ-123".into()),
                delivery_id: Some(4),
                ..Default::default()
            },
            outcome: "skipped".into(),
            reason: "email_not_verified".into(),
            before: None,
            after: None,
            detail: "alice@example.com is not a verified email of any member of project backend"
                .into(),
        };
        assert_eq!(
            sentence(&d, Some("jira_server"), at + 60_000),
            "12:04 inbound assignee from Jira Server PROJ-123: skipped, email_not_verified: \
             alice@example.com is not a verified email of any member of project backend"
        );
        assert!(
            sentence(&d, Some("jira_server"), at + 2 * 86_400_000).starts_with("2026-03-01 12:04 ")
        );
    }
}
