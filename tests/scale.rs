//! 3 worker processes on Postgres drain 10,000 jobs while one of them is SIGKILLed.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use issuesync::store::jobs::JobFilter;
use issuesync_jobs::noop::Noop;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_ten_thousand_jobs_one_killed() {
    let Some(app) = common::spawn_app(common::Backend::Postgres, common::Seq::Local).await else {
        return;
    };
    const N: usize = 10_000;
    let marker = "scale";
    let mut ids = Vec::with_capacity(N);
    for chunk in 0..N / 1000 {
        let mut tx = app.state.db.begin().await.unwrap();
        for _ in 0..1000 {
            let job = Noop {
                sleep_ms: 20,
                ledger: Some(marker.into()),
                ..Default::default()
            };
            ids.push(
                issuesync::store::enqueue::enqueue(&mut tx, &job)
                    .await
                    .unwrap()
                    .id()
                    .to_string(),
            );
        }
        tx.commit().await.unwrap();
        let _ = chunk;
    }

    // Production heartbeat settings (not the fast test ones): rescue must still be < 30 s.
    let spawn = |app: &common::TestApp| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"));
        c.args(["work", "--queues", "maintenance", "--concurrency", "8"])
            .env("DATABASE_URL", &app.db.url)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null());
        common::Child(c.spawn().expect("spawn worker"))
    };
    let mut workers: Vec<common::Child> = (0..3).map(|_| spawn(&app)).collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while app.ledger(marker).await.0 < (N / 3) as i64 {
        assert!(
            Instant::now() < deadline,
            "workers too slow: {:?}",
            app.ledger(marker).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = workers.remove(0);
    let pid = victim.0.id();
    victim.signal("KILL");
    let killed_at = Instant::now();
    drop(victim);

    // The jobs the dead worker held.
    let running = issuesync::ops::list(
        &app.state.db,
        &JobFilter {
            state: Some("running".into()),
            ..Default::default()
        },
        10_000,
    )
    .await
    .unwrap();
    let orphans: Vec<String> = running
        .iter()
        .filter(|j| {
            j.worker
                .as_deref()
                .is_some_and(|w| w.starts_with(&format!("maintenance-{pid}-")))
        })
        .map(|j| j.id.clone())
        .collect();
    assert!(
        !orphans.is_empty(),
        "the killed worker held no job; kill earlier"
    );

    let mut orphan_recovery = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if orphan_recovery.is_none() {
            let mut all_done = true;
            for id in &orphans {
                if app.job(id).await.job.state != "done" {
                    all_done = false;
                    break;
                }
            }
            if all_done {
                orphan_recovery = Some(killed_at.elapsed());
            }
        }
        let stats = issuesync::ops::stats(&app.state.db).await.unwrap();
        let done = stats
            .counts
            .iter()
            .find(|c| c.queue == "maintenance" && c.state == "done")
            .map(|c| c.count)
            .unwrap_or(0);
        if done as usize >= N && orphan_recovery.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {stats:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovery = orphan_recovery.unwrap();
    let (executions, distinct) = app.ledger(marker).await;
    eprintln!(
        "orphans: {}, recovered in {:.1}s, executions {executions}, distinct {distinct}",
        orphans.len(),
        recovery.as_secs_f64()
    );
    assert_eq!(distinct, N as i64, "every job ran");
    // Only jobs of the killed worker may have run twice.
    let dupes = executions - distinct;
    assert!(
        dupes <= orphans.len() as i64,
        "{dupes} duplicates but only {} orphans",
        orphans.len()
    );
    let mut tx = app.state.db.begin().await.unwrap();
    let twice: Vec<String> = match &mut tx {
        issuesync::db::Tx::Pg(t) => sqlx::query_scalar(
            "SELECT job_id FROM job_ledger WHERE marker = $1 GROUP BY job_id HAVING COUNT(*) > 1",
        )
        .bind(marker)
        .fetch_all(&mut **t)
        .await
        .unwrap(),
        issuesync::db::Tx::Sqlite(_) => unreachable!(),
    };
    let orphan_set: HashSet<&String> = orphans.iter().collect();
    assert!(
        twice.iter().all(|id| orphan_set.contains(id)),
        "a job of a live worker ran twice: {twice:?}"
    );
    assert!(
        recovery <= Duration::from_secs(30),
        "orphans took {recovery:?}"
    );
    for mut w in workers {
        w.signal("TERM");
        assert!(w.wait_exit(20).is_some());
    }
}
