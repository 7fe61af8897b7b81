//! Checks on what clients send: URLs, local paths, names, checksums, and no control
//! characters in any text ferry shows or logs.

use super::{ErrorReason, ServiceError};
use crate::engine::SCHEMES;
use crate::model::{describe_char, first_control_char, mask_url};

/// Longest display name or description accepted.
pub const MAX_TEXT: usize = 4096;

/// Refuses `value` of request field `field` (as the API names it: `display_name`,
/// `files[2].local_path`, `handler.argv[0]`) when it holds a control character
/// ([`crate::model::is_control_char`]): names, descriptions, paths, URLs and commands are
/// shown in listings and logs, where a line feed would forge a line and an escape sequence
/// would drive the terminal.
pub fn no_control_chars(field: &str, value: &str) -> Result<(), ServiceError> {
    match first_control_char(value) {
        None => Ok(()),
        Some((position, c)) => Err(ServiceError::InvalidArgument(format!(
            "{field} has a control character, {}, at position {position} (counting \
             characters from 0): control characters (tab, line feed, escape, DEL, C1, \
             bidirectional controls) are refused in names, descriptions, paths, URLs and \
             commands; remove it",
            describe_char(c)
        ))),
    }
}

/// A remote URL ferry can transfer from: http, https or file, well formed, without
/// control characters (nor in the path a `file:` URL names); `field` names it in a refusal.
pub fn remote_url(field: &str, url: &str) -> Result<String, ServiceError> {
    no_control_chars(field, url)?;
    // Refusals quote the URL without the secret of its userinfo.
    let shown = mask_url(url);
    let parsed = url::Url::parse(url).map_err(|e| {
        ServiceError::InvalidArgument(format!(
            "'{shown}' is not a valid URL ({e}); give a full URL such as https://host/path"
        ))
    })?;
    let scheme = parsed.scheme();
    if !SCHEMES.contains(&scheme) {
        return Err(ServiceError::InvalidArgument(format!(
            "unsupported URL scheme '{scheme}' in '{shown}': ferry transfers {}",
            SCHEMES.join(", ")
        )));
    }
    if scheme == "file" {
        let Ok(path) = parsed.to_file_path() else {
            return Err(ServiceError::InvalidArgument(format!(
                "'{shown}' is not a local file URL: use file:///absolute/path"
            )));
        };
        // `%0A` is no control character in the URL, but is one in the path it names.
        no_control_chars(&format!("the path of {field}"), &path.to_string_lossy())?;
        if names_a_process_descriptor(&path) {
            return Err(ServiceError::InvalidArgument(format!(
                "'{shown}' names a process's own descriptors or folders (/proc, /dev/fd, \
                 /dev/std*), not a file: give the file's own path"
            )));
        }
    }
    if scheme != "file" && parsed.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::InvalidArgument(format!(
            "'{shown}' has no host"
        )));
    }
    Ok(parsed.to_string())
}

/// [`remote_url`], its refusal starting with `field`: for a URL among several (a file's
/// mirrors, the URLs a prefix replacement makes), so the caller knows which one.
pub fn remote_url_named(field: &str, url: &str) -> Result<String, ServiceError> {
    remote_url(field, url).map_err(|e| match e {
        ServiceError::InvalidArgument(m) if !m.starts_with(field) => {
            ServiceError::InvalidArgument(format!("{field}: {m}"))
        }
        other => other,
    })
}

/// True for the paths of the kernel's process views (`/proc/...`, `/dev/fd/...`,
/// `/dev/stdin` and its kin): read by the daemon, they would name the daemon's own open
/// descriptors, folders and memory rather than a file of the caller. The daemon runs as
/// the caller, so the kernel would show it nothing of another user; these are refused
/// all the same, as a request that cannot mean what it says. (A symlink to them is not
/// caught here; the kernel's own checks cover it.)
fn names_a_process_descriptor(path: &std::path::Path) -> bool {
    use std::path::Path;
    path.starts_with("/proc")
        || path.starts_with("/dev/fd")
        || [
            Path::new("/dev/stdin"),
            Path::new("/dev/stdout"),
            Path::new("/dev/stderr"),
        ]
        .contains(&path)
}

/// A SHA-256 digest as 64 hex digits; returned lower-case.
pub fn sha256(hex_digest: &str) -> Result<String, ServiceError> {
    let d = hex_digest.trim().to_ascii_lowercase();
    if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ServiceError::InvalidArgument(format!(
            "'{hex_digest}' is not a SHA-256 digest (64 hex digits)"
        )));
    }
    Ok(d)
}

