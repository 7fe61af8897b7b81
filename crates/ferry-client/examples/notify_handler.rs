//! A notification handler, started by ferryd through activation. It takes no arguments:
//! it reads its class from `FERRY_ACTIVATION_CLASS`, registers its class object, completes
//! every job it is told has transferred (writing `ferry-handled-JOBID` in its working
//! folder), appends every call it gets to `ferry-calls.log` there (`METHOD JOBID` a line),
//! and exits once idle.
//!
//! ```sh
//! cargo build -p ferry-client --example notify_handler
//! ferry handler register CLASS --workdir /tmp -- $PWD/target/debug/examples/notify_handler
//! ferry set JOB --notify-class CLASS
//! ```

use std::sync::Arc;
use std::time::Duration;

use ferry_client::{
    activation_class, Callback, CallbackResult, ConnectOptions, File, Job, JobInfo, Manager, Uuid,
};
use tokio::sync::mpsc;

struct CompleteJobs {
    activity: mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl Callback for CompleteJobs {
    async fn job_transferred(&self, job: Job, info: JobInfo) -> CallbackResult {
        let _ = self.activity.send(());
        log_call("job_transferred", info.id)?;
        // The marker records the notification on arrival (it is delivered at least once).
        std::fs::write(format!("ferry-handled-{}", info.id), "job_transferred\n")?;
        let out = job.complete().await?;
        eprintln!(
            "notify_handler: completed job {} ({} file(s) committed)",
            info.id, out.files_committed
        );
        Ok(())
    }

    async fn file_transferred(&self, _job: Job, file: File) -> CallbackResult {
        let _ = self.activity.send(());
        log_call("file_transferred", file.info().job_id)?;
        Ok(())
    }

    async fn job_error(&self, _job: Job, info: JobInfo) -> CallbackResult {
        let _ = self.activity.send(());
        log_call("job_error", info.id)?;
        eprintln!(
            "notify_handler: job {} failed: {}",
            info.id,
            info.error.map(|e| e.message).unwrap_or_default()
        );
        Ok(())
    }
}

/// Appends `method job` to `ferry-calls.log` in the working folder (one write per line).
fn log_call(method: &str, job: Uuid) -> std::io::Result<()> {
    use std::io::Write;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("ferry-calls.log")?;
    log.write_all(format!("{method} {job}\n").as_bytes())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(class) = activation_class() else {
        eprintln!("notify_handler: FERRY_ACTIVATION_CLASS is not set; ferryd starts this program");
        std::process::exit(2);
    };
    let idle = Duration::from_secs(
        std::env::var("FERRY_HANDLER_IDLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let manager = Manager::connect_with(ConnectOptions::default()).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    manager
        .register_class_object(class, Arc::new(CompleteJobs { activity: tx }))
        .await?;
    eprintln!("notify_handler: registered class {class}");
    // Exit after `idle` without a call.
    while let Ok(Some(())) = tokio::time::timeout(idle, rx.recv()).await {}
    Ok(())
}
