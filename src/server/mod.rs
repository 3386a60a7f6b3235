//! Start-up and listening: turns a [`Config`] into a bound HTTPS server (rustls via
//! axum-server), or a plain-HTTP one behind a proxy that terminates TLS (`TLS=off`), with
//! bounded connections, and shuts it down gracefully.
//!
//! [`Server::build`] runs the steps in order, each naming the variable at fault: the mode
//! (key pair, sandbox, keep-alive), TLS, the sockets, what depends on the bound address
//! (origins, URLs, the deployment's checks), the session store, the sign-in (the `Config`
//! converted into the library's [`SignInBuilder`](crate::SignInBuilder) and built through
//! it), and the app around it. Connections are bounded: what clients can hold open, for how
//! long.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::{Control, Handle};

use crate::app::{AppState, Settings, build_app};
use crate::config::proxy::TlsMode;
use crate::config::{Command, Config, ConfigError, Sessions, StoreUrl};
#[cfg(feature = "sandbox")]
use crate::linkedin::oidc::OidcClient;
use crate::ratelimit::shared::SharedBudget;
use crate::secret::Secret;
use crate::session::SessionBackend;
use crate::session::backend::BackendOptions;
use crate::session::keys::{self, KeySource};
use crate::sign_in::LinkedInSignIn;
use crate::telemetry::Telemetry;
use crate::tls;

mod connections;
mod listeners;
mod reload;
mod wiring;

/// The service's configuration: the only reader of the environment (and `.env`, and the
/// command line), typed and fail-fast, naming the variable at fault.
pub mod config {
    pub use crate::config::ApiAccess;
    pub use crate::config::proxy::{CookieDomain, TlsMode};
    pub use crate::config::{
        ADMIN_TOKEN_MIN_LEN, AccessRule, AllowedHosts, Command, Config, ConfigError, FleetKind,
        FleetUrl, ForwardAuth, Limits, LinkedIn, Listen, LogFormat, Logging, Oidc, PkceMode,
        RateLimit, RateLimitStore, Sessions, StoreUrl, Traces, TrustedProxies,
        describe_parse_error, redact_urls,
    };
}
pub use crate::telemetry::init_logging;
pub use crate::telemetry::otel::Export as TraceExport;
/// The process's one rustls crypto provider (ring), installed unless one is: before any
/// HTTPS client of the host is built.
pub use crate::tls::install_crypto_provider;

use connections::{
    BoundedListener, FileBudget, IDLE_TIMEOUT, LimitedAcceptor, Peer, Tracker, open_file_limit,
};
use reload::CertFiles;

/// How long in-flight requests may run after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a TLS handshake, and then the first request on a connection, may take; and how
/// long a request's headers may take to arrive.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// A server that is bound and ready to serve.
pub struct Server {
    listener: TcpListener,
    /// `None` with `TLS=off`: plain HTTP behind a proxy that terminates TLS.
    tls: Option<RustlsConfig>,
    cert_files: CertFiles,
    /// False only for a sandbox told to close every connection after one answer.
    keep_alive: bool,
    app: Router,
    addr: SocketAddr,
    connections: Arc<Tracker>,
    telemetry: Telemetry,
    shutting_down: Arc<AtomicBool>,
    metrics: Option<(TcpListener, Arc<Tracker>)>,
    /// The admin routes, served beside the metrics when `ADMIN_TOKEN` is set.
    admin: Option<Router>,
    redirect: Option<(TcpListener, String, Arc<Tracker>)>,
    /// Where a person opens the page: the first public origin.
    page_origin: String,
    /// What the standalone sandbox registered, as `KEY=VALUE` lines (empty otherwise).
    sandbox_env: Vec<String>,
}

