//! `ISSUESYNC_ENV` names an extra config file; set but empty it is treated as unset (a
//! `ISSUESYNC_ENV=` line in an env file must not make the service look for `config/.toml`).

mod common;

use std::process::{Command, Output};

/// Runs `issuesync migrate` on a fresh database with `ISSUESYNC_ENV` set to `env`.
async fn migrate_with_env(backend: common::Backend, env: &str) -> Option<(Output, common::TestDb)> {
    let (pg, _) = common::require(backend, common::Seq::Local)?;
    let db = common::TestDb::create(backend, pg.as_deref()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env_remove("REDIS_URL")
        .env("ISSUESYNC_ENV", env)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run issuesync migrate");
    Some((out, db))
}

async fn empty_env_is_unset(backend: common::Backend) {
    let Some((out, db)) = migrate_with_env(backend, "").await else {
        return;
    };
    assert!(
        out.status.success(),
        "migrate failed with ISSUESYNC_ENV='': {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The migrations really ran: our tables are there.
    let settings = issuesync::db::PoolSettings {
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
    };
    let pool = issuesync::db::Db::connect(&db.url, &settings)
        .await
        .expect("connect");
    let mut tx = pool.begin().await.unwrap();
    assert!(
        issuesync::store::integrations::list_integrations(&mut tx, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_issuesync_env_is_treated_as_unset_sqlite() {
    empty_env_is_unset(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_issuesync_env_is_treated_as_unset_postgres() {
    empty_env_is_unset(common::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_issuesync_env_still_fails_with_its_file() {
    let Some((out, _db)) = migrate_with_env(common::Backend::Sqlite, "nosuchenv").await else {
        return;
    };
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config/nosuchenv.toml"), "{err}");
}