/// A display name or description (request field `field`): bounded, no control character.
pub fn text(field: &str, value: &str) -> Result<String, ServiceError> {
    if value.len() > MAX_TEXT {
        return Err(ServiceError::InvalidArgument(format!(
            "{field} is too long ({} bytes, at most {MAX_TEXT})",
            value.len()
        )));
    }
    no_control_chars(field, value)?;
    Ok(value.to_string())
}

/// A local path (request field `field`): no control character. What it names is the
/// owner's to check (`owner/`).
pub fn local_path(field: &str, path: &str) -> Result<(), ServiceError> {
    no_control_chars(field, path)
}

/// A command line (a handler's or a notify command's `argv`, request field `field`): no
/// control character in the program or any argument.
pub fn command(field: &str, argv: &[String]) -> Result<(), ServiceError> {
    argv.iter()
        .enumerate()
        .try_for_each(|(i, arg)| no_control_chars(&format!("{field}[{i}]"), arg))
}

/// A job id.
pub fn job_id(id: &str) -> Result<uuid::Uuid, ServiceError> {
    uuid::Uuid::parse_str(id.trim()).map_err(|_| {
        ServiceError::InvalidArgument(format!(
            "'{id}' is not a job id (a UUID such as 0190f5c2-...; ListJobs lists them)"
        ))
        .marked(ErrorReason::InvalidJobId)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(remote_url("u", "https://example.com/a").is_ok());
        assert!(remote_url("u", "file:///etc/hostname").is_ok());
        assert!(remote_url("u", "ftp://example.com/a").is_err());
        assert!(remote_url("u", "not a url").is_err());
        assert!(remote_url("u", "http://").is_err());
        assert!(remote_url("u", "https://exa mple.com/").is_err());
        for magic in [
            "file:///proc/self/fd/7",
            "file:///proc/1234/fd/3",
            "file:///proc/self/cwd/secret",
            "file:///proc/self/root/home/a/secret",
            "file:///dev/fd/5",
            "file:///dev/stdin",
            "file:///tmp/../proc/self/environ",
        ] {
            let e = remote_url("u", magic).unwrap_err().to_string();
            assert!(e.contains("/proc"), "{magic}: {e}");
        }
        assert!(remote_url("u", "file:///procfiles/a").is_ok());
        assert!(remote_url("u", "file:///dev/null").is_ok());
    }

    #[test]
    fn control_characters_are_refused_naming_the_field_and_the_position() {
        let e = text("display_name", "ok\u{1b}]0;owned\u{7}").unwrap_err();
        assert!(matches!(e, ServiceError::InvalidArgument(_)));
        assert_eq!(
            e.to_string(),
            "display_name has a control character, U+001B (escape), at position 2 (counting \
             characters from 0): control characters (tab, line feed, escape, DEL, C1, \
             bidirectional controls) are refused in names, descriptions, paths, URLs and \
             commands; remove it"
        );
        assert!(text("description", "two\nlines").is_err());
        assert!(text("description", "a\ttab").is_err());
        assert!(text("description", "NUL\0").is_err());
        assert!(text("description", "C1 \u{9b}31m").is_err());
        assert!(text("description", "\u{202e}txt.exe").is_err());
        assert_eq!(
            text("description", "Ünïcode, emoji 🚀, spaces").unwrap(),
            "Ünïcode, emoji 🚀, spaces"
        );

        let e = local_path("files[3].local_path", "/tmp/a\nb")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "files[3].local_path has a control character, U+000A (line feed), at position 6"
            ),
            "{e}"
        );
        assert!(local_path("reply_file", "/tmp/plain name").is_ok());

        let argv = ["/bin/h".to_string(), "ok".into(), "x\ry".into()];
        let e = command("handler.argv", &argv).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "handler.argv[2] has a control character, U+000D (carriage return), at position 1"
            ),
            "{e}"
        );
        assert!(command("notify_command", &argv[..2]).is_ok());

        // In a URL as sent, and in the path a file: URL names (percent-encoded there).
        let e = remote_url("files[0].remote_url", "https://h/a\tb")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("files[0].remote_url has a control character, U+0009 (tab)"),
            "{e}"
        );
        let e = remote_url("files[0].remote_url", "file:///tmp/a%0Ab")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the path of files[0].remote_url has a control character, U+000A"),
            "{e}"
        );
        assert!(remote_url("files[0].remote_url", "https://h/a%0Ab").is_ok());
    }

    #[test]
    fn digests() {
        assert!(sha256(&"a".repeat(64)).is_ok());
        assert!(sha256("abc").is_err());
        assert!(sha256(&"g".repeat(64)).is_err());
    }
}

