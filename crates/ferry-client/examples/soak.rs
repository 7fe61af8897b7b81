//! A soak of ferryd: a mixed workload for a set time — downloads, uploads, data queries,
//! an event subscriber, jobs completed by a callback object and by an activated handler,
//! and daemon restarts — while ferryd's resident memory, open descriptors, threads and
//! store size are sampled. At the end it says whether they stayed flat after warm-up,
//! with the numbers, and exits non-zero when they grew or the work stopped making
//! progress. `bench/soak` builds and runs it (see `bench/README.md`).
//!
//! Settings (environment): `SOAK_MINUTES` (30), `SOAK_SAMPLE_SECS` (60),
//! `SOAK_RESTART_SECS` (600), `SOAK_WARMUP_SAMPLES` (2). It starts its own ferryd and
//! test HTTP server on 127.0.0.1, in a temporary folder; `FERRY_BIN_DIR` names the folder
//! of the binaries to run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_client::{
    Callback, CallbackResult, ConnectOptions, FileSpec, Job, JobInfo, JobProperties, JobState,
    JobType, Manager, NewJob, NotifyFlags, Priority, Uuid,
};
use ferry_testkit::{example_bin, random_bytes, sha256_hex, Daemon, TestEnv, TestServer};
use tokio::sync::Mutex;

fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the workers did.
#[derive(Default)]
struct Counters {
    downloads: AtomicU64,
    uploads: AtomicU64,
    queries: AtomicU64,
    events: AtomicU64,
    callbacks: AtomicU64,
    activations: AtomicU64,
    restarts: AtomicU64,
    /// Calls that failed (mostly cut by a restart; the worker then starts over).
    errors: AtomicU64,
    /// Transferred bytes that differed from the source: always a failure.
    corrupt: AtomicU64,
}

struct Soak {
    env: TestEnv,
    server: TestServer,
    daemon: Mutex<Option<Daemon>>,
    stop: AtomicBool,
    n: Counters,
    files: Vec<(String, Vec<u8>)>,
    class: Uuid,
    /// Numbers the rounds of all workers (their folders and names).
    seq: AtomicU64,
}

type Outcome = Result<(), Box<dyn std::error::Error + Send + Sync>>;

