//! Discord's interaction object (a component click), our component `custom_id`s
//! (`action:group_id`, as Sentry's Discord buttons name them), and the interaction responses
//! we send back.

use serde_json::{Value, json};

use crate::providers::WebhookError;

pub const PING: u64 = 1;
pub const APPLICATION_COMMAND: u64 = 2;
pub const MESSAGE_COMPONENT: u64 = 3;

/// Callback types.
pub const PONG: u64 = 1;
pub const CHANNEL_MESSAGE_WITH_SOURCE: u64 = 4;
pub const DEFERRED_UPDATE_MESSAGE: u64 = 6;
pub const UPDATE_MESSAGE: u64 = 7;

/// Message flag: only the invoking user sees the message.
pub const EPHEMERAL: u64 = 1 << 6;

/// Discord allows at most 25 options in a select menu, labels of at most 100 characters.
pub const MAX_SELECT_OPTIONS: usize = 25;
pub const MAX_LABEL: usize = 100;

/// The fields of an interaction we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id: String,
    pub application_id: String,
    pub kind: u64,
    pub token: String,
    /// `member.user.id` in a guild, `user.id` in a DM.
    pub discord_user_id: Option<String>,
    pub custom_id: Option<String>,
    /// 2 for a button, 3 for a string select.
    pub component_type: Option<u64>,
    pub values: Vec<String>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The application the interaction is for: it selects the public key to verify with.
pub fn application_id(v: &Value) -> Result<String, WebhookError> {
    str_at(v, "/application_id")
        .map(str::to_string)
        .ok_or_else(|| WebhookError::BadRequest("application_id is required".into()))
}

pub fn parse_interaction(v: &Value) -> Result<Interaction, WebhookError> {
    let bad = |d: &str| WebhookError::BadRequest(d.to_string());
    let kind = v
        .get("type")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("type must be an integer"))?;
    let id = str_at(v, "/id").ok_or_else(|| bad("id is required"))?;
    let token = match kind {
        PING => str_at(v, "/token").unwrap_or_default(),
        _ => str_at(v, "/token").ok_or_else(|| bad("token is required"))?,
    };
    let values = match v.pointer("/data/values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("data.values must be strings"))?,
        Some(_) => return Err(bad("data.values must be an array")),
    };
    let custom_id = str_at(v, "/data/custom_id").map(str::to_string);
    if kind == MESSAGE_COMPONENT && custom_id.is_none() {
        return Err(bad("data.custom_id is required for a message component"));
    }
    Ok(Interaction {
        id: id.to_string(),
        application_id: application_id(v)?,
        kind,
        token: token.to_string(),
        discord_user_id: str_at(v, "/member/user/id")
            .or_else(|| str_at(v, "/user/id"))
            .map(str::to_string),
        custom_id,
        component_type: v.pointer("/data/component_type").and_then(Value::as_u64),
        values,
    })
}

/// What a component asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    AssignDialog,
    Assign,
    ResolveDialog,
    Resolve,
    Unresolve,
    MarkOngoing,
    Archive,
    Unknown,
}

/// Splits `action:group_id`; the group id is None when missing or not a number.
pub fn parse_custom_id(custom_id: &str) -> (Action, Option<i64>) {
    let (action, rest) = custom_id.split_once(':').unwrap_or((custom_id, ""));
    let action = match action {
        "assign_dialog" => Action::AssignDialog,
        "assign" => Action::Assign,
        "resolve_dialog" => Action::ResolveDialog,
        "resolve" => Action::Resolve,
        "unresolve" => Action::Unresolve,
        "mark_ongoing" => Action::MarkOngoing,
        "archive" => Action::Archive,
        _ => Action::Unknown,
    };
    (action, rest.trim().parse().ok())
}

/// A reply: a new message (type 4) or an update of the message the component is on (7).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub update: bool,
    pub data: Value,
}

impl Reply {
    /// A plain text only the clicking user sees (Sentry's `send_message(str)`).
    pub fn ephemeral(content: &str) -> Reply {
        Reply {
            update: false,
            data: json!({"content": content, "flags": EPHEMERAL}),
        }
    }

    pub fn updating(mut self) -> Reply {
        self.update = true;
        self
    }

    /// The HTTP answer to the interaction.
    pub fn response(&self) -> Value {
        let kind = if self.update {
            UPDATE_MESSAGE
        } else {
            CHANNEL_MESSAGE_WITH_SOURCE
        };
        json!({"type": kind, "data": self.data})
    }
}

