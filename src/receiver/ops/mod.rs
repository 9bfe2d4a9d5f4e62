//! `/ops`: the operator page. Server-rendered (minijinja templates compiled into the
//! binary), usable without JavaScript; a small script only auto-refreshes the dashboard.
//! Every state-changing action is a POST with the session's CSRF token.

mod auth;
mod chart;
mod decisions;
mod views;

use std::sync::LazyLock;

use axum::Router;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde_json::json;

use crate::receiver::state::HttpState;

pub use auth::{COOKIE_NAME, csrf_for, session_value};

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/ops", get(views::dashboard))
        .route("/ops/login", get(views::login_page).post(views::login))
        .route("/ops/logout", post(views::logout))
        .route("/ops/jobs", get(views::jobs))
        .route("/ops/jobs/retry", post(views::retry_matching))
        .route("/ops/jobs/{id}", get(views::job))
        .route("/ops/jobs/{id}/retry", post(views::retry_job))
        .route("/ops/jobs/{id}/kill", post(views::kill_job))
        .route("/ops/deliveries", get(views::deliveries))
        .route("/ops/deliveries/{id}/replay", post(views::replay))
        .route("/ops/integrations", get(views::integrations))
        .route("/ops/groups/{id}", get(decisions::group))
        .route("/ops/decisions", get(decisions::decisions))
        .route("/ops/static/ops.css", get(|| asset("text/css", CSS)))
        .route("/ops/static/ops.js", get(|| asset("text/javascript", JS)))
        // Forms hold a token, a CSRF value and a reason: the login form is read before anyone
        // is authenticated, so it must not be able to hold a megabyte.
        .layer(axum::extract::DefaultBodyLimit::max(FORM_LIMIT_BYTES))
        .layer(axum::middleware::map_response(secure_headers))
}

const FORM_LIMIT_BYTES: usize = 16 * 1024;

const CSS: &str = include_str!("static/ops.css");
const JS: &str = include_str!("static/ops.js");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// No framing, no inline script or style, nothing cached: the pages show operational data.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    match minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        Ok(syntax) => env.set_syntax(syntax),
        Err(e) => tracing::warn!(error = %e, "ops templates keep their whitespace"),
    }
    for (name, src) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("error.html", include_str!("templates/error.html")),
        ("dashboard.html", include_str!("templates/dashboard.html")),
        ("jobs.html", include_str!("templates/jobs.html")),
        ("job.html", include_str!("templates/job.html")),
        ("deliveries.html", include_str!("templates/deliveries.html")),
        (
            "decision_rows.html",
            include_str!("templates/decision_rows.html"),
        ),
        ("decisions.html", include_str!("templates/decisions.html")),
        ("group.html", include_str!("templates/group.html")),
        (
            "integrations.html",
            include_str!("templates/integrations.html"),
        ),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(template = name, error = %e, "bad ops template");
        }
    }
    env.add_filter("ago", ago);
    env.add_filter("when", when);
    env.add_filter("truncate", truncate);
    env
});

/// "12 s ago" / "in 3 min" for an epoch-ms time.
fn ago(ms: i64) -> String {
    let d = (crate::now_ms() - ms) / 1000;
    let (n, future) = (d.abs(), d < 0);
    let span = match n {
        0..=119 => format!("{n} s"),
        120..=7199 => format!("{} min", n / 60),
        7200..=172_799 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// At most `n` characters, with an ellipsis when cut.
fn truncate(s: String, n: usize) -> String {
    if s.chars().count() <= n {
        return s;
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// UTC date and time of an epoch-ms time.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn render(name: &str, ctx: minijinja::Value) -> Result<Html<String>, PageError> {
    TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map(Html)
        .map_err(|e| {
            tracing::error!(template = name, error = %e, "cannot render ops page");
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the page could not be rendered; see the server log",
            )
        })
}

/// An error on the operator page: an HTML page with the status, the machine code and the
/// reason; or, for a client that does not take HTML, `{"error","detail"}`.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// Browsers without a session are sent to the login page instead.
    login_redirect: bool,
    html: bool,
}

impl PageError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        PageError {
            status,
            code,
            detail: detail.into(),
            login_redirect: false,
            html: true,
        }
    }

    fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "csrf", detail)
    }

    fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 401; a browser's GET is redirected to the login form.
    fn login(parts: &Parts, detail: &str) -> Self {
        let html = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        PageError {
            login_redirect: html && parts.method == axum::http::Method::GET,
            html,
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
        }
    }
}

impl From<crate::ops::OpsError> for PageError {
    fn from(e: crate::ops::OpsError) -> Self {
        let api: crate::receiver::error::ApiError = e.into();
        Self::new(api.status, api.code, api.detail)
    }
}

impl From<axum::extract::rejection::FormRejection> for PageError {
    fn from(r: axum::extract::rejection::FormRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("an /ops form is at most {} KiB", FORM_LIMIT_BYTES / 1024),
            );
        }
        Self::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
    }
}

/// `Form<T>` whose rejection is a [`PageError`].
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Form), rejection(PageError))]
pub struct OpsForm<T>(pub T);

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        crate::store::StoreError::from(e).into()
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        let api: crate::receiver::error::ApiError = e.into();
        Self::new(api.status, api.code, api.detail)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.login_redirect {
            return Redirect::to("/ops/login").into_response();
        }
        if !self.html {
            let body = json!({"error": self.code, "detail": self.detail});
            return (self.status, axum::Json(body)).into_response();
        }
        let page = render(
            "error.html",
            minijinja::context! { title => "Error", status => self.status.as_u16(),
            code => self.code, detail => self.detail.clone() },
        );
        match page {
            Ok(html) => (self.status, html).into_response(),
            Err(_) => (self.status, self.detail).into_response(),
        }
    }
}
