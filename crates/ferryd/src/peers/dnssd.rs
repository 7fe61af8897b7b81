//! Finding peers beyond the local link: unicast DNS-SD (RFC 6763) in the site's ordinary
//! DNS, read through the system's resolver (`/etc/resolv.conf`, `hickory-resolver`).
//!
//! For each browse domain `D` of `dns_sd_domains`, every `dns_sd_interval`:
//! `PTR _ferry-peer._tcp.D` gives instance names; each instance's `SRV` gives a target host
//! and port, its `TXT` the same keys the mDNS announcement carries (`fleet`, `node`, `v`);
//! the target's `A` records give the addresses. A `fleet=` that names another fleet keeps
//! the instance out; no `fleet=` lets it in (the peer's certificate decides, as for every
//! peer). The peers found enter the directory as [`Found::DnsSd`]; one whose records are
//! gone stays until it stops answering its checks, as an mDNS-found peer does.
//! A failed lookup is logged at WARN once per change of what fails, not every interval.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio_util::sync::CancellationToken;

use super::directory::{Directory, Found};

/// The service label under a browse domain (the mDNS type without `.local.`).
pub const SERVICE: &str = "_ferry-peer._tcp";

/// One instance's records, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `<instance>._ferry-peer._tcp.<domain>.`
    pub name: String,
    /// The SRV target host.
    pub target: String,
    /// The SRV port.
    pub port: u16,
    /// The TXT strings, each `key=value` (or a bare key).
    pub txt: Vec<Vec<u8>>,
}

/// A TXT key's value (RFC 6763 §6.4: keys are case-insensitive, the first one counts).
pub fn txt_value<'a>(txt: &'a [Vec<u8>], key: &str) -> Option<&'a [u8]> {
    txt.iter().find_map(|s| {
        let (k, v) = match s.iter().position(|&b| b == b'=') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (&s[..], &[][..]),
        };
        k.eq_ignore_ascii_case(key.as_bytes()).then_some(v)
    })
}

/// The peer addresses (`host:port`) an instance stands for, given its target's
/// addresses: none when its TXT names another fleet or its SRV says "no service here"
/// (target `.`, RFC 2782) or port 0.
pub fn peer_addresses(instance: &Instance, fleet: &str, addresses: &[IpAddr]) -> Vec<String> {
    if let Some(f) = txt_value(&instance.txt, "fleet") {
        if f != fleet.as_bytes() {
            return Vec::new();
        }
    }
    if instance.port == 0 || instance.target.is_empty() || instance.target == "." {
        return Vec::new();
    }
    addresses
        .iter()
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .map(|a| SocketAddr::new(*a, instance.port).to_string())
        .collect()
}

/// The browse name of a domain: `_ferry-peer._tcp.<domain>.` (fully qualified, so that the
/// resolver's search list is not tried).
pub fn browse_name(domain: &str) -> String {
    format!("{SERVICE}.{}.", domain.trim_end_matches('.'))
}

