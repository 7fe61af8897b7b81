//! Control-plane throughput: `create` + `add_files` + `resume` for many one-file jobs over
//! one connection, until every job is `transferred`; then `complete` for all of them, and
//! a SHA-256 check of the files.
//!
//! `--tasks` tasks share one `Manager` (one connection, HTTP/2 streams in parallel); each
//! takes the next job number and runs its three commands in order. Transfers are followed
//! with one event subscription (`state` changes to `transferred` or `error`); if the
//! daemon ends it (a subscriber that falls behind), the example polls with a query.
//!
//! ```sh
//! cargo run --release -p ferry-client --example bench_control_plane -- \
//!     --url http://127.0.0.1:18080/tiny.bin --dir /tmp/cp --jobs 10000 --tasks 16
//! ```
//!
//! Options: `--url URL` (required: every job fetches it), `--dir DIR` (required: created;
//! job `i` writes `DIR/j{i}.bin`), `--jobs N` (10000), `--tasks N` (16), `--sha256 HEX`
//! (the expected digest; without it every file must equal the first), `--verify N` (check
//! N files spread over the run; default all), `--timeout SECS` (900), `--no-complete`,
//! `--one-call` (each job in one `CreateJob` with its file and `resume`, not three calls).
//!
//! The last lines are `key=value` pairs for scripts (`bench/run` reads them): seconds and
//! jobs per second for submission (`submit_*`), until all are transferred (`all_*`) and
//! for completion (`complete_*`), and `verified=N`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_client::{ConnectOptions, FileSpec, Manager, NewJob, StatusCode};
use tokio::sync::Notify;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    url: String,
    dir: PathBuf,
    jobs: usize,
    tasks: usize,
    sha256: Option<String>,
    verify: Option<usize>,
    timeout: Duration,
    complete: bool,
    one_call: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("bench_control_plane: {msg}");
    eprintln!(
        "usage: bench_control_plane --url URL --dir DIR [--jobs N] [--tasks N] \
         [--sha256 HEX] [--verify N] [--timeout SECS] [--no-complete] [--one-call]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        dir: PathBuf::new(),
        jobs: 10_000,
        tasks: 16,
        sha256: None,
        verify: None,
        timeout: Duration::from_secs(900),
        complete: true,
        one_call: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-complete" {
            a.complete = false;
            continue;
        }
        if flag == "--one-call" {
            a.one_call = true;
            continue;
        }
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| -> usize {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: '{v}' is not a number")))
        };
        match flag.as_str() {
            "--url" => a.url = value,
            "--dir" => a.dir = PathBuf::from(value),
            "--jobs" => a.jobs = number(&value),
            "--tasks" => a.tasks = number(&value).max(1),
            "--sha256" => a.sha256 = Some(value.to_ascii_lowercase()),
            "--verify" => a.verify = Some(number(&value)),
            "--timeout" => a.timeout = Duration::from_secs(number(&value) as u64),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if a.url.is_empty() || a.dir.as_os_str().is_empty() {
        usage("--url and --dir are required");
    }
    a
}

/// Ids of jobs seen `transferred`, and of jobs seen in `error`.
#[derive(Default)]
struct Seen {
    transferred: HashSet<Uuid>,
    failed: Vec<(Uuid, String)>,
    /// Set when the subscription ended early: the waiter polls instead.
    lost: bool,
}

/// Follows state changes to `transferred` and `error` until the subscription ends.
async fn follow_events(
    mut events: ferry_client::Enumerator,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
) {
    loop {
        // `next` returns when `max` objects are there or the timeout passes.
        let next = match events.next(Duration::from_millis(20), 4096).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("event subscription failed: {e}");
                break;
            }
        };
        {
            let mut s = seen.lock().unwrap();
            for ev in &next.objects {
                let Some(t) = ev.get_object("TargetInstance") else {
                    continue;
                };
                let Some(id) = t.get_str("id").and_then(|i| Uuid::parse_str(i).ok()) else {
                    continue;
                };
                match t.get_str("state") {
                    Some("transferred") => {
                        s.transferred.insert(id);
                    }
                    Some(state) => s.failed.push((id, state.to_string())),
                    None => {}
                }
            }
        }
        if !next.objects.is_empty() {
            changed.notify_one();
        }
        if next.done {
            if let Some(st) = next.status.filter(|s| s.code != StatusCode::Ok) {
                eprintln!(
                    "event subscription ended ({:?}): {}; polling instead",
                    st.code, st.message
                );
            }
            break;
        }
    }
    seen.lock().unwrap().lost = true;
    changed.notify_one();
}

