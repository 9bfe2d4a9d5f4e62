//! Azure DevOps REST client (spec §2.1): Bearer auth, api-version 4.1.

use reqwest::Method;
use serde_json::Value;

use crate::providers::http::{ApiError, Auth, Http, Request};
use crate::store::integrations::Integration;

pub const API_VERSION: &str = "4.1";
pub const API_VERSION_PREVIEW: &str = "4.1-preview.1";
/// Work item state categories that count as done (spec §2.3).
pub const DONE_CATEGORIES: &[&str] = &["Resolved", "Completed", "Closed"];

pub struct VstsClient<'a> {
    pub http: &'a Http,
    pub integration: &'a Integration,
    pub auth: Auth,
    /// `https://acct.visualstudio.com/` (with a trailing slash).
    pub instance: String,
}

impl<'a> VstsClient<'a> {
    pub fn new(http: &'a Http, integration: &'a Integration) -> Result<Self, ApiError> {
        let m = &integration.metadata.0;
        let token = m
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::Permanent {
                status: 0,
                message: format!(
                    "integration {} has no access_token in its metadata",
                    integration.id
                ),
            })?;
        let base = m
            .get("domain_name")
            .or_else(|| m.get("base_url"))
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::Permanent {
                status: 0,
                message: format!(
                    "integration {} has no domain_name in its metadata",
                    integration.id
                ),
            })?;
        Ok(VstsClient {
            http,
            integration,
            auth: Auth::Bearer(token.to_string()),
            instance: format!("{}/", base.trim_end_matches('/')),
        })
    }

    fn request(&self, method: Method, path: &str, preview: bool) -> Request<'static> {
        let version = if preview {
            API_VERSION_PREVIEW
        } else {
            API_VERSION
        };
        let mut r = Request::new(method.clone(), format!("{}{}", self.instance, path))
            .query("api-version", version);
        r.extra_headers
            .push(("X-HTTP-Method-Override", method.as_str().to_string()));
        r.extra_headers
            .push(("X-TFS-FedAuthRedirect", "Suppress".into()));
        r
    }

    /// Names of the states of the first work item type (Bug, Issue, Task) that has any,
    /// with their categories (cached 240 s).
    pub async fn work_item_states(&self, project: &str) -> Result<Vec<(String, String)>, ApiError> {
        let mut last = Value::Null;
        for kind in ["Bug", "Issue", "Task"] {
            let req = self.request(
                Method::GET,
                &format!("{project}/_apis/wit/workitemtypes/{kind}/states"),
                true,
            );
            last = self
                .http
                .get_cached(self.integration.id, &self.auth, &req)
                .await?;
            if last.get("count").and_then(Value::as_i64).unwrap_or(0) > 0 {
                break;
            }
        }
        Ok(last
            .get("value")
            .and_then(Value::as_array)
            .map(|states| {
                states
                    .iter()
                    .filter_map(|s| {
                        Some((
                            s.get("name")?.as_str()?.to_string(),
                            s.get("category")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The names of the done states of a project.
    pub async fn done_states(&self, project: &str) -> Result<Vec<String>, ApiError> {
        Ok(self
            .work_item_states(project)
            .await?
            .into_iter()
            .filter(|(_, c)| DONE_CATEGORIES.contains(&c.as_str()))
            .map(|(n, _)| n)
            .collect())
    }
}
