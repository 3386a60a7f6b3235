//! Connection bounds: at most `MAX_CONNECTIONS` held at once, idle ones closed after
//! [`IDLE_TIMEOUT`] (HTTP/1 keep-alive and HTTP/2 alike), and idle ones closed at once when
//! a new client is waiting for room or when the server shuts down.
//!
//! [`BoundedListener`] accepts a connection only while it can give it a permit: with the cap
//! reached, it holds the one connection just accepted until a permit frees up, and every later
//! one waits in the kernel's listen queue, without a file descriptor. [`LimitedAcceptor`]
//! then sits under the TLS acceptor (if any): the socket ([`TrackedStream`]) and the service
//! ([`TrackedService`]) share one [`Connection`] that knows whether a request is in flight and
//! when the connection last moved bytes. Closing an idle connection sends what the protocol
//! offers (HTTP/2 GOAWAY, through axum-server's `ConnectionShutdown`) and then ends the socket.
//!
//! A client that stops reading is cut off: a write that makes no progress for
//! [`WRITE_STALL`] fails, which aborts the connection (HTTP/1 and HTTP/2 alike) and frees its
//! permit; and one HTTP/1 connection answers at most [`MAX_REQUESTS_PER_CONNECTION`]
//! requests, so that pipelining cannot queue endless work behind one socket.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::http::{HeaderValue, Request, Response, Version, header};
use axum_server::accept::Accept;
use axum_server::{AddrListener, Address, ConnectionShutdown};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tower::Service;

/// How long a connection may sit with no request in flight and no bytes moving.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a write may make no progress (the client reads nothing) before the connection
/// is aborted.
pub(super) const WRITE_STALL: Duration = Duration::from_secs(10);
/// The most requests one HTTP/1 connection is answered; the last answer carries
/// `Connection: close`, and the client opens a new connection.
pub(super) const MAX_REQUESTS_PER_CONNECTION: u64 = 1_000;
/// How long a connection asked to close to finish writing and say goodbye before
/// its socket is ended.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// The process's soft limit on open files (1024 where it cannot be read).
pub(super) fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<usize>().ok())
        })
        .unwrap_or(1024)
}

/// How many connections each listener may hold, as shares of the open-file limit: the main
/// port half of it (unless `MAX_CONNECTIONS` says otherwise), the redirect listener an
/// eighth, the metrics listener a sixteenth. Each listener also holds at most one accepted
/// connection waiting for room. The rest (at least 5/16) is left for the store, the upstream
/// and the files, so that no side listener can starve the main port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileBudget {
    /// The HTTPS port.
    pub main: usize,
    /// `HTTP_REDIRECT_BIND`.
    pub redirect: usize,
    /// `METRICS_BIND`.
    pub metrics: usize,
}

impl FileBudget {
    /// The shares of `open_files`, with the main port's cap `max_connections` when set.
    pub(super) fn of(open_files: usize, max_connections: Option<usize>) -> Self {
        Self {
            main: max_connections.unwrap_or((open_files / 2).max(16)),
            redirect: (open_files / 8).max(4),
            metrics: (open_files / 16).max(2),
        }
    }
}

#[cfg(test)]
/// The default `MAX_CONNECTIONS`: half of the open-file limit (the rest is left for the
/// side listeners, the store, the upstream and the files), at least 16.
pub(super) fn default_max_connections() -> usize {
    FileBudget::of(open_file_limit(), None).main
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
            requests: AtomicU64::new(0),
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
pub(super) struct Connection {
    id: u64,
    tracker: Weak<Tracker>,
    _permit: OwnedSemaphorePermit,
    in_flight: AtomicUsize,
    /// Requests received so far.
    requests: AtomicU64,
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

/// A peer's address, as [`BoundedListener`] hands it to axum-server (and, through
/// [`Connected`], to the handlers as a `SocketAddr`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Address for Peer {
    type Stream = Admitted;
    type Listener = BoundedListener;
}

impl Connected<Peer> for SocketAddr {
    fn connect_info(peer: Peer) -> Self {
        peer.0
    }
}

/// A TCP listener that hands out a connection only with a permit of its [`Tracker`].
pub struct BoundedListener {
    inner: TcpListener,
    tracker: Arc<Tracker>,
}

impl BoundedListener {
    /// Bounds `inner`'s connections by `tracker`.
    pub fn new(inner: TcpListener, tracker: Arc<Tracker>) -> Self {
        Self { inner, tracker }
    }
}

impl AddrListener<Admitted, Peer> for BoundedListener {
    async fn bind_to(_: Peer) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a bounded listener is made from a bound socket",
        ))
    }

    /// Accepts one connection, then waits for room for it (asking idle connections to
    /// close); later clients wait in the listen queue meanwhile.
    async fn accept_stream(&self) -> io::Result<(Admitted, Peer)> {
        let (stream, peer) = self.inner.accept().await?;
        let permit = self.tracker.admit().await;
        // Answers are small; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        Ok((Admitted { stream, permit }, Peer(peer)))
    }

    fn get_local_addr(&self) -> io::Result<Peer> {
        self.inner.local_addr().map(Peer)
    }
}

