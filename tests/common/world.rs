//! The world of the outbound tests: one organization with Jira Server, Jira Cloud and ADO
//! installed against one wiremock provider.

use serde_json::json;
use wiremock::{MockServer, Request};

use super::TestApp;
use super::decisions::{id, install, member, org_team_project};
use super::sync::{linked_group, map_project, requests, signing_jira_server};

pub struct World {
    pub org: i64,
    pub project: i64,
    pub team: i64,
    pub user: i64,
    pub jira_server: i64,
    pub jira: i64,
    pub vsts: i64,
    pub mock: MockServer,
}

/// Jira Server, Jira Cloud and ADO installed with every switch on and status mappings
/// (Jira project 10000: 10101 / 3; ADO proj-guid: Resolved / Active); Lauryn (verified
/// lauryn@sentry.io) in the project's team.
pub async fn world(app: &TestApp) -> World {
    let mock = MockServer::start().await;
    let (org, team, project) = org_team_project(app, "Web", None).await;
    let user = member(app, org, "lauryn@sentry.io", true, &[team]).await;
    let jira_server = signing_jira_server(app, &mock.uri()).await;
    let jira = id(&app
        .create("/integrations", json!({"provider": "jira", "external_id": "jira:tenant", "name": "JIRA", "metadata": {"base_url": mock.uri(), "shared_secret": "cloud-secret"}}))
        .await);
    let vsts = id(&app
        .create("/integrations", json!({"provider": "vsts", "external_id": "80ded3e8-3cd3-43b1-9f96-52032624aa3a", "name": "acct",
            "metadata": {"domain_name": format!("{}/", mock.uri()), "vssps_url": mock.uri(), "access_token": "ado-token", "subscription": {"id": "s", "secret": "ado-secret"}}}))
        .await);
    let config = json!({"sync_status_forward": true, "sync_status_reverse": true, "sync_forward_assignment": true, "sync_reverse_assignment": true});
    for (i, ext, resolved, unresolved) in [
        (jira_server, "10000", "10101", "3"),
        (jira, "10000", "10101", "3"),
        (vsts, "proj-guid", "Resolved", "Active"),
    ] {
        let oi = install(app, i, org, config.clone()).await;
        map_project(app, oi, ext, resolved, unresolved).await;
    }
    World {
        org,
        project,
        team,
        user,
        jira_server,
        jira,
        vsts,
        mock,
    }
}

impl World {
    /// A group ("boom") linked to `key` of each given integration.
    pub async fn group(&self, app: &TestApp, links: &[(i64, &str)]) -> i64 {
        linked_group(app, self.org, self.project, "boom", links).await
    }

    /// The requests the provider received for `method_name` `path_str`.
    pub async fn requests(&self, method_name: &str, path_str: &str) -> Vec<Request> {
        requests(&self.mock, method_name, path_str).await
    }
}
