//! Command-line conventions: completions and a man page generated from the same definitions
//! as `--help`, and plain (uncoloured) log lines whenever stderr is not a terminal.

mod common;

use std::process::{Command, Output};

fn issuesync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .args(args)
        .output()
        .expect("run issuesync")
}

#[test]
fn completions_cover_every_shell_and_subcommand() {
    for (shell, marker) in [
        ("bash", "_issuesync()"),
        ("zsh", "#compdef issuesync"),
        ("fish", "complete -c issuesync"),
    ] {
        let out = issuesync(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell} script lacks {marker}");
        for sub in ["jobs", "deliveries", "explain", "migrate"] {
            assert!(text.contains(sub), "{shell} script lacks {sub}");
        }
    }
}

#[test]
fn an_unknown_shell_is_refused_on_one_line() {
    let out = issuesync(&["completions", "cmd.exe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'cmd.exe'"), "{err}");
}

#[test]
fn man_page_is_roff_with_the_commands() {
    let out = issuesync(&["man"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(".ie") || text.starts_with(".TH"),
        "{text:.200}"
    );
    assert!(text.contains(".TH issuesync"), "{text:.300}");
    for sub in ["jobs", "deliveries", "explain", "completions"] {
        assert!(text.contains(sub), "man page lacks {sub}");
    }
}

/// `issuesync migrate` on a fresh SQLite database, stderr to a pipe, with `NO_COLOR` as given.
async fn migrate_log(no_color: Option<&str>) -> String {
    let db = common::TestDb::create(common::Backend::Sqlite, None).await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_issuesync"));
    cmd.arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "info");
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    let out = cmd.output().expect("run issuesync migrate");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    for no_color in [None, Some(""), Some("1")] {
        let log = migrate_log(no_color).await;
        assert!(
            log.contains("migrations applied"),
            "NO_COLOR={no_color:?}: {log}"
        );
        assert!(
            !log.contains('\u{1b}'),
            "NO_COLOR={no_color:?}: ANSI escape in a log written to a pipe: {log:?}"
        );
    }
}
