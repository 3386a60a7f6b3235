//! The binary: parse the configuration, start logging, serve until SIGTERM or Ctrl-C; or run
//! one of the tools beside the server (`check-provider`, `sandbox`).
//!
//! Every failure comes back from `start` as one `Error`, and `main` alone turns it into
//! the exit code (1 for a problem `check-provider` found or a server error, 2 for the
//! configuration) and says why.

use std::fmt::Display;
use std::process::ExitCode;

use linkedin_token_exchange::server::config::{Command, Config, LogFormat, redact_urls};
use linkedin_token_exchange::server::{self, Server, TraceExport, init_logging, shutdown_signal};

/// mimalloc instead of glibc's allocator: the service allocates many small, short-lived
/// buffers on several threads, where glibc spent about 15 % of the exchange's CPU (profile in
/// docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match start().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => err.report(),
    }
}

/// Why the binary stops with a failure.
enum Error {
    /// The configuration cannot start (exit 2): said on one line of stderr, in the log
    /// format asked for.
    Config { format: LogFormat, message: String },
    /// `check-provider` found something that will fail (exit 1); its report on stdout says
    /// what.
    ProviderProblems,
    /// The server stopped on an error (exit 1), logged.
    Server(std::io::Error),
}

impl Error {
    /// A configuration error, to be reported in `format`.
    fn config(format: LogFormat, err: impl Display) -> Self {
        Self::Config {
            format,
            message: err.to_string(),
        }
    }

    /// Says why (where nothing has yet), and gives the exit code.
    fn report(self) -> ExitCode {
        match self {
            Self::Config { format, message } => {
                fail(format, &format!("configuration error: {message}"));
                ExitCode::from(2)
            }
            Self::ProviderProblems => ExitCode::FAILURE,
            Self::Server(err) => {
                tracing::error!(%err, "server error");
                ExitCode::FAILURE
            }
        }
    }
}

/// Everything the binary does: the configuration, trace export and logging, then the
/// command (the server, the standalone sandbox or `check-provider`).
async fn start() -> Result<(), Error> {
    let Some(config) = load()? else {
        return Ok(());
    };
    let export = if config.command != Some(Command::CheckProvider) {
        TraceExport::start(&config.traces)
            .map_err(|err| Error::config(config.logging.format, err))?
    } else {
        None
    };
    let (export, layer) =
        export.map_or((None, None), |(export, layer)| (Some(export), Some(layer)));
    init_logging(
        config.logging.format,
        &config.logging.filter,
        config.command == Some(Command::Sandbox),
        layer,
    );
    if let Some(export) = &export {
        // Here, not where the export starts: logging has only started now.
        tracing::info!(endpoint = %export.endpoint(), "exporting traces over OTLP/HTTP");
    }
    if config.command == Some(Command::CheckProvider) {
        return check_provider(&config).await;
    }
    let served = serve(&config).await;
    if let Some(export) = export {
        // The SDK's shutdown blocks until the last export ends (bounded).
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
    served
}

/// The configuration from the environment (and `.env`); `None` when `--help` or `--version`
/// asked only for its text, printed here.
fn load() -> Result<Option<Config>, Error> {
    use clap::error::ErrorKind;
    match Config::load() {
        Ok(config) => Ok(Some(config)),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            let _ = err.print();
            Ok(None)
        }
        Err(err) => Err(Error::config(
            Config::log_format_hint(),
            linkedin_token_exchange::server::config::describe_parse_error(&err),
        )),
    }
}

/// Builds and runs the server until a signal stops it.
async fn serve(config: &Config) -> Result<(), Error> {
    let server = Server::build(config)
        .await
        .map_err(|err| Error::config(config.logging.format, err))?;
    if config.command == Some(Command::Sandbox) {
        tracing::info!(
            "standalone sandbox: the emulated LinkedIn alone; the lines on stdout configure the app under test"
        );
        // Written at once, before serving: a test harness reads them from a pipe.
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        for line in server.sandbox_env() {
            let _ = writeln!(stdout, "{line}");
        }
        let _ = stdout.flush();
    }
    server.run(shutdown_signal()).await.map_err(Error::Server)?;
    tracing::info!("stopped");
    Ok(())
}

/// `check-provider`: one line per finding on stdout; fails when something will fail, and
/// when the configuration itself is wrong.
async fn check_provider(config: &Config) -> Result<(), Error> {
    match server::check_provider(config).await {
        Ok(0) => Ok(()),
        Ok(_) => Err(Error::ProviderProblems),
        Err(err) => Err(Error::config(config.logging.format, err)),
    }
}

/// Says why the start failed, on one line of stderr, as JSON when the logs are.
fn fail(format: LogFormat, message: &str) {
    let message = format!("linkedin-token-exchange: {}", redact_urls(message));
    match format {
        LogFormat::Text => eprintln!("{message}"),
        LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({"level": "ERROR", "target": "linkedin_token_exchange", "message": message})
        ),
    }
}