impl Soak {
    async fn manager(&self) -> ferry_client::Result<Manager> {
        Manager::connect_with(ConnectOptions {
            socket: self.env.socket.clone(),
            autostart: false,
            ..Default::default()
        })
        .await
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    /// Runs `round` until the end, counting failures and starting over after each.
    async fn work<F, Fut>(self: Arc<Self>, what: &'static str, round: F)
    where
        F: Fn(Arc<Soak>, u64) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        while self.running() {
            let i = self.seq.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(Duration::from_secs(120), round(self.clone(), i)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.n.errors.fetch_add(1, Ordering::Relaxed);
                    tracing_line(what, &e.to_string());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(_) => {
                    self.n.errors.fetch_add(1, Ordering::Relaxed);
                    tracing_line(what, "a round took over 120 s");
                }
            }
        }
    }
}

fn tracing_line(what: &str, e: &str) {
    if std::env::var_os("SOAK_VERBOSE").is_some() {
        eprintln!("soak: {what}: {e}");
    }
}

/// Waits for `job` to settle; cancels it (best effort) when it did not transfer.
async fn finish(job: &Job) -> Result<JobInfo, Box<dyn std::error::Error + Send + Sync>> {
    let info = job.wait().await?;
    if info.state() != JobState::Transferred {
        let _ = job.cancel().await;
        return Err(format!("job ended {:?}: {:?}", info.state(), info.error).into());
    }
    Ok(info)
}

async fn download_round(s: Arc<Soak>, i: u64) -> Outcome {
    let m = s.manager().await?;
    let job = m.create_job(&format!("soak download {i}")).await?;
    let dir = s.env.files.join(format!("d{i}"));
    std::fs::create_dir_all(&dir)?;
    let picks: Vec<&(String, Vec<u8>)> = (0..3)
        .map(|k| &s.files[((i * 3 + k) as usize) % s.files.len()])
        .collect();
    let specs = picks
        .iter()
        .enumerate()
        .map(|(k, (path, _))| {
            FileSpec::new(
                s.server.url(path),
                dir.join(k.to_string()).display().to_string(),
            )
        })
        .collect();
    let r = async {
        job.add_files(specs).await?;
        job.resume().await?;
        finish(&job).await?;
        job.complete().await?;
        for (k, (_, data)) in picks.iter().enumerate() {
            if sha256_hex(&std::fs::read(dir.join(k.to_string()))?) != sha256_hex(data) {
                s.n.corrupt.fetch_add(1, Ordering::Relaxed);
            }
        }
        s.n.downloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    .await;
    if r.is_err() {
        let _ = job.cancel().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    r
}

async fn upload_round(s: Arc<Soak>, i: u64) -> Outcome {
    let m = s.manager().await?;
    let job = m
        .create_job_with(NewJob {
            display_name: format!("soak upload {i}"),
            description: String::new(),
            job_type: JobType::Upload,
            priority: Priority::Normal,
            upload_protocol: Some("put".into()),
            ..NewJob::download("")
        })
        .await?;
    let (_, data) = &s.files[i as usize % s.files.len()];
    let src = s.env.dir.path().join(format!("up{i}"));
    std::fs::write(&src, data)?;
    let path = format!("/uploads/{i}");
    let r = async {
        job.add_file(&s.server.url(&path), &src.display().to_string())
            .await?;
        job.resume().await?;
        finish(&job).await?;
        job.complete().await?;
        if s.server.uploaded(&path).map(|u| sha256_hex(&u)) != Some(sha256_hex(data)) {
            s.n.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        s.n.uploads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    .await;
    if r.is_err() {
        let _ = job.cancel().await;
    }
    let _ = std::fs::remove_file(&src);
    r
}

async fn query_round(s: Arc<Soak>, _i: u64) -> Outcome {
    let m = s.manager().await?;
    for _ in 0..20 {
        m.exec_query("SELECT id, state, bytes_transferred FROM Job")
            .await?;
        m.exec_query("SELECT * FROM Job WHERE state = 'transferred'")
            .await?;
        s.n.queries.fetch_add(2, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn events_round(s: Arc<Soak>, _i: u64) -> Outcome {
    let m = s.manager().await?;
    let mut e = m
        .exec_notification_query_semisync(
            "SELECT * FROM __InstanceModificationEvent WITHIN 1 WHERE TargetInstance ISA 'Job'",
        )
        .await?;
    // A subscription of a minute at most, within the round's two.
    let end = Instant::now() + Duration::from_secs(60);
    while s.running() && Instant::now() < end {
        let next = e.next(Duration::from_secs(2), 1000).await?;
        s.n.events
            .fetch_add(next.objects.len() as u64, Ordering::Relaxed);
        if next.done {
            return Err("the event subscription ended".into());
        }
    }
    Ok(())
}

/// A callback object that completes each job it is told has transferred.
struct CompleteOnTransfer;

#[async_trait::async_trait]
impl Callback for CompleteOnTransfer {
    async fn job_transferred(&self, job: Job, _info: JobInfo) -> CallbackResult {
        job.complete().await?;
        Ok(())
    }
}

async fn callback_round(s: Arc<Soak>, i: u64) -> Outcome {
    let m = s.manager().await?;
    let job = m.create_job(&format!("soak callback {i}")).await?;
    let (path, _) = &s.files[i as usize % s.files.len()];
    let dest = s.env.files.join(format!("cb{i}"));
    let r = async {
        job.add_file(&s.server.url(path), &dest.display().to_string())
            .await?;
        job.set_notify_interface(Some(Arc::new(CompleteOnTransfer)))
            .await?;
        job.resume().await?;
        job.wait_for(|st| st == JobState::Acknowledged || st == JobState::Error)
            .await?;
        s.n.callbacks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    .await;
    if r.is_err() {
        let _ = job.cancel().await;
    }
    let _ = std::fs::remove_file(&dest);
    r
}

async fn activation_round(s: Arc<Soak>, i: u64) -> Outcome {
    let m = s.manager().await?;
    let job = m.create_job(&format!("soak activation {i}")).await?;
    let (path, _) = &s.files[i as usize % s.files.len()];
    let dest = s.env.files.join(format!("act{i}"));
    let r = async {
        job.add_file(&s.server.url(path), &dest.display().to_string())
            .await?;
        job.set(JobProperties {
            notification_class: Some(s.class),
            notify_flags: Some(NotifyFlags::JOB_TRANSFERRED),
            minimum_retry_delay_secs: Some(1),
            ..Default::default()
        })
        .await?;
        job.resume().await?;
        let info = job
            .wait_for(|st| st == JobState::Acknowledged || st == JobState::Error)
            .await?;
        if info.state() != JobState::Acknowledged {
            return Err(format!("activation job ended {:?}", info.state()).into());
        }
        s.n.activations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    .await;
    if r.is_err() {
        let _ = job.cancel().await;
    }
    let _ = std::fs::remove_file(&dest);
    let marker = format!("ferry-handled-{}", job.id());
    let _ = std::fs::remove_file(s.env.dir.path().join("handler").join(marker));
    r
}

/// One sample of ferryd.
#[derive(Clone, Copy)]
struct Sample {
    at_secs: u64,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    store_kib: u64,
}

fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The job store's size: its database file. The write-ahead log beside it is left out:
/// SQLite checkpoints it every 1000 pages and never shrinks the file, so its size says
/// how much was written since the last checkpoint, not what the store holds (4-5 MiB of
/// a 2-minute soak's 9 MiB).
fn store_kib(state: &Path) -> u64 {
    ["ferry.db"]
        .iter()
        .filter_map(|f| std::fs::metadata(state.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>()
        / 1024
}

fn sample(pid: u32, state: &Path, start: Instant) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Sample {
        at_secs: start.elapsed().as_secs(),
        rss_kib: status_field(&status, "VmRSS:"),
        threads: status_field(&status, "Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64,
        store_kib: store_kib(state),
    })
}

/// Whether the samples after warm-up stay flat: each figure's last third against its
/// first third (medians), within a margin for noise.
fn judge(samples: &[Sample]) -> Vec<String> {
    let mut growth = Vec::new();
    if samples.len() < 3 {
        return growth;
    }
    let third = (samples.len() / 3).max(1);
    let median = |xs: Vec<u64>| {
        let mut xs = xs;
        xs.sort_unstable();
        xs[xs.len() / 2]
    };
    type Figure = (&'static str, fn(&Sample) -> u64, f64, u64);
    let figures: [Figure; 4] = [
        ("RSS KiB", |s| s.rss_kib, 1.25, 8 * 1024),
        ("open descriptors", |s| s.fds, 1.0, 16),
        ("threads", |s| s.threads, 1.0, 8),
        ("store KiB", |s| s.store_kib, 1.5, 2 * 1024),
    ];
    for (name, f, factor, slack) in figures {
        let early = median(samples[..third].iter().map(f).collect());
        let late = median(samples[samples.len() - third..].iter().map(f).collect());
        if late as f64 > early as f64 * factor + slack as f64 {
            growth.push(format!("{name} grew from {early} to {late}"));
        }
    }
    growth
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let minutes = setting("SOAK_MINUTES", 30.0);
    let sample_every = Duration::from_secs_f64(setting("SOAK_SAMPLE_SECS", 60.0));
    let restart_every = Duration::from_secs_f64(setting("SOAK_RESTART_SECS", 600.0));
    let warmup = setting("SOAK_WARMUP_SAMPLES", 2.0) as usize;
    if std::env::var_os("RUST_LOG").is_none() {
        // ferryd's debug log would fill the disk over half an hour.
        std::env::set_var("RUST_LOG", "ferryd=info");
    }

    let env = TestEnv::new();
    // Final jobs are purged after two minutes, so the store reaches a steady size.
    let config = env.dir.path().join("ferryd.toml");
    std::fs::write(
        &config,
        "retention = \"30s\"\nhousekeeping_interval = \"10s\"\n",
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let server = TestServer::start();
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("/f{i}"), random_bytes(256 * 1024, 900 + i)))
        .collect();
    for (p, d) in &files {
        server.add_file(p, d.clone());
    }
    let daemon = env.start_daemon_with(&["--config", &config_arg]);
    let handler_dir = env.dir.path().join("handler");
    std::fs::create_dir_all(&handler_dir).unwrap();
    let s = Arc::new(Soak {
        env,
        server,
        daemon: Mutex::new(Some(daemon)),
        stop: AtomicBool::new(false),
        n: Counters::default(),
        files,
        class: Uuid::new_v4(),
        seq: AtomicU64::new(0),
    });
    s.manager()
        .await
        .expect("connect to ferryd")
        .register_handler(
            s.class,
            vec![example_bin("notify_handler").display().to_string()],
            Some(handler_dir.display().to_string()),
        )
        .await
        .expect("register the handler");

    let workers = vec![
        tokio::spawn(s.clone().work("download", download_round)),
        tokio::spawn(s.clone().work("download", download_round)),
        tokio::spawn(s.clone().work("upload", upload_round)),
        tokio::spawn(s.clone().work("query", query_round)),
        tokio::spawn(s.clone().work("events", events_round)),
        tokio::spawn(s.clone().work("callback", callback_round)),
        tokio::spawn(s.clone().work("activation", activation_round)),
    ];

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(minutes * 60.0);
    let mut next_sample = start + sample_every;
    let mut next_restart = start + restart_every;
    let mut samples: Vec<Sample> = Vec::new();
    println!(
        "soak: {minutes} min, a sample every {} s, a restart every {} s, {warmup} warm-up sample(s)",
        sample_every.as_secs(),
        restart_every.as_secs()
    );
    println!("  min |  RSS MiB |  fds | threads | store KiB | downloads uploads queries events callbacks activations restarts errors");
    while Instant::now() < end {
        let wake = next_sample.min(next_restart).min(end);
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        if now >= next_restart && now < end {
            let mut d = s.daemon.lock().await;
            if let Some(mut old) = d.take() {
                old.terminate();
            }
            *d = Some(s.env.start_daemon_with(&["--config", &config_arg]));
            s.n.restarts.fetch_add(1, Ordering::Relaxed);
            next_restart += restart_every;
        }
        if now >= next_sample {
            let pid = s.daemon.lock().await.as_ref().map(|d| d.pid()).unwrap_or(0);
            if let Some(x) = sample(pid, &s.env.state_dir, start) {
                let n = &s.n;
                println!(
                    "{:5.1} | {:8.1} | {:4} | {:7} | {:9} | {} {} {} {} {} {} {} {}",
                    x.at_secs as f64 / 60.0,
                    x.rss_kib as f64 / 1024.0,
                    x.fds,
                    x.threads,
                    x.store_kib,
                    n.downloads.load(Ordering::Relaxed),
                    n.uploads.load(Ordering::Relaxed),
                    n.queries.load(Ordering::Relaxed),
                    n.events.load(Ordering::Relaxed),
                    n.callbacks.load(Ordering::Relaxed),
                    n.activations.load(Ordering::Relaxed),
                    n.restarts.load(Ordering::Relaxed),
                    n.errors.load(Ordering::Relaxed),
                );
                samples.push(x);
            }
            next_sample += sample_every;
        }
    }
    s.stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    if let Some(mut d) = s.daemon.lock().await.take() {
        d.terminate();
    }

    let n = &s.n;
    let steady: Vec<Sample> = samples.iter().skip(warmup).copied().collect();
    let growth = judge(&steady);
    let mut failures = growth.clone();
    for (name, c) in [
        ("downloads", &n.downloads),
        ("uploads", &n.uploads),
        ("queries", &n.queries),
        ("callbacks", &n.callbacks),
        ("activations", &n.activations),
    ] {
        if c.load(Ordering::Relaxed) == 0 {
            failures.push(format!("no {name} finished"));
        }
    }
    if n.corrupt.load(Ordering::Relaxed) > 0 {
        failures.push(format!(
            "{} transfers had wrong bytes",
            n.corrupt.load(Ordering::Relaxed)
        ));
    }
    if steady.len() < 3 {
        println!(
            "soak: {} sample(s) after warm-up: too few to judge flatness (run longer)",
            steady.len()
        );
    } else if growth.is_empty() {
        let (a, b) = (steady[0], steady[steady.len() - 1]);
        println!(
            "soak: flat after warm-up: RSS {:.1}→{:.1} MiB, fds {}→{}, threads {}→{}, store {}→{} KiB",
            a.rss_kib as f64 / 1024.0,
            b.rss_kib as f64 / 1024.0,
            a.fds,
            b.fds,
            a.threads,
            b.threads,
            a.store_kib,
            b.store_kib
        );
    }
    if failures.is_empty() {
        println!("soak: ok");
    } else {
        for f in &failures {
            println!("soak: FAILED: {f}");
        }
        std::process::exit(1);
    }
}
