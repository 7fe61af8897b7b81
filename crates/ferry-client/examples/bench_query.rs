//! Times `SELECT * FROM Job WHERE state = 'error'` over a large store: the semisynchronous
//! first batch and the full result, plus the synchronous form.
//!
//! Creates `N` jobs (default 100 000), of which `N/100` fail (a missing `file://`
//! source) and end in `error`, then runs the query.
//!
//! ```sh
//! cargo run --release -p ferry-client --example bench_query -- 100000
//! ```

use std::time::{Duration, Instant};

use ferry_client::{ConnectOptions, FileSpec, JobState, Manager};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let m = Manager::connect_with(ConnectOptions {
        autostart: true,
        ..Default::default()
    })
    .await?;
    let failing = n / 100;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for i in (chunk..n).step_by(8) {
                let job = m.create_job(&format!("bulk-{i}")).await?;
                if i % 100 == 0 {
                    job.add_files(vec![FileSpec::new(
                        "file:///nonexistent/ferry-bench-source",
                        format!("/tmp/ferry-bench-{i}"),
                    )])
                    .await?;
                    job.resume().await?;
                    failed.push(job);
                }
            }
            Ok::<_, ferry_client::Error>(failed)
        }));
    }
    let mut failed = Vec::new();
    for t in tasks {
        failed.extend(t.await??);
    }
    for job in &failed {
        job.wait_for(|s| s == JobState::Error).await?;
    }
    println!(
        "created {n} jobs ({failing} failing) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let wql = "SELECT * FROM Job WHERE state = 'error'";
    for round in 0..3 {
        let t0 = Instant::now();
        let mut e = m.exec_query_semisync(wql).await?;
        let first = e.next(Duration::from_secs(60), 100).await?;
        let t_first = t0.elapsed();
        let mut total = first.objects.len();
        let mut done = first.done;
        while !done {
            let next = e.next(Duration::from_secs(60), 1000).await?;
            total += next.objects.len();
            done = next.done;
        }
        let t_all = t0.elapsed();
        let t1 = Instant::now();
        let sync = m.exec_query(wql).await?;
        let t_sync = t1.elapsed();
        println!(
            "round {round}: semisync first batch ({} objects) {:.1} ms, full result ({total}) {:.1} ms; sync ({}) {:.1} ms",
            first.objects.len(),
            t_first.as_secs_f64() * 1000.0,
            t_all.as_secs_f64() * 1000.0,
            sync.len(),
            t_sync.as_secs_f64() * 1000.0
        );
    }
    let t0 = Instant::now();
    let all = m
        .exec_query("SELECT id FROM Job WHERE display_name LIKE 'bulk-9999%'")
        .await?;
    println!(
        "unindexed LIKE over {n} jobs: {} objects in {:.1} ms",
        all.len(),
        t0.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
