//! Our HTTP/1.1 accept loop (axum's `serve` exposes no connection cap, header timeout or
//! half-close). Connections are capped; a connection accepted at the cap waits while the
//! oldest connections with no request in flight and no response being written (idle
//! keep-alives, clients that have not finished their headers) are closed to make room, as
//! nginx reuses its idle keep-alive connections; when every connection is busy it waits
//! for one to end, and further ones wait in the kernel's backlog. Accept errors such as
//! EMFILE close idle connections too and pause briefly instead of spinning. A graceful
//! shutdown lets requests in flight finish within `Limits::drain_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
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
    /// After shutdown is asked, requests in flight get this long; then their connections
    /// are closed (a client that keeps a response from finishing must not hold shutdown).
    pub drain_timeout: Duration,
}

/// Pause after an accept error (EMFILE, ENFILE, ENOMEM…): short, so `/healthz` gets in
/// as soon as a descriptor is free, and long enough not to spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

struct Entry {
    opened: Instant,
    activity: Activity,
    close: Arc<Notify>,
}

/// What a connection is doing, as far as closing it is concerned.
#[derive(Clone, Default)]
struct Activity {
    /// Requests in flight, counted until their response body is finished.
    busy: Arc<AtomicUsize>,
    /// Bytes were handed to the socket since its last completed flush: hyper may hold the
    /// rest of a response (its write buffer) after the body ended.
    unflushed: Arc<AtomicBool>,
}

impl Activity {
    fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0 && !self.unflushed.load(Ordering::Acquire)
    }
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

    fn add(&self) -> (u64, Activity, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Activity::default();
        let close = Arc::new(Notify::new());
        if let Ok(mut m) = self.open.lock() {
            m.insert(
                id,
                Entry {
                    opened: Instant::now(),
                    activity: activity.clone(),
                    close: close.clone(),
                },
            );
        }
        (id, activity, close)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.open.lock() {
            m.remove(&id);
        }
        self.closed.notify_waiters();
    }

    /// Asks up to `n` of the oldest idle connections (no request in flight, no response
    /// being written) to close; returns how many were asked.
    fn close_idle(&self, n: usize) -> usize {
        let Ok(m) = self.open.lock() else {
            return 0;
        };
        let mut idle: Vec<&Entry> = m.values().filter(|e| e.activity.idle()).collect();
        idle.sort_by_key(|e| e.opened);
        for e in idle.iter().take(n) {
            // notify_one stores a permit: the connection sees it even if not waiting yet.
            e.close.notify_one();
        }
        idle.len().min(n)
    }
}

/// Counts a request as in flight until its response body is finished (or dropped).
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

/// A response body that keeps its request counted as in flight while it is written.
struct GuardedBody {
    inner: axum::body::Body,
    _guard: BusyGuard,
}

impl hyper::body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting whether written bytes are still waiting for a completed flush
/// (hyper flushes the socket only once its own write buffer is empty).
struct TrackedIo {
    io: tokio::net::TcpStream,
    unflushed: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TrackedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed.store(true, Ordering::Release);
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed.store(true, Ordering::Release);
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.unflushed.store(false, Ordering::Release);
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
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
/// finish within `limits.drain_timeout` (idle connections close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let conns = Arc::new(Conns::default());
    let stop = CancellationToken::new();
    let force = CancellationToken::new();
    let tracker = TaskTracker::new();
    let max = limits.max_connections.max(1);
    // Close a few at a time: one lock and sort per batch, not per accepted connection.
    let batch = (max / 32).max(1);
    let mut last_error_log: Option<Instant> = None;
    let grace = limits.drain_timeout;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => return drain(stop, force, tracker, grace).await,
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
        // Room is made only for a connection that came: closing idle ones beforehand would
        // also close the newest, whose request may be on its way. This one waits (one
        // descriptor over the cap, within the reserve kept for it) and the next ones wait
        // in the backlog.
        while conns.len() >= max {
            if conns.close_idle(batch) == 0 {
                metrics::counter!("issuesync_http_connections_waited_total").increment(1);
            }
            // Wait for one to close (or re-check soon: a busy one may have become idle).
            tokio::select! {
                _ = conns.closed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = &mut shutdown => return drain(stop, force, tracker, grace).await,
            }
        }
        let _ = stream.set_nodelay(true);
        let (id, activity, close) = conns.add();
        let (router, conns, stop, force, timeout) = (
            router.clone(),
            conns.clone(),
            stop.clone(),
            force.clone(),
            limits.header_read_timeout,
        );
        tracker.spawn(async move {
            let signals = Signals {
                close: &close,
                stop: &stop,
                force: &force,
            };
            serve_connection(stream, router, timeout, &activity, signals).await;
            conns.remove(id);
        });
    }
}

/// Asks every connection to finish its request and close; after `timeout`, closes those
/// still open.
async fn drain(
    stop: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
    timeout: Duration,
) -> std::io::Result<()> {
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            timeout_ms = timeout.as_millis() as u64,
            "connections still busy after the drain timeout; closing them"
        );
        force.cancel();
        tracker.wait().await;
    }
    Ok(())
}

/// What a connection listens for besides its socket.
struct Signals<'a> {
    /// Closing to make room: at once if idle, else after the request in flight.
    close: &'a Notify,
    /// Shutdown: after the request in flight.
    stop: &'a CancellationToken,
    /// The drain timeout passed: at once.
    force: &'a CancellationToken,
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    header_read_timeout: Duration,
    activity: &Activity,
    signals: Signals<'_>,
) {
    let svc_busy = activity.busy.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = BusyGuard::new(&svc_busy);
        let router = router.clone();
        async move {
            let response = router.oneshot(req.map(axum::body::Body::new)).await?;
            // The guard goes with the body: the request counts until its body is written.
            Ok::<_, std::convert::Infallible>(response.map(|inner| GuardedBody {
                inner,
                _guard: guard,
            }))
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
    let io = TrackedIo {
        io: stream,
        unflushed: activity.unflushed.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
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
            _ = signals.close.notified(), if !closing => {
                if activity.idle() {
                    return; // idle: dropping it closes the socket
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = signals.stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = signals.force.cancelled() => return,
        }
    }
}
