//! The peer cache: the daemon's own copies of files it offers to the fleet, in a private
//! folder (`STATE_DIR/peer-cache`, mode 0700), one file per entry named by the entry's
//! random id, indexed in the store (table `peer_cache`) by origin URL + validator + length
//! and by SHA-256, and held in memory.
//!
//! A copy is a reflink (`FICLONE`) where the file system supports it, a copy otherwise;
//! the cache computes the SHA-256 of what it holds itself. The size limit evicts the
//! entries used least recently first; the age limit drops entries not looked up or served
//! for `max_content_age` (each access resets it).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::protocol::LookupRequest;
use crate::config::{CacheSize, PeersConfig};
use crate::model::{now_ms, CacheEntry};
use crate::store::Store;

/// A look-up or a serve counts as an access at most this often per entry (ms) in the
/// store: the in-memory time is always current.
const TOUCH_WRITE_MS: i64 = 60_000;

/// What a file that enters the cache is known by.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub url: String,
    pub validator: Option<String>,
    /// The SHA-256 it must have, when known (the copy is refused otherwise).
    pub sha256: Option<String>,
}

pub struct Cache {
    dir: PathBuf,
    store: Arc<Store>,
    entries: Mutex<HashMap<String, CacheEntry>>,
    limit: u64,
    max_age: Duration,
    /// Held while a file is copied in: one copy at a time, so that the same content
    /// offered twice at once (verified, then completed) enters once.
    adding: tokio::sync::Mutex<()>,
}

/// The limit in bytes: a share of the file system holding `dir`, or a size.
fn limit_bytes(size: CacheSize, dir: &Path) -> u64 {
    match size {
        CacheSize::Bytes(b) => b,
        CacheSize::Percent(p) => {
            let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
                return 0;
            };
            // SAFETY: statvfs fills the struct from a valid NUL-terminated path.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
                return 0;
            }
            let total = st.f_blocks as f64 * st.f_frsize as f64;
            (total * p / 100.0) as u64
        }
    }
}

fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Cache {
    /// Opens the cache folder under `state_dir` (created private), loads the index and
    /// drops what does not match: index rows whose file is gone, files nobody indexes.
    pub fn open(
        state_dir: &Path,
        store: Arc<Store>,
        config: &PeersConfig,
    ) -> anyhow::Result<Cache> {
        let dir = state_dir.join("peer-cache");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let mut entries: HashMap<String, CacheEntry> = store
            .load_cache_entries()?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        let gone: Vec<String> = entries
            .keys()
            .filter(|id| std::fs::metadata(dir.join(id)).is_err())
            .cloned()
            .collect();
        for id in &gone {
            entries.remove(id);
        }
        if !gone.is_empty() {
            drop(store.delete_cache_entries(gone));
        }
        for f in std::fs::read_dir(&dir)?.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if !entries.contains_key(&name) {
                let _ = std::fs::remove_file(f.path());
            }
        }
        Ok(Cache {
            limit: limit_bytes(config.cache_size, &dir),
            dir,
            store,
            entries: Mutex::new(entries),
            max_age: config.max_content_age,
            adding: tokio::sync::Mutex::new(()),
        })
    }

    /// The size limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<CacheEntry> {
        let mut v: Vec<CacheEntry> = self.entries.lock().values().cloned().collect();
        v.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        v
    }

    /// Entries and their bytes.
    pub fn size(&self) -> (u64, u64) {
        let e = self.entries.lock();
        (e.len() as u64, e.values().map(|e| e.length).sum())
    }

    /// Records an access (a look-up or a serve of `served` bytes).
    fn touch(&self, id: &str, served: u64) {
        let now = now_ms();
        let write = {
            let mut entries = self.entries.lock();
            let Some(e) = entries.get_mut(id) else {
                return;
            };
            let due = now - e.last_access_ms >= TOUCH_WRITE_MS || served > 0;
            e.last_access_ms = now;
            e.bytes_served += served;
            due.then(|| e.clone())
        };
        if let Some(e) = write {
            drop(self.store.put_cache_entries(vec![e]));
        }
    }

    /// The entry that answers `req`, if any (an access).
    pub fn lookup(&self, req: &LookupRequest) -> Option<CacheEntry> {
        let found = {
            let entries = self.entries.lock();
            entries
                .values()
                .find(|e| match (&req.sha256, &req.url) {
                    (Some(sha), _) => e.sha256 == *sha,
                    (None, Some(url)) => {
                        e.url == *url
                            && e.validator.is_some()
                            && e.validator == req.validator
                            && Some(e.length) == req.length
                    }
                    (None, None) => false,
                })
                .cloned()
        }?;
        self.touch(&found.id, 0);
        Some(found)
    }

    /// The entry with id `id`, or with SHA-256 `sha256`.
    pub fn find(&self, id: Option<&str>, sha256: Option<&str>) -> Option<CacheEntry> {
        let entries = self.entries.lock();
        match (id, sha256) {
            (Some(id), _) => entries.get(id).cloned(),
            (None, Some(sha)) => entries.values().find(|e| e.sha256 == sha).cloned(),
            _ => None,
        }
    }

    /// Opens an entry's file to serve it.
    pub fn open_content(&self, e: &CacheEntry) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join(&e.id))
    }

    /// `bytes` of entry `id` were served.
    pub fn served(&self, id: &str, bytes: u64) {
        self.touch(id, bytes);
    }

    /// True when an entry for this content is already there.
    pub fn holds(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> bool {
        self.entries.lock().values().any(|e| {
            sha256.is_some_and(|s| e.sha256 == s)
                || (validator.is_some() && e.url == url && e.validator.as_deref() == validator)
        })
    }

    /// Copies `source` (opened by the file's owner) into the cache. `Ok(None)` when it is
    /// already there or larger than the whole cache.
    pub async fn add(
        self: &Arc<Self>,
        source: File,
        what: Incoming,
    ) -> anyhow::Result<Option<CacheEntry>> {
        let _one_at_a_time = self.adding.lock().await;
        if self.holds(&what.url, what.validator.as_deref(), what.sha256.as_deref()) {
            return Ok(None);
        }
        let length = source.metadata()?.len();
        if length > self.limit {
            tracing::info!(
                url = what.url,
                length,
                limit = self.limit,
                "too large for the peer cache"
            );
            return Ok(None);
        }
        let id = random_id();
        let dir = self.dir.clone();
        let tmp = dir.join(format!(".incoming-{id}"));
        let final_path = dir.join(&id);
        let expected = what.sha256.clone();
        let sha256 = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let result = copy_in(&source, &tmp).and_then(|sha| {
                if let Some(e) = expected.filter(|e| !e.eq_ignore_ascii_case(&sha)) {
                    anyhow::bail!("the copy's SHA-256 is {sha}, expected {e}");
                }
                std::fs::rename(&tmp, &final_path)?;
                Ok(sha)
            });
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await??;
        let now = now_ms();
        let entry = CacheEntry {
            id,
            url: what.url,
            validator: what.validator,
            length,
            sha256,
            created_ms: now,
            last_access_ms: now,
            bytes_served: 0,
        };
        let evicted = {
            let mut entries = self.entries.lock();
            let mut used: u64 = entries.values().map(|e| e.length).sum();
            let mut by_age: Vec<(i64, String, u64)> = entries
                .values()
                .map(|e| (e.last_access_ms, e.id.clone(), e.length))
                .collect();
            by_age.sort();
            let mut evicted = Vec::new();
            for (_, id, len) in by_age {
                if used + length <= self.limit {
                    break;
                }
                entries.remove(&id);
                used -= len;
                evicted.push(id);
            }
            entries.insert(entry.id.clone(), entry.clone());
            evicted
        };
        self.forget_files(evicted);
        crate::store::Store::committed(self.store.put_cache_entries(vec![entry.clone()]))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(
            id = entry.id,
            url = entry.url,
            length,
            "added to the peer cache"
        );
        Ok(Some(entry))
    }

    /// Removes entries from the index and their files.
    fn forget_files(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        for id in &ids {
            let _ = std::fs::remove_file(self.dir.join(id));
        }
        tracing::info!(entries = ids.len(), "removed from the peer cache");
        drop(self.store.delete_cache_entries(ids));
    }

    /// Removes the entries of this content (by URL and validator, or by SHA-256); how
    /// many there were.
    pub fn evict(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> usize {
        let ids: Vec<String> = {
            let mut entries = self.entries.lock();
            let ids: Vec<String> = entries
                .values()
                .filter(|e| {
                    sha256.is_some_and(|s| e.sha256 == s)
                        || (e.url == url
                            && (validator.is_none() || e.validator.as_deref() == validator))
                })
                .map(|e| e.id.clone())
                .collect();
            for id in &ids {
                entries.remove(id);
            }
            ids
        };
        let n = ids.len();
        self.forget_files(ids);
        n
    }

    /// Removes every entry; how many and their bytes.
    pub fn clear(&self) -> (u64, u64) {
        let all: Vec<CacheEntry> = self.entries.lock().drain().map(|(_, e)| e).collect();
        let bytes = all.iter().map(|e| e.length).sum();
        let n = all.len() as u64;
        self.forget_files(all.into_iter().map(|e| e.id).collect());
        (n, bytes)
    }

    /// Removes the entries nobody accessed for the maximum content age.
    pub fn expire(&self) {
        let oldest = now_ms() - self.max_age.as_millis() as i64;
        let ids: Vec<String> = {
            let mut entries = self.entries.lock();
            let ids: Vec<String> = entries
                .values()
                .filter(|e| e.last_access_ms < oldest)
                .map(|e| e.id.clone())
                .collect();
            for id in &ids {
                entries.remove(id);
            }
            ids
        };
        self.forget_files(ids);
    }
}

/// Makes `tmp` a copy of `source` (a reflink where the file system can), synced, and
/// returns its SHA-256.
fn copy_in(source: &File, tmp: &Path) -> anyhow::Result<String> {
    use std::os::fd::AsRawFd;
    let mut dst = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)?;
    // SAFETY: both descriptors are open for the duration of the call.
    let cloned = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) } == 0;
    if !cloned {
        let mut src = source.try_clone()?;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(0))?;
        // std's copy uses copy_file_range between files on Linux.
        std::io::copy(&mut src, &mut dst)?;
    }
    dst.sync_all()?;
    std::io::Seek::seek(&mut dst, std::io::SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = dst.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PeersConfig {
        PeersConfig {
            cache_size: CacheSize::Bytes(1 << 20),
            max_content_age: Duration::from_secs(3600),
            ..PeersConfig::default()
        }
    }

    /// A cache in `dir` holding one entry of `n` bytes for `url`.
    async fn cache_with(dir: &Path, url: &str, n: usize) -> (Arc<Cache>, Arc<Store>, String) {
        let store = Arc::new(Store::open(dir).unwrap());
        let cache = Arc::new(Cache::open(dir, store.clone(), &config()).unwrap());
        let src = dir.join(format!("src-{n}"));
        std::fs::write(&src, vec![7u8; n]).unwrap();
        let entry = cache
            .add(
                File::open(&src).unwrap(),
                Incoming {
                    url: url.into(),
                    validator: Some("\"v\"".into()),
                    sha256: None,
                },
            )
            .await
            .unwrap()
            .expect("added");
        (cache, store, entry.id)
    }

    fn entry(cache: &Cache, id: &str) -> CacheEntry {
        cache.entries.lock()[id].clone()
    }

    #[tokio::test]
    async fn serving_counts_the_bytes_and_is_a_use() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _store, id) = cache_with(dir.path(), "http://o/f", 1000).await;
        assert_eq!(entry(&cache, &id).bytes_served, 0);
        cache.entries.lock().get_mut(&id).unwrap().last_access_ms = 1;
        cache.served(&id, 600);
        cache.served(&id, 400);
        let e = entry(&cache, &id);
        assert_eq!(e.bytes_served, 1000, "every serve counts");
        assert!(
            e.last_access_ms > now_ms() - 60_000,
            "a serve is a use: {e:?}"
        );
    }

    #[tokio::test]
    async fn the_age_limit_keeps_what_peers_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _store, used) = cache_with(dir.path(), "http://o/used", 100).await;
        let src = dir.path().join("src-other");
        std::fs::write(&src, vec![9u8; 200]).unwrap();
        let unused = cache
            .add(
                File::open(&src).unwrap(),
                Incoming {
                    url: "http://o/unused".into(),
                    validator: Some("\"w\"".into()),
                    sha256: None,
                },
            )
            .await
            .unwrap()
            .unwrap()
            .id;
        // Both older than the maximum age; then a peer fetches one of them.
        let old = now_ms() - 2 * 3_600_000;
        for e in cache.entries.lock().values_mut() {
            e.last_access_ms = old;
        }
        cache.served(&used, 100);
        cache.expire();
        let left: Vec<String> = cache.entries().into_iter().map(|e| e.id).collect();
        assert_eq!(left, vec![used.clone()], "{unused} aged out, {used} stayed");
        assert!(!dir.path().join("peer-cache").join(&unused).exists());
    }

    #[tokio::test]
    async fn served_bytes_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let (cache, store, id) = cache_with(dir.path(), "http://o/f", 500).await;
            cache.served(&id, 500);
            drop(cache);
            store.close();
            id
        };
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let cache = Cache::open(dir.path(), store, &config()).unwrap();
        assert_eq!(entry(&cache, &id).bytes_served, 500);
    }
}
