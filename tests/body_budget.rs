//! Bodies read before their sender can be authenticated (Discord interactions, Jira Cloud
//! lifecycle callbacks) have a budget of their own: clients that hold slow unauthenticated
//! bodies open cannot make an authenticated webhook (ADO, whose secret is checked before
//! the body) wait for buffer room or answer 503.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

sqlite_and_pg_redis_tests!(slow_unauthenticated_bodies_do_not_starve_authenticated_webhooks);

const ADO: &str = include_str!("fixtures/vsts_workitem_updated_assignee_change.json");
const COLLECTION: &str = "80ded3e8-3cd3-43b1-9f96-52032624aa3a";
const SECRET: &str = "body-budget-test-secret";

/// How an unauthenticated client holds its body's share of the budget.
#[derive(Clone, Copy)]
enum Hold {
    /// Announces a 1 MiB Discord body and trickles it a byte every 250 ms.
    Trickle,
    /// Sends a whole 1 MiB Jira `installed` callback whose JWT names an install key, and
    /// the install key server is slow: the body is held while the key is fetched.
    SlowKey,
}

fn jwt_naming_a_key(client_key: &str) -> String {
    use base64::Engine;
    let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = chrono::Utc::now().timestamp();
    format!(
        "{}.{}.c2ln",
        enc(json!({"alg": "RS256", "typ": "JWT", "kid": "slow-key"})),
        enc(json!({"iss": client_key, "iat": now, "exp": now + 300}))
    )
}

/// One unauthenticated request; returns the status it got (0: none before `until`).
async fn hold_budget(host: String, hold: Hold, until: Instant) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect(&host).await else {
        return 0;
    };
    let request = match hold {
        Hold::Trickle => "POST /extensions/discord/interactions/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{\"a\":\"".to_string(),
        Hold::SlowKey => {
            let body = json!({"clientKey": "jira:attacker", "sharedSecret": "s", "baseUrl": "https://attacker.example"}).to_string();
            // Exactly the body limit: no room is left over beside 4 such bodies.
            let body = format!("{body}{}", " ".repeat(1024 * 1024 - body.len()));
            format!(
                "POST /extensions/jira/installed/ HTTP/1.1\r\nHost: x\r\nAuthorization: JWT {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                jwt_naming_a_key("jira:attacker"),
                body.len()
            )
        }
    };
    if s.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = [0u8; 512];
    while Instant::now() < until {
        tokio::select! {
            r = s.read(&mut buf) => {
                let text = match r {
                    Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n]).to_string(),
                    _ => return 0,
                };
                return text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if matches!(hold, Hold::Trickle) && s.write_all(b"a").await.is_err() {
                    return 0;
                }
            }
        }
    }
    0
}

async fn slow_unauthenticated_bodies_do_not_starve_authenticated_webhooks(app: TestApp) {
    let keys = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(404).set_delay(Duration::from_secs(3)))
        .mount(&keys)
        .await;
    // Room for 4 bodies of 1 MiB, 2 of them before authentication; a body must arrive in 2 s.
    let Some(app) = app
        .like(json!({"jira_install_keys_url": keys.uri(), "http": {
            "max_buffered_body_bytes": 4 * 1024 * 1024,
            "max_unauthenticated_body_bytes": 2 * 1024 * 1024,
            "body_timeout_ms": 2000,
        }}))
        .await
    else {
        return;
    };
    app.create(
        "/integrations",
        json!({"provider": "vsts", "external_id": COLLECTION, "name": "ado",
        "metadata": {"subscription": {"id": "s", "secret": SECRET}}}),
    )
    .await;
    let host = app.addr.trim_start_matches("http://").to_string();
    // Unauthenticated clients open a request every 20 ms for 5 s (250 at most), alternating
    // slow Discord bodies and Jira installs with a slow key, so the waiting line never empties.
    let until = Instant::now() + Duration::from_secs(5);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let attack = tokio::spawn({
        let statuses = statuses.clone();
        async move {
            let mut tasks = Vec::new();
            for i in 0..250 {
                if Instant::now() >= until {
                    break;
                }
                let hold = if i % 2 == 0 {
                    Hold::Trickle
                } else {
                    Hold::SlowKey
                };
                let (host, statuses) = (host.clone(), statuses.clone());
                tasks.push(tokio::spawn(async move {
                    let status = hold_budget(host, hold, until + Duration::from_secs(5)).await;
                    statuses.lock().unwrap().push(status);
                }));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut wrong = Vec::new();
    for i in 0..6 {
        let mut v: Value = serde_json::from_str(ADO).unwrap();
        v["id"] = json!(format!("budget-{i}"));
        let started = Instant::now();
        let r = app
            .client
            .post(app.url("/extensions/vsts/issue-updated/"))
            .header("shared-secret", SECRET)
            .json(&v)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .expect("the ADO webhook got no answer");
        let took = started.elapsed();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        // An authenticated delivery must not wait for room the unauthenticated ones hold.
        if status != 200 || body["status"] != "queued" || took > Duration::from_millis(1500) {
            wrong.push(format!("delivery {i}: {status} {body} after {took:?}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    attack.await.unwrap();
    let statuses = statuses.lock().unwrap().clone();
    // The pressure was real: unauthenticated bodies were refused for want of room.
    assert!(
        statuses.contains(&503),
        "no unauthenticated body was refused 503: {statuses:?}"
    );
    assert!(
        wrong.is_empty(),
        "authenticated ADO deliveries under unauthenticated body pressure:\n{}",
        wrong.join("\n")
    );
    let mut tx = app.state.db.begin().await.unwrap();
    let stored = issuesync::store::deliveries::count_deliveries(&mut tx)
        .await
        .unwrap();
    assert_eq!(stored, 6, "every accepted ADO delivery is stored");
}
