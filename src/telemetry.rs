//! Telemetry: the Prometheus metrics, request ids, and the log format. One module owns them,
//! so that handlers, the store and the upstream client record what happened through one
//! function each ([`Telemetry::exchange`], [`Telemetry::upstream`], …) and never format a
//! label themselves.
//!
//! A [`Telemetry`] holds its own recorder (not the process-wide one), so that each server,
//! including each test server, counts only its own work; with `METRICS_BIND` unset it is
//! [`Telemetry::disabled`] and every call is a no-op.
//!
//! The exporter (Prometheus), the request spans, OpenTelemetry and the log format are the
//! `server` feature's; without it, the library's routes record into a disabled
//! [`Telemetry`] and leave logging to the host.

#[cfg(feature = "server")]
pub(crate) mod otel;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::Duration;
#[cfg(feature = "server")]
use std::time::Instant;

#[cfg(feature = "server")]
use axum::extract::{MatchedPath, Request, State};
#[cfg(feature = "server")]
use axum::http::HeaderValue;
use axum::http::Method;
#[cfg(feature = "server")]
use axum::middleware::Next;
#[cfg(feature = "server")]
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
#[cfg(feature = "server")]
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
#[cfg(feature = "server")]
use rand::Rng;
#[cfg(feature = "server")]
use tower_http::request_id::{MakeRequestId, RequestId};

#[cfg(feature = "server")]
use crate::config::LogFormat;

/// The request id header.
#[cfg(feature = "server")]
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// Histogram buckets, in seconds: from half a millisecond to the longest upstream bound.
#[cfg(feature = "server")]
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The metrics of one server; cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry(Option<Arc<Inner>>);

// Without the server nothing makes an `Inner`: every `Telemetry` is disabled.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
struct Inner {
    /// Where the series are registered: the exporter's recorder.
    recorder: Box<dyn Recorder + Send + Sync>,
    /// What renders the series, with the process's own.
    #[cfg(feature = "server")]
    exporter: Exporter,
    handles: Handles,
}

/// The Prometheus side: the recorder's handle, and the process's memory and CPU.
#[cfg(feature = "server")]
struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

/// The handles of the series already seen, so that recording one costs a map lookup instead
/// of building label strings and a key and looking it up in the registry.
#[derive(Default)]
struct Handles {
    /// By route pattern: its duration histogram, and a counter per method and status.
    routes: RwLock<HashMap<Box<str>, Route>>,
    /// By name and the values of its two labels.
    counters: Cache<Counter>,
    histograms: Cache<Histogram>,
}

struct Route {
    duration: Histogram,
    answers: HashMap<(&'static str, u16), Counter>,
}

type Cache<H> = RwLock<HashMap<(&'static str, &'static str, &'static str), H>>;

impl Inner {
    /// The duration histogram of `route` and its counter for `answer` (method, status).
    fn route(&self, route: &str, answer: (&'static str, u16)) -> Option<(Histogram, Counter)> {
        if let Ok(routes) = self.handles.routes.read()
            && let Some(known) = routes.get(route)
            && let Some(counter) = known.answers.get(&answer)
        {
            return Some((known.duration.clone(), counter.clone()));
        }
        let route_label = || Label::new("route", route.to_owned());
        let mut routes = self.handles.routes.write().ok()?;
        let known = routes.entry(route.into()).or_insert_with(|| {
            let key = Key::from_parts("lte_http_request_duration_seconds", vec![route_label()]);
            Route {
                duration: self.recorder.register_histogram(&key, &METADATA),
                answers: HashMap::new(),
            }
        });
        let (method, status) = answer;
        let counter = known
            .answers
            .entry(answer)
            .or_insert_with(|| {
                let labels = vec![
                    route_label(),
                    Label::new("method", method),
                    Label::new("status", status.to_string()),
                ];
                let key = Key::from_parts("lte_http_requests_total", labels);
                self.recorder.register_counter(&key, &METADATA)
            })
            .clone();
        Some((known.duration.clone(), counter))
    }
}

/// The key of `name` with two labels, `(label, value)` each.
fn two_labels(
    name: &'static str,
    (k1, v1): (&'static str, &'static str),
    (k2, v2): (&'static str, &'static str),
) -> Key {
    Key::from_parts(name, vec![Label::new(k1, v1), Label::new(k2, v2)])
}

/// The handle under `key`, made by `make` the first time.
fn cached<K: Eq + Hash, H: Clone>(
    map: &RwLock<HashMap<K, H>>,
    key: K,
    make: impl FnOnce() -> H,
) -> H {
    if let Some(handle) = map.read().ok().and_then(|m| m.get(&key).cloned()) {
        return handle;
    }
    let handle = make();
    match map.write() {
        Ok(mut m) => m.entry(key).or_insert(handle).clone(),
        Err(_) => handle,
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Telemetry").field(&self.0.is_some()).finish()
    }
}

impl Telemetry {
    /// Metrics that are recorded and can be rendered.
    #[cfg(feature = "server")]
    pub fn enabled() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let process = metrics_process::Collector::new("lte_");
        metrics::with_local_recorder(&recorder, || process.describe());
        let telemetry = Self(Some(Arc::new(Inner {
            recorder: Box::new(recorder),
            exporter: Exporter { handle, process },
            handles: Handles::default(),
        })));
        telemetry.describe();
        telemetry
    }

    /// Folds the histograms' recent samples into their buckets now and then, so that memory
    /// stays flat between scrapes (the exporter keeps raw samples until then). Needs a Tokio
    /// runtime; ends when the last clone of this `Telemetry` is dropped.
    #[cfg(feature = "server")]
    pub fn spawn_upkeep(&self) {
        let Some(inner) = &self.0 else { return };
        let weak = Arc::downgrade(inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.exporter.handle.run_upkeep();
            }
        });
    }

