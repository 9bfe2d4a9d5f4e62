//! The receiver's own accept loop and what it refuses before doing work: slowloris and idle
//! connections are closed, a half-closed client still gets its answer, the connection cap
//! makes room by closing idle connections, a low descriptor limit does not stop /healthz,
//! ADO and Discord requests without valid credentials are refused before their body is
//! read or parsed, and /metrics can move to its own address. Timing limits are the
//! `bench chaos` scenarios' (docs/reliability.md); these tests check behaviour.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::json;

sqlite_and_pg_redis_tests!(
    a_slowloris_connection_is_closed,
    an_idle_keep_alive_connection_is_closed,
    a_half_closed_client_gets_its_answer,
    at_the_cap_idle_connections_make_room,
    at_the_cap_a_response_being_written_is_not_cut,
    ado_without_a_known_secret_is_refused_before_the_body,
    an_unsigned_discord_body_is_not_parsed,
    metrics_move_to_their_own_address,
);

const ADO: &str = include_str!("fixtures/vsts_workitem_updated_assignee_change.json");
const COLLECTION: &str = "80ded3e8-3cd3-43b1-9f96-52032624aa3a";
const SECRET: &str = "connections-test-secret";

/// The app with a 1 s header timeout (and `more` settings), through the settings' own
/// override path so that unknown keys are simply ignored by older code.
async fn app_with(
    backend: common::Backend,
    seq: common::Seq,
    more: serde_json::Value,
) -> Option<TestApp> {
    common::spawn_app_with(backend, seq, |s| {
        let mut patch = json!({"http": {"header_read_timeout_ms": 1000}});
        if let (Some(p), Some(m)) = (patch.as_object_mut(), more.as_object()) {
            for (k, v) in m {
                p.insert(k.clone(), v.clone());
            }
        }
        *s = s.clone().with_overrides(patch).expect("settings");
    })
    .await
}

