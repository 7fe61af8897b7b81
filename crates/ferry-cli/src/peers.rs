//! `ferry peers …`: making a fleet (no daemon needed), and peer caching's status and
//! cache (asked of the daemon).

use std::path::PathBuf;

use anyhow::Result;
use ferry_common::units::format_size;

use crate::commands::Ctx;
use crate::{fleet, output};
use ferry_cli::args::{CaCommand, CacheCommand, CertCommand, PeersCommand};

fn when(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let secs = ((now - ms) / 1000).max(0) as u64;
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(secs))
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days before a node certificate's expiry from which `peers status` warns.
const WARN_DAYS: i64 = 30;

/// The status line of this node's certificate expiring at `expires_ms`, and a warning
/// when it expires within [`WARN_DAYS`] or has expired.
fn certificate(expires_ms: i64, now_ms: i64) -> (String, Option<String>) {
    if expires_ms <= 0 {
        return ("expiry unknown".into(), None);
    }
    let date = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(expires_ms as u64),
    );
    let days = (expires_ms - now_ms).div_euclid(86_400_000);
    const RENEW: &str = "renew it with `ferry peers cert renew` where the fleet CA is \
                         (README, \"Peer caching\")";
    if expires_ms <= now_ms {
        (
            format!("expired {date}"),
            Some(format!(
                "this node's fleet certificate has expired: no peer accepts it; {RENEW}"
            )),
        )
    } else if days < WARN_DAYS {
        (
            format!("expires {date} (in {days} days)"),
            Some(format!(
                "this node's fleet certificate expires in {days} days; {RENEW}"
            )),
        )
    } else {
        (format!("expires {date} (in {days} days)"), None)
    }
}

pub async fn run(ctx: &Ctx, c: PeersCommand) -> Result<i32> {
    match c {
        PeersCommand::Ca(CaCommand::New { dir }) => {
            let (cert, key) = fleet::ca_new(&dir)?;
            if !ctx.json {
                outln!(
                    "fleet CA made: {} (give it to every machine)",
                    cert.display()
                );
                outln!("               {} (keep it private)", key.display());
                outln!("next: ferry peers cert issue --ca {} NAME", dir.display());
            }
        }
        PeersCommand::Cert(CertCommand::Issue { ca, name, out }) => {
            let out = out.unwrap_or_else(|| PathBuf::from(&name));
            fleet::cert_issue(&ca, &name, &out)?;
            if !ctx.json {
                outln!(
                    "certificate for {name} in {}: on {name}, copy the folder's three files \
                     (not the folder) into /etc/ferry/fleet/ for the system-wide daemon, or \
                     ~/.config/ferry/fleet/ for a user's daemon; set `enabled = true` under \
                     [peers] in its ferryd.toml and restart its ferryd (README, \"Peer caching\")",
                    out.display()
                );
            }
        }
        PeersCommand::Cert(CertCommand::Renew {
            ca,
            from,
            new_key,
            out,
        }) => {
            let out = match out {
                Some(o) => o,
                None => {
                    // The name is in the certificate: read it once to name the folder.
                    let name = fleet::cert_name(&from)?;
                    PathBuf::from(format!("{name}-renewed"))
                }
            };
            let name = fleet::cert_renew(&ca, &from, new_key, &out)?;
            if !ctx.json {
                outln!(
                    "certificate for {name} renewed in {} ({} key): on {name}, replace the \
                     files of its fleet folder with the folder's three files and restart its \
                     ferryd",
                    out.display(),
                    if new_key { "a new" } else { "the same" }
                );
            }
        }
        PeersCommand::Cert(CertCommand::Revoke { ca, cert }) => {
            let (name, crl) = fleet::cert_revoke(&ca, &cert)?;
            if !ctx.json {
                outln!(
                    "certificate of {name} revoked: copy {} into every machine's fleet \
                     folder (/etc/ferry/fleet/ or ~/.config/ferry/fleet/) and restart their \
                     ferryd",
                    crl.display()
                );
            }
        }
        PeersCommand::Status => {
            let s = ctx.manager().await?.peers_status().await?;
            if ctx.json {
                output::json(&s);
            } else if !s.enabled {
                outln!("peer caching is off (enable it under [peers] in ferryd.toml)");
            } else {
                outln!("fleet:     {}", s.fleet_id);
                outln!("node:      {}", s.node_name);
                let (line, warning) = certificate(s.node_cert_expires_unix_ms, now_ms());
                outln!("cert:      {line}");
                if let Some(w) = warning {
                    eprintln!("ferry: warning: {w}");
                }
                outln!(
                    "listening: {} (discovery: {})",
                    s.listen_address,
                    s.discovery
                );
                outln!(
                    "cache:     {} entries, {} of {}",
                    s.cache_entries,
                    format_size(s.cache_bytes),
                    format_size(s.cache_limit_bytes)
                );
                outln!("served:    {}", format_size(s.bytes_served));
                outln!(
                    "{:<40}  {:<22}  {:<7}  {:<11}  {:>10}  SEEN",
                    "PEER",
                    "ADDRESS",
                    "FOUND",
                    "STATE",
                    "FETCHED"
                );
                for p in &s.peers {
                    outln!(
                        "{:<40}  {:<22}  {:<7}  {:<11}  {:>10}  {}",
                        p.name,
                        p.address,
                        serde_json::to_value(p.origin)?.as_str().unwrap_or("?"),
                        serde_json::to_value(p.state)?.as_str().unwrap_or("?"),
                        format_size(p.bytes_fetched),
                        when(p.last_seen_unix_ms)
                    );
                }
            }
        }
        PeersCommand::Cache(CacheCommand::List) => {
            let entries = ctx.manager().await?.cache_entries().await?;
            if ctx.json {
                output::json(&entries);
            } else {
                outln!(
                    "{:<32}  {:>10}  {:>10}  {:<12}  URL",
                    "ID",
                    "SIZE",
                    "SERVED",
                    "USED"
                );
                for e in &entries {
                    outln!(
                        "{:<32}  {:>10}  {:>10}  {:<12}  {}",
                        e.id,
                        format_size(e.length),
                        format_size(e.bytes_served),
                        when(e.last_access_unix_ms),
                        e.url
                    );
                }
            }
        }
        PeersCommand::Cache(CacheCommand::Clear) => {
            let (n, bytes) = ctx.manager().await?.clear_cache().await?;
            if ctx.json {
                outln!("{{\"entries_removed\":{n},\"bytes_removed\":{bytes}}}");
            } else {
                outln!("cache cleared: {n} entries, {}", format_size(bytes));
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::certificate;

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_certificate_line_warns_thirty_days_ahead() {
        let now = 1_800_000_000_000;
        let (line, warning) = certificate(now + 400 * DAY, now);
        assert!(line.contains("in 400 days"), "{line}");
        assert_eq!(warning, None);
        let (line, warning) = certificate(now + 29 * DAY + 1, now);
        assert!(line.contains("in 29 days"), "{line}");
        assert!(warning.unwrap().contains("ferry peers cert renew"));
        let (line, warning) = certificate(now - DAY, now);
        assert!(line.starts_with("expired"), "{line}");
        assert!(warning.unwrap().contains("has expired"));
        assert_eq!(certificate(0, now), ("expiry unknown".into(), None));
    }
}
