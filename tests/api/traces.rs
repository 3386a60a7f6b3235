//! OpenTelemetry traces (SPEC, "Behind a proxy"): the service's binary, run with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver in this test process, which
//! decodes each `ExportTraceServiceRequest` with `opentelemetry-proto`. A process of its own,
//! since the tracing subscriber is global. Checked: the span tree and attributes of one JSAPI
//! exchange and one OpenID Connect sign-in, the continuation of an incoming `traceparent`, and
//! requests answered promptly while the collector is absent or never answers.

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

/// The service, exporting to `endpoint`, spans sent every 100 ms.
async fn traced_server(endpoint: &str) -> Served {
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
        ],
        "/healthz",
    )
    .await
}

/// A JSAPI exchange for `member` in `browser`, carrying `traceparent` when given: the status.
async fn exchange(
    server: &Served,
    browser: &reqwest::Client,
    member: &str,
    traceparent: Option<&str>,
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
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
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
    let (status, body, request_id) =
        exchange(&server, &browser, "traced-member", Some(&traceparent)).await;
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
    let (status, _, _) = exchange(&server, &browser, "untraced-member", None).await;
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
        let (status, body, _) = exchange(server, &browser, &format!("m{round}"), None).await;
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
