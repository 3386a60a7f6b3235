//! The binary: parse the configuration, start tracing, serve until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use linkedin_token_exchange::config::Config;
use linkedin_token_exchange::server::{Server, shutdown_signal};
use tracing_subscriber::EnvFilter;

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
            // One line, naming the variable (clap names it by its value name).
            let rendered = err.to_string();
            let line = rendered.lines().next().unwrap_or("invalid configuration");
            eprintln!("linkedin-token-exchange: configuration {line}");
            return ExitCode::from(2);
        }
    };
    let filter = log_filter(&config.rust_log);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let server = match Server::build(&config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("linkedin-token-exchange: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    match server.run(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("linkedin-token-exchange: server error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` (already validated by `Config`), with tower-sessions' own warnings about
/// unknown or malformed session ids kept out unless asked for by name: any client can cause
/// them at will, and the service logs those cases at debug itself.
fn log_filter(rust_log: &str) -> EnvFilter {
    let mut directives = rust_log.to_owned();
    if !rust_log.contains("tower_sessions") {
        directives.push_str(",tower_sessions=error,tower_sessions_core=error");
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}
