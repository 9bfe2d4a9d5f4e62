//! What must not stop the service or quietly do the wrong thing: concurrent assignments,
//! configuration that cannot work, logout, control characters in ops actions, paging
//! deliveries, error messages, and readiness while Redis is away.

mod common;

use common::TestApp;
use reqwest::header::{COOKIE, LINK};
use serde_json::{Value, json};

sqlite_and_pg_redis_tests!(
    twenty_concurrent_assignments_all_succeed,
    config_that_cannot_work_is_refused,
    unknown_keys_are_named_with_the_closest_one,
    logout_ends_the_session_on_the_server,
    control_characters_are_refused_before_the_action,
    deliveries_page_with_before,
);

/// `issuesync <args>` on the app's database with `env` added: (exit code, stdout, stderr).
fn cli(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .args(args)
        .envs(app.child_env())
        .envs(env.iter().copied())
        .output()
        .expect("run issuesync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn twenty_concurrent_assignments_all_succeed(app: TestApp) {
    let org = app.create("/organizations", json!({"name": "Acme"})).await["id"]
        .as_i64()
        .unwrap();
    let project = app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "Web"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let group = app
        .create(
            &format!("/projects/{project}/groups"),
            json!({"title": "g"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let mut users = Vec::new();
    for i in 0..20 {
        let u = app
            .create("/users", json!({"name": format!("u{i}"), "emails": [{"email": format!("u{i}@example.com"), "is_verified": true}]}))
            .await["id"]
            .as_i64()
            .unwrap();
        app.create(
            &format!("/organizations/{org}/members"),
            json!({"user_id": u}),
        )
        .await;
        users.push(u);
    }
    let sends = users.iter().map(|u| {
        let (client, url) = (
            app.client.clone(),
            app.url(&format!("/api/v1/groups/{group}")),
        );
        let u = *u;
        async move {
            let r = client
                .put(url)
                .bearer_auth(common::TOKEN)
                .json(&json!({"assignedTo": format!("user:{u}")}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    });
    let answers = futures::future::join_all(sends).await;
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        refused.is_empty(),
        "{} of 20 refused: {refused:?}",
        refused.len()
    );
    let mut tx = app.state.db.begin().await.unwrap();
    use issuesync::store::groups;
    let assignee = groups::find_assignee(&mut tx, group)
        .await
        .unwrap()
        .unwrap();
    let assigned: Vec<_> = groups::list_activities(&mut tx, group)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == 11)
        .collect();
    assert_eq!(assigned.len(), 20, "one activity per assignment");
    let last = &assigned.last().unwrap().data.0["assignee"];
    assert_eq!(
        last,
        &json!(assignee.user_id.unwrap().to_string()),
        "the last committed assignment is the assignee"
    );
    let history = groups::list_history(&mut tx, group).await.unwrap();
    assert_eq!(history.iter().filter(|h| h.status == 5).count(), 20);
    // Only the final assignee keeps an "assigned" subscription.
    let subscribed: Vec<_> = groups::list_subscriptions(&mut tx, group)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.reason == 2)
        .filter_map(|s| s.user_id)
        .collect();
    assert_eq!(subscribed, vec![assignee.user_id.unwrap()]);
}

async fn config_that_cannot_work_is_refused(app: TestApp) {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ISSUESYNC_ADMIN_TOKEN", "")], "admin_token"),
        (&[("ISSUESYNC_ADMIN_TOKEN", "   ")], "admin_token"),
        (
            &[("ISSUESYNC_DATABASE__MAX_CONNECTIONS", "0")],
            "database.max_connections",
        ),
        (
            &[("ISSUESYNC_QUEUE__CONCURRENCY__OUTBOUND", "0")],
            "queue.concurrency.outbound",
        ),
        (&[("ISSUESYNC_RATE_LIMIT__JIRA", "0")], "unlimited"),
    ];
    for (env, says) in cases {
        let (code, _, err) = cli(&app, &["migrate"], env);
        assert_eq!(code, 1, "{env:?} was accepted: {err}");
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{env:?}: not one line: {err}");
        assert!(lines[0].contains(says), "{env:?}: {err}");
    }
    let (code, _, err) = cli(
        &app,
        &["migrate"],
        &[("ISSUESYNC_RATE_LIMIT__JIRA", "unlimited")],
    );
    assert_eq!(code, 0, "\"unlimited\" is refused: {err}");
    // A TOML syntax error: once, on one line, with the file, line and column.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "bind = \"127.0.0.1:1\"\n[http\nbody_limit_bytes = 5\n",
    )
    .unwrap();
    let (code, _, err) = cli(&app, &["--config", file.to_str().unwrap(), "migrate"], &[]);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(
        lines[0].contains(&format!("{}:2:", file.display())),
        "no file:line:column: {err}"
    );
    // A Redis that cannot be reached: its cause is printed once.
    let (code, _, err) = cli(&app, &["migrate"], &[("REDIS_URL", "redis://127.0.0.1:1")]);
    assert_eq!(code, 1, "{err}");
    let line = err.lines().last().unwrap_or_default();
    assert_eq!(
        line.matches("refused").count(),
        1,
        "the cause is repeated: {line}"
    );
}

async fn unknown_keys_are_named_with_the_closest_one(app: TestApp) {
    let (code, _, err) = cli(
        &app,
        &["migrate"],
        &[("ISSUESYNC_DATABSE__MAX_CONNECTIONS", "5")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("databse") && err.contains("database.max_connections"),
        "no warning naming the key and the closest one: {err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[http]\nbody_limt_bytes = 5\n").unwrap();
    let (code, _, err) = cli(&app, &["--config", file.to_str().unwrap(), "migrate"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("http.body_limt_bytes")
            && err.contains("http.body_limit_bytes")
            && err.contains("typo.toml"),
        "{err}"
    );
}

use common::{no_redirects, ops_login as login};

async fn csrf(app: &TestApp, cookie: &str) -> String {
    let html = no_redirects()
        .get(app.url("/ops"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

async fn logout_ends_the_session_on_the_server(app: TestApp) {
    let cookie = login(&app).await;
    let token = csrf(&app, &cookie).await;
    let r = no_redirects()
        .post(app.url("/ops/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // A copy of the cookie (another tab, a stolen one) no longer works.
    let r = no_redirects()
        .get(app.url("/ops"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the logged-out session still works");
    // A new login does.
    let fresh = login(&app).await;
    let r = no_redirects()
        .get(app.url("/ops"))
        .header(COOKIE, &fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn control_characters_are_refused_before_the_action(app: TestApp) {
    let id = app
        .enqueue(&issuesync_jobs::noop::Noop::default())
        .await
        .id()
        .to_string();
    issuesync::ops::kill(&app.state.db, std::slice::from_ref(&id), "seeded")
        .await
        .unwrap();
    let cookie = login(&app).await;
    let token = csrf(&app, &cookie).await;
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let (cookie, url) = (cookie.clone(), app.url(&path));
        async move {
            no_redirects()
                .post(url)
                .header(COOKIE, cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let s = post(
        format!("/ops/jobs/{id}/retry"),
        vec![
            ("csrf", token.clone()),
            ("back", "/ops/jobs\r\nX-Injected: 1".into()),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(app.job(&id).await.job.state, "dead", "the retry ran anyway");
    let s = post(
        format!("/ops/jobs/{id}%0A/kill"),
        vec![("csrf", token.clone())],
    )
    .await;
    assert_eq!(s, 400);
    let s = post(
        format!("/ops/jobs/{id}/kill"),
        vec![("csrf", token.clone()), ("back", "/ops\u{7}".into())],
    )
    .await;
    assert_eq!(s, 400);
    // Without the control character the same action works.
    let s = post(
        format!("/ops/jobs/{id}/retry"),
        vec![("csrf", token), ("back", "/ops/jobs".into())],
    )
    .await;
    assert_eq!(s, 303);
    assert_ne!(app.job(&id).await.job.state, "dead");
}

async fn deliveries_page_with_before(app: TestApp) {
    let ado: Value = serde_json::from_str(include_str!(
        "fixtures/vsts_workitem_updated_assignee_change.json"
    ))
    .unwrap();
    let collection = ado["resourceContainers"]["collection"]["id"]
        .as_str()
        .unwrap();
    app.create(
        "/integrations",
        json!({"provider": "vsts", "external_id": collection, "name": "ado",
        "metadata": {"subscription": {"id": "s", "secret": "paging-secret"}}}),
    )
    .await;
    for i in 0..3 {
        let mut v = ado.clone();
        v["id"] = json!(format!("page-{i}"));
        let r = app
            .client
            .post(app.url("/extensions/vsts/issue-updated/"))
            .header("shared-secret", "paging-secret")
            .json(&v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (code, out, err) = cli(&app, &["deliveries", "list", "--limit", "2", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let first: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(first.len(), 2);
    let oldest_shown = first[1]["id"].as_i64().unwrap();
    assert!(
        err.contains(&format!("--before {oldest_shown}")),
        "no word that more follow: {err}"
    );
    let (code, out, err) = cli(
        &app,
        &[
            "deliveries",
            "list",
            "--limit",
            "2",
            "--before",
            &oldest_shown.to_string(),
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let rest: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rest.len(), 1);
    assert!(
        !err.contains("--before"),
        "says more after the last page: {err}"
    );
    // The API: a Link to the next page, and a limit over 1000 refused rather than capped.
    let r = app
        .client
        .get(app.url("/api/v1/deliveries?limit=2"))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap();
    let link = r
        .headers()
        .get(LINK)
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        link.as_deref(),
        Some(&*format!(
            "</api/v1/deliveries?before={oldest_shown}&limit=2>; rel=\"next\""
        ))
    );
    let (s, v) = app.get("/deliveries?limit=5000").await;
    assert_eq!(s, 400, "{v}");
    let (code, _, err) = cli(&app, &["deliveries", "list", "--limit", "5000"], &[]);
    assert_eq!(code, 1, "{err}");
}
