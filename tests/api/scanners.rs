//! Scanners that no one here wrote, run against the real binary: sslyze holds the TLS
//! configuration to Mozilla's "intermediate" profile (with a certificate from a CA the test
//! makes), and schemathesis fuzzes every operation of `/openapi.json` against a sandbox-mode
//! server. Both are PyPI tools (`.ci/run` installs them, pinned); without them the tests skip,
//! or fail under `LTE_REQUIRE_ALL_TESTS=1`.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

use crate::support::servers::skip_or_fail;
use crate::support::{
    API_KEY, FetchJson, SECRET_KEY, Served, binary, client, encode_cookie, free_port,
};

/// How long each scanner may take before the test fails (both take well under a minute).
const SCAN_TIMEOUT: &str = "300";

/// `program args…` under `timeout`, or why it cannot run (for `skip_or_fail`).
fn run_tool(dir: &Path, program: &str, args: &[&str]) -> Result<Output, String> {
    let output = Command::new("timeout")
        .arg(SCAN_TIMEOUT)
        .arg(program)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .map_err(|err| format!("timeout {program}: {err}"))?;
    // 127: `timeout` found no such program.
    if output.status.code() == Some(127) {
        return Err(format!(
            "{program} is not installed (pip install: see .ci/run)"
        ));
    }
    Ok(output)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Shown in a plain `cargo test` run too (the harness captures `eprintln!`).
fn report(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// A test CA and a server certificate for `localhost` and 127.0.0.1 that it issued, valid
/// from yesterday for 30 days (Mozilla's profiles cap a certificate's life): the CA's PEM,
/// and the server's chain and key PEMs.
fn test_ca_and_server_certificate() -> (String, String, String) {
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "linkedin-token-exchange scanners test CA",
    );
    ca_params.not_before = now - time::Duration::days(1);
    ca_params.not_after = now + time::Duration::days(30);
    // Positive serial numbers (a random one may read as negative, which sslyze's path
    // validation refuses).
    ca_params.serial_number = Some(SerialNumber::from(1));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
    params.serial_number = Some(SerialNumber::from(2));
    // RFC 5280 wants it, and sslyze's path validation too.
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (
        ca.pem(),
        format!("{}{}", cert.pem(), ca.pem()),
        key.serialize_pem(),
    )
}

/// The binary with TLS on a free port of 127.0.0.1, serving the test CA's certificate; killed
/// when dropped.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve_with_test_ca(dir: &Path) -> TlsServer {
    let (ca, chain, key) = test_ca_and_server_certificate();
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = binary(dir)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("PUBLIC_ORIGIN", format!("https://localhost:{port}"))
        .env("TLS_CERT", dir.join("chain.pem"))
        .env("TLS_KEY", dir.join("key.pem"))
        .env("SESSION_STORE", "memory")
        .env("SANDBOX", "true")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = TlsServer { child, port };
    // Trusting only the test CA: the chain it serves verifies.
    let browser = client::trusting(&dir.join("ca.pem")).build().unwrap();
    let started = Instant::now();
    loop {
        let url = format!("https://localhost:{port}/healthz");
        if let Ok(response) = browser.get(&url).send().await
            && response.status() == 200
        {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sslyze_finds_the_tls_configuration_compliant_with_mozilla_intermediate() {
    let test = "sslyze_finds_the_tls_configuration_compliant_with_mozilla_intermediate";
    let dir = tempfile::tempdir().unwrap();
    if let Err(why) = run_tool(dir.path(), "sslyze", &["--help"]) {
        return skip_or_fail(test, &why);
    }
    let server = serve_with_test_ca(dir.path()).await;
    let target = format!("localhost:{}", server.port);
    let ca = dir.path().join("ca.pem");
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            run_tool(
                &dir,
                "sslyze",
                &[
                    "--mozilla_config=intermediate",
                    "--certinfo_ca_file",
                    ca.to_str().unwrap(),
                    &target,
                ],
            )
        }
    })
    .await
    .unwrap()
    .unwrap();
    let said = text(&output);
    // sslyze exits non-zero when the server is not compliant (or could not be scanned).
    assert!(
        output.status.success() && said.contains("OK - Compliant"),
        "sslyze (exit {:?}) finds the server not compliant with Mozilla's intermediate \
         configuration:\n{said}",
        output.status.code()
    );
    let verdict = said
        .lines()
        .find(|line| line.contains("Compliant"))
        .unwrap_or_default();
    report(&format!(
        "sslyze --mozilla_config=intermediate: {}",
        verdict.trim()
    ));
}

