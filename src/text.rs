//! The one cleaner for text from outside the service (a request's values, a provider's
//! words, a framework's message) before it goes into a message, a log line or a page.

/// Text from outside the service (a provider's words, a framework's message) fit for a
/// message and a log line: its first `max` characters, escaped as values from a request are
/// (`"` as `\"`, `\` as `\\`, control characters and invisible ones such as U+2028 and
/// U+202E as `\u{2028}`…), without surrounding quotes. It can neither end a log line nor
/// pose as another field.
pub(crate) fn escape_text(text: &str, max: usize) -> String {
    let cut: String = text.chars().take(max).collect();
    let quoted = format!("{cut:?}");
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_escaped_as_request_values_are() {
        let evil = "a\"b\u{2028}c\u{202e}d\ne\\";
        let escaped = escape_text(evil, 200);
        assert_eq!(escaped, r#"a\"b\u{2028}c\u{202e}d\ne\\"#);
        assert!(
            !escaped
                .chars()
                .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{202e}')
        );
        assert_eq!(escape_text("ünïcode ok", 200), "ünïcode ok");
        assert_eq!(escape_text(&"x".repeat(500), 200).len(), 200);
    }
}