/// Starts browsing `domains` every `every` until `stop` fires; an instance whose TXT
/// `node=` is `node` (this node's own record) is left out.
pub fn start(
    directory: Arc<Directory>,
    domains: Vec<String>,
    fleet: String,
    node: String,
    every: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut builder = TokioResolver::builder_tokio()
        .map_err(|e| anyhow::anyhow!("reading the system's resolver configuration: {e}"))?;
    // Records are read again every interval: the resolver's own cache would only hide a
    // change for the records' TTL.
    builder.options_mut().cache_size = 0;
    let resolver = builder.build();
    tokio::spawn(async move {
        let mut failing = Failing::default();
        loop {
            for domain in &domains {
                let outcome = browse(&resolver, domain, &fleet, &node).await;
                let problem = match outcome {
                    Ok(found) => {
                        for (name, address) in &found {
                            directory.add(name, address, Found::DnsSd);
                        }
                        String::new()
                    }
                    Err(e) => e,
                };
                match failing.note(domain, problem) {
                    Some(Change::Works) => tracing::info!(domain, "DNS-SD browsing works again"),
                    Some(Change::Fails(problem)) => tracing::warn!(
                        domain,
                        "DNS-SD browsing of {}: {problem}",
                        browse_name(domain)
                    ),
                    None => {}
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
    Ok(())
}

/// What failed at the last browse, by domain: a failure is told when it changes, not at
/// every interval.
#[derive(Default)]
struct Failing(HashMap<String, String>);

/// A change worth a log line.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Works,
    Fails(String),
}

impl Failing {
    /// Notes the outcome of a browse of `domain` (`problem` empty: it worked).
    fn note(&mut self, domain: &str, problem: String) -> Option<Change> {
        let before = self.0.get(domain).map(String::as_str).unwrap_or("");
        if before == problem {
            return None;
        }
        let change = if problem.is_empty() {
            Change::Works
        } else {
            Change::Fails(problem.clone())
        };
        self.0.insert(domain.to_string(), problem);
        Some(change)
    }
}

/// One browse of one domain: the peers found, `(instance name, host:port)`, or what went
/// wrong (a whole-domain failure; an instance whose records are broken is skipped with
/// its reason in the message only if no instance worked).
async fn browse(
    resolver: &TokioResolver,
    domain: &str,
    fleet: &str,
    node: &str,
) -> Result<Vec<(String, String)>, String> {
    let ptr = resolver
        .lookup(browse_name(domain), RecordType::PTR)
        .await
        .map_err(|e| describe(&e))?;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for rdata in ptr.iter() {
        let RData::PTR(instance) = rdata else {
            continue;
        };
        let name = instance.0.to_ascii();
        match resolve_instance(resolver, &name).await {
            Ok((inst, addresses)) => {
                if txt_value(&inst.txt, "node") == Some(node.as_bytes()) {
                    continue; // this node's own record
                }
                for address in peer_addresses(&inst, fleet, &addresses) {
                    found.push((inst.name.clone(), address));
                }
            }
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if found.is_empty() && !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(found)
}

/// An instance's SRV and TXT records and its target's addresses.
async fn resolve_instance(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(Instance, Vec<IpAddr>), String> {
    let srv = resolver
        .srv_lookup(name)
        .await
        .map_err(|e| format!("SRV: {}", describe(&e)))?;
    // RFC 2782: the lowest priority first; one target is enough for a peer.
    let Some(best) = srv
        .iter()
        .min_by_key(|s| (s.priority(), u16::MAX - s.weight()))
    else {
        return Err("SRV: no record".into());
    };
    let txt = match resolver.txt_lookup(name).await {
        Ok(t) => t
            .iter()
            .flat_map(|t| t.txt_data().iter().map(|s| s.to_vec()))
            .collect(),
        // RFC 6763 §6: every instance has a TXT record, but a missing one is no reason
        // to ignore the peer.
        Err(_) => Vec::new(),
    };
    let inst = Instance {
        name: name.to_string(),
        target: best.target().to_ascii(),
        port: best.port(),
        txt,
    };
    if inst.target == "." || inst.port == 0 {
        return Ok((inst, Vec::new()));
    }
    let addresses = resolver
        .lookup_ip(best.target().clone())
        .await
        .map_err(|e| format!("address of {}: {}", inst.target, describe(&e)))?
        .iter()
        .collect();
    Ok((inst, addresses))
}

/// A lookup's failure in a few words.
fn describe(e: &hickory_resolver::ResolveError) -> String {
    if e.is_nx_domain() {
        "no such name (NXDOMAIN)".into()
    } else if e.is_no_records_found() {
        "no records".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(txt: &[&str], target: &str, port: u16) -> Instance {
        Instance {
            name: "b._ferry-peer._tcp.site.test.".into(),
            target: target.into(),
            port,
            txt: txt.iter().map(|s| s.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn records_become_peer_addresses() {
        let ip: IpAddr = "10.77.2.2".parse().unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let i = instance(&["fleet=F1", "node=b", "v=1"], "b.site.test.", 7380);
        assert_eq!(
            peer_addresses(&i, "F1", &[ip, loopback]),
            ["10.77.2.2:7380"]
        );
        // Another fleet's instance is not a peer.
        assert!(peer_addresses(&i, "F2", &[ip]).is_empty());
        // No fleet key: the certificate decides.
        let i = instance(&["node=b"], "b.site.test.", 7381);
        assert_eq!(peer_addresses(&i, "F1", &[ip]), ["10.77.2.2:7381"]);
        let v6: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(peer_addresses(&i, "F1", &[v6]), ["[fd00::2]:7381"]);
        // "No service here" (RFC 2782).
        assert!(peer_addresses(&instance(&[], ".", 7380), "F1", &[ip]).is_empty());
        assert!(peer_addresses(&instance(&[], "b.", 0), "F1", &[ip]).is_empty());
    }

    #[test]
    fn a_failure_is_told_once_until_it_changes() {
        let mut f = Failing::default();
        assert_eq!(
            f.note("a.test", String::new()),
            None,
            "working from the start"
        );
        let nx = "no such name (NXDOMAIN)".to_string();
        assert_eq!(
            f.note("a.test", nx.clone()),
            Some(Change::Fails(nx.clone()))
        );
        assert_eq!(f.note("a.test", nx.clone()), None, "not every interval");
        assert_eq!(
            f.note("b.test", nx.clone()),
            Some(Change::Fails(nx.clone()))
        );
        let timeout = "request timed out".to_string();
        assert_eq!(
            f.note("a.test", timeout.clone()),
            Some(Change::Fails(timeout))
        );
        assert_eq!(f.note("a.test", String::new()), Some(Change::Works));
        assert_eq!(f.note("a.test", String::new()), None);
    }

    #[test]
    fn txt_keys_are_case_insensitive_and_the_first_counts() {
        let txt: Vec<Vec<u8>> = ["Node=a", "node=b", "flag", "fleet="]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(txt_value(&txt, "node"), Some(&b"a"[..]));
        assert_eq!(txt_value(&txt, "flag"), Some(&b""[..]));
        assert_eq!(txt_value(&txt, "fleet"), Some(&b""[..]));
        assert_eq!(txt_value(&txt, "v"), None);
        assert_eq!(browse_name("site.test"), "_ferry-peer._tcp.site.test.");
        assert_eq!(browse_name("site.test."), "_ferry-peer._tcp.site.test.");
    }
}
