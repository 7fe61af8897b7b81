//! `http` and `https` downloads: the planner (`planner`) chooses how, from the file's
//! state, the job's options, one probe of the origin (`probe`) and what the fleet's peers
//! say; this driver gathers those answers as the planner asks for them and runs the
//! strategy it picks: whole from peers (`frompeers`), the swarm (`swarm`), several
//! connections to the origin (`segmented`), or one (`single`).
//!
//! A file of ranges, or on demand, goes to `ranged` instead.
//!
//! May use: the planner, the probe, the strategies, the ranged download, the range connection (to be stopped
//! while the peers are asked), the task and errors.

use super::error::TransferError;
use super::planner::{plan, Facts, Head, PeersSaid, Step, Strategy};
use super::probe::{probe, Probed};
use super::rangeconn::unless_stopped;
use super::task::{FileTask, Outcome};
use super::{frompeers, ranged, segmented, single, swarm};

/// Downloads one file into its part file, continuing from what is recorded of it.
pub async fn download(task: FileTask<'_>) -> Result<Outcome, TransferError> {
    if !task.record.ranges.is_whole() {
        // Only ranges of the file: from the origin, never from peers.
        return ranged::download(task).await;
    }
    // A size already known (recorded, or from a checked file) that passes the limit fails
    // before anything is asked.
    if let Some(total) = task.record.bytes_total {
        super::sizecap::check_size(task.options, &task.record.remote_url, total)?;
    }
    let mut facts = facts_of(&task);
    loop {
        match plan(&facts) {
            Step::Probe => {
                facts.head = match probe(&task).await {
                    Probed::Stopped => return Ok(Outcome::Cancelled),
                    Probed::Nothing => Head::Nothing,
                    Probed::Head(head) => {
                        if let Some(length) = head.length {
                            super::sizecap::check_size(
                                task.options,
                                &task.record.remote_url,
                                length,
                            )?;
                        }
                        if facts.peers && head.no_store {
                            // Remembered with the file: it never enters the peer cache.
                            task.events.no_peer_cache();
                        }
                        Head::Said(head)
                    }
                }
            }
            Step::AskPeers(query) => {
                let finder = task
                    .peers
                    .as_ref()
                    .expect("peers are asked only when there are");
                let Some(offers) = unless_stopped(&task.cancel, finder.find(&query)).await else {
                    return Ok(Outcome::Cancelled);
                };
                facts.peers_said = Some(PeersSaid { query, offers });
            }
            Step::Run(strategy) => {
                tracing::debug!(url = task.record.remote_url, %strategy, "download planned");
                return run(&task, strategy).await;
            }
        }
    }
}

/// What is known of `task`'s file before anything is asked.
fn facts_of(task: &FileTask<'_>) -> Facts {
    Facts {
        url: task.record.remote_url.clone(),
        offset: task.record.bytes_transferred,
        segments: !task.record.segments.is_empty(),
        sha256: task
            .record
            .expected_sha256
            .as_ref()
            .map(|s| s.to_ascii_lowercase()),
        connections: task.connections,
        peers: task.peers.is_some(),
        head: Head::NotAsked,
        peers_said: None,
    }
}

/// Runs the strategy the planner chose.
async fn run(task: &FileTask<'_>, strategy: Strategy) -> Result<Outcome, TransferError> {
    // The size the strategy will fetch, where it knows it before a byte moves.
    let known = match &strategy {
        Strategy::FromPeers(offered) => Some(offered.length),
        Strategy::Swarm(join) => Some(join.length),
        Strategy::Segmented(new) => Some(new.total),
        Strategy::ResumeSegments | Strategy::Single => None,
    };
    if let Some(size) = known {
        super::sizecap::check_size(task.options, &task.record.remote_url, size)?;
    }
    match strategy {
        Strategy::FromPeers(offered) => frompeers::download(task, offered).await,
        Strategy::Swarm(join) => {
            let finder = task
                .peers
                .clone()
                .expect("the swarm is joined only with peers");
            swarm::download(task, finder, join).await
        }
        Strategy::Segmented(new) => segmented::start(task, new).await,
        Strategy::ResumeSegments => segmented::resume(task).await,
        Strategy::Single => single::download(task).await,
    }
}
