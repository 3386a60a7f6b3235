//! I/O: the HTTPS transport to LinkedIn (or the sandbox, or any compatible provider).
//!
//! One shared reqwest client (rustls, the configured roots, keep-alive pool, timeout, no
//! redirects), each call timed by endpoint and outcome, and every answer that is not what
//! was asked for classified as an [`UpstreamError`]. The OAuth 1.0a calls
//! ([`client`](super::client)) and the OpenID Connect ones ([`oidc`](super::oidc)) both go
//! through it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;

use super::dns::{self, CachingResolver};
use crate::telemetry::Telemetry;
use crate::text::escape_text;

/// The largest upstream body read; a larger one is `upstream_malformed`.
const MAX_UPSTREAM_BODY: usize = 1 << 20;

/// What went wrong upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// LinkedIn answered 4xx; `problem` is its `oauth_problem` (or a summary).
    #[error("LinkedIn refused the request ({problem})")]
    Rejected {
        /// The HTTP status LinkedIn answered.
        status: u16,
        /// LinkedIn's `oauth_problem`, or what stood in its place.
        problem: String,
    },
    /// LinkedIn answered 5xx, or the connection was refused or dropped.
    #[error("LinkedIn could not be reached ({0})")]
    Unavailable(String),
    /// LinkedIn answered 200, but not with what the protocol promises.
    #[error("LinkedIn answered with something unexpected ({0})")]
    Malformed(String),
    /// No answer within the configured bound.
    #[error("LinkedIn did not answer within {0} ms")]
    Timeout(u64),
}

impl UpstreamError {
    /// The stable error code (`upstream_rejected`, `upstream_unavailable`,
    /// `upstream_malformed`, `upstream_timeout`): the API's `error` and the outcome label of
    /// the upstream metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "upstream_rejected",
            Self::Unavailable(_) => "upstream_unavailable",
            Self::Malformed(_) => "upstream_malformed",
            Self::Timeout(_) => "upstream_timeout",
        }
    }
}

/// The HTTPS client for the calls to LinkedIn. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Transport {
    http: reqwest::Client,
    timeout_ms: u64,
    telemetry: Telemetry,
}

