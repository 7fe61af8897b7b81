//! The part-file writer: large positional writes on a blocking thread, with `fdatasync`
//! on a second thread beside it so syncing never stalls the socket. (Opening, creating
//! and syncing part files by path is work done as the job's owner: `owner/`.)
//!
//! `Progress::synced` only ever holds an offset whose bytes are on disk: that is the value
//! the store may record (docs/architecture/data-path.md, "Data path and durability").

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Bytes are gathered into writes of this size.
const WRITE_BUFFER: usize = 4 << 20;
/// A sync is started at least this often while data flows…
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// …or after this many bytes, whichever comes first.
const SYNC_BYTES: u64 = 64 << 20;

/// Byte counters of a file being written, shared with the service for display and checkpoints.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes handed to the kernel (what users see as transferred).
    pub written: AtomicU64,
    /// Bytes known to be on disk (what the store may record).
    pub synced: AtomicU64,
}

impl Progress {
    /// Counters starting at `offset` (bytes already durable from an earlier run).
    pub fn starting_at(offset: u64) -> Arc<Progress> {
        Arc::new(Progress {
            written: AtomicU64::new(offset),
            synced: AtomicU64::new(offset),
        })
    }

    /// Resets both counters (the file restarts from zero).
    pub fn reset(&self) {
        self.written.store(0, Ordering::SeqCst);
        self.synced.store(0, Ordering::SeqCst);
    }
}

/// Writes a stream of chunks at increasing offsets on a blocking thread (from tokio's
/// blocking pool, so a transfer of many small files does not start a thread per file).
pub struct Writer {
    tx: Option<mpsc::Sender<Bytes>>,
    thread: Option<tokio::task::JoinHandle<io::Result<u64>>>,
    progress: Arc<Progress>,
    finish_sync: Arc<AtomicBool>,
}

impl Writer {
    /// Starts writing `file` at `offset`; `progress` must already read `offset`.
    pub fn start(file: File, offset: u64, progress: Arc<Progress>) -> io::Result<Writer> {
        Writer::start_mapped(file, offset, 0, progress)
    }

    /// Starts writing the bytes of the remote file from `offset` (what `progress`
    /// counts) into `file` at `offset + delta` (wrapping): a file of ranges packs them
    /// one after the other.
    pub fn start_mapped(
        file: File,
        offset: u64,
        delta: u64,
        progress: Arc<Progress>,
    ) -> io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let finish_sync = Arc::new(AtomicBool::new(true));
        let p = progress.clone();
        let fs = finish_sync.clone();
        let thread =
            tokio::task::spawn_blocking(move || write_loop(file, offset, delta, rx, p, fs));
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            progress,
            finish_sync,
        })
    }

    /// Queues a chunk. Fails when the writer thread has stopped on an error; call
    /// [`Writer::finish`] to learn it.
    pub async fn write(&self, chunk: Bytes) -> Result<(), ()> {
        match &self.tx {
            Some(tx) => tx.send(chunk).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// The shared counters.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Writes what is buffered, optionally `fdatasync`s, and returns the final length.
    pub async fn finish(mut self, sync: bool) -> io::Result<u64> {
        self.finish_sync.store(sync, Ordering::SeqCst);
        self.tx.take();
        let thread = self.thread.take().expect("finish called once");
        thread
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("writer thread: {e}"))))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Dropping without finish (a cancelled transfer): the thread flushes and exits on
        // its own once the channel closes; nothing waits for it.
        self.tx.take();
    }
}

