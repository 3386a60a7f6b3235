//! PURE: the JSAPI credentials cookie (`linkedin_oauth_<API_KEY>`): finding it in a `Cookie`
//! header, decoding it, and verifying its signature into a [`VerifiedCookie`].
//!
//! No I/O, no clock, no framework: the secret comes in as an argument. What to do with a
//! verified cookie (the exchange) is `client`'s business.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;

use crate::text::escape_text;

/// Browsers cap a cookie at about 4 KiB; anything longer is not a JSAPI cookie.
pub(crate) const MAX_COOKIE_LEN: usize = 4096;

/// The name of the cookie the JSAPI writes for `api_key`.
pub(crate) fn cookie_name(api_key: &str) -> String {
    format!("linkedin_oauth_{api_key}")
}

/// Why a cookie was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// The request carries no cookie of that name.
    #[error("no {0} cookie: sign in with LinkedIn first")]
    Missing(String),
    /// The cookie cannot be read: encoding, JSON, shape, size, or an unsupported format.
    #[error("the LinkedIn cookie cannot be read: {0}")]
    Malformed(String),
    /// The cookie reads, but its signature does not verify.
    #[error("the LinkedIn cookie's signature does not verify: {0}")]
    InvalidSignature(String),
}

/// A decoded cookie whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct JsapiCookie {
    signature_order: [SignedField; 2],
    signature: Vec<u8>,
    access_token: String,
    member_id: String,
}

/// A cookie whose signature verified: the only way to obtain one is [`JsapiCookie::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCookie {
    access_token: String,
    member_id: String,
}

impl VerifiedCookie {
    /// The JSAPI (OAuth 2) access token to exchange.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The member the token belongs to.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }
}

/// Finds the value of cookie `name` among `Cookie` header values.
pub fn find_cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
}

impl JsapiCookie {
    /// Decodes a raw cookie value: percent-decoding (a `+` stays a `+`), then JSON.
    pub fn parse(raw: &str) -> Result<Self, CookieError> {
        let malformed = |why: &str| CookieError::Malformed(why.to_owned());
        if raw.len() > MAX_COOKIE_LEN {
            return Err(malformed("it is longer than 4096 bytes"));
        }
        let raw = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        let json = percent_decode_strict(raw)
            .ok_or_else(|| malformed("it has a broken percent-escape"))?;
        let json = String::from_utf8(json)
            .map_err(|_| malformed("it is not UTF-8 once percent-decoded"))?;
        let fields = match serde_json::from_str::<Value>(&json) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(malformed("it is JSON but not an object")),
            Err(_) => return Err(malformed("it is not JSON")),
        };

        let text = |name: &str| match fields.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(CookieError::Malformed(format!("{name} is not a string"))),
            None => Err(CookieError::Malformed(format!("{name} is missing"))),
        };
        let method = text("signature_method")?;
        if method != "HMAC-SHA1" {
            return Err(CookieError::Malformed(format!(
                "signature_method {} is not supported (only HMAC-SHA1)",
                escaped_list(&[&method])
            )));
        }
        match fields.get("signature_version") {
            Some(Value::String(v)) if v == "1" => {}
            Some(Value::Number(v)) if v.as_u64() == Some(1) => {}
            Some(other) => {
                let shown = other.to_string();
                return Err(CookieError::Malformed(format!(
                    "signature_version {} is not supported (only 1)",
                    escaped_list(&[&shown])
                )));
            }
            None => return Err(malformed("signature_version is missing")),
        }
        let signature_order = signed_fields(fields.get("signature_order"))?;
        let access_token = text("access_token")?;
        let member_id = text("member_id")?;
        if access_token.is_empty() || member_id.is_empty() {
            return Err(malformed("access_token and member_id must not be empty"));
        }
        let signature = BASE64
            .decode(text("signature")?)
            .map_err(|_| CookieError::InvalidSignature("the signature is not base64".into()))?;

        Ok(Self {
            signature_order,
            signature,
            access_token,
            member_id,
        })
    }

    /// Checks the signature: base64 of HMAC-SHA1 keyed by `secret` over the values of
    /// `access_token` and `member_id`, concatenated in the cookie's `signature_order`,
    /// compared in constant time.
    pub fn verify(self, secret: &[u8]) -> Result<VerifiedCookie, CookieError> {
        let mut mac = Hmac::<Sha1>::new_from_slice(secret)
            .map_err(|_| CookieError::InvalidSignature("unusable secret".into()))?;
        for field in self.signature_order {
            mac.update(match field {
                SignedField::AccessToken => self.access_token.as_bytes(),
                SignedField::MemberId => self.member_id.as_bytes(),
            });
        }
        // `verify_slice` compares in constant time.
        mac.verify_slice(&self.signature).map_err(|_| {
            CookieError::InvalidSignature("it was not made with this app's secret".into())
        })?;
        Ok(VerifiedCookie {
            access_token: self.access_token,
            member_id: self.member_id,
        })
    }
}