/// Headers ferry sets itself or that only a hop may carry: refused as custom headers.
const FORBIDDEN_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "range",
    "if-range",
];

/// A custom header `Name: value` (request field `field`): a token name, no control
/// character (CR and LF would inject headers), not a hop-by-hop header. A refusal names
/// the header, never its value (which may be a secret).
pub fn header(field: &str, line: &str) -> Result<(String, String), ServiceError> {
    no_control_chars(field, line)?;
    let Some((name, value)) = line.split_once(':') else {
        return Err(ServiceError::InvalidArgument(format!(
            "{field} is not of the form 'Name: value' (it has no ':')"
        )));
    };
    let name = name.trim();
    let value = value.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(ServiceError::InvalidArgument(format!(
            "header name '{name}' is not a valid HTTP token"
        )));
    }
    if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ServiceError::InvalidArgument(format!(
            "header '{name}' is managed by ferry or hop-by-hop and cannot be set"
        )));
    }
    Ok((name.to_string(), value.to_string()))
}

/// The most characters of an HTTP method a job may set.
pub const MAX_HTTP_METHOD_LEN: usize = 32;

/// A job's HTTP method (BITS's `SetHttpMethod`): "" (the default), or an RFC 9110 token
/// of at most [`MAX_HTTP_METHOD_LEN`] characters other than `CONNECT` (which opens a
/// tunnel, not a transfer). Methods are case-sensitive and kept as given.
pub fn http_method(method: &str) -> Result<(), ServiceError> {
    if method.is_empty() {
        return Ok(());
    }
    if method.len() > MAX_HTTP_METHOD_LEN
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(ServiceError::InvalidArgument(format!(
            "http_method '{}' is not an HTTP method: a token of letters, digits and \
             !#$%&'*+-.^_`|~, at most {MAX_HTTP_METHOD_LEN} characters, such as POST \
             (\"\" restores the default)",
            crate::model::escape_control_chars(method)
        )));
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(ServiceError::InvalidArgument(
            "http_method CONNECT opens a tunnel, it transfers nothing: use GET, POST, PUT \
             or another method"
                .into(),
        ));
    }
    Ok(())
}

/// The proxy schemes a job may use: HTTP proxies (`CONNECT` for https) and SOCKS5, which
/// resolves host names itself (`socks5`) or lets the proxy resolve them (`socks5h`).
pub const PROXY_SCHEMES: [&str; 4] = ["http", "https", "socks5", "socks5h"];