impl Server {
    /// Validates `config`, loads or generates the certificate (unless `TLS=off`), binds the
    /// port, connects the session store and builds the app. Every failure names the variable
    /// at fault.
    pub async fn build(config: &Config) -> Result<Self, ConfigError> {
        // One crypto provider for the whole process (ring); a second call is harmless.
        tls::install_crypto_provider();
        let standalone_config;
        let config = if config.command == Some(Command::Sandbox) {
            standalone_config = without_sessions(config);
            &standalone_config
        } else {
            config
        };

        let mode = wiring::Mode::of(&config.linkedin, &config.oidc)?;
        let alpn = mode.alpn();
        let listen = &config.listen;
        let material = if listen.tls == TlsMode::On {
            let (material, origin) = tls::load_or_create(tls::PairPaths {
                cert: &listen.tls_cert,
                key: &listen.tls_key,
                defaults: listen.tls_paths_are_default(),
            })?;
            match origin {
                tls::Origin::Generated => tracing::info!(
                    cert = %listen.tls_cert.display(),
                    "generated a self-signed development certificate for localhost, valid for a year"
                ),
                tls::Origin::Renewed { expired } => tracing::info!(
                    cert = %listen.tls_cert.display(),
                    %expired,
                    "replaced the generated development certificate, which expires within a week, has expired, or was made by an earlier version for thousands of years, with a new one valid for a year"
                ),
                tls::Origin::Loaded => {}
            }
            Some(material)
        } else {
            None
        };
        let tls = match &material {
            Some(material) => Some(RustlsConfig::from_config(material.server_config(alpn)?)),
            None => None,
        };

        let (listener, addr) = bind(listen.bind, "BIND")?;
        let budget = FileBudget::of(
            open_file_limit(),
            listen
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        );
        // Side listeners get their own bounds, with their own (unmeasured) gauge.
        let side_tracker = |max| Tracker::new(max, IDLE_TIMEOUT, metrics::Gauge::noop());
        let metrics = match listen.metrics_bind {
            Some(at) => Some((bind(at, "METRICS_BIND")?.0, side_tracker(budget.metrics))),
            None => None,
        };
        let resolved = wiring::Resolved::new(config, mode, addr)?;
        let page_origin = resolved.page_origin().to_owned();
        let redirect = match listen.http_redirect_bind {
            Some(at) => {
                if at.ip().is_unspecified() && listen.public_origin.is_none() {
                    tracing::warn!(
                        %at,
                        "HTTP_REDIRECT_BIND listens on every address but PUBLIC_ORIGIN is unset: remote visitors are redirected to {page_origin}; set PUBLIC_ORIGIN to the origin they use",
                    );
                }
                Some((
                    bind(at, "HTTP_REDIRECT_BIND")?.0,
                    page_origin.clone(),
                    side_tracker(budget.redirect),
                ))
            }
            None => None,
        };
        let telemetry = if metrics.is_some() {
            Telemetry::enabled()
        } else {
            Telemetry::disabled()
        };
        telemetry.spawn_upkeep();
        let sessions = connect_sessions(&config.sessions, telemetry.clone()).await?;
        let admin = config
            .listen
            .admin_token()?
            .map(|token| crate::handlers::admin::router(sessions.clone(), token));
        let shutting_down = Arc::new(AtomicBool::new(false));

        log_mode(&resolved, &config.sessions.store);
        // The library's composition: the sign-in, resolved once by its builder; the service
        // adds its metrics, the fleet's shared budgets and the sandbox beside it.
        let shared = SharedBudget::connect(
            config.limits.rate_limit_store,
            config.limits.rate_limit,
            &config.sessions.store,
            telemetry.clone(),
        )
        .await?;
        let sign_in = resolved
            .sign_in(config, material.as_ref())?
            .telemetry(telemetry.clone())
            .shared_budget(shared)
            .build()
            .map_err(|err| wiring::config_error(&err))?;
        // Refreshes and introspection of the OpenID Connect sessions in the store.
        sign_in.keep_sessions(&sessions);
        let SandboxSide {
            routes,
            env_lines: sandbox_env,
            standalone_app,
        } = SandboxSide::of(config, &resolved, &sign_in, &page_origin);
        let keep_alive = resolved.mode.keep_alive;
        let wiring::Resolved {
            trusted_proxies,
            cookie_domain,
            ..
        } = resolved;
        let settings = Settings {
            forward_auth: forward_auth(config, &sign_in.state.public_origins[0])?,
            sign_in: sign_in.state,
            sessions,
            shutting_down: shutting_down.clone(),
            trusted_proxies,
            session_cookie: crate::session::cookie_name(cookie_domain.as_deref()),
            cookie_domain,
        };
        // As text with every URL's userinfo hidden (the issuer or a LinkedIn URL may carry one).
        tracing::debug!(
            settings = %crate::config::redact_debug(&format!("{settings:?}")),
            "settings"
        );
        let app = match standalone_app {
            Some(standalone_app) => standalone_app(routes, AppState::new(settings)),
            None => build_app(AppState::new(settings), routes),
        };
        Ok(Self {
            listener,
            tls,
            cert_files: CertFiles {
                cert: listen.tls_cert.clone(),
                key: listen.tls_key.clone(),
                alpn,
            },
            keep_alive,
            app,
            addr,
            connections: Tracker::new(budget.main, IDLE_TIMEOUT, telemetry.connections_open()),
            telemetry,
            shutting_down,
            metrics,
            admin,
            redirect,
            page_origin,
            sandbox_env,
        })
    }

