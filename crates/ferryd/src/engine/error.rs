//! Transfer errors and their classification (docs/architecture/data-path.md, "Errors and
//! retries").
//!
//! A failure has a typed [`ErrorKind`] (what code decides on), a context (where it
//! happened) and a message for people. Client errors are classified by their types:
//! reqwest's own flags, then the chain of sources (hyper's parse errors, rustls's
//! certificate errors, I/O error kinds), never by the words of a message.

use std::io;
use std::time::Duration;

use crate::model::{now_ms, ErrorContext, ErrorKind, JobErrorRecord};

/// Why a file's transfer stopped.
#[derive(Debug, Clone)]
pub struct TransferError {
    pub context: ErrorContext,
    pub kind: ErrorKind,
    pub message: String,
    /// Transient errors are retried; the others put the job in `error`.
    pub transient: bool,
    /// The server asked to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// For a server certificate that failed its check: the certificate's subject.
    pub certificate_subject: Option<String>,
}

impl TransferError {
    /// A failure of `kind`; whether it is retried follows from the kind.
    pub fn new(context: ErrorContext, kind: ErrorKind, message: impl Into<String>) -> Self {
        TransferError {
            context,
            kind,
            message: message.into(),
            transient: kind.is_transient(),
            retry_after: None,
            certificate_subject: None,
        }
    }

    /// A fault inside the daemon (a task that panicked, …).
    pub fn internal(e: impl std::fmt::Display) -> Self {
        TransferError::new(ErrorContext::Daemon, ErrorKind::Internal, e.to_string())
    }

    /// An I/O error on the local part or destination file. ENOSPC and EDQUOT are transient
    /// (space may be freed); the rest (permissions, a symlink in the way, …) are fatal.
    pub fn local_io(what: &str, path: &std::path::Path, e: &io::Error) -> Self {
        let kind = io_kind(e);
        let hint = match kind {
            ErrorKind::NoSpace | ErrorKind::QuotaExceeded => {
                "; free some space, ferry retries on its own"
            }
            ErrorKind::SymlinkRefused => "; ferry does not write through symbolic links",
            ErrorKind::PermissionDenied => "; choose a destination you can write",
            ErrorKind::TooManyOpenFiles => &open_files_hint(),
            _ => "",
        };
        TransferError::new(
            ErrorContext::LocalFile,
            kind,
            format!("{what} {}: {e}{hint}", path.display()),
        )
    }

    /// The error record kept with the job.
    pub fn record(&self, file_index: Option<u32>) -> JobErrorRecord {
        JobErrorRecord {
            context: self.context,
            code: self.kind.code().into_owned(),
            message: self.message.clone(),
            file_index,
            time_ms: now_ms(),
        }
    }
}

