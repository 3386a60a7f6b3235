//! Serves the host app, one of two ways:
//!
//! - `host-app`: on `127.0.0.1:3000`, configured from the service's variables
//!   (`PUBLIC_ORIGIN`, `LINKEDIN_CLIENT_ID`, `LINKEDIN_CLIENT_SECRET`, …);
//! - `host-app --sandbox [ADDR]` (with the `sandbox` feature): everything built in code and no
//!   variable read, on `ADDR` (default `127.0.0.1:0`), its members signed in through the
//!   sandbox mounted under `/sandbox`.
//!
//! Either way, once bound it prints `host-app: listening on http://ADDR` on stdout.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use linkedin_token_exchange::LinkedInSignIn;
use tokio::net::TcpListener;

/// Where `host-app` with no argument listens.
const FROM_ENV_ADDR: &str = "127.0.0.1:3000";

/// Where `host-app --sandbox` listens when given no address: a free loopback port.
const SANDBOX_ADDR: &str = "127.0.0.1:0";

/// How the host was asked to run, by its arguments.
#[derive(Debug, PartialEq)]
enum Mode {
    /// `host-app`: configured from the service's variables.
    FromEnv,
    /// `host-app --sandbox [ADDR]`: built in code, against the sandbox, on `ADDR`.
    Sandbox(String),
}

impl Mode {
    /// The mode that `args` (without the program's name) ask for.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, Failure> {
        let mode = match args.next().as_deref() {
            None => return Ok(Self::FromEnv),
            Some("--sandbox") => Self::Sandbox(args.next().unwrap_or_else(|| SANDBOX_ADDR.into())),
            Some(other) => return Err(Failure::usage(format!("unknown argument {other:?}"))),
        };
        match args.next() {
            None => Ok(mode),
            Some(extra) => Err(Failure::usage(format!("unexpected argument {extra:?}"))),
        }
    }
}

/// Why the host did not serve: a message, and the exit code (2 for a usage or configuration
/// error, 1 otherwise).
#[derive(Debug, PartialEq)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A mistake in the arguments.
    fn usage(problem: String) -> Self {
        Self {
            code: 2,
            message: format!("{problem}; usage: host-app [--sandbox [ADDR]]"),
        }
    }

    /// A configuration the library refused.
    fn configuration(err: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: format!("configuration error: {err}"),
        }
    }

    /// A failure to listen or to serve.
    fn io(context: String, err: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            message: format!("{context}: {err}"),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match start(std::env::args().skip(1)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("host-app: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Builds the app the arguments ask for, and serves it until the process ends.
async fn start(args: impl Iterator<Item = String>) -> Result<(), Failure> {
    let (listener, app) = match Mode::parse(args)? {
        Mode::FromEnv => from_env().await?,
        Mode::Sandbox(addr) => sandboxed(&addr).await?,
    };
    let local = listener
        .local_addr()
        .map_err(|err| Failure::io("cannot read the bound address".into(), err))?;
    println!("host-app: listening on http://{local}");
    std::io::stdout()
        .flush()
        .map_err(|err| Failure::io("cannot write to stdout".into(), err))?;
    // With the peer's address in each request (`ConnectInfo`), the sign-in rate limit can
    // tell clients apart; under plain `axum::serve(listener, app)` it cannot.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .await
        .map_err(|err| Failure::io("serving".into(), err))
}

/// The app configured from the service's variables, on [`FROM_ENV_ADDR`].
async fn from_env() -> Result<(TcpListener, Router), Failure> {
    let sign_in = LinkedInSignIn::from_env()
        .and_then(|builder| builder.build())
        .map_err(Failure::configuration)?;
    Ok((bind(FROM_ENV_ADDR).await?, host_app::app(&sign_in)))
}

/// The app on `addr`, built in code with no variable read: its origin is the bound address,
/// and its members sign in through the sandbox mounted under `/sandbox`.
#[cfg(feature = "sandbox")]
async fn sandboxed(addr: &str) -> Result<(TcpListener, Router), Failure> {
    use linkedin_token_exchange::sandbox::Sandbox;

    let listener = bind(addr).await?;
    let local = listener
        .local_addr()
        .map_err(|err| Failure::io(format!("cannot read the address bound for {addr}"), err))?;
    let origin = format!("http://{local}");
    let base = format!("{origin}/sandbox")
        .parse()
        .map_err(Failure::configuration)?;
    let sandbox = Sandbox::new(base);
    let sign_in = LinkedInSignIn::builder()
        .public_origin(&origin)
        .oidc(sandbox.client_id(), sandbox.client_secret())
        .issuer(sandbox.issuer())
        .build()
        .map_err(Failure::configuration)?;
    let app = host_app::app(&sign_in).nest("/sandbox", sandbox.router());
    Ok((listener, app))
}

/// Without the `sandbox` feature, there is no sandbox to sign in against.
#[cfg(not(feature = "sandbox"))]
async fn sandboxed(_addr: &str) -> Result<(TcpListener, Router), Failure> {
    Err(Failure {
        code: 2,
        message: "--sandbox needs host-app built with its `sandbox` feature \
                  (cargo run -p host-app --features sandbox -- --sandbox)"
            .into(),
    })
}

/// A listener on `addr`.
async fn bind(addr: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| Failure::io(format!("cannot listen on {addr}"), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Mode, Failure> {
        Mode::parse(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn no_argument_reads_the_environment_and_sandbox_takes_an_optional_address() {
        assert_eq!(parse(&[]), Ok(Mode::FromEnv));
        assert_eq!(
            parse(&["--sandbox"]),
            Ok(Mode::Sandbox(SANDBOX_ADDR.into()))
        );
        assert_eq!(
            parse(&["--sandbox", "127.0.0.1:8080"]),
            Ok(Mode::Sandbox("127.0.0.1:8080".into()))
        );
    }

    #[test]
    fn other_arguments_are_usage_errors() {
        for args in [&["--sandbx"][..], &["--sandbox", "127.0.0.1:0", "extra"]] {
            let failure = parse(args).unwrap_err();
            assert_eq!(failure.code, 2, "{args:?}");
            assert!(failure.message.contains("usage: host-app"), "{args:?}");
        }
    }
}
