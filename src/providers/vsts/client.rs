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
    /// Where a refreshed token is saved; without it a 401 is final.
    db: Option<&'a crate::db::Db>,
    refreshed: std::sync::Mutex<Option<String>>,
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
            db: None,
            refreshed: std::sync::Mutex::new(None),
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
        r.limit = Some(("vsts".into(), self.integration.id));
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

impl<'a> VstsClient<'a> {
    /// GET a work item.
    pub async fn get_work_item(&self, id: &str) -> Result<Value, ApiError> {
        let req = self.request(
            Method::GET,
            &format!("_apis/wit/workitems/{}", id.trim()),
            false,
        );
        Ok(self.send(&req).await?.json)
    }

    /// All well-formed projects (100 a page, at most 10 pages): (id, name).
    pub async fn get_projects(&self) -> Result<Vec<(String, String)>, ApiError> {
        let mut out = Vec::new();
        for page in 0..10 {
            let req = self
                .request(Method::GET, "_apis/projects", false)
                .query("stateFilter", "WellFormed")
                .query("$skip", (page * 100).to_string())
                .query("$top", "100");
            let v = self.send(&req).await?.json;
            let items = v
                .get("value")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = items.len();
            out.extend(items.iter().filter_map(|p| {
                Some((
                    p.get("id")?.as_str()?.to_string(),
                    p.get("name")?.as_str()?.to_string(),
                ))
            }));
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// PATCH one field of a work item: replace with a value, or remove it.
    pub async fn update_field(
        &self,
        id: &str,
        field: &str,
        value: Option<&str>,
    ) -> Result<(), ApiError> {
        let path = format!("/fields/{field}");
        let body = match value {
            Some(v) => serde_json::json!([{"op": "replace", "path": path, "value": v}]),
            None => serde_json::json!([{"op": "remove", "path": path}]),
        };
        let mut req = self
            .request(
                Method::PATCH,
                &format!("_apis/wit/workitems/{}", id.trim()),
                false,
            )
            .json(&body);
        req.json_patch = true;
        self.send(&req).await.map(|_| ())
    }

    /// The account's users, paging with the continuation token: mail addresses.
    pub async fn user_emails(&self) -> Result<Vec<String>, ApiError> {
        let base = self
            .integration
            .metadata
            .0
            .get("vssps_url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://{}.vssps.visualstudio.com", self.integration.name));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..50 {
            let mut req = Request::new(
                Method::GET,
                format!("{}/_apis/graph/users", base.trim_end_matches('/')),
            )
            .query("api-version", API_VERSION_PREVIEW);
            req.limit = Some(("vsts".into(), self.integration.id));
            if let Some(t) = &token {
                req = req.query("continuationToken", t.clone());
            }
            let resp = self.send(&req).await?;
            out.extend(
                resp.json
                    .get("value")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.get("mailAddress")?.as_str().map(str::to_string)),
            );
            match resp.continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }
}

impl<'a> VstsClient<'a> {
    /// Lets a 401 refresh the token once (and save it) when the integration has a
    /// `refresh_token` and a `token_url`.
    pub fn with_db(mut self, db: &'a crate::db::Db) -> Self {
        self.db = Some(db);
        self
    }

    fn current_auth(&self) -> Auth {
        match self.refreshed.lock().ok().and_then(|t| t.clone()) {
            Some(t) => Auth::Bearer(t),
            None => self.auth.clone(),
        }
    }

    /// Sends; on a 401, refreshes the token once if it can, else stops with a clear error.
    async fn send(&self, req: &Request<'_>) -> Result<crate::providers::http::Response, ApiError> {
        match self.http.send(&self.current_auth(), req).await {
            Err(ApiError::Permanent {
                status: 401,
                message,
            }) => {
                let m = &self.integration.metadata.0;
                let (Some(db), Some(refresh), Some(url)) = (
                    self.db,
                    m.get("refresh_token").and_then(Value::as_str),
                    m.get("token_url").and_then(Value::as_str),
                ) else {
                    return Err(ApiError::Permanent {
                        status: 401,
                        message: format!(
                            "Azure DevOps refused the access token and no refresh token is configured: {message}"
                        ),
                    });
                };
                let token = self.refresh(db, refresh, url).await?;
                if let Ok(mut t) = self.refreshed.lock() {
                    *t = Some(token);
                }
                self.http.send(&self.current_auth(), req).await
            }
            other => other,
        }
    }

    /// OAuth 2 refresh-token grant; the new tokens are saved in the integration's metadata.
    async fn refresh(
        &self,
        db: &crate::db::Db,
        refresh_token: &str,
        url: &str,
    ) -> Result<String, ApiError> {
        let m = &self.integration.metadata.0;
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.to_string()),
        ];
        for k in ["client_id", "client_secret"] {
            if let Some(v) = m.get(k).and_then(Value::as_str) {
                form.push((k, v.to_string()));
            }
        }
        let resp = self
            .http
            .client
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                ApiError::Transient(format!("token refresh failed: {}", e.without_url()))
            })?;
        if !resp.status().is_success() {
            return Err(ApiError::Permanent {
                status: 401,
                message: format!("token refresh was refused with {}", resp.status().as_u16()),
            });
        }
        let v: Value = resp.json().await.map_err(|e| {
            ApiError::Transient(format!("token refresh answer: {}", e.without_url()))
        })?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::Permanent {
                status: 401,
                message: "token refresh answer has no access_token".into(),
            })?
            .to_string();
        let mut metadata = m.clone();
        if let Some(o) = metadata.as_object_mut() {
            o.insert("access_token".into(), Value::String(token.clone()));
            if let Some(r) = v.get("refresh_token").and_then(Value::as_str) {
                o.insert("refresh_token".into(), Value::String(r.to_string()));
            }
        }
        let saved = async {
            let mut tx = db.begin().await?;
            crate::store::integrations::update_integration(
                &mut tx,
                self.integration.id,
                &self.integration.name,
                &metadata,
                self.integration.status,
            )
            .await?;
            tx.commit().await?;
            Ok::<_, crate::store::StoreError>(())
        }
        .await;
        if let Err(e) = saved {
            tracing::warn!(error = %e, integration_id = self.integration.id, "cannot save the refreshed token");
        }
        tracing::info!(
            integration_id = self.integration.id,
            "Azure DevOps token refreshed"
        );
        Ok(token)
    }
}
