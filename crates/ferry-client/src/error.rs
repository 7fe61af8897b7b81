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
    /// The daemon refused or failed the call.
    #[error("{}", .0.message())]
    Status(tonic::Status),
    /// The daemon answered something this library does not understand.
    #[error("unexpected answer from ferryd: {0}")]
    Protocol(String),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
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
    /// The caller is not allowed to talk to this daemon.
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
            Error::Unavailable { .. } => ErrorKind::Unavailable,
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

    /// The gRPC status code, when the daemon answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// The result type of the client library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
