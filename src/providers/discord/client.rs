//! Discord's interaction webhooks: finish a deferred interaction within the token's
//! 15 minutes. The token in the URL is the credential, so errors show the URL without it.

use reqwest::Method;
use serde_json::Value;

use crate::providers::http::{ApiError, Auth, Http, Request};

use super::webhook::Reply;

pub struct DiscordClient<'a> {
    pub http: &'a Http,
    /// e.g. `https://discord.com/api/v10`.
    pub base_url: &'a str,
    pub application_id: &'a str,
}

impl DiscordClient<'_> {
    /// Sends the reply of a deferred interaction: an update edits the original message,
    /// a new message is posted as a follow-up (ephemeral when its flags say so).
    pub async fn send_deferred_reply(&self, token: &str, reply: &Reply) -> Result<(), ApiError> {
        let (method, suffix, route) = if reply.update {
            (
                Method::PATCH,
                "/messages/@original",
                "/webhooks/{application_id}/{token}/messages/@original",
            )
        } else {
            (Method::POST, "", "/webhooks/{application_id}/{token}")
        };
        let base = self.base_url.trim_end_matches('/');
        let app = self.application_id;
        let mut req = Request::new(
            method,
            route,
            format!("{base}/webhooks/{app}/{token}{suffix}"),
        );
        req.shown_url = Some(format!("{base}/webhooks/{app}/[redacted]{suffix}"));
        let body: &Value = &reply.data;
        self.http
            .send(&Auth::None, &req.json(body))
            .await
            .map(|_| ())
    }
}
