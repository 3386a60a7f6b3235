//! The logging group: the log line format and the tracing filter.

use super::{LogFormat, parse_log_filter};

/// How and what the service logs.
#[derive(clap::Args, Clone, Debug)]
pub struct Logging {
    /// `text` (for people) or `json` (one JSON object a line).
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text",
        value_enum
    )]
    pub format: LogFormat,

    /// The tracing filter (`info`, `debug`, `linkedin_token_exchange=trace`, …).
    #[arg(
        long = "rust-log",
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info",
        value_parser = parse_log_filter
    )]
    pub filter: String,
}
