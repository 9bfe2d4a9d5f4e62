//! Discord interactions end to end: Ed25519-signed requests to the real receiver, replies
//! asserted as Discord would read them, the database checked after each, and the deferred
//! path finishing through a mocked Discord follow-up webhook. SQLite and Postgres + Redis.

mod common;

use common::{Backend, Seq, TestApp};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const VECTOR: &str = include_str!("fixtures/discord_signature_test_vector.json");
const PRIVATE: &str = include_str!("fixtures/test_rsa_private.pem");
const APP_ID: &str = "1234567890123456789";
const TOKEN: &str = "A_UNIQUE_INTERACTION_TOKEN";
/// Discord user ids: linked member, linked non-member, never linked.
const ALICE: &str = "111111111111111111";
const CAROL: &str = "333333333333333333";
const STRANGER: &str = "999999999999999999";

sqlite_and_pg_redis_tests!(
    ping_answers_pong_and_bad_signatures_are_refused,
    assign_via_select,
    assign_dialog_lists_teams_then_members,
    resolve_unresolve_and_archive,
    refusals_are_ephemeral_and_change_nothing,
    bad_requests_store_nothing,
    duplicate_interactions_apply_once,
    resolve_from_discord_transitions_the_linked_jira_issue,
    identity_admin_api,
);

/// The vector's key: Ed25519 from the seed 00..1f.
fn signing_key() -> SigningKey {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    SigningKey::from_bytes(&seed)
}

