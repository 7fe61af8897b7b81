//! A site's DNS server: dnsmasq (Debian's `dnsmasq-base`) in a namespace, with its own
//! configuration in a temporary folder (no upstream servers, no `/etc/hosts`), publishing
//! the records a test gives it. Killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::Host;

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on `host`'s address, port 53, authoritative for `domain` (names it
    /// does not know there are NXDOMAIN), with `records` as configuration lines
    /// (`srv-host=…`, `ptr-record=…`, `txt-record=…`, `host-record=…`); returns once it
    /// says it has started.
    pub fn start(host: &Host, domain: &str, records: &[String]) -> Dnsmasq {
        let dir = tempfile::Builder::new()
            .prefix("ferry-dnsmasq-")
            .tempdir()
            .expect("dnsmasq folder");
        let d = dir.path().display();
        let conf = format!(
            "no-resolv\nno-hosts\nport=53\nlisten-address={ip}\nbind-interfaces\n\
             user=root\ngroup=root\npid-file={d}/dnsmasq.pid\nlog-queries\n\
             log-facility={d}/dnsmasq.log\nlocal=/{domain}/\n{records}\n",
            ip = host.ip,
            records = records.join("\n"),
        );
        let conf_path = dir.path().join("dnsmasq.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &host.ns, "dnsmasq", "--keep-in-foreground"])
            .arg(format!("--conf-file={}", conf_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("start dnsmasq (dnsmasq-base) in its namespace");
        let mut dns = Dnsmasq { child, dir };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = dns.child.try_wait().unwrap() {
                panic!("dnsmasq exited ({status}): {}", dns.log());
            }
            if dns.log().contains("started, version") {
                return dns;
            }
            assert!(
                Instant::now() < end,
                "dnsmasq did not start within 30 s: {}",
                dns.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log and standard error.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("dnsmasq.log"), read("stderr"))
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
