//! Jira Server/DC `jira:issue_updated` deliveries. The body has the same envelope as Jira
//! Cloud's, so parsing lives in [`crate::providers::jira::webhook`]; this module re-exports it
//! under the Jira Server names. Authentication is the URL token (see [`super::auth`]).

pub use crate::providers::jira::webhook::{
    delivery_key_server, delivery_key_server as delivery_key, parse_issue_updated,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{AssigneeChange, InboundEvent, StatusChange, WebhookError};
    use serde_json::{Value, json};

    const ASSIGNED: &str =
        include_str!("../../../tests/fixtures/jira_server_issue_updated_assignee_change.json");
    const STATUS: &str =
        include_str!("../../../tests/fixtures/jira_server_issue_updated_status_change.json");
    const UNASSIGNED: &str =
        include_str!("../../../tests/fixtures/jira_cloud_issue_updated_unassigned.json");

    fn load(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn sentry_assignee_fixture() {
        let body = load(ASSIGNED);
        assert_eq!(
            parse_issue_updated(&body).unwrap().unwrap(),
            InboundEvent {
                issue_key: "APP-1".into(),
                assignee: Some(AssigneeChange::Assign {
                    email: Some("bob@example.org".into()),
                    account_id: None,
                }),
                status: None,
                actor: vec![],
                actor_is_app: false,
                sequence: None,
            }
        );
        // No timestamp and no issue.id in Sentry's payload.
        assert_eq!(delivery_key(&body).unwrap(), "-:APP-1:12345");
    }

    #[test]
    fn status_change_with_user_actor_and_timestamp() {
        let body = load(STATUS);
        assert_eq!(
            parse_issue_updated(&body).unwrap().unwrap(),
            InboundEvent {
                issue_key: "PROJ-7".into(),
                assignee: None,
                // The resolution item comes first; the status item is still found.
                status: Some(StatusChange::Jira {
                    from: Some("1".into()),
                    to: Some("5".into()),
                }),
                actor: vec!["asmith".into(), "JIRAUSER10100".into()],
                actor_is_app: false,
                sequence: Some(1_740_947_650_123),
            }
        );
        assert_eq!(delivery_key(&body).unwrap(), "1740947650123:10010:10300");
    }

    #[test]
    fn unassign_shape() {
        assert_eq!(
            parse_issue_updated(&load(UNASSIGNED))
                .unwrap()
                .unwrap()
                .assignee,
            Some(AssigneeChange::Unassign)
        );
    }

    #[test]
    fn missing_changelog_and_bad_bodies() {
        assert_eq!(
            parse_issue_updated(&json!({"issue": {"key": "APP-1"}})),
            Ok(None)
        );
        assert!(matches!(
            parse_issue_updated(&json!([])),
            Err(WebhookError::BadRequest(_))
        ));
        assert!(matches!(
            delivery_key(&json!({"timestamp": 1})),
            Err(WebhookError::BadRequest(_))
        ));
    }
}
