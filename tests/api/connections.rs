//! Connection bounds on real sockets: clients that stall before or during a request are cut
//! off after the request deadline; idle HTTP/1 and HTTP/2 connections close after the idle
//! timeout, but never while a request is in flight; a full server makes room by closing its
//! longest-idle connection, or makes a new client wait for a busy one to finish; and shutdown
//! closes idle connections at once instead of waiting out the grace period.
//!
//! The clients here are raw where the test must see the server end the connection: TLS from
//! tokio-rustls with hand-written HTTP/1.1, and the h2 crate for HTTP/2 (whose connection task
//! ends when the server closes the connection).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::Request;
use linkedin_token_exchange::server::config::Config;
use linkedin_token_exchange::server::{REQUEST_DEADLINE, Server};
use reqwest::cookie::Jar;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

use crate::support::{
    API_KEY, Behaviour, FakeUpstream, SECRET_KEY, http1_client, json_of, raw_tls, signed_cookie,
    test_config, trusting_client,
};

/// The idle timeout these tests set.
const IDLE: Duration = Duration::from_secs(1);
/// How long past the idle timeout an idle connection may take to be gone: the server looks
/// at an idle connection again at most a second late, and ends a closed one's socket 500 ms
/// after saying goodbye.
const CLOSE_SLACK: Duration = Duration::from_millis(2_500);
/// Bound on a handshake or an answer that should come at once.
const PROMPT: Duration = Duration::from_secs(5);

