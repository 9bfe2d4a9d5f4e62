//! Azure DevOps REST client (as Sentry's `vsts/client.py`): Bearer auth, api-version 4.1.

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::providers::http::{ApiError, Auth, Http, Path, Request, Response};
use crate::providers::vsts::oauth::{self, Tokens};
use crate::store::integrations::Integration;

pub const API_VERSION: &str = "4.1";
pub const API_VERSION_PREVIEW: &str = "4.1-preview.1";
/// Work item state categories that count as done (Sentry's `get_resolve_sync_action`).
pub const DONE_CATEGORIES: &[&str] = &["Resolved", "Completed", "Closed"];

pub struct VstsClient<'a> {
    pub http: &'a Http,
    pub integration: &'a Integration,
    /// `https://acct.visualstudio.com/` (with a trailing slash).
    pub instance: String,
    /// Where refreshed tokens are saved; without it nothing is refreshed and a 401 is final.
    db: Option<&'a crate::db::Db>,
    /// The current tokens: the metadata's, then the refreshed ones.
    tokens: std::sync::Mutex<Tokens>,
}

impl<'a> VstsClient<'a> {
    pub fn new(http: &'a Http, integration: &'a Integration) -> Result<Self, ApiError> {
        let m = &integration.metadata.0;
        let tokens = Tokens::from_metadata(m).ok_or_else(|| ApiError::Permanent {
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
            instance: format!("{}/", base.trim_end_matches('/')),
            db: None,
            tokens: std::sync::Mutex::new(tokens),
        })
    }

    fn request(&self, method: Method, path: impl Into<Path>, preview: bool) -> Request<'static> {
        let path = path.into();
        let version = if preview {
            API_VERSION_PREVIEW
        } else {
            API_VERSION
        };
        let mut r = Request::new(
            method.clone(),
            path.template,
            format!("{}{}", self.instance, path.path),
        )
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
                crate::path!(
                    "{project}/_apis/wit/workitemtypes/{kind}/states",
                    project = project,
                    kind = kind
                ),
                true,
            );
            last = self.get_cached(&req).await?;
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
            crate::path!("_apis/wit/workitems/{id}", id = id.trim()),
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
                crate::path!("_apis/wit/workitems/{id}", id = id.trim()),
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
                "/_apis/graph/users",
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
    /// Lets the client refresh the token (ahead of `metadata.expires`, and once on a 401) and
    /// save the new one, when the integration has a `refresh_token`.
    pub fn with_db(mut self, db: &'a crate::db::Db) -> Self {
        self.db = Some(db);
        self
    }

    fn tokens(&self) -> Tokens {
        match self.tokens.lock() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Refreshes with the current refresh token (or takes the one another job just got).
    async fn refresh(&self) -> Result<(), ApiError> {
        let (Some(db), Some(used)) = (self.db, self.tokens().refresh) else {
            return Err(ApiError::Permanent {
                status: 401,
                message:
                    "the Azure DevOps token needs a refresh and no refresh token is configured"
                        .into(),
            });
        };
        let fresh = oauth::refresh(self.http, db, self.integration, used.expose_secret()).await?;
        match self.tokens.lock() {
            Ok(mut t) => *t = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    fn can_refresh(&self) -> bool {
        self.db.is_some() && self.tokens().refresh.is_some()
    }

    /// Runs `call` with a fresh token: refreshed first when it expires within the margin (as
    /// Sentry checks `expires` before each request), and once more on a 401 when the token
    /// was not just refreshed. Every request of this client goes through here.
    async fn authorized<T, F, Fut>(&self, call: F) -> Result<T, ApiError>
    where
        F: Fn(Auth) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut refreshed = false;
        if self.can_refresh() && self.tokens().expiring(crate::now_ms() / 1000) {
            self.refresh().await?;
            refreshed = true;
        }
        match call(Auth::Bearer(self.tokens().access)).await {
            Err(ApiError::Permanent {
                status: 401,
                message,
            }) if !refreshed => {
                if !self.can_refresh() {
                    return Err(ApiError::Permanent {
                        status: 401,
                        message: format!(
                            "Azure DevOps refused the access token and no refresh token is configured: {message}"
                        ),
                    });
                }
                self.refresh().await?;
                call(Auth::Bearer(self.tokens().access)).await
            }
            other => other,
        }
    }

    async fn send(&self, req: &Request<'_>) -> Result<Response, ApiError> {
        self.authorized(|auth| async move { self.http.send(&auth, req).await })
            .await
    }

    /// A GET through the 240 s cache; the token is checked only when the cache misses.
    async fn get_cached(&self, req: &Request<'_>) -> Result<Value, ApiError> {
        if let Some(hit) = self.http.cached(self.integration.id, req).await {
            return Ok(hit);
        }
        let resp = self.send(req).await?;
        self.http.cache(self.integration.id, req, &resp.json).await;
        Ok(resp.json)
    }
}
