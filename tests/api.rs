//! The foundation suite: every test runs against SQLite and PostgreSQL, each with the
//! in-process and the Redis snowflake sequence (see `backend_tests!`).

mod common;

use std::collections::HashSet;

use common::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    health_and_readiness,
    create_and_read_every_resource,
    project_ids_are_snowflakes_and_slugs_follow_the_rules,
    many_projects_in_one_second_get_unique_ids,
    bad_input_gets_clear_errors,
    project_delete_cascades_in_one_transaction,
    integrations_hide_their_secrets,
);

/// org + user with a verified email + team + member in that team + project of the team.
async fn seed(app: &TestApp) -> (Value, Value, Value, Value) {
    let org = app.create("/organizations", json!({"name": "Acme"})).await;
    let org_id = org["id"].as_i64().unwrap();
    let user = app
        .create("/users", json!({"name": "Alice", "emails": [{"email": "alice@example.com", "is_verified": true}, {"email": "a2@example.com"}]}))
        .await;
    let team = app
        .create(
            &format!("/organizations/{org_id}/teams"),
            json!({"name": "Backend"}),
        )
        .await;
    let member = app
        .create(
            &format!("/organizations/{org_id}/members"),
            json!({"user_id": user["id"], "teams": [team["id"]]}),
        )
        .await;
    let _ = member;
    let project = app
        .create(
            &format!("/organizations/{org_id}/projects"),
            json!({"name": "Web App", "teams": [team["id"]]}),
        )
        .await;
    (org, user, team, project)
}

async fn health_and_readiness(app: TestApp) {
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["redis"], app.redis_url.is_some());
}

async fn create_and_read_every_resource(app: TestApp) {
    let (org, user, team, project) = seed(&app).await;
    let org_id = org["id"].as_i64().unwrap();

    let (s, got) = app.get(&format!("/organizations/{org_id}")).await;
    assert_eq!((s, got["slug"].as_str()), (200, Some("acme")));

    let (s, got) = app.get(&format!("/users/{}", user["id"])).await;
    assert_eq!(s, 200);
    assert_eq!(
        got["emails"][0],
        json!({"user_id": user["id"], "email": "alice@example.com", "is_verified": true})
    );
    assert_eq!(got["emails"][1]["is_verified"], false);

    let (s, teams) = app.get(&format!("/organizations/{org_id}/teams")).await;
    assert_eq!((s, teams[0]["id"].clone()), (200, team["id"].clone()));

    let (s, members) = app.get(&format!("/organizations/{org_id}/members")).await;
    assert_eq!(s, 200);
    assert_eq!(members[0]["member"]["user_id"], user["id"]);
    assert_eq!(members[0]["teams"], json!([team["id"]]));

    let (s, got) = app.get(&format!("/projects/{}", project["id"])).await;
    assert_eq!(s, 200);
    assert_eq!(got["slug"], "web-app");
    assert_eq!(got["teams"], json!([team["id"]]));

    let g = app
        .create(
            &format!("/projects/{}/groups", project["id"]),
            json!({"title": "TypeError: x is undefined"}),
        )
        .await;
    let (s, got) = app.get(&format!("/groups/{}", g["id"])).await;
    assert_eq!(s, 200);
    assert_eq!(got["title"], "TypeError: x is undefined");
    assert_eq!(got["status"], 0);
    assert_eq!(got["status_name"], "unresolved");
    assert_eq!(got["assignedTo"], Value::Null);
    assert!(got["last_seen"].as_i64().unwrap() > 0);

    // The rows are really in the database, not only in the answers.
    let mut tx = app.state.db.begin().await.unwrap();
    let found = issuesync::store::projects::user_has_project(
        &mut tx,
        user["id"].as_i64().unwrap(),
        project["id"].as_i64().unwrap(),
    )
    .await
    .unwrap();
    assert!(found, "user reaches the project through the team");
}

fn assert_snowflake(id: i64) {
    assert!(id >= 1 << 52, "{id} < 2^52");
    assert!(id < 1 << 53, "{id} >= 2^53");
    assert_eq!(id >> 48, 0b10000, "version bits of {id}");
    let (_, secs, region, seq) = issuesync::domain::snowflake::decompose(id);
    let now = chrono::Utc::now().timestamp() - 1_659_916_800;
    assert!(
        (now - 301..=now + 1).contains(&(secs as i64)),
        "time segment {secs} vs now {now}"
    );
    assert_eq!(region, 0);
    assert!(seq < 16);
}

