//! Fleet swarm between real daemons (`cargo test swarm`; needs root, `ip` and `tc` from
//! iproute2, and nginx): machines that start the same download at once split the
//! origin's work and fetch the rest from each other. Each machine is a ferryd in a
//! network namespace of its own on a bridge; the origin is nginx in another, its link
//! limited with `tc tbf` so that a 64 MiB download lasts long enough for a swarm to form,
//! its access log counting the body bytes it sent. Everything is removed when a test
//! ends, even when it fails (drop guards).

mod peer_cache_kit;

use std::os::unix::fs::FileExt;

use ferry_client::{FileSpec, Job, JobState, Manager, PeerState};
use ferry_testkit::{sha256_hex, wait_until_future};
use peer_cache_kit::net::shape;
use peer_cache_kit::*;

const PEER_PORT: u16 = 7390;
/// The file every test downloads.
const SIZE: usize = 64 << 20;
/// The origin's link: 64 MiB take about 5.4 s over it.
const ORIGIN_RATE: &str = "100mbit";

/// The origin at .1 (its link limited) and machines at .2, .3, … of one fleet, each with
/// every other machine in its static list (including those started later).
struct World {
    // Dropped first: machines and the origin stop before their namespaces go.
    machines: Vec<Option<Machine>>,
    origin: Origin,
    fleet: Fleet,
    hosts: Vec<Host>,
    names: Vec<String>,
    _lan: Lan,
}

impl Drop for World {
    fn drop(&mut self) {
        self.machines.clear();
    }
}

impl World {
    fn new(names: &[&str], origin_rate: &str) -> World {
        let mut lan = Lan::new();
        let origin_host = lan.host("origin", 1);
        shape(&origin_host, origin_rate);
        let hosts: Vec<Host> = names
            .iter()
            .enumerate()
            .map(|(i, n)| lan.host(n, 2 + i as u8))
            .collect();
        World {
            machines: names.iter().map(|_| None).collect(),
            origin: Origin::start(&origin_host),
            fleet: Fleet::new(),
            hosts,
            names: names.iter().map(|s| s.to_string()).collect(),
            _lan: lan,
        }
    }

    /// Starts machine `i`.
    fn start(&mut self, i: usize) {
        let certs = self.fleet.issue(&self.names[i]);
        let others: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| h.ip != self.hosts[i].ip)
            .map(|h| format!("{}:{PEER_PORT}", h.ip))
            .collect();
        self.machines[i] = Some(Machine::start(
            &self.hosts[i],
            Setup {
                name: &self.names[i],
                certs: &certs,
                discovery: "static",
                static_peers: others,
                port: PEER_PORT,
                extra: "",
            },
        ));
    }

    fn m(&self, i: usize) -> &Machine {
        self.machines[i].as_ref().expect("a started machine")
    }

    /// Waits until each of `machines` sees every other one up.
    async fn all_up(&self, machines: &[usize]) {
        for &i in machines {
            let mi = self.m(i).manager().await;
            for &j in machines.iter().filter(|&&j| j != i) {
                peer_in_state(&mi, &self.m(j).peer_address(), PeerState::Up).await;
            }
        }
    }

    /// Body bytes the origin sent to all machines.
    fn origin_bytes(&self) -> u64 {
        self.origin.body_bytes_by_client().values().sum()
    }
}

/// A job of one file with its SHA-256, created and not yet resumed.
async fn job(m: &Machine, url: &str, sha: &str) -> (Manager, Job) {
    let mgr = m.manager().await;
    let job = mgr.create_job("swarm test").await.expect("create job");
    job.add_files(vec![FileSpec::new(url, m.file("big.bin")).sha256(sha)])
        .await
        .expect("add file");
    (mgr, job)
}

/// Waits until `job` has transferred at least `n` bytes.
async fn progressed(job: &Job, n: u64) {
    wait_until_future(DEADLINE, &format!("{n} bytes transferred"), || async {
        let info = job.info().await.expect("job info");
        assert!(
            !matches!(info.state(), JobState::Error) && !info.state().is_final(),
            "{info:?}"
        );
        (info.bytes_transferred >= n).then_some(())
    })
    .await
}

