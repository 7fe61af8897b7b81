//! Before a download goes to the origin: asks the fleet's peers who has the content — by
//! SHA-256 when the file has one, else by URL and validators from one `HEAD` to the
//! origin (as BITS does) — and fetches it from those that have it, the origin in reserve
//! (`segmented::from_peers`); when nobody holds it whole, joins the machines that fetch it
//! now (`swarm`).

use reqwest::StatusCode;

use super::error::TransferError;
use super::fleet::ContentQuery;
use super::httpmeta;
use super::netclient::for_download;
use super::rangeconn::{race, unless_stopped, Raced};
use super::task::{FileTask, Outcome};

use super::swarm::Head;

/// Fetches the file from peers when some have it; `None` when the origin is to be used
/// (no peer has it, peers are not to be asked, or the origin says the content is private).
pub(super) async fn try_peers(task: &FileTask<'_>) -> Result<Option<Outcome>, TransferError> {
    let Some(finder) = task.peers.clone() else {
        return Ok(None);
    };
    if task.record.bytes_transferred > 0 || !task.record.segments.is_empty() {
        // Under way from the origin: finish it that way.
        return Ok(None);
    }
    let url = task.record.remote_url.clone();
    let (query, head) = match &task.record.expected_sha256 {
        Some(sha) => (
            ContentQuery {
                url: url.clone(),
                validator: None,
                length: None,
                sha256: Some(sha.to_ascii_lowercase()),
            },
            None,
        ),
        None => {
            task.events.connecting();
            let Some(head) = head(task, &url).await? else {
                return Ok(None);
            };
            (
                ContentQuery {
                    url: url.clone(),
                    validator: Some(head.validator.clone()),
                    length: Some(head.length),
                    sha256: None,
                },
                Some(head),
            )
        }
    };
    let Some(offers) = unless_stopped(&task.cancel, finder.find(&query)).await else {
        return Ok(Some(Outcome::Cancelled));
    };
    let mut offers: Vec<_> = offers
        .into_iter()
        .filter(|o| query.length.is_none_or(|l| o.length == l))
        .filter(|o| query.sha256.as_ref().is_none_or(|s| *s == o.sha256))
        .collect();
    let Some(first) = offers.first().cloned() else {
        // Nobody holds it whole: join the machines that want it now (the swarm).
        let head = match head {
            Some(h) => h,
            None => {
                task.events.connecting();
                match self::head(task, &url).await? {
                    Some(h) => h,
                    None => return Ok(None),
                }
            }
        };
        return super::swarm::download(task, finder, query, head).await;
    };
    // Peers that disagree with the first about the content are left out.
    offers.retain(|o| o.length == first.length && o.sha256 == first.sha256);
    if first.length == 0 {
        return Ok(None);
    }
    tracing::info!(
        url,
        peers = offers.len(),
        length = first.length,
        "fetching from peers"
    );
    task.sources.claim_sha256(&first.sha256);
    let (validator, final_url) = match head {
        Some(h) => (Some(h.validator), h.final_url),
        None => (None, url),
    };
    super::segmented::from_peers(task, first.length, validator, final_url, &offers, false)
        .await
        .map(Some)
}

/// The origin's length and strong validator, when it answers a `HEAD` with both and does
/// not mark the content private (`None`: do not ask peers).
async fn head(task: &FileTask<'_>, url: &str) -> Result<Option<Head>, TransferError> {
    let req = for_download(task.client.head(url), task.options);
    let Raced::Ready(Ok(resp)) = race(&task.cancel, task.stall_timeout, req.send()).await else {
        return Ok(None);
    };
    let h = resp.headers();
    if resp.status() != StatusCode::OK {
        return Ok(None);
    }
    if httpmeta::no_store(h) {
        task.events.no_peer_cache();
        return Ok(None);
    }
    let length = httpmeta::content_length(h);
    let validator = httpmeta::validator(h);
    Ok(match (length, validator) {
        (Some(length), Some(validator)) => Some(Head {
            length,
            validator,
            final_url: resp.url().to_string(),
            ranges: httpmeta::accepts_ranges(h),
        }),
        _ => None,
    })
}
