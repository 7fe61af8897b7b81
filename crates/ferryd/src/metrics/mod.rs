//! The Prometheus/OpenMetrics endpoint (`[metrics] listen`, off by default): at each
//! scrape a [`MetricsSnapshot`] is read from its [`Source`] (a per-user daemon's facade,
//! or the system-wide daemon's broker, which adds up its workers' snapshots) and written
//! as OpenMetrics text by prometheus-client (`encode`, this file); `server.rs` serves it
//! as `GET /metrics`.
//!
//! Nothing is kept here between scrapes: the registry is built from the snapshot each
//! time, so a counter is whatever the facade or the engine counted since the daemon
//! started (Prometheus sees a restart as a counter reset).
//!
//! May use: `service` (its snapshot only), `model`, `config`. Like `rpc`, a front of the
//! facade.

pub mod server;

use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use std::sync::Arc;

use crate::model::MetricsSnapshot;
use crate::service::Service;

pub use server::{serve, Listener};

/// Where a scrape's numbers come from.
#[async_trait::async_trait]
pub trait Source: Send + Sync + 'static {
    /// The numbers now.
    async fn snapshot(&self) -> MetricsSnapshot;
}

#[async_trait::async_trait]
impl Source for Service {
    async fn snapshot(&self) -> MetricsSnapshot {
        self.metrics_snapshot().await
    }
}

/// A shared source, as the server holds it.
pub type SharedSource = Arc<dyn Source>;

/// The content type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The names of the metric families ferryd serves (as a query names them: counters with
/// `_total`, units in the name). The `ferry_peer*` ones only while peer caching is on.
pub const METRIC_NAMES: &[&str] = &[
    "ferry_build_info",
    "ferry_jobs",
    "ferry_jobs_yielding",
    "ferry_transfers_active",
    "ferry_received_bytes_total",
    "ferry_files_transferred_total",
    "ferry_jobs_transferred_total",
    "ferry_job_errors_total",
    "ferry_peers",
    "ferry_peer_cache_bytes",
    "ferry_peer_cache_limit_bytes",
    "ferry_peer_cache_entries",
    "ferry_peer_served_bytes_total",
    "ferry_peer_cache_lookups_total",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

fn gauge(n: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(n).unwrap_or(i64::MAX));
    g
}

fn counter(n: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(n);
    c
}

/// Registers a family of gauges, one per label value.
fn gauges<L>(registry: &mut Registry, name: &str, help: &str, values: Vec<(L, u64)>)
where
    L: Clone + std::fmt::Debug + std::hash::Hash + Eq + EncodeLabelSet + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (label, n) in values {
        family
            .get_or_create(&label)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register(name, help, family);
}

/// The snapshot as OpenMetrics text (ending in `# EOF`).
pub fn encode(s: &MetricsSnapshot) -> String {
    let mut r = Registry::default();
    r.register(
        "ferry_build",
        "The ferryd serving these metrics",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    gauges(
        &mut r,
        "ferry_jobs",
        "Jobs stored, by state",
        s.jobs_by_state
            .iter()
            .map(|(state, n)| {
                (
                    StateLabel {
                        state: state.as_str(),
                    },
                    *n,
                )
            })
            .collect(),
    );
    r.register(
        "ferry_jobs_yielding",
        "Jobs whose transfer yields to other traffic now",
        gauge(s.jobs_yielding),
    );
    r.register(
        "ferry_transfers_active",
        "Jobs transferring now",
        gauge(s.active_transfers),
    );
    let received = Family::<SourceLabel, Counter>::default();
    received
        .get_or_create(&SourceLabel { source: "origin" })
        .inc_by(s.bytes_from_origin);
    received
        .get_or_create(&SourceLabel { source: "peers" })
        .inc_by(s.bytes_from_peers);
    r.register_with_unit(
        "ferry_received",
        "Bytes downloaded since ferryd started, by source: origin, or peers (their caches and the swarm)",
        Unit::Bytes,
        received,
    );
    r.register(
        "ferry_files_transferred",
        "Files transferred since ferryd started",
        counter(s.files_transferred),
    );
    r.register(
        "ferry_jobs_transferred",
        "Jobs that reached transferred since ferryd started",
        counter(s.jobs_transferred),
    );
    let errors = Family::<CodeLabel, Counter>::default();
    for (code, n) in &s.errors {
        errors
            .get_or_create(&CodeLabel { code: code.clone() })
            .inc_by(*n);
    }
    r.register(
        "ferry_job_errors",
        "Transfer failures recorded on jobs since ferryd started (transient ones too), by error code",
        errors,
    );
    if let Some(p) = &s.peers {
        gauges(
            &mut r,
            "ferry_peers",
            "Peers of the fleet this node knows, by state",
            vec![
                (StateLabel { state: "new" }, p.new),
                (StateLabel { state: "up" }, p.up),
                (
                    StateLabel {
                        state: "unreachable",
                    },
                    p.unreachable,
                ),
                (StateLabel { state: "banned" }, p.banned),
            ],
        );
        r.register_with_unit(
            "ferry_peer_cache",
            "Bytes in the peer cache",
            Unit::Bytes,
            gauge(p.cache_bytes),
        );
        r.register_with_unit(
            "ferry_peer_cache_limit",
            "The peer cache's size limit",
            Unit::Bytes,
            gauge(p.cache_limit),
        );
        r.register(
            "ferry_peer_cache_entries",
            "Files in the peer cache",
            gauge(p.cache_entries),
        );
        r.register_with_unit(
            "ferry_peer_served",
            "Bytes served to peers since ferryd started (from the cache and the swarm)",
            Unit::Bytes,
            counter(p.bytes_served),
        );
        let lookups = Family::<ResultLabel, Counter>::default();
        lookups
            .get_or_create(&ResultLabel { result: "hit" })
            .inc_by(p.lookup_hits);
        lookups
            .get_or_create(&ResultLabel { result: "miss" })
            .inc_by(p.lookup_misses);
        r.register(
            "ferry_peer_cache_lookups",
            "Peers' lookups of content in this node's cache since ferryd started: hit (it was there) or miss",
            lookups,
        );
    }
    let mut out = String::new();
    encode_text(&mut out, &r).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests;
