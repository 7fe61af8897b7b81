//! Conversions between the daemon's model and the wire types, and from service errors to
//! gRPC statuses.

use ferry_proto::v1 as pb;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

use crate::model::{
    mask_url, mask_urls_in, Credentials, ErrorContext, HandlerRecord, JobState, JobType,
    MeteredPolicy, PeerMode, Priority, ProxyCredentials, RedirectPolicy, UploadProtocol,
};
use crate::service::{
    CallbackMethod, ErrorReason, FileView, Invocation, JobView, Obj, ServiceError,
};

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            // The reason travels as google.rpc.ErrorInfo (AIP-193) in the status details.
            ServiceError::Marked { error, reason } => {
                let plain = Status::from(*error);
                let info = ErrorDetails::with_error_info(
                    reason.as_str(),
                    ErrorReason::DOMAIN,
                    std::collections::HashMap::new(),
                );
                Status::with_error_details(plain.code(), plain.message(), info)
            }
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
            ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ServiceError::PermissionDenied(m) => Status::permission_denied(m),
            ServiceError::Unavailable(m) => Status::unavailable(m),
            ServiceError::Unimplemented(m) => Status::unimplemented(m),
            ServiceError::Internal(m) => Status::internal(m),
        }
    }
}

pub fn job_state(s: JobState) -> pb::JobState {
    match s {
        JobState::Suspended => pb::JobState::Suspended,
        JobState::Queued => pb::JobState::Queued,
        JobState::Connecting => pb::JobState::Connecting,
        JobState::Transferring => pb::JobState::Transferring,
        JobState::TransientError => pb::JobState::TransientError,
        JobState::Error => pb::JobState::Error,
        JobState::Transferred => pb::JobState::Transferred,
        JobState::Acknowledged => pb::JobState::Acknowledged,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

pub fn job_type(t: JobType) -> pb::JobType {
    match t {
        JobType::Download => pb::JobType::Download,
        JobType::Upload => pb::JobType::Upload,
        JobType::UploadReply => pb::JobType::UploadReply,
    }
}

/// Unspecified is a download.
pub fn job_type_from(t: i32) -> Result<JobType, Status> {
    match pb::JobType::try_from(t) {
        Ok(pb::JobType::Download) | Ok(pb::JobType::Unspecified) => Ok(JobType::Download),
        Ok(pb::JobType::Upload) => Ok(JobType::Upload),
        Ok(pb::JobType::UploadReply) => Ok(JobType::UploadReply),
        Err(_) => Err(Status::invalid_argument(format!("unknown job type {t}"))),
    }
}

pub fn priority(p: Priority) -> pb::Priority {
    match p {
        Priority::Foreground => pb::Priority::Foreground,
        Priority::High => pb::Priority::High,
        Priority::Normal => pb::Priority::Normal,
        Priority::Low => pb::Priority::Low,
    }
}

/// `None` for unspecified.
pub fn priority_from(p: i32) -> Result<Option<Priority>, Status> {
    match pb::Priority::try_from(p) {
        Ok(pb::Priority::Unspecified) => Ok(None),
        Ok(pb::Priority::Foreground) => Ok(Some(Priority::Foreground)),
        Ok(pb::Priority::High) => Ok(Some(Priority::High)),
        Ok(pb::Priority::Normal) => Ok(Some(Priority::Normal)),
        Ok(pb::Priority::Low) => Ok(Some(Priority::Low)),
        Err(_) => Err(Status::invalid_argument(format!("unknown priority {p}"))),
    }
}

/// The priority a new job gets when the request leaves it unspecified.
pub fn priority_or_default(p: i32) -> Result<Priority, Status> {
    Ok(priority_from(p)?.unwrap_or(Priority::Normal))
}

pub fn upload_protocol(p: UploadProtocol) -> pb::UploadProtocol {
    match p {
        UploadProtocol::Put => pb::UploadProtocol::Put,
        UploadProtocol::Tus => pb::UploadProtocol::Tus,
    }
}

/// The protocol's name for the service (`None` for unspecified).
pub fn upload_protocol_from(p: i32) -> Result<Option<String>, Status> {
    let p = match pb::UploadProtocol::try_from(p) {
        Ok(pb::UploadProtocol::Unspecified) => return Ok(None),
        Ok(pb::UploadProtocol::Put) => UploadProtocol::Put,
        Ok(pb::UploadProtocol::Tus) => UploadProtocol::Tus,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown upload protocol {p}"
            )))
        }
    };
    Ok(Some(p.as_str().to_string()))
}

