//! OpenTelemetry traces (SPEC, "Behind a proxy"): the service's binary, run with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver in this test process, which
//! decodes each `ExportTraceServiceRequest` with `opentelemetry-proto`. A process of its own,
//! since the tracing subscriber is global. Checked: the span tree and attributes of one JSAPI
//! exchange and one OpenID Connect sign-in, the continuation of an incoming `traceparent` from
//! a trusted proxy (and from nobody else: issue 28), and requests answered promptly while the
//! collector is absent or never answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use reqwest::cookie::Jar;
use serde_json::Value;

use crate::oidc::{consent, location};
use crate::support::{API_KEY, FetchJson, SECRET_KEY, Served, encode_cookie, free_port, json_of};

/// The spans a receiver got, with the service name of their resource.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

/// An OTLP/HTTP receiver on 127.0.0.1: `POST /v1/traces` with a protobuf body.
async fn start_receiver() -> (String, Received) {
    async fn export(State(received): State<Received>, body: Bytes) -> Vec<u8> {
        let request = ExportTraceServiceRequest::decode(body).expect("a protobuf export");
        let mut spans = received.spans.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| string(a.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        ExportTraceServiceResponse::default().encode_to_vec()
    }
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, received)
}

fn string(value: &AnyValue) -> Option<String> {
    match value {
        AnyValue::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// A span's attributes, as text (integers written out).
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|a| {
            let value = match a.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            Some((a.key.clone(), value))
        })
        .collect()
}

