//! The Prometheus/OpenMetrics endpoint (`[metrics] listen`): a real ferryd downloads from
//! the test server and `/metrics` shows it; without the section nothing listens; a real
//! Prometheus (Debian's) scrapes it and answers ferry's values through its query API; the
//! system-wide daemon's broker serves the sum of its users' workers.
//! `cargo test -p ferry-tests --test metrics` (the Prometheus test as root, with
//! `--include-ignored`, as `.ci/run` runs it).

mod common;
mod system;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use ferry_client::JobState;
use ferry_testkit::{
    http_get_tcp, http_get_unix, metric_samples, random_bytes, wait_until, wait_until_async,
    Daemon, HttpAnswer, TestEnv, TestServer,
};

fn get(port: u16, path: &str) -> std::io::Result<HttpAnswer> {
    http_get_tcp(port, path)
}

/// A port nobody listens on now (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn samples(text: &str) -> BTreeMap<String, f64> {
    metric_samples(text)
}

/// The TCP ports process `pid` listens on (its sockets in `/proc/net/tcp*` in state
/// LISTEN).
fn tcp_listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address st … inode: fields 1, 3 and 9.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit_once(':').unwrap().1;
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// Starts ferryd with `config` (the text of its ferryd.toml).
fn start_with_config(env: &TestEnv, config: &str) -> Daemon {
    let path = env.dir.path().join("ferryd.toml");
    std::fs::write(&path, config).unwrap();
    env.start_daemon_with(&["--config", s(&path)])
}

/// Downloads `data` (served at `/data`) to completion of the transfer, and lets a file
/// that is not there (`/missing`) fail with a 404. Returns the transferred job's id.
async fn one_done_one_failed(
    env: &TestEnv,
    server: &TestServer,
    data: &[u8],
) -> ferry_client::Uuid {
    server.add_file("/data", data.to_vec());
    let m = manager(env).await;
    let good = m.create_job("metrics good").await.unwrap();
    good.add_file(&server.url("/data"), s(&env.files.join("data.bin")))
        .await
        .unwrap();
    good.resume().await.unwrap();
    let info = settle(&good).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    let bad = m.create_job("metrics bad").await.unwrap();
    bad.add_file(&server.url("/missing"), s(&env.files.join("missing.bin")))
        .await
        .unwrap();
    bad.resume().await.unwrap();
    let info = settle(&bad).await;
    assert_eq!(info.state(), JobState::Error, "a 404 needs someone");
    good.id()
}

#[tokio::test]
async fn metrics_show_jobs_bytes_and_errors_of_a_real_download() {
    let env = TestEnv::new();
    let server = TestServer::start();
    let port = free_port();
    let mut daemon =
        start_with_config(&env, &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    // The gRPC socket answers first; the endpoint is bound a moment later.
    let before = wait_until(DEADLINE, "the metrics endpoint to answer", || {
        get(port, "/metrics").ok()
    });
    assert_eq!(
        tcp_listening_ports(daemon.pid()),
        vec![port],
        "the endpoint, nothing else"
    );
    assert_eq!(before.status, 200);
    let s0 = samples(&before.body);
    assert_eq!(s0["ferry_received_bytes_total{source=\"origin\"}"], 0.0);
    assert_eq!(s0["ferry_jobs{state=\"transferred\"}"], 0.0);

    let data = random_bytes(300_000, 29);
    let good = one_done_one_failed(&env, &server, &data).await;

    let a = get(port, "/metrics").unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(a.body.ends_with("# EOF\n"), "{}", a.body);
    let m = samples(&a.body);
    assert_eq!(m["ferry_jobs{state=\"transferred\"}"], 1.0, "{}", a.body);
    assert_eq!(m["ferry_jobs{state=\"error\"}"], 1.0, "{}", a.body);
    assert_eq!(m["ferry_jobs{state=\"queued\"}"], 0.0);
    assert_eq!(
        m["ferry_received_bytes_total{source=\"origin\"}"],
        data.len() as f64,
        "every byte of the file, from the origin"
    );
    assert_eq!(m["ferry_received_bytes_total{source=\"peers\"}"], 0.0);
    assert_eq!(m["ferry_files_transferred_total"], 1.0);
    assert_eq!(m["ferry_jobs_transferred_total"], 1.0);
    assert_eq!(
        m["ferry_job_errors_total{code=\"http_404\"}"], 1.0,
        "{}",
        a.body
    );
    // The runs end a moment after their jobs' verdicts.
    wait_until(DEADLINE, "no run left", || {
        (samples(&get(port, "/metrics").ok()?.body)["ferry_transfers_active"] == 0.0).then_some(())
    });
    assert!(
        !m.keys().any(|k| k.starts_with("ferry_peer")),
        "no peer metrics without peer caching"
    );

    // The gauge follows the job: complete moves it to acknowledged.
    let mgr = manager(&env).await;
    mgr.job(good).await.unwrap().complete().await.unwrap();
    let m = samples(&get(port, "/metrics").unwrap().body);
    assert_eq!(m["ferry_jobs{state=\"transferred\"}"], 0.0);
    assert_eq!(m["ferry_jobs{state=\"acknowledged\"}"], 1.0);

    let other = get(port, "/jobs").unwrap();
    assert_eq!(other.status, 404, "{}", other.body);
    daemon.terminate();
}

#[tokio::test]
async fn without_a_metrics_section_nothing_listens() {
    let env = TestEnv::new();
    let daemon = start_with_config(&env, "max_concurrent_jobs = 2\n");
    // The daemon answers on its socket (so it is past the point where it binds the
    // endpoint), and holds no listening TCP socket.
    manager(&env).await.create_job("started").await.unwrap();
    assert_eq!(tcp_listening_ports(daemon.pid()), Vec::<u16>::new());
    let env2 = TestEnv::new();
    let empty = start_with_config(&env2, "[metrics]\nlisten = \"\"\n");
    manager(&env2).await.create_job("started").await.unwrap();
    assert_eq!(tcp_listening_ports(empty.pid()), Vec::<u16>::new());
}

#[tokio::test]
async fn metrics_on_a_unix_socket() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let sock = env.dir.path().join("metrics.sock");
    let mut daemon = start_with_config(
        &env,
        &format!("[metrics]\nlisten = \"unix:{}\"\n", sock.display()),
    );
    // Bound once the daemon has opened its store, before it serves its own socket.
    manager(&env).await.create_job("started").await.unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the endpoint is the daemon's user's");
    let a = http_get_unix(&sock, "/metrics").unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        samples(&a.body)["ferry_jobs{state=\"suspended\"}"],
        1.0,
        "{}",
        a.body
    );
    daemon.terminate();
    assert!(!sock.exists(), "the socket goes with the daemon");
}