/// What to say when ferryd runs out of file descriptors: its limit, and what to change.
pub fn open_files_hint() -> String {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`.
    let limit = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.to_string()
    } else {
        "unknown".into()
    };
    format!(
        "; ferryd has as many files open as its limit allows (RLIMIT_NOFILE {limit}) and \
         retries on its own; raise the limit (`ulimit -n`, or LimitNOFILE= in its unit) or \
         lower max_concurrent_jobs or files_in_parallel"
    )
}

/// The kind of a local I/O error.
fn io_kind(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => ErrorKind::TooManyOpenFiles,
        Some(libc::ENOSPC) => ErrorKind::NoSpace,
        Some(libc::EDQUOT) => ErrorKind::QuotaExceeded,
        Some(libc::EACCES) | Some(libc::EPERM) => ErrorKind::PermissionDenied,
        Some(libc::ELOOP) => ErrorKind::SymlinkRefused,
        Some(libc::ENOENT) => ErrorKind::NotFound,
        Some(libc::EISDIR) => ErrorKind::IsADirectory,
        _ => ErrorKind::LocalIo,
    }
}

/// Classifies an HTTP status that is not a success: 408, 429 and 5xx are transient.
pub fn from_status(status: u16, url: &str, retry_after: Option<Duration>) -> TransferError {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let kind = ErrorKind::Http(status);
    let hint = match status {
        404 | 410 => ": check the URL",
        401 | 403 => ": the server refuses access",
        _ if kind.is_transient() => ": ferry will retry",
        _ => "",
    };
    TransferError {
        retry_after,
        ..TransferError::new(
            ErrorContext::RemoteFile,
            kind,
            format!("server answered {status} {reason} for {url}{hint}"),
        )
    }
}

/// The largest response head the HTTP client reads (hyper's default buffer limit).
pub const MAX_RESPONSE_HEAD: usize = 8192 + 4096 * 100;

/// Every error in `e`'s chain of sources, `e` first. The chain goes on through the error
/// an `io::Error` wraps (`io::Error::source` would skip it): a TLS failure reaches the
/// client as an `io::Error` wrapping an `io::Error` wrapping rustls's error.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        out.push(err);
        next = match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    out
}

/// What the chain of sources says about a failure, if it names something specific.
fn kind_from_sources(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    for err in chain(e) {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return Some(ErrorKind::HeadersTooLarge);
            }
            if h.is_incomplete_message() || h.is_body_write_aborted() {
                return Some(ErrorKind::ConnectionCut);
            }
        }
        if err
            .downcast_ref::<super::redirect::RedirectRefused>()
            .is_some()
        {
            return Some(ErrorKind::RedirectRefused);
        }
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            if let Some(kind) = tls_policy_kind(t) {
                return Some(kind);
            }
            if matches!(
                t,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::InvalidCertRevocationList(_)
            ) {
                return Some(ErrorKind::TlsCertificate);
            }
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return Some(ErrorKind::Timeout),
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => return Some(ErrorKind::ConnectionCut),
                io::ErrorKind::ConnectionRefused => return Some(ErrorKind::Connect),
                io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
                    return Some(ErrorKind::NetworkUnreachable)
                }
                _ => {}
            }
        }
    }
    None
}

/// The kinds of a TLS failure the job's TLS policy explains: a pinned key, a revoked
/// certificate, a client certificate the server wanted or refused.
fn tls_policy_kind(e: &rustls::Error) -> Option<ErrorKind> {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => {
            Some(ErrorKind::CertificateRevoked)
        }
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))
            if o.0.downcast_ref::<super::tls::PinMismatch>().is_some() =>
        {
            Some(ErrorKind::PinnedKeyMismatch)
        }
        rustls::Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::AccessDenied,
        ) => Some(ErrorKind::ClientCertificateRefused),
        _ => None,
    }
}

/// The subject of the server certificate rustls refused in this failed request, as the
/// certificate verifier noted it (`engine/tls.rs`) under the name of the request's host
/// (after redirects).
fn refused_certificate_subject(e: &reqwest::Error) -> Option<String> {
    let refused = chain(e).into_iter().any(|err| {
        matches!(
            err.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        )
    });
    if !refused {
        return None;
    }
    let host = match e.url()?.host()? {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => a.to_string(),
    };
    super::tls::presented_subject(&host)
}

/// The refused redirect in `e`'s chain, said as people read it.
fn redirect_refused(e: &reqwest::Error) -> Option<String> {
    chain(e).into_iter().find_map(|err| {
        err.downcast_ref::<super::redirect::RedirectRefused>()
            .map(|r| r.to_string())
    })
}

/// The pin mismatch in `e`'s chain, said as people read it.
fn pin_mismatch(e: &reqwest::Error) -> Option<String> {
    chain(e)
        .into_iter()
        .find_map(|err| match err.downcast_ref::<rustls::Error>() {
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
                o.0.downcast_ref::<super::tls::PinMismatch>()
                    .map(|p| p.to_string())
            }
            _ => None,
        })
}

/// Classifies a request/connection failure; network trouble is transient.
pub fn from_reqwest(e: &reqwest::Error, url: &str) -> TransferError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    let from_sources = kind_from_sources(e);
    let kind = if from_sources == Some(ErrorKind::RedirectRefused) {
        ErrorKind::RedirectRefused
    } else if e.is_redirect() {
        ErrorKind::TooManyRedirects
    } else if e.is_builder() {
        ErrorKind::BadUrl
    } else {
        match from_sources {
            Some(k) => k,
            None if e.is_timeout() => ErrorKind::Timeout,
            None if e.is_connect() => ErrorKind::Connect,
            None if e.is_body() || e.is_decode() => ErrorKind::ConnectionCut,
            None => ErrorKind::Network,
        }
    };
    match kind {
        // hyper's limit (about 400 KiB of status line and headers, or more than 100
        // headers): a server sending that is broken or hostile, retrying does not help.
        ErrorKind::HeadersTooLarge => TransferError::new(
            ErrorContext::RemoteFile,
            kind,
            format!(
                "{url}: the server's response headers are too large (over {} KiB, or more \
                 than 100 headers); ferry refuses them",
                MAX_RESPONSE_HEAD / 1024
            ),
        ),
        ErrorKind::TlsCertificate => {
            let mut err = TransferError::new(
                ErrorContext::Transport,
                kind,
                format!("TLS certificate check failed for {url}: {detail}"),
            );
            err.certificate_subject = refused_certificate_subject(e);
            err
        }
        ErrorKind::TooManyRedirects | ErrorKind::BadUrl => {
            TransferError::new(ErrorContext::RemoteFile, kind, format!("{url}: {detail}"))
        }
        ErrorKind::RedirectRefused => TransferError::new(
            ErrorContext::RemoteFile,
            kind,
            format!(
                "{url}: {}; the job's redirect_policy (SetJobProperties) allow_silent or \
                 allow_report follows it",
                redirect_refused(e).unwrap_or(detail)
            ),
        ),
        ErrorKind::PinnedKeyMismatch => TransferError::new(
            ErrorContext::Transport,
            kind,
            format!(
                "TLS: {url}: {} (pinned_public_keys); if the server's key changed on \
                 purpose, pin the new one",
                pin_mismatch(e).unwrap_or(detail)
            ),
        ),
        ErrorKind::CertificateRevoked => TransferError::new(
            ErrorContext::Transport,
            kind,
            format!(
                "TLS: the server of {url} presented a certificate that the job's revocation \
                 list (crl_file) lists as revoked"
            ),
        ),
        ErrorKind::ClientCertificateRefused => TransferError::new(
            ErrorContext::Transport,
            kind,
            format!(
                "TLS: the server of {url} requires a client certificate and refused the \
                 connection ({detail}); give the job one it accepts (client_certificate \
                 and client_key, SetJobProperties)"
            ),
        ),
        _ => TransferError::new(ErrorContext::Transport, kind, format!("{url}: {detail}")),
    }
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
        assert_eq!(from_status(404, "u", None).kind, ErrorKind::Http(404));
        assert_eq!(from_status(404, "u", None).record(None).code, "http_404");
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
        assert_eq!(t.kind, ErrorKind::NoSpace);
        assert_eq!(t.record(None).code, "enospc");
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert!(!TransferError::local_io("writing", std::path::Path::new("/x"), &e).transient);
    }

    #[test]
    fn sources_inside_io_errors_are_found() {
        // A TLS failure reaches the client as an io::Error wrapping rustls's error.
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, tls);
        assert_eq!(kind_from_sources(&wrapped), Some(ErrorKind::TlsCertificate));
        // As the HTTP client reports it: an io::Error around an io::Error around rustls's.
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, tls));
        assert_eq!(kind_from_sources(&nested), Some(ErrorKind::TlsCertificate));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(kind_from_sources(&reset), Some(ErrorKind::ConnectionCut));
        let other = io::Error::other("something else");
        assert_eq!(kind_from_sources(&other), None);
    }
}