/// A proxy setting: `system`, `none`, or an http, https, socks5 or socks5h URL (a refusal
/// shows it with its password masked).
pub fn proxy(text: &str) -> Result<crate::model::ProxySetting, ServiceError> {
    use crate::model::ProxySetting;
    no_control_chars("proxy", text)?;
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "system" => Ok(ProxySetting::System),
        "none" | "direct" => Ok(ProxySetting::None),
        _ => {
            let u = url::Url::parse(text.trim()).map_err(|e| {
                ServiceError::InvalidArgument(format!(
                    "proxy '{}' is not a URL ({e}); use none, system, http://host:port or \
                     socks5h://host:port",
                    mask_url(text)
                ))
            })?;
            if !PROXY_SCHEMES.contains(&u.scheme()) {
                let hint = match u.scheme() {
                    "socks" | "socks4" | "socks4a" => {
                        "; SOCKS4 is not supported: use the proxy's SOCKS5 side, \
                         socks5h://host:port (names resolved by the proxy) or socks5://host:port"
                    }
                    _ => "",
                };
                return Err(ServiceError::InvalidArgument(format!(
                    "proxy scheme '{}' is not supported: use http://, https://, socks5:// or \
                     socks5h:// (or none, system){hint}",
                    u.scheme()
                )));
            }
            if u.host_str().is_none_or(str::is_empty) {
                return Err(ServiceError::InvalidArgument(format!(
                    "proxy '{}' names no host; use {}://host:port",
                    mask_url(text),
                    u.scheme()
                )));
            }
            Ok(ProxySetting::Url(u.to_string()))
        }
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(
            header("headers[0]", "X-Token: abc").unwrap(),
            ("X-Token".into(), "abc".into())
        );
        let injected = header("headers[1]", "X-Bad: a\r\nInjected: 1")
            .unwrap_err()
            .to_string();
        assert!(
            injected.starts_with(
                "headers[1] has a control character, U+000D (carriage return), at position 8"
            ),
            "{injected}"
        );
        assert!(header("headers[0]", "X-Tab:\tb").is_err());
        assert!(header("headers[0]", "Connection: close").is_err());
        assert!(header("headers[0]", "Bad Name: x").is_err());
        // A refusal never quotes a value, which may be a secret.
        let e = header("headers[0]", "Authorization Bearer s3cret")
            .unwrap_err()
            .to_string();
        assert!(e.contains("headers[0]") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn a_refused_proxy_or_url_is_quoted_without_its_password() {
        let e = proxy("ftp://u:s3cret@proxy:21").unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        let e = proxy("http://u:s3cret@[bad").unwrap_err().to_string();
        assert!(e.contains("u:***@") && !e.contains("s3cret"), "{e}");
        let e = remote_url("files[0].remote_url", "gopher://u:s3cret@host/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("u:***@") && !e.contains("s3cret"), "{e}");
    }

    /// SOCKS5 proxies are accepted (either resolution); what is not says what is.
    #[test]
    fn parity_socks5_proxies_are_accepted_and_a_refusal_says_what_is() {
        use crate::model::ProxySetting;
        for url in ["socks5://127.0.0.1:1080", "SOCKS5H://u:p@proxy.lan:1080"] {
            assert!(
                matches!(proxy(url), Ok(ProxySetting::Url(_))),
                "{url}: {:?}",
                proxy(url)
            );
        }
        let e = proxy("socks4://proxy:1080").unwrap_err().to_string();
        assert!(
            e.contains("socks5h://") && e.contains("SOCKS4 is not supported"),
            "{e}"
        );
        let e = proxy("ftp://proxy:21").unwrap_err().to_string();
        assert!(
            e.contains("'ftp' is not supported: use http://, https://, socks5:// or socks5h://"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ -~\r\n\t\u{0}]{0,300}",
            "(https?|file|ftp)://[a-z0-9.:/%?#@\\[\\] -]{0,80}",
            "/[a-zA-Z0-9._/ -]{0,120}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever a client sends, validation answers (never panics), and what it accepts
        /// keeps the invariants the engine relies on.
        #[test]
        fn request_fields_are_validated_without_panics(s in any_text()) {
            if let Ok(u) = remote_url("u", &s) {
                let scheme = u.split(':').next().unwrap();
                prop_assert!(crate::engine::SCHEMES.contains(&scheme));
            }
            if let Ok((name, value)) = header("h", &s) {
                prop_assert!(!name.is_empty());
                prop_assert!(first_control_char(&name).is_none());
                prop_assert!(first_control_char(&value).is_none());
                prop_assert!(!FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
            }
            if let Ok(d) = sha256(&s) {
                prop_assert_eq!(d.len(), 64);
            }
            if let Ok(t) = text("name", &s) {
                prop_assert!(first_control_char(&t).is_none());
            }
            let _ = job_id(&s);
            if let Ok(crate::model::ProxySetting::Url(u)) = proxy(&s) {
                prop_assert!(first_control_char(&u).is_none());
            }
        }
    }
}

/// Public key pins as curl's `--pinnedpubkey` writes them: `sha256//BASE64` (the SHA-256
/// of a SubjectPublicKeyInfo, 44 characters of standard base64), several separated by
/// `;` or given one by one. Returns them one by one, trimmed.
pub fn public_key_pins(pins: &[String]) -> Result<Vec<String>, ServiceError> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for pin in pins.iter().flat_map(|p| p.split(';')) {
        let pin = pin.trim();
        if pin.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            ServiceError::InvalidArgument(format!(
                "pinned public key '{pin}' {why}: give sha256// and the base64 of the SHA-256 \
                 of the server's SubjectPublicKeyInfo, as curl's --pinnedpubkey takes it \
                 (`openssl x509 -in CERT -pubkey -noout | openssl pkey -pubin -outform der | \
                 openssl dgst -sha256 -binary | base64`)"
            ))
        };
        no_control_chars("pinned_public_keys", pin)?;
        let Some(b64) = pin.strip_prefix("sha256//") else {
            return Err(bad("does not start with sha256//"));
        };
        match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(hash) if hash.len() == 32 => out.push(pin.to_string()),
            Ok(_) => return Err(bad("is not 32 bytes long")),
            Err(_) => return Err(bad("is not base64")),
        }
    }
    if out.len() > 64 {
        return Err(ServiceError::InvalidArgument(format!(
            "{} pinned public keys are too many (at most 64)",
            out.len()
        )));
    }
    Ok(out)
}
