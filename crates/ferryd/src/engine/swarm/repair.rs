//! The end of a swarm download with a known SHA-256: the file is hashed; on a mismatch
//! each piece that came (partly) from peers is fetched again from the origin and compared,
//! the peers whose pieces differed are banned and the origin's bytes written in their
//! place, and the file is hashed again. Pieces fetched from the origin are never
//! refetched: a swarm shares only first-hand pieces, so a bad piece names its liar.
//!
//! May use: the engine's sources and error types.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::super::error::{self, TransferError};
use super::super::fleet::PeerFinder;
use super::super::rangeconn::send;
use super::super::sources::{Source, SourceKind};
use super::super::task::FileTask;
use super::shared::Download;

/// Bytes hashed per read.
const CHUNK: usize = 4 << 20;

/// The part file, opened to read and to write.
pub(super) struct Files<'a> {
    pub read: &'a std::fs::File,
    pub write: &'a std::fs::File,
}

/// True when the file matches `expected` (after repairing what peers sent wrong). A file
/// that still does not match is left for the worker's own check (which refetches it
/// from the origin alone).
pub(super) async fn check_and_repair(
    task: &FileTask<'_>,
    finder: &Arc<dyn PeerFinder>,
    dl: &Download,
    files: Files<'_>,
    origin: &Source,
    expected: &str,
) -> Result<bool, TransferError> {
    if hash(task, files.read, dl.length).await? == expected {
        return Ok(true);
    }
    let suspects: Vec<(usize, Vec<String>)> = dl
        .from_peers
        .lock()
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .map(|(i, p)| (i, p.clone()))
        .collect();
    tracing::warn!(
        url = task.record.remote_url,
        pieces = suspects.len(),
        "the swarm's file failed its SHA-256 check; comparing the pieces from peers with the origin"
    );
    let states = dl.table.states();
    let mut liars: Vec<String> = Vec::new();
    for (i, from) in suspects {
        let (start, end) = (states[i].start, states[i].end);
        let good = origin_piece(task, origin, start, end).await?;
        let f = files
            .read
            .try_clone()
            .map_err(|e| TransferError::local_io("opening", &task.part, &e))?;
        let ours = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; (end - start) as usize];
            f.read_exact_at(&mut buf, start).map(|_| buf)
        })
        .await
        .map_err(TransferError::internal)?
        .map_err(|e| TransferError::local_io("reading", &task.part, &e))?;
        task.sources.add(&SourceKind::Origin, good.len() as u64);
        if ours == good {
            continue;
        }
        for p in from {
            if !liars.contains(&p) {
                liars.push(p);
            }
        }
        let f = files
            .write
            .try_clone()
            .map_err(|e| TransferError::local_io("opening", &task.part, &e))?;
        tokio::task::spawn_blocking(move || f.write_all_at(&good, start))
            .await
            .map_err(TransferError::internal)?
            .map_err(|e| TransferError::local_io("writing", &task.part, &e))?;
    }
    if !liars.is_empty() {
        tracing::warn!(peers = ?liars, "peers served altered pieces; banned");
        finder.ban(&liars, "it served pieces that differ from the origin's");
        dl.first_hand
            .iter()
            .for_each(|f| f.store(false, Ordering::Release));
    }
    let f = files
        .write
        .try_clone()
        .map_err(|e| TransferError::local_io("opening", &task.part, &e))?;
    tokio::task::spawn_blocking(move || f.sync_data())
        .await
        .map_err(TransferError::internal)?
        .map_err(|e| TransferError::local_io("syncing", &task.part, &e))?;
    Ok(hash(task, files.read, dl.length).await? == expected)
}

/// The SHA-256 of the part file, lower-case hex.
async fn hash(
    task: &FileTask<'_>,
    file: &std::fs::File,
    length: u64,
) -> Result<String, TransferError> {
    let f = file
        .try_clone()
        .map_err(|e| TransferError::local_io("opening", &task.part, &e))?;
    tokio::task::spawn_blocking(move || {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0u64;
        while at < length {
            let n = CHUNK.min((length - at) as usize);
            f.read_exact_at(&mut buf[..n], at)?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok::<_, std::io::Error>(hex::encode(h.finalize()))
    })
    .await
    .map_err(TransferError::internal)?
    .map_err(|e| TransferError::local_io("reading", &task.part, &e))
}

/// Bytes `[start, end)` from the origin.
async fn origin_piece(
    task: &FileTask<'_>,
    origin: &Source,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, TransferError> {
    let label = origin.label();
    let req = origin.range_request(start, end);
    let credentials = origin.credentials();
    let Some(resp) = send(&task.cancel, task.stall_timeout, req, credentials, &label).await? else {
        return Err(TransferError::internal("cancelled"));
    };
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        return Err(error::from_status(resp.status().as_u16(), &label, None));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| error::from_reqwest(&e, &label))?;
    if body.len() as u64 != end - start {
        return Err(error::from_status(502, &label, None));
    }
    Ok(body.to_vec())
}
