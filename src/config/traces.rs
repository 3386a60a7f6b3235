//! The traces group: OpenTelemetry export over OTLP/HTTP, with the standard `OTEL_*`
//! variables (the endpoint and the service name here; the SDK reads the others itself).

use url::Url;

/// Where traces go, if anywhere.
#[derive(clap::Args, Clone)]
pub struct Traces {
    /// OTLP/HTTP (protobuf) base URL; traces go to `<endpoint>/v1/traces`. Unset: no export.
    // The value is hidden in `--help`: a collector URL may carry a password.
    #[arg(
        long = "otel-exporter-otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "OTEL_EXPORTER_OTLP_ENDPOINT",
        hide_env_values = true,
        value_parser = super::parse_url,
    )]
    pub otlp_endpoint: Option<Url>,

    /// OTLP/HTTP (protobuf) traces URL, used as given; wins over the base endpoint.
    #[arg(
        long = "otel-exporter-otlp-traces-endpoint",
        env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        value_name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        hide_env_values = true,
        value_parser = super::parse_url,
    )]
    pub otlp_traces_endpoint: Option<Url>,

    /// The `service.name` of the exported spans.
    #[arg(
        long = "otel-service-name",
        env = "OTEL_SERVICE_NAME",
        value_name = "OTEL_SERVICE_NAME",
        default_value = "linkedin-token-exchange"
    )]
    pub service_name: String,
}

/// Shows the endpoints without their userinfo (a collector URL may carry a password).
impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |url: &Option<Url>| url.as_ref().map(|u| super::redact_urls(u.as_str()));
        f.debug_struct("Traces")
            .field("otlp_endpoint", &shown(&self.otlp_endpoint))
            .field("otlp_traces_endpoint", &shown(&self.otlp_traces_endpoint))
            .field("service_name", &self.service_name)
            .finish()
    }
}

impl Traces {
    /// Where traces are sent, when export is on: the traces endpoint as given, or the base
    /// endpoint with `/v1/traces` appended (as the OTLP specification says).
    pub fn otlp_traces_url(&self) -> Option<Url> {
        if let Some(url) = &self.otlp_traces_endpoint {
            return Some(url.clone());
        }
        let base = self.otlp_endpoint.as_ref()?;
        let mut url = base.clone();
        let path = format!("{}/v1/traces", base.path().trim_end_matches('/'));
        url.set_path(&path);
        Some(url)
    }

    /// The variable that named the URL [`Traces::otlp_traces_url`] answers.
    pub fn variable(&self) -> &'static str {
        if self.otlp_traces_endpoint.is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        } else {
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_the_signal_endpoint_or_the_base_with_v1_traces() {
        let mut traces = Traces {
            otlp_endpoint: None,
            otlp_traces_endpoint: None,
            service_name: "x".into(),
        };
        assert_eq!(traces.otlp_traces_url(), None);
        traces.otlp_endpoint = Some("http://collector:4318".parse().unwrap());
        assert_eq!(
            traces.otlp_traces_url().unwrap().as_str(),
            "http://collector:4318/v1/traces"
        );
        traces.otlp_traces_endpoint = Some("http://c:1/custom".parse().unwrap());
        assert_eq!(
            traces.otlp_traces_url().unwrap().as_str(),
            "http://c:1/custom"
        );
        assert_eq!(traces.variable(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    }
}