/// Four machines started and reachable, the origin serving a `SIZE`-byte file made from
/// `seed` as `big.bin` at `rate`, and a job for it on each machine (in order, none
/// resumed): the world, the file's SHA-256 and the jobs.
async fn four_machines_one_file(
    names: [&str; 4],
    rate: &str,
    seed: u64,
) -> (World, String, Vec<(Manager, Job)>) {
    let mut w = World::new(&names, rate);
    for i in 0..4 {
        w.start(i);
    }
    w.all_up(&[0, 1, 2, 3]).await;
    let data = content(SIZE, seed);
    let sha = sha256_hex(&data);
    w.origin.put("big.bin", &data);
    let url = w.origin.url("big.bin");
    let mut jobs = Vec::new();
    for i in 0..4 {
        jobs.push(job(w.m(i), &url, &sha).await);
    }
    (w, sha, jobs)
}

/// Waits until every job is transferred; checks each file's SHA-256.
async fn all_transferred(jobs: &[&Job], sha: &str) {
    futures::future::join_all(jobs.iter().map(|j| transferred(j))).await;
    for j in jobs {
        assert_eq!(part_sha(j).await, sha);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 (ip, tc) and nginx: .ci/run runs it"]
async fn swarm_four_machines_start_together_and_the_origin_sends_each_byte_about_once() {
    let (w, sha, jobs) = four_machines_one_file(["a", "b", "c", "d"], ORIGIN_RATE, 14).await;
    for (_, j) in &jobs {
        j.resume().await.expect("resume");
    }
    let js: Vec<&Job> = jobs.iter().map(|(_, j)| j).collect();
    all_transferred(&js, &sha).await;

    let sent = w.origin_bytes();
    assert!(
        sent <= SIZE as u64 * 3 / 2,
        "the origin sent {sent} bytes for a {SIZE}-byte file to four machines: {:?}",
        w.origin.body_bytes_by_client()
    );
    let (mut from_peers, mut served) = (0, 0);
    for (mgr, j) in &jobs {
        let f = file0(j).await;
        assert!(
            f.bytes_from_origin < SIZE as u64,
            "each machine fetched part from its peers: {f:?}"
        );
        from_peers += f.bytes_from_peers;
        served += mgr.peers_status().await.unwrap().bytes_served;
    }
    assert!(from_peers > 0);
    assert!(
        served >= from_peers,
        "bytes served to peers ({served}) cover the bytes fetched from them ({from_peers})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 (ip, tc) and nginx: .ci/run runs it"]
async fn swarm_machine_killed_mid_swarm_the_others_finish() {
    let (mut w, sha, jobs) = four_machines_one_file(["a", "b", "c", "d"], ORIGIN_RATE, 15).await;
    for (_, j) in &jobs {
        j.resume().await.expect("resume");
    }
    // d dies (SIGKILL) once it has a part of the file: its pieces, fetched or not, must
    // come from elsewhere.
    progressed(&jobs[3].1, 8 << 20).await;
    let d_ip = w.m(3).host.ip.clone();
    w.machines[3].as_mut().unwrap().kill();
    let to_d = w.origin.body_bytes_to(&d_ip);
    assert!(to_d < SIZE as u64, "d was killed before it had everything");
    let survivors: Vec<&Job> = jobs[..3].iter().map(|(_, j)| j).collect();
    all_transferred(&survivors, &sha).await;
    let mut origin_to_survivors = 0;
    for j in &survivors {
        origin_to_survivors += file0(j).await.bytes_from_origin;
    }
    // What d fetched from the origin and had not passed on was fetched again by the
    // others: together they fetched at least what d did not get.
    assert!(origin_to_survivors + w.origin.body_bytes_to(&d_ip) >= SIZE as u64);
    assert!(
        w.origin_bytes() <= 2 * SIZE as u64,
        "the origin sent {} bytes: {:?}",
        w.origin_bytes(),
        w.origin.body_bytes_by_client()
    );
}

/// Flips a byte in every 4 KiB of each 1 MiB piece of `path` already written (a piece
/// not yet written reads as zeros): a machine whose disk lies.
fn alter_written_pieces(path: &str) -> usize {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the part file");
    let len = f.metadata().unwrap().len();
    let mut altered = 0;
    let mut piece = vec![0u8; 1 << 20];
    let mut at = 0;
    while at + piece.len() as u64 <= len {
        f.read_exact_at(&mut piece, at).unwrap();
        let written = piece[..4096].iter().any(|&b| b != 0)
            && piece[piece.len() - 4096..].iter().any(|&b| b != 0);
        if written {
            for b in piece.iter_mut().step_by(4096) {
                *b ^= 0x5a;
            }
            f.write_all_at(&piece, at).unwrap();
            altered += 1;
        }
        at += piece.len() as u64;
    }
    f.sync_all().unwrap();
    altered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 (ip, tc) and nginx: .ci/run runs it"]
async fn swarm_altered_ranges_are_repaired_from_the_origin_and_the_liar_banned() {
    let (w, sha, jobs) = four_machines_one_file(["liar", "a", "b", "c"], ORIGIN_RATE, 16).await;
    // The liar starts alone, then its pieces on disk are altered: it serves them as they
    // are, with the whole file's SHA-256 known to every machine.
    jobs[0].1.resume().await.expect("resume");
    progressed(&jobs[0].1, 8 << 20).await;
    let part = file0(&jobs[0].1).await.temporary_path;
    let altered = alter_written_pieces(&part);
    assert!(altered > 0, "pieces of the liar's file were altered");
    for (_, j) in &jobs[1..] {
        j.resume().await.expect("resume");
    }
    let honest: Vec<&Job> = jobs[1..].iter().map(|(_, j)| j).collect();
    all_transferred(&honest, &sha).await;

    let liar = w.m(0).peer_address();
    let mut banned_by = 0;
    for (i, (mgr, j)) in jobs.iter().enumerate().skip(1) {
        let status = mgr.peers_status().await.unwrap();
        for p in &status.peers {
            if p.address != liar {
                assert_ne!(
                    p.state,
                    PeerState::Banned,
                    "machine {i} banned an honest peer: {p:?}"
                );
            }
        }
        let used_liar = status
            .peers
            .iter()
            .any(|p| p.address == liar && p.state == PeerState::Banned);
        let f = file0(j).await;
        if used_liar {
            banned_by += 1;
            assert!(f.bytes_from_peers > 0, "{f:?}");
        }
    }
    assert!(
        banned_by > 0,
        "the machines that took the liar's altered pieces banned it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 (ip, tc) and nginx: .ci/run runs it"]
async fn swarm_machine_joins_late_and_leaves_early_and_no_one_hangs() {
    // A slower origin (about 11 s for the file): the late machine comes and goes while
    // the others are still at it.
    let (w, sha, mut jobs) = four_machines_one_file(["a", "b", "c", "late"], "50mbit", 17).await;
    let (_late_mgr, late_job) = jobs.pop().expect("four jobs");
    for (_, j) in &jobs {
        j.resume().await.expect("resume");
    }
    // The late machine joins the swarm under way…
    progressed(&jobs[0].1, 4 << 20).await;
    late_job.resume().await.expect("resume");
    progressed(&late_job, 2 << 20).await;
    // …and leaves before the others finish.
    let info = late_job.cancel().await.expect("cancel");
    assert_eq!(info.state(), JobState::Cancelled);
    let early: Vec<&Job> = jobs.iter().map(|(_, j)| j).collect();
    for j in &early {
        assert_ne!(
            j.info().await.unwrap().state(),
            JobState::Transferred,
            "the late machine left before the others finished"
        );
    }
    all_transferred(&early, &sha).await;
    assert!(
        w.origin_bytes() <= 2 * SIZE as u64,
        "the origin sent {} bytes: {:?}",
        w.origin_bytes(),
        w.origin.body_bytes_by_client()
    );
}

/// The seed's rule for downloads under way: two machines that start the same 64 MiB at
/// once, their jobs giving no SHA-256, share nothing (neither could check the other's
/// bytes): each gets the whole body from the origin, nothing from the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2 (ip, tc) and nginx: .ci/run runs it"]
async fn swarm_two_machines_without_sha256_share_nothing() {
    let mut w = World::new(&["a", "b"], ORIGIN_RATE);
    w.start(0);
    w.start(1);
    w.all_up(&[0, 1]).await;
    let data = content(SIZE, 17);
    w.origin.put("big.bin", &data);
    let url = w.origin.url("big.bin");
    let mut jobs = Vec::new();
    for i in 0..2 {
        let mgr = w.m(i).manager().await;
        let job = mgr.create_job("swarm test").await.expect("create job");
        job.add_files(vec![FileSpec::new(&url, w.m(i).file("big.bin"))])
            .await
            .expect("add file");
        jobs.push((mgr, job));
    }
    for (_, j) in &jobs {
        j.resume().await.expect("resume");
    }
    let js: Vec<&Job> = jobs.iter().map(|(_, j)| j).collect();
    all_transferred(&js, &sha256_hex(&data)).await;
    for (i, (mgr, j)) in jobs.iter().enumerate() {
        let f = file0(j).await;
        assert_eq!(
            (f.bytes_from_origin, f.bytes_from_peers),
            (SIZE as u64, 0),
            "{f:?}"
        );
        assert_eq!(mgr.peers_status().await.unwrap().bytes_served, 0);
        assert_eq!(w.origin.body_bytes_to(&w.m(i).host.ip), SIZE as u64);
    }
}
