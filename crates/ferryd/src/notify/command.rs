//! Command-line notifications: the job's notify command, run as the job's owner without a
//! shell, in the owner's home, in a process group of its own, its output in the daemon's
//! notify-command log, each line after the job's id. One that runs past the notify
//! command timeout is killed with its whole process group and reaped; the failure says so.

use std::path::Path;
use std::time::Duration;

use uuid::Uuid;

use crate::model::JobState;
use crate::owner::{kill_group, Output, Owner};

/// How long the reaping of a killed command may take before it is left to a background
/// task (SIGKILL is not delayed by the process, but a process stuck in the kernel is).
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `argv` as `owner` with `FERRY_JOB_ID` and `FERRY_JOB_STATE`, its output appended
/// to `log` line by line after the job's id, for at most `timeout`; Ok when it exits 0.
pub async fn run(
    owner: &Owner,
    argv: &[String],
    job: Uuid,
    state: JobState,
    log: &Path,
    timeout: Duration,
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
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("the notify command {program} exited with {status}")),
        Ok(Err(e)) => Err(format!("waiting for the notify command {program}: {e}")),
        Err(_) => {
            if let Some(pid) = child.id() {
                kill_group(pid);
            }
            match tokio::time::timeout(REAP_TIMEOUT, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(program, "a killed notify command has not exited yet");
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                }
            }
            Err(format!(
                "the notify command {program} ran longer than {} s (notify_command_timeout) \
                 and was killed with its process group",
                timeout.as_secs()
            ))
        }
    }
}
