//! Start-up and listening: turns a [`Config`] into a bound HTTPS server (rustls via
//! axum-server), resolving what depends on the port (the sandbox's URLs, the default public
//! origins), connecting the session store, and shutting down gracefully.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rand::Rng;
use rand::distr::Alphanumeric;
use url::Url;

use crate::app::{AppState, Settings, build_app};
use crate::config::{
    AppCredentials, Config, ConfigError, DEFAULT_ACCESS_TOKEN_URL, DEFAULT_API_URL,
    DEFAULT_JSAPI_URL, Secret,
};
use crate::linkedin::client::{LinkedInClient, LinkedInEndpoints};
use crate::linkedin::cookie::cookie_name;
use crate::session::SessionBackend;
use crate::tls;

/// How long in-flight requests may run after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// A server that is bound and ready to serve.
pub struct Server {
    listener: TcpListener,
    tls: RustlsConfig,
    app: Router,
    addr: SocketAddr,
}

impl Server {
    /// Validates `config`, loads or generates the certificate, binds the port, connects the
    /// session store and builds the app. Every failure names the variable at fault.
    pub async fn build(config: &Config) -> Result<Self, ConfigError> {
        // One crypto provider for the whole process (ring); a second call is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let credentials = config.app_credentials()?;
        let sandbox = config.sandbox_enabled();
        if sandbox && !cfg!(feature = "sandbox") {
            return Err(ConfigError::new(
                if credentials.is_none() {
                    "LINKEDIN_API_KEY"
                } else {
                    "SANDBOX"
                },
                "this build has no sandbox (feature \"sandbox\" is off): set LINKEDIN_API_KEY and LINKEDIN_SECRET_KEY",
            ));
        }

        let material = tls::load_or_generate(&config.tls_cert, &config.tls_key)?;
        let tls = RustlsConfig::from_pem(material.cert_pem.clone(), material.key_pem.clone())
            .await
            .map_err(|e| {
                ConfigError::new("TLS_CERT", format!("unusable certificate or key: {e}"))
            })?;
        if material.generated {
            tracing::info!(cert = %config.tls_cert.display(), "generated a self-signed certificate for localhost");
        }

        let listener = TcpListener::bind(config.bind).map_err(|e| {
            ConfigError::new("BIND", format!("cannot listen on {}: {e}", config.bind))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ConfigError::new("BIND", e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ConfigError::new("BIND", e.to_string()))?;

        let AppCredentials {
            api_key,
            secret_key,
        } = match credentials {
            Some(credentials) => credentials,
            None => generated_credentials(),
        };
        let urls = Urls::resolve(config, sandbox, addr)?;

        let mut roots = Vec::new();
        if let Some(path) = &config.upstream_ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::new(
                    "UPSTREAM_CA_CERT",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            roots.extend(pem_roots(&pem, "UPSTREAM_CA_CERT")?);
        }
        if sandbox {
            // The server calls its own sandbox over HTTPS: trust its own certificate for that.
            roots.extend(pem_roots(&material.cert_pem, "TLS_CERT")?);
        }
        let endpoints = LinkedInEndpoints {
            access_token_url: urls.access_token,
            api_url: urls.api,
            timeout: config.upstream_timeout(),
        };
        let linkedin =
            LinkedInClient::new(&endpoints, &api_key, &secret_key, &roots).map_err(|e| {
                ConfigError::new(
                    "UPSTREAM_CA_CERT",
                    format!("cannot build the HTTPS client: {e}"),
                )
            })?;

        let sessions = SessionBackend::connect(&config.session_store).await?;
        let settings = Settings {
            cookie_name: cookie_name(&api_key),
            api_key: api_key.clone(),
            secret_key: secret_key.clone(),
            linkedin,
            jsapi_url: urls.jsapi,
            public_origins: config.public_origins(addr)?,
            session_idle: config.session_idle(),
            sandbox,
        };
        tracing::debug!(?settings, "settings");
        #[cfg_attr(not(feature = "sandbox"), allow(unused_mut))]
        let mut app = build_app(AppState::new(settings), sessions);

        #[cfg(feature = "sandbox")]
        if sandbox {
            app = app.nest(
                "/sandbox",
                crate::sandbox::router(crate::sandbox::SandboxConfig {
                    api_key: api_key.clone(),
                    secret_key,
                }),
            );
            tracing::info!(%api_key, "sandbox mode: LinkedIn is emulated under /sandbox/");
        }
        if !sandbox {
            tracing::info!(%api_key, access_token_url = %endpoints.access_token_url, "real mode");
        }
        tracing::info!(store = %config.session_store, "sessions stored in {}", config.session_store);
        Ok(Self {
            listener,
            tls,
            app,
            addr,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish for up to [`SHUTDOWN_GRACE`].
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = Handle::new();
        let on_signal = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            on_signal.graceful_shutdown(Some(SHUTDOWN_GRACE));
        });
        tracing::info!("listening; open https://localhost:{}/", self.addr.port());
        // TCP_NODELAY: answers are small; waiting to coalesce them only adds latency.
        let acceptor = RustlsAcceptor::new(self.tls).acceptor(NoDelayAcceptor::new());
        let mut server = axum_server::from_tcp(self.listener)?
            .acceptor(acceptor)
            .handle(handle);
        server
            .http_builder()
            .http1()
            .max_buf_size(16 * 1024)
            .header_read_timeout(Duration::from_secs(10))
            .timer(hyper_util::rt::TokioTimer::new());
        server
            .http_builder()
            .http2()
            .max_header_list_size(16 * 1024);
        server.serve(self.app.into_make_service()).await
    }
}

/// The three LinkedIn URLs, resolved: explicit settings win, then the sandbox, then LinkedIn.
struct Urls {
    access_token: Url,
    api: Url,
    jsapi: String,
}

impl Urls {
    fn resolve(config: &Config, sandbox: bool, addr: SocketAddr) -> Result<Self, ConfigError> {
        let parse = |variable, url: &str| {
            Url::parse(url).map_err(|e| ConfigError::new(variable, e.to_string()))
        };
        let (access_token, api, jsapi) = if sandbox {
            // The server reaches its own sandbox through the name its certificate carries.
            let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
                "localhost".to_owned()
            } else {
                addr.ip().to_string()
            };
            let base = if host.contains(':') {
                format!("https://[{host}]:{}/sandbox", addr.port())
            } else {
                format!("https://{host}:{}/sandbox", addr.port())
            };
            (
                parse("BIND", &format!("{base}/uas/oauth/accessToken"))?,
                parse("BIND", &base)?,
                // The page loads the sandbox's script from whatever origin the browser uses.
                "/sandbox/in.js".to_owned(),
            )
        } else {
            (
                parse("LINKEDIN_ACCESS_TOKEN_URL", DEFAULT_ACCESS_TOKEN_URL)?,
                parse("LINKEDIN_API_URL", DEFAULT_API_URL)?,
                DEFAULT_JSAPI_URL.to_owned(),
            )
        };
        Ok(Self {
            access_token: config
                .linkedin_access_token_url
                .clone()
                .unwrap_or(access_token),
            api: config.linkedin_api_url.clone().unwrap_or(api),
            jsapi: config
                .linkedin_jsapi_url
                .as_ref()
                .map_or(jsapi, Url::to_string),
        })
    }
}

/// The certificates of a PEM bundle, as roots for the upstream client.
fn pem_roots(pem: &[u8], variable: &'static str) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| ConfigError::new(variable, format!("not a PEM certificate: {e}")))
}

/// A key pair for a sandbox started without one.
fn generated_credentials() -> AppCredentials {
    let random = |n| {
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(n)
            .map(char::from)
            .collect::<String>()
    };
    AppCredentials {
        api_key: format!("sandbox{}", random(8)),
        secret_key: Secret::new(random(24)),
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
