//! The job store: SQLite in WAL mode with one writer thread fed by a channel.
//!
//! Every write is a closure run inside a transaction on the writer thread. The writer
//! drains whatever is queued into one transaction (group commit) and commits with
//! `synchronous=FULL`, so a write whose future has resolved is on disk: the service replies
//! to a command only after that. Reads use their own connection.
//!
//! May use: `model`. The only module that speaks SQL.
//!
//! # A disk that cannot be written
//!
//! A write that fails because the state folder's disk is full, over quota or failing
//! (`health.rs`) is rolled back with its whole batch and marks the store unwritable;
//! callers get a [`WriteError::Unwritable`] that names the state folder. The daemon
//! checks [`Store::writable`] before it changes anything a client asked for, pauses its
//! transfers, and every few seconds (once [`Store::free_bytes`] shows room) writes its
//! whole state back with [`Store::queue_recovery`]; that write committing is what marks
//! the store writable again.
//!
//! # Columns that cannot be read
//!
//! A stored value is never replaced by a default in silence. Per parsed column:
//!
//! - `jobs.options` (JSON; an upload protocol other than `put`/`tus` counts as
//!   unreadable too) and `jobs.notify_command` (JSON): defaults would send the job
//!   without its credentials, proxy or CA file, as a PUT instead of a tus upload, or
//!   without running its notify command. The job is loaded with everything else as
//!   stored, in `error`, with an error record (context `daemon`, code
//!   [`UNREADABLE_OPTIONS`] or [`UNREADABLE_NOTIFY_COMMAND`]) naming the column,
//!   serde's reason (string values left out: they may be secrets) and what to do:
//!   cancel the job and create it again. `resume` refuses such a job
//!   ([`is_unreadable`]). A final job keeps its state (nothing uses its options) and
//!   gets the record. [`Store::load`] queues the new state and record to the store,
//!   leaving the unreadable column as it is, so the store says what the daemon shows;
//!   the next start finds the job the same way (by its error record, once a later
//!   write has replaced the column with the defaults).
//! - `files.segments` (JSON): the durable bytes of a multi-connection download are
//!   scattered over its segments; resuming at `bytes_transferred` without them would
//!   leave holes in the file. An incomplete file's checkpoint is dropped (it starts
//!   again from zero, which is always safe) and a warning logged; a completed file
//!   needs no segments.
//! - `files.ranges` (JSON): without them a file of ranges would be downloaded whole into
//!   a file its application reads as ranges. The file gets one empty range instead (a
//!   warning logged): its next run fails with `invalid_range`, saying that its stored
//!   ranges could not be read and to add the file again.
//! - `handlers.argv` (JSON): a handler without its command cannot run. It is not
//!   loaded (an error says which class and to register it again); its row stays until
//!   it is registered again or removed.
//! - `jobs.error_context`: an unknown context keeps the record's code and message,
//!   with context `daemon` and a note that the stored context could not be read. The
//!   record only informs (`resume` clears it), so the job is not held back.
//! - `jobs.error_code`/`error_message`/`error_time_ms` are written together with the
//!   context; NULL among them (never written by ferryd) reads as empty or 0.
//! - `jobs.notify_flags`: bits this ferryd does not know are dropped (they can only
//!   come from a newer one; none of them means anything here).
//! - Ids, `job_type`, `priority`, `state`, `finishing` and `outbox.method`: a value that
//!   cannot be read fails the load (as before) and ferryd does not start, with the column's index
//!   and the parse error in the message: there is no safe guess for any of them.

pub mod compact;
mod health;
mod rows;
pub mod schema;
mod split;
pub use split::split_by_owner;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use parking_lot::Mutex;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use std::sync::Arc;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

pub use health::{Cause, Unwritable, WriteError};

use crate::model::{CacheEntry, FileRecord, HandlerRecord, JobRecord, OutboxRecord};

pub use rows::{
    is_unreadable, upsert_file as put_file_tx, upsert_job as put_job_tx,
    upsert_outbox as put_outbox_tx, ArchivedRow, FILE_COLUMNS, JOB_COLUMNS,
    UNREADABLE_NOTIFY_COMMAND, UNREADABLE_OPTIONS,
};

