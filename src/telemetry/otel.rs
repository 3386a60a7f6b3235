//! OpenTelemetry trace export: the tracer provider (a batch processor on Tokio sending
//! OTLP/HTTP protobuf with the reqwest client), the `tracing` layer that turns spans into
//! OpenTelemetry spans, and the W3C `traceparent` propagator. Export runs apart from requests:
//! spans queue in memory (and are dropped when the queue is full), so a slow or absent
//! collector never fails or slows a request.
//!
//! The endpoint and service name come from [`Traces`]; the other standard variables the SDK
//! reads itself (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`).

use std::time::Duration;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::Layer;

use crate::config::ConfigError;
use crate::config::Traces;
use crate::telemetry::ExtraLayer;

/// The bound on one export (the request to the collector, its answer included).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the collector may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long shutdown waits for the last spans to leave.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// The export, while it runs; [`Export::shutdown`] sends what is queued.
#[derive(Debug)]
pub struct Export {
    provider: SdkTracerProvider,
    /// Where the spans go, without the URL's userinfo.
    endpoint: String,
}

impl Export {
    /// Where the spans go, as it may be logged (no userinfo): for the start-up line, written
    /// once logging has started.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Starts exporting when an endpoint is configured (needs a Tokio runtime): the provider,
    /// and the layer to add to the subscriber. `None` when export is off.
    pub fn start(args: &Traces) -> Result<Option<(Self, ExtraLayer)>, ConfigError> {
        let Some(url) = args.otlp_traces_url() else {
            return Ok(None);
        };
        let variable = args.variable();
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                variable,
                "must be an http:// or https:// URL",
            ));
        }
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::new(variable, format!("cannot build the client: {e}")))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::new(variable, e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
            .with_resource(
                Resource::builder()
                    .with_service_name(args.service_name.clone())
                    .build(),
            )
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let tracer = provider.tracer("linkedin-token-exchange");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(span_filter())
            .boxed();
        let endpoint = crate::config::redact_urls(url.as_str());
        Ok(Some((Self { provider, endpoint }, layer)))
    }

    /// Sends the spans still queued (within a few seconds) and stops exporting.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(%err, "traces not all exported at shutdown");
        }
    }
}

/// What is exported: this crate's spans (the request's at info, the upstream calls' and
/// store operations' at debug), whatever `RUST_LOG` asks of the log lines.
fn span_filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target("linkedin_token_exchange", tracing::Level::DEBUG)
}

/// The remote parent a request names in `traceparent` (W3C Trace Context): made the parent
/// of `span` when the request comes from a trusted proxy (its `tracestate` kept); from anyone
/// else, only linked from `span`, which stays the root of a new trace, sampled as any other,
/// and without their `tracestate` (neither exported nor sent on upstream). A client thus can
/// neither hide its requests from the traces (`-00`), nor choose their trace id, nor have
/// its state forwarded to the provider. Without export configured, nothing happens.
pub(crate) fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap, trusted: bool) {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    if trusted {
        let _ = span.set_parent(parent);
        return;
    }
    let claimed = parent.span().span_context().clone();
    if claimed.is_valid() {
        span.add_link(SpanContext::new(
            claimed.trace_id(),
            claimed.span_id(),
            claimed.trace_flags(),
            true,
            TraceState::default(),
        ));
    }
}

/// Renames an exported span that has already started (the request's, once its route is
/// known). Nothing when the span is not exported.
pub(crate) fn rename(span: &tracing::Span, name: String) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return;
    }
    span.context().span().update_name(name);
}

/// Names `span` (an outgoing call's) as the parent in the request's `traceparent`, so that
/// the upstream can continue the trace. Nothing when the span is not exported.
pub(crate) fn inject_trace(span: &tracing::Span, headers: &mut reqwest::header::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
