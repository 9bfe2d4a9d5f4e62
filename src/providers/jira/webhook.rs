//! `jira:issue_updated` deliveries, shared by Jira Cloud and Jira Server/DC (same envelope:
//! `timestamp`, `user`, `issue`, `changelog`): parsing into an [`InboundEvent`] and delivery keys.
//!
//! Behaviour as Sentry's Jira Server and Jira Cloud `issue_updated` webhook endpoints.

use serde_json::Value;

use crate::providers::{AssigneeChange, InboundEvent, StatusChange, WebhookError};

/// Header Jira Cloud sets on every delivery, stable across retries.
pub const WEBHOOK_IDENTIFIER_HEADER: &str = "x-atlassian-webhook-identifier";

/// Parses a `jira:issue_updated` body. `Ok(None)` when there is no changelog (Sentry answers
/// 200 "missing-changelog"): nothing to sync.
///
/// * assignee: some changelog item is the assignee (`field`, case-insensitive, or `fieldId`);
///   then `issue.fields.assignee` null/missing → unassign, else assign with its `emailAddress`
///   and `accountId` (Cloud usually hides the e-mail).
/// * status: the first status item → its `from`/`to` status ids.
/// * actor: `user.name`, `user.key`, `user.accountId` (those present); `actor_is_app`:
///   `user.accountType == "app"`; sequence: `timestamp` (ms).
pub fn parse_issue_updated(body: &Value) -> Result<Option<InboundEvent>, WebhookError> {
    if !body.is_object() {
        return Err(bad_request("request body must be a JSON object"));
    }
    let Some(changelog) = body.get("changelog").filter(|c| is_truthy(c)) else {
        return Ok(None);
    };
    let issue_key = body
        .pointer("/issue/key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad_request("missing issue.key"))?
        .to_owned();
    let items: &[Value] = changelog
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();

    let assignee = items.iter().any(|item| item_is(item, "assignee")).then(|| {
        match body.pointer("/issue/fields/assignee") {
            None | Some(Value::Null) => AssigneeChange::Unassign,
            Some(user) => AssigneeChange::Assign {
                email: non_empty_str(user, "emailAddress"),
                account_id: non_empty_str(user, "accountId"),
            },
        }
    });

    let status = items
        .iter()
        .find(|item| item_is(item, "status"))
        .map(|item| StatusChange::Jira {
            from: item.get("from").and_then(scalar_to_string),
            to: item.get("to").and_then(scalar_to_string),
        });

    let user = body.get("user");
    let mut actor: Vec<String> = Vec::new();
    for field in ["name", "key", "accountId"] {
        if let Some(v) = user.and_then(|u| non_empty_str(u, field))
            && !actor.contains(&v)
        {
            actor.push(v);
        }
    }
    let actor_is_app = user
        .and_then(|u| u.get("accountType"))
        .and_then(Value::as_str)
        == Some("app");

    Ok(Some(InboundEvent {
        issue_key,
        assignee,
        status,
        actor,
        actor_is_app,
        sequence: body.get("timestamp").and_then(Value::as_i64),
    }))
}

/// Jira Cloud delivery key: the `X-Atlassian-Webhook-Identifier` header (stable across retries)
/// when present; else `ts:{timestamp}:{issue.id or issue.key}:{changelog.id}`, `-` for a
/// missing part.
pub fn delivery_key_cloud(
    webhook_identifier_header: Option<&str>,
    body: &Value,
) -> Result<String, WebhookError> {
    if let Some(id) = webhook_identifier_header
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        return Ok(id.to_owned());
    }
    let (timestamp, issue, changelog) = key_parts(body);
    if timestamp.is_none() && issue.is_none() && changelog.is_none() {
        return Err(bad_request(
            "cannot identify the delivery: no X-Atlassian-Webhook-Identifier header and no \
             timestamp, issue id or changelog id in the body",
        ));
    }
    Ok(format!(
        "ts:{}:{}:{}",
        dash(timestamp),
        dash(issue),
        dash(changelog)
    ))
}

