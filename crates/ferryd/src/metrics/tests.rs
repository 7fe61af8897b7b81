//! The OpenMetrics text ferryd writes, and the Grafana dashboard shipped for it
//! (`dist/grafana/ferry.json`), which may query only metrics ferryd serves.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::model::{JobState, PeerCounts};

/// A snapshot with every metric present (peer caching on).
fn full() -> MetricsSnapshot {
    MetricsSnapshot {
        jobs_by_state: JobState::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i as u64))
            .collect(),
        jobs_yielding: 2,
        active_transfers: 3,
        bytes_from_origin: 1000,
        bytes_from_peers: 250,
        files_transferred: 7,
        jobs_transferred: 5,
        errors: vec![("http_404".into(), 4), ("timeout".into(), 1)],
        peers: Some(PeerCounts {
            new: 0,
            up: 2,
            unreachable: 0,
            banned: 1,
            cache_entries: 6,
            cache_bytes: 4096,
            cache_limit: 1 << 30,
            bytes_served: 123,
            lookup_hits: 9,
            lookup_misses: 2,
        }),
    }
}

/// The samples of an OpenMetrics text: "name{labels}" → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// The metric names of the samples.
fn names(text: &str) -> BTreeSet<String> {
    samples(text)
        .keys()
        .map(|s| s.split('{').next().unwrap().to_string())
        .collect()
}

#[test]
fn every_metric_is_written_with_its_value() {
    let text = encode(&full());
    assert!(text.ends_with("# EOF\n"), "{text}");
    let s = samples(&text);
    assert_eq!(s["ferry_jobs{state=\"suspended\"}"], 0.0);
    assert_eq!(s["ferry_jobs{state=\"queued\"}"], 1.0);
    assert_eq!(s["ferry_jobs{state=\"cancelled\"}"], 8.0);
    assert_eq!(s["ferry_jobs_yielding"], 2.0);
    assert_eq!(s["ferry_transfers_active"], 3.0);
    assert_eq!(s["ferry_received_bytes_total{source=\"origin\"}"], 1000.0);
    assert_eq!(s["ferry_received_bytes_total{source=\"peers\"}"], 250.0);
    assert_eq!(s["ferry_files_transferred_total"], 7.0);
    assert_eq!(s["ferry_jobs_transferred_total"], 5.0);
    assert_eq!(s["ferry_job_errors_total{code=\"http_404\"}"], 4.0);
    assert_eq!(s["ferry_peers{state=\"up\"}"], 2.0);
    assert_eq!(s["ferry_peers{state=\"banned\"}"], 1.0);
    assert_eq!(s["ferry_peers{state=\"new\"}"], 0.0);
    assert_eq!(s["ferry_peer_cache_bytes"], 4096.0);
    assert_eq!(s["ferry_peer_cache_entries"], 6.0);
    assert_eq!(s["ferry_peer_served_bytes_total"], 123.0);
    assert_eq!(s["ferry_peer_cache_lookups_total{result=\"hit\"}"], 9.0);
    assert_eq!(s["ferry_peer_cache_lookups_total{result=\"miss\"}"], 2.0);
    assert_eq!(
        s[&format!(
            "ferry_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
    assert!(
        text.contains("# TYPE ferry_received_bytes counter"),
        "{text}"
    );
    assert!(text.contains("# UNIT ferry_received_bytes bytes"), "{text}");
    assert_eq!(
        names(&text),
        METRIC_NAMES.iter().map(|n| n.to_string()).collect(),
        "METRIC_NAMES lists what is served"
    );
}

#[test]
fn without_peer_caching_no_peer_metric_is_written() {
    let text = encode(&MetricsSnapshot {
        peers: None,
        ..full()
    });
    assert!(
        !names(&text).iter().any(|n| n.starts_with("ferry_peer")),
        "{text}"
    );
    assert!(names(&text).contains("ferry_jobs"));
}

/// Every string in `v` under a key named `expr` or `query` (panels' targets and
/// template variables).
fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `ferry_…` names a PromQL expression uses.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ferry_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_ferryd_serves() {
    // Read at build time: the test binary is rebuilt when the dashboard changes.
    let path = "dist/grafana/ferry.json";
    let text = include_str!("../../../../dist/grafana/ferry.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
    assert_eq!(
        dashboard["__inputs"][0]["name"], "DS_PROMETHEUS",
        "the dashboard asks for its Prometheus data source on import"
    );
    let served = names(&encode(&full()));
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names_in(e)).collect();
    assert!(
        used.len() >= 10,
        "the panels query ferry's metrics: {used:?}"
    );
    let unknown: Vec<&String> = used.difference(&served).collect();
    assert!(
        unknown.is_empty(),
        "{path} queries {unknown:?}, which ferryd does not serve"
    );
    // Every panel's target has a query, and names the dashboard's data source.
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| e.contains("ferry_")),
                "{}",
                panel["title"]
            );
        }
    }
}

#[test]
fn names_are_found_in_expressions() {
    assert_eq!(
        metric_names_in(
            "sum by (source) (rate(ferry_received_bytes_total{x=\"y\"}[5m])) / ferry_jobs"
        ),
        vec!["ferry_received_bytes_total", "ferry_jobs"]
    );
    assert!(metric_names_in("not_ferry_jobs").is_empty());
}