/// A field the signature covers. Exactly these two, each once: with any other list, the
/// boundary between the signed values could move (`member_id` "Sandbox" plus a field "Ada"
/// signs the same bytes as `member_id` "SandboxAda").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignedField {
    AccessToken,
    MemberId,
}

/// `signature_order`, which must be `["access_token", "member_id"]` in either order.
fn signed_fields(order: Option<&Value>) -> Result<[SignedField; 2], CookieError> {
    const EXPECTED: &str = "signature_order must name access_token and member_id, each once";
    let names: Vec<&str> = match order {
        Some(Value::Array(items)) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(|| CookieError::Malformed(EXPECTED.into()))?,
        Some(_) => return Err(CookieError::Malformed(EXPECTED.into())),
        None => return Err(CookieError::Malformed("signature_order is missing".into())),
    };
    match names.as_slice() {
        ["access_token", "member_id"] => Ok([SignedField::AccessToken, SignedField::MemberId]),
        ["member_id", "access_token"] => Ok([SignedField::MemberId, SignedField::AccessToken]),
        _ => Err(CookieError::Malformed(format!(
            "{EXPECTED} (it names {})",
            escaped_list(&names)
        ))),
    }
}

/// Names from a request, fit for a message or a log line: quoted and escaped, and at most a
/// few of them.
fn escaped_list(names: &[&str]) -> String {
    let mut shown: Vec<String> = names
        .iter()
        .take(4)
        .map(|n| format!("\"{}\"", escape_text(n, 40)))
        .collect();
    if names.len() > 4 {
        shown.push(format!("and {} more", names.len() - 4));
    }
    if shown.is_empty() {
        "nothing".into()
    } else {
        shown.join(", ")
    }
}

