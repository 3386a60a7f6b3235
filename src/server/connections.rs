//! Connection bounds: at most `MAX_CONNECTIONS` held at once, idle ones closed after
//! [`IDLE_TIMEOUT`] (HTTP/1 keep-alive and HTTP/2 alike), and idle ones closed at once when
//! a new client is waiting for room or when the server shuts down.
//!
//! [`LimitedAcceptor`] sits under the TLS acceptor: a connection waits for a permit before
//! its handshake, then its socket ([`TrackedStream`]) and its service ([`TrackedService`])
//! share one [`Connection`] that knows whether a request is in flight and when the
//! connection last moved bytes. Closing an idle connection sends what the protocol offers
//! (HTTP/2 GOAWAY, through axum-server's `ConnectionShutdown`) and then ends the socket.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::http::Request;
use axum_server::ConnectionShutdown;
use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Service;

/// How long a connection may sit with no request in flight and no bytes moving.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection asked to close may take to finish writing and say goodbye before
/// its socket is ended.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// The default `MAX_CONNECTIONS`: half of the open-file limit (the rest is left for the
/// store, the upstream and the files), at least 16.
pub fn default_max_connections() -> usize {
    let soft_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    (soft_limit / 2).max(16)
}

/// The connections of one listener.
pub struct Tracker {
    permits: Arc<Semaphore>,
    max: usize,
    idle_timeout: Duration,
    started: Instant,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Weak<Connection>>>,
    draining: AtomicBool,
    open_gauge: metrics::Gauge,
}

impl Tracker {
    /// A tracker that holds at most `max` connections, closes those idle for
    /// `idle_timeout`, and keeps `open_gauge` at the number held.
    pub fn new(max: usize, idle_timeout: Duration, open_gauge: metrics::Gauge) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            idle_timeout,
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            open_gauge,
        })
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// How long a connection may sit idle.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// From now on, idle connections close at once, and so does each one as it turns idle.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.close_idle(usize::MAX);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Waits for room; while there is none, asks the longest-idle connection to close.
    async fn admit(self: &Arc<Self>) -> OwnedSemaphorePermit {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return permit;
            }
            self.close_idle(1);
            // The semaphore is never closed; a timeout means: look for idle ones again, once
            // the one just asked has had its grace to go (else every round closes another).
            let wait = self.permits.clone().acquire_owned();
            if let Ok(Ok(permit)) =
                tokio::time::timeout(CLOSE_GRACE + Duration::from_millis(200), wait).await
            {
                return permit;
            }
        }
    }

    /// Closes up to `count` idle connections, longest idle first.
    fn close_idle(&self, count: usize) {
        let mut idle: Vec<Arc<Connection>> = match self.live.lock() {
            Ok(live) => live
                .values()
                .filter_map(Weak::upgrade)
                .filter(|c| c.in_flight.load(Ordering::Acquire) == 0 && !c.asked_to_close())
                .collect(),
            Err(_) => return,
        };
        idle.sort_by_key(|c| c.last_active.load(Ordering::Relaxed));
        for connection in idle.into_iter().take(count) {
            connection.close();
        }
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Arc<Connection> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            tracker: Arc::downgrade(self),
            _permit: permit,
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            asked_to_close: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            shutdown: Mutex::new(None),
            reader: Mutex::new(None),
        });
        if let Ok(mut live) = self.live.lock() {
            live.insert(id, Arc::downgrade(&connection));
        }
        self.open_gauge.increment(1.0);
        tokio::spawn(watch_idle(Arc::downgrade(&connection), self.idle_timeout));
        connection
    }
}

/// Closes `connection` once it has been idle for `idle_timeout`; ends with the connection.
async fn watch_idle(connection: Weak<Connection>, idle_timeout: Duration) {
    let mut wait = idle_timeout;
    loop {
        tokio::time::sleep(wait).await;
        let Some(connection) = connection.upgrade() else {
            return;
        };
        let Some(tracker) = connection.tracker.upgrade() else {
            return;
        };
        let idle_for = Duration::from_millis(
            tracker
                .now_ms()
                .saturating_sub(connection.last_active.load(Ordering::Relaxed)),
        );
        if connection.in_flight.load(Ordering::Acquire) == 0 && idle_for >= idle_timeout {
            connection.close();
            return;
        }
        wait = idle_timeout
            .saturating_sub(idle_for)
            .max(Duration::from_secs(1));
    }
}

/// One accepted connection, shared by its socket and its service.
pub struct Connection {
    id: u64,
    tracker: Weak<Tracker>,
    _permit: OwnedSemaphorePermit,
    in_flight: AtomicUsize,
    last_active: AtomicU64,
    /// Asked to close: told the peer (HTTP/2 GOAWAY), and no longer counted as reclaimable.
    asked_to_close: AtomicBool,
    /// The socket reads end-of-stream from now on.
    ended: AtomicBool,
    shutdown: Mutex<Option<ConnectionShutdown>>,
    reader: Mutex<Option<Waker>>,
}