#[test]
fn a_bad_listen_address_is_refused_naming_the_key() {
    let env = TestEnv::new();
    let path = env.dir.path().join("ferryd.toml");
    std::fs::write(&path, "[metrics]\nlisten = \"localhost\"\n").unwrap();
    let out = Command::new(ferry_testkit::target_dir_bin("ferryd"))
        .args(["--config", s(&path)])
        .envs(env.envs())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics.listen") && err.contains("127.0.0.1:9464"),
        "{err}"
    );
}

/// A Prometheus server of the test's own, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` scraping `target` every second, with its own
    /// configuration, storage and a free loopback port.
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: ferry\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The value of the one series `query` selects now, once Prometheus has one.
    fn value(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        let a = get(self.port, &path).ok()?;
        if a.status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&a.body).ok()?;
        assert_eq!(v["status"], "success", "{}", a.body);
        let result = v["data"]["result"].as_array()?;
        let [series] = result.as_slice() else {
            return None;
        };
        series["value"][1].as_str()?.parse().ok()
    }
}

fn prometheus_bin() -> PathBuf {
    let p = Path::new("/usr/bin/prometheus");
    assert!(
        p.exists(),
        "Debian's prometheus is not installed: apt-get install prometheus"
    );
    p.to_owned()
}

/// `query` as a URL's query value.
fn percent_encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs Debian's prometheus: .ci/run runs it"]
async fn metrics_prometheus_scrapes_ferryd() {
    let env = TestEnv::new();
    let server = TestServer::start();
    let port = free_port();
    let mut daemon =
        start_with_config(&env, &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let data = random_bytes(200_000, 30);
    one_done_one_failed(&env, &server, &data).await;

    let prometheus = Prometheus::start(&format!("127.0.0.1:{port}"));
    let transferred = wait_until_async(
        DEADLINE,
        "Prometheus to answer ferry_jobs from its scrapes",
        || prometheus.value("ferry_jobs{job=\"ferry\",state=\"transferred\"}"),
    )
    .await;
    assert_eq!(transferred, 1.0, "prometheus log:\n{}", prometheus.log());
    let by_origin = prometheus
        .value("ferry_received_bytes_total{job=\"ferry\",source=\"origin\"}")
        .expect("the byte counter");
    assert_eq!(by_origin, data.len() as f64);
    let errors = prometheus
        .value("ferry_job_errors_total{code=\"http_404\"}")
        .expect("the error counter");
    assert_eq!(errors, 1.0);
    assert_eq!(prometheus.value("up{job=\"ferry\"}"), Some(1.0));
    daemon.terminate();
}

#[tokio::test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
async fn metrics_of_the_system_wide_daemon_add_up_every_users_worker() {
    let users = system::users("metrics_of_the_system_wide_daemon_add_up_every_users_worker");
    let server = TestServer::start();
    let data = random_bytes(150_000, 31);
    server.add_file("/sys", data.clone());
    let port = free_port();
    let env = system::SystemEnv::start(
        users,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let (a, b) = (&users.a, &users.b);
    // A downloads a file and keeps a job suspended; B has one suspended, one cancelled.
    let job_a = env.create(a, "a-download");
    let dest = env.home_a.join("sys.bin");
    env.ferry(a, &["add-file", &job_a, &server.url("/sys"), s(&dest)])
        .expect_ok("add-file");
    env.ferry(a, &["resume", &job_a]).expect_ok("resume");
    env.wait_state(&job_a, &["transferred"]);
    env.create(a, "a-idle");
    env.create(b, "b-idle");
    let gone = env.create(b, "b-cancelled");
    env.ferry(b, &["cancel", &gone]).expect_ok("cancel");

    // The broker asks both workers and serves their sum.
    let m = wait_until(DEADLINE, "the broker's metrics endpoint", || {
        Some(samples(&get(port, "/metrics").ok()?.body))
    });
    assert_eq!(m["ferry_jobs{state=\"suspended\"}"], 2.0, "{m:?}");
    assert_eq!(m["ferry_jobs{state=\"transferred\"}"], 1.0, "{m:?}");
    assert_eq!(m["ferry_jobs{state=\"cancelled\"}"], 1.0, "{m:?}");
    assert_eq!(
        m["ferry_received_bytes_total{source=\"origin\"}"],
        data.len() as f64
    );
    assert_eq!(m["ferry_files_transferred_total"], 1.0);
    assert_eq!(m["ferry_jobs_transferred_total"], 1.0);
}
