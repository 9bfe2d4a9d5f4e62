//! The pages and actions of `/ops`. Reads go through `crate::ops` and the store, the same
//! functions as the CLI and the admin API; actions redirect back (POST, then GET).

use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::value::Serde;
use minijinja::{Value as Tpl, context};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::{self, Operator};
use super::chart;
use super::{OpsForm, PageError, render};
use crate::ops;
use crate::receiver::error::ApiPath;
use crate::receiver::state::HttpState;
use crate::store::jobs::{self as job_store, JobFilter};
use crate::store::{external, integrations, jobs};
use crate::sync::Services;

type Page = Result<Html<String>, PageError>;

/// What the base template needs on every page.
pub(super) fn base(op: &Operator, title: &str, nav: &str) -> Tpl {
    context! { title, nav, csrf => op.csrf.clone().unwrap_or_default() }
}

pub(super) fn with(base: Tpl, more: Tpl) -> Tpl {
    context! { ..more, ..base }
}

/// Messages after an action, chosen by code so a link cannot put arbitrary text on the page.
fn flash(done: Option<&str>, n: Option<u64>) -> Option<String> {
    let n = n.unwrap_or(0);
    Some(match done? {
        "retried" => format!("{n} job(s) made runnable now, attempts reset."),
        "killed" => format!("{n} job(s) killed."),
        "replayed" => "The delivery was enqueued again.".to_string(),
        "nothing" => "Nothing matched; no job was changed.".to_string(),
        _ => return None,
    })
}

/// Ids and redirect targets come back in a `Location` header: a control character there
/// is refused before any action runs.
fn printable(what: &str, value: Option<&str>) -> Result<(), PageError> {
    match value {
        Some(v) if v.chars().any(char::is_control) => Err(PageError::bad_request(format!(
            "the {what} holds a control character"
        ))),
        _ => Ok(()),
    }
}

/// Only our own pages are redirect targets.
fn back_to(back: Option<&str>, fallback: &str) -> String {
    match back {
        Some(b)
            if (b == "/ops" || b.starts_with("/ops/") || b.starts_with("/ops?"))
                && !b.contains("//")
                && !b.contains('\\') =>
        {
            b.to_string()
        }
        _ => fallback.to_string(),
    }
}

fn with_query(path: &str, extra: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{extra}")
}

// ---- login -------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login_page(State(s): State<Services>) -> Page {
    let disabled = s.settings.admin_token.is_none();
    render(
        "login.html",
        context! { title => "Log in", disabled, error => Tpl::UNDEFINED },
    )
}

pub async fn login(State(s): State<Services>, OpsForm(f): OpsForm<LoginForm>) -> Response {
    let refuse = |msg: &str| {
        let page = render(
            "login.html",
            context! { title => "Log in", error => msg, disabled => s.settings.admin_token.is_none() },
        );
        (axum::http::StatusCode::UNAUTHORIZED, page).into_response()
    };
    let Some(token) = s.settings.admin_token.as_ref() else {
        return refuse("The operator page is disabled: set ISSUESYNC_ADMIN_TOKEN.");
    };
    if !auth::token_matches(token.expose_secret(), f.token.trim()) {
        tracing::warn!("ops login with a wrong token");
        return refuse("Wrong token.");
    }
    let value = auth::session_value(token.expose_secret(), crate::now_ms());
    let secure = if s.settings.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={value}; Path=/ops; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        auth::COOKIE_NAME,
        auth::SESSION_MS / 1000
    );
    let mut r = Redirect::to("/ops").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// Ends the session server-side too: a copy of the cookie no longer works.