impl Connection {
    fn asked_to_close(&self) -> bool {
        self.asked_to_close.load(Ordering::Acquire)
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn touch(&self) {
        if let Some(tracker) = self.tracker.upgrade() {
            self.last_active.store(tracker.now_ms(), Ordering::Relaxed);
        }
    }

    /// Says goodbye where the protocol can (HTTP/2 GOAWAY, or HTTP/1 closing after the
    /// answer in progress), and ends the socket's reads after [`CLOSE_GRACE`] if no request
    /// has started meanwhile (the last answer has been written by then).
    fn close(self: &Arc<Self>) {
        if self.asked_to_close.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(shutdown) = self.shutdown.lock().ok().and_then(|s| s.clone()) {
            shutdown.graceful_shutdown();
        }
        let connection = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(CLOSE_GRACE).await;
            if let Some(connection) = connection.upgrade()
                && connection.in_flight.load(Ordering::Acquire) == 0
            {
                connection.ended.store(true, Ordering::Release);
                if let Some(waker) = connection.reader.lock().ok().and_then(|mut w| w.take()) {
                    waker.wake();
                }
            }
        });
    }

    /// While the server drains, a connection closes as soon as it turns idle.
    fn request_finished(self: &Arc<Self>) {
        self.touch();
        let was = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let draining = self
            .tracker
            .upgrade()
            .is_some_and(|t| t.draining.load(Ordering::Acquire));
        if was == 1 && draining {
            self.close();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(tracker) = self.tracker.upgrade() {
            tracker.open_gauge.decrement(1.0);
            if let Ok(mut live) = tracker.live.lock() {
                live.remove(&self.id);
            }
        }
    }
}

/// Admits connections within the cap, under the acceptor `inner` (TCP options).
#[derive(Clone)]
pub struct LimitedAcceptor<A> {
    inner: A,
    tracker: Arc<Tracker>,
}

impl<A> LimitedAcceptor<A> {
    /// Bounds `inner`'s connections by `tracker`.
    pub fn new(inner: A, tracker: Arc<Tracker>) -> Self {
        Self { inner, tracker }
    }
}

impl<A, I, S> Accept<I, S> for LimitedAcceptor<A>
where
    A: Accept<I, S> + Clone + Send + Sync + 'static,
    A::Future: Send,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = TrackedStream<A::Stream>;
    type Service = TrackedService<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.inner.clone();
        let tracker = self.tracker.clone();
        Box::pin(async move {
            let permit = tracker.admit().await;
            let (stream, service) = inner.accept(stream, service).await?;
            let connection = tracker.register(permit);
            Ok((
                TrackedStream {
                    inner: stream,
                    connection: connection.clone(),
                },
                TrackedService {
                    inner: service,
                    connection,
                },
            ))
        })
    }
}

/// A socket that notes when it moves bytes and reads end-of-stream once its connection is
/// closed.
pub struct TrackedStream<S> {
    inner: S,
    connection: Arc<Connection>,
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Register first, then look: a close that lands in between still wakes this read.
        if let Ok(mut reader) = self.connection.reader.lock() {
            *reader = Some(cx.waker().clone());
        }
        // Closed while idle: the peer is treated as gone.
        if self.connection.ended() {
            return Poll::Ready(Ok(()));
        }
        let filled = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > filled {
            self.connection.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.connection.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.connection.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A connection's service: counts the requests in flight and keeps the handle that closes
/// the connection politely.
#[derive(Clone)]
pub struct TrackedService<S> {
    inner: S,
    connection: Arc<Connection>,
}

impl<S, B> Service<Request<B>> for TrackedService<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let connection = self.connection.clone();
        if let Some(shutdown) = request.extensions().get::<ConnectionShutdown>()
            && let Ok(mut slot) = connection.shutdown.lock()
            && slot.is_none()
        {
            *slot = Some(shutdown.clone());
        }
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection.touch();
        let finished = InFlight(connection);
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            drop(finished);
            result
        })
    }
}

/// Ends a request's count when its future completes or is dropped.
struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_is_a_share_of_the_open_file_limit() {
        let max = default_max_connections();
        assert!(max >= 16, "{max}");
    }

    #[tokio::test]
    async fn a_full_tracker_closes_its_longest_idle_connection_to_admit_a_new_one() {
        let tracker = Tracker::new(2, IDLE_TIMEOUT, metrics::Gauge::noop());
        let first = tracker.register(tracker.admit().await);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = tracker.register(tracker.admit().await);
        second.in_flight.fetch_add(1, Ordering::AcqRel);
        assert_eq!(tracker.open(), 2);
        let waiting = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            first.asked_to_close(),
            "the idle connection was asked to close"
        );
        assert!(!second.asked_to_close(), "the busy one was not");
        drop(first);
        let permit = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .unwrap()
            .unwrap();
        drop(permit);
    }
}
