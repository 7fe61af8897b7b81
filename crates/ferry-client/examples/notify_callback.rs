//! Registers a callback object on a new download job and completes the job from inside
//! `job_transferred`.
//!
//! ```sh
//! cargo run -p ferry-client --example notify_callback -- URL /absolute/destination
//! ```

use std::sync::Arc;

use ferry_client::{Callback, CallbackResult, ConnectOptions, Job, JobInfo, Manager};
use tokio::sync::mpsc;

/// Completes the job when it is transferred and tells `main` how it ended.
struct CompleteOnTransfer {
    done: mpsc::Sender<Result<String, String>>,
}

#[async_trait::async_trait]
impl Callback for CompleteOnTransfer {
    async fn job_transferred(&self, job: Job, info: JobInfo) -> CallbackResult {
        let outcome = job.complete().await?;
        let _ = self
            .done
            .send(Ok(format!(
                "job {} transferred {} bytes; {} file(s) committed",
                info.id, info.bytes_transferred, outcome.files_committed
            )))
            .await;
        Ok(())
    }

    async fn job_error(&self, job: Job, info: JobInfo) -> CallbackResult {
        let why = info.error.map(|e| e.message).unwrap_or_default();
        job.cancel().await?;
        let _ = self
            .done
            .send(Err(format!("job {} failed: {why}", info.id)))
            .await;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(dest)) = (args.next(), args.next()) else {
        eprintln!("usage: notify_callback URL /absolute/destination");
        std::process::exit(2);
    };
    let manager = Manager::connect_with(ConnectOptions {
        autostart: true,
        ..Default::default()
    })
    .await?;
    let job = manager.create_job("notify_callback example").await?;
    job.add_file(&url, &dest).await?;
    let (tx, mut rx) = mpsc::channel(1);
    job.set_notify_interface(Some(Arc::new(CompleteOnTransfer { done: tx })))
        .await?;
    job.resume().await?;
    match rx.recv().await {
        Some(Ok(msg)) => println!("{msg}"),
        Some(Err(msg)) => {
            eprintln!("{msg}");
            std::process::exit(1);
        }
        None => unreachable!("the callback object holds the sender"),
    }
    Ok(())
}
