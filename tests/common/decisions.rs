//! Reading sync decisions in tests: through the admin API (every page) and straight from
//! the database, checking that both say the same.

use serde_json::Value;

use super::TestApp;

/// A group's decisions from the database, newest first.
pub async fn db_group_decisions(
    app: &TestApp,
    group: i64,
) -> Vec<issuesync::store::decisions::Decision> {
    let mut tx = app.state.db.begin().await.expect("begin");
    use issuesync::store::decisions::{Timeline, list_timeline};
    list_timeline(&mut tx, Timeline::Group(group), None, 10_000)
        .await
        .expect("decisions")
}

/// Every page of `/api/v1{path}` (a timeline route), newest first.
pub async fn api_pages(app: &TestApp, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &before {
            Some(c) => format!("{path}{sep}limit=100&before={c}"),
            None => format!("{path}{sep}limit=100"),
        };
        let (s, v) = app.get(&url).await;
        assert_eq!(s, 200, "GET {url}: {v}");
        out.extend(
            v["decisions"]
                .as_array()
                .expect("decisions")
                .iter()
                .cloned(),
        );
        match v["next_cursor"].as_str() {
            Some(c) => before = Some(c.to_string()),
            None => return out,
        }
    }
}

/// A group's decisions as the API returns them; asserts the database holds the same rows
/// (read again when a running job wrote one in between).
pub async fn group_decisions(app: &TestApp, group: i64) -> Vec<Value> {
    let key = |id: i64, reason: &str, outcome: &str| (id, reason.to_string(), outcome.to_string());
    let mut tries = 0;
    loop {
        let api = api_pages(app, &format!("/groups/{group}/sync")).await;
        let db = db_group_decisions(app, group).await;
        let api_rows: Vec<_> = api
            .iter()
            .map(|d| {
                key(
                    d["id"].as_i64().expect("id"),
                    d["reason"].as_str().expect("reason"),
                    d["outcome"].as_str().expect("outcome"),
                )
            })
            .collect();
        let db_rows: Vec<_> = db
            .iter()
            .map(|d| key(d.id, &d.reason, &d.outcome))
            .collect();
        if api_rows == db_rows {
            return api;
        }
        tries += 1;
        assert!(
            tries < 5,
            "the API and the database disagree: {api_rows:?} vs {db_rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The newest decision of `direction`/`field` with `reason`; panics with the timeline when
/// there is none.
pub fn find<'a>(ds: &'a [Value], direction: &str, field: &str, reason: &str) -> &'a Value {
    ds.iter()
        .find(|d| d["reason"] == reason && d["direction"] == direction && d["field"] == field)
        .unwrap_or_else(|| {
            panic!(
                "no {direction} {field} decision {reason}; the timeline:\n{}",
                ds.iter()
                    .map(|d| d["sentence"].as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

/// How many decisions have this reason.
pub fn count(ds: &[Value], reason: &str) -> usize {
    ds.iter().filter(|d| d["reason"] == reason).count()
}

/// Waits until the group has a decision with `reason` (for jobs that retry).
pub async fn wait_for(app: &TestApp, group: i64, reason: &str, secs: u64) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let ds = group_decisions(app, group).await;
        if count(&ds, reason) > 0 {
            return ds;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {reason} decision for group {group} after {secs}s: {ds:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `id` of a created object.
pub fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

/// Organization "Acme" with team "Backend" and a project of that team (`name`, `slug` when
/// given); returns (organization, team, project).
pub async fn org_team_project(app: &TestApp, name: &str, slug: Option<&str>) -> (i64, i64, i64) {
    let org = id(&app
        .create("/organizations", serde_json::json!({"name": "Acme"}))
        .await);
    let team = id(&app
        .create(
            &format!("/organizations/{org}/teams"),
            serde_json::json!({"name": "Backend"}),
        )
        .await);
    let mut body = serde_json::json!({"name": name, "teams": [team]});
    if let Some(s) = slug {
        body["slug"] = serde_json::json!(s);
    }
    let project = id(&app
        .create(&format!("/organizations/{org}/projects"), body)
        .await);
    (org, team, project)
}

/// A user with one email, member of `org` (in `teams`); returns the user id.
pub async fn member(app: &TestApp, org: i64, email: &str, verified: bool, teams: &[i64]) -> i64 {
    let user = id(&app
        .create(
            "/users",
            serde_json::json!({"name": email, "emails": [{"email": email, "is_verified": verified}]}),
        )
        .await);
    app.create(
        &format!("/organizations/{org}/members"),
        serde_json::json!({"user_id": user, "teams": teams}),
    )
    .await;
    user
}

/// Installs `integration` on `org` with `config`; returns the installation id.
pub async fn install(app: &TestApp, integration: i64, org: i64, config: Value) -> i64 {
    let (s, oi) = app
        .api(
            reqwest::Method::PUT,
            &format!("/integrations/{integration}/organizations/{org}"),
            Some(serde_json::json!({"config": config})),
        )
        .await;
    assert_eq!(s, 200, "{oi}");
    id(&oi)
}
