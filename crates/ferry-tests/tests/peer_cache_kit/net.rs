//! A private LAN for one test: network namespaces joined by a bridge (which lives in a
//! namespace of its own, so the host's network is never touched), each host with an
//! address in 10.99.0.0/24. Every namespace is deleted when the [`Lan`] is dropped, even
//! when the test panics; deleting a namespace removes its veth, and the bridge goes with
//! its namespace.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Namespaces made by this process, numbered so that parallel tests never collide.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`, panicking with its output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One machine of the LAN: its namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: String,
}

/// The bridge and the hosts on it.
pub struct Lan {
    prefix: String,
    bridge_ns: String,
    namespaces: Vec<String>,
    /// `/etc/netns/NAME` folders made for hosts' resolvers, removed with the LAN.
    etc_dirs: Vec<std::path::PathBuf>,
}

impl Lan {
    /// A bridge with no hosts yet.
    pub fn new() -> Lan {
        let prefix = format!(
            "fpc{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let bridge_ns = format!("{prefix}-br");
        let mut lan = Lan {
            prefix,
            bridge_ns: bridge_ns.clone(),
            namespaces: Vec::new(),
            etc_dirs: Vec::new(),
        };
        ip(&["netns", "add", &bridge_ns]);
        lan.namespaces.push(bridge_ns.clone());
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        lan
    }

    /// A namespace of its own with only its loopback up (for tests on 127.0.0.1).
    pub fn loopback_only(&mut self, name: &str) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Host {
            ns,
            ip: "127.0.0.1".into(),
        }
    }

    /// A new host on the bridge, at 10.99.0.`n`.
    pub fn host(&mut self, name: &str, n: u8) -> Host {
        let host = self.loopback_only(name);
        let port = format!("v{n}");
        ip(&[
            "-n",
            &host.ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.bridge_ns,
        ]);
        ip(&["-n", &self.bridge_ns, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.bridge_ns, "link", "set", &port, "up"]);
        let addr = format!("10.99.0.{n}");
        ip(&[
            "-n",
            &host.ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &host.ns, "link", "set", "eth0", "up"]);
        Host { ip: addr, ..host }
    }

    /// A host on a subnet of its own, 10.99.`net`.2/24, behind a router: a namespace on
    /// the bridge at 10.99.0.`router` with a second link to the host (10.99.`net`.1) that
    /// forwards between the two. Each of `via` (hosts on the bridge) gets a route to the
    /// subnet through the router. Multicast, mDNS's, is not forwarded. The router and the
    /// host.
    pub fn routed_host(&mut self, name: &str, net: u8, router: u8, via: &[&Host]) -> (Host, Host) {
        let r = self.host(&format!("{name}-rt"), router);
        let h = self.loopback_only(name);
        ip(&[
            "-n", &h.ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns",
            &r.ns,
        ]);
        let gateway = format!("10.99.{net}.1");
        let addr = format!("10.99.{net}.2");
        ip(&[
            "-n",
            &r.ns,
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            "eth1",
        ]);
        ip(&["-n", &r.ns, "link", "set", "eth1", "up"]);
        ip(&[
            "-n",
            &h.ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &h.ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &h.ns, "route", "add", "default", "via", &gateway]);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &r.ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .output()
            .expect("run sysctl in the router's namespace");
        assert!(out.status.success(), "sysctl ip_forward: {out:?}");
        for v in via {
            ip(&[
                "-n",
                &v.ns,
                "route",
                "add",
                &format!("10.99.{net}.0/24"),
                "via",
                &r.ip,
            ]);
        }
        (r, Host { ip: addr, ..h })
    }

    /// Makes `host`'s resolver (`/etc/resolv.conf` as `ip netns exec` shows it, from
    /// `/etc/netns/NS/`) ask `nameserver` only; the folder goes with the LAN.
    pub fn use_nameserver(&mut self, host: &Host, nameserver: &str) {
        let dir = std::path::Path::new("/etc/netns").join(&host.ns);
        std::fs::create_dir_all(&dir).expect("make /etc/netns/NS");
        self.etc_dirs.push(dir.clone());
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:2\n"),
        )
        .expect("write the namespace's resolv.conf");
    }
}

/// Limits what `host` sends on its LAN link to `rate` (`tc tbf`, e.g. `100mbit`): a slow
/// origin, so that downloads last long enough for a swarm to form. The limit goes with
/// the host's namespace.
pub fn shape(host: &Host, rate: &str) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &host.ns, "tc", "qdisc", "add", "dev", "eth0", "root",
        ])
        .args(["tbf", "rate", rate, "burst", "128kb", "latency", "100ms"])
        .output()
        .expect("run tc (iproute2)");
    assert!(
        out.status.success(),
        "tc qdisc add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for dir in &self.etc_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
