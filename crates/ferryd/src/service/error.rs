//! The failures of the facade's commands: a kind (mapped to a gRPC status code by
//! `rpc/`), a message that speaks of the API (calls and fields, never a command line), and
//! for the failures a client may act on, a stable [`ErrorReason`].
//!
//! May use: nothing of the daemon.

/// A failure of a command, mapped to a gRPC status by `rpc/`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The daemon cannot serve the call now but will by itself (its store's disk failed).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
    /// `error`, with a stable reason that clients may act on (sent as gRPC's
    /// `google.rpc.ErrorInfo`).
    #[error("{error}")]
    Marked {
        error: Box<ServiceError>,
        reason: ErrorReason,
    },
}

impl ServiceError {
    /// This error with the stable reason `reason`.
    pub fn marked(self, reason: ErrorReason) -> ServiceError {
        ServiceError::Marked {
            error: Box::new(self),
            reason,
        }
    }

    /// The reason, if the error has one.
    pub fn reason(&self) -> Option<ErrorReason> {
        match self {
            ServiceError::Marked { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// Why a call failed, for a client to act on without reading the message: the values of
/// the wire's `ErrorReason` enum, sent as the `reason` of a `google.rpc.ErrorInfo` (domain
/// [`ErrorReason::DOMAIN`]) in the status details. The names never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReason {
    /// No job with that id is the caller's (NOT_FOUND).
    JobNotFound,
    /// A job id that is not a UUID (INVALID_ARGUMENT).
    InvalidJobId,
    /// `ResumeJob` of a job without files (FAILED_PRECONDITION).
    JobHasNoFiles,
    /// `RegisterHandler` without a program (INVALID_ARGUMENT).
    HandlerCommandMissing,
    /// `RegisterHandler` with a program that does not exist or cannot be run
    /// (INVALID_ARGUMENT).
    HandlerProgramNotRunnable,
    /// No handler is registered for the class (NOT_FOUND).
    HandlerNotFound,
    /// `ExecQuery` of an event query (INVALID_ARGUMENT).
    NotADataQuery,
    /// `ExecNotificationQuery` of a data query (INVALID_ARGUMENT).
    NotAnEventQuery,
}

impl ErrorReason {
    /// The `domain` of the `ErrorInfo` that carries a reason.
    pub const DOMAIN: &'static str = "ferry.v1";

    /// Every reason.
    pub const ALL: [ErrorReason; 8] = [
        ErrorReason::JobNotFound,
        ErrorReason::InvalidJobId,
        ErrorReason::JobHasNoFiles,
        ErrorReason::HandlerCommandMissing,
        ErrorReason::HandlerProgramNotRunnable,
        ErrorReason::HandlerNotFound,
        ErrorReason::NotADataQuery,
        ErrorReason::NotAnEventQuery,
    ];

    /// The reason as sent: the wire enum's value name without its `ERROR_REASON_` prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::JobNotFound => "JOB_NOT_FOUND",
            ErrorReason::InvalidJobId => "INVALID_JOB_ID",
            ErrorReason::JobHasNoFiles => "JOB_HAS_NO_FILES",
            ErrorReason::HandlerCommandMissing => "HANDLER_COMMAND_MISSING",
            ErrorReason::HandlerProgramNotRunnable => "HANDLER_PROGRAM_NOT_RUNNABLE",
            ErrorReason::HandlerNotFound => "HANDLER_NOT_FOUND",
            ErrorReason::NotADataQuery => "NOT_A_DATA_QUERY",
            ErrorReason::NotAnEventQuery => "NOT_AN_EVENT_QUERY",
        }
    }
}
