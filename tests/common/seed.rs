//! The organization most tests start from, made through the admin API.
#![allow(dead_code)]

use serde_json::{Value, json};

use super::TestApp;

pub struct Seed {
    pub org: i64,
    pub team: i64,
    pub project: i64,
    /// A member of `team` with the verified email `lauryn@sentry.io`.
    pub user: i64,
}

fn id(v: Value) -> i64 {
    v["id"].as_i64().expect("an id")
}

/// Organization "Acme", team "Backend", project "Web" of that team, and a member of the team.
pub async fn org_team_project_member(app: &TestApp) -> Seed {
    let org = id(app.create("/organizations", json!({"name": "Acme"})).await);
    let team = id(app
        .create(
            &format!("/organizations/{org}/teams"),
            json!({"name": "Backend"}),
        )
        .await);
    let project = id(app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "Web", "teams": [team]}),
        )
        .await);
    let user = id(app
        .create(
            "/users",
            json!({"name": "Lauryn", "emails": [{"email": "lauryn@sentry.io", "is_verified": true}]}),
        )
        .await);
    app.create(
        &format!("/organizations/{org}/members"),
        json!({"user_id": user, "teams": [team]}),
    )
    .await;
    Seed {
        org,
        team,
        project,
        user,
    }
}
