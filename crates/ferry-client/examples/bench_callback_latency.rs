//! Measures notification latency: from the moment a job became `transferred` (its last
//! byte durable, `transferred_unix_ms`) to the moment its `job_transferred` callback was
//! entered in this process, over many one-file `file://` jobs.
//!
//! ```sh
//! cargo run --release -p ferry-client --example bench_callback_latency -- 1000
//! ```

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_client::{Callback, CallbackResult, ConnectOptions, Job, JobInfo, Manager};
use tokio::sync::mpsc;

struct Timer {
    latencies_ms: Arc<Mutex<Vec<f64>>>,
    done: mpsc::UnboundedSender<()>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

#[async_trait::async_trait]
impl Callback for Timer {
    async fn job_transferred(&self, job: Job, info: JobInfo) -> CallbackResult {
        let entered = now_ms();
        if let Some(t) = info.transferred_unix_ms {
            self.latencies_ms.lock().unwrap().push(entered - t as f64);
        }
        job.complete().await?;
        let _ = self.done.send(());
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile_dir()?;
    let src = dir.join("src.bin");
    std::fs::write(&src, vec![7u8; 4096])?;
    let m = Manager::connect_with(ConnectOptions {
        autostart: true,
        ..Default::default()
    })
    .await?;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let timer = Arc::new(Timer {
        latencies_ms: latencies.clone(),
        done: tx,
    });
    let url = format!("file://{}", src.display());
    for i in 0..n {
        let job = m.create_job(&format!("latency-{i}")).await?;
        job.add_file(&url, dir.join(format!("out-{i}")).to_str().unwrap())
            .await?;
        job.set_notify_interface(Some(timer.clone())).await?;
        job.resume().await?;
    }
    for _ in 0..n {
        rx.recv().await;
    }
    let mut v = latencies.lock().unwrap().clone();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "callback latency over {} jobs (transferred -> job_transferred entered): median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0.0)
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("ferry-latency-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