    /// Whether metrics are recorded (`METRICS_BIND` set).
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// No metrics: every call does nothing.
    pub fn disabled() -> Self {
        Self(None)
    }

    #[cfg(feature = "server")]
    fn describe(&self) {
        let Some(inner) = &self.0 else { return };
        let describe = |name: &'static str, text: &'static str| {
            inner
                .recorder
                .describe_counter(name.into(), None, text.into());
        };
        describe(
            "lte_http_requests_total",
            "HTTP requests answered, by route pattern, method and status",
        );
        describe(
            "lte_http_request_duration_seconds",
            "Time to answer, by route pattern",
        );
        describe(
            "lte_exchanges_total",
            "Sign-ins attempted, by flow and outcome (connected, already_connected or the error code)",
        );
        describe(
            "lte_upstream_request_duration_seconds",
            "Calls to LinkedIn, by endpoint and outcome",
        );
        describe(
            "lte_session_store_errors_total",
            "Session store failures, by operation",
        );
        describe(
            "lte_oidc_refusals_total",
            "OpenID Connect callbacks refused, by reason (state, denied, or the id_token check that failed)",
        );
        describe("lte_connections_open", "Client connections held open");
        describe(
            "lte_introspections_total",
            "OpenID Connect tokens introspected, by outcome (active, revoked, expired, inactive, error)",
        );
        describe(
            "lte_token_refreshes_total",
            "OpenID Connect access tokens refreshed, by outcome (refreshed, refused, failed)",
        );
    }

    /// One answered request: `route` is the route pattern, never a raw path. Methods other
    /// than the standard ones count as `other`, so that no client can add series at will.
    pub fn http_request(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let Some(inner) = &self.0 else { return };
        let method = match *method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::PATCH => "PATCH",
            Method::OPTIONS => "OPTIONS",
            Method::CONNECT => "CONNECT",
            Method::TRACE => "TRACE",
            _ => "other",
        };
        if let Some((duration, answers)) = inner.route(route, (method, status)) {
            answers.increment(1);
            duration.record(elapsed.as_secs_f64());
        }
    }

    /// One sign-in attempt of `flow`, and how it ended.
    pub fn exchange(&self, flow: &'static str, outcome: &'static str) {
        let Some(inner) = &self.0 else { return };
        let name = "lte_exchanges_total";
        cached(&inner.handles.counters, (name, flow, outcome), || {
            let key = two_labels(name, ("flow", flow), ("outcome", outcome));
            inner.recorder.register_counter(&key, &METADATA)
        })
        .increment(1);
    }

    /// One call to LinkedIn's `endpoint`, how it ended (`ok` or an error code), and its time.
    pub fn upstream(&self, endpoint: &'static str, outcome: &'static str, elapsed: Duration) {
        let Some(inner) = &self.0 else { return };
        let name = "lte_upstream_request_duration_seconds";
        cached(&inner.handles.histograms, (name, endpoint, outcome), || {
            let key = two_labels(name, ("endpoint", endpoint), ("outcome", outcome));
            inner.recorder.register_histogram(&key, &METADATA)
        })
        .record(elapsed.as_secs_f64());
    }

    /// One refused OpenID Connect callback, by the check that refused it.
    pub fn oidc_refusal(&self, reason: &'static str) {
        self.count_rare("lte_oidc_refusals_total", ("reason", reason));
    }

    /// One introspection of a session's token, by its answer (`active`, `revoked`,
    /// `expired`, `inactive`) or `error`.
    pub fn introspection(&self, outcome: &'static str) {
        self.count_rare("lte_introspections_total", ("outcome", outcome));
    }

    /// One refresh of a session's token: `refreshed`, `refused` or `failed`.
    pub fn token_refresh(&self, outcome: &'static str) {
        self.count_rare("lte_token_refreshes_total", ("outcome", outcome));
    }

    /// One failed store operation.
    pub fn store_error(&self, operation: &'static str) {
        self.count_rare("lte_session_store_errors_total", ("operation", operation));
    }

    /// Adds one to counter `name{label}`: for rare events, so the handle is not cached.
    fn count_rare(&self, name: &'static str, (label, value): (&'static str, &'static str)) {
        if let Some(inner) = &self.0 {
            let key = Key::from_parts(name, vec![Label::new(label, value)]);
            inner
                .recorder
                .register_counter(&key, &METADATA)
                .increment(1);
        }
    }

    /// The gauge of open client connections.
    pub fn connections_open(&self) -> Gauge {
        match &self.0 {
            Some(inner) => inner
                .recorder
                .register_gauge(&Key::from_name("lte_connections_open"), &METADATA),
            None => Gauge::noop(),
        }
    }

    /// Everything, in Prometheus text format (the process's memory and CPU read now).
    #[cfg(feature = "server")]
    pub fn render(&self) -> String {
        let Some(inner) = &self.0 else {
            return String::new();
        };
        let exporter = &inner.exporter;
        metrics::with_local_recorder(&*inner.recorder, || exporter.process.collect());
        exporter.handle.render()
    }
}

