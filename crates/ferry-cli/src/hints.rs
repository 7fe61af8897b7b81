//! The command-line hints `ferry` adds to what the daemon says. ferryd's messages speak of
//! the API (calls and fields); the hint for a refused call is chosen by its gRPC code and
//! the stable reason the daemon sends with it (`ErrorReason`, as gRPC's `ErrorInfo`), and
//! the hint for a job's error by the error's code — never by the words of a message.
//!
//! May use: `ferry-client`'s error type.

use ferry_client::{Error, ErrorKind};

/// The command that helps after `e`, if one does.
pub fn for_call(e: &Error) -> Option<&'static str> {
    let reason = e.reason()?;
    use ErrorKind::{FailedPrecondition, InvalidArgument, NotFound};
    Some(match (e.kind(), reason.as_str()) {
        (NotFound, "JOB_NOT_FOUND") => "`ferry list --all` shows your jobs",
        (InvalidArgument, "INVALID_JOB_ID") => "`ferry list` shows your jobs and their ids",
        (FailedPrecondition, "JOB_HAS_NO_FILES") => {
            "add files with `ferry add-file JOB URL PATH` first"
        }
        (InvalidArgument, "HANDLER_COMMAND_MISSING") => {
            "`ferry handler register CLASS -- PROGRAM ARGS…`"
        }
        (InvalidArgument, "HANDLER_PROGRAM_NOT_RUNNABLE") => {
            "`ferry handler register CLASS -- PROGRAM` takes a program on PATH or an absolute \
             path to an executable file"
        }
        (NotFound, "HANDLER_NOT_FOUND") => "`ferry handler list` shows the registered handlers",
        (InvalidArgument, "NOT_A_DATA_QUERY") => "run an event query with `ferry watch`",
        (InvalidArgument, "NOT_AN_EVENT_QUERY") => "run a data query with `ferry query`",
        _ => return None,
    })
}

/// The command that helps with a job whose error has the code `code`, if one does.
pub fn for_job_error(code: &str) -> Option<&'static str> {
    match code {
        "tls_certificate" => Some("`ferry set JOB --ca-file PATH` trusts the CA in PATH"),
        "kerberos_no_ticket" => Some("`kinit` gets you a Kerberos ticket; then `ferry resume JOB`"),
        "redirect_refused" => {
            Some("`ferry set JOB --redirect-policy allow_silent` follows redirects")
        }
        "pinned_key_mismatch" => {
            Some("`ferry set JOB --pinned-public-key sha256//…` pins the server's new key")
        }
        "client_certificate_refused" | "client_certificate" => Some(
            "`ferry set JOB --client-cert CERT.pem --client-key KEY.pem` gives the job a \
             client certificate",
        ),
        "crl_file" => Some("`ferry set JOB --crl-file PATH` names a PEM revocation list"),
        "max_download_size" => Some(
            "`ferry set JOB --max-download-size SIZE` raises the limit (0: none); then \
             `ferry resume JOB`",
        ),
        "unreadable_options" | "unreadable_notify_command" => {
            Some("`ferry cancel JOB`, then create the job again")
        }
        _ => None,
    }
}
