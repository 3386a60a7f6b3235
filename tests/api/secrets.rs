//! Secrets are never printed (issue 28, item 2): the real binary, given URLs whose passwords
//! hold each of `/ # ? @ : %` (as `openssl rand -base64` makes them) and combinations, in every
//! place that prints configuration: a start-up error for a store that cannot be reached, a
//! store URL or an issuer that does not parse (clap's and the fleet parser's messages),
//! `--help`, the debug `settings` line, the trace export line and `check-provider`. No piece of 3 characters or more of any password
//! may appear on stdout or stderr.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{API_KEY, SECRET_KEY, Served, binary, dev_pair, free_port};

/// Passwords holding each character that ends a URL's authority or userinfo, a lone or a
/// valid `%`, and all of them at once. Their pieces are letters and digits that appear
/// nowhere else in the service's output.
const PASSWORDS: [&str; 9] = [
    "Qx7k/Vz9w",
    "Qx7k#Vz9w",
    "Qx7k?Vz9w",
    "Qx7k@Vz9w",
    "Qx7k:Vz9w",
    "Qx7k%Vz9w",
    "Qx7k%2FVz9w",
    "Qx7k/Vz9w#Jm4p?Hr6t@Lb3n:Yc8d%Ge5f",
    "Qx7k@Vz9w/Jm4p@Hr6t",
];

/// Every piece of `password` of 3 characters or more, and of its percent-decoded form.
fn pieces(password: &str) -> Vec<String> {
    let decoded = percent_encoding::percent_decode_str(password)
        .decode_utf8_lossy()
        .into_owned();
    let mut pieces = Vec::new();
    for text in [password.to_owned(), decoded] {
        let chars: Vec<char> = text.chars().collect();
        for start in 0..chars.len() {
            for end in start + 3..=chars.len() {
                pieces.push(chars[start..end].iter().collect());
            }
        }
    }
    pieces
}

/// Fails when `output` holds a piece of `password`.
fn assert_hidden(password: &str, output: &str, context: &str) {
    for piece in pieces(password) {
        assert!(
            !output.contains(&piece),
            "{context}: {piece:?} of the password {password:?} printed:\n{output}"
        );
    }
}

/// The binary run once with `env` and `args` in a fresh directory (no `.env`), stopped after
/// 20 s when it does not exit by itself: the exit code and everything it printed.
fn run(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    dev_pair(&cert, &key);
    let mut child = binary(dir.path())
        .env("BIND", "127.0.0.1:0")
        .env("TLS_CERT", &cert)
        .env("TLS_KEY", &key)
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    (status.code(), output)
}

/// A base64 session key (the shared stores require one).
const SESSION_KEYS: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[test]
fn a_store_that_cannot_be_reached_is_reported_without_any_piece_of_its_password() {
    let port = free_port();
    for password in PASSWORDS {
        for url in [
            format!("redis://:{password}@127.0.0.1:{port}/0"),
            format!("redis://app:{password}@127.0.0.1:{port}/0"),
            format!("postgres://app:{password}@127.0.0.1:{port}/sessions"),
            format!("redis-sentinel://:{password}@127.0.0.1:{port}/mymaster"),
            format!("redis-cluster://app:{password}@127.0.0.1:{port}"),
        ] {
            let (code, output) = run(
                &[("SESSION_STORE", &url), ("SESSION_KEYS", SESSION_KEYS)],
                &[],
            );
            assert_eq!(code, Some(2), "{url}: {output}");
            assert_hidden(password, &output, &url);
            let line = output.lines().last().unwrap_or_default();
            // Read as the password it is: the store at 127.0.0.1:PORT was tried and refused.
            assert!(
                line.contains("SESSION_STORE") && line.contains(&format!("127.0.0.1:{port}")),
                "{url}: {output}"
            );
        }
    }
}

#[test]
fn a_store_url_or_an_issuer_that_does_not_parse_is_reported_without_any_piece_of_its_password() {
    for password in PASSWORDS {
        for (variable, value) in [
            // The fleet parser: no service name, no port number, an empty node.
            (
                "SESSION_STORE",
                format!("redis-sentinel://:{password}@127.0.0.1:1"),
            ),
            (
                "SESSION_STORE",
                format!("redis-sentinel://user:{password}@127.0.0.1:x/mymaster"),
            ),
            (
                "SESSION_STORE",
                format!("redis-cluster://user:{password}@a:1,,b:2"),
            ),
            // The store parser: no host, an unknown scheme.
            (
                "SESSION_STORE",
                format!("postgres://app:{password}@:5432/x"),
            ),
            ("SESSION_STORE", format!("redis://:{password}@")),
            ("SESSION_STORE", format!("postgress://app:{password}@db/x")),
            // clap's URL parser.
            (
                "LINKEDIN_OIDC_ISSUER",
                format!("https://user:{password}@127.0.0.1:x/oauth"),
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://user:{password}@[::1"),
            ),
        ] {
            for format in ["text", "json"] {
                let (code, output) = run(&[(variable, &value), ("LOG_FORMAT", format)], &[]);
                assert_eq!(code, Some(2), "{value}: {output}");
                assert_hidden(password, &output, &value);
                assert!(output.contains(variable), "{value}: {output}");
                assert_eq!(output.trim_end().lines().count(), 1, "{value}: {output}");
            }
        }
    }
}