/// Times a request and counts it under its route pattern (unmatched paths count as
/// `unmatched`, so that no raw path ever becomes a label).
/// Layered only when metrics are on (`build_app`).
#[cfg(feature = "server")]
pub(crate) async fn observe(
    State(telemetry): State<Telemetry>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    telemetry.http_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Makes request ids: 22 random letters and digits.
#[cfg(feature = "server")]
#[derive(Clone, Copy, Default)]
pub(crate) struct MakeId;

#[cfg(feature = "server")]
impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&new_request_id())
            .ok()
            .map(RequestId::new)
    }
}

/// 22 random letters and digits: two random `u64`s in base 62, 11 digits each (62^11 > 2^64),
/// 128 random bits in all; instead of 22 draws with rejection.
#[cfg(feature = "server")]
fn new_request_id() -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(22);
    for mut n in [rng.random::<u64>(), rng.random::<u64>()] {
        for _ in 0..11 {
            id.push(char::from(DIGITS[(n % 62) as usize]));
            n /= 62;
        }
    }
    id
}

/// Whether a client's request id can be kept: at most 64 letters, digits, `.`, `_`, `-`.
#[cfg(feature = "server")]
pub(crate) fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Drops a client's request id that is not sane, so that a fresh one replaces it (a plain
/// `map_request`: no middleware future or service clone per request).
#[cfg(feature = "server")]
pub(crate) fn drop_insane_request_id<B>(
    mut request: axum::http::Request<B>,
) -> axum::http::Request<B> {
    if request
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|v| !is_sane_request_id(v))
    {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// The request's id, for error bodies and spans.
#[cfg(feature = "server")]
pub(crate) fn request_id<B>(request: &axum::http::Request<B>) -> Option<String> {
    request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_owned)
}

/// The span of one request: every log line of the request carries its id and the client's
/// address (the one `TRUSTED_PROXIES` names, as the rate limits count it). The trace it
/// belongs to is the one the request's `traceparent` names only when the peer is one of
/// `TRUSTED_PROXIES`; otherwise it starts a trace of its own.
#[cfg(feature = "server")]
#[derive(Clone, Debug)]
pub(crate) struct RequestSpan {
    trusted: Option<crate::config::TrustedProxies>,
}

#[cfg(feature = "server")]
impl RequestSpan {
    /// Spans that believe `X-Forwarded-For` from `trusted` peers only.
    pub(crate) fn new(trusted: Option<crate::config::TrustedProxies>) -> Self {
        Self { trusted }
    }
}

