//! The job store: SQLite in WAL mode with one writer thread fed by a channel.
//!
//! Every write is a closure run inside a transaction on the writer thread. The writer
//! drains whatever is queued into one transaction (group commit) and commits with
//! `synchronous=FULL`, so a write whose future has resolved is on disk: the service replies
//! to a command only after that. Reads use their own connection.
//!
//! May use: `model`. The only module that speaks SQL.
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
mod rows;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use parking_lot::Mutex;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::model::{FileRecord, HandlerRecord, JobRecord, OutboxRecord};

pub use rows::{
    is_unreadable, upsert_file as put_file_tx, upsert_job as put_job_tx,
    upsert_outbox as put_outbox_tx, FILE_COLUMNS, JOB_COLUMNS, UNREADABLE_NOTIFY_COMMAND,
    UNREADABLE_OPTIONS,
};

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

enum Command {
    Write(WriteFn, Option<oneshot::Sender<Result<(), String>>>),
    Stop,
}

/// Handle to the store; cheap to share behind an `Arc`.
pub struct Store {
    path: PathBuf,
    tx: Mutex<mpsc::Sender<Command>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
}

/// Everything the daemon loads at start-up.
pub struct Snapshot {
    pub jobs: Vec<JobRecord>,
    pub files: Vec<FileRecord>,
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
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) `ferry.db` in `state_dir`, migrates it and starts the writer.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join("ferry.db");
        let mut writer_conn = open_connection(&path)?;
        schema::migrate(&mut writer_conn)?;
        let reader = open_connection(&path)?;
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("ferryd-store".into())
            .spawn(move || writer_loop(writer_conn, rx))
            .map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(e.into())))?;
        Ok(Store {
            path,
            tx: Mutex::new(tx),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(reader),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, cmd: Command) -> Result<(), StoreError> {
        self.tx.lock().send(cmd).map_err(|_| StoreError::Closed)
    }

    /// Queues a write and returns a receiver that resolves once it is durably committed.
    ///
    /// Writes are applied in the order they are queued.
    pub fn queue<F>(&self, f: F) -> oneshot::Receiver<Result<(), String>>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        if self.send(Command::Write(Box::new(f), Some(done))).is_err() {
            let (done, rx) = oneshot::channel();
            let _ = done.send(Err("the job store has stopped".into()));
            return rx;
        }
        rx
    }

    /// Queues a write nobody waits for (progress checkpoints).
    pub fn queue_detached<F>(&self, f: F)
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let _ = self.send(Command::Write(Box::new(f), None));
    }

    /// Waits for a queued write.
    pub async fn committed(rx: oneshot::Receiver<Result<(), String>>) -> Result<(), String> {
        rx.await
            .unwrap_or_else(|_| Err("the job store has stopped".into()))
    }

    /// Writes `job` (insert or replace).
    pub fn put_job(&self, job: &JobRecord) -> oneshot::Receiver<Result<(), String>> {
        let job = job.clone();
        self.queue(move |tx| rows::upsert_job(tx, &job))
    }

    /// Writes `job` and `files` in one transaction.
    pub fn put_job_and_files(
        &self,
        job: &JobRecord,
        files: Vec<FileRecord>,
    ) -> oneshot::Receiver<Result<(), String>> {
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
    pub fn delete_jobs(&self, ids: Vec<Uuid>) -> oneshot::Receiver<Result<(), String>> {
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
    pub fn put_handler(&self, h: &HandlerRecord) -> oneshot::Receiver<Result<(), String>> {
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
    pub fn delete_handler(
        &self,
        class: Uuid,
        owner_uid: u32,
    ) -> oneshot::Receiver<Result<(), String>> {
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

    /// Loads every job, file, handler and outbox entry.
    ///
    /// A job with a column it needs unreadable comes back in `error` (see the module
    /// doc), and that state is queued to the store.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let snapshot = self.read(|c| {
            let mut marked = Vec::new();
            let jobs = c
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_ms, id"
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
                    "SELECT {FILE_COLUMNS} FROM files ORDER BY job_id, idx"
                ))?
                .query_map([], rows::file_from_row)?
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

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Command>) {
    let mut stop = false;
    let (mut writes, mut commits) = (0u64, 0u64);
    while !stop {
        let first = match rx.recv() {
            Ok(c) => c,
            Err(_) => break,
        };
        let mut batch = Vec::new();
        match first {
            Command::Write(f, done) => batch.push((f, done)),
            Command::Stop => stop = true,
        }
        while batch.len() < MAX_BATCH && !stop {
            match rx.try_recv() {
                Ok(Command::Write(f, done)) => batch.push((f, done)),
                Ok(Command::Stop) => stop = true,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        writes += batch.len() as u64;
        commits += 1;
        commit_batch(&mut conn, batch);
    }
    // Drain writes that raced with Stop so nothing acknowledged is dropped.
    let rest: Vec<_> = rx
        .try_iter()
        .filter_map(|c| match c {
            Command::Write(f, done) => Some((f, done)),
            Command::Stop => None,
        })
        .collect();
    if !rest.is_empty() {
        commit_batch(&mut conn, rest);
    }
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    tracing::info!(writes, commits, "store writer stopped");
}

type Ack = oneshot::Sender<Result<(), String>>;
type Pending = (WriteFn, Option<Ack>);

fn commit_batch(conn: &mut Connection, batch: Vec<Pending>) {
    let mut results: Vec<(Option<Ack>, Result<(), String>)> = Vec::with_capacity(batch.len());
    let outcome = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        for (f, done) in batch {
            // A savepoint per write: one failing write does not undo the others. The
            // statements are prepared once (rusqlite's `savepoint()` parses them anew).
            tx.prepare_cached("SAVEPOINT write")?.execute([])?;
            match f(&tx) {
                Ok(()) => {
                    tx.prepare_cached("RELEASE write")?.execute([])?;
                    results.push((done, Ok(())));
                }
                Err(e) => {
                    tx.prepare_cached("ROLLBACK TO write")?.execute([])?;
                    tx.prepare_cached("RELEASE write")?.execute([])?;
                    tracing::error!("store write failed: {e}");
                    results.push((done, Err(e.to_string())));
                }
            }
        }
        tx.commit()
    })();
    for (done, r) in results {
        let r = match (&outcome, r) {
            (Err(e), _) => Err(format!("commit failed: {e}")),
            (Ok(()), r) => r,
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
        }
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
