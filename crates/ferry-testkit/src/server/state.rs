//! The state shared by the [`TestServer`] handle and the connections: served
//! files, modes, fault queues, recordings, uploads and tus uploads, plus the
//! release signal of stalls. Everything is keyed by [`key_of`] a path.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::tus::TusUpload;
#[cfg(doc)]
use super::TestServer;
use super::{Fault, Mode, RecordedRequest};

/// A served file.
#[derive(Clone)]
pub(super) struct FileEntry {
    pub(super) data: Arc<Vec<u8>>,
    pub(super) etag: String,
    pub(super) last_modified: SystemTime,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) files: HashMap<String, FileEntry>,
    pub(super) modes: HashMap<String, Mode>,
    pub(super) faults: HashMap<String, VecDeque<Fault>>,
    pub(super) requests: HashMap<String, Vec<RecordedRequest>>,
    pub(super) uploads: HashMap<String, Vec<u8>>,
    /// Status and body answering a `PUT`/`POST` (or completing a tus upload).
    pub(super) upload_replies: HashMap<String, (u16, Vec<u8>)>,
    /// Enabled tus prefixes, each ending with `/`.
    pub(super) tus_prefixes: Vec<String>,
    /// tus uploads in order of creation.
    pub(super) tus_uploads: Vec<TusUpload>,
    /// Number of tus uploads created so far (for their ids).
    pub(super) tus_created: u64,
    /// Paths that require HTTP Digest authentication.
    pub(super) digest: HashMap<String, super::digest::DigestRequirement>,
    /// Bumped on every content change so that every change gets a new ETag.
    version: u64,
}

impl State {
    pub(super) fn set_file(&mut self, key: String, data: Vec<u8>) {
        self.version += 1;
        let mut hasher = Sha256::new();
        hasher.update(&data);
        hasher.update(self.version.to_le_bytes());
        let etag = format!("\"{}\"", &hex::encode(hasher.finalize())[..32]);
        // HTTP dates have a resolution of one second: make sure a change gets a
        // Last-Modified different from the previous one.
        let now = UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            );
        let last_modified = match self.files.get(&key) {
            Some(old) if old.last_modified >= now => old.last_modified + Duration::from_secs(1),
            _ => now,
        };
        self.files.insert(
            key,
            FileEntry {
                data: Arc::new(data),
                etag,
                last_modified,
            },
        );
    }
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// [`TestServer::base_url`], for absolute `Location`s.
    pub(super) base_url: String,
    /// Generation counter bumped by [`TestServer::release_stalls`].
    pub(super) release: watch::Sender<u64>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The key a path is stored under: the request target without scheme,
/// authority and query string.
pub(super) fn key_of(target: &str) -> String {
    let mut path = target;
    for scheme in ["http://", "https://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            path = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}
