//! Fix: assignee changes of one external issue are applied in event order. 50 Azure DevOps
//! updates of one work item (revision r assigns user r) are posted at once through the real
//! receiver; the webhook and inbound workers run them concurrently. Every round must end on
//! the highest revision's user, and every revision must have exactly one inbound decision:
//! `applied` (in increasing revision order) or `stale_event`. SQLite and Postgres.

mod common;

use std::collections::HashMap;

use common::TestApp;
use common::decisions::{id, install, member, org_team_project};
use serde_json::{Value, json};

const COLLECTION: &str = "80ded3e8-3cd3-43b1-9f96-52032624aa3a";
const SECRET: &str = "3f1c9a0e5b7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";
const UPDATES: i64 = 50;
const ROUNDS: i64 = 5;

db_tests!(fifty_concurrent_updates_of_one_work_item_end_on_the_last);

/// The user revision `rev` of `round` assigns: a different one for every revision of a
/// round, and none the previous round used (its user would be `already_in_state`, not
/// `applied`, when that revision ran first).
fn user_of(round: i64, rev: i64) -> i64 {
    (round % 2) * UPDATES + rev % 100
}

fn update(round: i64, rev: i64) -> Value {
    let path = format!(
        "{}/tests/fixtures/vsts_workitem_updated_assignee_change.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    v["id"] = json!(format!("round-{round}-rev-{rev}"));
    v["resource"]["workItemId"] = json!(77);
    v["resource"]["rev"] = json!(rev);
    v["resource"]["fields"]["System.AssignedTo"] = json!({"oldValue": "someone <someone@example.com>", "newValue": format!("User {rev} <u{}@example.com>", user_of(round, rev))});
    v
}

async fn fifty_concurrent_updates_of_one_work_item_end_on_the_last(app: TestApp) {
    let (org, team, project) = org_team_project(&app, "P", None).await;
    // User n has the verified email un@example.com (two rounds' worth).
    let mut users = HashMap::new();
    for n in 1..=2 * UPDATES {
        users.insert(
            n,
            member(&app, org, &format!("u{n}@example.com"), true, &[team]).await,
        );
    }
    let vsts = id(&app
        .create("/integrations", json!({"provider": "vsts", "external_id": COLLECTION, "name": "acct",
            "metadata": {"domain_name": "https://acct.visualstudio.com/", "access_token": "t", "subscription": {"id": "s", "secret": SECRET}}}))
        .await);
    install(&app, vsts, org, json!({"sync_reverse_assignment": true})).await;
    let g = id(&app
        .create(
            &format!("/projects/{project}/groups"),
            json!({"title": "work item 77"}),
        )
        .await);
    app.create(
        "/external-issues",
        json!({"organization_id": org, "integration_id": vsts, "key": "77", "group_ids": [g]}),
    )
    .await;
    let _workers = app.start_workers();

    for round in 0..ROUNDS {
        // Revisions continue across rounds: round k uses k*100+1 ..= k*100+50.
        let revs: Vec<i64> = (1..=UPDATES).map(|n| round * 100 + n).collect();
        let posts = revs.iter().map(|rev| {
            let body = update(round, *rev);
            let req = app
                .client
                .post(app.url("/extensions/vsts/issue-updated/"))
                .header("shared-secret", SECRET)
                .json(&body);
            async move {
                let r = req.send().await.expect("post");
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.expect("json");
                assert_eq!(v["status"], "queued", "{v}");
                v["delivery_id"].as_i64().expect("delivery id")
            }
        });
        let deliveries: Vec<i64> = futures::future::join_all(posts).await;
        let rev_of: HashMap<i64, i64> = deliveries
            .iter()
            .copied()
            .zip(revs.iter().copied())
            .collect();
        app.drain().await;

        let last = users[&user_of(round, round * 100 + UPDATES)];
        assert_eq!(
            app.get(&format!("/groups/{g}")).await.1["assignedTo"],
            format!("user:{last}"),
            "round {round} ended on an older revision"
        );
        // One inbound decision per revision; applied ones in increasing revision order.
        let mut ds = common::decisions::db_group_decisions(&app, g).await;
        ds.retain(|d| {
            d.direction == "inbound" && d.refs.delivery_id.is_some_and(|x| rev_of.contains_key(&x))
        });
        ds.sort_by_key(|d| d.id);
        assert_eq!(ds.len() as i64, UPDATES, "round {round}: {ds:#?}");
        let mut seen: Vec<i64> = ds
            .iter()
            .map(|d| rev_of[&d.refs.delivery_id.unwrap_or_default()])
            .collect();
        let applied: Vec<i64> = ds
            .iter()
            .filter(|d| d.reason == "applied")
            .map(|d| rev_of[&d.refs.delivery_id.unwrap_or_default()])
            .collect();
        assert!(
            applied.windows(2).all(|w| w[0] < w[1]),
            "round {round} applied out of order: {applied:?}"
        );
        assert_eq!(
            applied.last(),
            revs.last(),
            "round {round}: the last revision was not applied"
        );
        for d in ds.iter().filter(|d| d.reason != "applied") {
            assert_eq!(d.reason, "stale_event", "round {round}: {d:?}");
            let rev = rev_of[&d.refs.delivery_id.unwrap_or_default()];
            assert!(
                d.detail.starts_with(&format!(
                    "event sequence {rev} is older than the applied assignee event "
                )),
                "{d:?}"
            );
        }
        seen.sort_unstable();
        assert_eq!(
            seen, revs,
            "round {round}: a revision has no decision, or two"
        );
        eprintln!(
            "round {round}: {} applied, {} stale_event",
            applied.len(),
            UPDATES - applied.len() as i64
        );
    }
}
