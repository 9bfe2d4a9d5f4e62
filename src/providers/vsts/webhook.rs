//! Azure DevOps `workitem.updated` service-hook deliveries: identify the organization, check
//! the shared secret, pick a delivery key and parse the body into an [`InboundEvent`].
//!
//! Behaviour as Sentry's `vsts/webhooks.py`.
//! All functions are pure: the receiver looks the integration up by [`collection_id`] and
//! passes its stored secret to [`verify_shared_secret`].

use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::providers::{AssigneeChange, InboundEvent, StatusChange, WebhookError};

/// The only event type we subscribe to and act on.
pub const WORKITEM_UPDATED: &str = "workitem.updated";

/// Name of the request header carrying the per-subscription secret (set through the
/// subscription's `httpHeaders` consumer input, as Sentry does).
pub const SHARED_SECRET_HEADER: &str = "shared-secret";

/// The organization the delivery came from: `resourceContainers.collection.id` (a string, or a
/// number in odd payloads). This is the integration's external id.
pub fn collection_id(body: &Value) -> Result<String, WebhookError> {
    body.pointer("/resourceContainers/collection/id")
        .and_then(scalar_to_string)
        .ok_or_else(|| bad_request("missing resourceContainers.collection.id"))
}

/// The delivery's `eventType`, e.g. `workitem.updated`.
pub fn event_type(body: &Value) -> Result<String, WebhookError> {
    body.get("eventType")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| bad_request("missing eventType"))
}

/// A key that is the same for every retry of one notification: the top-level event `id` (a
/// GUID); without it `subscriptionId:notificationId`.
pub fn delivery_key(body: &Value) -> Result<String, WebhookError> {
    if let Some(id) = body.get("id").and_then(scalar_to_string) {
        return Ok(id);
    }
    let subscription = body.get("subscriptionId").and_then(scalar_to_string);
    let notification = body.get("notificationId").and_then(scalar_to_string);
    match (subscription, notification) {
        (Some(s), Some(n)) => Ok(format!("{s}:{n}")),
        _ => Err(bad_request(
            "missing delivery id: neither id nor subscriptionId and notificationId are present",
        )),
    }
}

/// Checks the `shared-secret` header against the secret stored with the subscription, in
/// constant time. A missing (or empty) secret on either side is a failure.
pub fn verify_shared_secret(expected: Option<&str>, got: Option<&str>) -> Result<(), WebhookError> {
    let expected = expected
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("no shared secret is configured for this integration"))?;
    let got = got
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("missing shared-secret header"))?;
    if bool::from(expected.as_bytes().ct_eq(got.as_bytes())) {
        Ok(())
    } else {
        Err(unauthorized("shared-secret header does not match"))
    }
}

