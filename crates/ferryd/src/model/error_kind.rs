//! The kinds of transfer failure, typed. Code decides on these; users and the store see
//! their short codes (`http_404`, `enospc`, `tls_certificate`, …), which never change.

use std::borrow::Cow;
use std::fmt;

macro_rules! error_kinds {
    ($($(#[$m:meta])* $variant:ident => $code:literal),+ $(,)?) => {
        /// Why a transfer (or a job) failed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            /// The server answered with this HTTP status (not a success).
            Http(u16),
            $($(#[$m])* $variant),+
        }

        impl ErrorKind {
            /// The short code users, the store and the wire see.
            pub fn code(self) -> Cow<'static, str> {
                match self {
                    ErrorKind::Http(status) => Cow::Owned(format!("http_{status}")),
                    $(ErrorKind::$variant => Cow::Borrowed($code)),+
                }
            }

            /// The kind a stored code stands for, if it is one of these.
            pub fn from_code(code: &str) -> Option<ErrorKind> {
                if let Some(status) = code.strip_prefix("http_") {
                    return status.parse().ok().map(ErrorKind::Http);
                }
                match code {
                    $($code => Some(ErrorKind::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

error_kinds! {
    // The local file system.
    /// No space left on the device (transient: space may be freed).
    NoSpace => "enospc",
    /// Disk quota exceeded (transient).
    QuotaExceeded => "edquot",
    /// The owner may not read or write there.
    PermissionDenied => "permission_denied",
    /// A symbolic link stood where ferry writes; it is never followed.
    SymlinkRefused => "symlink_refused",
    /// A file or folder does not exist.
    NotFound => "not_found",
    /// A folder stands where a file was expected.
    IsADirectory => "is_a_directory",
    /// Any other local I/O error.
    LocalIo => "io",
    /// ferryd has as many files open as its limit allows (EMFILE, ENFILE): transient.
    TooManyOpenFiles => "emfile",
    /// `complete` could not move a transferred file over its destination.
    CommitFailed => "commit_failed",
    /// A `file://` source that is not a regular file.
    NotAFile => "not_a_file",
    /// A `file://` source got shorter while it was copied.
    SourceShrank => "source_shrank",
    /// An upload's source changed after the job was resumed.
    SourceChanged => "source_changed",
    // The remote file and its server.
    /// Redirects went on past the limit.
    TooManyRedirects => "too_many_redirects",
    /// The URL cannot be requested.
    BadUrl => "bad_url",
    /// The scheme is not one ferry transfers.
    UnsupportedScheme => "unsupported_scheme",
    /// The response head is over the client's limit.
    HeadersTooLarge => "headers_too_large",
    /// A `206` for another range than the one asked for, or a refused range.
    BadRange => "bad_range",
    /// The body went past its announced or known end.
    TooLong => "too_long",
    /// The file is larger than the job's `max_download_size` (BITS's MAX_DOWNLOAD_SIZE).
    MaxDownloadSize => "max_download_size",
    /// The content changed under a multi-connection download.
    ContentChanged => "content_changed",
    /// A server answered a range request of a file of ranges with the whole file (BITS:
    /// `BG_E_INSUFFICIENT_RANGE_SUPPORT`).
    InsufficientRangeSupport => "insufficient_range_support",
    /// A range of a file lies past the end of the remote file, or runs to an end the
    /// server does not tell (BITS: `BG_E_INVALID_RANGE`).
    InvalidRange => "invalid_range",
    /// The SHA-256 of the bytes is not the expected one.
    ChecksumMismatch => "checksum_mismatch",
    /// A tus server created no upload URL.
    TusNoLocation => "tus_no_location",
    /// A tus server's upload URL is not usable.
    TusBadLocation => "tus_bad_location",
    /// A tus server did not say its offset.
    TusNoOffset => "tus_no_offset",
    /// A tus server keeps not moving its offset.
    TusNoProgress => "tus_no_progress",
    // The transport.
    /// The server's certificate was refused.
    TlsCertificate => "tls_certificate",
    /// A request timed out.
    Timeout => "timeout",
    /// The connection could not be made.
    Connect => "connect",
    /// The connection ended before the body did.
    ConnectionCut => "connection_cut",
    /// Any other network failure.
    Network => "network",
    /// No route to the server: the network is down (no default route, or the kernel
    /// answered ENETUNREACH/EHOSTUNREACH).
    NetworkUnreachable => "network_unreachable",
    /// No data arrived for the stall timeout.
    Stalled => "stalled",
    /// The job's `max_transfer_time` ran out.
    MaxTransferTime => "max_transfer_time",
    /// The job's proxy setting is not usable.
    BadProxy => "bad_proxy",
    /// The job's CA file cannot be read or parsed.
    CaFile => "ca_file",
    /// A redirect the job's redirect policy refuses (BITS's
    /// `BG_HTTP_REDIRECT_POLICY_DISALLOW`, or https to http).
    RedirectRefused => "redirect_refused",
    /// The server's public key is none of those the job pins.
    PinnedKeyMismatch => "pinned_key_mismatch",
    /// The server's certificate is listed in the job's revocation list
    /// (`BG_SSL_ENABLE_CRL_CHECK`).
    CertificateRevoked => "certificate_revoked",
    /// The job's CRL file cannot be read or parsed.
    CrlFile => "crl_file",
    /// The job's client certificate or key cannot be read, parsed or used together.
    ClientCertificate => "client_certificate",
    /// The server asked for a client certificate and the job has none, or refused the
    /// one it sent.
    ClientCertificateRefused => "client_certificate_refused",
    /// The HTTP client could not be built.
    HttpClient => "http_client",
    // Authentication.
    /// Negotiate: the job owner's credential cache holds no usable Kerberos ticket (run
    /// kinit).
    KerberosNoTicket => "kerberos_no_ticket",
    /// Negotiate: the GSSAPI made no token (no such service principal, the KDC not
    /// reachable…).
    Negotiate => "negotiate",
    /// Negotiate: the system's GSSAPI library could not be loaded.
    NegotiateUnavailable => "negotiate_unavailable",
    // The daemon.
    /// Recorded segments lack their size or validator.
    SegmentsIncomplete => "segments_incomplete",
    /// A fault inside ferryd.
    Internal => "internal",
    /// ferryd's own state folder cannot be written (full disk, quota, I/O error): the
    /// transfer waits until it can.
    StateUnwritable => "state_unwritable",
    /// The application rejected a transferred file.
    ValidationFailed => "validation_failed",
    /// The stored transfer options of the job could not be read.
    UnreadableOptions => "unreadable_options",
    /// The stored notify command of the job could not be read.
    UnreadableNotifyCommand => "unreadable_notify_command",
}

impl ErrorKind {
    /// Whether a failure of this kind is worth retrying on its own (network errors,
    /// timeouts, 408, 429, 5xx and a full disk are; the rest needs someone to act).
    pub fn is_transient(self) -> bool {
        match self {
            ErrorKind::Http(s) => s == 408 || s == 429 || (500..600).contains(&s),
            ErrorKind::NoSpace
            | ErrorKind::QuotaExceeded
            | ErrorKind::BadRange
            | ErrorKind::TooLong
            | ErrorKind::ContentChanged
            | ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::ConnectionCut
            | ErrorKind::Network
            | ErrorKind::NetworkUnreachable
            | ErrorKind::Stalled
            | ErrorKind::SegmentsIncomplete
            | ErrorKind::SourceShrank
            | ErrorKind::TusNoOffset
            | ErrorKind::TusNoProgress
            | ErrorKind::StateUnwritable
            | ErrorKind::TooManyOpenFiles => true,
            _ => false,
        }
    }

    /// Whether a failure of this kind is the network's (the connection could not be made,
    /// was cut, timed out or stalled): such a job retries at once when the network
    /// returns, and time spent with no route does not count toward its no-progress
    /// timeout.
    pub fn is_network(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::ConnectionCut
                | ErrorKind::Network
                | ErrorKind::NetworkUnreachable
                | ErrorKind::Stalled
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for kind in [
            ErrorKind::Http(404),
            ErrorKind::Http(503),
            ErrorKind::NoSpace,
            ErrorKind::TlsCertificate,
            ErrorKind::UnreadableOptions,
            ErrorKind::TusNoProgress,
            ErrorKind::RedirectRefused,
            ErrorKind::PinnedKeyMismatch,
            ErrorKind::CertificateRevoked,
            ErrorKind::ClientCertificateRefused,
        ] {
            assert_eq!(ErrorKind::from_code(&kind.code()), Some(kind), "{kind}");
        }
        assert_eq!(ErrorKind::Http(404).code(), "http_404");
        assert_eq!(ErrorKind::NoSpace.code(), "enospc");
        assert_eq!(ErrorKind::from_code("no_such_code"), None);
        assert_eq!(ErrorKind::from_code("http_x"), None);
    }

    #[test]
    fn transient_kinds() {
        assert!(ErrorKind::Http(503).is_transient());
        assert!(ErrorKind::Http(429).is_transient());
        assert!(!ErrorKind::Http(404).is_transient());
        assert!(ErrorKind::NoSpace.is_transient());
        assert!(!ErrorKind::PermissionDenied.is_transient());
        assert!(!ErrorKind::ChecksumMismatch.is_transient());
    }
}
