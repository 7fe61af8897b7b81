//! Transfer errors and their classification (DESIGN §5 "Errors").

use std::io;
use std::time::Duration;

use crate::model::{now_ms, ErrorContext, JobErrorRecord};

/// Why a file's transfer stopped.
#[derive(Debug, Clone)]
pub struct TransferError {
    pub context: ErrorContext,
    pub code: String,
    pub message: String,
    /// Transient errors are retried; the others put the job in `error`.
    pub transient: bool,
    /// The server asked to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl TransferError {
    pub fn transient(context: ErrorContext, code: &str, message: impl Into<String>) -> Self {
        TransferError {
            context,
            code: code.into(),
            message: message.into(),
            transient: true,
            retry_after: None,
        }
    }

    pub fn fatal(context: ErrorContext, code: &str, message: impl Into<String>) -> Self {
        TransferError {
            context,
            code: code.into(),
            message: message.into(),
            transient: false,
            retry_after: None,
        }
    }

    /// An I/O error on the local part or destination file. ENOSPC and EDQUOT are transient
    /// (space may be freed); the rest (permissions, a symlink in the way, …) are fatal.
    pub fn local_io(what: &str, path: &std::path::Path, e: &io::Error) -> Self {
        let code = match e.raw_os_error() {
            Some(libc::ENOSPC) => "enospc",
            Some(libc::EDQUOT) => "edquot",
            Some(libc::EACCES) | Some(libc::EPERM) => "permission_denied",
            Some(libc::ELOOP) => "symlink_refused",
            Some(libc::ENOENT) => "not_found",
            Some(libc::EISDIR) => "is_a_directory",
            _ => "io",
        };
        let transient = matches!(code, "enospc" | "edquot");
        let hint = match code {
            "enospc" | "edquot" => "; free some space, ferry retries on its own",
            "symlink_refused" => "; ferry does not write through symbolic links",
            "permission_denied" => "; choose a destination you can write",
            _ => "",
        };
        TransferError {
            context: ErrorContext::LocalFile,
            code: code.into(),
            message: format!("{what} {}: {e}{hint}", path.display()),
            transient,
            retry_after: None,
        }
    }

    /// The error record kept with the job.
    pub fn record(&self, file_index: Option<u32>) -> JobErrorRecord {
        JobErrorRecord {
            context: self.context,
            code: self.code.clone(),
            message: self.message.clone(),
            file_index,
            time_ms: now_ms(),
        }
    }
}

/// Classifies an HTTP status that is not a success: 408, 429 and 5xx are transient.
pub fn from_status(status: u16, url: &str, retry_after: Option<Duration>) -> TransferError {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let transient = status == 408 || status == 429 || (500..600).contains(&status);
    let hint = match status {
        404 | 410 => ": check the URL",
        401 | 403 => ": the server refuses access",
        _ if transient => ": ferry will retry",
        _ => "",
    };
    TransferError {
        context: ErrorContext::RemoteFile,
        code: format!("http_{status}"),
        message: format!("server answered {status} {reason} for {url}{hint}"),
        transient,
        retry_after,
    }
}

/// The largest response head the HTTP client reads (hyper's default buffer limit).
pub const MAX_RESPONSE_HEAD: usize = 8192 + 4096 * 100;

/// Classifies a request/connection failure; network trouble is transient.
pub fn from_reqwest(e: &reqwest::Error, url: &str) -> TransferError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_redirect() {
        return TransferError::fatal(
            ErrorContext::RemoteFile,
            "too_many_redirects",
            format!("{url}: {detail}"),
        );
    }
    if e.is_builder() {
        return TransferError::fatal(
            ErrorContext::RemoteFile,
            "bad_url",
            format!("{url}: {detail}"),
        );
    }
    let lower = detail.to_ascii_lowercase();
    if lower.contains("message head is too large") {
        // hyper's limit (about 400 KiB of status line and headers, or more than 100
        // headers): a server sending that is broken or hostile, retrying does not help.
        return TransferError::fatal(
            ErrorContext::RemoteFile,
            "headers_too_large",
            format!(
                "{url}: the server's response headers are too large (over {} KiB, or more \
                 than 100 headers); ferry refuses them",
                MAX_RESPONSE_HEAD / 1024
            ),
        );
    }
    if lower.contains("certificate") || lower.contains("invalid peer") {
        return TransferError::fatal(
            ErrorContext::Transport,
            "tls_certificate",
            format!("TLS certificate check failed for {url}: {detail}"),
        );
    }
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "connection_cut"
    } else {
        "network"
    };
    TransferError::transient(ErrorContext::Transport, code, format!("{url}: {detail}"))
}

/// Parses `Retry-After` (seconds or an HTTP date).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(from_status(503, "u", None).transient);
        assert!(from_status(429, "u", None).transient);
        assert!(from_status(408, "u", None).transient);
        assert!(!from_status(404, "u", None).transient);
        assert_eq!(from_status(404, "u", None).code, "http_404");
        assert!(!from_status(403, "u", None).transient);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn enospc_is_transient() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        let t = TransferError::local_io("writing", std::path::Path::new("/x"), &e);
        assert!(t.transient);
        assert_eq!(t.code, "enospc");
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert!(!TransferError::local_io("writing", std::path::Path::new("/x"), &e).transient);
    }
}
