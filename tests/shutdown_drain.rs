//! A graceful shutdown waits for requests in flight only up to `http.drain_timeout_ms`: a
//! client that keeps its response from finishing (it reads nothing) cannot hold it forever.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

sqlite_and_pg_redis_tests!(a_client_that_reads_nothing_does_not_hold_shutdown);

async fn a_client_that_reads_nothing_does_not_hold_shutdown(app: TestApp) {
    let Some(app) = app
        .like(json!({"http": {"body_limit_bytes": 8 * 1024 * 1024, "drain_timeout_ms": 1000}}))
        .await
    else {
        return;
    };
    // A response of about 6 MB: more than the sockets' buffers hold, so it stays unwritten.
    let created = app
        .create(
            "/integrations",
            json!({"provider": "vsts", "external_id": "big", "name": "big",
            "metadata": {"blob": "x".repeat(6_000_000)}}),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    // A server of our own on the same database, to see when its shutdown completes.
    let state = issuesync::startup::build_state((*app.state.settings).clone())
        .await
        .unwrap();
    let server = issuesync::startup::bind(state).await.unwrap();
    let addr = server.addr;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    slow.write_all(
        format!(
            "GET /api/v1/integrations/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            common::TOKEN
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(()).unwrap();
    let asked = Instant::now();
    let done = tokio::time::timeout(Duration::from_secs(10), serving).await;
    let took = asked.elapsed();
    assert!(
        done.is_ok(),
        "shutdown was still draining after 10 s: a client that reads nothing holds it"
    );
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with a 1 s drain timeout"
    );
    // Its connection was closed: what it reads ends before the whole response.
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the slow client's connection stayed open");
    assert!(got.len() < 6_000_000, "the whole response was written");
}