/// Jira Server delivery key: `{timestamp}:{issue.id or issue.key}:{changelog.id}`, `-` for a
/// missing part (Sentry's test payload has no timestamp). Needs an issue or a changelog id.
pub fn delivery_key_server(body: &Value) -> Result<String, WebhookError> {
    let (timestamp, issue, changelog) = key_parts(body);
    if issue.is_none() && changelog.is_none() {
        return Err(bad_request(
            "cannot identify the delivery: no issue id, issue key or changelog id in the body",
        ));
    }
    Ok(format!(
        "{}:{}:{}",
        dash(timestamp),
        dash(issue),
        dash(changelog)
    ))
}

fn key_parts(body: &Value) -> (Option<String>, Option<String>, Option<String>) {
    let timestamp = body.get("timestamp").and_then(scalar_to_string);
    let issue = body
        .pointer("/issue/id")
        .and_then(scalar_to_string)
        .or_else(|| body.pointer("/issue/key").and_then(scalar_to_string));
    let changelog = body.pointer("/changelog/id").and_then(scalar_to_string);
    (timestamp, issue, changelog)
}

fn dash(part: Option<String>) -> String {
    part.unwrap_or_else(|| "-".to_owned())
}

/// A changelog item for `name`: `fieldId == name`, or `field` equal ignoring case (some Cloud
/// deliveries say `"Status"`).
fn item_is(item: &Value, name: &str) -> bool {
    item.get("fieldId").and_then(Value::as_str) == Some(name)
        || item
            .get("field")
            .and_then(Value::as_str)
            .is_some_and(|f| f.eq_ignore_ascii_case(name))
}