pub async fn logout(
    op: Operator,
    State(s): State<Services>,
    OpsForm(f): OpsForm<CsrfForm>,
) -> Result<Response, PageError> {
    op.check_csrf(f.csrf.as_deref())?;
    if let Some(session) = &op.session {
        let expires_at = auth::session_expiry(session).unwrap_or_else(crate::now_ms);
        let mut tx = s.db.begin_write().await?;
        crate::store::sessions::revoke_session(
            &mut tx,
            &auth::session_digest(session),
            expires_at,
            crate::now_ms(),
        )
        .await?;
        tx.commit().await?;
        tracing::info!("ops: logout");
    }
    let mut r = Redirect::to("/ops/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("issuesync_ops=; Path=/ops; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

// ---- dashboard ---------------------------------------------------------------------------

#[derive(Serialize)]
struct QueueRow {
    queue: &'static str,
    counts: Vec<i64>,
    oldest_pending_s: Option<i64>,
}

/// The flash message code of a page reached after an action.
#[derive(Deserialize)]
pub struct FlashQuery {
    done: Option<String>,
    n: Option<u64>,
}

pub async fn dashboard(
    op: Operator,
    State(s): State<Services>,
    Query(q): Query<FlashQuery>,
) -> Page {
    let stats = ops::stats(&s.db).await?;
    let since = crate::now_ms() - chart::BUCKETS as i64 * chart::BUCKET_MS;
    let queue_settings = &s.settings.queue;
    let alive_within =
        (queue_settings.heartbeat_secs * u64::from(queue_settings.missed_heartbeats)) as i64;
    let (buckets, snoozes, workers) = {
        let mut tx = s.db.begin().await?;
        (
            job_store::attempts_by_bucket(&mut tx, since, chart::BUCKET_MS).await?,
            job_store::snoozes_since(&mut tx, since).await?,
            job_store::list_live_workers(&mut tx, alive_within).await?,
        )
    };
    let rows: Vec<QueueRow> = issuesync_jobs::queues::ALL
        .iter()
        .map(|queue| QueueRow {
            queue,
            counts: jobs::STATES
                .iter()
                .map(|st| {
                    stats
                        .counts
                        .iter()
                        .filter(|c| c.queue == *queue && c.state == *st)
                        .map(|c| c.count)
                        .sum()
                })
                .collect(),
            oldest_pending_s: stats
                .oldest_pending_age_s
                .iter()
                .find(|(qn, _)| qn == queue)
                .map(|(_, age)| *age),
        })
        .collect();
    let reasons = crate::explain::reason_counts(&s.db, 86_400_000).await?;
    let bars = chart::bars(&buckets);
    let (done, failed, snoozed) = bars.iter().fold((0, 0, 0), |a, b| {
        (a.0 + b.done, a.1 + b.failed, a.2 + b.snoozed)
    });
    let finished = done + failed;
    let failure_rate = if finished > 0 {
        format!("{:.1} %", failed as f64 * 100.0 / finished as f64)
    } else {
        "–".to_string()
    };
    let snoozes: Vec<Tpl> = snoozes
        .into_iter()
        .map(|(reason, count)| {
            let reason = reason.unwrap_or_default();
            let reason = reason
                .strip_prefix("rate limited: ")
                .unwrap_or(&reason)
                .to_string();
            context! { reason, count }
        })
        .collect();
    render(
        "dashboard.html",
        with(
            base(&op, "Dashboard", "dashboard"),
            context! {
                refresh => 10, states => Serde(jobs::STATES), rows => Serde(rows), chart => Tpl::from_safe_string(chart::svg(&bars)),
                done, failed, snoozed, failure_rate, snoozes, workers => Serde(workers), alive_within, reasons => Serde(reasons),
                flash => flash(q.done.as_deref(), q.n),
            },
        ),
    )
}

// ---- jobs --------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct JobsQuery {
    state: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
    q: Option<String>,
    done: Option<String>,
    n: Option<u64>,
}

pub(super) fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The filter of the jobs view. A search for an external issue key also finds the outbound
/// jobs of that issue, whose payload holds only its id.
async fn job_filter(s: &Services, q: &JobsQuery) -> Result<JobFilter, PageError> {
    let kind = nonempty(&q.kind);
    if let Some(k) = &kind
        && issuesync_jobs::kind(k).is_none()
    {
        return Err(PageError::bad_request(format!("unknown job kind {k:?}")));
    }
    let search = nonempty(&q.q);
    let mut search_any = Vec::new();
    if let Some(key) = &search {
        let mut tx = s.db.begin().await?;
        for id in external::external_issue_ids_by_key(&mut tx, key).await? {
            search_any.push(format!("\"external_issue_id\":{id}"));
        }
    }
    Ok(JobFilter {
        state: nonempty(&q.state),
        queue: nonempty(&q.queue),
        job_name: kind,
        search,
        search_any,
        ids: None,
    })
}

fn filter_query(q: &JobsQuery) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("state", &q.state),
        ("queue", &q.queue),
        ("kind", &q.kind),
        ("q", &q.q),
    ] {
        if let Some(v) = nonempty(v) {
            parts.push(format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
    }
    parts.join("&")
}

const JOBS_SHOWN: i64 = 200;

pub async fn jobs(op: Operator, State(s): State<Services>, Query(q): Query<JobsQuery>) -> Page {
    let filter = job_filter(&s, &q).await?;
    let list = ops::list(&s.db, &filter, JOBS_SHOWN).await?;
    let bulk = matches!(filter.state.as_deref(), Some("failed" | "dead"));
    let kinds: Vec<&str> = issuesync_jobs::KINDS.iter().map(|k| k.name).collect();
    let query = filter_query(&q);
    render(
        "jobs.html",
        with(
            base(&op, "Jobs", "jobs"),
            context! {
                refresh => 10, jobs => Serde(list), states => Serde(jobs::STATES), queues => Serde(issuesync_jobs::queues::ALL), kinds => Serde(kinds),
                f_state => filter.state, f_queue => filter.queue, f_kind => filter.job_name, f_q => filter.search,
                bulk, shown => JOBS_SHOWN, back => if query.is_empty() { "/ops/jobs".to_string() } else { format!("/ops/jobs?{query}") },
                flash => flash(q.done.as_deref(), q.n),
            },
        ),
    )
}

pub async fn job(
    op: Operator,
    State(s): State<Services>,
    ApiPath(id): ApiPath<String>,
    Query(q): Query<FlashQuery>,
) -> Page {
    let detail = ops::show(&s.db, &id).await?;
    let decisions = crate::explain::job_decisions(&s.db, &id).await?;
    let group_id = detail.job.payload.get("group_id").and_then(Value::as_i64);
    let payload = serde_json::to_string_pretty(&detail.job.payload).unwrap_or_default();
    let retryable = matches!(detail.job.state.as_str(), "failed" | "dead");
    let killable = !matches!(detail.job.state.as_str(), "dead" | "done");
    render(
        "job.html",
        with(
            base(&op, &format!("Job {id}"), "jobs"),
            context! {
                job => Serde(detail.job), history => Serde(detail.history), progress => Serde(detail.progress), payload,
                retryable, killable, back => format!("/ops/jobs/{id}"), flash => flash(q.done.as_deref(), q.n),
                decisions => Serde(decisions), group_id,
            },
        ),
    )
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    back: Option<String>,
    reason: Option<String>,
}

pub async fn retry_job(
    op: Operator,
    State(s): State<Services>,
    ApiPath(id): ApiPath<String>,
    OpsForm(f): OpsForm<ActionForm>,
) -> Result<Redirect, PageError> {
    op.check_csrf(f.csrf.as_deref())?;
    printable("job id", Some(&id))?;
    printable("back link", f.back.as_deref())?;
    let n = ops::retry(&s.db, std::slice::from_ref(&id), None, None).await?;
    tracing::info!(job = id, n, "ops: retry");
    let back = back_to(f.back.as_deref(), &format!("/ops/jobs/{id}"));
    Ok(Redirect::to(&with_query(
        &back,
        &format!("done={}&n={n}", if n > 0 { "retried" } else { "nothing" }),
    )))
}

pub async fn kill_job(
    op: Operator,
    State(s): State<Services>,
    ApiPath(id): ApiPath<String>,
    OpsForm(f): OpsForm<ActionForm>,
) -> Result<Redirect, PageError> {
    op.check_csrf(f.csrf.as_deref())?;
    printable("job id", Some(&id))?;
    printable("back link", f.back.as_deref())?;
    let reason = nonempty(&f.reason).unwrap_or_else(|| "killed from the operator page".to_string());
    let n = ops::kill(&s.db, std::slice::from_ref(&id), &reason).await?;
    tracing::info!(job = id, n, reason, "ops: kill");
    let back = back_to(f.back.as_deref(), &format!("/ops/jobs/{id}"));
    Ok(Redirect::to(&with_query(
        &back,
        &format!("done={}&n={n}", if n > 0 { "killed" } else { "nothing" }),
    )))
}

#[derive(Deserialize)]
pub struct BulkForm {
    csrf: Option<String>,
    state: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
    q: Option<String>,
}

/// Retries every failed or dead job matching the filter the operator was looking at.
pub async fn retry_matching(
    op: Operator,
    State(s): State<Services>,
    OpsForm(f): OpsForm<BulkForm>,
) -> Result<Redirect, PageError> {
    op.check_csrf(f.csrf.as_deref())?;
    let q = JobsQuery {
        state: f.state,
        queue: f.queue,
        kind: f.kind,
        q: f.q,
        ..Default::default()
    };
    let filter = job_filter(&s, &q).await?;
    if !matches!(filter.state.as_deref(), Some("failed" | "dead")) {
        return Err(PageError::bad_request(
            "bulk retry takes the failed or the dead jobs of a filter",
        ));
    }
    ops::check_queue(filter.queue.as_deref())?;
    let n = {
        let mut tx = s.db.begin_write().await?;
        let n = job_store::retry_jobs(&mut tx, &filter).await?;
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        n
    };
    tracing::info!(
        n,
        state = filter.state,
        queue = filter.queue,
        kind = filter.job_name,
        search = filter.search,
        "ops: bulk retry"
    );
    let query = filter_query(&q);
    let done = if n > 0 { "retried" } else { "nothing" };
    Ok(Redirect::to(&format!(
        "/ops/jobs?{query}&done={done}&n={n}"
    )))
}

// ---- deliveries --------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    provider: Option<String>,
    done: Option<String>,
}

