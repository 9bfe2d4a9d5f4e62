//! A Discord interaction whose work did not fit in Discord's 3 s: it was answered
//! "deferred"; run it and send the reply through the interaction's follow-up webhook
//! (its token is valid for 15 minutes, hence few attempts).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscordInteraction {
    /// `webhook_deliveries.id` of the stored interaction.
    pub delivery_id: i64,
}

impl crate::Job for DiscordInteraction {
    const JOB_NAME: &'static str = "discord_interaction";
    const QUEUE: &'static str = crate::queues::INBOUND;
    const MAX_ATTEMPTS: u32 = 5;
    const TIMEOUT_SECS: u64 = 60;
    fn dedup_key(&self) -> Option<String> {
        Some(format!("discord:{}", self.delivery_id))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(DiscordInteraction { delivery_id: 7 });
}