impl Transport {
    /// A client bounding each call by `timeout`, trusting `extra_roots` (PEM certificates)
    /// besides the system's.
    pub fn new(timeout: Duration, extra_roots: &[reqwest::Certificate]) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(Arc::new(CachingResolver::new(dns::TTL)))
            .tls_certs_merge(extra_roots.iter().cloned())
            .user_agent(concat!(
                "linkedin-token-exchange/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            http,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            telemetry: Telemetry::disabled(),
        })
    }

    /// Times each call in `telemetry`, by endpoint and outcome.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The bound on each call.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The HTTPS client (redirects off, the configured roots and timeout).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Records one call to `endpoint` that ended with `outcome`.
    pub(crate) fn record(&self, endpoint: &'static str, outcome: &'static str, elapsed: Duration) {
        self.telemetry.upstream(endpoint, outcome, elapsed);
    }

    /// Runs one call to `endpoint` and records its time and outcome.
    pub(crate) async fn timed<T>(
        &self,
        endpoint: &'static str,
        call: impl Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        let started = Instant::now();
        let result = call.await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => err.code(),
        };
        self.telemetry
            .upstream(endpoint, outcome, started.elapsed());
        result
    }

    /// Sends `request` and reads the answer (at most 1 MiB), mapping transport failures.
    /// Each call is a client span (`upstream`, exported as a trace's child) that passes the
    /// trace on in `traceparent`.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>), UpstreamError> {
        use tracing::Instrument;
        let (client, request) = request.build_split();
        #[cfg_attr(not(feature = "server"), allow(unused_mut))]
        let mut request = request.map_err(|e| self.transport_error(&e))?;
        let host = request.url().host_str().unwrap_or_default().to_owned();
        let span = tracing::debug_span!(
            "upstream",
            "otel.name" = %format_args!("{} {host}", request.method()),
            "otel.kind" = "client",
            "http.request.method" = %request.method(),
            "server.address" = %host,
            "url.path" = %request.url().path(),
            "http.response.status_code" = tracing::field::Empty,
        );
        // Trace export is the server's: a host's own tracing sees the span, unpropagated.
        #[cfg(feature = "server")]
        crate::telemetry::otel::inject_trace(&span, request.headers_mut());
        let answer = self
            .execute(&client, request)
            .instrument(span.clone())
            .await;
        if let Ok((status, _, _)) = &answer {
            span.record("http.response.status_code", status.as_u16());
        }
        answer
    }

    async fn execute(
        &self,
        client: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>), UpstreamError> {
        let mut response = client
            .execute(request)
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if body.len() + chunk.len() > MAX_UPSTREAM_BODY {
                return Err(UpstreamError::Malformed(
                    "the answer is larger than 1 MiB".into(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    fn transport_error(&self, err: &reqwest::Error) -> UpstreamError {
        if err.is_timeout() {
            UpstreamError::Timeout(self.timeout_ms)
        } else if err.is_connect() {
            UpstreamError::Unavailable("connection refused or failed".into())
        } else {
            UpstreamError::Unavailable("the connection was dropped".into())
        }
    }
}

/// Maps a non-200 answer: 4xx is a refusal naming LinkedIn's `oauth_problem`, 5xx is
/// unavailability, anything else (a redirect, say) is not what the protocol promises.
pub(crate) fn status_error(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> UpstreamError {
    if status.is_client_error() {
        let problem =
            oauth_problem(headers, body).unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        UpstreamError::Rejected {
            status: status.as_u16(),
            problem,
        }
    } else if status.is_server_error() {
        UpstreamError::Unavailable(format!("HTTP {}", status.as_u16()))
    } else {
        UpstreamError::Malformed(format!("unexpected HTTP {}", status.as_u16()))
    }
}

/// LinkedIn's `oauth_problem`, from a form body, a JSON error body or `WWW-Authenticate`.
fn oauth_problem(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Option<String> {
    let from_form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|pairs| {
            pairs
                .into_iter()
                .find(|(k, _)| k == "oauth_problem")
                .map(|(_, v)| v)
        });
    let from_json = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
    };
    let from_header = || {
        headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("oauth_problem=").nth(1))
            .map(|rest| {
                rest.trim_start_matches('"')
                    .split(['"', ',', '&'])
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
    };
    from_form
        .or_else(from_json)
        .or_else(from_header)
        .filter(|p| !p.is_empty())
        .map(|p| escape_text(&p, 200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_problem_bodies_and_headers_are_named() {
        let headers = reqwest::header::HeaderMap::new();
        let err = status_error(
            StatusCode::UNAUTHORIZED,
            &headers,
            b"oauth_problem=token_rejected&oauth_problem_advice=expired",
        );
        assert_eq!(
            err,
            UpstreamError::Rejected {
                status: 401,
                problem: "token_rejected".into()
            }
        );
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            "OAuth realm=\"x\", oauth_problem=\"nonce_used\""
                .parse()
                .unwrap(),
        );
        assert!(
            matches!(status_error(StatusCode::UNAUTHORIZED, &headers, b""), UpstreamError::Rejected { problem, .. } if problem == "nonce_used")
        );
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, &headers, b""),
            UpstreamError::Unavailable(_)
        ));
        assert!(matches!(
            status_error(StatusCode::FOUND, &headers, b""),
            UpstreamError::Malformed(_)
        ));
    }
    #[test]
    fn every_upstream_fault_has_its_own_code() {
        let codes = [
            UpstreamError::Rejected {
                status: 401,
                problem: "x".into(),
            },
            UpstreamError::Unavailable("x".into()),
            UpstreamError::Malformed("x".into()),
            UpstreamError::Timeout(10),
        ]
        .map(|err| err.code());
        assert_eq!(
            codes,
            [
                "upstream_rejected",
                "upstream_unavailable",
                "upstream_malformed",
                "upstream_timeout"
            ]
        );
    }
}