/// Ids (of `ours`) the daemon has in state `transferred`, and those in `error`.
async fn poll(m: &Manager, since_ms: i64, seen: &Mutex<Seen>) -> Result<(), BoxError> {
    let objs = m
        .exec_query(&format!(
            "SELECT id, state FROM Job WHERE created_unix_ms >= {since_ms}"
        ))
        .await?;
    let mut s = seen.lock().unwrap();
    for o in objs {
        let (Some(id), Some(state)) = (
            o.get_str("id").and_then(|i| Uuid::parse_str(i).ok()),
            o.get_str("state"),
        ) else {
            continue;
        };
        match state {
            "transferred" => {
                s.transferred.insert(id);
            }
            "error" => s.failed.push((id, state.into())),
            _ => {}
        }
    }
    Ok(())
}

/// Runs `work(i)` for i in 0..n on `tasks` tasks sharing one counter.
async fn fan_out<F, Fut, T>(n: usize, tasks: usize, work: F) -> Result<Vec<T>, BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, BoxError>> + Send,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let mut handles = Vec::new();
    for _ in 0..tasks.min(n.max(1)) {
        let (next, work) = (next.clone(), work.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, BoxError>(out);
                }
                out.push((i, work(i).await?));
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args();
    let n = args.jobs;
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let m = Manager::connect_with(ConnectOptions {
        autostart: true,
        ..Default::default()
    })
    .await?;
    let since_ms = now_ms() - 1;

    // Subscribe first, so no change is missed.
    let events = m
        .exec_notification_query_semisync(
            "SELECT TargetInstance.id, TargetInstance.state FROM __InstanceModificationEvent \
             WHERE TargetInstance ISA 'Job' AND TargetInstance.state <> PreviousInstance.state \
             AND (TargetInstance.state = 'transferred' OR TargetInstance.state = 'error')",
        )
        .await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let changed = Arc::new(Notify::new());
    let follower = tokio::spawn(follow_events(events, seen.clone(), changed.clone()));

    let t0 = Instant::now();
    let ids: Vec<Uuid> = {
        let (m, url, dir, one_call) = (m.clone(), args.url.clone(), dir.clone(), args.one_call);
        fan_out(n, args.tasks, move |i| {
            let (m, url) = (m.clone(), url.clone());
            let dest = dir.join(format!("j{i}.bin"));
            async move {
                let file = FileSpec::new(url, dest.to_string_lossy());
                if one_call {
                    let job = m
                        .create_job_with(NewJob {
                            files: vec![file],
                            resume: true,
                            ..NewJob::download(format!("cp-{i}"))
                        })
                        .await?;
                    return Ok(job.id());
                }
                let job = m.create_job(&format!("cp-{i}")).await?;
                job.add_files(vec![file]).await?;
                job.resume().await?;
                Ok(job.id())
            }
        })
        .await?
    };
    let t_sub = t0.elapsed().as_secs_f64();
    eprintln!(
        "submitted {n} jobs in {t_sub:.3} s ({:.0} jobs/s); waiting for the transfers",
        rate(n, t_sub)
    );

    let ours: HashSet<Uuid> = ids.iter().copied().collect();
    let deadline = Instant::now() + args.timeout;
    let mut last_poll = Instant::now();
    loop {
        {
            let s = seen.lock().unwrap();
            if let Some((id, state)) = s.failed.iter().find(|(id, _)| ours.contains(id)) {
                return Err(format!("job {id} went to {state}").into());
            }
            if ours.iter().all(|id| s.transferred.contains(id)) {
                break;
            }
        }
        if Instant::now() >= deadline {
            let done = ours
                .iter()
                .filter(|id| seen.lock().unwrap().transferred.contains(id))
                .count();
            return Err(format!(
                "{} of {n} jobs not transferred after {} s",
                n - done,
                args.timeout.as_secs()
            )
            .into());
        }
        let lost = seen.lock().unwrap().lost;
        if lost && last_poll.elapsed() >= Duration::from_millis(100) {
            poll(&m, since_ms, &seen).await?;
            last_poll = Instant::now();
            continue;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), changed.notified()).await;
    }
    let t_all = t0.elapsed().as_secs_f64();
    follower.abort();
    eprintln!(
        "all {n} transferred after {t_all:.3} s ({:.0} jobs/s end to end)",
        rate(n, t_all)
    );

    let mut t_cmp = 0.0;
    if args.complete {
        let t1 = Instant::now();
        let committed: Vec<u32> = {
            let m = m.clone();
            let ids = Arc::new(ids.clone());
            fan_out(n, args.tasks, move |i| {
                let job = m.job_unchecked(ids[i]);
                async move { Ok(job.complete().await?.files_committed) }
            })
            .await?
        };
        t_cmp = t1.elapsed().as_secs_f64();
        let missing = committed.iter().filter(|c| **c != 1).count();
        if missing > 0 {
            return Err(format!("{missing} jobs committed no file").into());
        }
        eprintln!(
            "completed {n} jobs in {t_cmp:.3} s ({:.0} jobs/s)",
            rate(n, t_cmp)
        );
    }

    let verified = if args.complete {
        verify(&dir, n, args.sha256.as_deref(), args.verify)?
    } else {
        0
    };

    println!("jobs={n}");
    println!("tasks={}", args.tasks);
    println!("submit_secs={t_sub:.3}");
    println!("submit_jobs_per_sec={:.0}", rate(n, t_sub));
    println!("all_secs={t_all:.3}");
    println!("all_jobs_per_sec={:.0}", rate(n, t_all));
    if args.complete {
        println!("complete_secs={t_cmp:.3}");
        println!("complete_jobs_per_sec={:.0}", rate(n, t_cmp));
    }
    println!("verified={verified}");
    Ok(())
}

