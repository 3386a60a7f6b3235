//! I/O: the OAuth 1.0a signed calls to LinkedIn (or the sandbox, or any compatible provider).
//!
//! Two calls ([`LinkedInClient::exchange_token`] and [`LinkedInClient::profile`]) over the
//! shared [`Transport`], which maps every upstream answer to an [`UpstreamError`], and the
//! app's half of every member call's signature, which the member's client
//! ([`api`](super::api)) signs with. Signing is `oauth1-request`'s; deciding what the caller
//! sees is `error`'s.

use std::fmt;
use std::time::Duration;

use oauth1_request::signature_method::HmacSha1;
use oauth1_request::{Credentials, Request as OAuthRequest};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use url::Url;

pub(crate) use super::transport::UpstreamError;
use super::transport::{Transport, status_error};
use crate::secret::Secret;
use crate::telemetry::Telemetry;

/// The REST credentials LinkedIn issues for a member.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenCredentials {
    /// `oauth_token`.
    pub token: String,
    /// `oauth_token_secret`.
    pub secret: Secret,
    /// `oauth_expires_in`, in seconds (LinkedIn's is 60 days).
    pub expires_in: u64,
}

impl fmt::Debug for TokenCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCredentials")
            .field("token", &self.token)
            .field("secret", &self.secret)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Where LinkedIn is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct LinkedInEndpoints {
    /// The OAuth 1.0a exchange endpoint.
    pub access_token_url: Url,
    /// The REST base; `/v1/people/~` is appended.
    pub api_url: Url,
    /// The bound on each call.
    pub timeout: Duration,
}

/// The client for the LinkedIn side.
#[derive(Clone)]
pub struct LinkedInClient {
    transport: Transport,
    consumer_key: String,
    consumer_secret: Secret,
    /// Parsed once: reqwest would parse a string again for every call.
    access_token_url: Url,
    profile_url: String,
    /// The REST base, for the member's client ([`super::api`]).
    api_url: Url,
}

impl fmt::Debug for LinkedInClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkedInClient")
            .field("consumer_key", &self.consumer_key)
            .field("access_token_url", &self.access_token_url)
            .field("profile_url", &self.profile_url)
            .finish_non_exhaustive()
    }
}

#[derive(oauth1_request::Request)]
struct ExchangeParams<'a> {
    xoauth_oauth2_access_token: &'a str,
}

#[derive(oauth1_request::Request)]
struct ProfileParams<'a> {
    format: &'a str,
}

impl LinkedInClient {
    /// A client for `endpoints`, signing as the app (`consumer_key`, `consumer_secret`).
    /// `extra_roots` are PEM certificates trusted besides the system's.
    pub fn new(
        endpoints: &LinkedInEndpoints,
        consumer_key: &str,
        consumer_secret: &Secret,
        extra_roots: &[reqwest::Certificate],
    ) -> reqwest::Result<Self> {
        let transport = Transport::new(endpoints.timeout, extra_roots)?;
        let mut api = endpoints.api_url.as_str().trim_end_matches('/').to_owned();
        api.push_str("/v1/people/~");
        Ok(Self {
            transport,
            consumer_key: consumer_key.to_owned(),
            consumer_secret: consumer_secret.clone(),
            access_token_url: endpoints.access_token_url.clone(),
            profile_url: api,
            api_url: endpoints.api_url.clone(),
        })
    }

