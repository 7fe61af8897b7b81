//! Measures notification latency over many one-file jobs, each completed by its callback:
//!
//! - from the moment a job became `transferred` (its last byte durable,
//!   `transferred_unix_ms`) to the moment its `job_transferred` callback was entered in
//!   this process;
//! - with `--http`, also from the moment the job's last byte was sent by a small HTTP
//!   server in this process on 127.0.0.1 (so: received, written, synced, committed and
//!   notified) to the same moment.
//!
//! ```sh
//! cargo run --release -p ferry-client --example bench_callback_latency -- 1000 [--http]
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_client::{Callback, CallbackResult, ConnectOptions, Job, JobInfo, Manager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const BODY: usize = 4096;

/// When the server sent the last byte of each path (`/f/N`), in Unix milliseconds.
type SentAt = Arc<Mutex<HashMap<String, f64>>>;

struct Timer {
    latencies_ms: Arc<Mutex<Vec<f64>>>,
    from_last_byte_ms: Arc<Mutex<Vec<f64>>>,
    sent_at: SentAt,
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
        let path = info.display_name.replace("latency-", "/f/");
        if let Some(sent) = self.sent_at.lock().unwrap().get(&path) {
            self.from_last_byte_ms.lock().unwrap().push(entered - sent);
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

fn summary(what: &str, v: &Mutex<Vec<f64>>) {
    let mut v = v.lock().unwrap().clone();
    if v.is_empty() {
        return;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "callback latency over {} jobs ({what} -> job_transferred entered): median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0.0)
    );
}

/// A keep-alive HTTP/1.1 server answering every GET with `BODY` bytes and noting when
/// the last byte of each path was written to the socket.
async fn serve(listener: tokio::net::TcpListener, sent_at: SentAt) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let _ = sock.set_nodelay(true);
            let body = vec![7u8; BODY];
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\nContent-Type: application/octet-stream\r\n\r\n"
                );
                let head_only = head.starts_with("HEAD ");
                if sock.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                if !head_only {
                    if sock.write_all(&body).await.is_err() {
                        return;
                    }
                    sent_at.lock().unwrap().insert(path, now_ms());
                }
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let http = args.iter().any(|a| a == "--http");
    let n: usize = args.iter().find_map(|s| s.parse().ok()).unwrap_or(1000);
    let dir = tempfile_dir()?;
    let src = dir.join("src.bin");
    std::fs::write(&src, vec![7u8; BODY])?;
    let sent_at: SentAt = Arc::default();
    let base = if http {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}/f/", listener.local_addr()?);
        tokio::spawn(serve(listener, sent_at.clone()));
        Some(base)
    } else {
        None
    };
    let m = Manager::connect_with(ConnectOptions {
        autostart: true,
        ..Default::default()
    })
    .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let timer = Arc::new(Timer {
        latencies_ms: Arc::new(Mutex::new(Vec::with_capacity(n))),
        from_last_byte_ms: Arc::new(Mutex::new(Vec::with_capacity(n))),
        sent_at,
        done: tx,
    });
    for i in 0..n {
        let url = match &base {
            Some(b) => format!("{b}{i}"),
            None => format!("file://{}", src.display()),
        };
        let job = m.create_job(&format!("latency-{i}")).await?;
        job.add_file(&url, dir.join(format!("out-{i}")).to_str().unwrap())
            .await?;
        job.set_notify_interface(Some(timer.clone())).await?;
        job.resume().await?;
    }
    for _ in 0..n {
        rx.recv().await;
    }
    summary("transferred", &timer.latencies_ms);
    summary("last byte sent by the server", &timer.from_last_byte_ms);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("ferry-latency-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