/// Parses a `workitem.updated` delivery. `Ok(None)` means "nothing for us" (another event type,
/// no work item id, no changed fields); the caller answers 2xx and stores nothing.
///
/// * assignee: `fields["System.AssignedTo"]` with a `newValue` → assign (e-mail parsed from
///   `"Name <email>"` or an IdentityRef's `uniqueName`); only `oldValue` → unassign. A `null`
///   or empty `newValue` also counts as unassign (Sentry would crash on `null`).
/// * status: `fields["System.State"].newValue` (a string; otherwise no status change).
/// * actor: `resource.revisedBy.id` and `.uniqueName`; sequence: `resource.rev`.
pub fn parse_workitem_updated(body: &Value) -> Result<Option<InboundEvent>, WebhookError> {
    if !body.is_object() {
        return Err(bad_request("request body must be a JSON object"));
    }
    if body.get("eventType").and_then(Value::as_str) != Some(WORKITEM_UPDATED) {
        return Ok(None);
    }
    let Some(resource) = body.get("resource").filter(|r| r.is_object()) else {
        return Ok(None);
    };
    // Sentry logs "vsts.updating-workitem-does-not-have-necessary-information" and returns.
    let Some(issue_key) = resource.get("workItemId").and_then(scalar_to_string) else {
        return Ok(None);
    };
    // Sentry logs "vsts.updated-workitem-fields-not-passed" and returns.
    let Some(fields) = resource.get("fields").filter(|f| f.is_object()) else {
        return Ok(None);
    };
    let project = body
        .pointer("/resourceContainers/project/id")
        .and_then(scalar_to_string);

    let assignee = fields.get("System.AssignedTo").and_then(assignee_change);
    let status = fields.get("System.State").and_then(|state| {
        let new_state = state.get("newValue")?.as_str()?.to_owned();
        let old_state = state
            .get("oldValue")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Some(StatusChange::Vsts {
            new_state,
            old_state,
            project: project.clone(),
        })
    });

    let actor = resource
        .get("revisedBy")
        .map(|by| {
            ["id", "uniqueName"]
                .iter()
                .filter_map(|k| by.get(*k).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();

    Ok(Some(InboundEvent {
        issue_key,
        assignee,
        status,
        actor,
        actor_is_app: false,
        sequence: resource.get("rev").and_then(scalar_to_i64),
    }))
}

/// The e-mail in an ADO identity string `"Display Name <uniqueName>"`: the text between the
/// first `<` and the last `>` after it (Sentry's greedy regex `<(.*)>`). `None` when there are
/// no brackets or nothing between them.
pub fn parse_email(s: &str) -> Option<String> {
    let start = s.find('<')? + 1;
    let end = s[start..].rfind('>')? + start;
    let email = &s[start..end];
    (!email.is_empty()).then(|| email.to_owned())
}

/// `System.AssignedTo` → assignee change. `None` when the field is empty or not an object
/// (Sentry ignores a falsy value).
fn assignee_change(assigned_to: &Value) -> Option<AssigneeChange> {
    let obj = assigned_to.as_object().filter(|o| !o.is_empty())?;
    let change = match obj.get("newValue") {
        None | Some(Value::Null) => AssigneeChange::Unassign,
        Some(Value::String(s)) if s.is_empty() => AssigneeChange::Unassign,
        Some(Value::String(s)) => AssigneeChange::Assign {
            email: parse_email(s),
            account_id: None,
        },
        // IdentityRef object (REST API form): uniqueName is the sign-in e-mail on Entra/MSA.
        Some(identity @ Value::Object(_)) => AssigneeChange::Assign {
            email: identity
                .get("uniqueName")
                .and_then(Value::as_str)
                .filter(|u| u.contains('@'))
                .map(str::to_owned),
            account_id: None,
        },
        Some(_) => AssigneeChange::Assign {
            email: None,
            account_id: None,
        },
    };
    Some(change)
}

/// A non-empty string, or an integer, as a string.
fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// An integer, or a string holding one (older payloads send numbers as strings).
fn scalar_to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bad_request(reason: &str) -> WebhookError {
    WebhookError::BadRequest(reason.to_owned())
}

fn unauthorized(reason: &str) -> WebhookError {
    WebhookError::Unauthorized(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ASSIGNED: &str =
        include_str!("../../../tests/fixtures/vsts_workitem_updated_assignee_change.json");
    const UNASSIGNED: &str =
        include_str!("../../../tests/fixtures/vsts_workitem_updated_unassigned.json");
    const STATE: &str =
        include_str!("../../../tests/fixtures/vsts_workitem_updated_state_change.json");
    const DOCS_SAMPLE: &str =
        include_str!("../../../tests/fixtures/vsts_workitem_updated_docs_sample.json");
    const IDENTITY: &str =
        include_str!("../../../tests/fixtures/vsts_workitem_updated_identity_object.json");

    const PROJECT: &str = "c0bf429a-c03c-4a99-9336-d45be74db5a6";
    const LAURYN_ID: &str = "21354f98-ab06-67d9-b974-5a54d992082e";

    fn load(s: &str) -> Value {
        serde_json::from_str(s).expect("fixture is JSON")
    }

    fn parse(s: &str) -> InboundEvent {
        parse_workitem_updated(&load(s))
            .expect("parses")
            .expect("is an event")
    }

    #[test]
    fn assignee_change_fixture() {
        let body = load(ASSIGNED);
        assert_eq!(
            collection_id(&body).unwrap(),
            "80ded3e8-3cd3-43b1-9f96-52032624aa3a"
        );
        assert_eq!(event_type(&body).unwrap(), "workitem.updated");
        assert_eq!(
            delivery_key(&body).unwrap(),
            "18f51331-2640-4bce-9ebd-c59c855956a2"
        );
        assert_eq!(
            parse(ASSIGNED),
            InboundEvent {
                issue_key: "31".into(),
                assignee: Some(AssigneeChange::Assign {
                    email: Some("lauryn@sentry.io".into()),
                    account_id: None,
                }),
                status: None,
                actor: vec![LAURYN_ID.into(), "lauryn@sentry.io".into()],
                actor_is_app: false,
                sequence: Some(2),
            }
        );
    }

    #[test]
    fn unassigned_fixture() {
        let ev = parse(UNASSIGNED);
        assert_eq!(ev.issue_key, "33");
        assert_eq!(ev.assignee, Some(AssigneeChange::Unassign));
        assert_eq!(ev.status, None);
        assert_eq!(ev.sequence, Some(3));
    }

    #[test]
    fn state_change_fixture() {
        let ev = parse(STATE);
        assert_eq!(ev.issue_key, "33");
        assert_eq!(ev.assignee, None);
        assert_eq!(
            ev.status,
            Some(StatusChange::Vsts {
                new_state: "Resolved".into(),
                old_state: Some("New".into()),
                project: Some(PROJECT.into()),
            })
        );
        assert_eq!(ev.actor, vec![LAURYN_ID, "lauryn@sentry.io"]);
        assert_eq!(
            delivery_key(&load(STATE)).unwrap(),
            "cc349c85-6595-4939-9b69-f89480be6a26"
        );
    }

    #[test]
    fn docs_sample_bare_display_name_and_null_revised_by() {
        let ev = parse(DOCS_SAMPLE);
        // The docs sample really says workItemId 0 (a doc bug); we take it as given.
        assert_eq!(ev.issue_key, "0");
        assert_eq!(
            ev.assignee,
            Some(AssigneeChange::Assign {
                email: None,
                account_id: None
            })
        );
        assert_eq!(
            ev.status,
            Some(StatusChange::Vsts {
                new_state: "Approved".into(),
                old_state: Some("New".into()),
                project: Some("be9b3917-87e6-42a4-a549-2bc06a7a878f".into()),
            })
        );
        assert!(ev.actor.is_empty());
        assert_eq!(ev.sequence, Some(2));
    }

    #[test]
    fn identity_object_assignee_and_new_item_state() {
        let ev = parse(IDENTITY);
        assert_eq!(ev.issue_key, "42");
        assert_eq!(
            ev.assignee,
            Some(AssigneeChange::Assign {
                email: Some("lauryn@sentry.io".into()),
                account_id: None,
            })
        );
        assert_eq!(
            ev.status,
            Some(StatusChange::Vsts {
                new_state: "Active".into(),
                old_state: None,
                project: Some(PROJECT.into()),
            })
        );
        assert_eq!(ev.sequence, Some(7));
    }

    #[test]
    fn identity_object_without_email_unique_name() {
        let mut body = load(IDENTITY);
        body["resource"]["fields"]["System.AssignedTo"]["newValue"]["uniqueName"] =
            json!("CONTOSO\\jdoe");
        assert_eq!(
            parse_workitem_updated(&body).unwrap().unwrap().assignee,
            Some(AssigneeChange::Assign {
                email: None,
                account_id: None
            })
        );
    }

    #[test]
    fn null_or_empty_new_value_is_unassign() {
        for v in [json!(null), json!("")] {
            let mut body = load(ASSIGNED);
            body["resource"]["fields"]["System.AssignedTo"]["newValue"] = v;
            assert_eq!(
                parse_workitem_updated(&body).unwrap().unwrap().assignee,
                Some(AssigneeChange::Unassign)
            );
        }
        let mut body = load(ASSIGNED);
        body["resource"]["fields"]["System.AssignedTo"] = json!({});
        assert_eq!(
            parse_workitem_updated(&body).unwrap().unwrap().assignee,
            None
        );
    }

    #[test]
    fn other_event_types_and_missing_parts_are_ignored() {
        let mut body = load(ASSIGNED);
        body["eventType"] = json!("workitem.created");
        assert_eq!(parse_workitem_updated(&body), Ok(None));

        let mut body = load(ASSIGNED);
        body["resource"]
            .as_object_mut()
            .unwrap()
            .remove("workItemId");
        assert_eq!(parse_workitem_updated(&body), Ok(None));

        let mut body = load(ASSIGNED);
        body["resource"].as_object_mut().unwrap().remove("fields");
        assert_eq!(parse_workitem_updated(&body), Ok(None));

        let mut body = load(ASSIGNED);
        body.as_object_mut().unwrap().remove("resource");
        assert_eq!(parse_workitem_updated(&body), Ok(None));

        assert!(matches!(
            parse_workitem_updated(&json!([1, 2])),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn work_item_id_as_string_and_rev_as_string() {
        let mut body = load(STATE);
        body["resource"]["workItemId"] = json!("33");
        body["resource"]["rev"] = json!("3");
        body["resource"]["revisedBy"] = Value::Null;
        let ev = parse_workitem_updated(&body).unwrap().unwrap();
        assert_eq!(ev.issue_key, "33");
        assert_eq!(ev.sequence, Some(3));
        assert!(ev.actor.is_empty());
    }

    #[test]
    fn state_without_new_value_is_no_status_change() {
        let mut body = load(STATE);
        body["resource"]["fields"]["System.State"] = json!({"oldValue": "New"});
        assert_eq!(parse_workitem_updated(&body).unwrap().unwrap().status, None);
    }

    #[test]
    fn missing_project_keeps_status() {
        let mut body = load(STATE);
        body["resourceContainers"]
            .as_object_mut()
            .unwrap()
            .remove("project");
        assert_eq!(
            parse_workitem_updated(&body).unwrap().unwrap().status,
            Some(StatusChange::Vsts {
                new_state: "Resolved".into(),
                old_state: Some("New".into()),
                project: None,
            })
        );
    }

    #[test]
    fn collection_id_forms() {
        assert_eq!(
            collection_id(&json!({"resourceContainers": {"collection": {"id": 1234}}})).unwrap(),
            "1234"
        );
        assert_eq!(
            collection_id(&json!({"resourceContainers": {}})),
            Err(WebhookError::BadRequest(
                "missing resourceContainers.collection.id".into()
            ))
        );
        assert!(
            collection_id(&json!({"resourceContainers": {"collection": {"id": null}}})).is_err()
        );
        assert!(event_type(&json!({})).is_err());
    }

    #[test]
    fn delivery_key_fallback() {
        let mut body = load(ASSIGNED);
        body.as_object_mut().unwrap().remove("id");
        assert_eq!(
            delivery_key(&body).unwrap(),
            "7bf628eb-b3a7-4fb2-ab4d-8b60f2e8cb9b:1"
        );
        body.as_object_mut().unwrap().remove("notificationId");
        assert!(matches!(
            delivery_key(&body),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn shared_secret() {
        assert_eq!(verify_shared_secret(Some("abc"), Some("abc")), Ok(()));
        for (expected, got) in [
            (Some("abc"), Some("abd")),
            (Some("abc"), Some("ab")),
            (Some("abc"), None),
            (None, Some("abc")),
            (None, None),
            (Some(""), Some("")),
        ] {
            assert!(
                matches!(
                    verify_shared_secret(expected, got),
                    Err(WebhookError::Unauthorized(_))
                ),
                "{expected:?} vs {got:?}"
            );
        }
    }

    #[test]
    fn parse_email_cases() {
        assert_eq!(
            parse_email("lauryn <lauryn@sentry.io>").as_deref(),
            Some("lauryn@sentry.io")
        );
        assert_eq!(parse_email("a@b.com <a@b.com>").as_deref(), Some("a@b.com"));
        assert_eq!(
            parse_email("张路飞 <LUJING-DEVOPS\\zhanglufei>").as_deref(),
            Some("LUJING-DEVOPS\\zhanglufei")
        );
        // Greedy: from the first '<' to the last '>'.
        assert_eq!(
            parse_email("x <a> y <b@c.d>").as_deref(),
            Some("a> y <b@c.d")
        );
        assert_eq!(parse_email("Jamal Hartnet"), None);
        assert_eq!(parse_email("a@b.com"), None);
        assert_eq!(parse_email("name <>"), None);
        assert_eq!(parse_email("name <unterminated"), None);
        assert_eq!(parse_email("name > <"), None);
        assert_eq!(parse_email(""), None);
    }
}