    /// For the `sandbox` command: what the sandbox registered, as `KEY=VALUE` lines that an
    /// app under test reads as its `.env`; empty when the service runs.
    pub fn sandbox_env(&self) -> &[String] {
        &self.sandbox_env
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes connections idle for `idle` instead of 60 seconds (tests use seconds).
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.connections = Tracker::new(
            self.connections.max(),
            idle,
            self.telemetry.connections_open(),
        );
        self
    }

    /// The metrics listener's address, when `METRICS_BIND` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The redirect listener's address, when `HTTP_REDIRECT_BIND` is set.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect
            .as_ref()
            .and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting, closes idle connections at
    /// once and lets in-flight requests finish for up to [`SHUTDOWN_GRACE`]. The side
    /// listeners run under the same bounds, each with its own cap.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let control = Control::new();
        let mut trackers = vec![self.connections.clone()];
        if let Some((listener, tracker)) = self.metrics {
            let mut app = listeners::metrics_app(self.telemetry.clone());
            if let Some(admin) = self.admin {
                app = app.merge(admin);
            }
            let addr = spawn_side(listener, &tracker, app, &control, "metrics")?;
            tracing::info!(
                max_connections = tracker.max(),
                "metrics on http://{addr}/metrics"
            );
            trackers.push(tracker);
        }
        if let Some((listener, origin, tracker)) = self.redirect {
            let app = listeners::redirect_app(origin);
            let addr = spawn_side(listener, &tracker, app, &control, "redirect")?;
            tracing::info!(
                max_connections = tracker.max(),
                "plain HTTP on {addr} redirects to HTTPS"
            );
            trackers.push(tracker);
        }
        let on_signal = control.clone();
        let shutting_down = self.shutting_down.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            shutting_down.store(true, Ordering::Release);
            on_signal.graceful_shutdown(Some(SHUTDOWN_GRACE));
            for tracker in trackers {
                tracker.drain();
            }
        });
        tracing::info!(
            max_connections = self.connections.max(),
            "connections are bounded"
        );
        tracing::info!("listening; open {}/", self.page_origin);
        let limited = LimitedAcceptor::new(self.connections.clone());
        let service = self.app.into_make_service_with_connect_info::<SocketAddr>();
        let Some(tls) = self.tls else {
            tracing::info!(
                addr = %self.addr,
                "TLS=off: plain HTTP, for a proxy that terminates TLS"
            );
            let server = bounded(
                self.listener,
                &self.connections,
                limited,
                &control,
                self.keep_alive,
            )?;
            return server.serve(service).await;
        };
        let watcher = tokio::spawn(reload::watch(self.cert_files, tls.clone()));
        let acceptor = RustlsAcceptor::new(tls)
            .handshake_timeout(REQUEST_DEADLINE)
            .acceptor(limited);
        let server = bounded(
            self.listener,
            &self.connections,
            acceptor,
            &control,
            self.keep_alive,
        )?;
        let served = server.serve(service).await;
        watcher.abort();
        served
    }
}

