//! Peer caching between real daemons (`cargo test peer_cache`; needs root, `ip` from
//! iproute2 and nginx). Each machine is a ferryd with its own state, cache and address
//! in a network namespace of its own; the namespaces are joined by a bridge in another
//! namespace, and the origin is nginx in yet another, its access log counting the body
//! bytes it sent to each machine. Everything the tests make is removed when they end,
//! even when they fail (drop guards).

mod peer_cache_kit;

use std::process::Command;

use ferry_client::{Credentials, JobProperties, PeerOrigin, PeerState};
use ferry_testkit::{http_get_unix, metric_samples, sha256_hex, wait_until_future};
use peer_cache_kit::*;

const PEER_PORT: u16 = 7380;

/// A LAN with the origin at .1 and machines `names` at .2, .3, … of one fleet, each
/// with the others in its static list (or found by mDNS with `discovery = "mdns"`).
struct World {
    // Dropped last: machines and the origin stop before their namespaces go.
    machines: Vec<Machine>,
    origin: Origin,
    fleet: Fleet,
    lan: Lan,
}

impl Drop for World {
    fn drop(&mut self) {
        self.machines.clear();
    }
}

fn world(names: &[&str], discovery: &str, extra: &str) -> World {
    world_with(names, discovery, extra, &[])
}

/// [`world`], with `more_peers` in every static list too.
fn world_with(names: &[&str], discovery: &str, extra: &str, more_peers: &[&str]) -> World {
    let mut lan = Lan::new();
    let origin_host = lan.host("origin", 1);
    let hosts: Vec<Host> = names
        .iter()
        .enumerate()
        .map(|(i, n)| lan.host(n, 2 + i as u8))
        .collect();
    let origin = Origin::start(&origin_host);
    let fleet = Fleet::new();
    let machines = names
        .iter()
        .zip(&hosts)
        .map(|(name, host)| {
            let certs = fleet.issue(name);
            let others: Vec<String> = hosts
                .iter()
                .filter(|h| h.ip != host.ip)
                .map(|h| format!("{}:{PEER_PORT}", h.ip))
                .chain(more_peers.iter().map(|p| p.to_string()))
                .collect();
            Machine::start(
                host,
                Setup {
                    name,
                    certs: &certs,
                    discovery,
                    static_peers: if discovery == "mdns" {
                        Vec::new()
                    } else {
                        others
                    },
                    port: PEER_PORT,
                    extra,
                },
            )
        })
        .collect();
    World {
        machines,
        origin,
        fleet,
        lan,
    }
}

