//! Tests that run the real binary as separate processes.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn issuesync(args: &[&str], db_url: &str, redis_url: &str, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_issuesync"));
    c.args(args)
        .env("DATABASE_URL", db_url)
        .env("REDIS_URL", redis_url)
        .env("ISSUESYNC_BIND", format!("127.0.0.1:{port}"))
        .env("ISSUESYNC_ADMIN_TOKEN", common::TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..100 {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} did not become healthy");
}

/// Two `issuesync serve` processes share one Postgres and one Redis sequence: 60 projects
/// created at once through both get 60 distinct snowflake ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sequence_shared_by_two_processes_yields_no_duplicates() {
    let Some((pg, Some(redis))) = common::require(common::Backend::Postgres, common::Seq::Redis)
    else {
        return;
    };
    let db = common::TestDb::create(common::Backend::Postgres, pg.as_deref()).await;
    let redis_url = common::test_redis_url(&redis).await;
    let status = issuesync(&["migrate"], &db.url, &redis_url, 0)
        .status()
        .expect("run migrate");
    assert!(status.success());

    let ports = [free_port(), free_port()];
    let _procs: Vec<common::Child> = ports
        .iter()
        .map(|p| {
            common::Child(
                issuesync(&["serve"], &db.url, &redis_url, *p)
                    .spawn()
                    .expect("spawn serve"),
            )
        })
        .collect();
    let client = reqwest::Client::new();
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    for b in &bases {
        wait_healthy(&client, b).await;
    }
    let org: Value = client
        .post(format!("{}/api/v1/organizations", bases[0]))
        .bearer_auth(common::TOKEN)
        .json(&json!({"name": "Two Procs"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let futs = (0..60).map(|i| {
        let client = client.clone();
        let url = format!(
            "{}/api/v1/organizations/{}/projects",
            bases[i % 2],
            org["id"]
        );
        async move {
            let r = client
                .post(url)
                .bearer_auth(common::TOKEN)
                .json(&json!({"name": format!("p{i}"), "slug": format!("p{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
        }
    });
    let ids: Vec<i64> = futures::future::join_all(futs).await;
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        60,
        "duplicate snowflake ids across processes: {ids:?}"
    );
}

/// `--json`-less CLI basics: bad usage exits 2, a bad config exits 1 with one line.
#[test]
fn cli_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .args(["migrate"])
        .env("DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: unsupported DATABASE_URL"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .args(["--config", "/no/such/file.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.toml"));
}
