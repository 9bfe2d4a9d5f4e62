//! Deleting a project removes every row that points at it, directly or through its groups.
//! The tables come from the schema catalog (foreign keys), so a table added later that
//! references a project or a group and has no row here makes this test fail until it does.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::TestApp;
use common::sync::{linked_group, put_group};
use serde_json::json;

db_tests!(project_delete_cascades_to_every_referencing_table);

/// (table, column, referenced table) of every foreign key in our schema.
async fn foreign_keys(app: &TestApp) -> Vec<(String, String, String)> {
    let mut tx = app.state.db.begin().await.unwrap();
    issuesync::on_tx!(&mut tx, |c| {
        let sql = if app.state.db.backend() == "postgres" {
            "SELECT kcu.table_name::text, kcu.column_name::text, ccu.table_name::text \
             FROM information_schema.table_constraints tc \
             JOIN information_schema.key_column_usage kcu \
               ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema \
             JOIN information_schema.constraint_column_usage ccu \
               ON ccu.constraint_name = tc.constraint_name AND ccu.table_schema = tc.table_schema \
             WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'"
        } else {
            "SELECT m.name, f.\"from\", f.\"table\" FROM sqlite_master m, \
             pragma_foreign_key_list(m.name) f WHERE m.type = 'table'"
        };
        sqlx::query_as::<_, (String, String, String)>(sql)
            .fetch_all(c)
            .await
            .unwrap()
    })
}

/// Tables that reference `projects`, directly or through another such table (groups…),
/// with the columns that do (self-references such as group_history's are left out).
fn referencing(fks: &[(String, String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut reach: BTreeSet<String> = ["projects".to_string()].into();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    loop {
        let before = out.values().map(BTreeSet::len).sum::<usize>();
        for (table, column, target) in fks {
            if reach.contains(target) && table != target {
                out.entry(table.clone()).or_default().insert(column.clone());
                reach.insert(table.clone());
            }
        }
        if out.values().map(BTreeSet::len).sum::<usize>() == before {
            return out;
        }
    }
}

/// Rows of `table` whose `column` is one of `ids`.
async fn count(app: &TestApp, table: &str, column: &str, ids: &[i64]) -> i64 {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} IN ({list})");
    let mut tx = app.state.db.begin().await.unwrap();
    issuesync::on_tx!(&mut tx, |c| {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(c)
            .await
            .unwrap()
    })
}

/// The ids a referencing column points at: the project's or its groups'.
fn ids_for(column: &str, project: i64, groups: &[i64]) -> Option<Vec<i64>> {
    match column {
        "project_id" => Some(vec![project]),
        "group_id" => Some(groups.to_vec()),
        _ => None,
    }
}

async fn project_delete_cascades_to_every_referencing_table(app: TestApp) {
    let id = |v: serde_json::Value| v["id"].as_i64().unwrap();
    let common::seed::Seed {
        org,
        team,
        project,
        user,
    } = common::seed::org_team_project_member(&app).await;
    let integration = id(app
        .create(
            "/integrations",
            json!({"provider": "jira_server", "external_id": "jira.example.com:c", "name": "c", "metadata": {}}),
        )
        .await);
    let other = id(app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "Other", "teams": [team]}),
        )
        .await);
    let other_group = id(app
        .create(
            &format!("/projects/{other}/groups"),
            json!({"title": "kept"}),
        )
        .await);

    // One row in every table that hangs off the project (project_teams came with it).
    // Linked first, so that the changes below are pushed (and their decisions recorded):
    // group_links.
    let group = linked_group(&app, org, project, "boom", &[(integration, "PROJ-1")]).await;
    for body in [
        json!({"assignedTo": format!("user:{user}")}), // group_assignees, group_subscriptions, activities
        json!({"status": "resolved"}),                 // group_history
        json!({"status": "unresolved"}),               // group_history with prev_history_id
    ] {
        put_group(&app, group, body).await;
    }
    // The outbound jobs of those changes record why they did nothing (the integration is not
    // installed on the organization): sync_decisions rows of the group.
    let workers = app.start_workers();
    app.drain().await;
    workers.stop().await;
    let (s, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("/projects/{project}/ownership"),
            Some(json!({"raw": "path:src/* #backend"})),
        )
        .await;
    assert_eq!(s, 200); // project_ownership

    let history = app.get(&format!("/groups/{group}")).await.1["history"].clone();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| !h["prev_history_id"].is_null()),
        "no history row points at another: {history}"
    );
    let tables = referencing(&foreign_keys(&app).await);
    for expected in [
        "groups",
        "group_history",
        "project_ownership",
        "project_teams",
    ] {
        assert!(
            tables.contains_key(expected),
            "the catalog query missed {expected}: {tables:?}"
        );
    }
    for (table, columns) in &tables {
        let mut rows = 0;
        for column in columns {
            let ids = ids_for(column, project, &[group]).unwrap_or_else(|| {
                panic!("{table}.{column} references a project's row: teach this test its ids")
            });
            rows += count(&app, table, column, &ids).await;
        }
        assert!(
            rows > 0,
            "{table} references projects but this test made no row in it: add one, and \
             check that deleting a project removes it"
        );
    }

    let (s, v) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/projects/{project}"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    assert_eq!(app.get(&format!("/projects/{project}")).await.0, 404);
    for (table, columns) in &tables {
        for column in columns {
            let ids = ids_for(column, project, &[group]).unwrap();
            assert_eq!(
                count(&app, table, column, &ids).await,
                0,
                "{table}.{column} still points at the deleted project"
            );
        }
    }
    // The other project of the organization keeps its rows.
    assert_eq!(app.get(&format!("/groups/{other_group}")).await.0, 200);
    assert_eq!(
        count(&app, "project_teams", "project_id", &[other]).await,
        1
    );
}
