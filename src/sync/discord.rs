//! Discord message components (as Sentry's Discord integration): assign, resolve, unresolve and
//! archive from a message, as the Discord user's linked account. The same [`respond`]
//! runs inline in the receiver (answered within Discord's 3 s) and in the deferred
//! `discord_interaction` job, whose reply goes through the follow-up webhook.

use issuesync_jobs::discord_interaction::DiscordInteraction;
use serde_json::Value;

use crate::db::Tx;
use crate::domain::assign::{Actor, Effects, GroupRef};
use crate::providers::discord::client::DiscordClient;
use crate::providers::discord::webhook::{
    self, Action, Interaction, MAX_SELECT_OPTIONS, Reply, SelectOption,
};
use crate::providers::http::ApiError as ProviderError;
use crate::store::integrations::{self, Integration};
use crate::store::{StoreError, deliveries, groups, identities, teams, users};
use crate::sync::JobCtx;
use crate::sync::JobError;
use crate::sync::intent::{self, ChangeError, ChangeSource, GroupChange, StatusIntent};

pub const PROVIDER: &str = "discord";

pub const NO_IDENTITY: &str = "You need to link your Discord account to your issuesync account to do that. Ask an administrator to link it.";
pub const NOT_IN_ORG: &str =
    "You must be a member of the org this issue belongs to in order to act on it.";
pub const INVALID_GROUP_ID: &str = "Invalid group ID.";
pub const ASSIGNEE_UPDATED: &str = "Assignee has been updated.";
pub const RESOLVED: &str = "The issue has been resolved.";
pub const UNRESOLVED: &str = "The issue has been unresolved.";
pub const MARKED_ONGOING: &str = "The issue has been marked as ongoing.";
pub const ARCHIVE_UNTIL_ESCALATES: &str = "The issue will be archived until it escalates.";
pub const UNKNOWN_ACTION: &str = "This button is not supported by issuesync.";
pub const NO_COMMANDS: &str =
    "issuesync has no slash commands; use the buttons on an issue message.";

/// Works out the reply to an interaction and applies its change inside `tx`. Refusals
/// (no linked account, a bad group, not a member) are ephemeral messages, as in Sentry.
pub async fn respond(
    tx: &mut Tx,
    integration: &Integration,
    i: &Interaction,
) -> Result<(Reply, Effects), StoreError> {
    let none = Effects::default();
    match i.kind {
        webhook::MESSAGE_COMPONENT => {}
        webhook::APPLICATION_COMMAND => return Ok((Reply::ephemeral(NO_COMMANDS), none)),
        _ => return Ok((Reply::ephemeral(UNKNOWN_ACTION), none)),
    }
    let Some(user_id) = linked_user(tx, i).await? else {
        return Ok((Reply::ephemeral(NO_IDENTITY), none));
    };
    let (action, group_id) = webhook::parse_custom_id(i.custom_id.as_deref().unwrap_or(""));
    let Some(g) = visible_group(tx, integration, group_id).await? else {
        return Ok((Reply::ephemeral(INVALID_GROUP_ID), none));
    };
    if teams::find_member_by_user(tx, g.organization_id, user_id)
        .await?
        .is_none()
    {
        return Ok((Reply::ephemeral(NOT_IN_ORG), none));
    }
    let change = |status: Option<StatusIntent>, assigned_to: Option<Option<Actor>>| GroupChange {
        status,
        assigned_to,
    };
    let (change, reply) = match action {
        Action::AssignDialog => return Ok((assign_dialog(tx, g).await?, none)),
        Action::ResolveDialog => return Ok((resolve_dialog(g), none)),
        Action::Unknown => return Ok((Reply::ephemeral(UNKNOWN_ACTION), none)),
        Action::Assign => {
            let Some(actor) = i.values.first().and_then(|v| Actor::parse(v)) else {
                return Ok((Reply::ephemeral("Pick an assignee from the list."), none));
            };
            (
                change(None, Some(Some(actor))),
                Reply::ephemeral(ASSIGNEE_UPDATED).updating(),
            )
        }
        Action::Resolve => {
            // Releases are not modelled: every resolution target resolves now.
            let reply = Reply::ephemeral(RESOLVED);
            let from_select = i.component_type == Some(3);
            (
                change(Some(StatusIntent::Resolved), None),
                if from_select { reply.updating() } else { reply },
            )
        }
        Action::Unresolve | Action::MarkOngoing => (
            change(Some(StatusIntent::Unresolved { regressed: false }), None),
            Reply::ephemeral(if action == Action::Unresolve {
                UNRESOLVED
            } else {
                MARKED_ONGOING
            }),
        ),
        Action::Archive => (
            change(Some(StatusIntent::Ignored { forever: false }), None),
            Reply::ephemeral(ARCHIVE_UNTIL_ESCALATES),
        ),
    };
    let source = ChangeSource {
        acting_user: Some(user_id),
        integration: Some(PROVIDER.to_string()),
    };
    match intent::apply_group_change_in(tx, g.group_id, &change, &source).await {
        Ok(effects) => Ok((reply, effects)),
        Err(ChangeError::NotFound) => Ok((Reply::ephemeral(INVALID_GROUP_ID), none)),
        Err(ChangeError::Invalid(reason) | ChangeError::UnknownAssignee(reason)) => {
            Ok((Reply::ephemeral(&capitalized(&reason)), none))
        }
        Err(ChangeError::Store(e)) => Err(e),
    }
}

/// The active user the clicking Discord account is linked to.
async fn linked_user(tx: &mut Tx, i: &Interaction) -> Result<Option<i64>, StoreError> {
    let Some(discord_id) = &i.discord_user_id else {
        return Ok(None);
    };
    let Some(user_id) = identities::find_identity_user(tx, PROVIDER, discord_id).await? else {
        return Ok(None);
    };
    Ok(users::find_user(tx, user_id)
        .await?
        .filter(|u| u.is_active)
        .map(|u| u.id))
}

