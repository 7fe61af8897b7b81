//! `ferry.v1.Jobs`: create, add files, get, list (paged), resume, suspend, cancel,
//! complete, set properties, watch.

use std::sync::Arc;

use ferry_proto::v1 as pb;
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::relay::{self, Broker};
use super::{admin_caller, caller, convert, end_for_shutdown, job_id, BoxStream};
use crate::service::{Caller, FileSpec, JobChanges, NewJob, Scope, Service};
use pb::jobs_client::JobsClient;
use tonic::transport::Channel;

/// Items in a page when the request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most items in a page; larger requests get this many.
pub const MAX_PAGE_SIZE: usize = 1000;
/// A page stops before its items pass this many encoded bytes (it always holds one), so a
/// reply stays well under gRPC's usual 4 MiB limit whatever the URLs, names and headers.
pub const PAGE_BYTES: usize = 1 << 20;

/// The `Jobs` service.
pub struct JobsApi {
    pub svc: Arc<Service>,
    /// The system-wide daemon's broker (a worker only): an administrator's calls reach
    /// the other users' jobs through it.
    pub broker: Option<Arc<dyn Broker>>,
}

impl JobsApi {
    /// `local`'s answer; when it is "not found" and an administrator asks (in a worker of
    /// the system-wide daemon), the answer of the worker that has the job.
    async fn here_or_elsewhere<T, F, Fut>(
        &self,
        caller: &Caller,
        local: Result<T, Status>,
        call: F,
    ) -> Result<T, Status>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        match local {
            Err(e) if e.code() == tonic::Code::NotFound => {
                match relay::for_admin(&self.broker, caller, self.svc.is_admin(caller)) {
                    Some((broker, conn)) => relay::the_one_that_has_it(
                        relay::on_every_worker(broker, conn, call).await?,
                        e,
                    ),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// The other users' jobs for an administrator's `ListJobs` with `all_users` (in a
    /// worker of the system-wide daemon): up to `limit` from each after `after`, and
    /// whether any has more.
    async fn other_users_jobs(
        &self,
        caller: &Caller,
        all: bool,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<(Vec<pb::Job>, bool), Status> {
        let Some((broker, conn)) =
            relay::for_admin(&self.broker, caller, self.svc.is_admin(caller))
        else {
            return Ok((Vec::new(), false));
        };
        let request = pb::ListJobsRequest {
            all,
            all_users: true,
            page_size: limit as i32,
            page_token: after
                .map(|after| {
                    PageToken::Jobs {
                        all,
                        all_users: true,
                        after,
                    }
                    .encode()
                })
                .unwrap_or_default(),
        };
        let answers = relay::on_every_worker(broker, conn, |ch| {
            let request = request.clone();
            async move { Ok(JobsClient::new(ch).list_jobs(request).await?.into_inner()) }
        })
        .await?;
        let mut jobs = Vec::new();
        let mut more = false;
        for (uid, a) in answers {
            match a {
                Ok(page) => {
                    more |= !page.next_page_token.is_empty();
                    jobs.extend(page.jobs);
                }
                Err(e) => tracing::warn!(uid, "the jobs of uid {uid} could not be listed: {e}"),
            }
        }
        Ok((jobs, more))
    }
}

/// The number of items a request may get.
fn page_size(requested: i32) -> Result<usize, Status> {
    match requested {
        n if n < 0 => Err(Status::invalid_argument(format!(
            "page_size {n} is negative (0 takes the default, {DEFAULT_PAGE_SIZE})"
        ))),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

/// Keeps the leading items that fit in [`PAGE_BYTES`] (at least one); true if some were
/// cut off.
fn fit_page<T: Message>(items: &mut Vec<T>) -> bool {
    let mut bytes = 0;
    for (i, item) in items.iter().enumerate() {
        let len = item.encoded_len();
        // Each repeated field costs a tag and a length prefix besides the item.
        bytes += len + prost::length_delimiter_len(len) + 1;
        if i > 0 && bytes > PAGE_BYTES {
            items.truncate(i);
            return true;
        }
    }
    false
}

/// Where a listing continues. Encoded as opaque hex on the wire: a version byte, a kind
/// byte, then the position (and what the request was, so a token cannot be reused for
/// another listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageToken {
    /// `ListJobs` with `all` and `all_users`, after job `after`.
    Jobs {
        all: bool,
        all_users: bool,
        after: Uuid,
    },
    /// `ListFiles` of `job`, after file index `after`.
    Files { job: Uuid, after: u32 },
}

const TOKEN_VERSION: u8 = 1;

impl PageToken {
    fn encode(self) -> String {
        let mut b = vec![TOKEN_VERSION];
        match self {
            PageToken::Jobs {
                all,
                all_users,
                after,
            } => {
                b.push(b'j');
                b.push(all as u8 | (all_users as u8) << 1);
                b.extend_from_slice(after.as_bytes());
            }
            PageToken::Files { job, after } => {
                b.push(b'f');
                b.extend_from_slice(job.as_bytes());
                b.extend_from_slice(&after.to_be_bytes());
            }
        }
        hex::encode(b)
    }

    /// `None` for the empty token (the first page).
    fn decode(text: &str) -> Result<Option<PageToken>, Status> {
        if text.is_empty() {
            return Ok(None);
        }
        let bad = || {
            Status::invalid_argument(format!(
                "page_token '{text}' is not one ferryd gave: pass next_page_token back as it came"
            ))
        };
        let b = hex::decode(text).map_err(|_| bad())?;
        let uuid = |s: &[u8]| Uuid::from_slice(s).map_err(|_| bad());
        match b.as_slice() {
            [TOKEN_VERSION, b'j', flags @ 0..=3, rest @ ..] if rest.len() == 16 => {
                Ok(Some(PageToken::Jobs {
                    all: flags & 1 != 0,
                    all_users: flags & 2 != 0,
                    after: uuid(rest)?,
                }))
            }
            [TOKEN_VERSION, b'f', rest @ ..] if rest.len() == 20 => Ok(Some(PageToken::Files {
                job: uuid(&rest[..16])?,
                after: u32::from_be_bytes(rest[16..].try_into().expect("4 bytes")),
            })),
            _ => Err(bad()),
        }
    }
}

/// The files of a request as the service takes them.
fn file_specs(files: Vec<pb::FileSpec>) -> Vec<FileSpec> {
    files
        .into_iter()
        .map(|f| FileSpec {
            remote_url: f.remote_url,
            local_path: f.local_path,
            expected_sha256: Some(f.expected_sha256).filter(|s| !s.is_empty()),
            mirrors: f.mirrors,
            ranges: f
                .ranges
                .iter()
                .map(super::convert::range_from_wire)
                .collect(),
            on_demand: f.on_demand,
        })
        .collect()
}

/// The property changes of a `SetJobPropertiesRequest` (its `job_id` is not looked at).
fn changes_from_wire(r: pb::SetJobPropertiesRequest) -> Result<JobChanges, Status> {
    let notification_class = match r.notification_class {
        None => None,
        Some(s) if s.trim().is_empty() => Some(None),
        Some(s) => Some(Some(Uuid::parse_str(s.trim()).map_err(|_| {
            Status::invalid_argument(format!(
                "'{s}' is not a notification class (a UUID; the nil UUID clears it)"
            ))
        })?)),
    };
    Ok(JobChanges {
        display_name: r.display_name,
        description: r.description,
        priority: convert::priority_from(r.priority)?,
        notify_flags: r.notify_flags,
        notification_class,
        notify_command: r.notify_command.map(|l| l.values),
        min_retry_delay_secs: r.minimum_retry_delay_secs,
        no_progress_timeout_secs: r.no_progress_timeout_secs,
        max_transfer_time_secs: r.max_transfer_time_secs,
        headers: r.headers.map(|l| l.values),
        headers_write_only: r.headers_write_only,
        credentials: convert::credentials_from(r.credentials),
        proxy: r.proxy,
        ca_file: r.ca_file,
        bandwidth_limit: r.bandwidth_limit,
        reply_file: r.reply_file,
        connections: r.connections,
        peers: convert::peer_mode_from(r.peers)?,
        on_metered: convert::metered_policy_from(r.on_metered)?,
        cost_flags: convert::cost_flags_from(r.cost_flags)?,
        ignore_congestion: r.ignore_congestion,
        auto_complete: r.auto_complete,
        insecure_tls: r.insecure_tls,
        keep_going: r.keep_going,
        redirect_policy: convert::redirect_policy_from(r.redirect_policy)?,
        pinned_public_keys: r.pinned_public_keys.map(|l| l.values),
        crl_file: r.crl_file,
        client_certificate: r.client_certificate,
        client_key: r.client_key,
        proxy_credentials: convert::proxy_credentials_from(r.proxy_credentials)?,
        max_download_size: r.max_download_size,
        minimum_notification_interval_ms: r.minimum_notification_interval_ms,
        http_method: r.http_method,
    })
}

/// The job a `CreateJobRequest` asks for.
fn new_job_from_wire(r: pb::CreateJobRequest) -> Result<NewJob, Status> {
    Ok(NewJob {
        display_name: r.display_name,
        description: r.description,
        job_type: convert::job_type_from(r.job_type)?,
        priority: convert::priority_or_default(r.priority)?,
        upload_protocol: convert::upload_protocol_from(r.upload_protocol)?,
        files: file_specs(r.files),
        changes: r.initial_properties.map(changes_from_wire).transpose()?,
        umask: r.umask,
        resume: r.resume,
    })
}

impl JobsApi {
    /// TakeOwnership by a client (an administrator, in a worker of the system-wide
    /// daemon): the job is found in the worker that has it, handed over from there,
    /// created here as the caller's, then released there (`service/takeover.rs`).
    async fn take_over(&self, caller: &Caller, id: Uuid) -> Result<pb::Job, Status> {
        self.svc.may_take_ownership(caller)?;
        // Already the caller's: nothing moves (as BITS).
        if let Ok(view) = self.svc.get_job(caller.uid, id) {
            return Ok(convert::job(&view));
        }
        let Some((broker, conn)) = relay::for_admin(&self.broker, caller, true) else {
            return Err(Status::from(crate::service::ServiceError::NotFound(
                format!("no job {id}"),
            )));
        };
        let step = |step: pb::TakeOwnershipStep| pb::TakeOwnershipRequest {
            job_id: id.to_string(),
            step: step as i32,
        };
        let mut found = None;
        let mut refusal: Option<Status> = None;
        for (uid, ch) in relay::channels_to_every_worker(broker, conn).await? {
            match JobsClient::new(ch.clone())
                .take_ownership(step(pb::TakeOwnershipStep::HandOver))
                .await
            {
                Ok(r) => {
                    found = Some((uid, ch, r.into_inner()));
                    break;
                }
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        let Some((from_uid, ch, answer)) = found else {
            return Err(refusal.unwrap_or_else(|| {
                Status::from(crate::service::ServiceError::NotFound(format!(
                    "no job {id}"
                )))
            }));
        };
        let hand_over = answer.hand_over.ok_or_else(|| {
            Status::internal(format!(
                "the worker of uid {from_uid} described no job for {id}"
            ))
        })?;
        let spec = new_job_from_wire(hand_over).map_err(|e| {
            Status::new(
                e.code(),
                format!(
                    "job {id} of uid {from_uid} cannot be taken over: {}",
                    e.message()
                ),
            )
        })?;
        let view = self
            .svc
            .create_taken_job(caller, id, spec)
            .await
            .map_err(|e| {
                let s = Status::from(e);
                Status::new(
                    s.code(),
                    format!(
                        "job {id} of uid {from_uid} cannot be yours as it stands (nothing \
                         changed): {}",
                        s.message()
                    ),
                )
            })?;
        if let Err(e) = JobsClient::new(ch)
            .take_ownership(step(pb::TakeOwnershipStep::Release))
            .await
        {
            self.svc.undo_taken_job(caller, id).await;
            return Err(Status::new(
                e.code(),
                format!(
                    "job {id} stays uid {from_uid}'s: its worker did not let it go: {}",
                    e.message()
                ),
            ));
        }
        tracing::info!(
            admin_uid = caller.uid,
            owner_uid = from_uid,
            job = %id,
            "uid {} took over job {id} of uid {from_uid}",
            caller.uid
        );
        Ok(convert::job(&view))
    }
}

/// The refusal of a token made for another listing.
fn token_mismatch(what: &str) -> Status {
    Status::invalid_argument(format!(
        "page_token belongs to another listing ({what}): keep the other fields of the request as they were"
    ))
}

#[tonic::async_trait]
impl pb::jobs_server::Jobs for JobsApi {
    async fn create_job(
        &self,
        req: Request<pb::CreateJobRequest>,
    ) -> Result<Response<pb::CreateJobResponse>, Status> {
        let caller = caller(&req)?;
        let spec = new_job_from_wire(req.into_inner())?;
        let view = self.svc.create_job(&caller, spec).await?;
        Ok(Response::new(pb::CreateJobResponse {
            job: Some(convert::job(&view)),
        }))
    }

    async fn add_files(
        &self,
        req: Request<pb::AddFilesRequest>,
    ) -> Result<Response<pb::AddFilesResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        // An administrator's files for another user's job: added where it lives, by the
        // owner's worker, which checks and opens every path as the owner.
        let local = self
            .svc
            .add_files_as(&caller, id, file_specs(r.files.clone()))
            .await
            .map(|files| pb::AddFilesResponse {
                files: files.iter().map(convert::file).collect(),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move { Ok(JobsClient::new(ch).add_files(r).await?.into_inner()) }
        })
        .await
        .map(Response::new)
    }

    async fn set_remote_name(
        &self,
        req: Request<pb::SetRemoteNameRequest>,
    ) -> Result<Response<pb::SetRemoteNameResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let local = self
            .svc
            .set_remote_name_as(&caller, id, r.file_index, &r.remote_url)
            .await
            .map(|file| pb::SetRemoteNameResponse {
                file: Some(convert::file(&file)),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move { Ok(JobsClient::new(ch).set_remote_name(r).await?.into_inner()) }
        })
        .await
        .map(Response::new)
    }

    async fn replace_remote_prefix(
        &self,
        req: Request<pb::ReplaceRemotePrefixRequest>,
    ) -> Result<Response<pb::ReplaceRemotePrefixResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let local = self
            .svc
            .replace_remote_prefix_as(&caller, id, &r.old_prefix, &r.new_prefix)
            .await
            .map(|(view, files_changed)| pb::ReplaceRemotePrefixResponse {
                job: Some(convert::job(&view)),
                files_changed,
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move {
                Ok(JobsClient::new(ch)
                    .replace_remote_prefix(r)
                    .await?
                    .into_inner())
            }
        })
        .await
        .map(Response::new)
    }

    async fn get_job(
        &self,
        req: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let owner = self.svc.acting_owner(&caller, id);
        let local = self
            .svc
            .get_job(owner, id)
            .map(|v| pb::GetJobResponse {
                job: Some(convert::job(&v)),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move { Ok(JobsClient::new(ch).get_job(r).await?.into_inner()) }
        })
        .await
        .map(Response::new)
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let limit = page_size(r.page_size)?;
        let after = match PageToken::decode(&r.page_token)? {
            None => None,
            Some(PageToken::Jobs {
                all,
                all_users,
                after,
            }) if all == r.all && all_users == r.all_users => Some(after),
            Some(_) => return Err(token_mismatch("ListJobs with another `all` or `all_users`")),
        };
        let scope = if r.all_users {
            self.svc.all_users_scope(&caller)?
        } else {
            Scope::Uid(caller.uid)
        };
        let page = self.svc.list_jobs_page(scope, r.all, after, limit);
        let mut jobs: Vec<pb::Job> = page.items.iter().map(convert::job).collect();
        let mut more = page.more;
        if r.all_users {
            // Every other user's jobs are in their own workers (system-wide daemon).
            let (others, others_more) = self.other_users_jobs(&caller, r.all, after, limit).await?;
            if !others.is_empty() {
                jobs.extend(others);
                jobs.sort_by(|a, b| a.id.cmp(&b.id));
                more |= others_more || jobs.len() > limit;
                jobs.truncate(limit);
            }
        }
        let cut = fit_page(&mut jobs);
        let next_page_token = match (more || cut, jobs.last()) {
            (true, Some(last)) => PageToken::Jobs {
                all: r.all,
                all_users: r.all_users,
                after: job_id(&last.id)?,
            }
            .encode(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListJobsResponse {
            jobs,
            next_page_token,
        }))
    }

    async fn list_files(
        &self,
        req: Request<pb::ListFilesRequest>,
    ) -> Result<Response<pb::ListFilesResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let limit = page_size(r.page_size)?;
        let after = match PageToken::decode(&r.page_token)? {
            None => None,
            Some(PageToken::Files { job, after }) if job == id => Some(after),
            Some(_) => return Err(token_mismatch("ListFiles of another job")),
        };
        let owner = self.svc.acting_owner(&caller, id);
        let local = self
            .svc
            .list_files_page(owner, id, after, limit)
            .map_err(Status::from)
            .map(|page| {
                let mut files: Vec<pb::File> = page.items.iter().map(convert::file).collect();
                let cut = fit_page(&mut files);
                let next_page_token = match (page.more || cut, files.last()) {
                    (true, Some(last)) => PageToken::Files {
                        job: id,
                        after: last.index,
                    }
                    .encode(),
                    _ => String::new(),
                };
                pb::ListFilesResponse {
                    files,
                    next_page_token,
                }
            });
        let r = pb::ListFilesRequest {
            job_id: r.job_id,
            page_size: r.page_size,
            page_token: r.page_token,
        };
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move { Ok(JobsClient::new(ch).list_files(r).await?.into_inner()) }
        })
        .await
        .map(Response::new)
    }

    async fn resume_job(
        &self,
        req: Request<pb::ResumeJobRequest>,
    ) -> Result<Response<pb::ResumeJobResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let local = self
            .svc
            .resume_as(&caller, id)
            .await
            .map(|view| pb::ResumeJobResponse {
                job: Some(convert::job(&view)),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move { Ok(JobsClient::new(ch).resume_job(r).await?.into_inner()) }
        })
        .await
        .map(Response::new)
    }