    /// Times each call in `telemetry`, by endpoint and outcome.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.transport = self.transport.with_telemetry(telemetry);
        self
    }

    /// The HTTPS transport this client calls through, for the other calls to LinkedIn
    /// (OpenID Connect).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Exchanges a JSAPI (OAuth 2) access token for OAuth 1.0a REST credentials: a `POST`
    /// signed with the consumer key and secret (no token), with `xoauth_oauth2_access_token`
    /// in the form body, which is part of the signature.
    pub async fn exchange_token(
        &self,
        access_token: &str,
    ) -> Result<TokenCredentials, UpstreamError> {
        self.transport
            .timed("access_token", self.exchange_once(access_token))
            .await
    }

    async fn exchange_once(&self, access_token: &str) -> Result<TokenCredentials, UpstreamError> {
        let params = ExchangeParams {
            xoauth_oauth2_access_token: access_token,
        };
        let authorization =
            self.authorization("POST", self.access_token_url.as_str(), &params, None);
        let request = self
            .transport
            .http()
            .post(self.access_token_url.clone())
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(oauth1_request::to_form(&params));
        let (status, headers, body) = self.transport.send(request).await?;
        if status != StatusCode::OK {
            return Err(status_error(status, &headers, &body));
        }
        parse_token_reply(&body)
    }

    /// The member's profile: `GET {api}/v1/people/~?format=json`, signed with the token.
    pub async fn profile(
        &self,
        token: &str,
        token_secret: &Secret,
    ) -> Result<serde_json::Value, UpstreamError> {
        self.transport
            .timed("profile", self.profile_once(token, token_secret))
            .await
    }

    async fn profile_once(
        &self,
        token: &str,
        token_secret: &Secret,
    ) -> Result<serde_json::Value, UpstreamError> {
        let params = ProfileParams { format: "json" };
        let authorization = self.authorization(
            "GET",
            &self.profile_url,
            &params,
            Some((token, token_secret.expose())),
        );
        let url = oauth1_request::to_query(self.profile_url.clone(), &params);
        let request = self
            .transport
            .http()
            .get(url)
            .header(AUTHORIZATION, authorization);
        let (status, headers, body) = self.transport.send(request).await?;
        if status != StatusCode::OK {
            return Err(status_error(status, &headers, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|_| UpstreamError::Malformed("the profile is not JSON".into()))
    }

    /// The REST base (`LINKEDIN_API_URL`) the member's calls go to.
    pub(crate) fn api_url(&self) -> &Url {
        &self.api_url
    }

    /// The `Authorization` header of a call to `url` (no query) signed as the app and the
    /// member (`token`, `token_secret`), over `params` (the query's and a form body's).
    pub(crate) fn member_authorization<R: OAuthRequest>(
        &self,
        method: &str,
        url: &str,
        params: &R,
        token: &str,
        token_secret: &Secret,
    ) -> String {
        self.authorization(method, url, params, Some((token, token_secret.expose())))
    }

    fn authorization<R: OAuthRequest>(
        &self,
        method: &str,
        url: &str,
        params: &R,
        token: Option<(&str, &str)>,
    ) -> String {
        let consumer = Credentials::new(self.consumer_key.as_str(), self.consumer_secret.expose());
        sign(
            consumer,
            token.map(|(t, s)| Credentials::new(t, s)),
            method,
            url,
            params,
            None,
        )
    }
}

/// Builds an OAuth 1.0a HMAC-SHA1 `Authorization` header. `fixed` pins the nonce and
/// timestamp (for tests against published examples); otherwise each call gets a fresh nonce
/// and the current time.
pub(crate) fn sign<R: OAuthRequest>(
    consumer: Credentials<&str>,
    token: Option<Credentials<&str>>,
    method: &str,
    url: &str,
    params: &R,
    fixed: Option<(&str, u64)>,
) -> String {
    let mut builder = oauth1_request::Builder::<_, _>::new(consumer, HmacSha1::new());
    builder.token(token);
    if let Some((nonce, timestamp)) = fixed {
        builder
            .nonce(nonce)
            .timestamp(std::num::NonZeroU64::new(timestamp));
    }
    builder.authorize(method, url, params)
}

/// Parses `oauth_token=…&oauth_token_secret=…&oauth_expires_in=…&…`.
pub(crate) fn parse_token_reply(body: &[u8]) -> Result<TokenCredentials, UpstreamError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| UpstreamError::Malformed("the answer is not form-encoded".into()))?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let token = get("oauth_token").filter(|t| !t.is_empty());
    let secret = get("oauth_token_secret").filter(|s| !s.is_empty());
    let (Some(token), Some(secret)) = (token, secret) else {
        return Err(UpstreamError::Malformed(
            "the answer lacks oauth_token or oauth_token_secret".into(),
        ));
    };
    let expires_in = match get("oauth_expires_in") {
        Some(v) => v
            .parse()
            .map_err(|_| UpstreamError::Malformed("oauth_expires_in is not a number".into()))?,
        // LinkedIn's documented lifetime: 60 days.
        None => 5_183_999,
    };
    Ok(TokenCredentials {
        token: token.to_owned(),
        secret: Secret::new(secret),
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(oauth1_request::Request)]
    struct Photos<'a> {
        file: &'a str,
        size: &'a str,
    }

    /// RFC 5849 section 1.2: the client's signed request for the photo, reproduced by the
    /// exact function the client signs with.
    #[test]
    fn reproduces_the_rfc_5849_section_1_2_signature() {
        let header = sign(
            Credentials::new("dpf43f3p2l4k3l03", "kd94hf93k423kf44"),
            Some(Credentials::new("nnch734d00sl2jdk", "pfkkdhi9sl3r4s00")),
            "GET",
            "http://photos.example.net/photos",
            &Photos {
                file: "vacation.jpg",
                size: "original",
            },
            Some(("chapoH", 137_131_202)),
        );
        assert!(
            header.contains(r#"oauth_signature="MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D""#),
            "{header}"
        );
    }

    #[test]
    fn the_exchange_signs_the_body_parameter_and_no_token() {
        let params = ExchangeParams {
            xoauth_oauth2_access_token: "AD2dpVe1",
        };
        let sign_exchange = || {
            sign(
                Credentials::new("key", "secret"),
                None,
                "POST",
                "https://x.example/t",
                &params,
                None,
            )
        };
        let header = sign_exchange();
        assert!(header.starts_with("OAuth "));
        assert!(header.contains("oauth_consumer_key=\"key\""));
        assert!(!header.contains("oauth_token="));
        assert!(!header.contains("xoauth_oauth2_access_token"));
        assert_eq!(
            oauth1_request::to_form(&params),
            "xoauth_oauth2_access_token=AD2dpVe1"
        );
        // Fresh nonce each time.
        assert_ne!(header, sign_exchange());
    }

    #[test]
    fn a_token_reply_parses() {
        let creds = parse_token_reply(
            b"oauth_token=t-1&oauth_token_secret=s-1&oauth_expires_in=5183999&oauth_authorization_expires_in=5183999",
        )
        .unwrap();
        assert_eq!(creds.token, "t-1");
        assert_eq!(creds.secret.expose(), "s-1");
        assert_eq!(creds.expires_in, 5_183_999);
        assert!(!format!("{creds:?}").contains("s-1"));
    }

    #[test]
    fn a_reply_without_token_or_secret_or_not_form_encoded_is_malformed() {
        for body in [
            &b"oauth_token=t"[..],
            b"oauth_problem=x",
            b"",
            b"oauth_token=&oauth_token_secret=",
            b"%%%",
        ] {
            assert!(
                matches!(parse_token_reply(body), Err(UpstreamError::Malformed(_))),
                "{body:?}"
            );
        }
        assert!(matches!(
            parse_token_reply(b"oauth_token=t&oauth_token_secret=s&oauth_expires_in=soon"),
            Err(UpstreamError::Malformed(_))
        ));
    }
}