/// `None`: unchanged; `Some(None)`: removed.
pub fn credentials_from(c: Option<pb::Credentials>) -> Option<Option<Credentials>> {
    match c.and_then(|c| c.kind)? {
        pb::credentials::Kind::Clear(_) => Some(None),
        pb::credentials::Kind::Basic(b) => Some(Some(Credentials::Basic {
            user: b.user,
            password: b.password,
        })),
        pb::credentials::Kind::BearerToken(t) => Some(Some(Credentials::Bearer { token: t })),
        pb::credentials::Kind::Negotiate(n) => Some(Some(Credentials::Negotiate {
            ccache: (!n.ccache.is_empty()).then_some(n.ccache),
        })),
        pb::credentials::Kind::Digest(b) => Some(Some(Credentials::Digest {
            user: b.user,
            password: b.password,
        })),
    }
}

/// The proxy credentials of a request: basic, or clear (`Some(None)`).
pub fn proxy_credentials_from(
    c: Option<pb::Credentials>,
) -> Result<Option<Option<ProxyCredentials>>, Status> {
    let Some(kind) = c.and_then(|c| c.kind) else {
        return Ok(None);
    };
    match kind {
        pb::credentials::Kind::Clear(_) => Ok(Some(None)),
        pb::credentials::Kind::Basic(b) => Ok(Some(Some(ProxyCredentials {
            user: b.user,
            password: b.password,
        }))),
        pb::credentials::Kind::BearerToken(_)
        | pb::credentials::Kind::Digest(_)
        | pb::credentials::Kind::Negotiate(_) => Err(Status::invalid_argument(
            "proxy_credentials take basic credentials (or clear): ferry answers a proxy's \
                 407 with Basic only",
        )),
    }
}

pub fn redirect_policy(p: RedirectPolicy) -> pb::RedirectPolicy {
    match p {
        RedirectPolicy::AllowSilent => pb::RedirectPolicy::AllowSilent,
        RedirectPolicy::AllowReport => pb::RedirectPolicy::AllowReport,
        RedirectPolicy::Disallow => pb::RedirectPolicy::Disallow,
        RedirectPolicy::NoHttpsToHttp => pb::RedirectPolicy::NoHttpsToHttp,
    }
}

/// `None` for unspecified.
pub fn redirect_policy_from(p: i32) -> Result<Option<RedirectPolicy>, Status> {
    match pb::RedirectPolicy::try_from(p) {
        Ok(pb::RedirectPolicy::Unspecified) => Ok(None),
        Ok(pb::RedirectPolicy::AllowSilent) => Ok(Some(RedirectPolicy::AllowSilent)),
        Ok(pb::RedirectPolicy::AllowReport) => Ok(Some(RedirectPolicy::AllowReport)),
        Ok(pb::RedirectPolicy::Disallow) => Ok(Some(RedirectPolicy::Disallow)),
        Ok(pb::RedirectPolicy::NoHttpsToHttp) => Ok(Some(RedirectPolicy::NoHttpsToHttp)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown redirect policy {p} in redirect_policy (expected 1 allow_silent, 2 \
             allow_report, 3 disallow or 4 no_https_to_http)"
        ))),
    }
}

pub fn error_context(c: ErrorContext) -> pb::ErrorContext {
    match c {
        ErrorContext::LocalFile => pb::ErrorContext::LocalFile,
        ErrorContext::RemoteFile => pb::ErrorContext::RemoteFile,
        ErrorContext::Transport => pb::ErrorContext::Transport,
        ErrorContext::Daemon => pb::ErrorContext::Daemon,
        ErrorContext::Validation => pb::ErrorContext::Validation,
        ErrorContext::Notification => pb::ErrorContext::Notification,
        ErrorContext::Authentication => pb::ErrorContext::Authentication,
    }
}