/// Python truthiness, as Sentry tests `if not changelog`.
fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn non_empty_str(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A non-empty string, or an integer, as a string.
fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn bad_request(reason: &str) -> WebhookError {
    WebhookError::BadRequest(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ASSIGNED: &str =
        include_str!("../../../tests/fixtures/jira_cloud_issue_updated_assignee_change.json");
    const UNASSIGNED: &str =
        include_str!("../../../tests/fixtures/jira_cloud_issue_updated_unassigned.json");
    const STATUS: &str =
        include_str!("../../../tests/fixtures/jira_cloud_issue_updated_status_change.json");
    const APP_ACTOR: &str =
        include_str!("../../../tests/fixtures/jira_cloud_issue_updated_app_actor.json");

    fn load(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn parse(s: &str) -> InboundEvent {
        parse_issue_updated(&load(s)).unwrap().unwrap()
    }

    #[test]
    fn cloud_assignee_fixture() {
        assert_eq!(
            parse(ASSIGNED),
            InboundEvent {
                issue_key: "APP-123".into(),
                assignee: Some(AssigneeChange::Assign {
                    email: Some("jess@sentry.io".into()),
                    account_id: Some("deadbeef123".into()),
                }),
                status: None,
                actor: vec![],
                actor_is_app: false,
                sequence: None,
            }
        );
    }

    #[test]
    fn cloud_unassigned_fixture() {
        let ev = parse(UNASSIGNED);
        assert_eq!(ev.issue_key, "APP-123");
        assert_eq!(ev.assignee, Some(AssigneeChange::Unassign));
        assert_eq!(ev.status, None);
    }

    #[test]
    fn cloud_status_fixture() {
        let ev = parse(STATUS);
        assert_eq!(ev.issue_key, "APP-123");
        assert_eq!(ev.assignee, None);
        assert_eq!(
            ev.status,
            Some(StatusChange::Jira {
                from: Some("10101".into()),
                to: Some("3".into()),
            })
        );
    }

    #[test]
    fn cloud_app_actor_variant() {
        assert_eq!(
            parse(APP_ACTOR),
            InboundEvent {
                issue_key: "OPS-9".into(),
                assignee: Some(AssigneeChange::Assign {
                    email: None,
                    account_id: Some("5b10ac8d82e05b22cc7d4ef5".into()),
                }),
                status: None,
                actor: vec!["557058:app-0f1e2d3c".into()],
                actor_is_app: true,
                sequence: Some(1_740_947_650_456),
            }
        );
    }

    #[test]
    fn missing_or_empty_changelog_is_ignored() {
        for changelog in [None, Some(json!(null)), Some(json!({})), Some(json!(""))] {
            let mut body = load(ASSIGNED);
            match changelog {
                None => {
                    body.as_object_mut().unwrap().remove("changelog");
                }
                Some(c) => body["changelog"] = c,
            }
            assert_eq!(parse_issue_updated(&body), Ok(None));
        }
        // Not even an issue is needed to ignore it.
        assert_eq!(parse_issue_updated(&json!({})), Ok(None));
    }

    #[test]
    fn bad_bodies() {
        for body in [json!([]), json!("x"), json!(null), json!(3)] {
            assert!(matches!(
                parse_issue_updated(&body),
                Err(WebhookError::BadRequest(_))
            ));
        }
        let mut body = load(ASSIGNED);
        body["issue"].as_object_mut().unwrap().remove("key");
        assert_eq!(
            parse_issue_updated(&body),
            Err(WebhookError::BadRequest("missing issue.key".into()))
        );
    }

    #[test]
    fn field_matching_is_case_insensitive_and_uses_first_status_item() {
        let body = json!({
            "issue": {"key": "P-1", "fields": {}},
            "changelog": {"id": 1, "items": [
                {"field": "resolution", "from": null, "to": "1"},
                {"field": "Status", "from": 1, "to": 5},
                {"field": "status", "fieldId": "status", "from": "7", "to": "8"},
                {"field": "Assignee"}
            ]},
            "timestamp": 12
        });
        let ev = parse_issue_updated(&body).unwrap().unwrap();
        assert_eq!(
            ev.status,
            Some(StatusChange::Jira {
                from: Some("1".into()),
                to: Some("5".into())
            })
        );
        // Assignee item present but issue.fields.assignee missing → unassign.
        assert_eq!(ev.assignee, Some(AssigneeChange::Unassign));
        assert_eq!(ev.sequence, Some(12));

        let body = json!({
            "issue": {"key": "P-1", "fields": {"assignee": {"emailAddress": "", "accountId": "abc"}}},
            "changelog": {"items": [{"fieldId": "assignee", "field": "whatever"}]}
        });
        assert_eq!(
            parse_issue_updated(&body).unwrap().unwrap().assignee,
            Some(AssigneeChange::Assign {
                email: None,
                account_id: Some("abc".into())
            })
        );
    }

    #[test]
    fn changelog_without_items_gives_empty_event() {
        let body = json!({"issue": {"key": "P-2"}, "changelog": {"id": "5"}});
        let ev = parse_issue_updated(&body).unwrap().unwrap();
        assert_eq!(ev.issue_key, "P-2");
        assert_eq!(ev.assignee, None);
        assert_eq!(ev.status, None);
    }

    #[test]
    fn cloud_delivery_keys() {
        let body = load(APP_ACTOR);
        assert_eq!(
            delivery_key_cloud(Some("0b1c2d3e-aaaa"), &body).unwrap(),
            "0b1c2d3e-aaaa"
        );
        assert_eq!(
            delivery_key_cloud(Some("  "), &body).unwrap(),
            "ts:1740947650456:10042:10455"
        );
        assert_eq!(
            delivery_key_cloud(None, &body).unwrap(),
            "ts:1740947650456:10042:10455"
        );
        // Sentry's fixture: no timestamp; issue.id 101.
        assert_eq!(
            delivery_key_cloud(None, &load(ASSIGNED)).unwrap(),
            "ts:-:101:10172"
        );
        // No issue.id: the key stands in.
        assert_eq!(
            delivery_key_cloud(None, &load(STATUS)).unwrap(),
            "ts:-:APP-123:10196"
        );
        assert!(matches!(
            delivery_key_cloud(None, &json!({})),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn server_delivery_keys() {
        assert_eq!(
            delivery_key_server(&load(APP_ACTOR)).unwrap(),
            "1740947650456:10042:10455"
        );
        assert_eq!(
            delivery_key_server(&json!({"changelog": {"id": 7}})).unwrap(),
            "-:-:7"
        );
        assert!(matches!(
            delivery_key_server(&json!({"timestamp": 5})),
            Err(WebhookError::BadRequest(_))
        ));
    }
}
