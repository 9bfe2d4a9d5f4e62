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
    issuesync::store::decisions::list_group_decisions(&mut tx, group, None, 10_000)
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

/// A group's decisions as the API returns them; asserts the database holds the same rows.
pub async fn group_decisions(app: &TestApp, group: i64) -> Vec<Value> {
    let api = api_pages(app, &format!("/groups/{group}/sync")).await;
    let db = db_group_decisions(app, group).await;
    let api_rows: Vec<(i64, String, String)> = api
        .iter()
        .map(|d| {
            (
                d["id"].as_i64().expect("id"),
                d["reason"].as_str().expect("reason").to_string(),
                d["outcome"].as_str().expect("outcome").to_string(),
            )
        })
        .collect();
    let db_rows: Vec<(i64, String, String)> = db
        .iter()
        .map(|d| (d.id, d.reason.clone(), d.outcome.clone()))
        .collect();
    assert_eq!(api_rows, db_rows, "the API and the database disagree");
    api
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
