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
                    "certificate for {name} in {}: copy that folder to ~/.config/ferry/fleet/ \
                     on {name}, set `enabled = true` under [peers] in its ferryd.toml, and \
                     restart its ferryd",
                    out.display()
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
