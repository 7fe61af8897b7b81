//! The origin server: nginx (Debian's package) in a namespace of its own, one process
//! (`master_process off`, so killing the child stops it), serving a folder with ETags and
//! ranges, and logging every request with the body bytes it sent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::Host;

/// A running nginx.
pub struct Origin {
    child: Child,
    dir: tempfile::TempDir,
    pub host: Host,
    pub port: u16,
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub client: String,
    pub method: String,
    pub status: u16,
    pub body_bytes: u64,
    pub path: String,
}

impl Origin {
    /// Starts nginx on `host`, port 8080; returns once it has bound its port.
    pub fn start(host: &Host) -> Origin {
        let dir = tempfile::Builder::new()
            .prefix("ferry-origin-")
            .tempdir()
            .expect("origin folder");
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("private")).unwrap();
        let port = 8080;
        let d = dir.path().display();
        let conf = format!(
            r#"
daemon off;
master_process off;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format bytes '$remote_addr $request_method $status $body_bytes_sent $uri';
    access_log {d}/access.log bytes;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    default_type application/octet-stream;
    server {{
        listen {ip}:{port};
        root {d}/www;
        location /private/ {{ add_header Cache-Control "private"; }}
    }}
}}
"#,
            ip = host.ip,
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &host.ns, "nginx", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (apt-get install nginx)");
        let mut origin = Origin {
            child,
            dir,
            host: host.clone(),
            port,
        };
        // nginx writes its pid file once its listening socket is open.
        let pid = origin.dir.path().join("nginx.pid");
        let end = Instant::now() + Duration::from_secs(20);
        while !pid.exists() {
            if let Ok(Some(status)) = origin.child.try_wait() {
                panic!(
                    "nginx exited ({status}); is it installed (Debian package nginx)? {}",
                    std::fs::read_to_string(origin.dir.path().join("error.log"))
                        .unwrap_or_default()
                );
            }
            assert!(Instant::now() < end, "nginx did not start within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        origin
    }

    /// The folder nginx serves.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// Writes `data` as `name` under the served folder.
    pub fn put(&self, name: &str, data: &[u8]) {
        let path = self.root().join(name);
        // A new inode and a new modification time: nginx's ETag changes with the content.
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, data).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    /// Replaces the content of `name` with `data` of the same length, keeping its
    /// modification time: nginx's ETag and Last-Modified stay as they were (an origin
    /// whose validators lie, so that a peer's copy looks current).
    pub fn replace_keeping_validators(&self, name: &str, data: &[u8]) {
        let path = self.root().join(name);
        let old = std::fs::metadata(&path).unwrap();
        assert_eq!(old.len(), data.len() as u64, "the same length");
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(old.modified().unwrap())
            .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    /// The URL of `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}:{}/{name}", self.host.ip, self.port)
    }

    /// Every request logged so far.
    pub fn log(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Logged {
                    client: f[0].into(),
                    method: f[1].into(),
                    status: f[2].parse().unwrap_or(0),
                    body_bytes: f[3].parse().unwrap_or(0),
                    path: f.get(4).copied().unwrap_or("").into(),
                }
            })
            .collect()
    }

    /// Body bytes sent to each client address.
    pub fn body_bytes_by_client(&self) -> HashMap<String, u64> {
        let mut m = HashMap::new();
        for l in self.log() {
            *m.entry(l.client).or_default() += l.body_bytes;
        }
        m
    }

    /// Body bytes sent to `client`.
    pub fn body_bytes_to(&self, client: &str) -> u64 {
        self.body_bytes_by_client()
            .get(client)
            .copied()
            .unwrap_or(0)
    }

    /// The requests of `client`.
    pub fn requests_of(&self, client: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.client == client)
            .collect()
    }

    /// The server's folder (for tests writing files next to it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
