//! What the broker and a worker say to each other on the worker's control link
//! (`ipc.rs` frames). The broker trusts nothing a worker says: a worker runs as its user,
//! who may have replaced it with anything. So a worker's request names the client
//! connection it acts for, and the broker checks that connection's credentials as the
//! kernel gave them to the broker at `accept` — never what the worker claims.

use serde::{Deserialize, Serialize};

use crate::model::MetricsSnapshot;

/// Broker → worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// A client's connection (one descriptor attached). `admin`: the broker opened it for
    /// this administrator (uid), who acts on this worker's jobs through it.
    Connection { id: u64, admin: Option<u32> },
    /// The answer to a request (`Request`): for `AdminConnect`, one descriptor per uid,
    /// in that order.
    Answer {
        request: u64,
        result: Result<Vec<u32>, Refusal>,
    },
    /// Transfer slots this worker may use now, granted from the machine's.
    Slots { granted: u32 },
    /// The answer to `MayLeave`: leave now (`true`), or stay.
    Leave(bool),
    /// Stop, as on SIGTERM (the machine's daemon stops).
    Stop,
    /// Send the numbers of the metrics endpoint (answered by `FromWorker::Metrics` with
    /// the same `round`).
    Metrics { round: u64 },
}

/// Worker → broker.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// The store is open; connections may come.
    Ready,
    /// A connection the broker handed over has closed.
    Closed { connection: u64 },
    /// A request the broker answers with `ToWorker::Answer`.
    Request { request: u64, call: Call },
    /// This many jobs of the worker's user are neither acknowledged nor cancelled now.
    Unfinished { jobs: u64 },
    /// This many transfer slots would be used now if granted.
    WantSlots { slots: u32 },
    /// Nothing to do and no client: may the worker leave?
    MayLeave,
    /// This worker's numbers for the metrics endpoint, asked for in `round`. Trusted for
    /// nothing but its own user's share of the machine's sums.
    Metrics {
        round: u64,
        snapshot: MetricsSnapshot,
    },
}

/// A worker's request, made for the client on `connection`.
#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    /// Connections to every other user's worker, opened for the administrator on
    /// `connection` (refused unless its credentials are root's or the admin group's).
    AdminConnect { connection: u64 },
    /// `jobs` more jobs for the machine's count (`max_jobs_per_machine`); the client on
    /// `connection` is exempt if it is root or an administrator.
    Reserve { connection: u64, jobs: u32 },
    /// Stop the machine's daemon (root only).
    Shutdown { connection: u64 },
}

/// Why the broker refused a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

/// The kind of a refusal (the worker turns it into a gRPC status code).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum RefusalKind {
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }
}
