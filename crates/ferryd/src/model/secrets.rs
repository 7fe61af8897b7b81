//! What of a job's secrets may be shown: header values, credentials, a proxy's password
//! and the userinfo of URLs are write-only (BITS's `MakeCustomHeadersWriteOnly`, always
//! on for credentials). Every output — the wire's `Job` and `File`, the query objects, job
//! error messages, the daemon's log — shows them through these functions; the engine sends
//! the real values.

use std::borrow::Cow;

use super::{JobOptions, ProxySetting};

/// What a secret is shown as.
pub const MASK: &str = "***";

/// Parts of a header's name (compared in lower case) that make its value a secret:
/// `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`,
/// `X-Auth-Token`, `X-Session-Id`, `X-Hub-Signature`…
const SECRET_NAME_PARTS: &[&str] = &[
    "auth",
    "cookie",
    "token",
    "secret",
    "key",
    "password",
    "passwd",
    "credential",
    "session",
    "signature",
];

/// Authentication schemes whose value is a secret under any header name (`X-Upstream:
/// Bearer …`).
const SECRET_VALUE_SCHEMES: &[&str] = &["basic", "bearer", "digest", "negotiate", "token"];

/// True when the value of header `name` is a secret by its name (case-insensitive).
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// True when `value` starts with an authentication scheme and a space.
fn is_credential_value(value: &str) -> bool {
    let Some((scheme, _)) = value.trim_start().split_once(' ') else {
        return false;
    };
    SECRET_VALUE_SCHEMES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
}

/// A header as it may be shown: `Name: value`, or `Name: ***` when the value is a secret
/// (by its name or its scheme) or the job made its headers write-only.
pub fn shown_header(name: &str, value: &str, write_only: bool) -> String {
    if write_only || is_secret_header(name) || is_credential_value(value) {
        format!("{name}: {MASK}")
    } else {
        format!("{name}: {value}")
    }
}

impl JobOptions {
    /// The job's headers as they may be shown, in order (see [`shown_header`]).
    pub fn shown_headers(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(n, v)| shown_header(n, v, self.headers_write_only))
            .collect()
    }
}

impl ProxySetting {
    /// `system`, `none` or the URL with its password masked.
    pub fn shown(&self) -> String {
        match self {
            ProxySetting::Url(u) => mask_url(u).into_owned(),
            other => other.as_text(),
        }
    }
}

/// `url` with the secret of its userinfo masked: `http://user:***@host/`, or
/// `http://***@host/` when the userinfo has no password (a token in the user's place, as
/// some hosts take one). Other URLs (and text that is no URL) are returned as they are.
pub fn mask_url(url: &str) -> Cow<'_, str> {
    mask_urls_in(url)
}