/// One option of a select menu.
pub struct SelectOption {
    pub label: String,
    pub value: String,
    pub default: bool,
}

/// An ephemeral message with one string select.
pub fn select_menu(
    content: Option<&str>,
    custom_id: &str,
    placeholder: &str,
    options: &[SelectOption],
) -> Reply {
    let options: Vec<Value> = options
        .iter()
        .map(|o| {
            let label: String = o.label.chars().take(MAX_LABEL).collect();
            let mut opt = json!({"label": label, "value": o.value});
            if o.default {
                opt["default"] = json!(true);
            }
            opt
        })
        .collect();
    let mut data = json!({
        "flags": EPHEMERAL,
        "components": [{"type": 1, "components": [{
            "type": 3, "custom_id": custom_id, "placeholder": placeholder,
            "min_values": 1, "max_values": 1, "options": options,
        }]}],
    });
    if let Some(c) = content {
        data["content"] = json!(c);
    }
    Reply {
        update: false,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_button_fixture_parses() {
        let v: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/discord_component_assign_button.json"
        ))
        .unwrap();
        let i = parse_interaction(&v).unwrap();
        assert_eq!(i.kind, MESSAGE_COMPONENT);
        assert_eq!(i.application_id, "1234567890123456789");
        assert_eq!(i.discord_user_id.as_deref(), Some("53908232506183680"));
        assert_eq!(i.custom_id.as_deref(), Some("assign_dialog:4711"));
        assert_eq!(i.component_type, Some(2));
        assert!(i.values.is_empty());
        assert_eq!(
            parse_custom_id("assign_dialog:4711"),
            (Action::AssignDialog, Some(4711))
        );
    }

    #[test]
    fn ping_and_dm_shapes() {
        let v: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/discord_ping.json"))
                .unwrap();
        assert_eq!(parse_interaction(&v).unwrap().kind, PING);
        let dm = json!({"id": "1", "application_id": "2", "type": 3, "token": "t",
            "user": {"id": "77"}, "data": {"custom_id": "resolve:5", "component_type": 2}});
        assert_eq!(
            parse_interaction(&dm).unwrap().discord_user_id.as_deref(),
            Some("77")
        );
    }

    #[test]
    fn malformed_interactions_are_bad_requests() {
        for v in [
            json!({"application_id": "2", "type": 3, "token": "t", "data": {"custom_id": "x:1"}}),
            json!({"id": "1", "application_id": "2", "type": "3", "token": "t"}),
            json!({"id": "1", "application_id": "2", "type": 3, "data": {"custom_id": "x:1"}}),
            json!({"id": "1", "application_id": "2", "type": 3, "token": "t", "data": {}}),
            json!({"id": "1", "application_id": "2", "type": 3, "token": "t",
                "data": {"custom_id": "assign:1", "values": [1]}}),
            json!({"id": "1", "type": 1}),
        ] {
            assert!(
                matches!(parse_interaction(&v), Err(WebhookError::BadRequest(_))),
                "{v}"
            );
        }
    }

    #[test]
    fn custom_ids() {
        assert_eq!(parse_custom_id("archive:12"), (Action::Archive, Some(12)));
        assert_eq!(parse_custom_id("resolve:abc"), (Action::Resolve, None));
        assert_eq!(parse_custom_id("resolve"), (Action::Resolve, None));
        assert_eq!(parse_custom_id("launch:1"), (Action::Unknown, Some(1)));
        assert_eq!(
            parse_custom_id("mark_ongoing:3"),
            (Action::MarkOngoing, Some(3))
        );
    }

    #[test]
    fn replies_match_the_documented_shapes() {
        let menu: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/discord_response_ephemeral_assign_menu.json"
        ))
        .unwrap();
        let built = select_menu(
            Some("Assign this issue to:"),
            "assign:4711",
            "Select assignee...",
            &[
                SelectOption {
                    label: "#backend".into(),
                    value: "team:17".into(),
                    default: false,
                },
                SelectOption {
                    label: "alice@example.com".into(),
                    value: "user:1842".into(),
                    default: false,
                },
                SelectOption {
                    label: "bob@example.com".into(),
                    value: "user:1843".into(),
                    default: false,
                },
            ],
        );
        assert_eq!(built.response(), menu);
        assert_eq!(
            Reply::ephemeral("x").updating().response(),
            json!({"type": 7, "data": {"content": "x", "flags": 64}})
        );
    }
}