pub fn job(v: &JobView) -> pb::Job {
    let j = &v.job;
    pb::Job {
        id: j.id.to_string(),
        display_name: j.display_name.clone(),
        description: j.description.clone(),
        job_type: job_type(j.job_type) as i32,
        priority: priority(j.priority) as i32,
        state: job_state(j.state) as i32,
        owner_uid: j.owner_uid,
        bytes_total: v.totals.bytes_total.map(|b| b as i64).unwrap_or(-1),
        bytes_transferred: v.totals.bytes_transferred as i64,
        files_total: v.totals.files_total,
        files_transferred: v.totals.files_transferred,
        error: j.error.as_ref().map(|e| pb::JobError {
            context: error_context(e.context) as i32,
            code: e.code.clone(),
            // It may quote a URL with its userinfo.
            message: mask_urls_in(&e.message).into_owned(),
            file_index: e.file_index,
            time_unix_ms: e.time_ms,
        }),
        error_count: j.error_count,
        created_unix_ms: j.created_ms,
        modified_unix_ms: j.modified_ms,
        transferred_unix_ms: j.transferred_ms,
        notify_flags: j.notify_flags.bits(),
        notification_class: j
            .notification_class
            .map(|c| c.to_string())
            .unwrap_or_default(),
        notify_command: j.notify_command.clone(),
        minimum_retry_delay_secs: j.min_retry_delay_secs,
        no_progress_timeout_secs: j.no_progress_timeout_secs,
        max_transfer_time_secs: j.max_transfer_time_secs,
        partial: j.partial,
        last_notification_error: j.last_notification_error.clone(),
        // Secrets are write-only (model/secrets.rs): names and a mask only.
        headers: j.options.shown_headers(),
        headers_write_only: j.options.headers_write_only,
        credentials: j
            .options
            .credentials
            .as_ref()
            .map(|c| c.public())
            .unwrap_or_default(),
        proxy: j.options.proxy.shown(),
        ca_file: j.options.ca_file.clone().unwrap_or_default(),
        bandwidth_limit: j.options.bandwidth_limit,
        upload_protocol: if j.job_type == JobType::Download {
            pb::UploadProtocol::Unspecified as i32
        } else {
            upload_protocol(j.options.upload_protocol()) as i32
        },
        reply_file: j.options.reply_file.clone().unwrap_or_default(),
        connections: j.options.connections,
        bytes_per_second: v.bytes_per_second,
        yielding: v.yielding,
        umask: j.options.umask,
        peers: j
            .options
            .peers
            .map(peer_mode)
            .unwrap_or(pb::PeerMode::Unspecified) as i32,
        bytes_from_origin: v.totals.bytes_from_origin,
        bytes_from_peers: v.totals.bytes_from_peers,
        on_metered: j
            .options
            .on_metered
            .map(metered_policy)
            .unwrap_or(pb::MeteredPolicy::Unspecified) as i32,
        waiting_for_unmetered: v.waiting_for_unmetered,
        auto_complete: j.options.auto_complete,
        insecure_tls: j.options.insecure_tls,
        keep_going: j.options.keep_going,
        redirect_policy: redirect_policy(j.options.security.redirect_policy) as i32,
        pinned_public_keys: j.options.security.pinned_public_keys.clone(),
        crl_file: j.options.security.crl_file.clone().unwrap_or_default(),
        client_certificate: j
            .options
            .security
            .client_certificate
            .clone()
            .unwrap_or_default(),
        client_key: j.options.security.client_key.clone().unwrap_or_default(),
        // The password is write-only (model/secrets.rs).
        proxy_credentials: j
            .options
            .security
            .proxy_credentials
            .as_ref()
            .map(|c| c.public())
            .unwrap_or_default(),
        max_download_size: j.options.max_download_size,
        minimum_notification_interval_ms: j.options.minimum_notification_interval_ms,
        http_method: j.options.http_method.clone().unwrap_or_default(),
        cost_flags: j.cost_flags().bits(),
        ignore_congestion: j.options.ignore_congestion,
        cost_flags_set: j.options.cost_flags.is_some(),
    }
}

/// A job's cost flags from BITS's DWORD (`None` when unset).
pub fn cost_flags_from(bits: Option<u32>) -> Result<Option<crate::model::CostFlags>, Status> {
    bits.map(crate::model::CostFlags::from_dword)
        .transpose()
        .map_err(|e| Status::invalid_argument(format!("cost_flags: {e}")))
}

/// The network's cost state (one bit) as the wire's enum.
pub fn cost_state(state: crate::model::CostFlags) -> pb::CostState {
    pb::CostState::try_from(state.bits() as i32).unwrap_or(pb::CostState::Unspecified)
}