/// The group, if it exists and belongs to an organization this Discord app is installed
/// on: a click never reaches another tenant's groups.
async fn visible_group(
    tx: &mut Tx,
    integration: &Integration,
    group_id: Option<i64>,
) -> Result<Option<GroupRef>, StoreError> {
    let Some(id) = group_id else { return Ok(None) };
    let Some(g) = intent::group_ref(tx, id).await? else {
        return Ok(None);
    };
    if !integrations::is_installed_on(tx, integration.id, g.organization_id).await? {
        return Ok(None);
    }
    Ok(Some(g))
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str().trim_end_matches('.')),
        None => String::new(),
    }
}

/// An ephemeral select of the organization's teams ("#slug") and then its members, each
/// sorted by label, the current assignee marked default. Discord shows at most 25
/// options; when there are more, the current assignee is kept and the message says so.
async fn assign_dialog(tx: &mut Tx, g: GroupRef) -> Result<Reply, StoreError> {
    let current = groups::find_assignee(tx, g.group_id)
        .await?
        .as_ref()
        .and_then(Actor::of);
    let mut team_options: Vec<SelectOption> = teams::list_teams(tx, g.organization_id)
        .await?
        .into_iter()
        .map(|t| SelectOption {
            label: format!("#{}", t.slug),
            value: format!("team:{}", t.id),
            default: current == Some(Actor::Team(t.id)),
        })
        .collect();
    let mut member_options: Vec<SelectOption> = teams::list_member_labels(tx, g.organization_id)
        .await?
        .into_iter()
        .map(|m| SelectOption {
            label: match (m.name.trim(), m.email) {
                (n, _) if !n.is_empty() => n.to_string(),
                (_, Some(e)) => e,
                _ => format!("user {}", m.user_id),
            },
            value: format!("user:{}", m.user_id),
            default: current == Some(Actor::User(m.user_id)),
        })
        .collect();
    team_options.sort_by(|a, b| a.label.cmp(&b.label));
    member_options.sort_by(|a, b| a.label.cmp(&b.label));
    let mut options: Vec<SelectOption> = team_options.into_iter().chain(member_options).collect();
    let total = options.len();
    let mut content = None;
    if total > MAX_SELECT_OPTIONS {
        let kept_default = options[..MAX_SELECT_OPTIONS].iter().any(|o| o.default);
        if !kept_default && let Some(pos) = options.iter().position(|o| o.default) {
            options.swap(MAX_SELECT_OPTIONS - 1, pos);
        }
        options.truncate(MAX_SELECT_OPTIONS);
        content = Some(format!(
            "Showing {MAX_SELECT_OPTIONS} of {total} teams and members; assign others in the web app."
        ));
    }
    if options.is_empty() {
        return Ok(Reply::ephemeral(
            "This organization has no teams or members to assign.",
        ));
    }
    Ok(webhook::select_menu(
        content.as_deref(),
        &format!("assign:{}", g.group_id),
        "Select Assignee...",
        &options,
    ))
}

/// Releases are not modelled, so the only resolution target offered is "now".
fn resolve_dialog(g: GroupRef) -> Reply {
    webhook::select_menu(
        None,
        &format!("resolve:{}", g.group_id),
        "Select the resolution target",
        &[SelectOption {
            label: "Immediately".into(),
            value: "immediately".into(),
            default: false,
        }],
    )
}

crate::handles!(DiscordInteraction => discord_interaction);

/// `discord_interaction`: the deferred path. Applies the interaction like the receiver
/// would have, then sends the reply through the follow-up webhook. A retry applies the
/// change again, which is a no-op once it is in place.
pub async fn discord_interaction(job: DiscordInteraction, ctx: &JobCtx) -> Result<(), JobError> {
    let state = &ctx.state;
    let (integration, interaction) = {
        let mut tx = state.db.begin().await?;
        let d = deliveries::find_delivery(&mut tx, job.delivery_id)
            .await?
            .ok_or_else(|| JobError::Permanent(format!("delivery {} is gone", job.delivery_id)))?;
        let integration_id = d
            .integration_id
            .ok_or_else(|| JobError::Permanent("delivery has no integration".into()))?;
        let integration = integrations::find_integration(&mut tx, integration_id)
            .await?
            .filter(|i| i.status == integrations::STATUS_ACTIVE)
            .ok_or_else(|| {
                JobError::Permanent(format!("integration {integration_id} is gone or disabled"))
            })?;
        let body: Value = serde_json::from_slice(&d.body)
            .map_err(|e| JobError::Permanent(format!("stored body is not JSON: {e}")))?;
        let interaction = webhook::parse_interaction(&body)
            .map_err(|e| JobError::Permanent(format!("stored interaction does not parse: {e}")))?;
        (integration, interaction)
    };
    let mut tx = state.db.begin_write().await?;
    let (reply, effects) = respond(&mut tx, &integration, &interaction).await?;
    tx.commit().await?;
    crate::sync::inbound::after_commit(state, effects).await;
    let client = DiscordClient {
        http: &state.http,
        base_url: &state.settings.discord.api_base_url,
        application_id: &interaction.application_id,
    };
    match client.send_deferred_reply(&interaction.token, &reply).await {
        Ok(()) => Ok(()),
        // The change is made; a refused follow-up (the token lasts 15 minutes) only
        // means the user sees no confirmation. Retrying would not help.
        Err(ProviderError::Permanent { status, message }) => {
            tracing::warn!(
                delivery_id = job.delivery_id,
                status,
                message,
                "Discord refused the follow-up message; the change itself was applied"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