/// The final jobs the daemon keeps only an index of: acknowledged or cancelled, with no
/// complete or cancel cut short (`finishing`) and no notification waiting in the outbox.
const ARCHIVED: &str = "state IN ('acknowledged', 'cancelled') AND finishing IS NULL \
     AND id NOT IN (SELECT job_id FROM outbox)";

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("job store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("job store writer has stopped")]
    Closed,
}

type WriteFn = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

/// What a queued write's future resolves to.
pub type Committed = oneshot::Receiver<Result<(), WriteError>>;

/// A queued write: the closure, who waits for it, and whether its commit marks the store
/// writable again (the daemon's whole state written back).
struct Write {
    f: WriteFn,
    done: Option<Ack>,
    recovery: bool,
}

enum Command {
    Write(Write),
    Stop,
}

/// Handle to the store; cheap to share behind an `Arc`.
pub struct Store {
    path: PathBuf,
    tx: Mutex<mpsc::Sender<Command>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
    health: Arc<health::Health>,
}

/// Everything the daemon loads at start-up.
pub struct Snapshot {
    /// Jobs that can still change, and final jobs with something left to do (a
    /// notification in the outbox, a cut-short complete or cancel).
    pub jobs: Vec<JobRecord>,
    /// The files of `jobs`.
    pub files: Vec<FileRecord>,
    /// The other final jobs: only what finds and filters them (see [`Store::load_job`]).
    pub archived: Vec<ArchivedRow>,
    pub handlers: Vec<HandlerRecord>,
    pub outbox: Vec<OutboxRecord>,
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The WAL is cut back to this once a checkpoint has emptied it: without a limit it
    // keeps the size of its largest write for good (a recovery write of every job).
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(conn)
}

/// The size the WAL file is cut back to after a checkpoint (bytes).
const WAL_SIZE_LIMIT: i64 = 4 << 20;

