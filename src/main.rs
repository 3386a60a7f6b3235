//! The binary: parse the configuration, start logging, serve until SIGTERM or Ctrl-C; or run
//! one of the tools beside the server (`check-provider`, `sandbox`).

use std::process::ExitCode;

use linkedin_token_exchange::config::{Command, Config, LogFormat};
use linkedin_token_exchange::linkedin::provider_check;
use linkedin_token_exchange::server::wiring;
use linkedin_token_exchange::server::{Server, TraceExport, init_logging, shutdown_signal};

/// mimalloc instead of glibc's allocator: the service allocates many small, short-lived
/// buffers on several threads, where glibc spent about 15 % of the exchange's CPU (profile in
/// docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            let line = linkedin_token_exchange::config::describe_parse_error(&err);
            fail(
                Config::log_format_hint(),
                &format!("configuration error: {line}"),
            );
            return ExitCode::from(2);
        }
    };
    let export = if config.command != Some(Command::CheckProvider) {
        match TraceExport::start(&config.traces) {
            Ok(export) => export,
            Err(err) => {
                fail(
                    config.logging.format,
                    &format!("configuration error: {err}"),
                );
                return ExitCode::from(2);
            }
        }
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
    let code = serve(&config).await;
    if let Some(export) = export {
        // The SDK's shutdown blocks until the last export ends (bounded).
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
    code
}

/// Builds and runs the server until a signal stops it.
async fn serve(config: &Config) -> ExitCode {
    let server = match Server::build(config).await {
        Ok(server) => server,
        Err(err) => {
            fail(
                config.logging.format,
                &format!("configuration error: {err}"),
            );
            return ExitCode::from(2);
        }
    };
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
    match server.run(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(%err, "server error");
            ExitCode::FAILURE
        }
    }
}

/// `check-provider`: one line per finding on stdout; exit 0 when nothing will fail, 1 when
/// something will, 2 when the configuration itself is wrong.
async fn check_provider(config: &Config) -> ExitCode {
    let (upstream, settings) = match wiring::provider_check(config) {
        Ok(found) => found,
        Err(err) => {
            fail(
                config.logging.format,
                &format!("configuration error: {err}"),
            );
            return ExitCode::from(2);
        }
    };
    // The issuer, and the URLs the findings quote, may carry a userinfo: never shown.
    use linkedin_token_exchange::config::redact_urls;
    println!(
        "checking the OpenID Connect provider {}",
        redact_urls(settings.issuer.as_str())
    );
    let report = provider_check::check(&upstream, &settings).await;
    for finding in &report.0 {
        println!("{}", redact_urls(&finding.to_string()));
    }
    match report.problems() {
        0 => {
            println!("provider ready");
            ExitCode::SUCCESS
        }
        n => {
            println!("{n} problem(s) found");
            ExitCode::FAILURE
        }
    }
}

/// Says why the start failed, on one line of stderr, as JSON when the logs are.
fn fail(format: LogFormat, message: &str) {
    let message = format!(
        "linkedin-token-exchange: {}",
        linkedin_token_exchange::config::redact_urls(message)
    );
    match format {
        LogFormat::Text => eprintln!("{message}"),
        LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({"level": "ERROR", "target": "linkedin_token_exchange", "message": message})
        ),
    }
}