async fn project_ids_are_snowflakes_and_slugs_follow_the_rules(app: TestApp) {
    let (org, _, _, project) = seed(&app).await;
    let org_id = org["id"].as_i64().unwrap();
    assert_snowflake(project["id"].as_i64().unwrap());
    assert_snowflake(org_id);
    let path = format!("/organizations/{org_id}/projects");

    // Reserved slug: 12 random hex characters.
    let p = app.create(&path, json!({"name": "Settings"})).await;
    let slug = p["slug"].as_str().unwrap();
    assert_eq!(slug.len(), 12, "{slug}");
    assert!(slug.chars().all(|c| c.is_ascii_hexdigit()), "{slug}");

    // Collision: the second gets base + "-" + 2 characters of Sentry's alphabet.
    let p = app.create(&path, json!({"name": "Web App"})).await;
    let slug = p["slug"].as_str().unwrap();
    assert!(
        slug.starts_with("web-app-") && slug.len() == "web-app-".len() + 2,
        "{slug}"
    );
    assert!(!slug.contains('8'));

    // All-digit names never keep the bare digits.
    let p = app.create(&path, json!({"name": "12345"})).await;
    let slug = p["slug"].as_str().unwrap();
    assert!(slug.starts_with("12345-"), "{slug}");

    // Case-insensitive uniqueness.
    let p = app.create(&path, json!({"name": "WEB APP"})).await;
    assert_ne!(p["slug"], "web-app");

    // Explicit slugs: validated, and a duplicate is a 409.
    let (s, e) = app.post(&path, json!({"name": "x", "slug": "123"})).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("bad_request")));
    let (s, e) = app
        .post(&path, json!({"name": "x", "slug": "web-app"}))
        .await;
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
    let p = app
        .create(&path, json!({"name": "x", "slug": "custom_slug-1"}))
        .await;
    assert_eq!(p["slug"], "custom_slug-1");

    // The long name is cut to 50 characters.
    let p = app.create(&path, json!({"name": "a".repeat(80)})).await;
    assert_eq!(p["slug"].as_str().unwrap().len(), 50);
}

async fn many_projects_in_one_second_get_unique_ids(app: TestApp) {
    let (org, ..) = seed(&app).await;
    let path = format!("/organizations/{}/projects", org["id"]);
    // 40 concurrent creations: more than the 16 ids a second holds.
    let futs = (0..40).map(|i| {
        let app = &app;
        let path = path.clone();
        async move {
            app.post(
                &path,
                json!({"name": format!("p{i}"), "slug": format!("p{i}")}),
            )
            .await
        }
    });
    let results = futures::future::join_all(futs).await;
    let mut ids = HashSet::new();
    for (s, v) in results {
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_i64().unwrap();
        assert_snowflake(id);
        assert!(ids.insert(id), "duplicate id {id}");
    }
    // And straight from the generator, far more than 16 in a burst.
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let id = app.state.snowflake.generate().await.unwrap();
        assert!(seen.insert(id) && !ids.contains(&id), "duplicate id {id}");
    }
}

