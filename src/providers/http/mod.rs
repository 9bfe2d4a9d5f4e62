//! The outbound HTTP layer shared by the provider clients: auth per provider, error
//! classification (Sentry's `BaseApiClient` mapping, plus Retry-After-aware 429/503 and
//! permanent 401/403/404), Retry-After, and a 240 s GET cache.

mod auth;
mod cache;
mod client;
mod error;
mod request;

pub use auth::{Auth, oauth1_authorization, parse_rsa_key};
pub use cache::CACHE_TTL;
pub use client::{Http, REQUEST_TIMEOUT, Response, with_query};
pub use error::{ApiError, rate_limit_until};
pub use request::{Path, Request};
