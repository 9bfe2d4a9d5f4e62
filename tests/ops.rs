//! The operator page over HTTP: login, the session cookie, CSRF on every action, and what
//! the pages show, checked against the database. The browser test is in ops_browser.rs.

mod common;

use common::TestApp;
use issuesync_jobs::noop::{Behaviour, Noop};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

sqlite_and_pg_redis_tests!(
    pages_refuse_without_a_session,
    login_sets_a_strict_http_only_cookie,
    actions_need_the_csrf_token,
    bulk_retry_retries_only_the_filtered_set,
    pages_show_jobs_deliveries_and_integrations,
    forms_are_small,
);

use common::{no_redirects, ops_login as login};

async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let r = no_redirects()
        .get(app.url(path))
        .header(COOKIE, cookie)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

async fn post_form(
    app: &TestApp,
    cookie: Option<&str>,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = no_redirects().post(app.url(path)).form(form);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

/// A dead noop job (killed with `reason` before any worker ran it).
async fn dead_job(app: &TestApp, ledger: &str, reason: &str) -> String {
    let id = app
        .enqueue(&Noop {
            ledger: Some(ledger.into()),
            ..Default::default()
        })
        .await
        .id()
        .to_string();
    assert_eq!(
        issuesync::ops::kill(&app.state.db, std::slice::from_ref(&id), reason)
            .await
            .unwrap(),
        1
    );
    id
}

async fn pages_refuse_without_a_session(app: TestApp) {
    let c = no_redirects();
    for path in [
        "/ops",
        "/ops/jobs?state=dead",
        "/ops/deliveries",
        "/ops/integrations",
    ] {
        let r = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "unauthorized");
        let r = c
            .get(app.url(path))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "a browser is sent to the login form");
        assert_eq!(r.headers()[LOCATION], "/ops/login");
    }
    // Forged, expired and foreign cookies.
    let now = chrono::Utc::now().timestamp_millis();
    for cookie in [
        "issuesync_ops=garbage".to_string(),
        format!(
            "issuesync_ops={}",
            issuesync::receiver::ops::session_value("another token", now)
        ),
        format!(
            "issuesync_ops={}",
            issuesync::receiver::ops::session_value(common::TOKEN, now - 13 * 3600 * 1000)
        ),
    ] {
        let r = c
            .get(app.url("/ops"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{cookie}");
    }
    let id = dead_job(&app, "x", "seeded").await;
    let r = post_form(
        &app,
        None,
        &format!("/ops/jobs/{id}/retry"),
        &[("csrf", "x")],
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(app.job(&id).await.job.state, "dead", "nothing changed");
    // The bearer header (scripts) works and needs no CSRF token.
    let r = c
        .get(app.url("/ops"))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.get(app.url("/ops"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // The login page itself is public; a wrong token is refused there.
    assert_eq!(
        c.get(app.url("/ops/login")).send().await.unwrap().status(),
        200
    );
    let r = post_form(&app, None, "/ops/login", &[("token", "wrong")]).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
}

async fn login_sets_a_strict_http_only_cookie(app: TestApp) {
    let r = post_form(&app, None, "/ops/login", &[("token", common::TOKEN)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/ops");
    let set = r.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("issuesync_ops="), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ops"),
        "{set}"
    );
    assert!(
        !set.contains(common::TOKEN),
        "the cookie is not the token itself"
    );
    let cookie = set.split(';').next().unwrap();
    let (s, html) = page(&app, cookie, "/ops").await;
    assert_eq!(s, 200);
    assert!(html.contains("id=\"queues\""));
    let r = no_redirects()
        .get(app.url("/ops"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    // Logging out needs the CSRF token too, and clears the cookie.
    let (_, html) = page(&app, cookie, "/ops").await;
    let r = post_form(&app, Some(cookie), "/ops/logout", &[("csrf", &csrf(&html))]).await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

async fn actions_need_the_csrf_token(app: TestApp) {
    let cookie = login(&app).await;
    let id = dead_job(&app, "csrf", "seeded").await;
    let (_, html) = page(&app, &cookie, &format!("/ops/jobs/{id}")).await;
    let token = csrf(&html);
    for form in [
        vec![],
        vec![("csrf", "0".repeat(64))],
        vec![("csrf", token.replace(&token[..2], "zz"))],
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for path in [
            format!("/ops/jobs/{id}/retry"),
            format!("/ops/jobs/{id}/kill"),
            "/ops/jobs/retry".into(),
        ] {
            let r = post_form(&app, Some(&cookie), &path, &form).await;
            assert_eq!(r.status(), 403, "{path} {form:?}");
            assert!(r.text().await.unwrap().contains("CSRF"));
        }
    }
    assert_eq!(
        app.job(&id).await.job.state,
        "dead",
        "no action went through"
    );
    // Another session's token is not this session's.
    let other = issuesync::receiver::ops::csrf_for(common::TOKEN, "1.abc");
    let r = post_form(
        &app,
        Some(&cookie),
        &format!("/ops/jobs/{id}/retry"),
        &[("csrf", &other)],
    )
    .await;
    assert_eq!(r.status(), 403);
    // With the right token: retried, back to the job page with a message.
    let r = post_form(
        &app,
        Some(&cookie),
        &format!("/ops/jobs/{id}/retry"),
        &[("csrf", &token), ("back", "https://evil.example/")],
    )
    .await;
    assert_eq!(r.status(), 303);
    let to = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        to.starts_with(&format!("/ops/jobs/{id}?done=retried")),
        "no open redirect: {to}"
    );
    let j = app.job(&id).await;
    assert_eq!((j.job.state.as_str(), j.job.attempts), ("pending", 0));
    let (_, html) = page(&app, &cookie, &to).await;
    assert!(html.contains("1 job(s) made runnable now"));
    // Kill it again from the page, with a reason.
    let r = post_form(
        &app,
        Some(&cookie),
        &format!("/ops/jobs/{id}/kill"),
        &[
            ("csrf", &token),
            ("reason", "operator: duplicate of another job"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let j = app.job(&id).await;
    assert_eq!(j.job.state, "dead");
    assert_eq!(
        j.job.last_error.as_deref(),
        Some("operator: duplicate of another job")
    );
    // Bulk retry of a non-retryable state is refused.
    let r = post_form(
        &app,
        Some(&cookie),
        "/ops/jobs/retry",
        &[("csrf", &token), ("state", "pending")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post_form(
        &app,
        Some(&cookie),
        "/ops/jobs/retry",
        &[("csrf", &token), ("state", "dead"), ("kind", "nope")],
    )
    .await;
    assert_eq!(r.status(), 400);
}

async fn bulk_retry_retries_only_the_filtered_set(app: TestApp) {
    let cookie = login(&app).await;
    let picked: Vec<String> =
        futures::future::join_all((0..3).map(|_| dead_job(&app, "bulk-A", "upstream outage")))
            .await;
    let other = dead_job(&app, "bulk-B", "upstream outage").await;
    let (s, html) = page(&app, &cookie, "/ops/jobs?state=dead&kind=noop&q=bulk-A").await;
    assert_eq!(s, 200);
    for id in &picked {
        assert!(html.contains(id.as_str()));
    }
    assert!(!html.contains(other.as_str()), "the filter hides bulk-B");
    assert!(html.contains("upstream outage"), "the last error is shown");
    let r = post_form(
        &app,
        Some(&cookie),
        "/ops/jobs/retry",
        &[
            ("csrf", &csrf(&html)),
            ("state", "dead"),
            ("kind", "noop"),
            ("q", "bulk-A"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let to = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(to.contains("done=retried&n=3"), "{to}");
    let workers = app.start_workers();
    app.drain().await;
    workers.stop().await;
    for id in &picked {
        assert_eq!(app.job(id).await.job.state, "done");
    }
    assert_eq!(app.job(&other).await.job.state, "dead");
    assert_eq!(app.ledger("bulk-A").await.0, 3, "each picked job ran once");
    assert_eq!(app.ledger("bulk-B").await.0, 0);
}

async fn pages_show_jobs_deliveries_and_integrations(app: TestApp) {
    let cookie = login(&app).await;
    // A job that failed with an error, and one snoozed by a rate limit.
    let failing = app
        .enqueue(&Noop {
            behaviour: Behaviour::FailPermanent,
            ..Default::default()
        })
        .await
        .id()
        .to_string();
    let workers = app.start_workers();
    app.wait_job_state(&failing, "dead", 20).await;
    workers.stop().await;
    let (s, html) = page(&app, &cookie, &format!("/ops/jobs/{failing}")).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("noop failed permanently on purpose"),
        "last error"
    );
    assert!(
        html.contains("id=\"history\"") && html.contains(">dead<"),
        "attempt history"
    );
    assert!(
        html.contains("&quot;behaviour&quot;: &quot;fail_permanent&quot;"),
        "payload, escaped"
    );
    let (s, html) = page(&app, &cookie, "/ops").await;
    assert_eq!(s, 200);
    assert!(html.contains("1 failed attempts"), "last hour: {html}");
    assert!(html.contains("<svg class=\"chart\""));
    // A refused and a stored delivery (no shared-secret header: refused before the body).
    let r = reqwest::Client::new()
        .post(app.url("/extensions/vsts/issue-updated/"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, html) = page(&app, &cookie, "/ops/deliveries").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("id=\"refused\"") && html.contains("401 unauthorized"),
        "{html}"
    );
    // Integrations: switches and mappings.
    let org = app.create("/organizations", json!({"name": "Acme"})).await["id"]
        .as_i64()
        .unwrap();
    let i = app
        .create("/integrations", json!({"provider": "jira", "external_id": "jira:t", "name": "Acme Jira", "metadata": {"base_url": "http://127.0.0.1:9", "shared_secret": "s3cr3t-value"}}))
        .await["id"]
        .as_i64()
        .unwrap();
    let (_, oi) = app
        .api(
            reqwest::Method::PUT,
            &format!("/integrations/{i}/organizations/{org}"),
            Some(json!({"config": {"sync_status_forward": true}})),
        )
        .await;
    app.post(
        &format!("/organization-integrations/{}/external-projects", oi["id"]),
        json!({"external_id": "10000", "resolved_status": "10101", "unresolved_status": "3"}),
    )
    .await;
    let (s, html) = page(&app, &cookie, "/ops/integrations").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("Acme Jira") && html.contains("10101 / 3"),
        "{html}"
    );
    assert!(!html.contains("s3cr3t-value"), "no secret on the page");
    let (s, _) = page(&app, &cookie, "/ops/deliveries?provider=nope").await;
    assert_eq!(s, 400);
    let (s, html) = page(&app, &cookie, "/ops/jobs/does-not-exist").await;
    assert_eq!(s, 404);
    assert!(html.contains("not_found"));
}

/// The login form is read before anyone is authenticated: it may hold a token, not a
/// megabyte. Every /ops form is refused over 16 KiB, and the refusal sets no cookie.
async fn forms_are_small(app: TestApp) {
    let big = "x".repeat(17 * 1024);
    let r = post_form(&app, None, "/ops/login", &[("token", &big)]).await;
    assert_eq!(r.status(), 413);
    assert!(r.headers().get(SET_COOKIE).is_none());
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("at most 16 KiB"), "{body}");
    // A real token still logs in.
    let r = post_form(&app, None, "/ops/login", &[("token", common::TOKEN)]).await;
    assert_eq!(r.status(), 303);
}