/// Percent-decodes `raw` in one pass (a `+` stays a `+`); `None` when a `%` is not followed
/// by two hex digits, which `percent-encoding`'s lenient decoder would pass through as is.
/// Runs between escapes are copied whole: a JSAPI cookie is mostly escapes and such runs.
fn percent_decode_strict(raw: &str) -> Option<Vec<u8>> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut decoded = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        decoded.extend_from_slice(&rest[..at]);
        let (&high, &low) = (rest.get(at + 1)?, rest.get(at + 2)?);
        let byte = hex(high)? << 4 | hex(low)?;
        decoded.push(u8::try_from(byte).ok()?);
        rest = &rest[at + 3..];
    }
    decoded.extend_from_slice(rest);
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The published vector from strikingly/omniauth-linkedin-jsapi's spec.
    const SECRET: &str = "X19zkd7LdmSPVcrV";
    const TOKEN: &str = "AD2dpVe1tOclAsNYsCri4nOatfstw7ZnMzWP";
    const MEMBER: &str = "vvUNSej47H";
    const SIGNATURE: &str = "4pgJrTAD+EktW7c5VTuZFhLrmOA=";

    fn encode(json: &str) -> String {
        // What the JSAPI did: encodeURIComponent(JSON.stringify(obj)).
        const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'!')
            .remove(b'~')
            .remove(b'*')
            .remove(b'\'')
            .remove(b'(')
            .remove(b')');
        percent_encoding::utf8_percent_encode(json, COMPONENT).to_string()
    }

    fn published_cookie() -> String {
        format!(
            r#"{{"signature_method":"HMAC-SHA1","signature_order":["access_token","member_id"],"access_token":"{TOKEN}","signature":"{SIGNATURE}","member_id":"{MEMBER}","signature_version":1}}"#
        )
    }

    fn check(json: &str) -> Result<VerifiedCookie, CookieError> {
        JsapiCookie::parse(&encode(json))?.verify(SECRET.as_bytes())
    }

    #[test]
    fn the_published_vector_verifies() {
        let cookie = check(&published_cookie()).unwrap();
        assert_eq!(cookie.access_token(), TOKEN);
        assert_eq!(cookie.member_id(), MEMBER);
    }

    #[test]
    fn version_as_a_string_other_key_order_and_escaped_slashes_are_accepted() {
        let json = format!(
            r#"{{"member_id":"{MEMBER}","signature_version":"1","signature":"{}","access_token":"{TOKEN}","signature_order":["access_token","member_id"],"signature_method":"HMAC-SHA1"}}"#,
            SIGNATURE.replace('/', "\\/")
        );
        assert!(check(&json).is_ok());
    }

    #[test]
    fn a_plus_sign_stays_a_plus_sign() {
        // The signature holds a '+': decoding it as a space would break verification.
        let raw = encode(&published_cookie()).replace("%2B", "+");
        assert!(raw.contains('+'));
        assert!(
            JsapiCookie::parse(&raw)
                .unwrap()
                .verify(SECRET.as_bytes())
                .is_ok()
        );
    }

    #[test]
    fn another_secret_or_a_tampered_field_is_an_invalid_signature() {
        let err = JsapiCookie::parse(&encode(&published_cookie()))
            .unwrap()
            .verify(b"other");
        assert!(matches!(err, Err(CookieError::InvalidSignature(_))));
        let tampered = published_cookie().replace(MEMBER, "someoneElse");
        assert!(matches!(
            check(&tampered),
            Err(CookieError::InvalidSignature(_))
        ));
    }

    #[test]
    fn a_hex_signature_is_refused() {
        let bytes = BASE64.decode(SIGNATURE).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let json = published_cookie().replace(SIGNATURE, &hex);
        assert!(matches!(
            check(&json),
            Err(CookieError::InvalidSignature(_))
        ));
    }

    #[test]
    fn version_2_and_hmac_sha256_are_refused() {
        let v2 = published_cookie().replace(r#""signature_version":1"#, r#""signature_version":2"#);
        assert!(
            matches!(check(&v2), Err(CookieError::Malformed(m)) if m.contains("signature_version"))
        );
        let sha256 = published_cookie().replace("HMAC-SHA1", "HMAC-SHA256");
        assert!(
            matches!(check(&sha256), Err(CookieError::Malformed(m)) if m.contains("HMAC-SHA256"))
        );
    }

    fn with_order(order: &str) -> String {
        published_cookie().replace(r#"["access_token","member_id"]"#, order)
    }

    #[test]
    fn the_signature_order_must_be_the_two_fields_each_once_in_either_order() {
        for order in [
            r#"["access_token","member_id","email"]"#,
            r#"["access_token"]"#,
            r#"["access_token","access_token"]"#,
            r#"["access_token","member_id","member_id"]"#,
            r#"[]"#,
            r#"["access_token",5]"#,
            r#""access_token,member_id""#,
        ] {
            assert!(
                matches!(check(&with_order(order)), Err(CookieError::Malformed(m)) if m.contains("each once")),
                "{order}"
            );
        }
        // The reverse order is a different signed string: it parses, and is checked as such.
        assert!(matches!(
            check(&with_order(r#"["member_id","access_token"]"#)),
            Err(CookieError::InvalidSignature(_))
        ));
    }

    #[test]
    fn a_member_id_cut_across_an_extra_field_does_not_verify() {
        // "vvUNSej4" + "7H" signs the same bytes as the published "vvUNSej47H".
        let forged = published_cookie()
            .replace(MEMBER, "vvUNSej4")
            .replace(
                r#"["access_token","member_id"]"#,
                r#"["access_token","member_id","zz"]"#,
            )
            .replace(
                r#""signature_version":1"#,
                r#""signature_version":1,"zz":"7H""#,
            );
        assert!(matches!(check(&forged), Err(CookieError::Malformed(_))));
    }

    #[test]
    fn names_from_the_request_are_escaped_in_messages() {
        let order = r#"["access_token\nINFO forged line","member_id"]"#;
        let Err(CookieError::Malformed(message)) = check(&with_order(order)) else {
            panic!("refused");
        };
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains(r"\nINFO forged line"), "{message}");
    }

    #[test]
    fn broken_encoding_non_json_arrays_and_wrong_shapes_are_malformed() {
        for raw in [
            "%7B%zz",
            "not-json",
            "%5B1%2C2%5D",
            "%7B%7D",
            "%7B%22access_token%22%3A5%7D",
            "%FF%FE",
        ] {
            assert!(
                matches!(JsapiCookie::parse(raw), Err(CookieError::Malformed(_))),
                "{raw}"
            );
        }
        assert!(matches!(
            JsapiCookie::parse(&"a".repeat(MAX_COOKIE_LEN + 1)),
            Err(CookieError::Malformed(_))
        ));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let headers = ["a=1; linkedin_oauth_KEY=%7B%7D", "b=2"];
        assert_eq!(find_cookie(headers, "linkedin_oauth_KEY"), Some("%7B%7D"));
        assert_eq!(find_cookie(headers, "linkedin_oauth_OTHER"), None);
        assert_eq!(cookie_name("KEY"), "linkedin_oauth_KEY");
    }

    #[test]
    fn a_percent_without_two_hex_digits_is_refused_by_the_decoder() {
        for raw in ["%", "a%", "%4", "%4g", "%g4", "ab%+1", "%%41", "%-1"] {
            assert_eq!(percent_decode_strict(raw), None, "{raw}");
        }
        assert_eq!(percent_decode_strict("a+b%2Bc%7e").unwrap(), b"a+b+c~");
    }

    proptest! {
        /// Wherever every `%` starts an escape, the one-pass decoder agrees with the crate's.
        #[test]
        fn the_strict_decoder_agrees_with_percent_encoding(raw in "([^%]{0,8}(%[0-9a-fA-F]{2})?){0,40}") {
            let expected: Vec<u8> = percent_encoding::percent_decode_str(&raw).collect();
            prop_assert_eq!(percent_decode_strict(&raw), Some(expected));
        }

        #[test]
        fn arbitrary_strings_never_panic(raw in ".{0,600}") {
            if let Ok(cookie) = JsapiCookie::parse(&raw) {
                let _ = cookie.verify(SECRET.as_bytes());
            }
        }

        #[test]
        fn arbitrary_bytes_percent_encoded_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let raw: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            if let Ok(cookie) = JsapiCookie::parse(&raw) {
                let _ = cookie.verify(SECRET.as_bytes());
            }
        }

        #[test]
        fn json_shaped_mutations_never_panic(order in proptest::collection::vec("[a-z_]{0,12}", 0..4), version in any::<i64>(), token in ".{0,40}") {
            let json = serde_json::json!({
                "signature_method": "HMAC-SHA1", "signature_order": order,
                "access_token": token, "member_id": MEMBER, "signature": SIGNATURE,
                "signature_version": version,
            });
            if let Ok(cookie) = JsapiCookie::parse(&encode(&json.to_string())) {
                let _ = cookie.verify(SECRET.as_bytes());
            }
        }
    }
}