/// Serves `app` in plain HTTP on a side listener (metrics, redirect) under the bounds of
/// `tracker`, in a task of its own; returns the address it listens on.
fn spawn_side(
    listener: TcpListener,
    tracker: &Arc<Tracker>,
    app: Router,
    control: &Control,
    what: &'static str,
) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let server = bounded(
        listener,
        tracker,
        LimitedAcceptor::new(tracker.clone()),
        control,
        true,
    )?;
    tokio::spawn(async move {
        // With the peer's address: the admin routes log it.
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = server.serve(service).await {
            tracing::error!(%err, "the {what} listener stopped");
        }
    });
    Ok(addr)
}

/// A server on `listener` under `tracker`'s bounds: connections admitted within its cap,
/// `acceptor` (TLS or not, over a [`LimitedAcceptor`]), the request deadline for the first
/// request and for each request's headers, the idle timeout, and HTTP/1 buffers of 16 KiB
/// (which bound how many pipelined requests one connection has read ahead).
fn bounded<A>(
    listener: TcpListener,
    tracker: &Arc<Tracker>,
    acceptor: A,
    control: &Control,
    keep_alive: bool,
) -> std::io::Result<axum_server::Server<Peer, A>> {
    let listener = BoundedListener::new(
        tokio::net::TcpListener::from_std(listener)?,
        tracker.clone(),
    );
    let mut server = axum_server::Server::<Peer>::from_listener(listener)
        .acceptor(acceptor)
        .first_request_timeout(REQUEST_DEADLINE)
        .handle(Handle::with_control(control.clone()));
    server
        .http_builder()
        .http1()
        .keep_alive(keep_alive)
        .max_buf_size(16 * 1024)
        .header_read_timeout(REQUEST_DEADLINE)
        .timer(hyper_util::rt::TokioTimer::new());
    server
        .http_builder()
        .http2()
        .max_header_list_size(16 * 1024)
        // Pings move bytes, and bytes count as activity: an interval shorter than the
        // idle timeout would keep every idle HTTP/2 connection open for ever.
        .keep_alive_interval(Some(tracker.idle_timeout() * 3))
        .keep_alive_timeout(REQUEST_DEADLINE)
        .timer(hyper_util::rt::TokioTimer::new());
    Ok(server)
}

/// The session store, with the keys that seal its records.
async fn connect_sessions(
    config: &Sessions,
    telemetry: Telemetry,
) -> Result<SessionBackend, ConfigError> {
    let (keyring, source) = keys::keyring(
        config.keys.as_ref().map(Secret::expose),
        &config.store,
        &config.key_file,
    )
    .map_err(|e| ConfigError::new(e.variable, e.message))?;
    let key_id = keyring.sealing_key_id();
    match source {
        KeySource::Configured(count) => {
            tracing::info!(%key_id, keys = count, "sessions encrypted with SESSION_KEYS");
        }
        KeySource::Generated(path) => tracing::info!(
            %key_id,
            "generated a session key into {} (keep it: without it stored sessions read as signed out)",
            path.display()
        ),
        KeySource::Loaded(path) => {
            tracing::info!(%key_id, "sessions encrypted with the key in {}", path.display());
        }
    }
    let options = BackendOptions {
        keyring,
        memory_capacity: config.memory_sessions,
        telemetry,
    };
    SessionBackend::connect_with(&config.store, options)
        .await
        .map_err(|e| ConfigError::new("SESSION_STORE", e.to_string()))
}

