//! `GET /openapi.json` on the real binary: the OpenAPI document of the public port, and every
//! operation it documents answered by the server with exactly the documented methods. (The
//! route table and the error codes are held to the document by the library's own tests, in
//! `src/handlers/openapi.rs`.)

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{FetchJson, Served};

/// A sandbox-mode server (the sandbox's routes, its OpenID Connect provider, the JSAPI flow).
async fn sandbox_server() -> Served {
    Served::start("localhost", &[("SANDBOX", "true")], "/healthz").await
}

#[tokio::test]
async fn the_document_is_served_as_openapi_3_1_json() {
    let server = sandbox_server().await;
    let response = server
        .client(None)
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/auth/check"]["get"].is_object());
    let check = &document["paths"]["/auth/check"]["get"];
    let ok_headers = check["responses"]["200"]["headers"].as_object().unwrap();
    for name in [
        "X-Auth-Request-User",
        "X-Auth-Request-Flow",
        "X-Auth-Request-Email",
        "X-Auth-Request-Name",
    ] {
        assert!(
            ok_headers.contains_key(name),
            "/auth/check 200 lacks {name}"
        );
    }
    let params = check["parameters"].as_array().unwrap();
    assert!(params.iter().any(|p| p["name"] == "redirect"), "{params:?}");
    assert!(check["responses"]["302"].is_object());
}

#[tokio::test]
async fn every_documented_operation_is_served_with_the_documented_methods() {
    let server = sandbox_server().await;
    let client = server.client(None);
    let document: Value = client.get(server.url("/openapi.json")).fetch_json().await;
    let mut wrong = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        let mut documented: BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        if documented.contains("GET") {
            documented.insert("HEAD".to_owned());
        }
        // A method no route takes: the router answers 405 naming the methods it does take,
        // from any origin (the same-origin check is for the methods a route takes).
        let url = server.url(&path.replace("{file}", "app.js"));
        let undeclared = ["GET", "POST", "PUT", "TRACE", "DELETE"]
            .into_iter()
            .filter(|m| !documented.contains(*m));
        for method in undeclared {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = client.request(method.clone(), &url).send().await.unwrap();
            let allow: BTreeSet<String> = response
                .headers()
                .get("allow")
                .map(|v| {
                    let methods = v.to_str().unwrap().split(',');
                    methods.map(|m| m.trim().to_owned()).collect()
                })
                .unwrap_or_default();
            if response.status() != 405 || allow != documented {
                wrong.push(format!(
                    "{method} {path}: documented {documented:?}, served {} with Allow {allow:?}",
                    response.status()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The methods the routes do take still need the page's origin.
    for path in ["/logout", "/token-exchange"] {
        let response = client.post(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "POST {path} with no Origin");
    }
}