fn public_key_hex() -> String {
    hex::encode(signing_key().verifying_key().to_bytes())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Posts `body` signed at `ts`.
async fn post_signed(app: &TestApp, body: &str, ts: i64) -> (u16, Value) {
    let ts = ts.to_string();
    let sig = signing_key().sign(format!("{ts}{body}").as_bytes());
    post_raw(app, body, Some(&hex::encode(sig.to_bytes())), Some(&ts)).await
}

async fn post_raw(app: &TestApp, body: &str, sig: Option<&str>, ts: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/extensions/discord/interactions/"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = sig {
        req = req.header("X-Signature-Ed25519", s);
    }
    if let Some(t) = ts {
        req = req.header("X-Signature-Timestamp", t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A message-component interaction by Discord user `who`.
fn component(who: &str, custom_id: &str, component_type: u64, values: &[&str]) -> String {
    let id = 1291045556370702400 + NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut data = json!({"component_type": component_type, "custom_id": custom_id});
    if component_type == 3 {
        data["values"] = json!(values);
    }
    json!({
        "id": id.to_string(), "application_id": APP_ID, "type": 3, "token": TOKEN, "version": 1,
        "guild_id": "290926798626357999", "channel_id": "645027906669510667",
        "member": {"user": {"id": who, "username": "someone"}},
        "message": {"id": "1291045556370702336", "content": ""},
        "data": data,
    })
    .to_string()
}

struct World {
    org: i64,
    team: i64,
    project: i64,
    alice: i64,
    bob: i64,
    discord: i64,
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

async fn world(app: &TestApp) -> World {
    let org = id(&app.create("/organizations", json!({"name": "Acme"})).await);
    let team = id(&app
        .create(
            &format!("/organizations/{org}/teams"),
            json!({"name": "Backend", "slug": "backend"}),
        )
        .await);
    app.create(
        &format!("/organizations/{org}/teams"),
        json!({"name": "Alerts", "slug": "alerts"}),
    )
    .await;
    let project = id(&app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "Web", "teams": [team]}),
        )
        .await);
    let user = |name: &str, email: &str| json!({"name": name, "emails": [{"email": email, "is_verified": true}]});
    let alice = id(&app
        .create("/users", user("Alice", "alice@example.com"))
        .await);
    let bob = id(&app.create("/users", user("Bob", "bob@example.com")).await);
    let carol = id(&app
        .create("/users", user("Carol", "carol@example.com"))
        .await);
    for u in [alice, bob] {
        app.create(
            &format!("/organizations/{org}/members"),
            json!({"user_id": u, "teams": [team]}),
        )
        .await;
    }
    for (u, discord_id) in [(alice, ALICE), (carol, CAROL)] {
        app.create(
            &format!("/users/{u}/identities"),
            json!({"provider": "discord", "external_id": discord_id}),
        )
        .await;
    }
    let discord = id(&app
        .create(
            "/integrations",
            json!({"provider": "discord", "external_id": APP_ID, "name": "Acme Discord",
                "metadata": {"public_key": public_key_hex()}}),
        )
        .await);
    let (s, v) = app
        .api(
            reqwest::Method::PUT,
            &format!("/integrations/{discord}/organizations/{org}"),
            Some(json!({"config": {}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    World {
        org,
        team,
        project,
        alice,
        bob,
        discord,
    }
}

impl World {
    async fn group(&self, app: &TestApp) -> i64 {
        id(&app
            .create(
                &format!("/projects/{}/groups", self.project),
                json!({"title": "TypeError: Cannot read properties of undefined"}),
            )
            .await)
    }
}

async fn group(app: &TestApp, g: i64) -> Value {
    let (s, v) = app.get(&format!("/groups/{g}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

fn assert_ephemeral(reply: &Value, kind: u64, content: &str) {
    assert_eq!(reply["type"], kind, "{reply}");
    assert_eq!(reply["data"]["flags"], 64, "{reply}");
    assert_eq!(reply["data"]["content"], content, "{reply}");
}

async fn count_deliveries(app: &TestApp) -> i64 {
    let mut tx = app.state.db.begin().await.expect("begin");
    issuesync::store::deliveries::count_deliveries(&mut tx)
        .await
        .expect("count")
}

async fn ping_answers_pong_and_bad_signatures_are_refused(app: TestApp) {
    world(&app).await;
    let ping = json!({"id": "1291045556370702300", "application_id": APP_ID, "type": 1, "token": TOKEN, "version": 1}).to_string();
    let (s, v) = post_signed(&app, &ping, now()).await;
    assert_eq!((s, v), (200, json!({"type": 1})));
    // Discord probes the endpoint with bad signatures: each must be 401.
    let ts = now().to_string();
    let good = hex::encode(
        signing_key()
            .sign(format!("{ts}{ping}").as_bytes())
            .to_bytes(),
    );
    let other_body = ping.replace("1291045556370702300", "1291045556370702301");
    for (body, sig, ts) in [
        (other_body.as_str(), Some(good.as_str()), Some(ts.as_str())),
        (ping.as_str(), Some(&"00".repeat(64)[..]), Some(ts.as_str())),
        (ping.as_str(), Some("not-hex"), Some(ts.as_str())),
        (ping.as_str(), None, Some(ts.as_str())),
        (ping.as_str(), Some(good.as_str()), None),
    ] {
        let (s, v) = post_raw(&app, body, sig, ts).await;
        assert_eq!(s, 401, "{v}");
        assert_eq!(v["error"], "unauthorized", "{v}");
    }
    // A correctly signed request from more than 5 minutes ago (or ahead) is a replay.
    let (s, v) = post_signed(&app, &ping, now() - 301).await;
    assert_eq!(s, 401, "{v}");
    let (s, _) = post_signed(&app, &ping, now() + 301).await;
    assert_eq!(s, 401);
    assert_eq!(count_deliveries(&app).await, 0, "PINGs are not stored");
}

async fn assign_via_select(app: TestApp) {
    let w = world(&app).await;
    let g = w.group(&app).await;
    let body = component(
        ALICE,
        &format!("assign:{g}"),
        3,
        &[&format!("user:{}", w.bob)],
    );
    let (s, reply) = post_signed(&app, &body, now()).await;
    assert_eq!(s, 200);
    assert_ephemeral(&reply, 7, "Assignee has been updated.");
    let v = group(&app, g).await;
    assert_eq!(v["assignedTo"], format!("user:{}", w.bob));
    let act = v["activity"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(act["type"], 11, "ASSIGNED: {act}");
    assert_eq!(act["user_id"], w.alice, "acting user is the linked account");
    assert_eq!(act["data"]["integration"], "discord");
    assert_eq!(
        v["history"].as_array().unwrap().last().unwrap()["status"],
        5
    );
    // A team from the select.
    let body = component(
        ALICE,
        &format!("assign:{g}"),
        3,
        &[&format!("team:{}", w.team)],
    );
    let (_, reply) = post_signed(&app, &body, now()).await;
    assert_ephemeral(&reply, 7, "Assignee has been updated.");
    assert_eq!(
        group(&app, g).await["assignedTo"],
        format!("team:{}", w.team)
    );
    // A user outside the organization cannot be assigned: the reason, nothing changed.
    let outsider = id(&app.create("/users", json!({"name": "Mallory"})).await);
    let body = component(
        ALICE,
        &format!("assign:{g}"),
        3,
        &[&format!("user:{outsider}")],
    );
    let (_, reply) = post_signed(&app, &body, now()).await;
    assert_eq!(reply["type"], 4, "{reply}");
    assert_eq!(reply["data"]["flags"], 64);
    assert!(
        reply["data"]["content"]
            .as_str()
            .unwrap()
            .contains("not a member"),
        "{reply}"
    );
    assert_eq!(
        group(&app, g).await["assignedTo"],
        format!("team:{}", w.team)
    );
    // A garbled value.
    let body = component(ALICE, &format!("assign:{g}"), 3, &["nobody"]);
    let (_, reply) = post_signed(&app, &body, now()).await;
    assert_ephemeral(&reply, 4, "Pick an assignee from the list.");
}

async fn assign_dialog_lists_teams_then_members(app: TestApp) {
    let w = world(&app).await;
    let g = w.group(&app).await;
    let (s, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("/groups/{g}"),
            Some(json!({"assignedTo": format!("user:{}", w.bob)})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, reply) = post_signed(
        &app,
        &component(ALICE, &format!("assign_dialog:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(reply["type"], 4, "{reply}");
    assert_eq!(reply["data"]["flags"], 64);
    let select = &reply["data"]["components"][0]["components"][0];
    assert_eq!(select["type"], 3);
    assert_eq!(select["custom_id"], format!("assign:{g}"));
    let options = select["options"].as_array().unwrap();
    let labels: Vec<&str> = options
        .iter()
        .map(|o| o["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["#alerts", "#backend", "Alice", "Bob"]);
    assert_eq!(options[1]["value"], format!("team:{}", w.team));
    assert_eq!(options[2]["value"], format!("user:{}", w.alice));
    let defaults: Vec<&Value> = options.iter().filter(|o| o["default"] == true).collect();
    assert_eq!(defaults.len(), 1, "{options:?}");
    assert_eq!(defaults[0]["value"], format!("user:{}", w.bob));
    // Opening the dialog changes nothing.
    assert_eq!(
        group(&app, g).await["activity"].as_array().unwrap().len(),
        1
    );

    // More than Discord's 25 options: the first 25, with the current assignee kept.
    let mut last = 0;
    for n in 0..30 {
        last = id(&app
            .create("/users", json!({"name": format!("zz member {n:02}")}))
            .await);
        app.create(
            &format!("/organizations/{}/members", w.org),
            json!({"user_id": last}),
        )
        .await;
    }
    let (s, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("/groups/{g}"),
            Some(json!({"assignedTo": format!("user:{last}")})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("assign_dialog:{g}"), 2, &[]),
        now(),
    )
    .await;
    let options = reply["data"]["components"][0]["components"][0]["options"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(options.len(), 25);
    assert!(
        options
            .iter()
            .any(|o| o["value"] == format!("user:{last}") && o["default"] == true),
        "the current assignee stays in the list"
    );
    assert!(
        reply["data"]["content"]
            .as_str()
            .unwrap()
            .contains("25 of 34")
    );
}

async fn resolve_unresolve_and_archive(app: TestApp) {
    let w = world(&app).await;
    let g = w.group(&app).await;
    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("resolve:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert_ephemeral(&reply, 4, "The issue has been resolved.");
    let v = group(&app, g).await;
    assert_eq!(v["status_name"], "resolved");
    let act = v["activity"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (act["type"].clone(), act["data"]["integration"].clone()),
        (json!(1), json!("discord"))
    );
    assert_eq!(act["user_id"], w.alice);
    {
        let mut tx = app.state.db.begin().await.unwrap();
        let subs = issuesync::store::groups::list_subscriptions(&mut tx, g)
            .await
            .unwrap();
        assert!(
            subs.iter()
                .any(|s| s.user_id == Some(w.alice) && s.reason == 4),
            "{subs:?}"
        );
    }

    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("unresolve:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert_ephemeral(&reply, 4, "The issue has been unresolved.");
    let v = group(&app, g).await;
    assert_eq!(
        (v["status_name"].clone(), v["substatus"].clone()),
        (json!("unresolved"), json!(3))
    );
    assert_eq!(v["activity"].as_array().unwrap().last().unwrap()["type"], 2);

    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("archive:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert_ephemeral(&reply, 4, "The issue will be archived until it escalates.");
    let v = group(&app, g).await;
    assert_eq!(
        (v["status_name"].clone(), v["substatus"].clone()),
        (json!("ignored"), json!(1))
    );
    let act = v["activity"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (act["type"].clone(), act["data"]["integration"].clone()),
        (json!(3), json!("discord"))
    );

    // resolve_dialog offers a select; resolving from it updates that (ephemeral) message.
    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("resolve_dialog:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert_eq!(
        (reply["type"].clone(), reply["data"]["flags"].clone()),
        (json!(4), json!(64))
    );
    let select = &reply["data"]["components"][0]["components"][0];
    assert_eq!(select["custom_id"], format!("resolve:{g}"));
    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("resolve:{g}"), 3, &["immediately"]),
        now(),
    )
    .await;
    assert_ephemeral(&reply, 7, "The issue has been resolved.");
    assert_eq!(group(&app, g).await["status_name"], "resolved");
    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("mark_ongoing:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert_ephemeral(&reply, 4, "The issue has been marked as ongoing.");
    assert_eq!(group(&app, g).await["status_name"], "unresolved");
    // Every applied interaction is a stored delivery, unique by interaction id.
    assert_eq!(count_deliveries(&app).await, 6);
}

async fn refusals_are_ephemeral_and_change_nothing(app: TestApp) {
    let w = world(&app).await;
    let g = w.group(&app).await;
    // A group of another organization, where this Discord app is not installed.
    let other_org = id(&app.create("/organizations", json!({"name": "Other"})).await);
    let other_project = id(&app
        .create(
            &format!("/organizations/{other_org}/projects"),
            json!({"name": "Api"}),
        )
        .await);
    let foreign = id(&app
        .create(
            &format!("/projects/{other_project}/groups"),
            json!({"title": "x"}),
        )
        .await);
    app.create(
        &format!("/organizations/{other_org}/members"),
        json!({"user_id": w.alice}),
    )
    .await;
    let no_identity = "You need to link your Discord account to your issuesync account to do that. Ask an administrator to link it.";
    let cases = [
        (STRANGER, format!("resolve:{g}"), no_identity),
        (ALICE, "resolve:abc".to_string(), "Invalid group ID."),
        (ALICE, "resolve:".to_string(), "Invalid group ID."),
        (
            ALICE,
            "resolve:98765432123".to_string(),
            "Invalid group ID.",
        ),
        (ALICE, format!("resolve:{foreign}"), "Invalid group ID."),
        (
            CAROL,
            format!("resolve:{g}"),
            "You must be a member of the org this issue belongs to in order to act on it.",
        ),
        (
            CAROL,
            format!("assign_dialog:{g}"),
            "You must be a member of the org this issue belongs to in order to act on it.",
        ),
        (
            ALICE,
            format!("launch_rockets:{g}"),
            "This button is not supported by issuesync.",
        ),
    ];
    for (who, custom_id, expected) in cases {
        let (s, reply) = post_signed(&app, &component(who, &custom_id, 2, &[]), now()).await;
        assert_eq!(s, 200, "{custom_id}: {reply}");
        assert_ephemeral(&reply, 4, expected);
    }
    for group_id in [g, foreign] {
        let v = group(&app, group_id).await;
        assert_eq!(v["status_name"], "unresolved", "{v}");
        assert!(v["activity"].as_array().unwrap().is_empty(), "{v}");
    }
}

async fn bad_requests_store_nothing(app: TestApp) {
    world(&app).await;
    let ts = now();
    let (s, v) = post_signed(&app, "{not json", ts).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")));
    let (s, v) = post_signed(&app, &json!({"id": "1", "type": 1}).to_string(), ts).await;
    assert_eq!(s, 400, "no application_id: {v}");
    // Signed with our application's key but naming another application: the key that
    // verified is the identity, so this is unauthorized (it was 404 when the body was
    // parsed before the signature was checked).
    let unknown = component(ALICE, "resolve:1", 2, &[]).replace(APP_ID, "42");
    let (s, v) = post_signed(&app, &unknown, ts).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    // Verified but malformed: a component without custom_id, values of the wrong type.
    let no_custom = json!({"id": "5", "application_id": APP_ID, "type": 3, "token": TOKEN, "member": {"user": {"id": ALICE}}, "data": {"component_type": 2}}).to_string();
    let (s, _) = post_signed(&app, &no_custom, ts).await;
    assert_eq!(s, 400);
    let bad_values = json!({"id": "6", "application_id": APP_ID, "type": 3, "token": TOKEN, "member": {"user": {"id": ALICE}}, "data": {"component_type": 3, "custom_id": "assign:1", "values": "user:1"}}).to_string();
    let (s, _) = post_signed(&app, &bad_values, ts).await;
    assert_eq!(s, 400);
    let big = format!(
        "{{\"application_id\": \"{APP_ID}\", \"pad\": \"{}\"}}",
        "x".repeat(1_100_000)
    );
    let resp = reqwest::Client::new()
        .post(app.url("/extensions/discord/interactions/"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(count_deliveries(&app).await, 0);
    let jobs = issuesync::ops::list(&app.state.db, &Default::default(), 10)
        .await
        .unwrap();
    assert!(jobs.is_empty(), "nothing enqueued: {jobs:?}");
}

async fn duplicate_interactions_apply_once(app: TestApp) {
    let w = world(&app).await;
    let g = w.group(&app).await;
    let body = component(ALICE, &format!("resolve:{g}"), 2, &[]);
    let (_, first) = post_signed(&app, &body, now()).await;
    assert_ephemeral(&first, 4, "The issue has been resolved.");
    // Unresolve in between, then the same resolve interaction again: it is not re-applied.
    post_signed(
        &app,
        &component(ALICE, &format!("unresolve:{g}"), 2, &[]),
        now(),
    )
    .await;
    let (s, again) = post_signed(&app, &body, now()).await;
    assert_eq!((s, again), (200, json!({"type": 6})));
    let v = group(&app, g).await;
    assert_eq!(v["status_name"], "unresolved");
    assert_eq!(v["activity"].as_array().unwrap().len(), 2);
    assert_eq!(count_deliveries(&app).await, 2);
}

async fn resolve_from_discord_transitions_the_linked_jira_issue(app: TestApp) {
    let w = world(&app).await;
    let mock = MockServer::start().await;
    let jira = id(&app
        .create("/integrations", json!({"provider": "jira_server", "external_id": "jira.example.com:issuesync", "name": "issuesync",
            "metadata": {"base_url": mock.uri(), "webhook_secret": "a long secret value", "consumer_key": "issuesync", "private_key": PRIVATE, "access_token": "tok-123"}}))
        .await);
    let (_, oi) = app
        .api(
            reqwest::Method::PUT,
            &format!("/integrations/{jira}/organizations/{}", w.org),
            Some(json!({"config": {"sync_status_forward": true}})),
        )
        .await;
    let (s, _) = app
        .post(
            &format!("/organization-integrations/{}/external-projects", oi["id"]),
            json!({"external_id": "10000", "resolved_status": "10101", "unresolved_status": "3"}),
        )
        .await;
    assert_eq!(s, 200);
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/APP-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"key": "APP-1", "fields": {"status": {"id": "3"}, "project": {"id": "10000"}}}),
        ))
        .mount(&mock)
        .await;
    let transitions: Value =
        serde_json::from_str(include_str!("fixtures/jira_transitions_response.json")).unwrap();
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/APP-1/transitions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transitions))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue/APP-1/transitions"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mock)
        .await;
    let g = w.group(&app).await;
    app.create(
        "/external-issues",
        json!({"organization_id": w.org, "integration_id": jira, "key": "APP-1", "group_ids": [g]}),
    )
    .await;
    let _workers = app.start_workers();
    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("resolve:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert_ephemeral(&reply, 4, "The issue has been resolved.");
    app.drain().await;
    let posts: Vec<_> = mock
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.method.as_str() == "POST" && r.url.path() == "/rest/api/2/issue/APP-1/transitions"
        })
        .collect();
    assert_eq!(posts.len(), 1, "one transition");
    let sent: Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(sent, json!({"transition": {"id": "31"}}));
    assert!(common::oauth::verify_oauth1(
        &posts[0],
        "issuesync",
        "tok-123"
    ));
    // The push is a sync decision acted by the linked user.
    let ds = common::decisions::group_decisions(&app, g).await;
    let sent = common::decisions::find(&ds, "outbound", "status", "sent");
    assert_eq!(sent["actor_user_id"], w.alice);
    assert_eq!(
        (sent["before"].as_str(), sent["after"].as_str()),
        (Some("3"), Some("10101"))
    );
}

async fn identity_admin_api(app: TestApp) {
    let w = world(&app).await;
    let (s, list) = app.get(&format!("/users/{}/identities", w.alice)).await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["external_id"], ALICE);
    let (s, v) = app
        .post(
            &format!("/users/{}/identities", w.bob),
            json!({"provider": "discord", "external_id": ALICE}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")), "{v}");
    for bad in [
        json!({"provider": "discord", "external_id": "<script>"}),
        json!({"provider": "discord", "external_id": ""}),
        json!({"provider": "slack", "external_id": "123"}),
        json!({"provider": "discord"}),
    ] {
        let (s, v) = app
            .post(&format!("/users/{}/identities", w.bob), bad.clone())
            .await;
        assert_eq!(s, 400, "{bad} -> {v}");
        assert!(v["detail"].is_string());
    }
    let (s, _) = app
        .post(
            "/users/987654/identities",
            json!({"provider": "discord", "external_id": "5"}),
        )
        .await;
    assert_eq!(s, 404);
    // Unlinking: clicks by that account are then refused.
    let (s, _) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/identities/{}", list[0]["id"]),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/identities/{}", list[0]["id"]),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let g = w.group(&app).await;
    let (_, reply) = post_signed(
        &app,
        &component(ALICE, &format!("resolve:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert!(
        reply["data"]["content"]
            .as_str()
            .unwrap()
            .starts_with("You need to link")
    );
    assert_eq!(group(&app, g).await["status_name"], "unresolved");
    // A Discord integration needs a valid public key.
    let (s, v) = app
        .post("/integrations", json!({"provider": "discord", "external_id": "777", "name": "x", "metadata": {"public_key": "abc"}}))
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = app
        .api(
            reqwest::Method::PATCH,
            &format!("/integrations/{}", w.discord),
            Some(json!({"metadata": {"public_key": null}})),
        )
        .await;
    assert_eq!(s, 400, "removing the key is refused");
}

/// The published vector (signed in 2025) verifies when the clock window allows it, and its
/// tampered twin is refused; with the default window the vector is a stale replay.
async fn signature_vector(backend: Backend, seq: Seq) {
    let Some(app) = common::spawn_app_with(backend, seq, |s| {
        s.discord.max_timestamp_skew_secs = 100 * 365 * 86_400;
    })
    .await
    else {
        return;
    };
    world(&app).await;
    let v: Value = serde_json::from_str(VECTOR).unwrap();
    assert_eq!(v["public_key_hex"], public_key_hex());
    let sig = v["headers"]["X-Signature-Ed25519"].as_str();
    let ts = v["headers"]["X-Signature-Timestamp"].as_str();
    let (s, reply) = post_raw(&app, v["raw_body"].as_str().unwrap(), sig, ts).await;
    assert_eq!(s, 200, "{reply}");
    // Mason (the vector's user) has no linked account.
    assert_eq!(reply["type"], 4);
    assert_eq!(reply["data"]["flags"], 64);
    assert!(
        reply["data"]["content"]
            .as_str()
            .unwrap()
            .starts_with("You need to link")
    );
    let (s, reply) = post_raw(
        &app,
        v["tampered_body_must_fail"].as_str().unwrap(),
        sig,
        ts,
    )
    .await;
    assert_eq!(s, 401, "{reply}");
    assert_eq!(
        count_deliveries(&app).await,
        1,
        "only the verified one is stored"
    );

    let Some(strict) = common::spawn_app(backend, seq).await else {
        return;
    };
    world(&strict).await;
    let (s, _) = post_raw(&strict, v["raw_body"].as_str().unwrap(), sig, ts).await;
    assert_eq!(s, 401, "a 2025 timestamp is outside the 5-minute window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_vector_sqlite() {
    signature_vector(Backend::Sqlite, Seq::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_vector_postgres_redis() {
    signature_vector(Backend::Postgres, Seq::Redis).await;
}

/// Work over the inline budget is answered type 6 and finished by a job that sends the
/// reply through the follow-up webhook: a new ephemeral message, or an edit of the
/// message the select was on.
async fn deferred(backend: Backend, seq: Seq) {
    let discord = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/api/v10/webhooks/{APP_ID}/{TOKEN}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .mount(&discord)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!(
            "/api/v10/webhooks/{APP_ID}/{TOKEN}/messages/@original"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "2"})))
        .mount(&discord)
        .await;
    let base = format!("{}/api/v10", discord.uri());
    let Some(app) = common::spawn_app_with(backend, seq, |s| {
        s.discord.inline_budget_ms = 0;
        s.discord.api_base_url = base;
    })
    .await
    else {
        return;
    };
    let w = world(&app).await;
    let g = w.group(&app).await;
    let (s, reply) = post_signed(
        &app,
        &component(ALICE, &format!("resolve:{g}"), 2, &[]),
        now(),
    )
    .await;
    assert_eq!((s, reply), (200, json!({"type": 6})));
    let (s, reply) = post_signed(
        &app,
        &component(
            ALICE,
            &format!("assign:{g}"),
            3,
            &[&format!("user:{}", w.bob)],
        ),
        now(),
    )
    .await;
    assert_eq!((s, reply), (200, json!({"type": 6})));
    assert_eq!(
        group(&app, g).await["status_name"],
        "unresolved",
        "not applied before the job runs"
    );
    let jobs = issuesync::ops::list(&app.state.db, &Default::default(), 10)
        .await
        .unwrap();
    assert_eq!(
        jobs.iter()
            .filter(|j| j.job == "discord_interaction")
            .count(),
        2,
        "{jobs:?}"
    );
    let workers = app.start_workers();
    app.drain().await;
    workers.stop().await;
    let v = group(&app, g).await;
    assert_eq!(v["status_name"], "resolved");
    assert_eq!(v["assignedTo"], format!("user:{}", w.bob));
    let got = discord.received_requests().await.unwrap();
    let post = got
        .iter()
        .find(|r| r.method.as_str() == "POST")
        .expect("follow-up message");
    assert_eq!(
        serde_json::from_slice::<Value>(&post.body).unwrap(),
        json!({"content": "The issue has been resolved.", "flags": 64})
    );
    assert!(
        post.headers.get("authorization").is_none(),
        "the token is in the URL"
    );
    let patch = got
        .iter()
        .find(|r| r.method.as_str() == "PATCH")
        .expect("edit of the original");
    assert_eq!(
        serde_json::from_slice::<Value>(&patch.body).unwrap(),
        json!({"content": "Assignee has been updated.", "flags": 64})
    );
    assert_eq!(got.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_sqlite() {
    deferred(Backend::Sqlite, Seq::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_postgres_redis() {
    deferred(Backend::Postgres, Seq::Redis).await;
}
