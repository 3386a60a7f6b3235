//! PURE: the sandbox's own OAuth 1.0a signature check, written from RFC 5849 section 3.4
//! (base string, parameter normalisation, percent-encoding) and deliberately sharing no code
//! with the client's signing crate, so that each checks the other.
//!
//! Clocks and secrets come in as arguments; HTTP comes in as plain strings.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha1::Sha1;

/// RFC 5849 section 3.6: everything but ALPHA, DIGIT, '-', '.', '_' and '~' is encoded.
const RFC3986_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How far a request's timestamp may be from the sandbox's clock.
pub(crate) const TIMESTAMP_WINDOW_SECS: i64 = 300;

/// The `oauth_problem` values the sandbox answers with, as LinkedIn (and the OAuth Problem
/// Reporting extension) named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// A required parameter is missing (named).
    ParameterAbsent(String),
    /// A parameter is present that must not be, or twice.
    ParameterRejected(String),
    /// Not `HMAC-SHA1`.
    SignatureMethodRejected,
    /// `oauth_version` is present and not `1.0`.
    VersionRejected,
    /// The consumer key is not the app's.
    ConsumerKeyUnknown,
    /// The timestamp is more than five minutes off (or not a number).
    TimestampRefused,
    /// The nonce was already used with this timestamp.
    NonceUsed,
    /// The signature does not verify.
    SignatureInvalid,
    /// The token (JSAPI or OAuth) was not issued here, or has expired.
    TokenRejected,
}

impl Problem {
    /// The `oauth_problem` code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::ParameterAbsent(_) => "parameter_absent",
            Self::ParameterRejected(_) => "parameter_rejected",
            Self::SignatureMethodRejected => "signature_method_rejected",
            Self::VersionRejected => "version_rejected",
            Self::ConsumerKeyUnknown => "consumer_key_unknown",
            Self::TimestampRefused => "timestamp_refused",
            Self::NonceUsed => "nonce_used",
            Self::SignatureInvalid => "signature_invalid",
            Self::TokenRejected => "token_rejected",
        }
    }

    /// The `oauth_problem_advice` sentence.
    pub(crate) fn advice(&self) -> String {
        match self {
            Self::ParameterAbsent(name) => format!("the request lacks {name}"),
            Self::ParameterRejected(name) => format!("the parameter {name} is not accepted here"),
            Self::SignatureMethodRejected => "only HMAC-SHA1 is supported".into(),
            Self::VersionRejected => "only OAuth 1.0 is supported".into(),
            Self::ConsumerKeyUnknown => "the consumer key is not known".into(),
            Self::TimestampRefused => format!(
                "oauth_timestamp must be within {TIMESTAMP_WINDOW_SECS} seconds of the server's clock"
            ),
            Self::NonceUsed => "this nonce was already used".into(),
            Self::SignatureInvalid => "the signature does not match the request".into(),
            Self::TokenRejected => "the token was not issued here or has expired".into(),
        }
    }
}

/// RFC 5849 section 3.6 percent-encoding.
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986_UNRESERVED).to_string()
}

/// The protocol parameters of an `Authorization: OAuth …` header (section 3.5.1), decoded,
/// without `realm`.
pub(crate) fn parse_authorization(header: &str) -> Result<Vec<(String, String)>, Problem> {
    let absent = || Problem::ParameterAbsent("an OAuth Authorization header".into());
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(absent)?;
    if !scheme.eq_ignore_ascii_case("OAuth") {
        return Err(absent());
    }
    let mut params = Vec::new();
    for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| Problem::ParameterRejected(format!("{item:?} (not name=\"value\")")))?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| Problem::ParameterRejected(format!("{name} (value not quoted)")))?;
        let name = decode(name.trim())?;
        if name == "realm" {
            continue;
        }
        if params.iter().any(|(n, _)| *n == name) {
            return Err(Problem::ParameterRejected(format!("{name} (given twice)")));
        }
        params.push((name, decode(value)?));
    }
    Ok(params)
}

fn decode(s: &str) -> Result<String, Problem> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Problem::ParameterRejected("a value that is not UTF-8".into()))
}

/// Name/value pairs of an `application/x-www-form-urlencoded` string (a query or a body).
pub(crate) fn form_pairs(form: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(form).into_owned().collect()
}

