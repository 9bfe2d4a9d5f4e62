//! `issuesync jobs …`: inspect, retry, kill and purge jobs.

use clap::Subcommand;

use issuesync::ops;
use issuesync::store::jobs::JobFilter;
use issuesync::sync::Services;

use super::{fmt_ms, print_json};

#[derive(Subcommand)]
pub enum JobsCmd {
    /// List jobs.
    List {
        #[arg(long, value_parser = ["pending", "running", "failed", "dead", "done", "scheduled"])]
        state: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        /// Only jobs of this kind.
        #[arg(long)]
        job: Option<String>,
        /// A text in the payload (e.g. an external issue key).
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One job: payload, attempts, last error, next run and the history of attempts.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Make jobs runnable now with attempts reset.
    Retry {
        ids: Vec<String>,
        /// Retry every job matching --state (and --queue).
        #[arg(long)]
        all: bool,
        #[arg(long, value_parser = ["failed", "dead"])]
        state: Option<String>,
        #[arg(long)]
        queue: Option<String>,
    },
    /// Stop jobs from running again (they move to dead, with a reason).
    Kill {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, default_value = "killed by an operator")]
        reason: String,
    },
    /// Delete finished jobs older than an age (e.g. 7d, 12h).
    Purge {
        #[arg(long, value_parser = ["done", "dead"])]
        state: String,
        #[arg(long)]
        older_than: String,
    },
    /// Counts per queue and state, oldest pending age, throughput of the last hour.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

pub async fn jobs(state: &Services, cmd: JobsCmd) -> anyhow::Result<()> {
    let db = &state.db;
    match cmd {
        JobsCmd::List {
            state: st,
            queue,
            job,
            search,
            limit,
            json,
        } => {
            let filter = JobFilter {
                state: st,
                queue,
                job_name: job,
                search,
                ids: None,
                ..Default::default()
            };
            let list = ops::list(db, &filter, limit).await?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<26}  {:<11}  {:<24}  {:<9}  {:>8}  {:<19}  last error",
                "id", "queue", "job", "state", "attempts", "next run (UTC)"
            );
            for j in &list {
                let err: String = j
                    .last_error
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(60)
                    .collect();
                println!(
                    "{:<26}  {:<11}  {:<24}  {:<9}  {:>4}/{:<3}  {:<19}  {}",
                    j.id,
                    j.queue,
                    j.job,
                    j.state,
                    j.attempts,
                    j.max_attempts,
                    fmt_ms(j.next_run_ms),
                    err
                );
            }
            Ok(())
        }
        JobsCmd::Show { id, json } => {
            let d = ops::show(db, &id).await?;
            if json {
                return print_json(&d);
            }
            let j = &d.job;
            println!(
                "id:          {}\nqueue:       {}\njob:         {}\nstate:       {}\nattempts:    {}/{}",
                j.id, j.queue, j.job, j.state, j.attempts, j.max_attempts
            );
            println!("next run:    {} UTC", fmt_ms(j.next_run_ms));
            println!("last error:  {}", j.last_error.as_deref().unwrap_or("-"));
            println!("dedup key:   {}", j.dedup_key.as_deref().unwrap_or("-"));
            println!("traceparent: {}", j.traceparent.as_deref().unwrap_or("-"));
            println!("payload:     {}", serde_json::to_string(&j.payload)?);
            if let Some(p) = &d.progress {
                println!(
                    "progress:    {} page(s), {} key(s) deleted, cursor {}",
                    p.pages, p.keys_deleted, p.cursor
                );
            }
            println!("history:");
            for a in &d.history {
                println!(
                    "  #{:<3} {:<8} {} ({} ms) on {}{}",
                    a.attempt,
                    a.outcome,
                    fmt_ms(a.started_at),
                    a.finished_at - a.started_at,
                    a.worker,
                    a.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        JobsCmd::Retry {
            ids,
            all,
            state: st,
            queue,
        } => {
            let valid = if all {
                ids.is_empty() && st.is_some()
            } else {
                !ids.is_empty()
            };
            if !valid {
                anyhow::bail!("give job ids, or --all --state failed|dead [--queue Q]");
            }
            let n = ops::retry(db, &ids, st.as_deref(), queue.as_deref()).await?;
            println!("retried {n} job(s)");
            Ok(())
        }
        JobsCmd::Kill { ids, reason } => {
            let n = ops::kill(db, &ids, &reason).await?;
            println!("killed {n} job(s)");
            if n < ids.len() as u64 {
                eprintln!(
                    "note: {} job(s) were unknown or already finished",
                    ids.len() as u64 - n
                );
            }
            Ok(())
        }
        JobsCmd::Purge {
            state: st,
            older_than,
        } => {
            let age = ops::parse_age(&older_than)?;
            let n = ops::purge(db, &st, age).await?;
            println!("purged {n} job(s)");
            Ok(())
        }
        JobsCmd::Stats { json } => {
            let s = ops::stats(db).await?;
            if json {
                return print_json(&s);
            }
            println!("{:<12} {:<10} {:>8}", "queue", "state", "count");
            for c in &s.counts {
                println!("{:<12} {:<10} {:>8}", c.queue, c.state, c.count);
            }
            for (q, age) in &s.oldest_pending_age_s {
                println!("oldest pending in {q}: {age}s");
            }
            for t in &s.last_hour {
                println!("last hour {:<12} {:<8} {:>8}", t.queue, t.outcome, t.count);
            }
            Ok(())
        }
    }
}
