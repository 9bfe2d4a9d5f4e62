//! Poison jobs: a job that takes its worker process down every time (here: it exhausts the
//! process's memory limit, as a container's OOM kill would) ends dead after its attempts,
//! with a reason, while a supervisor restarts the worker and every other job is done.
//! (A panicking job is caught inside the worker: tests/queue.rs.)

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use issuesync_jobs::noop::{Behaviour, Noop};

db_tests!(a_job_that_kills_its_worker_ends_dead_and_the_rest_run);

/// `issuesync work` under a 3 GiB address-space limit (util-linux `prlimit`).
fn limited_worker(app: &TestApp) -> common::Child {
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--as=3221225472")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_issuesync"))
        .args(["work", "--queues", "maintenance", "--concurrency", "2"])
        .envs(app.child_env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    common::Child(cmd.spawn().expect("spawn prlimit issuesync"))
}

async fn a_job_that_kills_its_worker_ends_dead_and_the_rest_run(app: TestApp) {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "prlimit is missing"
        );
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let poison = app
        .enqueue(&Noop {
            behaviour: Behaviour::ExhaustMemory,
            ..Default::default()
        })
        .await
        .id()
        .to_string();
    let mut good = Vec::new();
    for _ in 0..20 {
        good.push(
            app.enqueue(&Noop {
                ledger: Some("good".into()),
                sleep_ms: 50,
                ..Default::default()
            })
            .await
            .id()
            .to_string(),
        );
    }
    // The supervisor: restart the worker whenever it dies, until the poison job is dead.
    let mut worker = limited_worker(&app);
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if app.job(&poison).await.job.state == "dead" {
            break;
        }
        if let Ok(Some(_)) = worker.0.try_wait() {
            restarts += 1;
            worker = limited_worker(&app);
        }
        assert!(
            Instant::now() < deadline,
            "poison job not dead after 120 s ({restarts} restarts)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let j = app.job(&poison).await;
    assert!(
        j.job
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("ended without a result"),
        "{:?}",
        j.job.last_error
    );
    assert!(
        (1..=4).contains(&restarts),
        "the worker died {restarts} times"
    );
    // The others all ran, each once in effect, with the restarted workers.
    for id in &good {
        let deadline = Instant::now() + Duration::from_secs(60);
        while app.job(id).await.job.state != "done" {
            assert!(Instant::now() < deadline, "job {id} not done");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (rows, _) = app.ledger("good").await;
    assert!(rows >= 20, "every good job ran");
    // The worker is still up and takes new work.
    let again = app
        .enqueue(&Noop {
            ledger: Some("after".into()),
            ..Default::default()
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.job(again.id()).await.job.state != "done" {
        assert!(
            Instant::now() < deadline,
            "the restarted worker does not take new jobs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