/// `/auth/check`'s settings: the default rule, the token handed on, and with `ASSERTION=on`
/// the signer of assertions issued by `issuer` and its keys.
fn forward_auth(
    config: &Config,
    issuer: &str,
) -> Result<crate::handlers::auth_check::ForwardAuth, ConfigError> {
    use crate::assertion::Assertions;
    let settings = &config.forward_auth;
    let assertions = if settings.assertion {
        let (assertions, source) = Assertions::load(
            &settings.assertion_keys,
            &settings.assertion_key_file,
            config.sessions.store.is_shared(),
            issuer.to_owned(),
        )
        .map_err(|e| ConfigError::new(e.variable, e.message))?;
        match source {
            KeySource::Configured(count) => {
                tracing::info!(keys = count, "assertions signed with ASSERTION_KEYS");
            }
            KeySource::Generated(path) => tracing::info!(
                "generated an assertion key into {} (apps verify with /.well-known/jwks.json)",
                path.display()
            ),
            KeySource::Loaded(path) => {
                tracing::info!("assertions signed with the key in {}", path.display());
            }
        }
        Some(assertions)
    } else {
        None
    };
    Ok(crate::handlers::auth_check::ForwardAuth {
        default_rule: settings.allow.clone(),
        assertions,
        pass_access_token: config.api.pass_access_token,
    })
}

fn bind(
    addr: SocketAddr,
    variable: &'static str,
) -> Result<(TcpListener, SocketAddr), ConfigError> {
    let fail =
        |e: std::io::Error| ConfigError::new(variable, format!("cannot listen on {addr}: {e}"));
    let listener = TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    Ok((listener, bound))
}

/// Says which mode the server runs in, and warns about what an operator should know.
fn log_mode(resolved: &wiring::Resolved, store: &StoreUrl) {
    let api_key = &resolved.mode.credentials.api_key;
    let addr = resolved.addr;
    if resolved.mode.sandbox {
        tracing::info!(%api_key, "sandbox mode: LinkedIn is emulated under /sandbox/");
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "sandbox mode on a non-loopback address: anyone who can reach {addr} can mint signed cookies for any member and sign in as them; bind to 127.0.0.1 or set LINKEDIN_CLIENT_ID and LINKEDIN_CLIENT_SECRET"
            );
        }
        if !resolved.mode.keep_alive {
            tracing::info!(
                "HTTP/1.1 only, every connection closed after one answer (SANDBOX_KEEP_ALIVE=false)"
            );
        }
    } else {
        use crate::config::redact_urls;
        let oidc = resolved.oidc_client.is_some();
        if resolved.mode.jsapi {
            let access_token_url = redact_urls(resolved.urls.access_token.as_str());
            tracing::info!(%api_key, %access_token_url, oidc, "real mode: LinkedIn itself, no sandbox");
        } else {
            tracing::info!(
                oidc,
                "real mode: LinkedIn itself, no sandbox; the JSAPI flow is off (no LINKEDIN_API_KEY)"
            );
        }
        for url in resolved.urls.plain_http() {
            let url = redact_urls(url.as_str());
            tracing::warn!(%url, "a LinkedIn URL uses plain http://: credentials travel unencrypted (fine for a local mock only)");
        }
    }
    tracing::info!(store = %store, "sessions stored in {store}");
}

/// The `sandbox` command keeps no sessions of its own: memory, sealed under a key that lives
/// as long as the process, whatever `SESSION_*` says.
fn without_sessions(config: &Config) -> Config {
    use base64::Engine;
    let mut config = config.clone();
    config.linkedin.sandbox = Some(true);
    config.sessions.store = StoreUrl::Memory;
    config.sessions.keys = Some(Secret::new(
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
    ));
    config
}