pub fn metered_policy(p: MeteredPolicy) -> pb::MeteredPolicy {
    match p {
        MeteredPolicy::Pause => pb::MeteredPolicy::Pause,
        MeteredPolicy::Continue => pb::MeteredPolicy::Continue,
    }
}

/// `None` for unspecified.
pub fn metered_policy_from(p: i32) -> Result<Option<MeteredPolicy>, Status> {
    match pb::MeteredPolicy::try_from(p) {
        Ok(pb::MeteredPolicy::Unspecified) => Ok(None),
        Ok(pb::MeteredPolicy::Pause) => Ok(Some(MeteredPolicy::Pause)),
        Ok(pb::MeteredPolicy::Continue) => Ok(Some(MeteredPolicy::Continue)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown metered policy {p} in on_metered (expected METERED_POLICY_PAUSE = 1 or \
             METERED_POLICY_CONTINUE = 2)"
        ))),
    }
}

pub fn peer_mode(m: PeerMode) -> pb::PeerMode {
    match m {
        PeerMode::Off => pb::PeerMode::Off,
        PeerMode::Client => pb::PeerMode::Client,
        PeerMode::Server => pb::PeerMode::Server,
        PeerMode::Both => pb::PeerMode::Both,
    }
}

/// `None` for unspecified.
pub fn peer_mode_from(m: i32) -> Result<Option<PeerMode>, Status> {
    match pb::PeerMode::try_from(m) {
        Ok(pb::PeerMode::Unspecified) => Ok(None),
        Ok(pb::PeerMode::Off) => Ok(Some(PeerMode::Off)),
        Ok(pb::PeerMode::Client) => Ok(Some(PeerMode::Client)),
        Ok(pb::PeerMode::Server) => Ok(Some(PeerMode::Server)),
        Ok(pb::PeerMode::Both) => Ok(Some(PeerMode::Both)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown peer mode {m} (expected off, client, server or both)"
        ))),
    }
}

pub fn file(v: &FileView) -> pb::File {
    let f = &v.file;
    pb::File {
        job_id: f.job_id.to_string(),
        index: f.index,
        remote_url: mask_url(&f.remote_url).into_owned(),
        local_path: f.local_path.clone(),
        bytes_total: f.bytes_total.map(|b| b as i64).unwrap_or(-1),
        bytes_transferred: v.bytes_transferred as i64,
        completed: f.completed,
        temporary_path: f.temporary_path().to_string_lossy().into_owned(),
        expected_sha256: f.expected_sha256.clone().unwrap_or_default(),
        final_url: f
            .final_url
            .as_deref()
            .map(|u| mask_url(u).into_owned())
            .unwrap_or_default(),
        validated: f.validated,
        bytes_from_origin: f.peer.from_origin,
        bytes_from_peers: f.peer.from_peers,
        mirrors: f.mirrors.iter().map(|m| mask_url(m).into_owned()).collect(),
        url_in_use: mask_url(f.url_in_use()).into_owned(),
        response_headers: f
            .response_headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect(),
        ranges: f.ranges.ranges.iter().map(range).collect(),
        on_demand: f.ranges.on_demand,
        filled_ranges: crate::model::ranges::filled_of(f)
            .iter()
            .map(range)
            .collect(),
        download_position: f.ranges.position,
    }
}

/// A byte range on the wire (BITS: `BG_FILE_RANGE`).
pub fn range(r: &crate::model::FileRange) -> pb::FileRange {
    pb::FileRange {
        offset: r.offset,
        length: r.length,
    }
}

/// A byte range from the wire.
pub fn range_from_wire(r: &pb::FileRange) -> crate::model::FileRange {
    crate::model::FileRange::new(r.offset, r.length)
}

pub fn handler(h: &HandlerRecord) -> pb::Handler {
    pb::Handler {
        class_id: h.class.to_string(),
        argv: h.argv.clone(),
        workdir: h.workdir.clone().unwrap_or_default(),
        registered_unix_ms: h.registered_ms,
    }
}

