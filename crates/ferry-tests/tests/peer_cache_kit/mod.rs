//! The peer caching and swarm tests' machinery: a private LAN of network namespaces (`net`), nginx
//! as the origin (`origin`), dnsmasq as a site's DNS (`dns`), ferryd machines and fleets (`machine`), and the steps the
//! tests share (downloading a file with a machine, waiting for its cache).

// Each test uses a different subset.
#![allow(dead_code)]

pub mod dns;
pub mod machine;
pub mod net;
pub mod origin;

use std::time::Duration;

use ferry_client::{
    CacheEntry, FileInfo, FileSpec, Job, JobInfo, JobProperties, JobState, Manager, PeerState,
};
use ferry_testkit::{sha256_hex, wait_until_future};

#[allow(unused_imports)] // Only some tests run a DNS server.
pub use dns::Dnsmasq;
pub use machine::{Fleet, Machine, Setup};
pub use net::{Host, Lan};
pub use origin::Origin;

/// The longest a test waits for one thing.
pub const DEADLINE: Duration = Duration::from_secs(180);

/// `n` bytes that differ from any other call's with another `seed`.
pub fn content(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Starts a download job of one file and waits until it is `transferred` (panics on an
/// error state).
pub async fn fetch(m: &Manager, url: &str, dest: &str, sha256: Option<&str>) -> Job {
    fetch_with(m, url, dest, sha256, JobProperties::default()).await
}

/// [`fetch`] with job properties set before it starts.
pub async fn fetch_with(
    m: &Manager,
    url: &str,
    dest: &str,
    sha256: Option<&str>,
    props: JobProperties,
) -> Job {
    let job = m.create_job("peer cache test").await.expect("create job");
    job.set(props).await.expect("set job properties");
    let mut spec = FileSpec::new(url, dest);
    if let Some(s) = sha256 {
        spec = spec.sha256(s);
    }
    job.add_files(vec![spec]).await.expect("add file");
    job.resume().await.expect("resume");
    transferred(&job).await;
    job
}

/// Waits until `job` is `transferred`; panics if it errs.
pub async fn transferred(job: &Job) -> JobInfo {
    let info = tokio::time::timeout(
        DEADLINE,
        job.wait_for(|s| s == JobState::Transferred || s == JobState::Error || s.is_final()),
    )
    .await
    .expect("the job settles within the deadline")
    .expect("watching the job");
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    info
}

/// File 0 of `job`.
pub async fn file0(job: &Job) -> FileInfo {
    job.files().await.expect("files").remove(0)
}

/// SHA-256 (hex) of the part file of `job`'s file 0 (before `complete`).
pub async fn part_sha(job: &Job) -> String {
    let f = file0(job).await;
    sha256_hex(&std::fs::read(&f.temporary_path).expect("read the part file"))
}

/// Waits until the cache of `m` holds an entry for `url`; returns it.
pub async fn cached(m: &Manager, url: &str) -> CacheEntry {
    wait_until_future(DEADLINE, &format!("{url} in the cache"), || async {
        m.cache_entries()
            .await
            .expect("cache entries")
            .into_iter()
            .find(|e| e.url == url)
    })
    .await
}

/// The URLs in the cache of `m`.
pub async fn cached_urls(m: &Manager) -> Vec<String> {
    let mut v: Vec<String> = m
        .cache_entries()
        .await
        .expect("cache entries")
        .into_iter()
        .map(|e| e.url)
        .collect();
    v.sort();
    v
}

/// Waits until `m` sees a peer at `address` in `state`.
pub async fn peer_in_state(m: &Manager, address: &str, state: PeerState) {
    wait_until_future(
        DEADLINE,
        &format!("peer {address} to be {state:?}"),
        || async {
            let s = m.peers_status().await.expect("peers status");
            s.peers
                .iter()
                .any(|p| p.address == address && p.state == state)
                .then_some(())
        },
    )
    .await
}