pub async fn deliveries(
    op: Operator,
    State(s): State<HttpState>,
    Query(q): Query<DeliveriesQuery>,
) -> Page {
    let provider = nonempty(&q.provider);
    if let Some(p) = &provider
        && !crate::receiver::admin::PROVIDERS.contains(&p.as_str())
    {
        return Err(PageError::bad_request(format!("unknown provider {p:?}")));
    }
    let list = ops::list_deliveries(&s.db, provider.as_deref(), None, 100)
        .await?
        .deliveries;
    let refused = s.refusals.recent(provider.as_deref());
    render(
        "deliveries.html",
        with(
            base(&op, "Deliveries", "deliveries"),
            context! {
                deliveries => Serde(list), refused => Serde(refused), providers => Serde(crate::receiver::admin::PROVIDERS), f_provider => provider,
                flash => flash(q.done.as_deref(), None),
            },
        ),
    )
}

pub async fn replay(
    op: Operator,
    State(s): State<Services>,
    ApiPath(id): ApiPath<i64>,
    OpsForm(f): OpsForm<ActionForm>,
) -> Result<Redirect, PageError> {
    op.check_csrf(f.csrf.as_deref())?;
    printable("back link", f.back.as_deref())?;
    let r = ops::replay_delivery(&s.db, id).await?;
    tracing::info!(delivery = id, job = r.id(), "ops: replay");
    let back = back_to(f.back.as_deref(), "/ops/deliveries");
    Ok(Redirect::to(&with_query(&back, "done=replayed")))
}

