//! `issuesync deliveries …`: stored webhook deliveries.

use clap::Subcommand;

use issuesync::config::Settings;
use issuesync::ops;
use issuesync::startup;

use super::{fmt_ms, print_json};

#[derive(Subcommand)]
pub enum DeliveriesCmd {
    /// Recent deliveries, newest first.
    List {
        #[arg(long, value_parser = ["vsts", "jira", "jira_server", "discord"])]
        provider: Option<String>,
        /// At most 1000; more are paged with --before.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only deliveries older than this id (the next page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Enqueue a stored delivery again.
    Replay { id: i64 },
}

pub async fn deliveries(settings: Settings, cmd: DeliveriesCmd) -> anyhow::Result<()> {
    let state = startup::build_state(settings).await?;
    match cmd {
        DeliveriesCmd::List {
            provider,
            limit,
            before,
            json,
        } => {
            let page = ops::list_deliveries(&state.db, provider.as_deref(), before, limit).await?;
            if let Some(next) = page.next_before {
                eprintln!("more deliveries follow: page on with --before {next}");
            }
            let list = page.deliveries;
            if json {
                return print_json(&list);
            }
            println!(
                "{:>8}  {:<11}  {:<19}  {:<40}  {:<26}  job state",
                "id", "provider", "received (UTC)", "delivery key", "job"
            );
            for d in &list {
                let key: String = d.delivery_key.chars().take(40).collect();
                println!(
                    "{:>8}  {:<11}  {:<19}  {:<40}  {:<26}  {}",
                    d.id,
                    d.provider,
                    fmt_ms(d.received_at_ms),
                    key,
                    d.job_id.as_deref().unwrap_or("-"),
                    d.job_state.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        DeliveriesCmd::Replay { id } => {
            let r = ops::replay_delivery(&state.db, id).await?;
            println!("delivery {id} enqueued as job {}", r.id());
            Ok(())
        }
    }
}
