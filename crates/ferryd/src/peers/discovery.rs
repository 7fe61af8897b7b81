//! Finding peers: DNS-SD over multicast DNS (`_ferry-peer._tcp.local.`, the `mdns-sd`
//! crate; Avahi sees the same records) announcing this node with its fleet id, and
//! browsing for the others of the same fleet; plus the static list of `ferryd.toml`.

use std::sync::Arc;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio_util::sync::CancellationToken;

use super::directory::{Directory, Found};

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_ferry-peer._tcp.local.";

/// How often browsing starts over, so that records still cached show up again for peers
/// that were dropped.
const REBROWSE: Duration = Duration::from_secs(30);

/// Adds the static peers to the directory.
pub fn add_static(directory: &Directory, peers: &[String]) {
    for p in peers {
        directory.add(p, p, Found::Static);
    }
}

/// The running announcement and browser.
pub struct Mdns {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Mdns {
    /// Announces this node (`node`, of fleet `fleet`, on `port`) and feeds the peers of the
    /// same fleet that announce themselves to `directory` until `stop` fires.
    pub fn start(
        directory: Arc<Directory>,
        node: &str,
        fleet: &str,
        port: u16,
        stop: CancellationToken,
    ) -> anyhow::Result<Mdns> {
        let daemon = ServiceDaemon::new()?;
        // The instance name is the node's name and a random suffix: two daemons with the
        // same certificate name still announce apart, and this one knows its own.
        let me = format!(
            "{}-{}",
            sanitize(node),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let host = format!("{me}.local.");
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &me,
            &host,
            "",
            port,
            &[("fleet", fleet), ("node", node), ("v", "1")][..],
        )?
        .enable_addr_auto();
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        let browser = daemon.clone();
        let fleet = fleet.to_string();
        let own = fullname.clone();
        std::thread::Builder::new()
            .name("ferryd-mdns".into())
            .spawn(move || browse(browser, directory, fleet, own, stop))?;
        Ok(Mdns { daemon, fullname })
    }

    /// Says goodbye on the link and stops.
    pub fn shutdown(&self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if s.is_empty() {
        "ferry".into()
    } else {
        s
    }
}

fn browse(
    daemon: ServiceDaemon,
    directory: Arc<Directory>,
    fleet: String,
    own: String,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let Ok(events) = daemon.browse(SERVICE_TYPE) else {
            return;
        };
        let until = std::time::Instant::now() + REBROWSE;
        while !stop.is_cancelled() && std::time::Instant::now() < until {
            let event = match events.recv_timeout(Duration::from_millis(500)) {
                Ok(e) => e,
                Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
                Err(_) => return,
            };
            match event {
                ServiceEvent::ServiceResolved(s) => {
                    if s.fullname == own
                        || s.txt_properties.get_property_val_str("fleet") != Some(fleet.as_str())
                    {
                        continue;
                    }
                    for ip in s
                        .addresses
                        .iter()
                        .filter(|a| a.is_ipv4() && !a.is_loopback())
                    {
                        let address = std::net::SocketAddr::new(ip.to_ip_addr(), s.port);
                        directory.add(&s.fullname, &address.to_string(), Found::Mdns);
                    }
                }
                ServiceEvent::ServiceRemoved(_, fullname) => directory.remove_named(&fullname),
                _ => {}
            }
        }
        let _ = daemon.stop_browse(SERVICE_TYPE);
    }
}
