//! A file the fleet's peers hold whole: fetched from every peer that offers it at once,
//! over one segment table (`multisource`), the origin joining as soon as a peer fails.
//! The peers' SHA-256 is claimed for the file, so the worker checks it at the end.
//!
//! May use: the engine's multi-connection runner, segment table, sources, fleet port,
//! task and errors.

use super::error::TransferError;
use super::fleet::PeerOffer;
use super::multisource::{self, Sources};
use super::segtable::{split, MIN_SEGMENT};
use super::sources::Source;
use super::task::{FileTask, Outcome};

/// The peers that hold the content whole, and what the file is.
pub struct FromPeers {
    /// Peers that agree on length and SHA-256.
    pub offers: Vec<PeerOffer>,
    /// The content's length.
    pub length: u64,
    /// The SHA-256 the peers announce.
    pub sha256: String,
    /// The origin's validator, when it was asked.
    pub validator: Option<String>,
    /// The origin's URL after redirects, else the job's URL.
    pub final_url: String,
}

/// Fetches the file from `plan`'s peers, the origin in reserve.
pub(super) async fn download(
    task: &FileTask<'_>,
    plan: FromPeers,
) -> Result<Outcome, TransferError> {
    tracing::info!(
        url = task.record.remote_url,
        peers = plan.offers.len(),
        length = plan.length,
        "fetching from peers"
    );
    task.sources.claim_sha256(&plan.sha256);
    task.owner
        .create_part(task.part.clone())
        .await
        .map_err(|e| TransferError::local_io("creating", &task.part, &e))?;
    let total = plan.length;
    let n = (plan.offers.len() as u64)
        .min(total.div_ceil(MIN_SEGMENT))
        .max(1);
    let segments = split(total, n);
    task.events.segments_started(
        total,
        plan.validator.clone(),
        plan.final_url,
        segments.clone(),
        false,
    );
    let origin = Source::origin(
        task.client.clone(),
        task.record.remote_url.clone(),
        task.options.clone(),
        plan.validator,
    );
    let sources = Sources {
        total,
        start: plan.offers.iter().map(Source::peer).collect(),
        layout: None,
        reserve: vec![origin; task.connections.max(1) as usize],
    };
    let result = multisource::run(task, segments, sources).await;
    if let Some(finder) = &task.peers {
        multisource::report_fetched(finder.as_ref(), &task.sources);
    }
    result
}