/// A server run in-process like [`crate::support::TestApp`], optionally with a short idle
/// timeout, whose `run` future the test can watch end.
struct Served {
    addr: SocketAddr,
    base: String,
    dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Served {
    async fn start(config: Config, dir: Arc<TempDir>, idle: Option<Duration>) -> Served {
        let mut server = Server::build(&config).await.expect("server starts");
        if let Some(idle) = idle {
            server = server.with_idle_timeout(idle);
        }
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Served {
            addr,
            base: format!("https://localhost:{}", addr.port()),
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The sandbox app, at most `max_connections` at once.
    async fn sandbox(max_connections: Option<u32>, idle: Option<Duration>) -> Served {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(&dir);
        config.listen.max_connections = max_connections;
        Served::start(config, dir, idle).await
    }

    /// The app in real mode against `upstream` (which may take its time: 5 s allowed).
    async fn real(
        upstream: &FakeUpstream,
        max_connections: Option<u32>,
        idle: Option<Duration>,
    ) -> Served {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(&dir);
        upstream.configure(&mut config);
        config.limits.upstream_timeout_ms = 5_000;
        config.listen.max_connections = max_connections;
        Served::start(config, dir, idle).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `run` to return; panics if it has not within `limit`.
    async fn stopped_within(&mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        let task = self.task.as_mut().expect("still running");
        match timeout(limit, task).await {
            Ok(result) => result.unwrap().unwrap(),
            Err(_) => panic!("the server was still running {limit:?} after the shutdown signal"),
        }
        self.task = None;
        started.elapsed()
    }

    /// A TLS connection that offers only `alpn` (`b"http/1.1"` or `b"h2"`).
    async fn tls(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        raw_tls(&self.dir, self.addr, alpn).await
    }

    /// An HTTP/2 connection: its request handle, and the task that drives it, which ends when
    /// the server ends the connection (the handle is kept, so the client never does).
    async fn h2(
        &self,
    ) -> (
        h2::client::SendRequest<Bytes>,
        JoinHandle<Result<(), h2::Error>>,
    ) {
        let (send, connection, _) = self.h2_freezable().await;
        (send, connection)
    }

    /// The same, with a switch that makes the client go quiet.
    async fn h2_freezable(
        &self,
    ) -> (
        h2::client::SendRequest<Bytes>,
        JoinHandle<Result<(), h2::Error>>,
        Arc<AtomicBool>,
    ) {
        let frozen = Arc::new(AtomicBool::new(false));
        let stream = Freezable {
            inner: self.tls(b"h2").await,
            frozen: frozen.clone(),
        };
        let (send, connection) = timeout(PROMPT, h2::client::handshake(stream))
            .await
            .expect("the HTTP/2 handshake completes at once")
            .unwrap();
        (send, tokio::spawn(connection), frozen)
    }

    /// A raw HTTP/1.1 `POST /token-exchange` as `member`'s browser sends it.
    fn http1_exchange_request(&self, member: &str) -> String {
        format!(
            "POST /token-exchange HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: {}\r\nCookie: {}\r\nContent-Length: 0\r\n\r\n",
            self.addr.port(),
            self.base,
            jsapi_cookie(member)
        )
    }

    /// The same over HTTP/2.
    fn h2_exchange_request(&self, member: &str) -> Request<()> {
        Request::post(self.url("/token-exchange"))
            .header("origin", &self.base)
            .header("cookie", jsapi_cookie(member))
            .body(())
            .unwrap()
    }

    /// A browser (its own connection pool) holding `member`'s signed JSAPI cookie.
    fn browser_of(&self, member: &str) -> reqwest::Client {
        let jar = Arc::new(Jar::default());
        jar.add_cookie_str(
            &format!("{}; Path=/", jsapi_cookie(member)),
            &self.base.parse().unwrap(),
        );
        trusting_client(&self.dir, jar)
    }

    /// `POST /token-exchange` from `browser`.
    async fn exchange(&self, browser: &reqwest::Client) -> (u16, Value) {
        let response = browser
            .post(self.url("/token-exchange"))
            .header("origin", &self.base)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A client's socket that can go quiet: once `frozen` is set it neither reads nor writes, like
/// a peer whose network vanished (no FIN, no reset), so it never answers the server's PING.
struct Freezable<S> {
    inner: S,
    frozen: Arc<AtomicBool>,
}

impl<S> Freezable<S> {
    fn frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Freezable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.frozen() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Freezable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.frozen() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.frozen() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.frozen() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The JSAPI cookie LinkedIn would have set for `member` (as a `Cookie` header value).
fn jsapi_cookie(member: &str) -> String {
    format!(
        "linkedin_oauth_{API_KEY}={}",
        signed_cookie(&format!("token-of-{member}"), member, SECRET_KEY)
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// Writes a complete HTTP/1.1 request on `stream` and reads one answer (status, body),
/// leaving the connection open.
async fn http1_send<S>(stream: &mut S, request: &str) -> (u16, String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    timeout(Duration::from_secs(10), read_answer(stream))
        .await
        .expect("an HTTP/1.1 answer within 10 s")
}

async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .unwrap_or_else(|| panic!("no content-length in {head}"))
                .trim()
                .parse()
                .unwrap();
            let body = end + 4;
            if buf.len() >= body + length {
                return (
                    status,
                    String::from_utf8_lossy(&buf[body..body + length]).into_owned(),
                );
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `request` on an HTTP/2 connection and reads the answer (status, body).
async fn h2_send(send: &h2::client::SendRequest<Bytes>, request: Request<()>) -> (u16, String) {
    let exchange = async {
        let mut send = send.clone().ready().await.unwrap();
        let (response, _) = send.send_request(request, true).unwrap();
        let response = response.await.unwrap();
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(data) = body.data().await {
            let data = data.unwrap();
            let _ = body.flow_control().release_capacity(data.len());
            bytes.extend_from_slice(&data);
        }
        (status, String::from_utf8_lossy(&bytes).into_owned())
    };
    timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an HTTP/2 answer within 10 s")
}

fn h2_get(served: &Served, path: &str) -> Request<()> {
    Request::get(served.url(path)).body(()).unwrap()
}

/// Reads until the server ends the connection (end of stream, or an error such as a reset or
/// a missing TLS close_notify): how long that took; or, if it is still open after `limit`,
/// what arrived meanwhile.
async fn closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let read_to_end = async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let outcome = timeout(limit, read_to_end).await;
    match outcome {
        Ok(()) => Ok(started.elapsed()),
        Err(_) => Err(format!(
            "still open after {limit:?} (received {:?})",
            String::from_utf8_lossy(&seen)
        )),
    }
}

/// Waits for an HTTP/2 connection's task to end (the server closed it).
async fn h2_closed_within(
    connection: &mut JoinHandle<Result<(), h2::Error>>,
    limit: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    match timeout(limit, connection).await {
        Ok(ended) => {
            // Ok after the server's GOAWAY, an error if the socket just ended: closed either way.
            let _ = ended.unwrap();
            Ok(started.elapsed())
        }
        Err(_) => Err(format!("still open after {limit:?}")),
    }
}

/// Fails with every entry that is an `Err`, else prints the timings.
fn all_closed(outcomes: &[(&str, Result<Duration, String>)]) {
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|(who, outcome)| outcome.as_ref().err().map(|e| format!("{who}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for (who, outcome) in outcomes {
        eprintln!("{who}: closed after {outcome:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The request deadline
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stall_before_or_during_a_request_are_cut_off_after_the_request_deadline() {
    let served = Served::sandbox(None, None).await;
    let limit = REQUEST_DEADLINE + Duration::from_secs(2);
    let stalled_headers = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Stalled: ";

    let no_handshake = async {
        let mut tcp = TcpStream::connect(served.addr).await.unwrap();
        closed_within(&mut tcp, limit).await
    };
    let silent_after_handshake = async {
        let mut stream = served.tls(b"http/1.1").await;
        closed_within(&mut stream, limit).await
    };
    let http2_without_a_request = async {
        let (_send, mut connection) = served.h2().await;
        h2_closed_within(&mut connection, limit).await
    };
    let half_a_first_request = async {
        let mut stream = served.tls(b"http/1.1").await;
        stream.write_all(stalled_headers).await.unwrap();
        closed_within(&mut stream, limit).await
    };
    let half_a_second_request = async {
        let mut stream = served.tls(b"http/1.1").await;
        assert_eq!(http1_send(&mut stream, &get("/healthz")).await.0, 200);
        stream.write_all(stalled_headers).await.unwrap();
        closed_within(&mut stream, limit).await
    };
    let (a, b, c, d, e) = tokio::join!(
        no_handshake,
        silent_after_handshake,
        http2_without_a_request,
        half_a_first_request,
        half_a_second_request
    );
    all_closed(&[
        ("a client that never starts the TLS handshake", a),
        ("a client that completes the handshake and sends nothing", b),
        ("an HTTP/2 client that sends no request", c),
        (
            "an HTTP/1.1 client that stalls in its first request's headers",
            d,
        ),
        (
            "an HTTP/1.1 client that stalls in its second request's headers",
            e,
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// The idle timeout
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_and_http2_connections_are_closed_after_the_idle_timeout() {
    let served = Served::sandbox(None, Some(IDLE)).await;
    let limit = IDLE + CLOSE_SLACK;

    let http1 = async {
        let mut stream = served.tls(b"http/1.1").await;
        assert_eq!(http1_send(&mut stream, &get("/healthz")).await.0, 200);
        closed_within(&mut stream, limit).await
    };
    let http2 = async {
        let (send, mut connection) = served.h2().await;
        assert_eq!(h2_send(&send, h2_get(&served, "/healthz")).await.0, 200);
        h2_closed_within(&mut connection, limit).await
    };
    let (http1, http2) = tokio::join!(http1, http2);
    let outcomes = [
        ("an idle HTTP/1.1 keep-alive connection", http1),
        ("an idle HTTP/2 connection", http2),
    ];
    all_closed(&outcomes);
    for (who, outcome) in outcomes {
        let after = outcome.unwrap();
        assert!(
            after >= IDLE - Duration::from_millis(200),
            "{who} was closed after {after:?}, before the idle timeout ({IDLE:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_longer_than_the_idle_timeout_keeps_its_connection_until_it_is_answered()
 {
    let delay = IDLE * 3;
    let upstream = FakeUpstream::start(Behaviour::Grant {
        delay,
        expires_in: 5_183_999,
    })
    .await;
    let served = Served::real(&upstream, None, Some(IDLE)).await;
    let limit = IDLE + CLOSE_SLACK;

    let http1 = async {
        let mut stream = served.tls(b"http/1.1").await;
        let started = Instant::now();
        let (status, body) =
            http1_send(&mut stream, &served.http1_exchange_request("idle-h1")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"connected\""), "{body}");
        assert!(started.elapsed() >= delay);
        // Once answered, the connection is idle like any other.
        closed_within(&mut stream, limit).await
    };
    let http2 = async {
        let (send, mut connection) = served.h2().await;
        let started = Instant::now();
        let (status, body) = h2_send(&send, served.h2_exchange_request("idle-h2")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"connected\""), "{body}");
        assert!(started.elapsed() >= delay);
        h2_closed_within(&mut connection, limit).await
    };
    let (http1, http2) = tokio::join!(http1, http2);
    assert_eq!(
        upstream.calls(),
        2,
        "each exchange reached the upstream once"
    );
    all_closed(&[
        ("the HTTP/1.1 connection, once answered", http1),
        ("the HTTP/2 connection, once answered", http2),
    ]);
}

// ---------------------------------------------------------------------------------------------
// MAX_CONNECTIONS
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_closes_its_longest_idle_connection_to_admit_a_new_client() {
    let served = Served::sandbox(Some(4), None).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut stream = served.tls(b"http/1.1").await;
        assert_eq!(http1_send(&mut stream, &get("/healthz")).await.0, 200);
        idle.push(stream);
        // Distinct last activity, so "longest idle" is the first one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let response = timeout(
        PROMPT,
        http1_client(&served.dir).get(served.url("/healthz")).send(),
    )
    .await
    .expect("a new client is answered within 5 s")
    .unwrap();
    assert_eq!(response.status(), 200);
    eprintln!(
        "the fifth client was answered after {:?}",
        started.elapsed()
    );

    let oldest = closed_within(&mut idle[0], Duration::from_secs(1)).await;
    assert!(
        oldest.is_ok(),
        "the longest-idle connection made room: {oldest:?}"
    );
    let mut open = Vec::new();
    for (i, stream) in idle.iter_mut().enumerate().skip(1) {
        if closed_within(stream, Duration::from_millis(300))
            .await
            .is_err()
        {
            open.push(i);
        }
    }
    assert!(
        open.contains(&3),
        "the most recently used connection is kept (still open: {open:?})"
    );
    eprintln!("still open besides the new one: {open:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_beyond_the_cap_waits_until_a_busy_connection_has_finished() {
    let upstream = FakeUpstream::start(Behaviour::Grant {
        delay: Duration::from_secs(2),
        expires_in: 5_183_999,
    })
    .await;
    let served = Arc::new(Served::real(&upstream, Some(4), None).await);
    let finished = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let busy: Vec<_> = (0..4)
        .map(|i| {
            let (served, finished) = (served.clone(), finished.clone());
            tokio::spawn(async move {
                let browser = served.browser_of(&format!("busy-{i}"));
                let answer = served.exchange(&browser).await;
                finished.lock().unwrap().push(Instant::now());
                answer
            })
        })
        .collect();
    let started = Instant::now();
    while upstream.calls() < 4 {
        assert!(
            started.elapsed() < PROMPT,
            "the four exchanges did not all reach the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let asked = Instant::now();
    let response = timeout(
        Duration::from_secs(10),
        http1_client(&served.dir).get(served.url("/healthz")).send(),
    )
    .await
    .expect("the fifth client is answered within 10 s")
    .expect("the fifth client waits without an error");
    let answered = Instant::now();
    assert_eq!(response.status(), 200);
    let first_finished = finished.lock().unwrap().iter().min().copied();
    assert!(
        first_finished.is_some_and(|t| t <= answered),
        "the fifth client was answered after {:?}, before any of the four busy connections had finished",
        answered - asked
    );
    eprintln!("the fifth client was answered after {:?}", answered - asked);
    for exchange in busy {
        let (status, body) = timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((status, body["status"].as_str()), (200, Some("connected")));
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_at_once_instead_of_waiting_out_the_grace_period() {
    let mut served = Served::sandbox(None, None).await;
    // Browsers keep their HTTP/2 connections alive after a request.
    let browsers: Vec<reqwest::Client> = (0..3)
        .map(|_| trusting_client(&served.dir, Arc::new(Jar::default())))
        .collect();
    for browser in &browsers {
        let response = browser.get(served.url("/healthz")).send().await.unwrap();
        assert_eq!(
            (response.status().as_u16(), response.version()),
            (200, reqwest::Version::HTTP_2)
        );
    }
    let (send, mut http2) = served.h2().await;
    assert_eq!(h2_send(&send, h2_get(&served, "/healthz")).await.0, 200);
    let mut http1 = served.tls(b"http/1.1").await;
    assert_eq!(http1_send(&mut http1, &get("/healthz")).await.0, 200);
    // A client gone quiet never acknowledges the PING that HTTP/2's graceful GOAWAY waits
    // for: only the server ending the socket lets its connection go.
    let (quiet, _quiet_connection, frozen) = served.h2_freezable().await;
    assert_eq!(h2_send(&quiet, h2_get(&served, "/healthz")).await.0, 200);
    frozen.store(true, Ordering::Release);

    served.shut_down();
    let took = served.stopped_within(Duration::from_secs(3)).await;
    eprintln!("the server stopped {took:?} after the shutdown signal");
    all_closed(&[
        (
            "an idle HTTP/1.1 connection",
            closed_within(&mut http1, PROMPT).await,
        ),
        (
            "an idle HTTP/2 connection",
            h2_closed_within(&mut http2, PROMPT).await,
        ),
    ]);
    drop((browsers, send, quiet));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_exchange_in_flight_finish_with_200_then_stops_at_once() {
    let delay = Duration::from_millis(1_500);
    let upstream = FakeUpstream::start(Behaviour::Grant {
        delay,
        expires_in: 5_183_999,
    })
    .await;
    let mut served = Served::real(&upstream, None, None).await;
    // An idle connection beside it, which must not hold the server up either.
    let idle = served.browser_of("idle");
    let response = idle.get(served.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let browser = served.browser_of("in-flight");
    let in_flight = tokio::spawn({
        let (base, browser) = (served.base.clone(), browser.clone());
        async move {
            let response = browser
                .post(format!("{base}/token-exchange"))
                .header("origin", &base)
                .send()
                .await
                .unwrap();
            json_of(response).await
        }
    });
    let started = Instant::now();
    while upstream.calls() == 0 {
        assert!(
            started.elapsed() < PROMPT,
            "the exchange reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served.shut_down();
    let took = served.stopped_within(delay + Duration::from_secs(3)).await;
    eprintln!("the server stopped {took:?} after the shutdown signal");

    let (status, body) = timeout(PROMPT, in_flight).await.unwrap().unwrap();
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("connected")),
        "{body}"
    );
    drop((idle, browser));
}

// ---------------------------------------------------------------------------------------------
// Clients that stop reading
// ---------------------------------------------------------------------------------------------

/// The receive buffer of a client that stops reading: small, so that the server's writes
/// block soon.
const SMALL_RECEIVE_BUFFER: u32 = 4 * 1024;
/// How long a fresh client may wait for the slot a client that stopped reading held: the
/// write stall limit (10 s), plus slack.
const LOCKED_OUT_AT_MOST: Duration = Duration::from_secs(15);

/// A TLS connection offering only `alpn`, whose socket has a receive buffer of
/// [`SMALL_RECEIVE_BUFFER`] (set before connecting, so that the window it advertises stays
/// small).
async fn tls_with_small_receive_buffer(served: &Served, alpn: &[u8]) -> TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    linkedin_token_exchange::server::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(served.dir.path().join("cert.pem"))
        .unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SMALL_RECEIVE_BUFFER).unwrap();
    let tcp = socket.connect(served.addr).await.unwrap();
    let handshake = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        tcp,
    );
    timeout(PROMPT, handshake)
        .await
        .expect("the TLS handshake completes at once")
        .unwrap()
}

/// The sockets of the server on `port` that the peer has closed but the server has not
/// (state CLOSE-WAIT in `/proc/net/tcp`).
fn close_wait_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            u16::from_str_radix(local_port, 16).unwrap() == port && fields[3] == "08"
        })
        .count()
}

/// How long a fresh HTTP/1.1 client took to be answered 200 on `/healthz`; fails if it
/// took longer than [`LOCKED_OUT_AT_MOST`].
async fn fresh_client_answered(served: &Served, who: &str) -> Duration {
    let started = Instant::now();
    let answer = timeout(
        LOCKED_OUT_AT_MOST,
        http1_client(&served.dir).get(served.url("/healthz")).send(),
    )
    .await;
    let waited = started.elapsed();
    match answer {
        Ok(Ok(response)) => assert_eq!(response.status(), 200),
        Ok(Err(err)) => panic!("after {who}, a fresh client failed after {waited:?}: {err}"),
        Err(_) => panic!("after {who}, a fresh client was still locked out after {waited:?}"),
    }
    eprintln!("after {who}, a fresh client was answered after {waited:?}");
    waited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_pipelines_and_never_reads_loses_its_slot_within_the_write_stall_limit()
 {
    let served = Served::sandbox(Some(1), None).await;
    let mut attacker = tls_with_small_receive_buffer(&served, b"http/1.1").await;
    let pipelined = get("/static/app.js").repeat(2_000);
    // Sends everything, then half-closes (FIN), and never reads: the socket the server keeps
    // would sit in CLOSE-WAIT for as long as its write stays blocked.
    let attacker = tokio::spawn(async move {
        let _ = attacker.write_all(pipelined.as_bytes()).await;
        let _ = attacker.shutdown().await;
        std::future::pending::<()>().await;
        drop(attacker);
    });
    // The server is busy answering into a buffer nobody reads.
    tokio::time::sleep(Duration::from_secs(1)).await;

    fresh_client_answered(&served, "2,000 pipelined requests never read over HTTP/1.1").await;
    let started = Instant::now();
    while close_wait_sockets(served.addr.port()) > 0 {
        assert!(
            started.elapsed() < PROMPT,
            "the abandoned socket is still in CLOSE-WAIT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    attacker.abort();
}

/// Opens `n` streams of `GET /static/app.js` on `send`, each as soon as there is room; the
/// answers are left unread.
async fn open_streams(
    send: &h2::client::SendRequest<Bytes>,
    served: &Served,
    n: usize,
) -> Vec<h2::client::ResponseFuture> {
    let mut answers = Vec::new();
    for _ in 0..n {
        let mut ready = timeout(PROMPT, send.clone().ready())
            .await
            .expect("room for another stream")
            .unwrap();
        let (answer, _) = ready
            .send_request(h2_get(served, "/static/app.js"), true)
            .unwrap();
        answers.push(answer);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_opens_streams_and_never_reads_loses_its_slot_within_the_write_stall_limit()
 {
    let served = Served::sandbox(Some(1), None).await;
    // Never reads the answers nor opens its flow-control window: the server's answers stall
    // once the initial 64 KiB window is spent.
    let stream = tls_with_small_receive_buffer(&served, b"h2").await;
    let (send, connection) = timeout(PROMPT, h2::client::handshake(stream))
        .await
        .expect("the HTTP/2 handshake completes at once")
        .unwrap();
    let connection = tokio::spawn(connection);
    let answers = open_streams(&send, &served, 100).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    fresh_client_answered(&served, "100 HTTP/2 streams never read").await;

    // The same client, gone quiet at the socket too (reads nothing, so its receive buffer
    // fills and the server's writes block).
    let served = Served::sandbox(Some(1), None).await;
    let frozen = Arc::new(AtomicBool::new(false));
    let stream = Freezable {
        inner: tls_with_small_receive_buffer(&served, b"h2").await,
        frozen: frozen.clone(),
    };
    let (quiet, quiet_connection) = timeout(PROMPT, h2::client::handshake(stream))
        .await
        .expect("the HTTP/2 handshake completes at once")
        .unwrap();
    let quiet_connection = tokio::spawn(quiet_connection);
    let quiet_answers = open_streams(&quiet, &served, 100).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    frozen.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(1)).await;
    fresh_client_answered(&served, "100 HTTP/2 streams from a client gone quiet").await;
    drop((send, answers, quiet, quiet_answers));
    connection.abort();
    quiet_connection.abort();
}

// ---------------------------------------------------------------------------------------------
// Oversized bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_to_the_exchange_gets_its_413_every_time_over_http1_and_http2() {
    let served = Served::sandbox(None, None).await;
    let body = vec![b'a'; 100 * 1024];
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        let mut stream = served.tls(b"http/1.1").await;
        let head = format!(
            "POST /token-exchange HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            served.addr.port(),
            served.base,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        // Uploads everything before it looks for an answer, as curl --data-binary does with
        // a body that fits its send buffer (an early answer may cut the upload short).
        let _ = stream.write_all(&request).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut seen = Vec::new();
        let read = timeout(PROMPT, async {
            let mut chunk = [0u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        seen.extend_from_slice(&chunk[..n]);
                        if seen.windows(4).any(|w| w == b"\r\n\r\n")
                            && String::from_utf8_lossy(&seen).contains('}')
                        {
                            return Ok(());
                        }
                    }
                    Err(err) => return Err(err),
                }
            }
        })
        .await
        .expect("an answer or an end within 5 s");
        let text = String::from_utf8_lossy(&seen).into_owned();
        outcomes.push(match read {
            Ok(()) if text.starts_with("HTTP/1.1 413") && text.contains("payload_too_large") => {
                Ok(())
            }
            Ok(()) => Err(format!("answered {text:?}")),
            Err(err) => Err(format!("{err} after {text:?}")),
        });
    }
    // Over HTTP/2: the upload's stream must not be reset (curl reports "Stream error in the
    // HTTP/2 framing layer" and no status when it is).
    let (send, _connection) = served.h2().await;
    for _ in 0..10 {
        let request = Request::post(served.url("/token-exchange"))
            .header("origin", &served.base)
            .header("content-length", body.len())
            .body(())
            .unwrap();
        outcomes.push(
            timeout(PROMPT, h2_upload(&send, request, &body))
                .await
                .expect("an HTTP/2 answer within 5 s"),
        );
    }
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of 20 uploads of 100 KiB did not see their 413: {failures:?}",
        failures.len()
    );
}

/// Sends `request` with `body` on an HTTP/2 connection, reads the answer, and fails if it is
/// not a 413 `payload_too_large` or if the server reset the stream under the upload.
async fn h2_upload(
    send: &h2::client::SendRequest<Bytes>,
    request: Request<()>,
    body: &[u8],
) -> Result<(), String> {
    let cut = |e: h2::Error| format!("HTTP/2: the upload was cut: {e}");
    let mut send = send.clone().ready().await.map_err(cut)?;
    let (response, mut upload) = send.send_request(request, false).map_err(cut)?;
    let mut rest = body;
    while !rest.is_empty() {
        upload.reserve_capacity(rest.len());
        let granted = std::future::poll_fn(|cx| upload.poll_capacity(cx))
            .await
            .ok_or("HTTP/2: the upload's stream closed")?
            .map_err(cut)?;
        let n = granted.min(rest.len());
        upload
            .send_data(Bytes::copy_from_slice(&rest[..n]), n == rest.len())
            .map_err(cut)?;
        rest = &rest[n..];
    }
    let response = response.await.map_err(cut)?;
    let status = response.status().as_u16();
    let mut answer = response.into_body();
    let mut text = Vec::new();
    while let Some(data) = answer.data().await {
        let data = data.map_err(cut)?;
        let _ = answer.flow_control().release_capacity(data.len());
        text.extend_from_slice(&data);
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let reset = timeout(
        Duration::from_millis(200),
        std::future::poll_fn(|cx| upload.poll_reset(cx)),
    )
    .await;
    if let Ok(Ok(reason)) = reset {
        return Err(format!(
            "HTTP/2: answered {status}, and the upload was reset ({reason:?})"
        ));
    }
    if status == 413 && text.contains("payload_too_large") {
        Ok(())
    } else {
        Err(format!("HTTP/2: answered {status} {text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_is_answered_at_most_1000_requests_then_closed() {
    let served = Served::sandbox(None, None).await;
    let mut stream = served.tls(b"http/1.1").await;
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    let pipelined = get("/healthz").repeat(1_200);
    let send = async {
        // The server may close before it has read all of them.
        let _ = writer.write_all(pipelined.as_bytes()).await;
    };
    let read = async {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match timeout(Duration::from_secs(10), reader.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => return seen,
                Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("still open 10 s after the last byte"),
            }
        }
    };
    let ((), seen) = tokio::join!(send, read);
    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    let answers = text.matches("http/1.1 200").count();
    assert_eq!(answers, 1_000, "answers on one connection");
    let last = text.rsplit("http/1.1 200").next().unwrap();
    assert!(
        last.contains("connection: close"),
        "the last answer says goodbye: {last}"
    );
}