/// The base string URI (section 3.4.1.2): lower-case scheme and host, the port only when it
/// is not the scheme's default, the path, no query.
pub(crate) fn base_uri(scheme: &str, authority: &str, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let authority = authority.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    let path = if path.is_empty() { "/" } else { path };
    format!("{scheme}://{authority}{path}")
}

/// The signature base string (section 3.4.1.1) over already-decoded parameters, which must
/// not include `oauth_signature` (section 3.4.1.3.1).
pub(crate) fn base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(n, v)| (encode(n), encode(v))).collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_uri),
        encode(&normalized)
    )
}

/// Whether `signature` (base64) is the HMAC-SHA1 of `base_string`, compared in constant time.
pub(crate) fn verify_hmac_sha1(
    base_string: &str,
    consumer_secret: &str,
    token_secret: &str,
    signature: &str,
) -> bool {
    match BASE64.decode(signature) {
        Ok(given) => mac(base_string, consumer_secret, token_secret)
            .verify_slice(&given)
            .is_ok(),
        Err(_) => false,
    }
}

fn mac(base_string: &str, consumer_secret: &str, token_secret: &str) -> Hmac<Sha1> {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha1> as hmac::digest::KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(base_string.as_bytes());
    mac
}

/// A request as the verifier sees it: method, URI parts, the `Authorization` header, and the
/// query and form body whose parameters are signed.
pub(crate) struct IncomingRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// `https` for the sandbox.
    pub scheme: &'a str,
    /// `host[:port]`.
    pub authority: &'a str,
    /// The path, without query.
    pub path: &'a str,
    /// The raw query, if any.
    pub query: Option<&'a str>,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The body, when it is `application/x-www-form-urlencoded`.
    pub form_body: Option<&'a [u8]>,
}

/// A request whose signature verified, with the parameters it carried.
#[derive(Debug)]
pub(crate) struct VerifiedRequest {
    /// `oauth_token`, when the request carried one.
    pub token: Option<String>,
    /// `oauth_nonce`.
    pub nonce: String,
    /// `oauth_timestamp`.
    pub timestamp: i64,
    /// The query and body parameters (not the protocol ones).
    pub params: Vec<(String, String)>,
}

impl VerifiedRequest {
    /// A query or body parameter by name.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Verifies `request` as signed by `consumer_key`/`consumer_secret` with `token_secret`
/// (looked up from the request's `oauth_token`, when it has one), at time `now`.
/// Checks, in order: the header's presence and shape, the consumer key, the method and
/// version, the timestamp window, then the signature. Nonce replay and token validity
/// are the caller's (they need state).
pub(crate) fn verify(
    request: &IncomingRequest<'_>,
    consumer_key: &str,
    consumer_secret: &str,
    token_secret: impl FnOnce(&str) -> Option<String>,
    now: i64,
) -> Result<VerifiedRequest, Problem> {
    let authorization = request
        .authorization
        .ok_or_else(|| Problem::ParameterAbsent("an OAuth Authorization header".into()))?;
    let protocol = parse_authorization(authorization)?;
    let get = |name: &str| {
        protocol
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let required = [
        "oauth_consumer_key",
        "oauth_signature_method",
        "oauth_signature",
        "oauth_timestamp",
        "oauth_nonce",
    ];
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|n| get(n).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Problem::ParameterAbsent(missing.join(", ")));
    }
    let field = |name: &str| get(name).unwrap_or_default();

    if field("oauth_consumer_key") != consumer_key {
        return Err(Problem::ConsumerKeyUnknown);
    }
    if field("oauth_signature_method") != "HMAC-SHA1" {
        return Err(Problem::SignatureMethodRejected);
    }
    if get("oauth_version").is_some_and(|v| v != "1.0") {
        return Err(Problem::VersionRejected);
    }
    let timestamp: i64 = field("oauth_timestamp")
        .parse()
        .map_err(|_| Problem::TimestampRefused)?;
    if (timestamp - now).abs() > TIMESTAMP_WINDOW_SECS {
        return Err(Problem::TimestampRefused);
    }

