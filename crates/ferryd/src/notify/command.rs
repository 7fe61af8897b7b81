//! Command-line notifications: the job's notify command, run as the job's owner without a
//! shell, its output in the daemon's notify-command log, each line after the job's id.

use std::path::Path;
use std::time::Duration;

use uuid::Uuid;

use crate::model::JobState;
use crate::owner::{Output, Owner};

/// Longest a notify command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `argv` as `owner` with `FERRY_JOB_ID` and `FERRY_JOB_STATE`, its output appended
/// to `log` line by line after the job's id; Ok when it exits 0.
pub async fn run(
    owner: &Owner,
    argv: &[String],
    job: Uuid,
    state: JobState,
    log: &Path,
) -> Result<(), String> {
    let Some(program) = argv.first() else {
        return Err("no notify command".into());
    };
    let output = Output::Tagged {
        path: log.to_owned(),
        tag: job.to_string(),
    };
    let mut cmd = owner
        .command(argv, None, &output)
        .await
        .map_err(|e| format!("cannot run the notify command {program}: {e}"))?
        .ok_or_else(|| "no notify command".to_string())?;
    cmd.env("FERRY_JOB_ID", job.to_string())
        .env("FERRY_JOB_STATE", state.as_str())
        .kill_on_drop(true);
    let mut child = owner
        .spawn(&mut cmd, &output)
        .await
        .map_err(|e| format!("cannot run the notify command {program}: {e}"))?;
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("the notify command {program} exited with {status}")),
        Ok(Err(e)) => Err(format!("waiting for the notify command {program}: {e}")),
        Err(_) => Err(format!(
            "the notify command {program} ran longer than {} s and was killed",
            COMMAND_TIMEOUT.as_secs()
        )),
    }
}