async fn bad_input_gets_clear_errors(app: TestApp) {
    let (org, user, ..) = seed(&app).await;
    let org_id = org["id"].as_i64().unwrap();

    // Missing and wrong tokens.
    let r = app
        .client
        .get(app.url("/api/v1/organizations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized");
    assert!(v["detail"].as_str().is_some());
    let r = app
        .client
        .get(app.url("/api/v1/organizations"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Unknown ids, bad ids, bad JSON, unknown fields.
    assert_eq!(app.get("/projects/42").await.0, 404);
    assert_eq!(app.get("/organizations/42/teams").await.0, 404);
    let (s, v) = app.get("/groups/abc").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")));
    let r = app
        .client
        .post(app.url("/api/v1/organizations"))
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, _) = app.post("/organizations", json!({"nmae": "typo"})).await;
    assert_eq!(s, 400);
    let (s, _) = app
        .post(
            "/users",
            json!({"name": "x", "emails": [{"email": "not-an-email"}]}),
        )
        .await;
    assert_eq!(s, 400);

    // Duplicates.
    let (s, v) = app.post("/organizations", json!({"name": "Acme"})).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")));
    let (s, _) = app
        .post(
            &format!("/organizations/{org_id}/members"),
            json!({"user_id": user["id"]}),
        )
        .await;
    assert_eq!(s, 409);

    // Cross-organization references are refused.
    let other = app.create("/organizations", json!({"name": "Other"})).await;
    let t = app
        .create(
            &format!("/organizations/{}/teams", other["id"]),
            json!({"name": "T"}),
        )
        .await;
    let (s, _) = app
        .post(
            &format!("/organizations/{org_id}/projects"),
            json!({"name": "P", "teams": [t["id"]]}),
        )
        .await;
    // A team of another organization named in the body: a conflict (409), as one that does
    // not exist.
    assert_eq!(s, 409);

    // Nothing half-written: the refused project does not exist.
    let (_, list) = app.get(&format!("/organizations/{org_id}/projects")).await;
    assert!(list.as_array().unwrap().iter().all(|p| p["name"] != "P"));

    // Bodies over the limit.
    let big = json!({"name": "x".repeat(2 * 1024 * 1024)});
    let (s, v) = app.post("/organizations", big).await;
    assert_eq!((s, v["error"].as_str()), (413, Some("payload_too_large")));
}

async fn project_delete_cascades_in_one_transaction(app: TestApp) {
    let (_, _, _, project) = seed(&app).await;
    let pid = project["id"].as_i64().unwrap();
    let g = app
        .create(&format!("/projects/{pid}/groups"), json!({"title": "boom"}))
        .await;
    let (s, _) = app
        .api(Method::DELETE, &format!("/projects/{pid}"), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(app.get(&format!("/projects/{pid}")).await.0, 404);
    assert_eq!(app.get(&format!("/groups/{}", g["id"])).await.0, 404);
    let mut tx = app.state.db.begin().await.unwrap();
    assert!(
        issuesync::store::projects::list_project_team_ids(&mut tx, pid)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.api(Method::DELETE, &format!("/projects/{pid}"), None)
            .await
            .0,
        404
    );
}

async fn integrations_hide_their_secrets(app: TestApp) {
    let (org, ..) = seed(&app).await;
    let i = app
        .create(
            "/integrations",
            json!({"provider": "vsts", "external_id": "80ded3e8-3cd3-43b1-9f96-52032624aa3a", "name": "acct",
                   "metadata": {"domain_name": "https://acct.visualstudio.com/", "subscription": {"id": "s1", "secret": "hunter2hunter2"}}}),
        )
        .await;
    assert!(!i.to_string().contains("hunter2"), "{i}");
    assert_eq!(i["metadata"]["subscription"]["id"], "s1");
    let (s, _) = app
        .post("/integrations", json!({"provider": "vsts", "external_id": "80ded3e8-3cd3-43b1-9f96-52032624aa3a", "name": "again"}))
        .await;
    assert_eq!(s, 409);
    let (s, _) = app
        .post(
            "/integrations",
            json!({"provider": "gitlab", "external_id": "x", "name": "x"}),
        )
        .await;
    assert_eq!(s, 400);

    let path = format!("/integrations/{}/organizations/{}", i["id"], org["id"]);
    let (s, _) = app
        .api(
            Method::PUT,
            &path,
            Some(json!({"config": {"sync_status_forward": "yes"}})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, oi) = app
        .api(Method::PUT, &path, Some(json!({"config": {"sync_status_forward": true, "sync_reverse_assignment": true, "resolution_strategy": "resolve"}})))
        .await;
    assert_eq!(s, 200, "{oi}");
    let (s, p) = app
        .post(
            &format!("/organization-integrations/{}/external-projects", oi["id"]),
            json!({"external_id": "10000", "resolved_status": "10101", "unresolved_status": "3"}),
        )
        .await;
    assert_eq!((s, p["resolved_status"].as_str()), (200, Some("10101")));

    let (s, got) = app.get(&format!("/integrations/{}", i["id"])).await;
    assert_eq!(s, 200);
    assert_eq!(
        got["organizations"][0]["config"]["sync_reverse_assignment"],
        true
    );
    assert!(!got.to_string().contains("hunter2"));

    // The secret is stored, only hidden.
    let mut tx = app.state.db.begin().await.unwrap();
    let stored =
        issuesync::store::integrations::find_integration(&mut tx, i["id"].as_i64().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        stored.metadata.0["subscription"]["secret"],
        "hunter2hunter2"
    );
}
