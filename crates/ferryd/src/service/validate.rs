//! Checks on what clients send: URLs, local paths, names, checksums.

use super::{ErrorReason, ServiceError};
use crate::engine::SCHEMES;

/// Longest display name or description accepted.
pub const MAX_TEXT: usize = 4096;

/// A remote URL ferry can transfer from: http, https or file, well formed.
pub fn remote_url(url: &str) -> Result<String, ServiceError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        ServiceError::InvalidArgument(format!(
            "'{url}' is not a valid URL ({e}); give a full URL such as https://host/path"
        ))
    })?;
    let scheme = parsed.scheme();
    if !SCHEMES.contains(&scheme) {
        return Err(ServiceError::InvalidArgument(format!(
            "unsupported URL scheme '{scheme}' in '{url}': ferry transfers {}",
            SCHEMES.join(", ")
        )));
    }
    if scheme == "file" {
        let Ok(path) = parsed.to_file_path() else {
            return Err(ServiceError::InvalidArgument(format!(
                "'{url}' is not a local file URL: use file:///absolute/path"
            )));
        };
        if names_a_process_descriptor(&path) {
            return Err(ServiceError::InvalidArgument(format!(
                "'{url}' names a process's own descriptors or folders (/proc, /dev/fd, \
                 /dev/std*), not a file: give the file's own path"
            )));
        }
    }
    if scheme != "file" && parsed.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::InvalidArgument(format!(
            "'{url}' has no host"
        )));
    }
    Ok(parsed.to_string())
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

/// A display name or description.
pub fn text(what: &str, value: &str) -> Result<String, ServiceError> {
    if value.len() > MAX_TEXT {
        return Err(ServiceError::InvalidArgument(format!(
            "{what} is too long ({} bytes, at most {MAX_TEXT})",
            value.len()
        )));
    }
    if value.chars().any(|c| c == '\0') {
        return Err(ServiceError::InvalidArgument(format!(
            "{what} contains a NUL byte"
        )));
    }
    Ok(value.to_string())
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
        assert!(remote_url("https://example.com/a").is_ok());
        assert!(remote_url("file:///etc/hostname").is_ok());
        assert!(remote_url("ftp://example.com/a").is_err());
        assert!(remote_url("not a url").is_err());
        assert!(remote_url("http://").is_err());
        assert!(remote_url("https://exa mple.com/").is_err());
        for magic in [
            "file:///proc/self/fd/7",
            "file:///proc/1234/fd/3",
            "file:///proc/self/cwd/secret",
            "file:///proc/self/root/home/a/secret",
            "file:///dev/fd/5",
            "file:///dev/stdin",
            "file:///tmp/../proc/self/environ",
        ] {
            let e = remote_url(magic).unwrap_err().to_string();
            assert!(e.contains("/proc"), "{magic}: {e}");
        }
        assert!(remote_url("file:///procfiles/a").is_ok());
        assert!(remote_url("file:///dev/null").is_ok());
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

/// A custom header `Name: value`: a token name, no CR/LF, not a hop-by-hop header.
pub fn header(line: &str) -> Result<(String, String), ServiceError> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(ServiceError::InvalidArgument(format!(
            "header '{line}' is not of the form 'Name: value'"
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
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ServiceError::InvalidArgument(format!(
            "the value of header '{name}' contains CR, LF or NUL"
        )));
    }
    if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ServiceError::InvalidArgument(format!(
            "header '{name}' is managed by ferry or hop-by-hop and cannot be set"
        )));
    }
    Ok((name.to_string(), value.to_string()))
}

/// A proxy setting: `system`, `none`, or an http/https/socks URL.
pub fn proxy(text: &str) -> Result<crate::model::ProxySetting, ServiceError> {
    use crate::model::ProxySetting;
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "system" => Ok(ProxySetting::System),
        "none" | "direct" => Ok(ProxySetting::None),
        _ => {
            let u = url::Url::parse(text.trim()).map_err(|e| {
                ServiceError::InvalidArgument(format!(
                    "proxy '{text}' is not a URL ({e}); use none, system or http://host:port"
                ))
            })?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(ServiceError::InvalidArgument(format!(
                    "proxy scheme '{}' is not supported (http or https)",
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
            header("X-Token: abc").unwrap(),
            ("X-Token".into(), "abc".into())
        );
        assert!(header("X-Bad: a\r\nInjected: 1").is_err());
        assert!(header("Connection: close").is_err());
        assert!(header("no colon").is_err());
        assert!(header("Bad Name: x").is_err());
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
            if let Ok(u) = remote_url(&s) {
                let scheme = u.split(':').next().unwrap();
                prop_assert!(crate::engine::SCHEMES.contains(&scheme));
            }
            if let Ok((name, value)) = header(&s) {
                prop_assert!(!name.is_empty());
                prop_assert!(!value.contains('\r') && !value.contains('\n') && !value.contains('\0'));
                prop_assert!(!FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
            }
            if let Ok(d) = sha256(&s) {
                prop_assert_eq!(d.len(), 64);
            }
            let _ = text("name", &s);
            let _ = job_id(&s);
            let _ = proxy(&s);
        }
    }
}
