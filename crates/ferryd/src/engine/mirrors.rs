//! A file's mirrors: when the URL it is fetched from has failed for good, which URL
//! comes next, and what a run that ran out of URLs reports. Pure decisions; the worker
//! acts on them (`worker.rs`, `transfer_with_mirrors`).
//!
//! aria2 is the model (its multi-URI downloads and Metalink's mirrors): an HTTP error
//! status or a server that cannot be reached fails that URL at once and the next URL is
//! tried; a network error while bytes flow (a cut connection, a stall, a timeout) is
//! retried on the same URL first, up to [`NETWORK_TRIES`] tries in a row without
//! progress (aria2's `--max-tries`, 5). Unlike aria2, a URL that failed is not dropped:
//! after the last mirror comes the file's own URL again, so a job that keeps retrying
//! (ferry's jobs retry transient failures for `no_progress_timeout`) goes round them.
//!
//! May use: the engine's errors; `model`.

use super::error::TransferError;
use crate::model::{ErrorContext, ErrorKind};

/// Network failures of one URL in a row, without progress, after which it counts as
/// failed for good (aria2's `--max-tries` default).
pub const NETWORK_TRIES: u32 = 5;

/// True when `err` means the URL in use failed for good, after `failures_before`
/// failures in a row without progress on that URL: any HTTP error status (404, 403,
/// 5xx, 429, …; aria2 gives up a URI on every error status but a 503 it was told to
/// wait for), a connection that could not be made (name resolution, refused, no route
/// to that host), TLS refused, too many redirects, a URL that cannot be requested; and
/// on the [`NETWORK_TRIES`]th try in a row, a cut connection, a stall, a timeout, a
/// wrong range or a body too long. A `file://` source that is missing, unreadable or no
/// file fails at once too. Failures that are not the URL's (the local disk, the
/// machine being offline, the job's own limits, a checksum) never move a file on.
pub fn fails_for_good(err: &TransferError, failures_before: u32) -> bool {
    if !matches!(
        err.context,
        ErrorContext::RemoteFile | ErrorContext::Transport
    ) {
        return false;
    }
    match err.kind {
        ErrorKind::Http(_)
        | ErrorKind::Connect
        | ErrorKind::TlsCertificate
        | ErrorKind::TooManyRedirects
        | ErrorKind::BadUrl
        | ErrorKind::UnsupportedScheme
        | ErrorKind::HeadersTooLarge => true,
        // A `file://` source that is missing, unreadable or no file.
        ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::NotAFile => {
            err.context == ErrorContext::RemoteFile
        }
        ErrorKind::Timeout
        | ErrorKind::ConnectionCut
        | ErrorKind::Network
        | ErrorKind::Stalled
        | ErrorKind::BadRange
        | ErrorKind::TooLong
        | ErrorKind::ContentChanged => failures_before + 1 >= NETWORK_TRIES,
        _ => false,
    }
}

/// The URL after `in_use` among `count` (0 is the file's remote_url, `i` its mirror
/// `i - 1`): the next mirror, and after the last one the file's own URL.
pub fn next_url(in_use: u32, count: u32) -> u32 {
    (in_use + 1) % count.max(1)
}

/// The error a file reports once each of its `count` URLs failed in one run (`err` the
/// last one's): retried later, as a transient failure, when an earlier URL's failure was
/// transient (a 503 of one mirror and a 404 of another leave something to retry).
pub fn when_every_url_failed(
    mut err: TransferError,
    count: u32,
    earlier_transient: bool,
) -> TransferError {
    if count < 2 {
        return err;
    }
    err.message = format!("{}; each of the file's {count} URLs failed", err.message);
    if earlier_transient && !err.transient {
        err.transient = true;
        err.message
            .push_str(", an earlier one only for now: retried later");
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(context: ErrorContext, kind: ErrorKind) -> TransferError {
        TransferError::new(context, kind, "m")
    }

    #[test]
    fn statuses_and_unreachable_servers_fail_a_url_at_once_parity() {
        for kind in [
            ErrorKind::Http(404),
            ErrorKind::Http(503),
            ErrorKind::Http(429),
            ErrorKind::Connect,
            ErrorKind::TlsCertificate,
            ErrorKind::TooManyRedirects,
        ] {
            assert!(
                fails_for_good(&err(ErrorContext::RemoteFile, kind), 0),
                "{kind}"
            );
        }
    }

    #[test]
    fn network_errors_fail_a_url_on_the_fifth_try_in_a_row_parity() {
        let cut = err(ErrorContext::Transport, ErrorKind::ConnectionCut);
        for before in 0..NETWORK_TRIES - 1 {
            assert!(!fails_for_good(&cut, before), "{before}");
        }
        assert!(fails_for_good(&cut, NETWORK_TRIES - 1));
        assert!(fails_for_good(&cut, NETWORK_TRIES + 3));
    }

    #[test]
    fn failures_that_are_not_the_urls_never_move_a_file_parity() {
        for (context, kind) in [
            (ErrorContext::LocalFile, ErrorKind::NoSpace),
            (ErrorContext::LocalFile, ErrorKind::PermissionDenied),
            (ErrorContext::Transport, ErrorKind::NetworkUnreachable),
            (ErrorContext::Transport, ErrorKind::MaxTransferTime),
            (ErrorContext::RemoteFile, ErrorKind::ChecksumMismatch),
            (ErrorContext::Daemon, ErrorKind::Internal),
        ] {
            assert!(!fails_for_good(&err(context, kind), 10), "{kind}");
        }
    }

    #[test]
    fn after_the_last_mirror_comes_the_files_own_url_parity() {
        assert_eq!(next_url(0, 3), 1);
        assert_eq!(next_url(1, 3), 2);
        assert_eq!(next_url(2, 3), 0);
        assert_eq!(next_url(0, 1), 0);
    }

    #[test]
    fn a_fatal_last_failure_after_a_transient_one_is_retried_parity() {
        let e = TransferError::new(ErrorContext::RemoteFile, ErrorKind::Http(404), "gone");
        assert!(!e.transient);
        assert_eq!(when_every_url_failed(e.clone(), 1, true).message, "gone");
        let fatal = when_every_url_failed(e.clone(), 2, false);
        assert!(!fatal.transient);
        assert_eq!(fatal.message, "gone; each of the file's 2 URLs failed");
        let e = when_every_url_failed(e, 3, true);
        assert!(e.transient);
        assert_eq!(
            e.message,
            "gone; each of the file's 3 URLs failed, an earlier one only for now: retried later"
        );
    }
}