/// Checks the SHA-256 of `count` files (all when `None`) spread over `DIR/j{i}.bin`;
/// returns how many were checked.
fn verify(
    dir: &std::path::Path,
    n: usize,
    expected: Option<&str>,
    count: Option<usize>,
) -> Result<usize, BoxError> {
    let entries = std::fs::read_dir(dir)?.count();
    if entries != n {
        return Err(format!(
            "{} holds {entries} entries, expected {n} files",
            dir.display()
        )
        .into());
    }
    sha256::self_check();
    let count = count.unwrap_or(n).min(n);
    let mut want = expected.map(str::to_owned);
    for k in 0..count {
        let i = if count == n { k } else { k * n / count };
        let path = dir.join(format!("j{i}.bin"));
        let got = sha256::hex(&std::fs::read(&path)?);
        match &want {
            Some(w) if *w != got => {
                return Err(format!(
                    "SHA-256 MISMATCH: {} is {got}, expected {w}",
                    path.display()
                )
                .into())
            }
            Some(_) => {}
            None => want = Some(got),
        }
    }
    eprintln!(
        "verified the SHA-256 of {count} files: {}",
        want.unwrap_or_default()
    );
    Ok(count)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A small SHA-256 (FIPS 180-4), so the example needs no extra dependency.
mod sha256 {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The digest of `data`, in lower-case hex.
    pub fn hex(data: &[u8]) -> String {
        let mut h: [u32; 8] = [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
            0x5be0cd19,
        ];
        let mut msg = data.to_vec();
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
        for block in msg.chunks_exact(64) {
            let mut w = [0u32; 64];
            for (t, word) in block.chunks_exact(4).enumerate() {
                w[t] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            }
            for t in 16..64 {
                let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
                let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
                w[t] = w[t - 16]
                    .wrapping_add(s0)
                    .wrapping_add(w[t - 7])
                    .wrapping_add(s1);
            }
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
            for t in 0..64 {
                let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
                let ch = (e & f) ^ (!e & g);
                let t1 = hh
                    .wrapping_add(s1)
                    .wrapping_add(ch)
                    .wrapping_add(K[t])
                    .wrapping_add(w[t]);
                let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
                let maj = (a & b) ^ (a & c) ^ (b & c);
                let t2 = s0.wrapping_add(maj);
                hh = g;
                g = f;
                f = e;
                e = d.wrapping_add(t1);
                d = c;
                c = b;
                b = a;
                a = t1.wrapping_add(t2);
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
                *x = x.wrapping_add(y);
            }
        }
        h.iter().map(|x| format!("{x:08x}")).collect()
    }

    /// Checks the implementation against the standard's examples.
    pub fn self_check() {
        assert_eq!(
            hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&[b'a'; 1000]),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }
}