/// What the sandbox adds to the server: in sandbox mode, its routes under `/sandbox`; for the
/// `sandbox` command, its page at `/`, the `KEY=VALUE` lines of what it registered, and an app
/// of its own in place of the service's. Nothing in a build without the `sandbox` feature,
/// which refuses sandbox mode (and so the `sandbox` command) before this ([`wiring::Mode::of`]).
#[derive(Default)]
struct SandboxSide {
    routes: Router,
    env_lines: Vec<String>,
    /// For the `sandbox` command: the app of the sandbox alone, from its routes.
    standalone_app: Option<fn(Router, AppState) -> Router>,
}

impl SandboxSide {
    /// The sandbox's part for `config`, resolved, with the browser on `page_origin`.
    fn of(
        config: &Config,
        resolved: &wiring::Resolved,
        sign_in: &LinkedInSignIn,
        page_origin: &str,
    ) -> Self {
        #[cfg(feature = "sandbox")]
        return Registration {
            config,
            resolved,
            oidc: sign_in.state.oidc.as_ref().map(OidcClient::settings),
            standalone: config.command == Some(Command::Sandbox),
        }
        .side(page_origin);
        #[cfg(not(feature = "sandbox"))]
        {
            let _ = (config, resolved, sign_in, page_origin);
            Self::default()
        }
    }
}

/// What the sandbox is set up with: the app's key pair, and the relying party's client (its
/// authorization endpoint on the page's origin).
#[cfg(feature = "sandbox")]
struct Registration<'a> {
    config: &'a Config,
    resolved: &'a wiring::Resolved,
    /// The relying party the sandbox registers, when OpenID Connect is on.
    oidc: Option<&'a crate::linkedin::oidc::OidcSettings>,
    /// The `sandbox` command: the sandbox alone, for apps it cannot know in advance.
    standalone: bool,
}

#[cfg(feature = "sandbox")]
impl Registration<'_> {
    /// The sandbox's part of the server (see [`SandboxSide`]).
    fn side(&self, page_origin: &str) -> SandboxSide {
        SandboxSide {
            routes: sandbox_routes(self, page_origin).merge(self.index()),
            env_lines: self.env_lines(),
            standalone_app: self
                .standalone
                .then_some(standalone_app as fn(Router, AppState) -> Router),
        }
    }

    /// The standalone sandbox, started without `LINKEDIN_OIDC_REDIRECT_URL`, sends codes to
    /// any loopback redirect URI; otherwise only to the registered one.
    fn redirect_uris(&self, settings: &crate::linkedin::oidc::OidcSettings) -> RedirectUris {
        if self.standalone && self.config.oidc.redirect_url.is_none() {
            RedirectUris::AnyLoopback
        } else {
            RedirectUris::Registered(settings.redirect_url.to_string())
        }
    }

    fn env_lines(&self) -> Vec<String> {
        self.standalone()
            .map(|registration| registration.env_lines())
            .unwrap_or_default()
    }

    /// The standalone sandbox's page at `/` (nothing otherwise).
    fn index(&self) -> Router {
        self.standalone()
            .map(|registration| crate::sandbox::standalone::index(&registration))
            .unwrap_or_default()
    }

    /// What the standalone sandbox registered (nothing when the service runs).
    fn standalone(&self) -> Option<crate::sandbox::standalone::Registration> {
        let oidc = self.oidc.filter(|_| self.standalone)?;
        let credentials = &self.resolved.mode.credentials;
        let made_up = |configured: bool, secret: &Secret| (!configured).then(|| secret.clone());
        let cert = &self.config.listen.tls_cert;
        Some(crate::sandbox::standalone::Registration {
            base: wiring::sandbox_base(self.resolved.addr, self.resolved.tls),
            issuer: oidc.issuer.as_str().trim_end_matches('/').to_owned(),
            client_id: oidc.client_id.clone(),
            client_secret: made_up(self.config.oidc.client_id.is_some(), &oidc.client_secret),
            redirect_uris: self.redirect_uris(oidc),
            api_key: credentials.api_key.clone(),
            secret_key: made_up(
                self.config.linkedin.api_key.is_some(),
                &credentials.secret_key,
            ),
            ca_cert: std::path::absolute(cert).unwrap_or_else(|_| cert.clone()),
            authorization_endpoint: format!(
                "{}/sandbox/oauth/v2/authorization",
                self.resolved.page_origin()
            ),
        })
    }
}