    let mut params = request
        .query
        .map(|q| form_pairs(q.as_bytes()))
        .unwrap_or_default();
    params.extend(request.form_body.map(form_pairs).unwrap_or_default());
    if let Some((name, _)) = params.iter().find(|(n, _)| n.starts_with("oauth_")) {
        return Err(Problem::ParameterRejected(format!(
            "{name} (protocol parameters belong in the header)"
        )));
    }
    let token = get("oauth_token").map(str::to_owned);
    let token_secret = match &token {
        Some(token) => token_secret(token).ok_or(Problem::TokenRejected)?,
        None => String::new(),
    };

    let mut signed: Vec<(String, String)> = protocol
        .iter()
        .filter(|(n, _)| n != "oauth_signature")
        .cloned()
        .collect();
    signed.extend(params.iter().cloned());
    let uri = base_uri(request.scheme, request.authority, request.path);
    let base = base_string(request.method, &uri, &signed);
    if !verify_hmac_sha1(
        &base,
        consumer_secret,
        &token_secret,
        field("oauth_signature"),
    ) {
        return Err(Problem::SignatureInvalid);
    }
    Ok(VerifiedRequest {
        token,
        nonce: field("oauth_nonce").to_owned(),
        timestamp,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5849 section 3.4.1.1: the example request and its signature base string.
    #[test]
    fn builds_the_rfc_5849_section_3_4_1_1_base_string() {
        let protocol = parse_authorization(
            r#"OAuth realm="Example", oauth_consumer_key="9djdj82h48djs9d2", oauth_token="kkk9d7dh3k39sjv7", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131201", oauth_nonce="7d8f3e4a", oauth_signature="bYT5CMsGcbgUdFHObYMEfcx6bsw%3D""#,
        )
        .unwrap();
        assert!(protocol.iter().all(|(n, _)| n != "realm"));
        let mut params: Vec<_> = protocol
            .into_iter()
            .filter(|(n, _)| n != "oauth_signature")
            .collect();
        params.extend(form_pairs(b"b5=%3D%253D&a3=a&c%40=&a2=r%20b"));
        params.extend(form_pairs(b"c2&a3=2+q"));
        let base = base_string(
            "POST",
            &base_uri("http", "EXAMPLE.COM:80", "/request"),
            &params,
        );
        assert_eq!(
            base,
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
             %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
             key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
             ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
             9d7dh3k39sjv7"
        );
    }

    /// RFC 5849 section 3.4.1.2: base string URIs.
    #[test]
    fn normalises_base_string_uris() {
        assert_eq!(
            base_uri("HTTP", "EXAMPLE.COM:80", "/r%20v/X"),
            "http://example.com/r%20v/X"
        );
        assert_eq!(
            base_uri("https", "www.example.net:8080", "/"),
            "https://www.example.net:8080/"
        );
        assert_eq!(
            base_uri("https", "localhost:443", "/x"),
            "https://localhost/x"
        );
    }

    /// RFC 5849 section 1.2: the three signed requests of the example exchange.
    #[test]
    fn verifies_the_rfc_5849_section_1_2_requests() {
        let initiate = IncomingRequest {
            method: "POST",
            scheme: "https",
            authority: "photos.example.net",
            path: "/initiate",
            query: None,
            authorization: Some(
                r#"OAuth realm="Photos", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131200", oauth_nonce="wIjqoS", oauth_callback="http%3A%2F%2Fprinter.example.com%2Fready", oauth_signature="74KNZJeDHnMBp0EMJ9ZHt%2FXKycU%3D""#,
            ),
            form_body: None,
        };
        verify(
            &initiate,
            "dpf43f3p2l4k3l03",
            "kd94hf93k423kf44",
            |_| None,
            137_131_200,
        )
        .unwrap();

        let token = IncomingRequest {
            path: "/token",
            authorization: Some(
                r#"OAuth realm="Photos", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_token="hh5s93j4hdidpola", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131201", oauth_nonce="walatlh", oauth_verifier="hfdp7dh39dks9884", oauth_signature="gKgrFCywp7rO0OXSjdot%2FIHF7IU%3D""#,
            ),
            ..initiate
        };
        let secret = |t: &str| (t == "hh5s93j4hdidpola").then(|| "hdhd0244k9j7ao03".to_owned());
        verify(
            &token,
            "dpf43f3p2l4k3l03",
            "kd94hf93k423kf44",
            secret,
            137_131_201,
        )
        .unwrap();

        let photo = IncomingRequest {
            method: "GET",
            scheme: "http",
            path: "/photos",
            query: Some("file=vacation.jpg&size=original"),
            authorization: Some(
                r#"OAuth realm="Photos", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_token="nnch734d00sl2jdk", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131202", oauth_nonce="chapoH", oauth_signature="MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D""#,
            ),
            ..initiate
        };
        let secret = |t: &str| (t == "nnch734d00sl2jdk").then(|| "pfkkdhi9sl3r4s00".to_owned());
        let verified = verify(
            &photo,
            "dpf43f3p2l4k3l03",
            "kd94hf93k423kf44",
            secret,
            137_131_202,
        )
        .unwrap();
        assert_eq!(verified.param("file"), Some("vacation.jpg"));
        assert_eq!(verified.token.as_deref(), Some("nnch734d00sl2jdk"));
    }

    fn photo_request(authorization: &str) -> IncomingRequest<'_> {
        IncomingRequest {
            method: "GET",
            scheme: "http",
            authority: "photos.example.net",
            path: "/photos",
            query: Some("file=vacation.jpg&size=original"),
            authorization: Some(authorization),
            form_body: None,
        }
    }

    const PHOTO_AUTH: &str = r#"OAuth oauth_consumer_key="dpf43f3p2l4k3l03", oauth_token="nnch734d00sl2jdk", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131202", oauth_nonce="chapoH", oauth_signature="MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D""#;

    fn check(request: &IncomingRequest<'_>, now: i64) -> Result<VerifiedRequest, Problem> {
        let secret = |t: &str| (t == "nnch734d00sl2jdk").then(|| "pfkkdhi9sl3r4s00".to_owned());
        verify(request, "dpf43f3p2l4k3l03", "kd94hf93k423kf44", secret, now)
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(check(&photo_request(PHOTO_AUTH), 137_131_202).is_ok());
        let tampered = IncomingRequest {
            query: Some("file=vacation.jpg&size=large"),
            ..photo_request(PHOTO_AUTH)
        };
        assert_eq!(
            check(&tampered, 137_131_202).unwrap_err(),
            Problem::SignatureInvalid
        );
        assert_eq!(
            check(&photo_request(PHOTO_AUTH), 137_131_202 + 301).unwrap_err(),
            Problem::TimestampRefused
        );
        let other_key = PHOTO_AUTH.replace("dpf43f3p2l4k3l03", "nobody");
        assert_eq!(
            check(&photo_request(&other_key), 137_131_202).unwrap_err(),
            Problem::ConsumerKeyUnknown
        );
        let other_token = PHOTO_AUTH.replace("nnch734d00sl2jdk", "unknown");
        assert_eq!(
            check(&photo_request(&other_token), 137_131_202).unwrap_err(),
            Problem::TokenRejected
        );
        let plaintext = PHOTO_AUTH.replace("HMAC-SHA1", "PLAINTEXT");
        assert_eq!(
            check(&photo_request(&plaintext), 137_131_202).unwrap_err(),
            Problem::SignatureMethodRejected
        );
        let no_nonce = PHOTO_AUTH.replace(r#" oauth_nonce="chapoH","#, "");
        assert!(
            matches!(check(&photo_request(&no_nonce), 137_131_202).unwrap_err(), Problem::ParameterAbsent(p) if p == "oauth_nonce")
        );
        let no_header = IncomingRequest {
            authorization: None,
            ..photo_request(PHOTO_AUTH)
        };
        assert!(matches!(
            check(&no_header, 137_131_202).unwrap_err(),
            Problem::ParameterAbsent(_)
        ));
    }

    #[test]
    fn encodes_as_section_3_6_says() {
        assert_eq!(encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode("An encoded string!"), "An%20encoded%20string%21");
        assert_eq!(encode("Dogs, Cats & Mice"), "Dogs%2C%20Cats%20%26%20Mice");
        assert_eq!(encode("☃"), "%E2%98%83");
        assert_eq!(encode("-._~"), "-._~");
    }
}
