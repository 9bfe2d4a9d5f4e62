//! Our HTTP/1.1 accept loop (axum's `serve` exposes no connection cap, header timeout or
//! half-close). Connections are capped; at the cap, connections with no request in flight
//! (idle keep-alives, clients that have not finished their headers) are closed oldest first
//! to make room, as nginx reuses its idle keep-alive connections, and when every
//! connection is busy new ones wait in the kernel's backlog. Accept errors such as EMFILE
//! close idle connections too and pause briefly instead of spinning.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Limits of the listener; see `http.*` in the README.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// A request's headers must arrive within this. Hyper starts the timer as soon as a
    /// connection waits for its next request, so this is also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
}

/// Pause after an accept error (EMFILE, ENFILE, ENOMEM…): short, so `/healthz` gets in
/// as soon as a descriptor is free, and long enough not to spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

struct Entry {
    opened: Instant,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

/// The open connections, so that idle ones can be closed when room is needed.
#[derive(Default)]
struct Conns {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
    closed: Notify,
}

impl Conns {
    fn len(&self) -> usize {
        self.open.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn add(&self) -> (u64, Arc<AtomicUsize>, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        if let Ok(mut m) = self.open.lock() {
            m.insert(
                id,
                Entry {
                    opened: Instant::now(),
                    busy: busy.clone(),
                    close: close.clone(),
                },
            );
        }
        (id, busy, close)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.open.lock() {
            m.remove(&id);
        }
        self.closed.notify_waiters();
    }

    /// Asks up to `n` of the oldest connections without a request in flight to close;
    /// returns how many were asked.
    fn close_idle(&self, n: usize) -> usize {
        let Ok(m) = self.open.lock() else {
            return 0;
        };
        let mut idle: Vec<&Entry> = m
            .values()
            .filter(|e| e.busy.load(Ordering::Acquire) == 0)
            .collect();
        idle.sort_by_key(|e| e.opened);
        for e in idle.iter().take(n) {
            // notify_one stores a permit: the connection sees it even if not waiting yet.
            e.close.notify_one();
        }
        idle.len().min(n)
    }
}

/// Counts a request as in flight until its response is produced.
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn new(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(busy.clone())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn is_per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish (idle connections close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let conns = Arc::new(Conns::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let max = limits.max_connections.max(1);
    // Close a few at a time: one lock and sort per batch, not per accepted connection.
    let batch = (max / 32).max(1);
    let mut last_error_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        while conns.len() >= max {
            if conns.close_idle(batch) == 0 {
                metrics::counter!("issuesync_http_connections_waited_total").increment(1);
            }
            // Wait for one to close (or re-check soon: a busy one may have become idle).
            tokio::select! {
                _ = conns.closed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = &mut shutdown => return drain(stop, tracker).await,
            }
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => return drain(stop, tracker).await,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_per_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: free some by closing idle connections.
                let closed = conns.close_idle(batch);
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, open = conns.len(), closed_idle = closed, "accept failed; pausing");
                    last_error_log = Some(Instant::now());
                }
                metrics::counter!("issuesync_http_accept_errors_total").increment(1);
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, busy, close) = conns.add();
        let (router, conns, stop, timeout) = (
            router.clone(),
            conns.clone(),
            stop.clone(),
            limits.header_read_timeout,
        );
        tracker.spawn(async move {
            serve_connection(stream, router, timeout, &busy, &close, &stop).await;
            conns.remove(id);
        });
    }
}

async fn drain(stop: CancellationToken, tracker: TaskTracker) -> std::io::Result<()> {
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    header_read_timeout: Duration,
    busy: &Arc<AtomicUsize>,
    close: &Notify,
    stop: &CancellationToken,
) {
    let svc_busy = busy.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = BusyGuard::new(&svc_busy);
        let router = router.clone();
        async move {
            let _guard = guard;
            router.oneshot(req.map(axum::body::Body::new)).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // Read buffers stay small: a slow body is read as the handler asks for it.
        .max_buf_size(64 * 1024)
        // A client that half-closes after its request still gets the answer.
        .half_close(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = close.notified(), if !closing => {
                if busy.load(Ordering::Acquire) == 0 {
                    return; // idle: dropping it closes the socket
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}
