//! A job's error in apt's terms: the `FailReason` apt acts on (`HttpError404` is "not
//! found", `HashSumMismatch` its hash error, `Timeout`/`ConnectionRefused` are retried),
//! whether apt may try again (`Transient-Failure`), and the message it prints.
//!
//! May use: `message`, `hashes`.

use crate::hashes::FileHashes;
use crate::message::Message;

/// Why a file could not be fetched, as apt is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What apt prints after "Failed to fetch URI".
    pub message: String,
    /// apt's `FailReason`, when one fits.
    pub reason: Option<String>,
    /// apt may retry (its `Acquire::Retries`).
    pub transient: bool,
    /// The hashes of what was received (for a hash mismatch: apt prints them).
    pub received: Option<FileHashes>,
}

/// What the method does with the job after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Cancel it: its part file goes, nothing is left in apt's folders.
    Cancel,
    /// Suspend it: the bytes stay, and the next run for the same file goes on from them.
    Keep,
}

impl Failure {
    /// A failure with only a message (not transient).
    pub fn plain(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            reason: None,
            transient: false,
            received: None,
        }
    }

    /// A failure apt may retry.
    pub fn transient(message: impl Into<String>) -> Failure {
        Failure {
            transient: true,
            ..Failure::plain(message)
        }
    }

    /// The failure for a job that ended in `error` with the error `code` (ferry's stable
    /// short code, e.g. `http_404`) and `message`.
    pub fn from_job_error(code: &str, message: &str) -> Failure {
        let status = code
            .strip_prefix("http_")
            .and_then(|s| s.parse::<u16>().ok());
        let (reason, transient) = match (status, code) {
            (Some(s), _) => (
                Some(format!("HttpError{s}")),
                s == 408 || s == 429 || (500..600).contains(&s),
            ),
            (None, "checksum_mismatch") => (Some("HashSumMismatch".to_string()), false),
            (None, "timeout" | "stalled") => (Some("Timeout".to_string()), true),
            (None, "connect") => (Some("ConnectionRefused".to_string()), true),
            (None, "network" | "network_unreachable" | "connection_cut") => (None, true),
            _ => (None, false),
        };
        let message = match reason.as_deref() {
            Some("HashSumMismatch") => format!("Hash Sum mismatch ({message})"),
            _ => format!("{message} (ferry: {code})"),
        };
        Failure {
            message,
            reason,
            transient,
            received: None,
        }
    }

    /// Whether this failure is a hash mismatch.
    pub fn is_hash_mismatch(&self) -> bool {
        self.reason.as_deref() == Some("HashSumMismatch")
    }

    /// What to do with the job: the bytes of a transient failure are worth keeping for
    /// the next try; anything else is cancelled, so that no bad byte stays behind.
    pub fn leave(&self) -> Leave {
        if self.transient {
            Leave::Keep
        } else {
            Leave::Cancel
        }
    }

    /// The `400 URI Failure` for `uri`.
    pub fn to_message(&self, uri: &str) -> Message {
        let mut m = Message::new(400, "URI Failure")
            .with("URI", uri)
            .with("Message", self.message.replace('\n', " "))
            .with("FailReason", self.reason.as_deref().unwrap_or_default());
        if self.transient {
            m = m.with("Transient-Failure", "true");
        }
        if let Some(h) = &self.received {
            for (name, value) in h.fields() {
                m = m.with(&name, value);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_404_is_apts_not_found_and_not_retried() {
        let f = Failure::from_job_error("http_404", "HTTP 404 Not Found");
        assert_eq!(f.reason.as_deref(), Some("HttpError404"));
        assert!(!f.transient);
        assert_eq!(f.leave(), Leave::Cancel);
        let m = f.to_message("ferry+http://h/a.deb");
        assert_eq!(m.get("FailReason"), Some("HttpError404"));
        assert_eq!(m.get("Transient-Failure"), None);
        assert_eq!(m.get("URI"), Some("ferry+http://h/a.deb"));
        assert!(m.get("Message").unwrap().contains("404"));
    }

    #[test]
    fn server_errors_and_network_failures_are_transient_and_keep_the_bytes() {
        for (code, reason) in [
            ("http_503", Some("HttpError503")),
            ("http_429", Some("HttpError429")),
            ("timeout", Some("Timeout")),
            ("stalled", Some("Timeout")),
            ("connect", Some("ConnectionRefused")),
            ("network", None),
            ("connection_cut", None),
        ] {
            let f = Failure::from_job_error(code, "x");
            assert!(f.transient, "{code}");
            assert_eq!(f.reason.as_deref(), reason, "{code}");
            assert_eq!(f.leave(), Leave::Keep, "{code}");
            assert_eq!(f.to_message("u").get("Transient-Failure"), Some("true"));
        }
    }

    #[test]
    fn a_checksum_mismatch_is_apts_hash_error_with_the_received_hashes() {
        let mut f = Failure::from_job_error(
            "checksum_mismatch",
            "SHA-256 of the downloaded file is 00, expected 11",
        );
        assert!(f.is_hash_mismatch());
        assert!(!f.transient);
        assert_eq!(f.leave(), Leave::Cancel);
        assert!(f.message.starts_with("Hash Sum mismatch"), "{}", f.message);
        f.received = Some(FileHashes {
            sha256: "aa".repeat(32),
            sha512: "bb".repeat(64),
            size: 7,
        });
        let m = f.to_message("ferry+http://h/a.deb");
        assert_eq!(m.get("FailReason"), Some("HashSumMismatch"));
        assert_eq!(m.get("SHA256-Hash"), Some("aa".repeat(32).as_str()));
        assert_eq!(m.get("Checksum-FileSize-Hash"), Some("7"));
    }

    #[test]
    fn other_errors_carry_ferrys_code_and_no_reason() {
        let f = Failure::from_job_error("permission_denied", "cannot write /x");
        assert_eq!(f.reason, None);
        assert!(!f.transient);
        assert_eq!(f.message, "cannot write /x (ferry: permission_denied)");
        assert_eq!(f.to_message("u").get("FailReason"), None);
    }
}
