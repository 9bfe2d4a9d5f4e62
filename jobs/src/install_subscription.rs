//! Register our webhook with a provider for an integration (ADO service hook, Jira Server webhook).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallSubscription {
    pub integration_id: i64,
}

impl crate::Job for InstallSubscription {
    const JOB_NAME: &'static str = "install_subscription";
    const QUEUE: &'static str = crate::queues::OUTBOUND;
    const MAX_ATTEMPTS: u32 = 5;
    const TIMEOUT_SECS: u64 = 120;
    fn dedup_key(&self) -> Option<String> {
        Some(format!("install:{}", self.integration_id))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(InstallSubscription { integration_id: 9 });
}