#[cfg(feature = "sandbox")]
use crate::sandbox::oidc::RedirectUris;

/// The sandbox's routes under `/sandbox`, in sandbox mode: the JSAPI side for the app's key
/// pair, and the OpenID Connect provider for the relying party's client (its authorization
/// endpoint on `page_origin`, where the browser is).
#[cfg(feature = "sandbox")]
fn sandbox_routes(registration: &Registration<'_>, page_origin: &str) -> Router {
    let resolved = registration.resolved;
    if !resolved.mode.sandbox {
        return Router::new();
    }
    let oidc = registration
        .oidc
        .map(|settings| crate::sandbox::oidc::OidcSandboxConfig {
            issuer: settings.issuer.as_str().trim_end_matches('/').to_owned(),
            api_base: wiring::sandbox_base(resolved.addr, resolved.tls),
            browser_base: format!("{page_origin}/sandbox"),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            redirect_uris: registration.redirect_uris(settings),
        });
    let credentials = resolved.mode.credentials.clone();
    let linkedin = &registration.config.linkedin;
    let rules = crate::sandbox::TokenRules {
        token_ttl: Duration::from_secs(linkedin.sandbox_token_ttl),
        refresh_ttl: linkedin
            .sandbox_refresh_tokens
            .then(|| Duration::from_secs(linkedin.sandbox_refresh_ttl)),
        daily_quota: linkedin.sandbox_daily_quota,
    };
    let sandbox = crate::handlers::under("/sandbox", || {
        crate::sandbox::router(crate::sandbox::SandboxConfig {
            api_key: credentials.api_key,
            secret_key: credentials.secret_key,
            oidc,
            scheme: if resolved.tls { "https" } else { "http" },
            rules,
        })
    });
    Router::new().nest("/sandbox", sandbox)
}

/// `linkedin-token-exchange sandbox`: the sandbox's routes, the stylesheet its consent page
/// links and the health checks, nothing of the service.
#[cfg(feature = "sandbox")]
fn standalone_app(sandbox_routes: Router, state: AppState) -> Router {
    let others = crate::handlers::assets::router()
        .merge(crate::handlers::health::router())
        .with_state(state);
    crate::sandbox::standalone::app(sandbox_routes, others)
}

/// `check-provider`: checks the OpenID Connect provider of `config` (its discovery document
/// and key set), printing one line per finding on stdout, every URL's userinfo hidden;
/// answers how many findings will fail.
pub async fn check_provider(config: &Config) -> Result<usize, ConfigError> {
    use crate::config::redact_urls;
    let (upstream, settings) = wiring::provider_check(config)?;
    println!(
        "checking the OpenID Connect provider {}",
        redact_urls(settings.issuer.as_str())
    );
    let report = crate::linkedin::provider_check::check(&upstream, &settings).await;
    for finding in &report.0 {
        println!("{}", redact_urls(&finding.to_string()));
    }
    let problems = report.problems();
    match problems {
        0 => println!("provider ready"),
        n => println!("{n} problem(s) found"),
    }
    Ok(problems)
}

/// Completes on SIGTERM or Ctrl-C. The handlers are installed by this call, not when the
/// future is first polled, so a signal sent as soon as the server says it is listening finds
/// its listener already made (one full-suite run saw a server not stop on such a signal when
/// the listener was made inside the running server; not reproduced since).
/// Needs a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            let wait = |listener: std::io::Result<tokio::signal::unix::Signal>| async move {
                match listener {
                    Ok(mut listener) => {
                        listener.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