/// `url` without its userinfo (`http://user:pw@host/f` → `http://host/f`): what of a URL
/// may go to someone else (a job taken over by an administrator). Text that is no URL,
/// or a URL without userinfo, is returned as it is.
pub fn secrets_free_url(url: &str) -> String {
    match ::url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `text` with the userinfo of every URL in it masked as [`mask_url`] does: for messages
/// that quote URLs (a job's error, a log line).
pub fn mask_urls_in(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        from = start;
        let Some((end, masked)) = userinfo_at(text, start) else {
            continue;
        };
        out.push_str(&text[copied..start]);
        out.push_str(&masked);
        copied = end;
        from = end;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The userinfo of the authority that starts at byte `start` of `text` (right after
/// `://`), if it has one and it is not already masked: where it ends (its `@`) and what
/// shows in its place. The authority ends at `/`, `?`, `#` or white space (a URL's
/// serialization percent-encodes those in a userinfo); its userinfo runs to its last `@`.
fn userinfo_at(text: &str, start: usize) -> Option<(usize, String)> {
    let rest = &text[start..];
    let authority_len = rest
        .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
        .unwrap_or(rest.len());
    let at = rest[..authority_len].rfind('@')?;
    let userinfo = &rest[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        None => MASK.to_string(),
    };
    (masked != userinfo).then_some((start + at, masked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_like_headers_are_secrets_whatever_their_case() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "COOKIE",
            "Set-Cookie",
            "X-Api-Key",
            "x-apikey",
            "X-Auth-Token",
            "Private-Token",
            "X-Client-Secret",
            "X-Password",
            "X-Session-Id",
            "X-Hub-Signature-256",
            "Ocp-Apim-Subscription-Key",
            "X-Amz-Security-Token",
        ] {
            assert!(is_secret_header(name), "{name}");
        }
        for name in [
            "Accept",
            "User-Agent",
            "X-Trace",
            "Accept-Language",
            "X-Ferry-Test",
        ] {
            assert!(!is_secret_header(name), "{name}");
        }
    }

    #[test]
    fn a_header_shows_its_name_and_a_mask() {
        assert_eq!(
            shown_header("Authorization", "Bearer abc", false),
            "Authorization: ***"
        );
        assert_eq!(shown_header("X-Api-Key", "k-123", false), "X-Api-Key: ***");
        assert_eq!(shown_header("X-Trace", "t-1", false), "X-Trace: t-1");
        // A credential under a name that says nothing.
        assert_eq!(
            shown_header("X-Upstream", "bearer abc", false),
            "X-Upstream: ***"
        );
        assert_eq!(
            shown_header("X-Upstream", "basic YWxp", false),
            "X-Upstream: ***"
        );
        // Write-only: every value.
        assert_eq!(shown_header("X-Trace", "t-1", true), "X-Trace: ***");
    }

    #[test]
    fn job_options_show_masked_headers_in_order() {
        let mut o = JobOptions {
            headers: vec![
                ("Cookie".into(), "sid=1".into()),
                ("Accept".into(), "text/plain".into()),
            ],
            ..JobOptions::default()
        };
        assert_eq!(o.shown_headers(), ["Cookie: ***", "Accept: text/plain"]);
        o.headers_write_only = true;
        assert_eq!(o.shown_headers(), ["Cookie: ***", "Accept: ***"]);
    }

    #[test]
    fn a_proxy_shows_its_user_but_not_its_password() {
        let p = ProxySetting::Url("http://user:pass@proxy:3128".into());
        assert_eq!(p.shown(), "http://user:***@proxy:3128");
        assert_eq!(ProxySetting::System.shown(), "system");
        assert_eq!(ProxySetting::None.shown(), "none");
        let plain = ProxySetting::Url("http://proxy:3128/".into());
        assert_eq!(plain.shown(), "http://proxy:3128/");
    }

    #[test]
    fn url_userinfo_is_masked() {
        for (url, shown) in [
            ("https://user:pass@host/a", "https://user:***@host/a"),
            (
                "https://user:p%40ss@host:8443/a?b#c",
                "https://user:***@host:8443/a?b#c",
            ),
            ("https://tok3n@host/", "https://***@host/"),
            ("https://user:@host/", "https://user:***@host/"),
            ("http://u:p(a)ss@host", "http://u:***@host"),
            ("https://host/a@b", "https://host/a@b"),
            ("https://host/?next=u:p@x", "https://host/?next=u:p@x"),
            ("file:///tmp/a@b", "file:///tmp/a@b"),
            ("https://host/", "https://host/"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(mask_url(url), shown, "{url}");
            // Masking twice changes nothing.
            assert_eq!(mask_url(shown), shown, "{shown}");
        }
        assert!(matches!(mask_url("https://host/"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_url_in_a_message_is_masked() {
        let m = "server answered 401 Unauthorized for https://u:pw@a.example/f: see \
                 (http://v:pw2@b.example) and https://c.example/x";
        assert_eq!(
            mask_urls_in(m),
            "server answered 401 Unauthorized for https://u:***@a.example/f: see \
             (http://v:***@b.example) and https://c.example/x"
        );
        let plain = "no URL here, user@example.org";
        assert!(matches!(mask_urls_in(plain), Cow::Borrowed(_)));
        assert_eq!(mask_urls_in("x://"), "x://");
        assert_eq!(mask_urls_in("a://b:c@d e://f@g"), "a://b:***@d e://***@g");
    }
}
