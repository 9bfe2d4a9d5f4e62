//! The last webhook requests this process refused, for the operator page. Kept in memory
//! and bounded: a flood of forged requests must not turn into database writes.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// How many refusals are kept.
pub const KEPT: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub at_ms: i64,
    pub provider: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct RefusalLog(Mutex<VecDeque<Refusal>>);

impl RefusalLog {
    pub fn record(&self, r: Refusal) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() == KEPT {
                q.pop_back();
            }
            q.push_front(r);
        }
    }

    /// Newest first, optionally of one provider.
    pub fn recent(&self, provider: Option<&str>) -> Vec<Refusal> {
        self.0
            .lock()
            .map(|q| {
                q.iter()
                    .filter(|r| provider.is_none_or(|p| r.provider == p))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_newest_first() {
        let log = RefusalLog::default();
        for i in 0..(KEPT as i64 + 5) {
            log.record(Refusal {
                at_ms: i,
                provider: if i % 2 == 0 { "vsts" } else { "jira" },
                status: 401,
                code: "unauthorized",
                detail: String::new(),
            });
        }
        let all = log.recent(None);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].at_ms, KEPT as i64 + 4);
        assert!(
            log.recent(Some("vsts"))
                .iter()
                .all(|r| r.provider == "vsts")
        );
    }
}