/// Flips bytes of every file in the cache folder of `m` (a peer that lies).
fn tamper_cache(m: &Machine) {
    let dir = m.env.state_dir.join("peer-cache");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        let mut data = std::fs::read(f.path()).unwrap();
        for b in data.iter_mut().step_by(4096) {
            *b ^= 0x5a;
        }
        std::fs::write(f.path(), data).unwrap();
        n += 1;
    }
    assert!(n > 0, "a cache file to alter in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_static_list_on_loopback() {
    let mut lan = Lan::new();
    let host = lan.loopback_only("lo");
    let origin = Origin::start(&host);
    let data = content(3 << 20, 1);
    origin.put("f.bin", &data);
    let url = origin.url("f.bin");
    let fleet = Fleet::new();
    let (ca, cb) = (fleet.issue("a"), fleet.issue("b"));
    // Each serves its metrics on a Unix socket (reachable from outside the namespace).
    let sockets = tempfile::tempdir().unwrap();
    let metrics = |name: &str| sockets.path().join(format!("{name}-metrics.sock"));
    let extra = |name: &str| {
        format!(
            "\n[metrics]\nlisten = \"unix:{}\"\n",
            metrics(name).display()
        )
    };
    let (extra_a, extra_b) = (extra("a"), extra("b"));
    let setup = |name, certs, port, peer: u16, extra| Setup {
        name,
        certs,
        discovery: "static",
        static_peers: vec![format!("127.0.0.1:{peer}")],
        port,
        extra,
    };
    let a = Machine::start(&host, setup("a", &ca, 7381, 7382, &extra_a));
    let b = Machine::start(&host, setup("b", &cb, 7382, 7381, &extra_b));
    let (ma, mb) = (a.manager().await, b.manager().await);
    peer_in_state(&mb, "127.0.0.1:7381", PeerState::Up).await;

    let ja = fetch(&ma, &url, &a.file("f.bin"), None).await;
    ja.complete().await.unwrap();
    cached(&ma, &url).await;
    let before = origin.log().len();

    let jb = fetch(&mb, &url, &b.file("f.bin"), None).await;
    let f = file0(&jb).await;
    assert_eq!(f.bytes_from_peers, data.len() as u64, "{f:?}");
    assert_eq!(f.bytes_from_origin, 0);
    assert_eq!(part_sha(&jb).await, sha256_hex(&data));
    let after: Vec<_> = origin.log().into_iter().skip(before).collect();
    assert!(
        after
            .iter()
            .all(|l| l.method == "HEAD" && l.body_bytes == 0),
        "B asked the origin only for its validators: {after:?}"
    );
    let served = ma.peers_status().await.unwrap().bytes_served;
    assert_eq!(served, data.len() as u64);

    // The metrics say the same: B received the file from its peer, A served it from its
    // cache after a lookup that hit.
    let scrape = |name: &str| {
        let a = http_get_unix(&metrics(name), "/metrics").expect("the metrics endpoint");
        assert_eq!(a.status, 200, "{}", a.body);
        metric_samples(&a.body)
    };
    let (sa, sb) = (scrape("a"), scrape("b"));
    let len = data.len() as f64;
    assert_eq!(
        sb["ferry_received_bytes_total{source=\"peers\"}"], len,
        "{sb:?}"
    );
    assert_eq!(
        sb["ferry_received_bytes_total{source=\"origin\"}"], 0.0,
        "{sb:?}"
    );
    assert_eq!(
        sa["ferry_received_bytes_total{source=\"origin\"}"], len,
        "{sa:?}"
    );
    assert_eq!(sa["ferry_peer_served_bytes_total"], len, "{sa:?}");
    assert!(
        sa["ferry_peer_cache_lookups_total{result=\"hit\"}"] >= 1.0,
        "{sa:?}"
    );
    assert_eq!(sa["ferry_peer_cache_entries"], 1.0, "{sa:?}");
    assert!(sa["ferry_peer_cache_bytes"] >= len, "{sa:?}");
    assert_eq!(sb["ferry_peers{state=\"up\"}"], 1.0, "{sb:?}");
    drop((a, b, origin));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_mdns_discovery_and_validated_file_before_complete() {
    let w = world(&["a", "b"], "mdns", "");
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let (ma, mb) = (a.manager().await, b.manager().await);
    // Real mDNS between the namespaces: each finds the other.
    peer_in_state(&ma, &b.peer_address(), PeerState::Up).await;
    peer_in_state(&mb, &a.peer_address(), PeerState::Up).await;
    let status = mb.peers_status().await.unwrap();
    assert!(status.enabled);
    assert_eq!(
        status.fleet_id,
        ma.peers_status().await.unwrap().fleet_id,
        "one fleet"
    );

    let data = content(64 << 20, 2);
    w.origin.put("big.bin", &data);
    let url = w.origin.url("big.bin");
    let ja = fetch(&ma, &url, &a.file("big.bin"), None).await;
    // Validated before `complete`: offered at once.
    ja.file(0)
        .await
        .unwrap()
        .set_validation_state(true)
        .await
        .unwrap();
    let entry = cached(&ma, &url).await;
    assert_eq!(entry.sha256, sha256_hex(&data));

    let jb = fetch(&mb, &url, &b.file("big.bin"), None).await;
    let f = file0(&jb).await;
    assert_eq!(f.bytes_from_peers, data.len() as u64, "{f:?}");
    assert_eq!(f.bytes_from_origin, 0);
    let info = jb.info().await.unwrap();
    assert_eq!(info.bytes_from_peers, data.len() as u64);
    assert_eq!(info.bytes_from_origin, 0);
    assert_eq!(part_sha(&jb).await, sha256_hex(&data));
    let reqs = w.origin.requests_of(&b.host.ip);
    assert!(
        !reqs.is_empty() && reqs.iter().all(|l| l.method == "HEAD" && l.body_bytes == 0),
        "the origin sent B no body bytes, only the HEAD: {reqs:?}"
    );
    assert_eq!(w.origin.body_bytes_to(&a.host.ip), data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_unvalidated_file_served_only_after_complete() {
    let w = world(&["a", "b"], "static", "");
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let (ma, mb) = (a.manager().await, b.manager().await);
    peer_in_state(&mb, &a.peer_address(), PeerState::Up).await;
    let data = content(2 << 20, 3);
    w.origin.put("f.bin", &data);
    let url = w.origin.url("f.bin");

    let ja = fetch(&ma, &url, &a.file("f.bin"), None).await;
    assert!(
        cached_urls(&ma).await.is_empty(),
        "not offered before complete"
    );
    let jb = fetch(&mb, &url, &b.file("first.bin"), None).await;
    let f = file0(&jb).await;
    assert_eq!(
        (f.bytes_from_origin, f.bytes_from_peers),
        (data.len() as u64, 0)
    );
    assert_eq!(w.origin.body_bytes_to(&b.host.ip), data.len() as u64);

    ja.complete().await.unwrap();
    cached(&ma, &url).await;
    let jb2 = fetch(&mb, &url, &b.file("second.bin"), None).await;
    let f = file0(&jb2).await;
    assert_eq!(
        (f.bytes_from_origin, f.bytes_from_peers),
        (0, data.len() as u64)
    );
    assert_eq!(part_sha(&jb2).await, sha256_hex(&data));
    assert_eq!(
        w.origin.body_bytes_to(&b.host.ip),
        data.len() as u64,
        "nothing more from the origin"
    );
}

/// The seed's rule at a size the swarm takes (64 MiB, pieces of 1 MiB): a file without a
/// SHA-256 that A transferred, but neither validated nor completed, reaches no other
/// machine — not while A downloads it, not in the seconds after — and reaches them once
/// A validates it (`ferry files validate`), at once. A's cache entry then counts what it
/// served, and the serve is a use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_seeds_rule_64mib_unvalidated_stays_home_validated_is_served() {
    let w = world(&["a", "b"], "static", "");
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let (ma, mb) = (a.manager().await, b.manager().await);
    peer_in_state(&mb, &a.peer_address(), PeerState::Up).await;
    let data = content(64 << 20, 11);
    let len = data.len() as u64;
    w.origin.put("big.bin", &data);
    let url = w.origin.url("big.bin");

    let ja = fetch(&ma, &url, &a.file("big.bin"), None).await;
    // B starts right after A's transfer ended (within what was the swarm's grace window).
    let jb = fetch(&mb, &url, &b.file("first.bin"), None).await;
    assert!(cached_urls(&ma).await.is_empty(), "A offered nothing");
    let f = file0(&jb).await;
    assert_eq!((f.bytes_from_origin, f.bytes_from_peers), (len, 0), "{f:?}");
    assert_eq!(part_sha(&jb).await, sha256_hex(&data));
    assert_eq!(
        w.origin.body_bytes_to(&b.host.ip),
        len,
        "the origin sent B the whole body"
    );
    assert_eq!(ma.peers_status().await.unwrap().bytes_served, 0);

    // A's application (here its admin) vouches for the file: the fleet's when the
    // command returns, no waiting.
    let said = a.ferry(&["files", "validate", &ja.id().to_string(), "0", "--valid"]);
    assert!(said.contains("validated"), "{said}");
    assert_eq!(
        cached_urls(&ma).await,
        vec![url.clone()],
        "in A's cache at once"
    );

    let jb2 = fetch(&mb, &url, &b.file("second.bin"), None).await;
    let f = file0(&jb2).await;
    assert_eq!((f.bytes_from_origin, f.bytes_from_peers), (0, len), "{f:?}");
    assert_eq!(part_sha(&jb2).await, sha256_hex(&data));
    assert_eq!(w.origin.body_bytes_to(&b.host.ip), len, "nothing more");

    // The entry's counters moved: what `ferry peers cache list` shows an admin.
    let listed: serde_json::Value =
        serde_json::from_str(&a.ferry(&["--json", "peers", "cache", "list"])).unwrap();
    let entry = &listed.as_array().expect("a list")[0];
    assert_eq!(entry["url"], url.as_str(), "{listed}");
    assert_eq!(entry["bytes_served"], len, "{listed}");
    assert!(
        entry["last_access_unix_ms"].as_i64().unwrap() > entry["created_unix_ms"].as_i64().unwrap(),
        "B's look-up and fetch were uses: {listed}"
    );
    let text = a.ferry(&["peers", "cache", "list"]);
    assert_eq!(
        text.matches("64.0 MiB").count(),
        2,
        "SIZE and SERVED of the entry: {text}"
    );
}

/// A file the application rejects leaves the fleet's view at once: B fetched it from A
/// a moment ago; after A's `ferry files validate … --invalid` no peer offers it and B's
/// next download comes whole from the origin. Likewise for a cache emptied by its admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_rejected_or_cleared_file_is_offered_by_no_peer() {
    let w = world(&["a", "b"], "static", "");
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let (ma, mb) = (a.manager().await, b.manager().await);
    peer_in_state(&mb, &a.peer_address(), PeerState::Up).await;
    let data = content(64 << 20, 12);
    let len = data.len() as u64;
    w.origin.put("f.bin", &data);
    let url = w.origin.url("f.bin");

    let ja = fetch(&ma, &url, &a.file("f.bin"), None).await;
    a.ferry(&["files", "validate", &ja.id().to_string(), "0", "--valid"]);
    let jb = fetch(&mb, &url, &b.file("1.bin"), None).await;
    assert_eq!(file0(&jb).await.bytes_from_peers, len, "offered by A");

    let said = a.ferry(&["files", "validate", &ja.id().to_string(), "0", "--invalid"]);
    assert!(said.contains("rejected"), "{said}");
    assert!(
        cached_urls(&ma).await.is_empty(),
        "gone from A's cache at once"
    );
    let jb = fetch(&mb, &url, &b.file("2.bin"), None).await;
    let f = file0(&jb).await;
    assert_eq!((f.bytes_from_origin, f.bytes_from_peers), (len, 0), "{f:?}");
    assert_eq!(w.origin.body_bytes_to(&b.host.ip), len);
    assert_eq!(part_sha(&jb).await, sha256_hex(&data));

    // Another file, completed on A (so cached), then the cache cleared by A's admin.
    w.origin.put("g.bin", &data[..32 << 20]);
    let url_g = w.origin.url("g.bin");
    let ja = fetch(&ma, &url_g, &a.file("g.bin"), None).await;
    ja.complete().await.unwrap();
    cached(&ma, &url_g).await;
    a.ferry(&["peers", "cache", "clear"]);
    let jb = fetch(&mb, &url_g, &b.file("g.bin"), None).await;
    let f = file0(&jb).await;
    assert_eq!(
        (f.bytes_from_origin, f.bytes_from_peers),
        (32 << 20, 0),
        "{f:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_peer_killed_while_serving() {
    // A and C serve slowly, so that A can be killed in the middle.
    let mut w = world(&["a", "b", "c"], "static", "max_upload_rate = \"2MiB/s\"");
    let data = content(24 << 20, 4);
    w.origin.put("f.bin", &data);
    let url = w.origin.url("f.bin");
    for i in [0, 2] {
        let m = w.machines[i].manager().await;
        let j = fetch(&m, &url, &w.machines[i].file("f.bin"), None).await;
        j.complete().await.unwrap();
        cached(&m, &url).await;
    }
    let mb = w.machines[1].manager().await;
    peer_in_state(&mb, &w.machines[0].peer_address(), PeerState::Up).await;
    peer_in_state(&mb, &w.machines[2].peer_address(), PeerState::Up).await;

    // B's own rate keeps the origin from taking everything at once.
    let jb = mb.create_job("b").await.unwrap();
    jb.set(JobProperties {
        bandwidth_limit: Some(6 << 20),
        ..Default::default()
    })
    .await
    .unwrap();
    jb.add_file(&url, &w.machines[1].file("f.bin"))
        .await
        .unwrap();
    jb.resume().await.unwrap();
    let at_kill = wait_until_future(DEADLINE, "B's first bytes from peers", || async {
        let f = file0(&jb).await;
        (f.bytes_from_peers > 0).then_some(f)
    })
    .await;
    w.machines[0].kill();
    assert!(
        !at_kill.completed && at_kill.bytes_transferred < data.len() as u64,
        "A was killed while B was still fetching: {at_kill:?}"
    );
    transferred(&jb).await;
    let f = file0(&jb).await;
    assert_eq!(part_sha(&jb).await, sha256_hex(&data));
    assert_eq!(f.bytes_from_origin + f.bytes_from_peers, data.len() as u64);
    assert!(f.bytes_from_peers > 0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_lying_peer_with_sha256_is_caught_and_banned() {
    let w = world(&["a", "b"], "static", "");
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let (ma, mb) = (a.manager().await, b.manager().await);
    let data = content(4 << 20, 5);
    let sha = sha256_hex(&data);
    w.origin.put("f.bin", &data);
    let url = w.origin.url("f.bin");
    let ja = fetch(&ma, &url, &a.file("f.bin"), Some(&sha)).await;
    ja.complete().await.unwrap();
    cached(&ma, &url).await;
    // Offered twice (its SHA-256 matched, then its job completed): one entry.
    assert_eq!(ma.cache_entries().await.unwrap().len(), 1);
    tamper_cache(a);
    peer_in_state(&mb, &a.peer_address(), PeerState::Up).await;

    let jb = fetch(&mb, &url, &b.file("f.bin"), Some(&sha)).await;
    assert_eq!(part_sha(&jb).await, sha);
    let f = file0(&jb).await;
    assert_eq!(
        (f.bytes_from_origin, f.bytes_from_peers),
        (data.len() as u64, 0)
    );
    assert_eq!(
        w.origin.body_bytes_to(&b.host.ip),
        data.len() as u64,
        "refetched from the origin"
    );
    peer_in_state(&mb, &a.peer_address(), PeerState::Banned).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_rejected_file_from_peers_is_evicted_and_refetched() {
    let w = world(&["a", "b"], "static", "");
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let (ma, mb) = (a.manager().await, b.manager().await);
    // A caches one content; then the origin's changes to another with the same ETag and
    // Last-Modified: A's copy looks current and its SHA-256 is A's own, so only the
    // application can tell.
    let old = content(4 << 20, 6);
    let data = content(4 << 20, 60);
    w.origin.put("f.bin", &old);
    let url = w.origin.url("f.bin");
    let ja = fetch(&ma, &url, &a.file("f.bin"), None).await;
    ja.complete().await.unwrap();
    cached(&ma, &url).await;
    w.origin.replace_keeping_validators("f.bin", &data);
    peer_in_state(&mb, &a.peer_address(), PeerState::Up).await;

    let jb = fetch(&mb, &url, &b.file("f.bin"), None).await;
    let f = file0(&jb).await;
    assert_eq!(f.bytes_from_peers, data.len() as u64);
    assert_eq!(part_sha(&jb).await, sha256_hex(&old), "A's copy");
    assert_eq!(w.origin.body_bytes_to(&b.host.ip), 0);

    jb.file(0)
        .await
        .unwrap()
        .set_validation_state(false)
        .await
        .unwrap();
    transferred(&jb).await;
    let f = wait_until_future(DEADLINE, "B's file fetched again", || async {
        let f = file0(&jb).await;
        f.completed.then_some(f)
    })
    .await;
    assert_eq!(
        (f.bytes_from_origin, f.bytes_from_peers),
        (data.len() as u64, 0)
    );
    assert_eq!(part_sha(&jb).await, sha256_hex(&data));
    assert_eq!(w.origin.body_bytes_to(&b.host.ip), data.len() as u64);
    peer_in_state(&mb, &a.peer_address(), PeerState::Banned).await;
    // Validated now, B offers the origin's content, not A's.
    jb.file(0)
        .await
        .unwrap()
        .set_validation_state(true)
        .await
        .unwrap();
    assert_eq!(cached(&mb, &url).await.sha256, sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_changed_origin_file_is_not_served_stale() {
    let w = world(&["a", "b"], "static", "");
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let (ma, mb) = (a.manager().await, b.manager().await);
    let old = content(2 << 20, 7);
    w.origin.put("f.bin", &old);
    let url = w.origin.url("f.bin");
    let ja = fetch(&ma, &url, &a.file("f.bin"), None).await;
    ja.complete().await.unwrap();
    cached(&ma, &url).await;
    peer_in_state(&mb, &a.peer_address(), PeerState::Up).await;

    // A new version (another length, so nginx's ETag differs even within the second).
    let new = content((2 << 20) + 1000, 8);
    w.origin.put("f.bin", &new);
    let jb = fetch(&mb, &url, &b.file("f.bin"), None).await;
    assert_eq!(part_sha(&jb).await, sha256_hex(&new));
    let f = file0(&jb).await;
    assert_eq!(
        (f.bytes_from_origin, f.bytes_from_peers),
        (new.len() as u64, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2, nginx and curl: .ci/run runs it"]
async fn peer_cache_other_fleet_or_no_certificate_is_refused_both_ways() {
    let mut w = world_with(&["a"], "static", "", &["10.99.0.9:7380"]);
    // C: on the same LAN with a certificate from another CA, A in its static list.
    let host = w.lan.host("c", 9);
    let a = &w.machines[0];
    let ma = a.manager().await;
    let other = Fleet::new();
    let c_certs = other.issue("c");
    let c = Machine::start(
        &host,
        Setup {
            name: "c",
            certs: &c_certs,
            discovery: "static",
            static_peers: vec![a.peer_address()],
            port: PEER_PORT,
            extra: "",
        },
    );
    let mc = c.manager().await;
    let data = content(1 << 20, 9);
    w.origin.put("f.bin", &data);
    let url = w.origin.url("f.bin");
    let ja = fetch(&ma, &url, &a.file("f.bin"), None).await;
    ja.complete().await.unwrap();
    cached(&ma, &url).await;
    // C cannot fetch from A.
    peer_in_state(&mc, &a.peer_address(), PeerState::Unreachable).await;
    let jc = fetch(&mc, &url, &c.file("f.bin"), None).await;
    let f = file0(&jc).await;
    assert_eq!(
        (f.bytes_from_origin, f.bytes_from_peers),
        (data.len() as u64, 0)
    );
    assert_eq!(ma.peers_status().await.unwrap().bytes_served, 0);
    // A cannot fetch from C either: C caches a file, A asks for it.
    let data2 = content(1 << 20, 10);
    w.origin.put("g.bin", &data2);
    let url2 = w.origin.url("g.bin");
    let jc2 = fetch(&mc, &url2, &c.file("g.bin"), None).await;
    jc2.complete().await.unwrap();
    cached(&mc, &url2).await;
    let ja2 = fetch(&ma, &url2, &a.file("g.bin"), None).await;
    assert_eq!(file0(&ja2).await.bytes_from_peers, 0);
    assert_eq!(mc.peers_status().await.unwrap().bytes_served, 0);

    // Without a certificate, or with the other fleet's, the peer port answers nothing;
    // with a fleet certificate the same request is answered.
    let certs_a = w.fleet.issue("probe");
    let curl = |cert: Option<&std::path::Path>| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.ns, "curl", "-sk", "--max-time", "10"]);
        cmd.args(["--tlsv1.3", "-o", "/dev/null", "-w", "%{http_code}"]);
        if let Some(dir) = cert {
            cmd.arg("--cert").arg(dir.join("node.pem"));
            cmd.arg("--key").arg(dir.join("node.key"));
        }
        cmd.arg(format!("https://{}/v1/ping", a.peer_address()));
        let out = cmd.output().expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(Some(&certs_a)), "200", "a fleet member is answered");
    assert_eq!(curl(None), "000", "no certificate: no answer");
    assert_eq!(curl(Some(&c_certs)), "000", "another CA: no answer");
    drop(c);
    // C knocked many times (every check, every look-up, the curls); A's log says so once,
    // at WARN, and the rest at DEBUG only.
    let log = a.log();
    let from_c = |what: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains(&host.ip))
            .count()
    };
    assert_eq!(
        from_c("refused a TLS handshake"),
        1,
        "one line per address per hour:\n{log}"
    );
    assert!(log
        .lines()
        .any(|l| l.contains("WARN") && l.contains("refused a TLS handshake")));
    assert!(
        from_c("refused a connection") >= 2,
        "the others at DEBUG:\n{log}"
    );
}

/// Peers are checked at start and until they answer, not a `probe_interval` later: A
/// starts before B (its first check of B fails), with checks an hour apart, and still
/// finds B up. Then A's certificate is renewed (`ferry peers cert renew`, same key, then
/// a new key): after a restart B takes it, and A's status shows its expiry 5 years ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_peers_checked_at_start_and_a_renewed_certificate_is_taken() {
    let mut w = world(&["a", "b"], "static", "probe_interval = \"1h\"");
    let (ma, mb) = (w.machines[0].manager().await, w.machines[1].manager().await);
    peer_in_state(&ma, &w.machines[1].peer_address(), PeerState::Up).await;
    peer_in_state(&mb, &w.machines[0].peer_address(), PeerState::Up).await;
    let year_ms = 365 * 86_400_000_i64;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let expires = ma.peers_status().await.unwrap().node_cert_expires_unix_ms;
    assert!(
        (expires - (now() + 5 * year_ms)).abs() < 2 * 86_400_000,
        "about 5 years ahead: {expires}"
    );
    let status = w.machines[0].ferry(&["peers", "status"]);
    assert!(status.contains("cert:      expires"), "{status}");

    for new_key in [false, true] {
        let ma = w.machines[0].manager().await;
        let old_cert = ma.peers_status().await.unwrap().node_cert_expires_unix_ms;
        let dir = w.fleet.renew("a", new_key);
        assert!(dir.join("node.pem").exists());
        // Both restart (B's connections to the old A would be stale), A first.
        w.machines[1].kill();
        w.machines[0].kill();
        w.machines[0].restart();
        w.machines[1].restart();
        let (ma, mb) = (w.machines[0].manager().await, w.machines[1].manager().await);
        let a = w.machines[0].peer_address();
        let b = w.machines[1].peer_address();
        peer_in_state(&ma, &b, PeerState::Up).await;
        peer_in_state(&mb, &a, PeerState::Up).await;
        let data = content(1 << 20, 30 + new_key as u64);
        let name = format!("r{new_key}.bin");
        w.origin.put(&name, &data);
        let url = w.origin.url(&name);
        let ja = fetch(&ma, &url, &w.machines[0].file(&name), None).await;
        w.machines[0].ferry(&["files", "validate", &ja.id().to_string(), "0", "--valid"]);
        let jb = fetch(&mb, &url, &w.machines[1].file(&name), None).await;
        assert_eq!(
            file0(&jb).await.bytes_from_peers,
            data.len() as u64,
            "B fetched from A with its renewed certificate (new key: {new_key})"
        );
        let renewed = ma.peers_status().await.unwrap().node_cert_expires_unix_ms;
        assert!(renewed >= old_cert, "{renewed} >= {old_cert}");
    }
}

/// A revoked machine (`ferry peers cert revoke`, the list copied to the others and their
/// ferryd restarted) is refused both ways: it fetches nothing from the fleet and the
/// fleet asks nothing of it, while the others go on sharing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_revoked_machine_is_refused_both_ways() {
    let mut w = world(&["a", "b", "c"], "static", "");
    let addr: Vec<String> = w.machines.iter().map(|m| m.peer_address()).collect();
    let mc = w.machines[2].manager().await;
    peer_in_state(&mc, &addr[0], PeerState::Up).await;

    w.fleet.revoke("c", &["a", "b", "c"]);
    for m in w.machines.iter_mut() {
        m.kill();
    }
    for m in w.machines.iter_mut() {
        m.restart();
    }
    let (ma, mb, mc) = (
        w.machines[0].manager().await,
        w.machines[1].manager().await,
        w.machines[2].manager().await,
    );
    peer_in_state(&ma, &addr[1], PeerState::Up).await;
    peer_in_state(&mb, &addr[0], PeerState::Up).await;
    // A refuses C's certificate as a client's, and as a server's.
    peer_in_state(&mc, &addr[0], PeerState::Unreachable).await;
    peer_in_state(&ma, &addr[2], PeerState::Unreachable).await;

    let data = content(4 << 20, 40);
    let len = data.len() as u64;
    w.origin.put("f.bin", &data);
    let url = w.origin.url("f.bin");
    let ja = fetch(&ma, &url, &w.machines[0].file("f.bin"), None).await;
    ja.complete().await.unwrap();
    cached(&ma, &url).await;
    let jc = fetch(&mc, &url, &w.machines[2].file("f.bin"), None).await;
    let f = file0(&jc).await;
    assert_eq!((f.bytes_from_origin, f.bytes_from_peers), (len, 0), "{f:?}");
    let jb = fetch(&mb, &url, &w.machines[1].file("f.bin"), None).await;
    assert_eq!(
        file0(&jb).await.bytes_from_peers,
        len,
        "B still fetches from A"
    );
    let listed = std::fs::read_to_string(w.fleet.ca_dir().join("revoked.txt")).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains(" c "), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_private_content_is_never_cached() {
    let w = world(&["a"], "static", "");
    let a = &w.machines[0];
    let ma = a.manager().await;
    for name in ["h.bin", "c.bin", "k.bin", "private/p.bin", "plain.bin"] {
        w.origin.put(name, &content(64 << 10, name.len() as u64));
    }
    let header = |h: &str| JobProperties {
        headers: Some(vec![h.into()]),
        ..Default::default()
    };
    let jobs = vec![
        ("h.bin", header("Authorization: Bearer secret")),
        (
            "c.bin",
            JobProperties {
                credentials: Some(Credentials::Basic {
                    user: "u".into(),
                    password: "p".into(),
                }),
                ..Default::default()
            },
        ),
        ("k.bin", header("Cookie: session=1")),
        ("private/p.bin", JobProperties::default()),
    ];
    for (name, props) in jobs {
        let j = fetch_with(
            &ma,
            &w.origin.url(name),
            &a.file(&name.replace('/', "-")),
            None,
            props,
        )
        .await;
        j.file(0)
            .await
            .unwrap()
            .set_validation_state(true)
            .await
            .unwrap();
        j.complete().await.unwrap();
    }
    // A plain job after them is cached: by then the others would have been too.
    let plain = w.origin.url("plain.bin");
    let j = fetch(&ma, &plain, &a.file("plain.bin"), None).await;
    j.complete().await.unwrap();
    cached(&ma, &plain).await;
    assert_eq!(cached_urls(&ma).await, vec![plain]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_size_limit_drops_least_recently_used_first() {
    let w = world(&["a", "b"], "static", "cache_size = \"3MiB\"");
    let (a, b) = (&w.machines[0], &w.machines[1]);
    let (ma, mb) = (a.manager().await, b.manager().await);
    peer_in_state(&mb, &a.peer_address(), PeerState::Up).await;
    let n = (1 << 20) + (1 << 18);
    let urls: Vec<String> = (0..3)
        .map(|i| {
            let name = format!("f{i}.bin");
            w.origin.put(&name, &content(n, 20 + i));
            w.origin.url(&name)
        })
        .collect();
    for u in &urls[..2] {
        let j = fetch(&ma, u, &a.file(&u[u.len() - 6..]), None).await;
        j.complete().await.unwrap();
        cached(&ma, u).await;
    }
    // f0 is used again (B fetches it from A): f1 is now the least recently used.
    let jb = fetch(&mb, &urls[0], &b.file("f0.bin"), None).await;
    assert_eq!(file0(&jb).await.bytes_from_peers, n as u64);
    let j = fetch(&ma, &urls[2], &a.file("f2.bin"), None).await;
    j.complete().await.unwrap();
    cached(&ma, &urls[2]).await;
    assert_eq!(
        cached_urls(&ma).await,
        vec![urls[0].clone(), urls[2].clone()],
        "f1 left first"
    );
    let status = ma.peers_status().await.unwrap();
    assert!(status.cache_bytes <= 3 << 20);
    assert_eq!(status.cache_limit_bytes, 3 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 and nginx: .ci/run runs it"]
async fn peer_cache_age_limit_drops_unused_content() {
    let w = world(&["a"], "static", "max_content_age = \"2s\"");
    let a = &w.machines[0];
    let ma = a.manager().await;
    w.origin.put("f.bin", &content(64 << 10, 30));
    let url = w.origin.url("f.bin");
    let j = fetch(&ma, &url, &a.file("f.bin"), None).await;
    j.complete().await.unwrap();
    cached(&ma, &url).await;
    wait_until_future(DEADLINE, "the unused entry to age out", || async {
        cached_urls(&ma).await.is_empty().then_some(())
    })
    .await;
    let cache_dir = a.env.state_dir.join("peer-cache");
    assert_eq!(
        std::fs::read_dir(cache_dir).unwrap().count(),
        0,
        "its file went too"
    );
}

/// Unicast DNS-SD across a router: B is on a subnet of its own behind a router namespace
/// (mDNS does not cross it); dnsmasq on the router publishes B's PTR/SRV/TXT/A records
/// under `site.test`; A, with no static peers and `dns_sd_domains = ["site.test"]`, finds
/// B through its resolver and fetches from B a file B holds validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2, nginx and dnsmasq: .ci/run runs it"]
async fn peer_cache_unicast_dns_sd_finds_a_peer_on_another_subnet() {
    // Field order: machines and servers stop before their namespaces go.
    struct Routed {
        a: Machine,
        b: Machine,
        dns: Dnsmasq,
        origin: Origin,
        _fleet: Fleet,
        lan: Lan,
    }
    let mut lan = Lan::new();
    let origin_host = lan.host("origin", 1);
    let a_host = lan.host("a", 2);
    let (router, b_host) = lan.routed_host("b", 5, 254, &[&origin_host, &a_host]);
    lan.use_nameserver(&a_host, &router.ip);
    let origin = Origin::start(&origin_host);
    let fleet = Fleet::new();
    let start = |name: &str, host: &Host, extra: &str| {
        Machine::start(
            host,
            Setup {
                name,
                certs: &fleet.issue(name),
                discovery: "static",
                static_peers: Vec::new(),
                port: PEER_PORT,
                extra,
            },
        )
    };
    let b = start("b", &b_host, "");
    let mb = b.manager().await;
    let fleet_id = mb.peers_status().await.unwrap().fleet_id;
    let instance = "b._ferry-peer._tcp.site.test";
    let dns = Dnsmasq::start(
        &router,
        "site.test",
        &[
            format!("ptr-record=_ferry-peer._tcp.site.test,{instance}"),
            format!("srv-host={instance},b.site.test,{PEER_PORT}"),
            format!("txt-record={instance},fleet={fleet_id},node=b,v=1"),
            format!("host-record=b.site.test,{}", b_host.ip),
        ],
    );
    let a = start(
        "a",
        &a_host,
        "dns_sd_domains = [\"site.test\"]\ndns_sd_interval = \"1s\"\n",
    );
    let w = Routed {
        a,
        b,
        dns,
        origin,
        _fleet: fleet,
        lan,
    };
    let ma = w.a.manager().await;

    // A finds B through the records, across the router.
    peer_in_state(&ma, &w.b.peer_address(), PeerState::Up).await;
    let status = ma.peers_status().await.unwrap();
    let found = status
        .peers
        .iter()
        .find(|p| p.address == w.b.peer_address())
        .unwrap();
    assert_eq!(found.origin, PeerOrigin::DnsSd, "{found:?}");
    assert_eq!(found.name, format!("{instance}."));
    assert_eq!(status.peers.len(), 1, "only B: {:?}", status.peers);
    let shown = w.a.ferry(&["peers", "status"]);
    assert!(
        shown.contains(&w.b.peer_address()) && shown.contains("dns_sd"),
        "{shown}"
    );
    assert!(
        w.dns.log().contains("_ferry-peer._tcp.site.test"),
        "the records came from dnsmasq: {}",
        w.dns.log()
    );

    // B holds a file validated; A gets it from B, none of it from the origin.
    let data = content(8 << 20, 29);
    w.origin.put("dnssd.bin", &data);
    let url = w.origin.url("dnssd.bin");
    let jb = fetch(&mb, &url, &w.b.file("dnssd.bin"), None).await;
    jb.file(0)
        .await
        .unwrap()
        .set_validation_state(true)
        .await
        .unwrap();
    cached(&mb, &url).await;
    let ja = fetch(&ma, &url, &w.a.file("dnssd.bin"), None).await;
    let f = file0(&ja).await;
    assert_eq!(f.bytes_from_peers, data.len() as u64, "{f:?}");
    assert_eq!(f.bytes_from_origin, 0);
    assert_eq!(part_sha(&ja).await, sha256_hex(&data));
    assert_eq!(w.origin.body_bytes_to(&w.a.host.ip), 0);
    let _ = &w.lan;
}
