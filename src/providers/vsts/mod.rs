//! Azure DevOps (provider key `vsts`): service-hook deliveries of `workitem.updated`.

pub mod client;
pub mod oauth;
pub mod tokens;
pub mod webhook;