/// A call of a client's callback object, as the `Connect` stream carries it.
pub fn invocation(i: &Invocation) -> pb::ConnectResponse {
    let method = match i.method {
        CallbackMethod::JobTransferred => pb::CallbackMethod::JobTransferred,
        CallbackMethod::JobError => pb::CallbackMethod::JobError,
        CallbackMethod::JobModification => pb::CallbackMethod::JobModification,
        CallbackMethod::FileTransferred => pb::CallbackMethod::FileTransferred,
        CallbackMethod::FileRangesTransferred => pb::CallbackMethod::FileRangesTransferred,
    };
    pb::ConnectResponse {
        kind: Some(pb::connect_response::Kind::Invoke(pb::Invoke {
            invoke_id: i.invoke_id,
            object_id: i.object_id,
            method: method as i32,
            job: Some(job(&i.job)),
            file: i.file.as_ref().map(file),
            ranges: i.ranges.iter().map(range).collect(),
        })),
    }
}

/// A query object on the wire.
pub fn object(o: &Obj) -> pb::Object {
    use crate::service::{Prop, Value as V};
    use pb::value::Kind;
    pb::Object {
        class_name: o.class.clone(),
        properties: o
            .props
            .iter()
            .map(|(name, p)| pb::Property {
                name: (*name).to_string(),
                value: Some(pb::Value {
                    kind: match p {
                        Prop::Value(V::Null) => None,
                        Prop::Value(V::String(s)) => Some(Kind::StringValue(s.clone())),
                        Prop::Value(V::Integer(i)) => Some(Kind::IntegerValue(*i)),
                        Prop::Value(V::Real(r)) => Some(Kind::RealValue(*r)),
                        Prop::Value(V::Boolean(b)) => Some(Kind::BooleanValue(*b)),
                        Prop::Object(o) => Some(Kind::ObjectValue(object(o))),
                        Prop::List(items, _) => Some(Kind::StringListValue(pb::StringList {
                            values: items.clone(),
                        })),
                    },
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NotifyFlags;

    #[test]
    fn notify_flag_bits_are_the_wire_enum() {
        let pairs = [
            (NotifyFlags::JOB_TRANSFERRED, pb::NotifyFlag::JobTransferred),
            (NotifyFlags::JOB_ERROR, pb::NotifyFlag::JobError),
            (NotifyFlags::DISABLE, pb::NotifyFlag::Disable),
            (
                NotifyFlags::JOB_MODIFICATION,
                pb::NotifyFlag::JobModification,
            ),
            (
                NotifyFlags::FILE_TRANSFERRED,
                pb::NotifyFlag::FileTransferred,
            ),
            (
                NotifyFlags::FILE_RANGES_TRANSFERRED,
                pb::NotifyFlag::FileRangesTransferred,
            ),
        ];
        for (bit, wire) in pairs {
            assert_eq!(bit.bits(), wire as u32, "{bit:?}");
        }
        let all = pairs.iter().fold(NotifyFlags::empty(), |a, (b, _)| a | *b);
        assert_eq!(all, NotifyFlags::all(), "every bit has its wire value");
    }

    #[test]
    fn parity_cost_states_have_their_bits_values_on_the_wire() {
        use crate::model::CostFlags;
        for (state, _) in CostFlags::NAMES {
            assert_eq!(cost_state(state) as i32 as u32, state.bits(), "{state:?}");
        }
        assert_eq!(
            cost_flags_from(Some(0x8000_0067)).unwrap(),
            Some(CostFlags::TRANSFER_STANDARD)
        );
        let e = cost_flags_from(Some(0x100)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("cost_flags"), "{e:?}");
    }

    #[test]
    fn secrets_never_reach_the_wire() {
        use crate::model::{JobRecord, ProxySetting, Totals};
        let mut j = JobRecord::new("n".into(), JobType::Download, Priority::Normal, 0);
        j.options.headers = vec![
            ("Cookie".into(), "sid=s3cret-1".into()),
            ("X-Api-Key".into(), "s3cret-2".into()),
            ("Accept".into(), "text/plain".into()),
        ];
        j.options.credentials = Some(Credentials::Basic {
            user: "alice".into(),
            password: "s3cret-3".into(),
        });
        j.options.proxy = ProxySetting::Url("http://pu:s3cret-4@proxy:3128/".into());
        let mut v = JobView {
            job: j,
            totals: Totals::default(),
            bytes_per_second: 0,
            waiting_for_unmetered: false,
            yielding: false,
        };
        let wire = job(&v);
        assert!(!format!("{wire:?}").contains("s3cret"), "{wire:?}");
        assert_eq!(
            wire.headers,
            ["Cookie: ***", "X-Api-Key: ***", "Accept: text/plain"]
        );
        assert_eq!(wire.credentials, "basic alice");
        assert_eq!(wire.proxy, "http://pu:***@proxy:3128/");
        assert!(!wire.headers_write_only);
        v.job.options.headers_write_only = true;
        let wire = job(&v);
        assert!(wire.headers_write_only);
        assert_eq!(
            wire.headers,
            ["Cookie: ***", "X-Api-Key: ***", "Accept: ***"]
        );
    }

    #[test]
    fn enums_map_both_ways() {
        for p in Priority::ALL {
            assert_eq!(priority_from(priority(*p) as i32).unwrap(), Some(*p));
        }
        assert_eq!(priority_from(0).unwrap(), None);
        assert!(priority_from(99).is_err());
        for t in JobType::ALL {
            assert_eq!(job_type_from(job_type(*t) as i32).unwrap(), *t);
        }
        assert_eq!(job_type_from(0).unwrap(), JobType::Download);
        for p in [UploadProtocol::Put, UploadProtocol::Tus] {
            assert_eq!(
                upload_protocol_from(upload_protocol(p) as i32).unwrap(),
                Some(p.as_str().to_string())
            );
        }
        assert_eq!(upload_protocol_from(0).unwrap(), None);
        assert!(upload_protocol_from(7).is_err());
    }
}

#[cfg(test)]
mod reasons {
    use super::*;

    #[test]
    fn every_reason_is_a_value_of_the_wire_enum_and_travels_as_error_info() {
        for reason in ErrorReason::ALL {
            let name = format!("ERROR_REASON_{}", reason.as_str());
            assert!(pb::ErrorReason::from_str_name(&name).is_some(), "{name}");
            let status = Status::from(ServiceError::NotFound("gone".into()).marked(reason));
            assert_eq!(status.code(), tonic::Code::NotFound);
            assert_eq!(status.message(), "gone");
            let info = status.get_details_error_info().expect("an ErrorInfo");
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason.as_str(), "ferry.v1")
            );
        }
        let wire_values = (1..100)
            .filter(|n| pb::ErrorReason::try_from(*n).is_ok())
            .count();
        assert_eq!(
            wire_values,
            ErrorReason::ALL.len(),
            "the daemon knows every reason"
        );
    }
}

/// A job to create as `CreateJob` takes it: what a worker hands over when an
/// administrator takes a job (`service/takeover.rs` chose what goes).
pub fn create_request(new: &crate::service::NewJob) -> pb::CreateJobRequest {
    let c = new.changes.clone().unwrap_or_default();
    pb::CreateJobRequest {
        display_name: new.display_name.clone(),
        description: new.description.clone(),
        job_type: job_type(new.job_type) as i32,
        priority: priority(new.priority) as i32,
        upload_protocol: new
            .upload_protocol
            .as_deref()
            .and_then(|p| p.parse::<UploadProtocol>().ok())
            .map(upload_protocol)
            .unwrap_or(pb::UploadProtocol::Unspecified) as i32,
        files: new
            .files
            .iter()
            .map(|f| pb::FileSpec {
                remote_url: f.remote_url.clone(),
                local_path: f.local_path.clone(),
                expected_sha256: f.expected_sha256.clone().unwrap_or_default(),
                mirrors: f.mirrors.clone(),
                ranges: f.ranges.iter().map(range).collect(),
                on_demand: f.on_demand,
            })
            .collect(),
        initial_properties: Some(pb::SetJobPropertiesRequest {
            notify_flags: c.notify_flags,
            minimum_retry_delay_secs: c.min_retry_delay_secs,
            no_progress_timeout_secs: c.no_progress_timeout_secs,
            max_transfer_time_secs: c.max_transfer_time_secs,
            headers: c.headers.map(|values| pb::StringList { values }),
            proxy: c.proxy,
            bandwidth_limit: c.bandwidth_limit,
            connections: c.connections,
            peers: c.peers.map(peer_mode).unwrap_or(pb::PeerMode::Unspecified) as i32,
            on_metered: c
                .on_metered
                .map(metered_policy)
                .unwrap_or(pb::MeteredPolicy::Unspecified) as i32,
            auto_complete: c.auto_complete,
            insecure_tls: c.insecure_tls,
            keep_going: c.keep_going,
            max_download_size: c.max_download_size,
            minimum_notification_interval_ms: c.minimum_notification_interval_ms,
            http_method: c.http_method,
            ..Default::default()
        }),
        umask: new.umask,
        resume: new.resume,
    }
}
