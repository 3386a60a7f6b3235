//! `GET /openapi.json`: the OpenAPI 3.1 document of the public port (`docs/openapi.json`,
//! embedded). No session. Its test holds it to the route table the routers register
//! ([`super::Routes::at`]) and to every error code of [`crate::error::AppError`].

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

use super::{Routes, Verb};
use crate::app::AppState;

/// The document, as checked in.
pub(crate) const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new().at(Verb::Get, "/openapi.json", document)
}

async fn document() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-cache"),
        ],
        DOCUMENT,
    )
}

#[cfg(all(test, feature = "sandbox"))]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::config::{Config, StoreUrl};
    use crate::error::AppError;
    use crate::secret::Secret;

    fn document_json() -> Value {
        serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
    }

    /// `(METHOD, path)` of every operation of the document.
    fn documented() -> BTreeSet<(String, String)> {
        let document = document_json();
        let paths = document["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().expect("a path item").keys();
                methods.map(move |method| (method.to_ascii_uppercase(), path.clone()))
            })
            .collect()
    }

    /// The routes a server registers with every feature of the public port on: the sandbox,
    /// the JSAPI flow and OpenID Connect (the sandbox's provider).
    async fn served() -> BTreeSet<(String, String)> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::defaults();
        config.listen.bind = "127.0.0.1:0".parse().expect("an address");
        config.listen.tls_cert = dir.path().join("cert.pem");
        config.listen.tls_key = dir.path().join("key.pem");
        // The service generates a pair only at its default paths: this one is brought.
        let (cert, key) = crate::tls::development_pair(crate::tls::GENERATED_VALIDITY)
            .expect("a development pair");
        std::fs::write(&config.listen.tls_cert, cert).expect("the certificate written");
        std::fs::write(&config.listen.tls_key, key).expect("the key written");
        config.sessions.store = StoreUrl::Memory;
        config.sessions.key_file = dir.path().join("session.key");
        config.linkedin.api_key = Some("openapiKey".into());
        config.linkedin.secret_key = Some(Secret::new("openapi-secret"));
        config.linkedin.sandbox = Some(true);
        config.oidc.client_id = Some("openapi-client".into());
        config.oidc.client_secret = Some(Secret::new("openapi-client-secret"));
        let (server, routes) =
            super::super::record_async(crate::server::Server::build(&config)).await;
        server.expect("the server builds");
        // A wildcard (`{*path}`, axum's) is a parameter (`{path}`) in OpenAPI's templates.
        routes
            .into_iter()
            .map(|(verb, path)| (verb.as_str().to_owned(), path.replace("{*", "{")))
            .collect()
    }

    #[tokio::test]
    async fn the_document_names_every_route_the_server_registers_and_no_other() {
        let served = served().await;
        let documented = documented();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "routes served but not in docs/openapi.json: {undocumented:?}; \
             documented but not served: {unserved:?}"
        );
        // The table is the real one: the public port's own routes are in it.
        for route in [
            ("GET", "/openapi.json"),
            ("POST", "/logout"),
            ("GET", "/sandbox/in.js"),
        ] {
            assert!(
                served.contains(&(route.0.to_owned(), route.1.to_owned())),
                "{route:?}"
            );
        }
    }

    /// Every `error` enum of the document's responses.
    fn documented_codes() -> BTreeSet<String> {
        fn walk(value: &Value, codes: &mut BTreeSet<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::Array(codes_here)) =
                        map.get("error").and_then(|error| error.get("enum"))
                    {
                        codes.extend(
                            codes_here
                                .iter()
                                .filter_map(|c| c.as_str().map(str::to_owned)),
                        );
                    }
                    map.values().for_each(|v| walk(v, codes));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, codes)),
                _ => {}
            }
        }
        let mut codes = BTreeSet::new();
        walk(&document_json()["paths"], &mut codes);
        codes
    }

    #[test]
    fn the_document_lists_every_error_code_and_no_made_up_one() {
        let documented = documented_codes();
        let codes: BTreeSet<String> = AppError::all_codes()
            .into_iter()
            .map(str::to_owned)
            .collect();
        // Not answered by any operation of the public port: `unauthorized` is the admin
        // routes' (on the metrics listener), and `internal_error` a 5xx the framework gave,
        // which is a defect wherever it happens (schemathesis's `not_a_server_error`), and
        // `session_layer_missing` and `client_address_unknown` a host app's without a session
        // layer or a client address for the rate limit (never the service's).
        let elsewhere = [
            "unauthorized",
            "internal_error",
            "session_layer_missing",
            "client_address_unknown",
        ];
        let public: BTreeSet<_> = codes
            .iter()
            .filter(|c| !elsewhere.contains(&c.as_str()))
            .cloned()
            .collect();
        let missing: Vec<_> = public.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&codes).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "error codes missing from docs/openapi.json: {missing:?}; codes there that the \
             error enum does not have: {unknown:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_of_this_version() {
        let document = document_json();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        // Every operation answers 405 with `Allow` and carries `X-Request-Id`.
        for (method, path) in documented() {
            let responses = &document["paths"][&path][method.to_ascii_lowercase()]["responses"];
            let allow = &responses["405"]["headers"]["Allow"];
            assert!(allow.is_object(), "{method} {path}: 405 without Allow");
            for (status, response) in responses.as_object().unwrap() {
                assert!(
                    response["headers"]["X-Request-Id"].is_object(),
                    "{method} {path} {status}: no X-Request-Id"
                );
            }
        }
    }
}