fn write_loop(
    file: File,
    mut offset: u64,
    delta: u64,
    mut rx: mpsc::Receiver<Bytes>,
    progress: Arc<Progress>,
    finish_sync: Arc<AtomicBool>,
) -> io::Result<u64> {
    let file = Arc::new(file);
    let mut syncer = Syncer::new(file.clone(), progress.clone());
    // Grows up to WRITE_BUFFER as data comes: a small file never maps 4 MiB.
    let mut buf: Vec<u8> = Vec::new();
    let mut last_sync = Instant::now();
    let mut synced_at = offset;

    let flush = |buf: &mut Vec<u8>, offset: &mut u64| -> io::Result<()> {
        if !buf.is_empty() {
            file.write_all_at(buf, offset.wrapping_add(delta))?;
            *offset += buf.len() as u64;
            progress.written.store(*offset, Ordering::Release);
            buf.clear();
        }
        Ok(())
    };

    loop {
        // Gather while data keeps coming; when the network pauses, write what we have so
        // progress (and the next checkpoint) never lags behind a slow link.
        let chunk = match rx.try_recv() {
            Ok(c) => c,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                flush(&mut buf, &mut offset)?;
                match rx.blocking_recv() {
                    Some(c) => c,
                    None => break,
                }
            }
        };
        if buf.len() + chunk.len() > WRITE_BUFFER {
            flush(&mut buf, &mut offset)?;
        }
        if chunk.len() >= WRITE_BUFFER {
            file.write_all_at(&chunk, offset.wrapping_add(delta))?;
            offset += chunk.len() as u64;
            progress.written.store(offset, Ordering::Release);
        } else {
            buf.extend_from_slice(&chunk);
        }
        let elapsed = last_sync.elapsed() >= SYNC_INTERVAL;
        if elapsed || offset + buf.len() as u64 - synced_at >= SYNC_BYTES {
            flush(&mut buf, &mut offset)?;
            if syncer.request(offset)? {
                last_sync = Instant::now();
                synced_at = offset;
            }
        }
    }
    flush(&mut buf, &mut offset)?;
    syncer.stop()?;
    if finish_sync.load(Ordering::SeqCst) {
        file.sync_data()?;
        progress.synced.store(offset, Ordering::Release);
    }
    Ok(offset)
}

/// The sync thread: `fdatasync`s up to an offset, then publishes it as durable. It starts
/// with the first request, so a file written in well under a second never needs it.
struct Syncer {
    file: Arc<File>,
    progress: Arc<Progress>,
    running: Option<SyncThread>,
}

struct SyncThread {
    tx: std_mpsc::SyncSender<u64>,
    busy: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Syncer {
    fn new(file: Arc<File>, progress: Arc<Progress>) -> Syncer {
        Syncer {
            file,
            progress,
            running: None,
        }
    }

    /// Asks for a sync up to `offset`; false when one is still running (try again later).
    fn request(&mut self, offset: u64) -> io::Result<bool> {
        if self.running.is_none() {
            self.running = Some(SyncThread::start(self.file.clone(), self.progress.clone())?);
        }
        Ok(self.running.as_ref().is_some_and(|t| t.request(offset)))
    }

    fn stop(self) -> io::Result<()> {
        match self.running {
            Some(t) => t.stop(),
            None => Ok(()),
        }
    }
}

impl SyncThread {
    fn start(file: Arc<File>, progress: Arc<Progress>) -> io::Result<SyncThread> {
        let (tx, rx) = std_mpsc::sync_channel::<u64>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let b = busy.clone();
        let thread = std::thread::Builder::new()
            .name("ferryd-sync".into())
            .spawn(move || {
                for offset in rx {
                    let r = file.sync_data();
                    b.store(false, Ordering::Release);
                    r?;
                    progress.synced.fetch_max(offset, Ordering::AcqRel);
                }
                Ok(())
            })?;
        Ok(SyncThread { tx, busy, thread })
    }

    /// Asks for a sync up to `offset`; false when one is still running (try again later).
    fn request(&self, offset: u64) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        if self.tx.try_send(offset).is_err() {
            self.busy.store(false, Ordering::Release);
            return false;
        }
        true
    }

    fn stop(self) -> io::Result<()> {
        drop(self.tx);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("sync thread panicked")))
    }
}