/// An accepted connection with its permit.
pub struct Admitted {
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
}

/// Tracks each admitted connection (the innermost acceptor, under TLS if any).
#[derive(Clone)]
pub(super) struct LimitedAcceptor {
    tracker: Arc<Tracker>,
}

impl LimitedAcceptor {
    /// Tracks connections in `tracker` (the one their [`BoundedListener`] admits by).
    pub(super) fn new(tracker: Arc<Tracker>) -> Self {
        Self { tracker }
    }
}

impl<S: Send + 'static> Accept<Admitted, S> for LimitedAcceptor {
    type Stream = TrackedStream<TcpStream>;
    type Service = TrackedService<S>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, admitted: Admitted, service: S) -> Self::Future {
        let connection = self.tracker.register(admitted.permit);
        std::future::ready(Ok((
            TrackedStream {
                inner: admitted.stream,
                connection: connection.clone(),
                stalled: None,
                aborted: false,
            },
            TrackedService {
                inner: service,
                connection,
            },
        )))
    }
}

/// A socket that notes when it moves bytes, reads end-of-stream once its connection is
/// closed, and fails a write that has made no progress for [`WRITE_STALL`].
pub(super) struct TrackedStream<S> {
    inner: S,
    connection: Arc<Connection>,
    /// Armed while a write waits for the peer to read.
    stalled: Option<Pin<Box<Sleep>>>,
    /// A write stalled for too long: every later call fails.
    aborted: bool,
}

impl<S> TrackedStream<S> {
    /// Passes on a write-side outcome: progress disarms the stall timer; waiting arms it,
    /// and becomes an error once it runs out.
    fn written<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        progress: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match &poll {
            Poll::Pending => {
                let stall = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
                if stall.as_mut().poll(cx).is_ready() {
                    self.aborted = true;
                    tracing::info!(
                        "a client read nothing for {} s: its connection is aborted",
                        WRITE_STALL.as_secs()
                    );
                    return Poll::Ready(Err(stalled()));
                }
            }
            Poll::Ready(Ok(value)) if progress(value) => {
                self.stalled = None;
                self.connection.touch();
            }
            Poll::Ready(_) => {}
        }
        poll
    }
}

fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client read nothing for the write stall limit",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.aborted {
            return Poll::Ready(Err(stalled()));
        }
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
        if self.aborted {
            return Poll::Ready(Err(stalled()));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(cx, poll, |n| *n > 0)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.aborted {
            return Poll::Ready(Err(stalled()));
        }
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.written(cx, poll, |()| true)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.aborted {
            return Poll::Ready(Err(stalled()));
        }
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.written(cx, poll, |()| true)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.aborted {
            return Poll::Ready(Err(stalled()));
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(cx, poll, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A connection's service: counts the requests in flight and keeps the handle that closes
/// the connection politely.
#[derive(Clone)]
pub(super) struct TrackedService<S> {
    inner: S,
    connection: Arc<Connection>,
}

impl<S, B, R> Service<Request<B>> for TrackedService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
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
        // The last request an HTTP/1 connection is answered: its answer says goodbye with
        // `Connection: close` (exact, even with more requests pipelined behind it). HTTP/2 has
        // no such cap: its concurrent streams are bounded, and a GOAWAY would fail the streams
        // a busy client has already opened.
        let last = request.version() < Version::HTTP_2
            && connection.requests.fetch_add(1, Ordering::AcqRel) + 1
                >= MAX_REQUESTS_PER_CONNECTION;
        let finished = InFlight(connection);
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut result = response.await;
            drop(finished);
            if last && let Ok(response) = &mut result {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
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