#[test]
fn help_shows_no_piece_of_an_otel_endpoints_password() {
    for password in PASSWORDS {
        // Values that parse (clap shows them in --help only when they do not fail).
        let encoded: String =
            percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        for value in [
            format!("http://user:{encoded}@127.0.0.1:4318"),
            format!("http://user:{password}@127.0.0.1:4318"),
        ] {
            let (code, help) = run(
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", &value),
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &value),
                ],
                &["--help"],
            );
            assert_eq!(code, Some(0), "{help}");
            assert!(
                help.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                "{help}"
            );
            assert_hidden(password, &help, &value);
            assert_hidden(&encoded, &help, &value);
        }
    }
}

#[tokio::test]
async fn the_debug_settings_line_shows_no_piece_of_the_issuers_or_the_collectors_password() {
    // Passwords that the URL parser takes unescaped (`:` and `@`), and escaped.
    for password in ["Qx7k:Vz9w", "Qx7k@Vz9w", "Qx7k%2FVz9w%23Jm4p%3FHr6t"] {
        let issuer = format!(
            "https://issuer-user:{password}@127.0.0.1:{}/oauth",
            free_port()
        );
        let collector = format!("http://otel-user:{password}@127.0.0.1:{}", free_port());
        let token_url = format!("https://token-user:{password}@127.0.0.1:{}/t", free_port());
        let api_url = format!("https://api-user:{password}@127.0.0.1:{}", free_port());
        let jsapi_url = format!("https://js-user:{password}@127.0.0.1:{}/in.js", free_port());
        let server = Served::start(
            "localhost",
            &[
                ("RUST_LOG", "debug"),
                ("SANDBOX", "true"),
                ("LINKEDIN_CLIENT_ID", "client"),
                ("LINKEDIN_CLIENT_SECRET", "client-secret"),
                ("LINKEDIN_OIDC_ISSUER", &issuer),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
                ("LINKEDIN_API_KEY", API_KEY),
                ("LINKEDIN_SECRET_KEY", SECRET_KEY),
                ("LINKEDIN_ACCESS_TOKEN_URL", &token_url),
                ("LINKEDIN_API_URL", &api_url),
                ("LINKEDIN_JSAPI_URL", &jsapi_url),
            ],
            "/healthz",
        )
        .await;
        let output = server.output();
        let settings = output
            .lines()
            .find(|l| l.contains("settings") && l.contains("issuer"))
            .unwrap_or_else(|| panic!("a debug settings line naming the issuer:\n{output}"));
        assert!(settings.contains("issuer-user:***@127.0.0.1"), "{settings}");
        assert!(settings.contains("token-user"), "{settings}");
        assert!(
            output.contains("exporting traces over OTLP/HTTP"),
            "{output}"
        );
        assert_hidden(password, &output, &issuer);
    }
}

#[test]
fn check_provider_shows_no_piece_of_the_issuers_password() {
    for password in ["Qx7k:Vz9w", "Qx7k@Vz9w", "Qx7k%2FVz9w%23Jm4p%3FHr6t"] {
        // Nothing listens there: discovery fails, quoting its URL.
        let issuer = format!(
            "http://issuer-user:{password}@127.0.0.1:{}/oauth",
            free_port()
        );
        let (code, output) = run(
            &[
                ("LINKEDIN_OIDC_ISSUER", &issuer),
                ("SANDBOX", "false"),
                ("UPSTREAM_TIMEOUT_MS", "2000"),
            ],
            &["check-provider"],
        );
        assert_eq!(code, Some(1), "{output}");
        assert!(output.contains("issuer-user:***@127.0.0.1"), "{output}");
        assert_hidden(password, &output, &issuer);
    }
}

#[tokio::test]
async fn the_real_mode_lines_show_no_piece_of_a_linkedin_urls_password() {
    for password in ["Qx7k:Vz9w", "Qx7k@Vz9w", "Qx7k%2FVz9w%23Jm4p%3FHr6t"] {
        // Plain http://, so that the warning about it names the URLs too.
        let token_url = format!("http://token-user:{password}@127.0.0.1:{}/t", free_port());
        let api_url = format!("http://api-user:{password}@127.0.0.1:{}", free_port());
        let server = Served::start(
            "localhost",
            &[
                ("SANDBOX", "false"),
                ("LINKEDIN_API_KEY", API_KEY),
                ("LINKEDIN_SECRET_KEY", SECRET_KEY),
                ("LINKEDIN_ACCESS_TOKEN_URL", &token_url),
                ("LINKEDIN_API_URL", &api_url),
            ],
            "/healthz",
        )
        .await;
        let output = server.output();
        assert!(
            output.contains("real mode") && output.contains("token-user:***@127.0.0.1"),
            "{output}"
        );
        assert!(output.contains("api-user:***@127.0.0.1"), "{output}");
        assert_hidden(password, &output, &token_url);
    }
}