// ---- integrations ------------------------------------------------------------------------

#[derive(Serialize)]
struct InstallView {
    organization_id: i64,
    enabled: bool,
    switches: Vec<(&'static str, bool)>,
    resolution_strategy: String,
    mappings: Vec<integrations::ExternalProject>,
}

const SWITCHES: &[&str] = &[
    "sync_status_forward",
    "sync_status_reverse",
    "sync_forward_assignment",
    "sync_reverse_assignment",
    "sync_status_reverse_overrides_ignored",
];

pub async fn integrations(op: Operator, State(s): State<Services>) -> Page {
    let mut tx = s.db.begin().await?;
    let mut out = Vec::new();
    for i in integrations::list_integrations(&mut tx, None).await? {
        let mut installs = Vec::new();
        for oi in integrations::list_organization_integrations(&mut tx, i.id).await? {
            installs.push(InstallView {
                organization_id: oi.organization_id,
                enabled: oi.status == integrations::STATUS_ACTIVE,
                switches: SWITCHES
                    .iter()
                    .map(|k| {
                        (
                            *k,
                            oi.config
                                .0
                                .get(*k)
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                        )
                    })
                    .collect(),
                resolution_strategy: oi
                    .config
                    .0
                    .get("resolution_strategy")
                    .and_then(Value::as_str)
                    .unwrap_or("resolve")
                    .to_string(),
                mappings: integrations::list_external_projects(&mut tx, oi.id).await?,
            });
        }
        let failures: Vec<ops::JobView> = job_store::recent_outbound_failures(&mut tx, i.id, 5)
            .await?
            .iter()
            .map(ops::JobView::from)
            .collect();
        out.push(context! {
            id => i.id, provider => i.provider, name => i.name, external_id => i.external_id,
            active => i.status == integrations::STATUS_ACTIVE, installs => Serde(installs), failures => Serde(failures),
        });
    }
    render(
        "integrations.html",
        with(
            base(&op, "Integrations", "integrations"),
            context! { integrations => out },
        ),
    )
}