impl Received {
    /// The spans of trace `trace_id` once one named `root` has arrived (within 20 s).
    async fn trace_with(&self, root: &str, trace_id: Option<&[u8]>) -> Vec<Span> {
        let started = Instant::now();
        loop {
            {
                let spans = self.spans.lock().unwrap();
                let found = spans
                    .iter()
                    .find(|(_, s)| s.name == root && trace_id.is_none_or(|t| s.trace_id == t));
                if let Some((_, root)) = found {
                    let trace = root.trace_id.clone();
                    // The children end before the root, so they are exported with it or earlier.
                    return spans
                        .iter()
                        .filter(|(_, s)| s.trace_id == trace)
                        .map(|(_, s)| s.clone())
                        .collect();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no span {root} arrived: {:?}",
                self.names()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The span named `name` of the request whose id is `request_id` (within 20 s).
    async fn span_of_request(&self, name: &str, request_id: &str) -> Span {
        let started = Instant::now();
        loop {
            let found = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|(_, s)| {
                    s.name == name
                        && attributes(s).get("request_id").map(String::as_str) == Some(request_id)
                })
                .map(|(_, s)| s.clone());
            if let Some(span) = found {
                return span;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no span {name} of request {request_id} arrived: {:?}",
                self.names()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every span of trace `trace_id` received so far.
    fn trace(&self, trace_id: &[u8]) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.name.clone())
            .collect()
    }

    fn service_names(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(service, _)| service.clone())
            .collect()
    }
}

/// The service, exporting to `endpoint`, spans sent every 100 ms; the test client (on
/// 127.0.0.1) is a trusted proxy, whose `traceparent` is continued.
async fn traced_server(endpoint: &str) -> Served {
    traced_server_trusting(endpoint, "127.0.0.1").await
}

/// The service, exporting to `endpoint`, with `TRUSTED_PROXIES=trusted`.
async fn traced_server_trusting(endpoint: &str, trusted: &str) -> Served {
    Served::start(
        "localhost",
        &[
            ("LINKEDIN_API_KEY", API_KEY),
            ("LINKEDIN_SECRET_KEY", SECRET_KEY),
            ("SANDBOX", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_SERVICE_NAME", "lte-under-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RATE_LIMIT", "off"),
            ("TRUSTED_PROXIES", trusted),
        ],
        "/healthz",
    )
    .await
}

/// A JSAPI exchange for `member` in `browser`, carrying the trace `headers` given
/// (`traceparent`, `tracestate`): the status, the body and the request id.
async fn exchange(
    server: &Served,
    browser: &reqwest::Client,
    member: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, String) {
    let payload: Value = browser
        .post(server.url("/sandbox/oauth2/authorize"))
        .form(&[("api_key", API_KEY), ("member_id", member)])
        .fetch_json()
        .await;
    let mut request = browser
        .post(server.url("/token-exchange"))
        .header("origin", &server.origin)
        .header(
            "cookie",
            format!(
                "linkedin_oauth_{API_KEY}={}",
                encode_cookie(&payload.to_string())
            ),
        );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, body) = json_of(response).await;
    (status, body, request_id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `trace` is one tree: one root (whose parent is `remote_parent`, or none), and
/// every other span's parent in the trace. Returns the root.
fn one_tree<'a>(trace: &'a [Span], remote_parent: &[u8]) -> &'a Span {
    let ids: Vec<&[u8]> = trace.iter().map(|s| s.span_id.as_slice()).collect();
    let roots: Vec<&Span> = trace
        .iter()
        .filter(|s| !ids.contains(&s.parent_span_id.as_slice()))
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "one root: {:?}",
        roots.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(roots[0].parent_span_id, remote_parent, "the root's parent");
    roots[0]
}

#[tokio::test]
async fn an_exchange_is_one_trace_that_continues_the_incoming_traceparent() {
    let (endpoint, received) = start_receiver().await;
    let server = traced_server(&endpoint).await;
    let browser = server.client(Some(Arc::new(Jar::default())));
    let trace_id: [u8; 16] = rand::random();
    let parent_id: [u8; 8] = rand::random();
    let traceparent = format!("00-{}-{}-01", hex(&trace_id), hex(&parent_id));
    let (status, body, request_id) = exchange(
        &server,
        &browser,
        "traced-member",
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let trace = received
        .trace_with("POST /token-exchange", Some(&trace_id))
        .await;
    let root = one_tree(&trace, &parent_id);
    assert_eq!(root.name, "POST /token-exchange");
    assert_eq!(root.kind, SpanKind::Server as i32);
    let attrs = attributes(root);
    assert_eq!(attrs["http.request.method"], "POST");
    assert_eq!(attrs["http.route"], "/token-exchange");
    assert_eq!(attrs["http.response.status_code"], "200");
    assert_eq!(attrs["request_id"], request_id);

    let children: Vec<&Span> = trace
        .iter()
        .filter(|s| s.parent_span_id == root.span_id)
        .collect();
    let upstream = children
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32 && s.name.starts_with("POST "))
        .unwrap_or_else(|| panic!("an upstream call: {:?}", names(&trace)));
    let upstream_attrs = attributes(upstream);
    assert_eq!(upstream_attrs["url.path"], "/sandbox/uas/oauth/accessToken");
    assert_eq!(upstream_attrs["http.response.status_code"], "200");
    let stores: Vec<HashMap<String, String>> = children
        .iter()
        .filter(|s| s.name.starts_with("session_store "))
        .map(|s| attributes(s))
        .collect();
    assert!(
        stores
            .iter()
            .any(|a| a["db.operation.name"] == "create" && a["db.system.name"] == "memory"),
        "the new session stored: {stores:?}"
    );
    // The sandbox (the upstream here) continued the trace the call carried.
    assert!(
        trace
            .iter()
            .any(|s| s.name == "POST /sandbox/uas/oauth/accessToken"
                && s.kind == SpanKind::Server as i32
                && s.parent_span_id == upstream.span_id),
        "{:?}",
        names(&trace)
    );
    assert!(
        received
            .service_names()
            .iter()
            .all(|name| name == "lte-under-test")
    );

    // Without `traceparent`, a request starts a trace of its own.
    let (status, _, _) = exchange(&server, &browser, "untraced-member", &[]).await;
    assert_eq!(status, 200);
}

fn names(trace: &[Span]) -> Vec<&str> {
    trace.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn an_openid_connect_sign_in_callback_is_one_trace_with_its_upstream_calls_and_store_writes()
{
    let (endpoint, received) = start_receiver().await;
    let server = traced_server(&endpoint).await;
    let jar = Arc::new(Jar::default());
    let browser = server.client(Some(jar));
    let start = browser
        .get(server.url("/auth/linkedin"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let callback = consent(&browser, &location(&start), "allow", "traced-oidc").await;
    let trace_id: [u8; 16] = rand::random();
    let parent_id: [u8; 8] = rand::random();
    let response = browser
        .get(callback)
        .header(
            "traceparent",
            format!("00-{}-{}-01", hex(&trace_id), hex(&parent_id)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);

    let trace = received
        .trace_with("GET /auth/linkedin/callback", Some(&trace_id))
        .await;
    let root = one_tree(&trace, &parent_id);
    let attrs = attributes(root);
    assert_eq!(attrs["http.route"], "/auth/linkedin/callback");
    assert_eq!(attrs["http.response.status_code"], "303");
    let child_paths: Vec<String> = trace
        .iter()
        .filter(|s| s.parent_span_id == root.span_id && s.kind == SpanKind::Client as i32)
        .map(|s| {
            let a = attributes(s);
            format!(
                "{} {}",
                a.get("url.path")
                    .or(a.get("db.operation.name"))
                    .cloned()
                    .unwrap_or_default(),
                a.get("http.response.status_code")
                    .cloned()
                    .unwrap_or_default()
            )
        })
        .collect();
    assert!(
        child_paths
            .iter()
            .any(|p| p == "/sandbox/oauth/v2/accessToken 200"),
        "the token call: {child_paths:?}"
    );
    assert!(
        child_paths.iter().any(|p| p.starts_with("load ")),
        "the session read: {child_paths:?}"
    );
    assert!(
        child_paths.iter().any(|p| p.starts_with("create ")),
        "the new session written: {child_paths:?}"
    );
}

/// A collector that accepts connections and never answers; counts them.
async fn silent_collector() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (endpoint, accepted)
}

/// Requests against `server` for a few seconds (exports being attempted meanwhile): the
/// slowest one.
async fn slowest_of_many_requests(server: &Served) -> Duration {
    let browser = server.client(Some(Arc::new(Jar::default())));
    let mut slowest = Duration::ZERO;
    for round in 0..6 {
        for _ in 0..10 {
            let started = Instant::now();
            let response = browser.get(server.url("/healthz")).send().await.unwrap();
            assert_eq!(response.status(), 200);
            slowest = slowest.max(started.elapsed());
        }
        let started = Instant::now();
        let (status, body, _) = exchange(server, &browser, &format!("m{round}"), &[]).await;
        assert_eq!(status, 200, "{body}");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    slowest
}

#[tokio::test]
async fn an_unreachable_or_silent_collector_never_fails_or_slows_a_request() {
    // Nobody listens on this port.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let server = traced_server(&closed).await;
    let slowest = slowest_of_many_requests(&server).await;
    assert!(
        slowest < Duration::from_secs(2),
        "a request took {slowest:?} while the collector was down"
    );
    drop(server);

    // This one accepts and never answers: each export waits for its 10 s timeout.
    let (silent, accepted) = silent_collector().await;
    let server = traced_server(&silent).await;
    let slowest = slowest_of_many_requests(&server).await;
    assert!(
        accepted.load(Ordering::SeqCst) > 0,
        "the service tried to export"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a request took {slowest:?} while the collector hung"
    );
}

/// A client's claimed trace: a random trace id and parent, sampled (`-01`) or not (`-00`).
fn claimed_trace(flags: &str) -> ([u8; 16], String) {
    let trace_id: [u8; 16] = rand::random();
    let parent_id: [u8; 8] = rand::random();
    let traceparent = format!("00-{}-{}-{flags}", hex(&trace_id), hex(&parent_id));
    (trace_id, traceparent)
}

/// A vendor's `tracestate` entry that no span of the service may carry on.
const CLIENT_TRACESTATE: &str = "client=Qx7kVz9w";

#[tokio::test]
async fn an_untrusted_clients_traceparent_starts_a_new_root_and_its_tracestate_goes_nowhere() {
    let (endpoint, received) = start_receiver().await;
    // The test client, on 127.0.0.1, is no trusted proxy here.
    let server = traced_server_trusting(&endpoint, "10.0.0.0/8").await;
    let browser = server.client(Some(Arc::new(Jar::default())));
    for flags in ["01", "00"] {
        let (claimed, traceparent) = claimed_trace(flags);
        let (status, body, request_id) = exchange(
            &server,
            &browser,
            &format!("untrusted-{flags}"),
            &[
                ("traceparent", &traceparent),
                ("tracestate", CLIENT_TRACESTATE),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // Exported although `-00` asked not to be: sampling is not the client's to choose.
        let root = received
            .span_of_request("POST /token-exchange", &request_id)
            .await;
        assert_ne!(
            root.trace_id, claimed,
            "{flags}: the client chose the trace id"
        );
        assert!(
            root.parent_span_id.is_empty(),
            "{flags}: a root, not a child of the claimed parent"
        );
        assert_eq!(
            root.trace_state, "",
            "{flags}: the client's tracestate exported"
        );
        // The claimed parent is a link, without its tracestate.
        assert!(
            root.links
                .iter()
                .any(|l| l.trace_id == claimed && l.trace_state.is_empty()),
            "{flags}: a link to the claimed parent: {:?}",
            root.links
        );
        // The upstream call (the sandbox's token endpoint) is in the new trace, and no span
        // of it carries the client's state.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let trace = received.trace(&root.trace_id);
        assert!(
            trace.iter().any(|s| s.kind == SpanKind::Client as i32),
            "{flags}: the upstream call: {:?}",
            names(&trace)
        );
        assert!(
            trace.iter().all(|s| s.trace_state.is_empty()),
            "{flags}: {:?}",
            trace.iter().map(|s| &s.trace_state).collect::<Vec<_>>()
        );
        assert!(received.trace(&claimed).is_empty(), "{flags}");
    }
    // Logged once logging has started (before, it was logged into the void).
    let output = server.output();
    assert!(
        output.contains("exporting traces over OTLP/HTTP") && output.contains(&endpoint),
        "{output}"
    );
}

/// The `traceparent` and `tracestate` of every request an OpenID Connect provider got; it
/// answers each with 503.
#[derive(Clone, Default)]
struct SeenUpstream(Arc<Mutex<Vec<TraceHeaders>>>);

/// A request's `traceparent` and `tracestate`, when it had them.
type TraceHeaders = (Option<String>, Option<String>);

async fn start_recording_provider() -> (String, SeenUpstream) {
    async fn record(
        State(seen): State<SeenUpstream>,
        headers: axum::http::HeaderMap,
    ) -> axum::http::StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        seen.0
            .lock()
            .unwrap()
            .push((header("traceparent"), header("tracestate")));
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    }
    let seen = SeenUpstream::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/oauth", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(record)
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (issuer, seen)
}

impl SeenUpstream {
    /// The trace headers of the next request the provider gets (within 20 s).
    async fn next(&self, already: usize) -> TraceHeaders {
        let started = Instant::now();
        loop {
            if let Some(found) = self.0.lock().unwrap().get(already).cloned() {
                return found;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the provider was not asked"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[tokio::test]
async fn the_providers_discovery_gets_a_trusted_proxys_trace_and_never_a_clients_tracestate() {
    let (endpoint, _received) = start_receiver().await;
    let (issuer, seen) = start_recording_provider().await;
    // 127.0.0.2 is the proxy; the test client on 127.0.0.1 is anyone.
    let server = Served::start(
        "localhost",
        &[
            ("SANDBOX", "false"),
            ("LINKEDIN_CLIENT_ID", "client"),
            ("LINKEDIN_CLIENT_SECRET", "client-secret"),
            ("LINKEDIN_OIDC_ISSUER", &issuer),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RATE_LIMIT", "off"),
            ("TRUSTED_PROXIES", "127.0.0.2"),
        ],
        "/healthz",
    )
    .await;
    let anyone = server.client(Some(Arc::new(Jar::default())));
    let proxy = crate::support::client::trusting(&server.cert())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let trace_id_of = |traceparent: &Option<String>| {
        traceparent
            .as_deref()
            .and_then(|t| t.split('-').nth(1))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no traceparent sent upstream: {traceparent:?}"))
    };
    for (client, trusted) in [(&anyone, false), (&proxy, true)] {
        for flags in ["01", "00"] {
            let (claimed, traceparent) = claimed_trace(flags);
            let before = seen.count();
            let response = client
                .get(server.url("/auth/linkedin"))
                .header("traceparent", &traceparent)
                .header("tracestate", CLIENT_TRACESTATE)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_server_error(),
                "discovery fails: {}",
                response.status()
            );
            let (sent_parent, sent_state) = seen.next(before).await;
            if trusted {
                if flags == "01" {
                    assert_eq!(trace_id_of(&sent_parent), hex(&claimed), "continued");
                    assert_eq!(sent_state.as_deref(), Some(CLIENT_TRACESTATE));
                }
            } else {
                assert_ne!(
                    trace_id_of(&sent_parent),
                    hex(&claimed),
                    "{flags}: the client's trace id sent upstream"
                );
                assert!(
                    sent_state.as_deref().is_none_or(str::is_empty),
                    "{flags}: the client's tracestate sent upstream: {sent_state:?}"
                );
            }
        }
    }
}