impl Store {
    /// Opens (creating if needed) `ferry.db` in `state_dir`, migrates it and starts the writer.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join("ferry.db");
        let mut writer_conn = open_connection(&path)?;
        schema::migrate(&mut writer_conn)?;
        let reader = open_connection(&path)?;
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(watch::Sender::new(None));
        let writer = {
            let health = health.clone();
            let state_dir = state_dir.to_owned();
            std::thread::Builder::new()
                .name("ferryd-store".into())
                .spawn(move || writer_loop(writer_conn, rx, &health, &state_dir))
                .map_err(|e| {
                    StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(e.into()))
                })?
        };
        Ok(Store {
            path,
            tx: Mutex::new(tx),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(reader),
            health,
        })
    }

    /// `Ok` while the store can be written; else why not (naming the state folder).
    pub fn writable(&self) -> Result<(), WriteError> {
        match &*self.health.borrow() {
            None => Ok(()),
            Some(u) => Err(WriteError::Unwritable(u.clone())),
        }
    }

    /// Follows the store's health: `Some` while it cannot be written.
    pub fn health(&self) -> watch::Receiver<Option<Unwritable>> {
        self.health.subscribe()
    }

    /// Bytes free for this process on the state folder's disk (`statvfs`: what anyone may
    /// use, plus the blocks reserved for root when running as root).
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `st` is written by statvfs only; `c` is a valid NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: geteuid cannot fail.
        let blocks = if unsafe { libc::geteuid() } == 0 {
            st.f_bfree
        } else {
            st.f_bavail
        };
        Ok(blocks.saturating_mul(st.f_frsize))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, cmd: Command) -> Result<(), StoreError> {
        self.tx.lock().send(cmd).map_err(|_| StoreError::Closed)
    }

    fn queue_write<F>(&self, f: F, recovery: bool) -> Committed
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        let write = Write {
            f: Box::new(f),
            done: Some(done),
            recovery,
        };
        if self.send(Command::Write(write)).is_err() {
            let (done, rx) = oneshot::channel();
            let _ = done.send(Err(WriteError::Stopped));
            return rx;
        }
        rx
    }

    /// Queues a write and returns a receiver that resolves once it is durably committed.
    ///
    /// Writes are applied in the order they are queued.
    pub fn queue<F>(&self, f: F) -> Committed
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        self.queue_write(f, false)
    }

    /// Queues the write of the daemon's whole state after the store could not be written;
    /// once it commits, the store is writable again.
    pub fn queue_recovery<F>(&self, f: F) -> Committed
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        self.queue_write(f, true)
    }

    /// Queues a write nobody waits for (progress checkpoints).
    pub fn queue_detached<F>(&self, f: F)
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let _ = self.send(Command::Write(Write {
            f: Box::new(f),
            done: None,
            recovery: false,
        }));
    }

    /// Waits for a queued write.
    pub async fn committed(rx: Committed) -> Result<(), WriteError> {
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Writes the daemon's whole state: every job given with all its files, and the
    /// outbox and handlers replaced by those given (after a time the store could not be
    /// written, [`Store::queue_recovery`]).
    pub fn write_back(
        &self,
        jobs: Vec<(JobRecord, Vec<FileRecord>)>,
        outbox: Vec<OutboxRecord>,
        handlers: Vec<HandlerRecord>,
    ) -> Committed {
        self.queue_recovery(move |tx| {
            for (job, files) in &jobs {
                rows::upsert_job(tx, job)?;
                for f in files {
                    rows::upsert_file(tx, f)?;
                }
            }
            tx.prepare_cached("DELETE FROM outbox")?.execute([])?;
            for o in &outbox {
                rows::upsert_outbox(tx, o)?;
            }
            tx.prepare_cached("DELETE FROM handlers")?.execute([])?;
            for h in &handlers {
                rows::upsert_handler(tx, h)?;
            }
            Ok(())
        })
    }

    /// Writes `job` (insert or replace).
    pub fn put_job(&self, job: &JobRecord) -> Committed {
        let job = job.clone();
        self.queue(move |tx| rows::upsert_job(tx, &job))
    }

    /// Writes `job` and `files` in one transaction.
    pub fn put_job_and_files(&self, job: &JobRecord, files: Vec<FileRecord>) -> Committed {
        let job = job.clone();
        self.queue(move |tx| {
            rows::upsert_job(tx, &job)?;
            for f in &files {
                rows::upsert_file(tx, f)?;
            }
            Ok(())
        })
    }

    /// Records checkpoints: (job, file index, bytes durable, total, validator, final url).
    pub fn put_files_detached(&self, files: Vec<FileRecord>) {
        self.queue_detached(move |tx| {
            for f in &files {
                rows::upsert_file(tx, f)?;
            }
            Ok(())
        })
    }

    /// Deletes a job and its files.
    pub fn delete_jobs(&self, ids: Vec<Uuid>) -> Committed {
        self.queue(move |tx| {
            for id in &ids {
                let id = id.to_string();
                tx.prepare_cached("DELETE FROM files WHERE job_id = ?1")?
                    .execute([&id])?;
                tx.prepare_cached("DELETE FROM outbox WHERE job_id = ?1")?
                    .execute([&id])?;
                tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                    .execute([&id])?;
            }
            Ok(())
        })
    }

    /// Writes a handler registration.
    pub fn put_handler(&self, h: &HandlerRecord) -> Committed {
        let h = h.clone();
        self.queue(move |tx| rows::upsert_handler(tx, &h))
    }

    /// Writes (inserts or updates) an outbox entry, not waiting for the commit.
    pub fn put_outbox_detached(&self, o: &OutboxRecord) {
        let o = o.clone();
        self.queue_detached(move |tx| rows::upsert_outbox(tx, &o));
    }

    /// Deletes an outbox entry (delivered or no longer due).
    pub fn delete_outbox_detached(&self, id: i64) {
        self.queue_detached(move |tx| {
            tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        });
    }

    /// Removes a handler registration.
    pub fn delete_handler(&self, class: Uuid, owner_uid: u32) -> Committed {
        self.queue(move |tx| {
            tx.prepare_cached("DELETE FROM handlers WHERE class = ?1 AND owner_uid = ?2")?
                .execute(rusqlite::params![class.to_string(), owner_uid])?;
            Ok(())
        })
    }

    /// Runs `f` on the reader connection (blocking; call from a blocking context).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.reader.lock();
        Ok(f(&conn)?)
    }

    /// Loads every job that can still change with its files, the index of the final ones
    /// (read in full by [`Store::load_job`] when someone looks at one), the handlers and
    /// the outbox.
    ///
    /// A job with a column it needs unreadable comes back in `error` (see the module
    /// doc), and that state is queued to the store.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let snapshot = self.read(|c| {
            let mut marked = Vec::new();
            let jobs = c
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE NOT ({ARCHIVED}) \
                     ORDER BY created_ms, id"
                ))?
                .query_map([], rows::job_from_row)?
                .map(|r| {
                    r.map(|(job, unreadable)| {
                        if unreadable {
                            marked.push(job.clone());
                        }
                        job
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let files = c
                .prepare(&format!(
                    "SELECT {FILE_COLUMNS} FROM files WHERE job_id IN \
                     (SELECT id FROM jobs WHERE NOT ({ARCHIVED})) ORDER BY job_id, idx"
                ))?
                .query_map([], rows::file_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let archived = c
                .prepare(&format!(
                    "SELECT {} FROM jobs WHERE {ARCHIVED}",
                    rows::ARCHIVED_COLUMNS
                ))?
                .query_map([], rows::archived_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let handlers = c
                .prepare("SELECT class, owner_uid, argv, workdir, registered_ms FROM handlers")?
                .query_map([], rows::handler_from_row)?
                .filter_map(Result::transpose)
                .collect::<Result<Vec<_>, _>>()?;
            let outbox = c
                .prepare(
                    "SELECT id, job_id, method, file_index, created_ms, attempts, \
                     next_attempt_ms, last_error FROM outbox ORDER BY id",
                )?
                .query_map([], rows::outbox_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((
                Snapshot {
                    jobs,
                    files,
                    archived,
                    handlers,
                    outbox,
                },
                marked,
            ))
        });
        let (snapshot, marked) = snapshot?;
        if !marked.is_empty() {
            self.queue_detached(move |tx| {
                for job in &marked {
                    rows::record_unreadable(tx, job)?;
                }
                Ok(())
            });
        }
        Ok(snapshot)
    }

    /// Job `id` and its files as stored (a final job the daemon keeps only an index of);
    /// `None` when it is not stored. An unreadable column is handled as [`Store::load`]
    /// does, its record queued to the store.
    pub fn load_job(&self, id: Uuid) -> Result<Option<(JobRecord, Vec<FileRecord>)>, StoreError> {
        let key = id.to_string();
        let loaded = self.read(|c| {
            let job = c
                .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
                .query_map([&key], rows::job_from_row)?
                .next()
                .transpose()?;
            let Some((job, unreadable)) = job else {
                return Ok(None);
            };
            let files = c
                .prepare_cached(&format!(
                    "SELECT {FILE_COLUMNS} FROM files WHERE job_id = ?1 ORDER BY idx"
                ))?
                .query_map([&key], rows::file_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((job, files, unreadable)))
        })?;
        Ok(loaded.map(|(job, files, unreadable)| {
            if unreadable {
                let marked = job.clone();
                self.queue_detached(move |tx| rows::record_unreadable(tx, &marked));
            }
            (job, files)
        }))
    }

    /// Jobs `ids` (final jobs the daemon keeps only an index of) with their files, in no
    /// particular order; ids not stored are left out. Many are read in one pass over the
    /// archived jobs rather than one lookup each.
    pub fn load_jobs(&self, ids: &[Uuid]) -> Result<Vec<(JobRecord, Vec<FileRecord>)>, StoreError> {
        const ONE_PASS_FROM: usize = 256;
        if ids.len() < ONE_PASS_FROM {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.extend(self.load_job(*id)?);
            }
            return Ok(out);
        }
        let wanted: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
        let (jobs, files) = self.read(|c| {
            let jobs = c
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE {ARCHIVED} ORDER BY id"
                ))?
                .query_map([], rows::job_from_row)?
                .filter(|r| r.as_ref().map_or(true, |(j, _)| wanted.contains(&j.id)))
                .collect::<Result<Vec<_>, _>>()?;
            let files = c
                .prepare(&format!(
                    "SELECT {FILE_COLUMNS} FROM files WHERE job_id IN \
                     (SELECT id FROM jobs WHERE {ARCHIVED}) ORDER BY job_id, idx"
                ))?
                .query_map([], rows::file_from_row)?
                .filter(|r| r.as_ref().map_or(true, |f| wanted.contains(&f.job_id)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((jobs, files))
        })?;
        let mut by_job: std::collections::HashMap<Uuid, Vec<FileRecord>> =
            std::collections::HashMap::with_capacity(jobs.len());
        for f in files {
            by_job.entry(f.job_id).or_default().push(f);
        }
        Ok(jobs
            .into_iter()
            .map(|(job, unreadable)| {
                if unreadable {
                    let marked = job.clone();
                    self.queue_detached(move |tx| rows::record_unreadable(tx, &marked));
                }
                let files = by_job.remove(&job.id).unwrap_or_default();
                (job, files)
            })
            .collect())
    }

    /// Every entry of the peer cache's index.
    pub fn load_cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.read(|c| {
            c.prepare(&format!(
                "SELECT {} FROM peer_cache ORDER BY created_ms, id",
                rows::CACHE_COLUMNS
            ))?
            .query_map([], rows::cache_entry_from_row)?
            .collect()
        })
    }

    /// Writes (inserts or replaces) entries of the peer cache's index.
    pub fn put_cache_entries(&self, entries: Vec<CacheEntry>) -> Committed {
        self.queue(move |tx| {
            for e in &entries {
                rows::upsert_cache_entry(tx, e)?;
            }
            Ok(())
        })
    }

    /// Removes entries of the peer cache's index.
    pub fn delete_cache_entries(&self, ids: Vec<String>) -> Committed {
        self.queue(move |tx| {
            for id in &ids {
                tx.prepare_cached("DELETE FROM peer_cache WHERE id = ?1")?
                    .execute([id])?;
            }
            Ok(())
        })
    }

    /// The bytes the store's pages in use take (its file less the free pages).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let size: u64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages: u64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let free: u64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            Ok(size * pages.saturating_sub(free))
        })
    }

    /// Runs `PRAGMA integrity_check` and returns its verdict ("ok" when sound).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.read(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
    }

    /// Flushes every queued write and stops the writer thread.
    pub fn close(&self) {
        let _ = self.send(Command::Stop);
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Most writes one transaction takes; the rest wait for the next.
const MAX_BATCH: usize = 4096;

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Command>,
    health: &health::Health,
    state_dir: &Path,
) {
    let mut stop = false;
    let (mut writes, mut commits) = (0u64, 0u64);
    while !stop {
        let first = match rx.recv() {
            Ok(c) => c,
            Err(_) => break,
        };
        let mut batch = Vec::new();
        match first {
            Command::Write(w) => batch.push(w),
            Command::Stop => stop = true,
        }
        while batch.len() < MAX_BATCH && !stop {
            match rx.try_recv() {
                Ok(Command::Write(w)) => batch.push(w),
                Ok(Command::Stop) => stop = true,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        writes += batch.len() as u64;
        commits += 1;
        commit_batch(&mut conn, batch, health, state_dir);
    }
    // Drain writes that raced with Stop so nothing acknowledged is dropped.
    let rest: Vec<_> = rx
        .try_iter()
        .filter_map(|c| match c {
            Command::Write(w) => Some(w),
            Command::Stop => None,
        })
        .collect();
    if !rest.is_empty() {
        commit_batch(&mut conn, rest, health, state_dir);
    }
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    tracing::info!(writes, commits, "store writer stopped");
}

type Ack = oneshot::Sender<Result<(), WriteError>>;

/// Commits `batch` in one transaction, a savepoint per write. A failure that says the
/// disk cannot be written fails the whole batch (it is rolled back) and marks the store
/// unwritable; a recovery write that commits marks it writable again.
fn commit_batch(conn: &mut Connection, batch: Vec<Write>, health: &health::Health, dir: &Path) {
    let mut results: Vec<(Option<Ack>, Result<(), WriteError>)> = Vec::with_capacity(batch.len());
    let mut unwritable: Option<Unwritable> = None;
    let recovery = batch.iter().any(|w| w.recovery);
    let outcome = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        for w in batch {
            // A savepoint per write: one failing write does not undo the others. The
            // statements are prepared once (rusqlite's `savepoint()` parses them anew).
            tx.prepare_cached("SAVEPOINT write")?.execute([])?;
            match (w.f)(&tx) {
                Ok(()) => {
                    tx.prepare_cached("RELEASE write")?.execute([])?;
                    results.push((w.done, Ok(())));
                }
                Err(e) => {
                    if let Some(u) = health::classify(&e, health::system_errno(&tx), dir) {
                        unwritable.get_or_insert(u);
                    }
                    tx.prepare_cached("ROLLBACK TO write")?.execute([])?;
                    tx.prepare_cached("RELEASE write")?.execute([])?;
                    tracing::error!("store write failed: {e}");
                    results.push((w.done, Err(WriteError::Failed(e.to_string()))));
                }
            }
        }
        if unwritable.is_some() {
            // The disk is the trouble: nothing of this batch is kept, so the file holds
            // what it held before and the daemon writes it all back later.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("the batch was rolled back: the store cannot be written".into()),
            ));
        }
        tx.commit()
    })();
    if let Err(e) = &outcome {
        if unwritable.is_none() {
            unwritable = health::classify(e, health::system_errno(conn), dir);
        }
    }
    let failure = match (&outcome, &unwritable) {
        (_, Some(u)) => Some(WriteError::Unwritable(u.clone())),
        (Err(e), None) => Some(WriteError::Failed(format!("commit failed: {e}"))),
        (Ok(()), None) => None,
    };
    match &unwritable {
        Some(u) => {
            let first = health.borrow().is_none();
            if first {
                tracing::error!("the job store cannot be written: {u}");
            }
            health.send_replace(Some(u.clone()));
        }
        None if recovery && outcome.is_ok() => {
            if health.borrow().is_some() {
                tracing::info!("the job store can be written again");
            }
            health.send_replace(None);
        }
        None => {}
    }
    for (done, r) in results {
        let r = match &failure {
            Some(f) => Err(f.clone()),
            None => r,
        };
        if let Some(done) = done {
            let _ = done.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobType, Priority};

    fn file(job: &JobRecord, index: u32) -> FileRecord {
        FileRecord {
            job_id: job.id,
            index,
            remote_url: "http://h/x".into(),
            local_path: "/tmp/x".into(),
            bytes_total: None,
            bytes_transferred: 0,
            completed: false,
            expected_sha256: None,
            final_url: None,
            validator: None,
            validated: None,
            segments: Vec::new(),
            peer: Default::default(),
            mirrors: Vec::new(),
            mirror_in_use: 0,
            response_headers: Vec::new(),
            ranges: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_wal_is_cut_back_after_a_large_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wal = || std::fs::metadata(dir.path().join("ferry.db-wal")).map_or(0, |m| m.len());
        // One large write: 4000 jobs of 64 files each in one transaction.
        let many: Vec<_> = (0..4000)
            .map(|_| {
                let job = JobRecord::new("j".into(), JobType::Download, Priority::Normal, 7);
                let files = (0..64).map(|i| file(&job, i)).collect::<Vec<_>>();
                store.put_job_and_files(&job, files)
            })
            .collect();
        for rx in many {
            Store::committed(rx).await.unwrap();
        }
        let largest = wal();
        assert!(
            largest > 2 * WAL_SIZE_LIMIT as u64,
            "the write grew the WAL: {largest}"
        );
        // Small writes after it: a checkpoint empties the WAL and the next write cuts it.
        let job = JobRecord::new("small".into(), JobType::Download, Priority::Normal, 7);
        for _ in 0..2000 {
            Store::committed(store.put_job(&job)).await.unwrap();
        }
        let after = wal();
        assert!(
            after <= WAL_SIZE_LIMIT as u64,
            "the WAL stays at {after} bytes after a {largest}-byte one"
        );
        store.close();
    }

    #[tokio::test]
    async fn rewriting_a_job_keeps_its_files_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = JobRecord::new("j".into(), JobType::Download, Priority::Normal, 7);
        {
            let store = Store::open(dir.path()).unwrap();
            Store::committed(store.put_job_and_files(&job, vec![file(&job, 0), file(&job, 1)]))
                .await
                .unwrap();
            job.display_name = "renamed".into();
            Store::committed(store.put_job(&job)).await.unwrap();
            store.close();
        }
        let store = Store::open(dir.path()).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.jobs.len(), 1);
        assert_eq!(snap.jobs[0].display_name, "renamed");
        assert_eq!(
            snap.files.len(),
            2,
            "updating the job row must not drop its files"
        );
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }
}
