//! Jira REST client for Cloud (Connect JWT) and Server (OAuth1): the calls
//! Sentry's `jira_server/client.py` and `jira/client.py` make.

use reqwest::Method;
use serde_json::Value;

use crate::providers::http::{ApiError, Auth, Http, Path, Request};
use crate::store::integrations::Integration;

pub struct JiraClient<'a> {
    pub http: &'a Http,
    pub integration: &'a Integration,
    pub auth: Auth,
    pub base_url: String,
}

fn meta<'m>(i: &'m Integration, key: &str) -> Result<&'m str, ApiError> {
    i.metadata
        .0
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Permanent {
            status: 0,
            message: format!("integration {} has no {key} in its metadata", i.id),
        })
}

impl<'a> JiraClient<'a> {
    /// `app_key` is our Connect app key (Jira Cloud only).
    pub fn new(
        http: &'a Http,
        integration: &'a Integration,
        app_key: &str,
    ) -> Result<Self, ApiError> {
        let base_url = meta(integration, "base_url")?
            .trim_end_matches('/')
            .to_string();
        let auth = if integration.provider == "jira_server" {
            Auth::OAuth1 {
                consumer_key: meta(integration, "consumer_key")?.to_string(),
                private_key_pem: meta(integration, "private_key")?.into(),
                access_token: meta(integration, "access_token")?.into(),
            }
        } else {
            let base_path = base_url
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            Auth::ConnectJwt {
                app_key: app_key.to_string(),
                shared_secret: meta(integration, "shared_secret")?.into(),
                base_path,
            }
        };
        Ok(JiraClient {
            http,
            integration,
            auth,
            base_url,
        })
    }

    pub fn request(&self, method: Method, path: impl Into<Path>) -> Request<'static> {
        let path = path.into();
        let mut r = Request::new(
            method,
            path.template,
            format!("{}{}", self.base_url, path.path),
        );
        r.limit = Some((self.integration.provider.clone(), self.integration.id));
        // Jira Server's install option (Sentry's too); Cloud is always verified.
        r.verify_tls = !(self.integration.provider == "jira_server"
            && self.integration.metadata.0.get("verify_ssl") == Some(&Value::Bool(false)));
        if self.integration.provider == "jira" {
            r.extra_headers
                .push(("x-atlassian-force-account-id", "true".into()));
        }
        r
    }

    /// Ids of the statuses whose category is `done` (cached 240 s).
    pub async fn done_status_ids(&self) -> Result<Vec<String>, ApiError> {
        let statuses = self
            .http
            .get_cached(
                self.integration.id,
                &self.auth,
                &self.request(Method::GET, "/rest/api/2/status"),
            )
            .await?;
        Ok(statuses
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| {
                        s.pointer("/statusCategory/key").and_then(Value::as_str) == Some("done")
                    })
                    .filter_map(|s| match s.get("id") {
                        Some(Value::String(id)) => Some(id.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Jira Cloud: an account's email (needs the access_email_addresses scope; cached 240 s).
    pub async fn get_email(&self, account_id: &str) -> Result<Option<String>, ApiError> {
        let req = self
            .request(Method::GET, "/rest/api/3/user/email")
            .query("accountId", account_id);
        let v = self
            .http
            .get_cached(self.integration.id, &self.auth, &req)
            .await?;
        Ok(v.get("email")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_string))
    }
}

impl JiraClient<'_> {
    /// The account our requests act as (`GET /rest/api/2/myself`): on Jira Cloud a Connect
    /// app's own app user (`accountType: app`), since app-JWT requests run as that user.
    /// Returns its `accountId` (Cloud) or `name` (Server).
    pub async fn myself(&self) -> Result<Option<String>, ApiError> {
        let v = self
            .http
            .send(&self.auth, &self.request(Method::GET, "/rest/api/2/myself"))
            .await?
            .json;
        let field = if self.integration.provider == "jira" {
            "accountId"
        } else {
            "name"
        };
        Ok(v.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string))
    }
}

/// A Jira user as the assignable-search API returns it.
#[derive(Debug, Clone)]
pub struct JiraUser {
    /// `name` (Server) or `accountId` (Cloud): what the assignee API takes.
    pub id: String,
    pub email: Option<String>,
}

impl<'a> JiraClient<'a> {
    fn is_cloud(&self) -> bool {
        self.integration.provider == "jira"
    }

    /// GET /rest/api/2/issue/{key} with what the status sync reads.
    pub async fn get_issue(&self, key: &str) -> Result<Value, ApiError> {
        self.get_issue_fields(key, "status,project,assignee").await
    }

    /// GET /rest/api/2/issue/{key} with `fields` (comma-separated).
    pub async fn get_issue_fields(&self, key: &str, fields: &str) -> Result<Value, ApiError> {
        let req = self
            .request(
                Method::GET,
                crate::path!("/rest/api/2/issue/{key}", key = path_segment(key)),
            )
            .query("fields", fields);
        Ok(self.http.send(&self.auth, &req).await?.json)
    }

    /// The issue's transitions (cached 240 s).
    pub async fn get_transitions(&self, key: &str) -> Result<Vec<Value>, ApiError> {
        let req = self.request(
            Method::GET,
            crate::path!(
                "/rest/api/2/issue/{key}/transitions",
                key = path_segment(key)
            ),
        );
        let v = self
            .http
            .get_cached(self.integration.id, &self.auth, &req)
            .await?;
        Ok(v.get("transitions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    pub async fn transition_issue(&self, key: &str, transition_id: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({"transition": {"id": transition_id}});
        let req = self
            .request(
                Method::POST,
                crate::path!(
                    "/rest/api/2/issue/{key}/transitions",
                    key = path_segment(key)
                ),
            )
            .json(&body);
        self.http.send(&self.auth, &req).await.map(|_| ())
    }

    /// Users assignable to the issue that match `email` (cached 240 s).
    pub async fn search_assignable(
        &self,
        key: &str,
        email: &str,
    ) -> Result<Vec<JiraUser>, ApiError> {
        let param = if self.is_cloud() { "query" } else { "username" };
        let req = self
            .request(Method::GET, "/rest/api/2/user/assignable/search")
            .query("issueKey", key)
            .query(param, email);
        let v = self
            .http
            .get_cached(self.integration.id, &self.auth, &req)
            .await?;
        let id_field = if self.is_cloud() { "accountId" } else { "name" };
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| {
                        Some(JiraUser {
                            id: u.get(id_field)?.as_str()?.to_string(),
                            email: u
                                .get("emailAddress")
                                .and_then(Value::as_str)
                                .filter(|e| !e.is_empty())
                                .map(str::to_string),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// PUT the assignee (`None` unassigns): `{"name": …}` on Server, `{"accountId": …}` on Cloud.
    pub async fn assign_issue(&self, key: &str, user: Option<&str>) -> Result<(), ApiError> {
        let field = if self.is_cloud() { "accountId" } else { "name" };
        let body = serde_json::json!({ field: user });
        let req = self
            .request(
                Method::PUT,
                crate::path!("/rest/api/2/issue/{key}/assignee", key = path_segment(key)),
            )
            .json(&body);
        self.http.send(&self.auth, &req).await.map(|_| ())
    }
}

/// An issue key as one path segment (keys are `[A-Z0-9]+-\d+`; anything else is encoded).
fn path_segment(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}
