//! PURE: a short description of the browser a member signed in with ("Chrome on Linux"), from
//! the `User-Agent` of the sign-in request, for the member's list of their own sessions. It
//! names a browser family and an operating system from a fixed vocabulary, never a version
//! and never the header's own text, so that nothing a client sends reaches a page or the
//! store as it was sent (the one exception, a non-browser client's product name, is kept to
//! a few letters and digits).

/// What a session whose sign-in sent no recognisable `User-Agent` is shown as.
pub(crate) const UNKNOWN: &str = "Unknown browser";

/// The longest product name kept for a client that is not a browser (`curl`, say).
const MAX_PRODUCT: usize = 24;

/// Browser families, the first whose marker the header holds. Order matters: Edge, Opera and
/// Samsung Internet also say `Chrome/` and `Safari/`; Chrome also says `Safari/`.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("Edge/", "Edge"),
    ("OPR/", "Opera"),
    ("Opera", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("HeadlessChrome/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
];

/// Operating systems, the first whose marker the header holds (Android says `Linux`, iOS
/// says `like Mac OS X`).
const SYSTEMS: &[(&str, &str)] = &[
    ("Windows", "Windows"),
    ("iPhone", "iOS"),
    ("iPod", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
    ("X11", "Linux"),
    ("FreeBSD", "FreeBSD"),
];

/// "Chrome on Linux", "Safari on iOS", "Firefox": the browser and system a `User-Agent`
/// names; a client that is not a browser by its product name ("curl"); [`UNKNOWN`] when
/// there is nothing to go by.
pub(crate) fn describe(user_agent: Option<&str>) -> String {
    let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return UNKNOWN.to_owned();
    };
    let browser = BROWSERS
        .iter()
        .find(|(marker, _)| agent.contains(marker))
        .map(|(_, name)| *name)
        // Safari without `Version/` is an in-app view; still WebKit's Safari to a person.
        .or_else(|| {
            (agent.contains("Safari/") || agent.contains("AppleWebKit/")).then_some("Safari")
        });
    let system = SYSTEMS
        .iter()
        .find(|(marker, _)| agent.contains(marker))
        .map(|(_, name)| *name);
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.to_owned(),
        (None, Some(system)) => format!("A browser on {system}"),
        (None, None) => product(agent).unwrap_or_else(|| UNKNOWN.to_owned()),
    }
}

/// The product name a non-browser client leads with (`curl/8.5.0` → `curl`), when it is a
/// short word of letters, digits, `-`, `_` or `.`.
fn product(agent: &str) -> Option<String> {
    let name = agent.split(['/', ' ']).next()?;
    let plain = !name.is_empty()
        && name.len() <= MAX_PRODUCT
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "Mozilla";
    plain.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_as_they_announce_themselves() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
                "Chrome on iOS",
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
                "Safari on iPadOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
                "Samsung Internet on Android",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
                "Opera on Windows",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on ChromeOS",
            ),
        ];
        for (agent, expected) in cases {
            assert_eq!(describe(Some(agent)), expected, "{agent}");
        }
    }

    #[test]
    fn other_clients_by_their_product_name_and_nothing_else() {
        assert_eq!(describe(Some("curl/8.5.0")), "curl");
        assert_eq!(describe(Some("python-requests/2.32.3")), "python-requests");
        assert_eq!(describe(Some("Mozilla/5.0")), UNKNOWN);
        assert_eq!(describe(None), UNKNOWN);
        assert_eq!(describe(Some("   ")), UNKNOWN);
        // Markup, or a name too long, is never kept.
        assert_eq!(describe(Some("<script>alert(1)</script>")), UNKNOWN);
        assert_eq!(describe(Some(&"a".repeat(200))), UNKNOWN);
        assert_eq!(
            describe(Some("Mozilla/5.0 (Windows NT 10.0)")),
            "A browser on Windows"
        );
    }
}
