//! Discord interactions: Ed25519 verification (`auth`), the interaction payload
//! (`webhook`) and the follow-up webhook client (`client`).

pub mod auth;
pub mod client;
pub mod webhook;