#[cfg(feature = "server")]
impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        let client = peer.map(|peer| {
            crate::client_addr::client_addr(self.trusted.as_ref(), peer, request.headers())
        });
        // Only a trusted proxy chooses the trace (and whether it is sampled); anyone else's
        // `traceparent` is a link of a new root, and their `tracestate` is dropped.
        let from_trusted_proxy = peer
            .zip(self.trusted.as_ref())
            .is_some_and(|(peer, trusted)| trusted.contains(peer));
        let span = tracing::info_span!(
            "request",
            "otel.kind" = "server",
            "http.request.method" = %request.method(),
            "http.route" = tracing::field::Empty,
            "http.response.status_code" = tracing::field::Empty,
            request_id = request_id(request).as_deref().unwrap_or(""),
            path = %request.uri().path(),
            client = client.map(tracing::field::display),
        );
        otel::continue_trace(&span, request.headers(), from_trusted_proxy);
        span
    }
}

/// Names the request's span after its route (`http.route`, and `GET /route` for traces),
/// once the router has matched it.
#[cfg(feature = "server")]
pub(crate) fn record_route(request: Request) -> Request {
    let span = tracing::Span::current();
    if !span.is_disabled()
        && let Some(route) = request.extensions().get::<MatchedPath>()
    {
        span.record("http.route", route.as_str());
        otel::rename(&span, format!("{} {}", request.method(), route.as_str()));
    }
    request
}

/// Records the answer's status on the request's span.
#[cfg(feature = "server")]
pub(crate) fn record_status<B>(
    response: &axum::http::Response<B>,
    _: Duration,
    span: &tracing::Span,
) {
    span.record("http.response.status_code", response.status().as_u16());
}

/// A layer of the global subscriber besides the log lines (trace export).
#[cfg(feature = "server")]
pub(crate) type ExtraLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Starts logging: `filter` (already validated), as text or as one JSON object a line, plus
/// `extra` (trace export), each layer with its own filter. tower-sessions' own warnings about
/// unknown or malformed session ids are kept out unless asked for by name: any client can
/// cause them at will. Logs go to stdout, or to stderr when stdout carries output of its own
/// (the `sandbox` command's `KEY=VALUE` lines).
#[cfg(feature = "server")]
pub fn init_logging(format: LogFormat, filter: &str, to_stderr: bool, extra: Option<ExtraLayer>) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let mut directives = filter.to_owned();
    if !filter.contains("tower_sessions") {
        directives.push_str(",tower_sessions=error,tower_sessions_core=error");
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, terminal) = if to_stderr {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        (BoxMakeWriter::new(std::io::stderr), terminal)
    } else {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        (BoxMakeWriter::new(std::io::stdout), terminal)
    };
    let lines: ExtraLayer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(terminal)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![lines];
    layers.extend(extra);
    tracing_subscriber::registry().with(layers).init();
}

#[cfg(test)]
#[cfg(feature = "server")]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_short_tokens() {
        for sane in ["abc", "a.b_c-D9", &"x".repeat(64)] {
            assert!(
                is_sane_request_id(&HeaderValue::from_str(sane).unwrap()),
                "{sane}"
            );
        }
        for insane in ["", "a b", "a/b", "ünï", &"x".repeat(65), "a\tb"] {
            let Ok(value) = HeaderValue::from_str(insane) else {
                continue;
            };
            assert!(!is_sane_request_id(&value), "{insane:?}");
        }
    }

    #[test]
    fn generated_request_ids_are_22_letters_and_digits_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 22, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
    }

    #[test]
    fn answers_count_per_route_method_and_status_and_odd_methods_as_other() {
        let telemetry = Telemetry::enabled();
        let ms = Duration::from_millis(1);
        for _ in 0..3 {
            telemetry.http_request("/session", &Method::GET, 200, ms);
        }
        for odd in [&b"BREW"[..], b"WHEN"] {
            telemetry.http_request("/session", &Method::from_bytes(odd).unwrap(), 405, ms);
        }
        let text = telemetry.render();
        for line in [
            r#"lte_http_requests_total{route="/session",method="GET",status="200"} 3"#,
            r#"lte_http_requests_total{route="/session",method="other",status="405"} 2"#,
            r#"lte_http_request_duration_seconds_count{route="/session"} 5"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("BREW") && !text.contains("WHEN"), "{text}");
    }

    #[test]
    fn counters_render_with_their_labels_and_a_disabled_telemetry_renders_nothing() {
        let telemetry = Telemetry::enabled();
        telemetry.exchange("jsapi", "connected");
        telemetry.exchange("jsapi", "connected");
        telemetry.http_request("/session", &Method::GET, 200, Duration::from_millis(3));
        let text = telemetry.render();
        assert!(
            text.contains(r#"lte_exchanges_total{flow="jsapi",outcome="connected"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("lte_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("lte_process_resident_memory_bytes"), "{text}");
        assert_eq!(Telemetry::disabled().render(), "");
    }
}
