//! What a provider request is: its path (`Path`, `path!`, whose template spans show) and the
//! `Request` the client sends.

use reqwest::Method;
use serde_json::Value;

/// A request path and the template it was formatted from. Spans name the template, so that
/// ids and tokens in paths stay out of traces. Build one with [`crate::path!`] or from a
/// literal.
#[derive(Debug, Clone)]
pub struct Path {
    pub template: &'static str,
    pub path: String,
}

impl From<&'static str> for Path {
    fn from(p: &'static str) -> Path {
        Path {
            template: p,
            path: p.to_string(),
        }
    }
}

/// `path!("/issue/{key}/assignee", key = k)`: the formatted path with its template.
#[macro_export]
macro_rules! path {
    ($t:literal $(, $n:ident = $a:expr)* $(,)?) => {
        $crate::providers::http::Path { template: $t, path: format!($t $(, $n = $a)*) }
    };
}

pub struct Request<'a> {
    pub method: Method,
    /// The path template traces show (never the URL, which may hold a token).
    pub route: &'static str,
    /// Absolute URL without query.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub body: Option<&'a Value>,
    /// JSON-patch (ADO PATCH) instead of JSON.
    pub json_patch: bool,
    pub extra_headers: Vec<(&'static str, String)>,
    /// (provider, integration id) whose rate limit this request counts against.
    pub limit: Option<(String, i64)>,
    /// What errors and logs show instead of `url` when the URL holds a credential.
    pub shown_url: Option<String>,
    /// Check the server's TLS certificate (false only for a Jira Server integration with
    /// `verify_ssl: false`, e.g. a self-signed Data Center instance).
    pub verify_tls: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, route: &'static str, url: impl Into<String>) -> Self {
        Request {
            method,
            route,
            url: url.into(),
            query: Vec::new(),
            body: None,
            json_patch: false,
            extra_headers: Vec::new(),
            limit: None,
            shown_url: None,
            verify_tls: true,
        }
    }
    /// The URL as errors may show it.
    pub fn shown_url(&self) -> &str {
        self.shown_url.as_deref().unwrap_or(&self.url)
    }
    pub fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_string(), v.into()));
        self
    }
    pub fn json(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }
}
