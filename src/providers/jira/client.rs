//! Jira REST client for Cloud (Connect JWT) and Server (OAuth1): the calls of spec §3.3/§4.4.

use reqwest::Method;
use serde_json::Value;

use crate::providers::http::{ApiError, Auth, Http, Request};
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
                private_key_pem: meta(integration, "private_key")?.to_string(),
                access_token: meta(integration, "access_token")?.to_string(),
            }
        } else {
            let base_path = base_url
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            Auth::ConnectJwt {
                app_key: app_key.to_string(),
                shared_secret: meta(integration, "shared_secret")?.to_string(),
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

    pub fn request(&self, method: Method, path: &str) -> Request<'static> {
        let mut r = Request::new(method, format!("{}{}", self.base_url, path));
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
