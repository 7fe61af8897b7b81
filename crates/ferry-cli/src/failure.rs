//! How a failed command ends: the exit code of `ferry_cli::exit`'s table, and the error
//! on standard error, as text (the message, then a hint) or, with `--json`, as one JSON
//! object: `{"error": {"exit_code", "kind", "message", "hint", "reason", "job_id",
//! "job_error"}}`. Standard output keeps only results, so that `ferry --json … | jq`
//! never reads an error as data.
//!
//! Errors are classified by type: the client library's error kind and the daemon's stable
//! reason, a job error's short code, and this crate's own [`Usage`], [`JobFailed`],
//! [`Partial`] and [`DaemonGone`] — never by the words of a message.
//!
//! May use: `hints`, `ferry_cli::exit`, `ferry-client`'s error and job types, serde_json.

use ferry_cli::exit::Exit;
use ferry_client::{ErrorKind, JobError, JobInfo, Uuid};
use serde::Serialize;

/// A bad command line that clap could not see: a malformed job id, priority, flag name…
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error with this message.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// A job that ended without being transferred (`get`, `wait`).
#[derive(Debug)]
pub struct JobFailed(pub JobInfo);

impl std::fmt::Display for JobFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.error {
            Some(e) => write!(f, "{} ({})", e.message, e.code),
            None => write!(f, "job {} ended {}", self.0.id, self.0.state()),
        }
    }
}

impl std::error::Error for JobFailed {}

/// `complete` put some files in place and discarded the others.
#[derive(Debug)]
pub struct Partial {
    pub job: Uuid,
    pub committed: u32,
    pub discarded: u32,
}

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} completed partially: {} file(s) in place, {} not transferred and discarded",
            self.job, self.committed, self.discarded
        )
    }
}

impl std::error::Error for Partial {}

/// `get --max-time` ran out before the job was transferred (the job was cancelled).
#[derive(Debug)]
pub struct TimedOut {
    pub job: Uuid,
    pub after: std::time::Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} was not transferred within --max-time ({} s); it was cancelled",
            self.job,
            self.after.as_secs()
        )
    }
}

impl std::error::Error for TimedOut {}

/// ferryd went away during a command and did not come back (the message says what becomes
/// of the job).
#[derive(Debug)]
pub struct DaemonGone(pub String);

impl std::fmt::Display for DaemonGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DaemonGone {}

/// What a failure says, as printed.
#[derive(Debug, Serialize)]
pub struct Report {
    pub exit_code: i32,
    /// The exit's name in the table (`http_client_error`, `unknown_job`, …).
    pub kind: &'static str,
    pub message: String,
    pub hint: Option<String>,
    /// The daemon's stable reason for a refused call (`JOB_NOT_FOUND`, …).
    pub reason: Option<String>,
    pub job_id: Option<Uuid>,
    /// The job's error, when a job failed.
    pub job_error: Option<JobError>,
}

/// Classifies `e`.
pub fn report(e: &anyhow::Error) -> Report {
    let mut r = Report {
        exit_code: 1,
        kind: "",
        message: format!("{e:#}"),
        hint: None,
        reason: None,
        job_id: None,
        job_error: None,
    };
    let exit = if e.downcast_ref::<Usage>().is_some() {
        Exit::Usage
    } else if let Some(JobFailed(info)) = e.downcast_ref::<JobFailed>() {
        r.job_id = Some(info.id);
        r.job_error = info.error.clone();
        match &info.error {
            Some(err) => {
                r.hint = crate::hints::for_job_error(&err.code).map(String::from);
                Exit::for_job_error(&err.code)
            }
            None => Exit::Failure,
        }
    } else if let Some(p) = e.downcast_ref::<Partial>() {
        r.job_id = Some(p.job);
        Exit::Partial
    } else if let Some(t) = e.downcast_ref::<TimedOut>() {
        r.job_id = Some(t.job);
        Exit::Timeout
    } else if e.downcast_ref::<DaemonGone>().is_some() {
        Exit::DaemonUnreachable
    } else if let Some(client) = e.downcast_ref::<ferry_client::Error>() {
        r.hint = crate::hints::for_call(client).map(String::from);
        r.reason = client.reason();
        match (client.kind(), r.reason.as_deref()) {
            (ErrorKind::Unavailable, _) => Exit::DaemonUnreachable,
            (ErrorKind::NotFound, Some("JOB_NOT_FOUND")) => Exit::UnknownJob,
            (ErrorKind::InvalidArgument, _) => Exit::Usage,
            _ => Exit::Failure,
        }
    } else {
        Exit::Failure
    };
    r.exit_code = exit.code();
    r.kind = exit.name();
    r
}

/// Prints `r` on standard error (errors there have nowhere else to go, so a failure to
/// write them is ignored).
pub fn print(r: &Report, json: bool) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    if json {
        #[derive(Serialize)]
        struct Error<'a> {
            error: &'a Report,
        }
        let line = serde_json::to_string(&Error { error: r }).expect("a report serializes");
        let _ = writeln!(err, "{line}");
        return;
    }
    let _ = writeln!(err, "ferry: {}", crate::stdout::shown(&r.message));
    if let Some(hint) = &r.hint {
        let _ = writeln!(err, "hint: {}", crate::stdout::shown(hint));
    }
}
