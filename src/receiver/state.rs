//! The HTTP layer's state: the shared services plus what only the HTTP layer has (the body
//! budgets and the refusal log). Handlers take the part they need, `State<Services>` for
//! most, through axum's `FromRef`.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::receiver::refusals::RefusalLog;
use crate::sync::Services;

#[derive(Clone)]
pub struct HttpState {
    pub services: Services,
    /// Webhook requests this process refused lately (the ops page shows them).
    pub refusals: Arc<RefusalLog>,
    /// Bodies of authenticated senders buffered at once, in KiB permits
    /// (`http.max_buffered_body_bytes`).
    pub bodies: Arc<tokio::sync::Semaphore>,
    /// Bodies read before their sender is authenticated, in KiB permits
    /// (`http.max_unauthenticated_body_bytes`).
    pub unauthenticated_bodies: Arc<tokio::sync::Semaphore>,
}

/// A semaphore of KiB permits for `bytes` of bodies.
fn body_semaphore(bytes: usize) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(bytes.div_ceil(1024)))
}

impl HttpState {
    pub fn new(services: Services) -> HttpState {
        let http = &services.settings.http;
        HttpState {
            bodies: body_semaphore(http.max_buffered_body_bytes),
            unauthenticated_bodies: body_semaphore(http.max_unauthenticated_body_bytes),
            refusals: Arc::default(),
            services,
        }
    }
}

impl FromRef<HttpState> for Services {
    fn from_ref(s: &HttpState) -> Services {
        s.services.clone()
    }
}

/// The webhook handlers use the services and the HTTP layer's own state side by side.
impl Deref for HttpState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}
