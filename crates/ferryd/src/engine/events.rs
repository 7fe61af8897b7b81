//! Where one file's transfer reports ([`FileEvents`]): to its run's host (`Report`s) and
//! its run's live counters.
//!
//! May use: the engine's host trait, live counters and segment table; `model`.

use std::sync::Arc;

use uuid::Uuid;

use super::host::{FileStart, Host, Report, RunId};
use super::live::{LiveRun, OnDemand};
use super::segtable::SegTable;
use crate::model::{FileRange, Segment};

/// Where one file's transfer reports: its run's host and counters.
#[derive(Clone)]
pub struct FileEvents {
    host: Arc<dyn Host>,
    live: Arc<LiveRun>,
    job: Uuid,
    run: RunId,
    index: u32,
}

impl FileEvents {
    /// The events of file `index` of `job`'s run `run`.
    pub(super) fn new(
        host: Arc<dyn Host>,
        live: Arc<LiveRun>,
        job: Uuid,
        run: RunId,
        index: u32,
    ) -> FileEvents {
        FileEvents {
            host,
            live,
            job,
            run,
            index,
        }
    }

    fn report(&self, report: Report) {
        self.host.report(self.job, self.run, report);
    }

    /// About to connect (or open the source).
    pub fn connecting(&self) {
        self.report(Report::Connecting);
    }

    /// A multi-connection download starts with these segments.
    pub fn segments_started(
        &self,
        total: u64,
        validator: Option<String>,
        final_url: String,
        segments: Vec<Segment>,
        no_store: bool,
    ) {
        self.report(Report::SegmentsStarted {
            index: self.index,
            total,
            validator,
            final_url,
            segments,
            no_store,
        });
    }

    /// A file of ranges is fetched in `segments` (`total` bytes of ranges, of a remote
    /// file of `size` bytes when known).
    pub fn ranges_started(
        &self,
        size: Option<u64>,
        total: u64,
        validator: Option<String>,
        final_url: String,
        segments: Vec<Segment>,
    ) {
        self.report(Report::RangesStarted {
            index: self.index,
            size,
            total,
            validator,
            final_url,
            segments,
        });
    }

    /// These ranges of the file are on disk; its segments are now `segments`.
    pub fn ranges_transferred(&self, ranges: Vec<FileRange>, segments: Vec<Segment>) {
        self.report(Report::RangesTransferred {
            index: self.index,
            ranges,
            segments,
        });
    }

    /// The request box of this file, when it is on demand.
    pub fn on_demand(&self) -> std::sync::Arc<OnDemand> {
        self.live.on_demand(self.index)
    }

    /// The origin marked the content private or no-store.
    pub fn no_peer_cache(&self) {
        self.report(Report::NoPeerCache { index: self.index });
    }

    /// A response came for this file: its headers are kept as the file's last response's
    /// (BITS's `HTTP_RESPONSE_HEADERS`), secrets left out.
    pub fn response_headers(&self, headers: &reqwest::header::HeaderMap) {
        let kept = crate::model::kept_response_headers(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        self.report(Report::ResponseHeaders {
            index: self.index,
            headers: kept,
        });
    }

    /// The live segment table of this file.
    pub fn live_segments(&self, table: Arc<SegTable>) {
        self.live.set_segments(self.index, table);
    }

    /// The source answered: size, validator, final URL, and the offset bytes continue at.
    pub fn started(
        &self,
        total: Option<u64>,
        validator: Option<String>,
        final_url: Option<String>,
        offset: u64,
        no_store: bool,
    ) {
        self.report(Report::FileStarted {
            index: self.index,
            start: FileStart {
                total,
                validator,
                final_url,
                offset,
                no_store,
            },
        });
    }

    /// `n` bytes moved: per-run atomics; the host hears of it at most twice a second.
    pub fn bytes(&self, n: u64) {
        if self.live.moved(n) {
            self.report(Report::Progressed);
        }
    }

    /// The file starts over from zero (content changed or range refused).
    pub fn restarted(&self) {
        self.live.forget_segments(self.index);
        self.live.reset_sources(self.index);
        self.report(Report::FileRestarted { index: self.index });
    }
}
