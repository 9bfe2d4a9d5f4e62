//! Variables under `ISSUESYNC_` that are not configuration keys, retentions that would delete
//! every sync decision or finished job at once, and an OTLP endpoint that is not a URL. Config
//! loading does not depend on the backend, so these run on SQLite only.

mod common;

use std::process::Command;

/// `issuesync migrate` on a fresh SQLite database with `env` added: (exit code, stderr).
async fn migrate_with(env: &[(&str, &str)]) -> Option<(i32, String)> {
    common::require(common::Backend::Sqlite, common::Seq::Local)?;
    let db = common::TestDb::create(common::Backend::Sqlite, None).await;
    let out = Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env_remove("REDIS_URL")
        .env_remove("ISSUESYNC_ENV")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run issuesync migrate");
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_db_variable_is_not_an_unknown_key() {
    // The typo is the control: it shows that unknown-key warnings are printed at all.
    let Some((code, err)) = migrate_with(&[
        ("ISSUESYNC_ADVISORY_DB", "/tmp/advisory-db"),
        ("ISSUESYNC_DATABSE__MAX_CONNECTIONS", "5"),
    ])
    .await
    else {
        return;
    };
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("databse"),
        "no unknown-key warning at all: {err}"
    );
    assert!(
        !err.contains("advisory_db"),
        "ISSUESYNC_ADVISORY_DB (read by .ci/deny) is warned about: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_decision_retention_is_refused() {
    let Some((code, err)) =
        migrate_with(&[("ISSUESYNC_SYNC_DECISIONS__RETENTION_DAYS", "0")]).await
    else {
        return;
    };
    assert_eq!(code, 1, "a retention of 0 days was accepted: {err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(
        lines[0].contains("sync_decisions.retention_days"),
        "the key is not named: {err}"
    );
    let Some((code, err)) =
        migrate_with(&[("ISSUESYNC_SYNC_DECISIONS__RETENTION_DAYS", "1")]).await
    else {
        return;
    };
    assert_eq!(code, 0, "a retention of 1 day is refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_endpoint_without_a_scheme_is_refused() {
    // A host:port alone is the gRPC habit; the exporter speaks OTLP/HTTP and needs a URL.
    let Some((code, err)) = migrate_with(&[("ISSUESYNC_OTEL__ENDPOINT", "127.0.0.1:4318")]).await
    else {
        return;
    };
    assert_eq!(code, 1, "an endpoint without a scheme was accepted: {err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(
        lines[0].contains("otel.endpoint"),
        "the key is not named: {err}"
    );
    // A URL is taken; nothing listens there, and start-up does not wait for the collector.
    let Some((code, err)) =
        migrate_with(&[("ISSUESYNC_OTEL__ENDPOINT", "http://127.0.0.1:9")]).await
    else {
        return;
    };
    assert_eq!(code, 0, "a collector URL is refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_job_retention_is_refused() {
    for key in ["RETENTION_DONE_DAYS", "RETENTION_DEAD_DAYS"] {
        let var = format!("ISSUESYNC_QUEUE__{key}");
        let Some((code, err)) = migrate_with(&[(var.as_str(), "0")]).await else {
            return;
        };
        assert_eq!(code, 1, "{var}=0 was accepted: {err}");
        let named = format!("queue.{}", key.to_lowercase());
        assert!(err.contains(&named), "{named} is not named: {err}");
        let Some((code, err)) = migrate_with(&[(var.as_str(), "1")]).await else {
            return;
        };
        assert_eq!(code, 0, "{var}=1 is refused: {err}");
    }
}
