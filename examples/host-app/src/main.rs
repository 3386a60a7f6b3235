//! Serves the host app on `127.0.0.1:3000`, configured from the service's variables
//! (`PUBLIC_ORIGIN`, `LINKEDIN_CLIENT_ID`, `LINKEDIN_CLIENT_SECRET`, …).

use std::process::ExitCode;

use linkedin_token_exchange::LinkedInSignIn;

#[tokio::main]
async fn main() -> ExitCode {
    let sign_in = match LinkedInSignIn::from_env().and_then(|builder| builder.build()) {
        Ok(sign_in) => sign_in,
        Err(err) => {
            eprintln!("host-app: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    let app = host_app::app(&sign_in);
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:3000").await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("host-app: cannot listen on 127.0.0.1:3000: {err}");
            return ExitCode::FAILURE;
        }
    };
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("host-app: {err}");
            ExitCode::FAILURE
        }
    }
}
