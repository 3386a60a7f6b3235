//! Content-Security-Policy sources, shared by the server's pages and the sandbox's consent
//! page (which names the registered redirect URI's origin in `form-action`).

/// The origin of an absolute `url` as a further CSP source (with its leading space); nothing
/// for a relative URL, which `'self'` covers.
pub(crate) fn csp_source(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|url| url.origin().ascii_serialization())
        .filter(|origin| origin != "null")
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default()
}
