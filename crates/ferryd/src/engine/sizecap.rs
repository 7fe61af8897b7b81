//! A job's `max_download_size` (BITS's `BITS_JOB_PROPERTY_MAX_DOWNLOAD_SIZE`): a file
//! whose announced size passes it fails before a byte is written, and one whose body runs
//! past it fails at the chunk that would pass it (no byte beyond the limit is written).
//! The failure is for good: asking again would fetch the same file.
//!
//! May use: the engine's error type; `model`.

use super::error::TransferError;
use crate::model::{ErrorContext, ErrorKind, JobOptions};

/// The job's limit, when it has one.
pub fn limit(options: &JobOptions) -> Option<u64> {
    (options.max_download_size > 0).then_some(options.max_download_size)
}

/// Refuses a file of `size` bytes (announced or known) when it passes the limit.
pub fn check_size(options: &JobOptions, url: &str, size: u64) -> Result<(), TransferError> {
    match limit(options) {
        Some(max) if size > max => Err(too_large(
            url,
            &format!("the file is {size} bytes long"),
            max,
        )),
        _ => Ok(()),
    }
}

/// Refuses a body once `received` (the bytes so far with the next chunk) passes the
/// limit.
pub fn check_received(options: &JobOptions, url: &str, received: u64) -> Result<(), TransferError> {
    match limit(options) {
        Some(max) if received > max => {
            Err(too_large(url, &format!("its body passed {max} bytes"), max))
        }
        _ => Ok(()),
    }
}

fn too_large(url: &str, what: &str, max: u64) -> TransferError {
    TransferError::new(
        ErrorContext::RemoteFile,
        ErrorKind::MaxDownloadSize,
        format!(
            "{url}: {what}, more than the job's max_download_size of {max} bytes; nothing \
             past the limit was written (raise max_download_size, or set it to 0 for no \
             limit, and resume the job)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_max_download_size_refuses_only_what_passes_it() {
        let mut o = JobOptions::default();
        assert!(check_size(&o, "u", u64::MAX).is_ok(), "0 is no limit");
        o.max_download_size = 100;
        assert!(check_size(&o, "u", 100).is_ok());
        let e = check_size(&o, "http://h/f", 101).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MaxDownloadSize);
        assert!(!e.transient, "a file too large stays too large");
        assert!(
            e.message.contains("101") && e.message.contains("100"),
            "{}",
            e.message
        );
        assert!(check_received(&o, "u", 100).is_ok());
        assert!(check_received(&o, "u", 101).is_err());
    }
}
