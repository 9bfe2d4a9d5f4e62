//! What the derives cannot say, added to the serialized document: the value lists that live
//! in code constants (job states, queues, job kinds, reason codes), constraints across fields
//! (`anyOf`, `if`/`then`), and the links from an operation that creates something to the
//! operations that use it (schemathesis follows them in its stateful phase).

use serde_json::{Map, Value, json};

use crate::sync::decision::{INBOUND, OUTBOUND, OUTCOMES, REASONS};

pub fn refine(doc: &mut Value) {
    let states = json!(crate::store::jobs::STATES);
    let queues = json!(issuesync_jobs::queues::ALL);
    let kinds: Vec<&str> = issuesync_jobs::KINDS.iter().map(|k| k.name).collect();
    let reasons: Vec<&str> = REASONS.iter().map(|r| r.code).collect();

    query_enum(doc, "/api/v1/jobs", "get", "state", &states);
    query_enum(doc, "/api/v1/jobs", "get", "queue", &queues);
    query_enum(
        doc,
        "/api/v1/sync-decisions",
        "get",
        "reason",
        &json!(reasons),
    );
    query_enum(
        doc,
        "/api/v1/sync-decisions",
        "get",
        "outcome",
        &json!(OUTCOMES),
    );
    query_enum(
        doc,
        "/api/v1/sync-decisions",
        "get",
        "direction",
        &json!([INBOUND, OUTBOUND]),
    );

    if let Some(s) = schema(doc, "NewJob") {
        s["properties"]["job"]["enum"] = json!(kinds);
    }
    if let Some(s) = schema(doc, "BulkRetry") {
        s["properties"]["queue"] = json!({"type": ["string", "null"], "enum": with_null(&queues)});
        s["properties"]["state"] = json!({"type": ["string", "null"], "enum": with_null(&states)});
        // Job ids, or a bulk filter (failed or dead, optionally one queue): not both.
        s["anyOf"] = json!([
            {"required": ["ids"], "properties": {"ids": {"minItems": 1}, "state": {"type": "null"}, "queue": {"type": "null"}}},
            {"required": ["state"], "properties": {"ids": {"maxItems": 0}, "state": {"enum": ["failed", "dead"]}}},
        ]);
    }
    if let Some(s) = schema(doc, "GroupUpdate") {
        s["allOf"] = json!([
            // Something to change: a status, or `assignedTo` (null unassigns).
            {"anyOf": [
                {"required": ["assignedTo"]},
                {"required": ["status"], "properties": {"status": {"type": "string"}}},
            ]},
            // The substatuses each status takes.
            {"anyOf": [
                {"properties": {"substatus": {"type": "null"}}},
                {"required": ["status", "substatus"], "properties": {"status": {"const": "unresolved"}, "substatus": {"enum": ["ongoing", "regressed"]}}},
                {"required": ["status", "substatus"], "properties": {"status": {"const": "ignored"}, "substatus": {"enum": ["archived_until_escalating", "archived_forever"]}}},
            ]},
        ]);
    }
    let not_blank =
        r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
    let actor = json!({"type": "string", "pattern": not_blank, "maxLength": 200});
    let metadata = json!({
        "type": "object",
        "properties": {
            "sync_actor_ids": {"anyOf": [actor, {"type": "array", "maxItems": 100, "items": actor}]},
        },
    });
    if let Some(s) = schema(doc, "CreateIntegration") {
        s["properties"]["metadata"] = metadata.clone();
        let ws = r"[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
        s["if"] =
            json!({"required": ["provider"], "properties": {"provider": {"const": "discord"}}});
        s["then"] = json!({"required": ["metadata"], "properties": {"metadata": {
            "required": ["public_key"],
            "properties": {"public_key": {"type": "string", "pattern": format!("^{ws}*[0-9a-fA-F]{{64}}{ws}*$")}},
        }}});
    }
    if let Some(s) = schema(doc, "PatchIntegration") {
        // A null value removes the key.
        let mut m = metadata;
        m["type"] = json!(["object", "null"]);
        if let Some(a) = m["properties"]["sync_actor_ids"]["anyOf"].as_array_mut() {
            a.push(json!({"type": "null"}));
        }
        s["properties"]["metadata"] = m;
    }
    links(doc);
}

fn with_null(v: &Value) -> Value {
    let mut a = v.as_array().cloned().unwrap_or_default();
    a.push(Value::Null);
    Value::Array(a)
}

fn schema<'a>(doc: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    doc.pointer_mut(&format!("/components/schemas/{name}"))
        .filter(|s| s.is_object())
}

fn query_enum(doc: &mut Value, path: &str, method: &str, name: &str, values: &Value) {
    let ptr = format!("/paths/{}/{method}/parameters", path.replace('/', "~1"));
    if let Some(Value::Array(params)) = doc.pointer_mut(&ptr) {
        for p in params.iter_mut().filter(|p| p["name"] == name) {
            p["schema"] = json!({"type": "string", "enum": values});
        }
    }
}

/// `(operation, status, [(link name, target operationId, {parameter: expression})])`.
type LinkSpec = (
    (&'static str, &'static str),
    &'static str,
    &'static [(
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    )],
);

const ID: &[(&str, &str)] = &[("id", "$response.body#/id")];

