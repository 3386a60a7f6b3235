//! [`LinkedInSignIn::from_env`](super::LinkedInSignIn::from_env): the library's one reader of
//! the environment, for a host that configures the sign-in with the service's variables. It
//! reads only the variables of the sign-in (not `BIND`, `TLS`, `SESSION_STORE` and the other
//! service settings), parses each with the service's own parser, and returns an error naming
//! the variable: it never ends the process. `.env` is not read (the host decides).

use std::str::FromStr;
use std::time::Duration;

use super::builder::{BuildError, SignInBuilder};
use crate::config::{AllowedHosts, ConfigError, PkceMode, RateLimit, TrustedProxies};

/// A builder from the variables that `var` gives (`std::env::var` for
/// [`LinkedInSignIn::from_env`](super::LinkedInSignIn::from_env)); an unset or empty
/// variable keeps the default.
pub(crate) fn from_vars(
    var: impl Fn(&'static str) -> Option<String>,
) -> Result<SignInBuilder, BuildError> {
    read(var).map_err(|err| BuildError::of_variable(err.variable, err.message))
}

fn read(var: impl Fn(&'static str) -> Option<String>) -> Result<SignInBuilder, ConfigError> {
    let get = |name: &'static str| var(name).filter(|value| !value.trim().is_empty());
    let mut builder = SignInBuilder::default();
    builder.settings.from_env = true;
    if let Some(list) = get("PUBLIC_ORIGIN") {
        for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            builder = builder.public_origin(origin);
        }
    }
    match (get("LINKEDIN_API_KEY"), get("LINKEDIN_SECRET_KEY")) {
        (Some(key), Some(secret)) => builder = builder.jsapi(key, secret),
        (None, None) => {}
        (Some(_), None) => return Err(required("LINKEDIN_SECRET_KEY", "LINKEDIN_API_KEY")),
        (None, Some(_)) => return Err(required("LINKEDIN_API_KEY", "LINKEDIN_SECRET_KEY")),
    }
    match (get("LINKEDIN_CLIENT_ID"), get("LINKEDIN_CLIENT_SECRET")) {
        (Some(id), Some(secret)) => builder = builder.oidc(id, secret),
        (None, None) => {}
        (Some(_), None) => {
            return Err(required("LINKEDIN_CLIENT_SECRET", "LINKEDIN_CLIENT_ID"));
        }
        (None, Some(_)) => {
            return Err(required("LINKEDIN_CLIENT_ID", "LINKEDIN_CLIENT_SECRET"));
        }
    }
    let url = |name| typed(get(name), name, crate::config::parse_url);
    match (url("LINKEDIN_ACCESS_TOKEN_URL")?, url("LINKEDIN_API_URL")?) {
        (Some(access_token), Some(api)) => builder = builder.jsapi_urls(access_token, api),
        (None, None) => {}
        (Some(_), None) => {
            return Err(required("LINKEDIN_API_URL", "LINKEDIN_ACCESS_TOKEN_URL"));
        }
        (None, Some(_)) => {
            return Err(required("LINKEDIN_ACCESS_TOKEN_URL", "LINKEDIN_API_URL"));
        }
    }
    if let Some(script) = url("LINKEDIN_JSAPI_URL")? {
        builder = builder.jsapi_script(script.to_string());
    }
    if let Some(issuer) = url("LINKEDIN_OIDC_ISSUER")? {
        builder = builder.issuer(issuer);
    }
    if let Some(redirect) = url("LINKEDIN_OIDC_REDIRECT_URL")? {
        builder = builder.redirect_url(redirect);
    }
    if let Some(scopes) = get("LINKEDIN_OIDC_SCOPES") {
        builder = builder.scopes(scopes);
    }
    if let Some(pkce) = typed(
        get("LINKEDIN_OIDC_PKCE"),
        "LINKEDIN_OIDC_PKCE",
        PkceMode::from_str,
    )? {
        builder = builder.pkce(pkce);
    }
    if let Some(require) = typed(
        get("LINKEDIN_OIDC_REQUIRE_NONCE"),
        "LINKEDIN_OIDC_REQUIRE_NONCE",
        parse_bool,
    )? {
        builder = builder.require_nonce(require);
    }
    if let Some(hosts) = typed(
        get("ALLOWED_REDIRECT_HOSTS"),
        "ALLOWED_REDIRECT_HOSTS",
        AllowedHosts::from_str,
    )? {
        builder = builder.allowed_redirect_hosts(hosts);
    }
    if let Some(limit) = typed(get("RATE_LIMIT"), "RATE_LIMIT", RateLimit::from_str)? {
        builder = builder.rate_limit(limit);
    }
    if let Some(proxies) = typed(
        get("TRUSTED_PROXIES"),
        "TRUSTED_PROXIES",
        TrustedProxies::from_str,
    )? {
        builder = builder.trusted_proxies(proxies);
    }
    if let Some(ms) = typed(get("UPSTREAM_TIMEOUT_MS"), "UPSTREAM_TIMEOUT_MS", |v| {
        whole_number(v, 1..=600_000)
    })? {
        builder = builder.upstream_timeout(Duration::from_millis(ms));
    }
    if let Some(path) = get("UPSTREAM_CA_CERT") {
        let pem = std::fs::read(&path).map_err(|e| {
            ConfigError::new("UPSTREAM_CA_CERT", format!("cannot read {path}: {e}"))
        })?;
        builder = builder.upstream_ca_pem(pem);
    }
    if let Some(minutes) = typed(get("SESSION_IDLE_MINUTES"), "SESSION_IDLE_MINUTES", |v| {
        whole_number(v, 1..=525_600)
    })? {
        builder = builder.session_idle(Duration::from_secs(minutes * 60));
    }
    // Checked by the builder, which names the variable.
    if let Some(version) = get("LINKEDIN_API_VERSION") {
        builder = builder.api_version(version);
    }
    if let Some(allow) = get("LINKEDIN_API_ALLOW") {
        builder = builder.api_allow(allow);
    }
    if let Some(interval) = typed(
        get("LINKEDIN_INTROSPECT_EVERY"),
        "LINKEDIN_INTROSPECT_EVERY",
        crate::config::parse_interval,
    )? {
        builder = builder.introspect_every(interval);
    }
    if let Some(url) = url("LINKEDIN_INTROSPECTION_URL")? {
        builder = builder.introspection_url(url);
    }
    Ok(builder)
}

/// `value` parsed by `parse`, or an error naming `variable` (never quoting the value: it
/// may be a secret or a URL with a password).
fn typed<T, E: std::fmt::Display>(
    value: Option<String>,
    variable: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, ConfigError> {
    value
        .map(|value| parse(value.trim()).map_err(|e| ConfigError::new(variable, e.to_string())))
        .transpose()
}

fn required(missing: &'static str, given: &str) -> ConfigError {
    ConfigError::new(missing, format!("is required when {given} is set"))
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn whole_number(value: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::LinkedInSignIn;

    fn vars(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Option<String> {
        let map: HashMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[tokio::test]
    async fn the_sign_in_variables_configure_the_builder_and_errors_name_them() {
        let sign_in = from_vars(vars(&[
            (
                "PUBLIC_ORIGIN",
                "https://app.example.com, https://www.example.com",
            ),
            ("LINKEDIN_CLIENT_ID", "client"),
            ("LINKEDIN_CLIENT_SECRET", "secret"),
            ("SESSION_IDLE_MINUTES", "5"),
            // Not the sign-in's: never read.
            ("BIND", "localhost:3000"),
            ("SESSION_STORE", "redis://admin:Qx7k@Vz9w@127.0.0.1:1/0"),
        ]))
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(sign_in.public_origins().len(), 2);
        assert_eq!(sign_in.session_policy().idle, Duration::from_secs(300));

        let err = from_vars(vars(&[("RATE_LIMIT", "abc")])).unwrap_err();
        assert_eq!(err.setting(), "RATE_LIMIT", "{err}");
        let err = from_vars(vars(&[("LINKEDIN_CLIENT_ID", "client")])).unwrap_err();
        assert_eq!(err.setting(), "LINKEDIN_CLIENT_SECRET", "{err}");
        let err = from_vars(vars(&[("SESSION_IDLE_MINUTES", "0")])).unwrap_err();
        assert_eq!(err.setting(), "SESSION_IDLE_MINUTES", "{err}");
        let err = from_vars(vars(&[("LINKEDIN_INTROSPECT_EVERY", "6")])).unwrap_err();
        assert_eq!(err.setting(), "LINKEDIN_INTROSPECT_EVERY", "{err}");
        assert!(err.message().contains("6h"), "{err}");
        // Introspection without OpenID Connect is named at build.
        let err = from_vars(vars(&[
            ("PUBLIC_ORIGIN", "https://app.example.com"),
            ("LINKEDIN_API_KEY", "key"),
            ("LINKEDIN_SECRET_KEY", "secret"),
            ("LINKEDIN_INTROSPECT_EVERY", "6h"),
        ]))
        .unwrap()
        .build()
        .unwrap_err();
        assert_eq!(err.setting(), "LINKEDIN_INTROSPECT_EVERY", "{err}");
        // A builder from the variables names the variable when it cannot build.
        let err = from_vars(vars(&[
            ("LINKEDIN_CLIENT_ID", "c"),
            ("LINKEDIN_CLIENT_SECRET", "s"),
        ]))
        .unwrap()
        .build()
        .unwrap_err();
        assert_eq!(err.setting(), "PUBLIC_ORIGIN", "{err}");
        let _ = LinkedInSignIn::builder();
    }

    /// The variables `from_vars` reads, in the order of `docs/configuration.md`.
    #[cfg(feature = "server")]
    const VARIABLES: [&str; 23] = [
        "PUBLIC_ORIGIN",
        "LINKEDIN_API_KEY",
        "LINKEDIN_SECRET_KEY",
        "LINKEDIN_ACCESS_TOKEN_URL",
        "LINKEDIN_API_URL",
        "LINKEDIN_JSAPI_URL",
        "LINKEDIN_CLIENT_ID",
        "LINKEDIN_CLIENT_SECRET",
        "LINKEDIN_OIDC_ISSUER",
        "LINKEDIN_OIDC_REDIRECT_URL",
        "LINKEDIN_OIDC_SCOPES",
        "LINKEDIN_OIDC_PKCE",
        "LINKEDIN_OIDC_REQUIRE_NONCE",
        "ALLOWED_REDIRECT_HOSTS",
        "RATE_LIMIT",
        "TRUSTED_PROXIES",
        "UPSTREAM_TIMEOUT_MS",
        "UPSTREAM_CA_CERT",
        "SESSION_IDLE_MINUTES",
        "LINKEDIN_API_VERSION",
        "LINKEDIN_API_ALLOW",
        "LINKEDIN_INTROSPECT_EVERY",
        "LINKEDIN_INTROSPECTION_URL",
    ];

    /// Every variable read here is one of the service's, with the same name: `--help` lists
    /// it.
    #[test]
    #[cfg(feature = "server")]
    fn every_variable_read_is_one_of_the_services() {
        use clap::CommandFactory;
        let command = crate::config::Config::command();
        let known: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
            .collect();
        for variable in VARIABLES {
            assert!(known.iter().any(|k| k == variable), "{variable}");
        }
        // And nothing else is read.
        let read = std::cell::RefCell::new(Vec::new());
        let _ = from_vars(|name| {
            read.borrow_mut().push(name);
            None
        });
        let mut read = read.into_inner();
        read.sort_unstable();
        let mut listed = VARIABLES.to_vec();
        listed.sort_unstable();
        assert_eq!(read, listed);
    }
}