/// Signs the sandbox's default member in through the JSAPI flow, as the page does: the
/// `Cookie` header of the session it gets.
async fn signed_in_cookie(server: &Served) -> String {
    let browser = server.client(None);
    let payload: serde_json::Value = browser
        .post(server.url("/sandbox/oauth2/authorize"))
        .form(&[("api_key", API_KEY)])
        .fetch_json()
        .await;
    let jsapi = format!(
        "linkedin_oauth_{API_KEY}={}",
        encode_cookie(&payload.to_string())
    );
    let response = browser
        .post(server.url("/token-exchange"))
        .header("origin", &server.origin)
        .header("cookie", &jsapi)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("lte_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    format!("{session}; {jsapi}")
}

/// The checks that find a 500, an answer outside the document (status, content type,
/// headers) or one that breaks its schema, and a method the document does not name answered
/// other than 405 with `Allow`. (Not `positive_data_acceptance`: a schema-valid callback
/// `state` or sandbox `client_id` is still unknown, and refused.)
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance,\
                      unsupported_method,allow_header_conformance";

/// `st run` over the server's `/openapi.json` (`extra` arguments appended): its output, and
/// how many cases it generated.
async fn schemathesis(server: &Served, extra: &[&str]) -> Result<(Output, u64), String> {
    let schema = server.url("/openapi.json");
    let cert = server.cert();
    let origin = format!("Origin: {}", server.origin);
    let mut args: Vec<String> = [
        "run",
        schema.as_str(),
        "--tls-verify",
        cert.to_str().unwrap(),
        // The page's origin: the same-origin check lets the POSTs through to their handlers.
        "--header",
        origin.as_str(),
        "--checks",
        CHECKS,
        "--max-examples",
        "25",
        // One worker: with two threads, CPython 3.11's `ast` (which Hypothesis calls to
        // describe a filtered strategy) raised "SystemError: AST constructor recursion depth
        // mismatch" inside schemathesis (a runtime error of the tool, not a finding), as
        // CPython issue gh-106905 describes for concurrent parsing.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--max-failures",
        "20",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let dir = server.dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool(&dir, "st", &args)
    })
    .await
    .unwrap()?;
    // "Test cases:\n  561 generated, 561 passed"
    let said = text(&output);
    let cases = said
        .lines()
        .filter_map(|line| line.trim().split_once(" generated, "))
        .find_map(|(count, _)| count.parse().ok())
        .unwrap_or(0);
    Ok((output, cases))
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let test = "schemathesis_finds_no_server_error_and_no_answer_outside_the_document";
    let probe = tempfile::tempdir().unwrap();
    if let Err(why) = run_tool(probe.path(), "st", &["--version"]) {
        return skip_or_fail(test, &why);
    }
    let server = Served::start(
        "localhost",
        &[
            ("SANDBOX", "true"),
            ("LINKEDIN_API_KEY", API_KEY),
            ("LINKEDIN_SECRET_KEY", SECRET_KEY),
            ("RATE_LIMIT", "off"),
        ],
        "/healthz",
    )
    .await;
    // A stranger, then a signed-in member (whose session no `POST /logout` may end midway).
    let cookie = format!("Cookie: {}", signed_in_cookie(&server).await);
    let passes: [(&str, Vec<&str>); 2] = [
        ("anonymous", vec![]),
        (
            "signed in",
            vec!["--header", cookie.as_str(), "--exclude-path", "/logout"],
        ),
    ];
    let mut total = 0;
    for (name, extra) in passes {
        let (output, cases) = schemathesis(&server, &extra).await.unwrap();
        let said = text(&output);
        assert!(
            output.status.success() && cases > 0,
            "schemathesis ({name}, exit {:?}) found a problem:\n{said}\n\nserver log:\n{}",
            output.status.code(),
            server.output()
        );
        report(&format!("schemathesis ({name}): {cases} cases, no finding"));
        total += cases;
    }
    report(&format!("schemathesis: {total} cases in all, no finding"));
}