fn host(app: &TestApp) -> String {
    app.addr.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit` passes); returns the bytes
/// read and whether it closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

async fn seed_ado(app: &TestApp) {
    app.create(
        "/integrations",
        json!({"provider": "vsts", "external_id": COLLECTION, "name": "ado",
        "metadata": {"subscription": {"id": "s", "secret": SECRET}}}),
    )
    .await;
}

async fn a_slowloris_connection_is_closed(app: TestApp) {
    let Some(app) = app_with_same(&app).await else {
        return;
    };
    let h = host(&app);
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&h).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        // One byte every 300 ms: the headers never finish.
        let started = Instant::now();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 256];
        while started.elapsed() < Duration::from_secs(8) {
            if s.write_all(b"a").is_err() {
                return Some(started.elapsed());
            }
            match s.read(&mut buf) {
                Ok(0) => return Some(started.elapsed()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(started.elapsed()),
            }
        }
        None
    })
    .await
    .unwrap();
    let after = closed.expect("a connection sending its headers at 3 bytes/s was never closed");
    assert!(
        after < Duration::from_secs(5),
        "closed only after {after:?}"
    );
}

/// The same backend as `app`, with the short header timeout.
async fn app_with_same(app: &TestApp) -> Option<TestApp> {
    app_with_same_more(app, json!({})).await
}

async fn an_idle_keep_alive_connection_is_closed(app: TestApp) {
    let Some(app) = app_with_same(&app).await else {
        return;
    };
    let h = host(&app);
    let (answer, closed) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&h).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_until_closed(&mut s, Duration::from_secs(6))
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed, "an idle keep-alive connection stayed open for 6 s");
}

async fn a_half_closed_client_gets_its_answer(app: TestApp) {
    seed_ado(&app).await;
    let h = host(&app);
    // A request that writes to the database, so the handler is still running when the
    // client's FIN arrives.
    let mut missing = Vec::new();
    for i in 0..30 {
        let mut v: serde_json::Value = serde_json::from_str(ADO).unwrap();
        v["id"] = json!(format!("half-close-{i}"));
        let body = v.to_string();
        let request = format!(
            "POST /extensions/vsts/issue-updated/ HTTP/1.1\r\nHost: x\r\nshared-secret: {SECRET}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let h = h.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(&h).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            read_until_closed(&mut s, Duration::from_secs(10)).0
        })
        .await
        .unwrap();
        if !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200") {
            missing.push(i);
        }
    }
    assert!(
        missing.is_empty(),
        "half-closed requests {missing:?} got no answer"
    );
    let mut tx = app.state.db.begin().await.unwrap();
    let stored = issuesync::store::deliveries::count_deliveries(&mut tx)
        .await
        .unwrap();
    assert_eq!(stored, 30, "every answered delivery is stored");
}

async fn at_the_cap_idle_connections_make_room(app: TestApp) {
    let Some(app) = app_with_same_more(
        &app,
        json!({"http": {"header_read_timeout_ms": 30000, "max_connections": 4}}),
    )
    .await
    else {
        return;
    };
    let h = host(&app);
    let result = tokio::task::spawn_blocking(move || {
        let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&h).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut s = TcpStream::connect(&h).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5));
        let mut oldest = idle.into_iter().next().unwrap();
        let (_, oldest_closed) = read_until_closed(&mut oldest, Duration::from_secs(2));
        (String::from_utf8_lossy(&answer).to_string(), oldest_closed)
    })
    .await
    .unwrap();
    assert!(
        result.0.starts_with("HTTP/1.1 200"),
        "/healthz at the cap: {:?}",
        result.0
    );
    assert!(
        result.1,
        "the oldest idle connection was not closed to make room"
    );
}

/// A connection whose response is still being written (its client reads slowly) has no
/// request in flight, but it is not idle: making room must not cut the response short.
async fn at_the_cap_a_response_being_written_is_not_cut(app: TestApp) {
    let Some(app) = app_with_same_more(
        &app,
        json!({"http": {"header_read_timeout_ms": 30000, "max_connections": 1,
            "body_limit_bytes": 8 * 1024 * 1024}}),
    )
    .await
    else {
        return;
    };
    // A response of about 6 MB, more than the sockets' buffers hold (the kernel grows a
    // loopback send buffer up to 4 MiB; the slow client's receive buffer stays 4 KiB).
    let created = app
        .create(
            "/integrations",
            json!({"provider": "vsts", "external_id": "big", "name": "big",
            "metadata": {"blob": "x".repeat(6_000_000)}}),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    let addr: std::net::SocketAddr = host(&app).parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    slow.write_all(
        format!(
            "GET /api/v1/integrations/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            common::TOKEN
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new connection at the cap, while the slow client reads nothing.
    let h = host(&app);
    let other = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&h).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(15));
        String::from_utf8_lossy(&answer).to_string()
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer))
        .await
        .expect("the slow client's response did not end")
        .ok();
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head:.300}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head:.300}");
    assert_eq!(
        body.len(),
        length,
        "the response being written was cut to make room"
    );
    let other = other.await.unwrap();
    assert!(
        other.starts_with("HTTP/1.1 200"),
        "the new connection was not served once the response was written: {other:.300}"
    );
}

async fn app_with_same_more(app: &TestApp, more: serde_json::Value) -> Option<TestApp> {
    let (backend, seq) = app.backend_seq();
    app_with(backend, seq, more).await
}

/// Sends headers announcing a 1 MiB body and none of it: an answer that comes at once was
/// given before the body was read.
fn refused_before_body(host: &str, path: &str, headers: &str) -> (String, Duration) {
    let mut s = TcpStream::connect(host).unwrap();
    let started = Instant::now();
    s.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\nContent-Length: 1048000\r\n\r\n{{")
            .as_bytes(),
    )
    .unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(8));
    (
        String::from_utf8_lossy(&answer).to_string(),
        started.elapsed(),
    )
}

async fn ado_without_a_known_secret_is_refused_before_the_body(app: TestApp) {
    seed_ado(&app).await;
    let h = host(&app);
    for headers in ["", "shared-secret: a guess\r\n"] {
        let (h, sent) = (h.clone(), headers.to_string());
        let (answer, took) = tokio::task::spawn_blocking(move || {
            refused_before_body(&h, "/extensions/vsts/issue-updated/", &sent)
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{headers:?}: {answer}");
        assert!(
            took < Duration::from_secs(3),
            "{headers:?}: answered after {took:?}: the body was waited for"
        );
    }
    // The right secret is let through to the body (which then never comes: 408).
    let h2 = h.clone();
    let (answer, _) = tokio::task::spawn_blocking(move || {
        refused_before_body(
            &h2,
            "/extensions/vsts/issue-updated/",
            &format!("shared-secret: {SECRET}\r\n"),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

async fn an_unsigned_discord_body_is_not_parsed(app: TestApp) {
    app.create(
        "/integrations",
        json!({"provider": "discord", "external_id": "1234", "name": "discord",
        "metadata": {"public_key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"}}),
    )
    .await;
    for body in [
        "{not json",
        "[]",
        "{\"type\": 1, \"application_id\": \"1234\"}",
    ] {
        let r = app
            .client
            .post(app.url("/extensions/discord/interactions/"))
            .header("x-signature-ed25519", "00".repeat(64))
            .header(
                "x-signature-timestamp",
                chrono::Utc::now().timestamp().to_string(),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            401,
            "{body}: {}",
            r.text().await.unwrap_or_default()
        );
    }
}

async fn metrics_move_to_their_own_address(app: TestApp) {
    let port = common::free_port();
    let Some(app) =
        app_with_same_more(&app, json!({"metrics_bind": format!("127.0.0.1:{port}")})).await
    else {
        return;
    };
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404, "/metrics still on the receiver's address");
    let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics_bind serves /metrics");
    assert_eq!(r.status(), 200);
    // The queue gauges come from the background refresh (every 5 s), not from the scrape.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("issuesync_queue_jobs{") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no queue gauge after 15 s: {text:.500}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_descriptor_limit_does_not_stop_healthz() {
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let Some(app) = common::spawn_app(backend, common::Seq::Local).await else {
            continue;
        };
        let port = common::free_port();
        let mut c = std::process::Command::new("prlimit");
        c.args(["--nofile=256:256", "--"])
            .arg(env!("CARGO_BIN_EXE_issuesync"))
            .arg("serve")
            .envs(app.child_env())
            .env("ISSUESYNC_BIND", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null());
        let _serve = common::Child(c.spawn().expect("spawn serve under prlimit"));
        let h = format!("127.0.0.1:{port}");
        let answered = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(&h).is_err() {
                assert!(Instant::now() < deadline, "serve did not come up");
                std::thread::sleep(Duration::from_millis(100));
            }
            // More idle connections than the process has descriptors.
            let idle: Vec<TcpStream> = (0..300)
                .filter_map(|_| TcpStream::connect(&h).ok())
                .collect();
            std::thread::sleep(Duration::from_millis(500));
            let mut ok = 0;
            for _ in 0..5 {
                let Ok(mut s) = TcpStream::connect(&h) else {
                    continue;
                };
                let _ =
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5));
                if answer.starts_with(b"HTTP/1.1 200") {
                    ok += 1;
                }
            }
            drop(idle);
            ok
        })
        .await
        .unwrap();
        assert_eq!(
            answered, 5,
            "{backend:?}: /healthz answered {answered} of 5 times with 300 idle connections and 256 descriptors"
        );
    }
}
