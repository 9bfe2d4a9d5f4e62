//! Delete the per-group cache keys of a project's recently seen groups, 1000 a page,
//! as Sentry's `invalidate_assignee_exists_cache` batches them.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// `assignee_exists:1:{group_id}`
    AssigneeExists,
    /// `owner_exists:1:{group_id}`
    OwnerDebounce,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidateProjectCaches {
    pub project_id: i64,
    pub kind: CacheKind,
    /// Fault injection for drills and tests: fail (transiently) after this many pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_after_pages: Option<u32>,
}

impl crate::Job for InvalidateProjectCaches {
    const JOB_NAME: &'static str = "invalidate_project_caches";
    const QUEUE: &'static str = crate::queues::MAINTENANCE;
    const MAX_ATTEMPTS: u32 = 10;
    const TIMEOUT_SECS: u64 = 600;
    fn dedup_key(&self) -> Option<String> {
        let kind = match self.kind {
            CacheKind::AssigneeExists => "assignee_exists",
            CacheKind::OwnerDebounce => "owner_debounce",
        };
        Some(format!("invalidate:{}:{kind}", self.project_id))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(InvalidateProjectCaches {
        project_id: 1,
        kind: CacheKind::OwnerDebounce,
        fail_after_pages: Some(2),
    });
}