const LINKS: &[LinkSpec] = &[
    (
        ("/api/v1/organizations", "post"),
        "201",
        &[
            ("GetOrganization", "get_organization", ID),
            ("CreateTeam", "create_team", ID),
            ("ListTeams", "list_teams", ID),
            ("CreateMember", "create_member", ID),
            ("ListMembers", "list_members", ID),
            ("CreateProject", "create_project", ID),
            ("ListProjects", "list_projects", ID),
            (
                "InstallHere",
                "install_integration",
                &[("org_id", "$response.body#/id")],
            ),
        ],
    ),
    (
        ("/api/v1/organizations/{id}/teams", "post"),
        "201",
        &[
            ("GetTeam", "get_team", ID),
            (
                "AddMemberToTeam",
                "add_member_team",
                &[("team_id", "$response.body#/id")],
            ),
        ],
    ),
    (
        ("/api/v1/organizations/{id}/members", "post"),
        "201",
        &[
            (
                "GetMember",
                "get_member",
                &[("id", "$response.body#/member/id")],
            ),
            (
                "DeleteMember",
                "delete_member",
                &[("id", "$response.body#/member/id")],
            ),
            (
                "AddTeam",
                "add_member_team",
                &[("id", "$response.body#/member/id")],
            ),
            (
                "RemoveTeam",
                "remove_member_team",
                &[("id", "$response.body#/member/id")],
            ),
        ],
    ),
    (
        ("/api/v1/users", "post"),
        "201",
        &[
            ("GetUser", "get_user", ID),
            ("AddEmail", "add_email", ID),
            ("LinkIdentity", "link_identity", ID),
            ("ListIdentities", "list_identities", ID),
        ],
    ),
    (
        ("/api/v1/users/{id}/identities", "post"),
        "201",
        &[("UnlinkIdentity", "unlink_identity", ID)],
    ),
    (
        ("/api/v1/organizations/{id}/projects", "post"),
        "201",
        &[
            ("GetProject", "get_project", ID),
            ("DeleteProject", "delete_project", ID),
            ("CreateGroup", "create_group", ID),
            ("ListGroups", "list_groups", ID),
            ("GetOwnership", "get_ownership", ID),
            ("PutOwnership", "put_ownership", ID),
        ],
    ),
    (
        ("/api/v1/projects/{id}/groups", "post"),
        "201",
        &[
            ("GetGroup", "get_group", ID),
            ("UpdateGroup", "update_group", ID),
            ("GroupSync", "group_sync", ID),
        ],
    ),
    (
        ("/api/v1/integrations", "post"),
        "201",
        &[
            ("GetIntegration", "get_integration", ID),
            ("UpdateIntegration", "update_integration", ID),
            ("ListInstalls", "list_installs", ID),
            ("Install", "install_integration", ID),
        ],
    ),
    (
        ("/api/v1/integrations/{id}/organizations/{org_id}", "put"),
        "200",
        &[
            ("ListExternalProjects", "list_external_projects", ID),
            ("UpsertExternalProject", "upsert_external_project", ID),
        ],
    ),
    (
        ("/api/v1/external-issues", "post"),
        "201",
        &[
            (
                "GetExternalIssue",
                "get_external_issue",
                &[("id", "$response.body#/external_issue/id")],
            ),
            (
                "IssueSync",
                "issue_sync",
                &[("id", "$response.body#/external_issue/id")],
            ),
        ],
    ),
    (
        ("/api/v1/jobs", "post"),
        "201",
        &[
            ("ShowJob", "show_job", ID),
            ("RetryJob", "retry_job", ID),
            ("KillJob", "kill_job", ID),
        ],
    ),
];

fn links(doc: &mut Value) {
    for ((path, method), status, targets) in LINKS {
        let ptr = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('/', "~1")
        );
        let Some(resp) = doc.pointer_mut(&ptr) else {
            continue;
        };
        let mut out = Map::new();
        for (name, op, params) in *targets {
            let params: Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            out.insert(
                name.to_string(),
                json!({"operationId": op, "parameters": params}),
            );
        }
        resp["links"] = Value::Object(out);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use std::collections::HashSet;

    fn doc() -> Value {
        serde_json::to_value(super::super::document()).unwrap_or_default()
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn operation_ids_are_unique_and_links_name_real_ones() {
        let mut d = doc();
        super::refine(&mut d);
        let ops = operations(&d);
        let mut ids = HashSet::new();
        for (path, method, op) in &ops {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(
                ids.insert(id.clone()),
                "{method} {path}: operationId {id} twice"
            );
        }
        let mut n = 0;
        for (path, method, op) in &ops {
            for (_, resp) in op["responses"].as_object().into_iter().flatten() {
                for (name, link) in resp["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or_default();
                    assert!(
                        ids.contains(target),
                        "{method} {path}: link {name} to {target}"
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(n, super::LINKS.iter().map(|l| l.2.len()).sum::<usize>());
    }

    #[test]
    fn value_lists_come_from_the_code() {
        let mut d = doc();
        super::refine(&mut d);
        let kinds = &d["components"]["schemas"]["NewJob"]["properties"]["job"]["enum"];
        assert!(
            kinds
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "noop"))
        );
        let params = &d["paths"]["/api/v1/sync-decisions"]["get"]["parameters"];
        let reason = params
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "reason"))
            .map(|p| p["schema"]["enum"].clone())
            .unwrap_or_default();
        assert_eq!(
            reason.as_array().map(Vec::len),
            Some(crate::sync::decision::REASONS.len())
        );
    }
}
