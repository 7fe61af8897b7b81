//! The error type of the client library.

use std::path::PathBuf;

/// What went wrong talking to ferryd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No daemon answers on the socket (and none could be started).
    #[error("cannot reach ferryd at {socket}: {reason}")]
    Unavailable {
        /// The socket tried.
        socket: PathBuf,
        /// Why it failed, with what to do.
        reason: String,
    },
    /// The daemon went away: it shut down (it ends its streams with `UNAVAILABLE`), or
    /// the connection broke (it crashed or was killed), and it did not come back within
    /// [`crate::ConnectOptions::reconnect_timeout`] (or reconnecting is off). Nothing
    /// ended normally; call again once ferryd is back.
    #[error("ferryd at {socket} went away: {reason}")]
    DaemonGone {
        /// The socket of the daemon that went away.
        socket: PathBuf,
        /// What happened, as a sentence (never a raw transport error).
        reason: String,
    },
    /// The daemon refused or failed the call.
    #[error("{}", .0.message())]
    Status(tonic::Status),
    /// The daemon answered something this library does not understand.
    #[error("unexpected answer from ferryd: {0}")]
    Protocol(String),
}

impl From<tonic::Status> for Error {
    /// A call whose connection broke (the daemon stopped or crashed during it: tonic
    /// reports `UNKNOWN` "transport error") becomes `UNAVAILABLE` with a message that says
    /// so; any other status is kept as it is.
    fn from(s: tonic::Status) -> Error {
        if s.code() == tonic::Code::Unknown && std::error::Error::source(&s).is_some() {
            return Error::Status(tonic::Status::unavailable(format!(
                "the connection to ferryd broke during the call ({}): ferryd stopped or \
                 crashed; call again once it is back (complete and cancel answer with how \
                 the job ended)",
                s.message()
            )));
        }
        Error::Status(s)
    }
}

/// The kind of a failed call, after gRPC's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The job, file or handler does not exist (or belongs to someone else).
    NotFound,
    /// The request was malformed: a bad URL, a relative path, an unknown property…
    InvalidArgument,
    /// The object is in a state that does not allow the call (e.g. completing a cancelled job).
    FailedPrecondition,
    /// A configured limit was reached.
    ResourceExhausted,
    /// The caller is not allowed to talk to this daemon, or to do this.
    PermissionDenied,
    /// The daemon does not implement the call.
    Unimplemented,
    /// The daemon is not reachable.
    Unavailable,
    /// The call was cancelled.
    Cancelled,
    /// Anything else.
    Other,
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unavailable { .. } | Error::DaemonGone { .. } => ErrorKind::Unavailable,
            Error::Protocol(_) => ErrorKind::Other,
            Error::Status(s) => match s.code() {
                tonic::Code::NotFound => ErrorKind::NotFound,
                tonic::Code::InvalidArgument => ErrorKind::InvalidArgument,
                tonic::Code::FailedPrecondition => ErrorKind::FailedPrecondition,
                tonic::Code::ResourceExhausted => ErrorKind::ResourceExhausted,
                tonic::Code::PermissionDenied => ErrorKind::PermissionDenied,
                tonic::Code::Unimplemented => ErrorKind::Unimplemented,
                tonic::Code::Unavailable => ErrorKind::Unavailable,
                tonic::Code::Cancelled => ErrorKind::Cancelled,
                _ => ErrorKind::Other,
            },
        }
    }

    /// The stable reason the daemon gave for refusing the call, if it gave one: the
    /// `reason` of the `google.rpc.ErrorInfo` (domain `ferry.v1`) in the status details, a
    /// value name of the wire's `ErrorReason` enum without its prefix, such as
    /// `"JOB_NOT_FOUND"`. Act on this, never on the message's words.
    pub fn reason(&self) -> Option<String> {
        use tonic_types::StatusExt;
        let Error::Status(s) = self else {
            return None;
        };
        let info = s.get_details_error_info()?;
        (info.domain == "ferry.v1").then_some(info.reason)
    }

    /// The gRPC status code, when the daemon answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status(s) => Some(s.code()),
            Error::DaemonGone { .. } => Some(tonic::Code::Unavailable),
            _ => None,
        }
    }

    /// The error of a call or stream that ended with `status`: [`Error::DaemonGone`] when
    /// the daemon went away (see [`is_gone`]), else the daemon's answer.
    pub(crate) fn from_status(status: tonic::Status, socket: &std::path::Path) -> Error {
        if is_gone(&status) {
            Error::DaemonGone {
                socket: socket.to_owned(),
                reason: gone_reason(&status),
            }
        } else {
            Error::Status(status)
        }
    }
}

/// Whether `status` says the daemon went away rather than answered: `UNAVAILABLE` (it
/// refused the call while stopping, ended a stream as it shut down, or nobody answers on
/// the socket), or an error made on this side of the connection (a broken connection, a
/// reset stream: the status carries the transport error as its source, which a status
/// the daemon sent never does).
pub(crate) fn is_gone(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable || std::error::Error::source(status).is_some()
}

/// Whether a call that failed with `status` certainly never ran on the daemon: nobody
/// answered on the socket, or the daemon refused the call unseen (`UNAVAILABLE`, which
/// ferryd sends only to end streams and HTTP/2 uses for refused streams). A call whose
/// connection broke while it was under way may or may not have run.
pub(crate) fn never_ran(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
}

/// What happened to the daemon, as a sentence.
pub(crate) fn gone_reason(status: &tonic::Status) -> String {
    if status.message().contains("shutting down") {
        "it is shutting down".into()
    } else if status.code() == tonic::Code::Unavailable {
        "it does not answer (it stopped, or is restarting)".into()
    } else {
        "the connection to it broke (it stopped, crashed or was killed)".into()
    }
}

/// The result type of the client library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
