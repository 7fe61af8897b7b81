//! On-demand files (BITS: `IBackgroundCopyFile6`): the ranges an application requests
//! while its job runs, and where it reads. Each change is recorded with the file (a
//! later run fetches it) and handed to the running run, if any, at once
//! (`LiveRun::request_ranges`).

use uuid::Uuid;

use super::commands::{entry, final_state_error};
use super::{Caller, ChangeKind, FileView, Service, ServiceError};
use crate::engine::LiveRun;
use crate::model::ranges;
use crate::model::{FileRange, FileRecord, LENGTH_TO_EOF};
use crate::store::Store;

impl Service {
    /// Asks for `ranges` of on-demand file `index` (BITS: `RequestFileRanges`): merged
    /// with those requested before; refused past the end of the remote file when its
    /// size is known.
    pub async fn request_file_ranges_as(
        &self,
        caller: &Caller,
        id: Uuid,
        index: u32,
        ranges: Vec<FileRange>,
    ) -> Result<FileView, ServiceError> {
        let owner = self.acting_owner(caller, id);
        ranges::check_requested(&ranges)
            .map_err(|e| ServiceError::InvalidArgument(format!("ranges: {e}")))?;
        self.change_on_demand(
            owner,
            id,
            index,
            "request ranges of",
            |f| {
                if let Some(size) = f.ranges.size {
                    if let Some(r) = ranges
                        .iter()
                        .find(|r| r.offset >= size || (r.length != LENGTH_TO_EOF && r.end() > size))
                    {
                        return Err(ServiceError::InvalidArgument(format!(
                            "range {} goes past the end of the file ({size} bytes) \
                             (BITS: BG_E_INVALID_RANGE)",
                            r.describe()
                        )));
                    }
                }
                let merged = ranges::merge(&f.ranges.ranges, &ranges);
                if merged.len() > ranges::MAX_RANGES_PER_FILE {
                    return Err(ServiceError::ResourceExhausted(format!(
                        "the file would have {} separate ranges requested; it may have at \
                         most {} (BITS: BG_E_TOO_MANY_RANGES_IN_FILE): request larger, \
                         adjoining ranges",
                        merged.len(),
                        ranges::MAX_RANGES_PER_FILE
                    )));
                }
                f.ranges.ranges = merged;
                Ok(())
            },
            |live| live.request_ranges(index, &ranges, None),
        )
        .await
    }

    /// Tells where the application reads on-demand file `index` (BITS:
    /// `UpdateDownloadPosition`): missing bytes from there on come first.
    pub async fn update_download_position_as(
        &self,
        caller: &Caller,
        id: Uuid,
        index: u32,
        position: u64,
    ) -> Result<FileView, ServiceError> {
        let owner = self.acting_owner(caller, id);
        self.change_on_demand(
            owner,
            id,
            index,
            "update the download position of",
            |f| {
                f.ranges.position = position;
                Ok(())
            },
            |live| live.request_ranges(index, &[], Some(position)),
        )
        .await
    }

    /// Changes on-demand file `index` of `owner`'s job `id` with `change`, records it,
    /// and tells the job's run (`tell`) when one runs.
    async fn change_on_demand(
        &self,
        owner: u32,
        id: Uuid,
        index: u32,
        verb: &str,
        change: impl FnOnce(&mut FileRecord) -> Result<(), ServiceError>,
        tell: impl FnOnce(&LiveRun),
    ) -> Result<FileView, ServiceError> {
        self.check_writable()?;
        let (rx, view) = {
            let mut inner = self.lock();
            let e = entry(&inner, owner, id, verb)?;
            if e.job.state.is_final() {
                return Err(final_state_error(id, e.job.state, verb));
            }
            let before = e.view();
            let count = e.files.len();
            let e = inner.jobs.get_mut(&id).expect("checked above");
            let Some(f) = e.files.get_mut(index as usize) else {
                return Err(ServiceError::InvalidArgument(format!(
                    "job {id} has no file {index} (it has {count}; files count from 0)"
                )));
            };
            if !f.ranges.on_demand {
                return Err(ServiceError::FailedPrecondition(format!(
                    "file {index} of job {id} is not on demand: add it on demand (AddFiles' \
                     FileSpec.on_demand, `ferry add --on-demand`) to {verb} it \
                     (BITS: BG_E_RANDOM_ACCESS_NOT_SUPPORTED)"
                )));
            }
            if f.completed {
                return Err(ServiceError::FailedPrecondition(format!(
                    "file {index} of job {id} is transferred whole: nothing is left to {verb} it"
                )));
            }
            change(f)?;
            let file = f.clone();
            if let Some((_, live)) = &e.run {
                tell(live);
            }
            e.touch();
            let view = e
                .file_views()
                .into_iter()
                .nth(index as usize)
                .expect("the file exists");
            let after = e.view();
            let job = after.job.clone();
            let rx = self.store.queue(move |tx| {
                crate::store::put_job_tx(tx, &job)?;
                crate::store::put_file_tx(tx, &file)
            });
            self.emit(ChangeKind::Modified, after, Some(before));
            (rx, view)
        };
        Store::committed(rx).await?;
        Ok(view)
    }
}
