//! Fleet swarm (issue 14): machines that want the same content at the same time split the
//! origin's work and fetch the rest from each other while everyone is still downloading.
//!
//! The file is cut into pieces (`plan::piece_size`, 1–4 MiB). Each piece is fetched from
//! the origin by one of the machines that want the content — its rendezvous owner over
//! the machines that answer for it and are not late — and from that machine by the
//! others. A machine shares, through the fleet ([`PeerFinder::share`]), the pieces it
//! fetched itself from the origin, once they are on disk (the part file's sync); pieces it
//! got from peers are served only once the whole file has matched its SHA-256, so a bad
//! byte always comes from the machine that served it and the liar can be named. Every
//! [`POLL`] the driver asks the fleet which ranges each machine holds
//! ([`PeerFinder::holders`]); a machine that stops answering, leaves, or holds nothing
//! new for [`LATE`] loses its pieces to the others, and a machine that waited
//! [`TAKE_OVER`] with nothing to do fetches from the origin what nobody holds.
//!
//! A known SHA-256 is checked at the end; on a mismatch each piece that came from a peer
//! is fetched again from the origin and compared (`repair`), the peers whose pieces
//! differed are banned and their bytes replaced.
//!
//! `mod.rs` joins and leaves the swarm; `driver.rs` is the loop, `plan.rs` its pure
//! decisions, `shared.rs` what the fleet sees of this download, `repair.rs` the check at
//! the end.
//!
//! May use: the engine's range connection, multi-connection runner (to open the
//! segments), sources, fleet port, task and errors; `model`. The fleet is reached only
//! through [`PeerFinder`].

mod driver;
mod plan;
mod repair;
mod shared;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::error::TransferError;
use super::fleet::{ContentQuery, PeerFinder};
use super::multisource::{open_segments, report_fetched};
use super::rangeconn::unless_stopped;
use super::sources::Source;
use super::task::{FileTask, Outcome};
use crate::model::Segment;
use driver::Swarm;
use shared::Download;

pub use super::fleet::{Holder, ShareGuard, SharedDownload, SharedRanges};
pub use driver::{LATE, POLL, TAKE_OVER};
pub use plan::{piece_size, pieces, MIN_PIECE};

/// After registering, this long for the machines starting together to do the same.
const GATHER: Duration = Duration::from_millis(300);
/// A finished download whose SHA-256 matched stays shared this long.
const LINGER: Duration = Duration::from_secs(10);

/// What joining the swarm takes: the content as the fleet knows it, and what the origin
/// said about it.
pub struct Join {
    /// The content's URL, validator and length (and SHA-256 when known): what the
    /// machines that want it agree on.
    pub query: ContentQuery,
    pub length: u64,
    /// The origin's strong validator (the pieces are asked under it).
    pub validator: String,
    /// The origin's URL after redirects.
    pub final_url: String,
}

/// Joins the swarm for content the fleet does not hold whole (the planner checked that the
/// file is large enough to split and the origin serves ranges).
pub(super) async fn download(
    task: &FileTask<'_>,
    finder: Arc<dyn PeerFinder>,
    join: Join,
) -> Result<Outcome, TransferError> {
    let Join {
        query,
        length,
        validator,
        final_url,
    } = join;
    let (file, dl) = start(task, length, &validator, final_url).await?;
    let reader = task
        .owner
        .read_part(task.part.clone())
        .await
        .map_err(|e| TransferError::local_io("opening", &task.part, &e))?;
    let guard = finder.share(SharedDownload {
        query: query.clone(),
        length,
        file: reader
            .try_clone()
            .map_err(|e| TransferError::local_io("opening", &task.part, &e))?,
        ranges: dl.clone(),
    });
    tracing::info!(
        url = task.record.remote_url,
        length,
        pieces = dl.first_hand.len(),
        "joining the swarm"
    );
    if unless_stopped(&task.cancel, tokio::time::sleep(GATHER))
        .await
        .is_none()
    {
        return Ok(Outcome::Cancelled);
    }
    let origin = Source::origin(
        task.client.clone(),
        task.record.remote_url.clone(),
        task.options.clone(),
        Some(validator),
    );
    let result = driver::run(Swarm {
        task,
        finder: &finder,
        key: content_key(&query),
        query: &query,
        download: &dl,
        file: &file,
        origin: origin.clone(),
    })
    .await;
    report_fetched(finder.as_ref(), &task.sources);
    let len = match result? {
        Outcome::Done { len } => len,
        Outcome::Cancelled => return Ok(Outcome::Cancelled),
    };
    if let Some(expected) = &task.record.expected_sha256 {
        let files = repair::Files {
            read: &reader,
            write: &file,
        };
        let expected = expected.to_ascii_lowercase();
        let ok = repair::check_and_repair(task, &finder, &dl, files, &origin, &expected).await?;
        dl.verified.store(ok, Ordering::Release);
    }
    // A file that matched the SHA-256 its job gave stays shared a little while, for the
    // machines of the swarm finishing after us (each checks it against the same hash).
    // Anything else leaves the fleet's view now: it is offered again only once its
    // application validated it or completed the job.
    if dl.verified.load(Ordering::Acquire) {
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            drop(guard);
        });
    }
    Ok(Outcome::Done { len })
}

/// Creates the part file, cut into the content's pieces (one segment each), and the
/// download the fleet will see.
async fn start(
    task: &FileTask<'_>,
    length: u64,
    validator: &str,
    final_url: String,
) -> Result<(std::fs::File, Arc<Download>), TransferError> {
    task.owner
        .create_part(task.part.clone())
        .await
        .map_err(|e| TransferError::local_io("creating", &task.part, &e))?;
    let segments: Vec<Segment> = pieces(length)
        .into_iter()
        .map(|(start, end)| Segment {
            start,
            end,
            done: 0,
        })
        .collect();
    task.events.segments_started(
        length,
        Some(validator.to_string()),
        final_url,
        segments.clone(),
        false,
    );
    let (file, table) = open_segments(task, &segments).await?;
    Ok((file, Arc::new(Download::new(table, length))))
}

/// The content's rendezvous key: the same on every machine that wants it.
fn content_key(query: &ContentQuery) -> String {
    match &query.sha256 {
        Some(s) => s.clone(),
        None => format!(
            "{}|{}|{}",
            query.url,
            query.validator.as_deref().unwrap_or(""),
            query.length.unwrap_or(0)
        ),
    }
}