    async fn suspend_job(
        &self,
        req: Request<pb::SuspendJobRequest>,
    ) -> Result<Response<pb::SuspendJobResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let local = self
            .svc
            .suspend_as(&caller, id)
            .await
            .map(|view| pb::SuspendJobResponse {
                job: Some(convert::job(&view)),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move { Ok(JobsClient::new(ch).suspend_job(r).await?.into_inner()) }
        })
        .await
        .map(Response::new)
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let local = self
            .svc
            .cancel_as(&caller, id)
            .await
            .map(|view| pb::CancelJobResponse {
                job: Some(convert::job(&view)),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move { Ok(JobsClient::new(ch).cancel_job(r).await?.into_inner()) }
        })
        .await
        .map(Response::new)
    }

    async fn complete_job(
        &self,
        req: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let local = self
            .svc
            .complete_as(&caller, id)
            .await
            .map(|out| pb::CompleteJobResponse {
                job: Some(convert::job(&out.view)),
                files_committed: out.committed,
                files_discarded: out.discarded,
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move { Ok(JobsClient::new(ch).complete_job(r).await?.into_inner()) }
        })
        .await
        .map(Response::new)
    }

    async fn request_file_ranges(
        &self,
        req: Request<pb::RequestFileRangesRequest>,
    ) -> Result<Response<pb::RequestFileRangesResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let ranges = r.ranges.iter().map(convert::range_from_wire).collect();
        let local = self
            .svc
            .request_file_ranges_as(&caller, id, r.file_index, ranges)
            .await
            .map(|view| pb::RequestFileRangesResponse {
                file: Some(convert::file(&view)),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move {
                Ok(JobsClient::new(ch)
                    .request_file_ranges(r)
                    .await?
                    .into_inner())
            }
        })
        .await
        .map(Response::new)
    }

    async fn update_download_position(
        &self,
        req: Request<pb::UpdateDownloadPositionRequest>,
    ) -> Result<Response<pb::UpdateDownloadPositionResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let local = self
            .svc
            .update_download_position_as(&caller, id, r.file_index, r.position)
            .await
            .map(|view| pb::UpdateDownloadPositionResponse {
                file: Some(convert::file(&view)),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move {
                Ok(JobsClient::new(ch)
                    .update_download_position(r)
                    .await?
                    .into_inner())
            }
        })
        .await
        .map(Response::new)
    }

    async fn set_job_properties(
        &self,
        req: Request<pb::SetJobPropertiesRequest>,
    ) -> Result<Response<pb::SetJobPropertiesResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let changes = changes_from_wire(r.clone())?;
        // An administrator's changes to another user's job are made where it lives.
        let local = self
            .svc
            .set_properties_as(&caller, id, changes)
            .await
            .map(|view| pb::SetJobPropertiesResponse {
                job: Some(convert::job(&view)),
            })
            .map_err(Status::from);
        self.here_or_elsewhere(&caller, local, |ch| {
            let r = r.clone();
            async move {
                Ok(JobsClient::new(ch)
                    .set_job_properties(r)
                    .await?
                    .into_inner())
            }
        })
        .await
        .map(Response::new)
    }

    async fn take_ownership(
        &self,
        req: Request<pb::TakeOwnershipRequest>,
    ) -> Result<Response<pb::TakeOwnershipResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let step = pb::TakeOwnershipStep::try_from(r.step).map_err(|_| {
            Status::invalid_argument(format!(
                "unknown take-ownership step {} (a client leaves it unspecified)",
                r.step
            ))
        })?;
        if step != pb::TakeOwnershipStep::Unspecified && !caller.vouched {
            return Err(Status::permission_denied(
                "the steps of TakeOwnership are between the system-wide daemon's workers: \
                 call it with the step unspecified",
            ));
        }
        match step {
            pb::TakeOwnershipStep::HandOver => {
                let (view, new) = self.svc.hand_over(&caller, id)?;
                Ok(Response::new(pb::TakeOwnershipResponse {
                    job: Some(convert::job(&view)),
                    hand_over: Some(convert::create_request(&new)),
                }))
            }
            pb::TakeOwnershipStep::Release => {
                self.svc.release_job(&caller, id).await?;
                Ok(Response::new(pb::TakeOwnershipResponse::default()))
            }
            pb::TakeOwnershipStep::Unspecified => {
                if caller.vouched {
                    return Err(Status::permission_denied(
                        "TakeOwnership is made by the administrator's own worker",
                    ));
                }
                let job = self.take_over(&caller, id).await?;
                Ok(Response::new(pb::TakeOwnershipResponse {
                    job: Some(job),
                    hand_over: None,
                }))
            }
        }
    }

    type WatchJobStream = BoxStream<pb::WatchJobResponse>;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let uid = self.svc.acting_owner(&caller, id);
        let mut events = self.svc.subscribe();
        let first = match self.svc.get_job(uid, id) {
            Ok(first) => first,
            Err(e) => {
                // Another user's job, for an administrator: watched where it lives.
                let stream = self
                    .here_or_elsewhere(&caller, Err(Status::from(e)), |ch| {
                        let r = r.clone();
                        async move { Ok(JobsClient::new(ch).watch_job(r).await?.into_inner()) }
                    })
                    .await?;
                return Ok(Response::new(Box::pin(stream)));
            }
        };
        let (tx, rx) = mpsc::channel(16);
        let svc = self.svc.clone();
        tokio::spawn(async move {
            let reply = |job| Ok(pb::WatchJobResponse { job: Some(job) });
            let mut last = convert::job(&first);
            let done = first.job.state.is_final();
            if tx.send(reply(last.clone())).await.is_err() || done {
                return;
            }
            loop {
                let view = tokio::select! {
                    _ = tx.closed() => return,
                    _ = svc.shutting_down() => {
                        end_for_shutdown(&tx).await;
                        return;
                    }
                    ev = events.recv() => match ev {
                        Ok(ev) if ev.current.job.id == id => (*ev.current).clone(),
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => match svc.get_job(uid, id) {
                            Ok(v) => v,
                            Err(_) => return,
                        },
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                let msg = convert::job(&view);
                if msg == last {
                    continue;
                }
                last = msg.clone();
                if tx.send(reply(msg)).await.is_err() || view.job.state.is_final() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_anything_else() {
        let id = Uuid::now_v7();
        for t in [
            PageToken::Jobs {
                all: true,
                all_users: false,
                after: id,
            },
            PageToken::Jobs {
                all: false,
                all_users: true,
                after: id,
            },
            PageToken::Jobs {
                all: true,
                all_users: true,
                after: id,
            },
            PageToken::Files {
                job: id,
                after: 70_000,
            },
        ] {
            assert_eq!(PageToken::decode(&t.encode()).unwrap(), Some(t));
        }
        assert_eq!(PageToken::decode("").unwrap(), None);
        for bad in ["zz", "01", "016a02", &"00".repeat(19), "not hex at all"] {
            let e = PageToken::decode(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(i32::MAX).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(
            page_size(-1).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn pages_stop_at_the_byte_budget_but_hold_one_item() {
        let file = |url_len: usize| pb::File {
            remote_url: format!("http://h/{}", "u".repeat(url_len)),
            ..Default::default()
        };
        let mut small: Vec<pb::File> = (0..10).map(|_| file(100)).collect();
        assert!(!fit_page(&mut small));
        assert_eq!(small.len(), 10);

        let mut long: Vec<pb::File> = (0..MAX_PAGE_SIZE).map(|_| file(64 << 10)).collect();
        assert!(fit_page(&mut long));
        let reply = pb::ListFilesResponse {
            files: long,
            next_page_token: String::new(),
        };
        assert!(reply.encoded_len() <= PAGE_BYTES, "{}", reply.encoded_len());
        assert_eq!(reply.files.len(), PAGE_BYTES / (64 << 10) - 1);

        let mut huge = vec![file(8 << 20), file(1)];
        assert!(fit_page(&mut huge));
        assert_eq!(huge.len(), 1, "a page always makes progress");
    }
}
