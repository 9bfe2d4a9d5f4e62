//! The operator page in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `chromedriver` through fantoccini. An operator logs in, finds a sync job that died on a
//! provider 401, retries it once the provider is fixed, watches it finish, bulk-retries a
//! filtered set, and the pages are saved as screenshots under target/test-artifacts/.
//! Without Chromium the test prints a notice and skips; with CI=true it fails instead.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Seq, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use issuesync_jobs::noop::Noop;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PRIVATE: &str = include_str!("fixtures/test_rsa_private.pem");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn browser_available() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{CHROMIUM} or {CHROMEDRIVER} is missing but CI=true: install chromium and chromium-driver"
        );
        eprintln!(
            "SKIPPED: {CHROMIUM} / {CHROMEDRIVER} not installed (apt-get install chromium chromium-driver)"
        );
    }
    present
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: common::Child,
    url: String,
}

fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    Driver {
        child: common::Child(child),
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn connect(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display())],
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Plain HTTP to the local chromedriver: no TLS stack needed.
        let http = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(http)
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a Chromium session: {e}"),
        }
    }
}

/// The text of an element, waiting (10 s at most) for it to appear: a click returns before
/// the navigation it starts has finished.
async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn until_url_contains(c: &Client, part: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.current_url().await.unwrap().as_str().contains(part) {
        assert!(Instant::now() < deadline, "never reached a URL with {part}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(name), png).unwrap();
}

/// A Jira Server integration whose first issue lookup answers 401, then recovers; a group
/// linked to APP-1 whose resolve therefore dies once.
async fn dead_sync_job(app: &TestApp, mock: &MockServer) -> String {
    let id = |v: Value| v["id"].as_i64().unwrap();
    let org = id(app.create("/organizations", json!({"name": "Acme"})).await);
    let project = id(app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "Web"}),
        )
        .await);
    let jira = id(app
        .create("/integrations", json!({"provider": "jira_server", "external_id": "jira.example.com:issuesync", "name": "Acme Jira",
            "metadata": {"base_url": mock.uri(), "webhook_secret": "a long secret value", "consumer_key": "issuesync", "private_key": PRIVATE, "access_token": "tok-123"}}))
        .await);
    let (_, oi) = app
        .api(
            reqwest::Method::PUT,
            &format!("/integrations/{jira}/organizations/{org}"),
            Some(json!({"config": {"sync_status_forward": true}})),
        )
        .await;
    app.post(
        &format!("/organization-integrations/{}/external-projects", oi["id"]),
        json!({"external_id": "10000", "resolved_status": "10101", "unresolved_status": "3"}),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/APP-1"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string("{\"errorMessages\":[\"token revoked\"]}"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/APP-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"key": "APP-1", "fields": {"status": {"id": "3"}, "project": {"id": "10000"}}}),
        ))
        .with_priority(2)
        .mount(mock)
        .await;
    let transitions: Value =
        serde_json::from_str(include_str!("fixtures/jira_transitions_response.json")).unwrap();
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/APP-1/transitions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transitions))
        .mount(mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue/APP-1/transitions"))
        .respond_with(ResponseTemplate::new(204))
        .mount(mock)
        .await;
    let g = id(app
        .create(
            &format!("/projects/{project}/groups"),
            json!({"title": "TypeError in checkout"}),
        )
        .await);
    app.create(
        "/external-issues",
        json!({"organization_id": org, "integration_id": jira, "key": "APP-1", "group_ids": [g]}),
    )
    .await;
    let (s, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("/groups/{g}"),
            Some(json!({"status": "resolved"})),
        )
        .await;
    assert_eq!(s, 200);
    let jobs = issuesync::ops::list(
        &app.state.db,
        &issuesync::store::jobs::JobFilter {
            job_name: Some("sync_status_outbound".into()),
            ..Default::default()
        },
        5,
    )
    .await
    .unwrap();
    assert_eq!(jobs.len(), 1);
    jobs[0].id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_retries_from_the_browser() {
    if !browser_available() {
        return;
    }
    let Some(app) = common::spawn_app(Backend::Sqlite, Seq::Local).await else {
        return;
    };
    let mock = MockServer::start().await;
    let job_id = dead_sync_job(&app, &mock).await;
    let workers = app.start_workers();
    let dead = app.wait_job_state(&job_id, "dead", 30).await;
    assert!(
        dead.job.last_error.as_deref().unwrap_or("").contains("401"),
        "{:?}",
        dead.job.last_error
    );
    // A filtered set for the bulk retry: three dead noop jobs tagged bulk-A, one bulk-B.
    let mut bulk_a = Vec::new();
    for marker in ["bulk-A", "bulk-A", "bulk-A", "bulk-B"] {
        // Enqueued scheduled far ahead, then killed: dead before any worker could run them.
        let id = {
            let mut tx = app.state.db.begin().await.unwrap();
            let r = issuesync::store::enqueue::enqueue_at(
                &mut tx,
                &Noop {
                    ledger: Some(marker.into()),
                    ..Default::default()
                },
                Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            r.id().to_string()
        };
        issuesync::ops::kill(
            &app.state.db,
            std::slice::from_ref(&id),
            "seeded: upstream outage",
        )
        .await
        .unwrap();
        if marker == "bulk-A" {
            bulk_a.push(id);
        }
    }

    let driver = start_driver();
    let profile = tempfile::tempdir().unwrap();
    let c = connect(&driver, profile.path()).await;

    // Not logged in: the login form. A wrong token is refused, the right one lets us in.
    c.goto(&app.url("/ops")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/ops/login")
    );
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("wrong")
        .await
        .unwrap();
    c.find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&c, "#login-error").await, "Wrong token.");
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(common::TOKEN)
        .await
        .unwrap();
    c.find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text(&c, "#queues").await.contains("outbound"));
    assert_eq!(c.current_url().await.unwrap().path(), "/ops");
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "issuesync_ops")
        .expect("session cookie");
    assert_eq!(session.http_only(), Some(true));

    // The dead job with its error, from the nav's Jobs view (dead jobs).
    c.find(Locator::LinkText("Jobs"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_url_contains(&c, "/ops/jobs?state=dead").await;
    let row = format!("tr[data-job=\"{job_id}\"]");
    let row_text = text(&c, &row).await;
    assert!(
        row_text.contains("sync_status_outbound") && row_text.contains("dead"),
        "{row_text}"
    );
    assert!(row_text.contains("provider answered 401"), "{row_text}");
    screenshot(&c, "ops-dead-jobs.png").await;

    // The provider is fixed (the mock answers 200 now); retry from the job's page.
    c.find(Locator::Css(&format!("{row} a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_url_contains(&c, &format!("/ops/jobs/{job_id}")).await;
    assert!(text(&c, "#last-error").await.contains("token revoked"));
    assert!(text(&c, "#history").await.contains("dead"));
    c.find(Locator::Id("retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        text(&c, "#flash")
            .await
            .contains("1 job(s) made runnable now")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.refresh().await.unwrap();
        if text(&c, "#job-state").await == "done" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {job_id} did not finish after the retry"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let transitions = mock
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.method.as_str() == "POST" && r.url.path() == "/rest/api/2/issue/APP-1/transitions"
        })
        .count();
    assert_eq!(
        transitions, 1,
        "the retried job transitioned the Jira issue"
    );

    // Bulk retry of a filtered set: dead noop jobs whose payload mentions bulk-A.
    c.goto(&app.url("/ops/jobs?state=dead")).await.unwrap();
    let form = c.form(Locator::Id("filters")).await.unwrap();
    form.set_by_name("kind", "noop").await.unwrap();
    form.set_by_name("q", "bulk-A").await.unwrap();
    form.submit().await.unwrap();
    until_url_contains(&c, "q=bulk-A").await;
    text(&c, "#jobs").await;
    let listed = c
        .find_all(Locator::Css("#jobs tr[data-job]"))
        .await
        .unwrap()
        .len();
    assert_eq!(listed, 3, "only the filtered set is listed");
    c.find(Locator::Id("retry-all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        text(&c, "#flash")
            .await
            .contains("3 job(s) made runnable now")
    );
    app.drain().await;
    for id in &bulk_a {
        assert_eq!(app.job(id).await.job.state, "done");
    }
    assert_eq!(app.ledger("bulk-A").await.0, 3);
    assert_eq!(
        app.ledger("bulk-B").await.0,
        0,
        "outside the filter: still dead"
    );

    c.goto(&app.url("/ops")).await.unwrap();
    assert!(
        text(&c, "#workers").await.contains("outbound"),
        "live workers are listed"
    );
    screenshot(&c, "ops-dashboard.png").await;
    c.goto(&app.url(&format!("/ops/jobs/{job_id}")))
        .await
        .unwrap();
    screenshot(&c, "ops-job.png").await;
    c.close().await.unwrap();
    workers.stop().await;
    drop(driver.child);
}
