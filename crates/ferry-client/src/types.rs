//! Plain data the daemon reports: jobs, files, states, errors.
//!
//! These serialize to the JSON that `ferry --json` prints; the property names are the ones
//! WQL queries use.

use ferry_proto::v1 as pb;
use serde::Serialize;
use uuid::Uuid;

use crate::wire::Wire;
pub use ferry_common::{
    CostFlags, ErrorContext, JobState, JobType, MeteredPolicy, NotifyFlags, PeerMode, Priority,
    RedirectPolicy, UploadProtocol,
};

/// An error recorded with a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobError {
    /// Where it happened.
    pub context: Option<ErrorContext>,
    /// A short code, e.g. `http_404`, `connect`, `enospc`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The file it concerns, if one.
    pub file_index: Option<u32>,
}

/// A snapshot of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    /// The job's id (UUID v7).
    pub id: Uuid,
    /// Its display name.
    pub display_name: String,
    /// Its description.
    pub description: String,
    /// Download, upload or upload-reply.
    #[serde(rename = "type")]
    pub job_type: Option<JobType>,
    /// Scheduling priority.
    pub priority: Option<Priority>,
    /// Current state.
    pub state: Option<JobState>,
    /// The uid of the user who owns it.
    pub owner_uid: u32,
    /// Sum of the file sizes; `None` while some size is unknown.
    pub bytes_total: Option<u64>,
    /// Bytes transferred so far.
    pub bytes_transferred: u64,
    /// Number of files.
    pub files_total: u32,
    /// Files fully transferred.
    pub files_transferred: u32,
    /// The last error, if any.
    pub error: Option<JobError>,
    /// How many errors the job has had.
    pub error_count: u32,
    /// Creation time, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// Last change, ms since the Unix epoch.
    pub modified_unix_ms: i64,
    /// When it became `transferred`.
    pub transferred_unix_ms: Option<i64>,
    /// The notify flags (bits of [`crate::NotifyFlags`]).
    pub notify_flags: u32,
    /// The notification class, if one is set.
    pub notification_class: Option<Uuid>,
    /// The notify command (argv), empty when none.
    pub notify_command: Vec<String>,
    /// Seconds to wait before retrying after a transient error.
    pub minimum_retry_delay_secs: u64,
    /// Seconds without progress after which a transient error becomes an error.
    pub no_progress_timeout_secs: u64,
    /// Seconds a transfer may take in all; 0 for no limit.
    pub max_transfer_time_secs: u64,
    /// Set by `complete` when some files were not transferred and were discarded.
    pub partial: bool,
    /// The last failure to deliver a notification, empty when none.
    pub last_notification_error: String,
    /// Extra request headers, `Name: value` each. Secrets are write-only: the value of an
    /// authorization-like header (`Authorization`, `Cookie`, `X-Api-Key`, a name with
    /// `auth`, `token`, `key`, `secret`, `password`…) reads `***`, and so does every
    /// value when [`JobInfo::headers_write_only`] is set.
    pub headers: Vec<String>,
    /// Every header's value is write-only (BITS's `MakeCustomHeadersWriteOnly`): set with
    /// [`JobProperties::headers_write_only`] or [`crate::Job::make_headers_write_only`],
    /// never cleared.
    pub headers_write_only: bool,
    /// `basic USER`, `bearer`, `negotiate`, or `None`; the secret is never shown.
    pub credentials: Option<String>,
    /// `system`, `none` or a proxy URL, its password shown as `***`
    /// (`http://user:***@proxy:3128`).
    pub proxy: String,
    /// Extra CA certificates (PEM file) trusted for this job.
    pub ca_file: Option<String>,
    /// Bytes per second; 0 for no limit.
    pub bandwidth_limit: u64,
    /// `put` or `tus` for upload jobs; `None` for downloads.
    pub upload_protocol: Option<UploadProtocol>,
    /// Where an upload-reply job keeps the server's reply.
    pub reply_file: Option<String>,
    /// Connections per file for large downloads; 0 = the daemon's default.
    pub connections: u32,
    /// Bytes per second over the last few seconds while the job transfers; 0 otherwise.
    pub bytes_per_second: u64,
    /// The umask of the process that created the job: a completed destination that did
    /// not exist gets mode `0o666 & !umask` (one that existed keeps its mode). `None`:
    /// the daemon's own umask.
    pub umask: Option<u32>,
    /// The job's part in peer caching; `None`: the daemon's default.
    pub peers: Option<PeerMode>,
    /// Bytes of its files, as they stand, that came from the origin (BITS's
    /// `GetPeerDownloadStats`).
    pub bytes_from_origin: u64,
    /// Bytes of its files, as they stand, that came from peers.
    pub bytes_from_peers: u64,
    /// Its own policy on a metered network; `None`: by its priority (`normal` and `low`
    /// pause, `foreground` and `high` continue; see [`MeteredPolicy::default_for`]), or
    /// its [`JobInfo::cost_flags`] are its own.
    pub on_metered: Option<MeteredPolicy>,
    /// Queued and held back because the network's cost state (metered, roaming) is not
    /// among its [`JobInfo::cost_flags`]; it starts by itself when the network's state
    /// allows it.
    pub waiting_for_unmetered: bool,
    /// True while the job yields to other traffic: a job of a background priority
    /// (`high`, `normal`, `low`), download or upload, whose rate (`bytes_per_second`) a
    /// delay-based controller holds back when the network's queue grows. `foreground`
    /// jobs, and jobs with [`JobInfo::ignore_congestion`], never yield.
    pub yielding: bool,
    /// The network cost states the job transfers in, as in effect (BITS:
    /// `GetProperty(BITS_JOB_PROPERTY_ID_COST_FLAGS)`): its own, else what `on_metered`
    /// stands for, else its priority's default ([`CostFlags::default_for`]).
    pub cost_flags: CostFlags,
    /// True when [`JobInfo::cost_flags`] were set for the job (not derived).
    pub cost_flags_set: bool,
    /// The job does not yield to other traffic (BITS: `BITS_COST_OPTION_IGNORE_CONGESTION`).
    pub ignore_congestion: bool,
    /// ferryd completes the job itself once it is transferred (`ferry get --detach`);
    /// off unless set, as in BITS, where the application completes its jobs.
    pub auto_complete: bool,
    /// The server's TLS certificate is not checked (curl's `-k`).
    pub insecure_tls: bool,
    /// A file that fails for good does not stop the others; the job goes to `error` once
    /// every file has been tried ([`crate::Job::complete`] then puts in place the rest).
    pub keep_going: bool,
    /// What a redirect does (BITS: `IBackgroundCopyJobHttpOptions::GetSecurityFlags`,
    /// `BG_HTTP_REDIRECT_POLICY_*`); `None` from a daemon that does not say.
    pub redirect_policy: Option<RedirectPolicy>,
    /// The server public keys the job accepts, `sha256//BASE64` each (curl's
    /// `--pinnedpubkey`); empty: any.
    pub pinned_public_keys: Vec<String>,
    /// Revocation lists (PEM file) the server's certificate is checked against (BITS:
    /// `BG_SSL_ENABLE_CRL_CHECK`).
    pub crl_file: Option<String>,
    /// The client certificate (PEM file) sent to servers that ask for one (BITS:
    /// `IBackgroundCopyJobHttpOptions::GetClientCertificate`).
    pub client_certificate: Option<String>,
    /// The PEM file of the client certificate's key, when apart from it.
    pub client_key: Option<String>,
    /// `basic USER` or `None`: the proxy's credentials (BITS: `SetCredentials` with
    /// `BG_AUTH_TARGET_PROXY`); the password is never shown.
    pub proxy_credentials: Option<String>,
    /// The largest file the job downloads, in bytes; 0 for no limit (BITS:
    /// `BITS_JOB_PROPERTY_MAX_DOWNLOAD_SIZE`). A file whose announced or actual size
    /// passes it fails the job for good with code `max_download_size`, with no byte past
    /// the limit written.
    pub max_download_size: u64,
    /// The least time between two `job_modification` callbacks, in milliseconds; 0 for
    /// the default, 500 (BITS: `BITS_JOB_PROPERTY_MINIMUM_NOTIFICATION_INTERVAL_MS`).
    pub minimum_notification_interval_ms: u64,
    /// The HTTP method of the job's requests, `None` for the default (GET for downloads,
    /// PUT for PUT uploads) (BITS: `IBackgroundCopyJobHttpOptions2::GetHttpMethod`).
    pub http_method: Option<String>,
}

impl JobInfo {
    pub(crate) fn from_wire(j: pb::Job) -> crate::Result<JobInfo> {
        Ok(JobInfo {
            id: Uuid::parse_str(&j.id)
                .map_err(|_| crate::Error::Protocol(format!("bad job id '{}'", j.id)))?,
            display_name: j.display_name,
            description: j.description,
            job_type: JobType::from_wire(j.job_type),
            priority: Priority::from_wire(j.priority),
            state: JobState::from_wire(j.state),
            owner_uid: j.owner_uid,
            bytes_total: u64::try_from(j.bytes_total).ok(),
            bytes_transferred: j.bytes_transferred.max(0) as u64,
            files_total: j.files_total,
            files_transferred: j.files_transferred,
            error: j.error.map(|e| JobError {
                context: ErrorContext::from_wire(e.context),
                code: e.code,
                message: e.message,
                file_index: e.file_index,
            }),
            error_count: j.error_count,
            created_unix_ms: j.created_unix_ms,
            modified_unix_ms: j.modified_unix_ms,
            transferred_unix_ms: j.transferred_unix_ms,
            notify_flags: j.notify_flags,
            notification_class: Uuid::parse_str(&j.notification_class).ok(),
            notify_command: j.notify_command,
            minimum_retry_delay_secs: j.minimum_retry_delay_secs,
            no_progress_timeout_secs: j.no_progress_timeout_secs,
            max_transfer_time_secs: j.max_transfer_time_secs,
            partial: j.partial,
            last_notification_error: j.last_notification_error,
            headers: j.headers,
            headers_write_only: j.headers_write_only,
            credentials: Some(j.credentials).filter(|c| !c.is_empty()),
            proxy: j.proxy,
            ca_file: Some(j.ca_file).filter(|c| !c.is_empty()),
            bandwidth_limit: j.bandwidth_limit,
            upload_protocol: UploadProtocol::from_wire(j.upload_protocol),
            reply_file: Some(j.reply_file).filter(|c| !c.is_empty()),
            connections: j.connections,
            bytes_per_second: j.bytes_per_second,
            umask: j.umask,
            peers: PeerMode::from_wire(j.peers),
            bytes_from_origin: j.bytes_from_origin,
            bytes_from_peers: j.bytes_from_peers,
            on_metered: MeteredPolicy::from_wire(j.on_metered),
            waiting_for_unmetered: j.waiting_for_unmetered,
            yielding: j.yielding,
            cost_flags: CostFlags::from_bits_retain(j.cost_flags),
            cost_flags_set: j.cost_flags_set,
            ignore_congestion: j.ignore_congestion,
            auto_complete: j.auto_complete,
            insecure_tls: j.insecure_tls,
            keep_going: j.keep_going,
            redirect_policy: RedirectPolicy::from_wire(j.redirect_policy),
            pinned_public_keys: j.pinned_public_keys,
            crl_file: Some(j.crl_file).filter(|c| !c.is_empty()),
            client_certificate: Some(j.client_certificate).filter(|c| !c.is_empty()),
            client_key: Some(j.client_key).filter(|c| !c.is_empty()),
            proxy_credentials: Some(j.proxy_credentials).filter(|c| !c.is_empty()),
            max_download_size: j.max_download_size,
            minimum_notification_interval_ms: j.minimum_notification_interval_ms,
            http_method: Some(j.http_method).filter(|m| !m.is_empty()),
        })
    }

    /// The state, or `Suspended` if the daemon sent one this library does not know.
    pub fn state(&self) -> JobState {
        self.state.unwrap_or(JobState::Suspended)
    }
}

/// A snapshot of one file of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    /// The job it belongs to.
    pub job_id: Uuid,
    /// Its position in the job, from 0.
    pub index: u32,
    /// Where it comes from; the password of a userinfo shows as `***`
    /// (`https://user:***@host/f`).
    pub remote_url: String,
    /// Where it goes (appears there on `complete`).
    pub local_path: String,
    /// Its size; `None` while unknown.
    pub bytes_total: Option<u64>,
    /// Bytes transferred so far.
    pub bytes_transferred: u64,
    /// Whether every byte is transferred.
    pub completed: bool,
    /// The part file holding the bytes until `complete`.
    pub temporary_path: String,
    /// The SHA-256 it must have, when one was given.
    pub expected_sha256: Option<String>,
    /// The URL the last redirect led to.
    pub final_url: Option<String>,
    /// The application's verdict from `set_validation_state`, if any.
    pub validated: Option<bool>,
    /// Bytes of the file, as it stands, that came from the origin.
    pub bytes_from_origin: u64,
    /// Bytes of the file, as it stands, that came from peers.
    pub bytes_from_peers: u64,
    /// Its other URLs, tried in order after `remote_url` when the one in use fails for
    /// good (passwords shown as `***`).
    pub mirrors: Vec<String>,
    /// The URL it is fetched from now: `remote_url` or one of `mirrors`.
    pub url_in_use: String,
    /// The headers of the last response its transfer got, `Name: value` each in the
    /// order sent: ETag, Last-Modified, Content-Type and the rest (BITS:
    /// `IBackgroundCopyFile5::GetProperty(BITS_FILE_PROPERTY_ID_HTTP_RESPONSE_HEADERS)`).
    /// `Set-Cookie` and headers whose name or value marks a secret are left out; at most
    /// 64 headers and 16 KiB. Empty until a response came.
    pub response_headers: Vec<String>,
    /// The ranges the file was added with, in their order, or for an on-demand file
    /// every range requested so far, merged (BITS: `IBackgroundCopyFile2::GetFileRanges`);
    /// empty: the whole file.
    pub ranges: Vec<FileRange>,
    /// The file is on demand: only ranges requested with [`crate::Job::request_file_ranges`]
    /// download.
    pub on_demand: bool,
    /// The ranges of the remote file whose bytes are on disk, sorted and merged (BITS:
    /// `IBackgroundCopyFile6::GetFilledFileRanges`), as of the daemon's last checkpoint.
    pub filled_ranges: Vec<FileRange>,
    /// Where the application reads an on-demand file (BITS: `UpdateDownloadPosition`).
    pub download_position: u64,
}

/// BITS's `BG_LENGTH_TO_EOF`: a [`FileRange`] length that runs to the end of the file.
pub const LENGTH_TO_EOF: u64 = u64::MAX;

/// A byte range of a remote file (BITS: `BG_FILE_RANGE`): `length` bytes from `offset`,
/// [`LENGTH_TO_EOF`] for the rest of the file. Written `OFFSET:LENGTH` or `OFFSET:eof`
/// (as bitsadmin's `/AddFileWithRanges`), which [`str::parse`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FileRange {
    /// The first byte.
    pub offset: u64,
    /// How many bytes; [`LENGTH_TO_EOF`] to the end of the file.
    pub length: u64,
}

impl FileRange {
    /// `length` bytes from `offset`.
    pub fn new(offset: u64, length: u64) -> FileRange {
        FileRange { offset, length }
    }

    /// From `offset` to the end of the file.
    pub fn to_eof(offset: u64) -> FileRange {
        FileRange::new(offset, LENGTH_TO_EOF)
    }

    /// Whether it runs to the end of the file.
    pub fn is_to_eof(&self) -> bool {
        self.length == LENGTH_TO_EOF
    }

    pub(crate) fn to_wire(self) -> pb::FileRange {
        pb::FileRange {
            offset: self.offset,
            length: self.length,
        }
    }

    pub(crate) fn from_wire(r: &pb::FileRange) -> FileRange {
        FileRange::new(r.offset, r.length)
    }
}

impl std::fmt::Display for FileRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_to_eof() {
            write!(f, "{}:eof", self.offset)
        } else {
            write!(f, "{}:{}", self.offset, self.length)
        }
    }
}

impl std::str::FromStr for FileRange {
    type Err = String;

    /// Reads `OFFSET:LENGTH` or `OFFSET:eof`.
    fn from_str(s: &str) -> std::result::Result<FileRange, String> {
        let (offset, length) = s
            .split_once(':')
            .ok_or_else(|| format!("range '{s}': write OFFSET:LENGTH or OFFSET:eof"))?;
        let offset = offset
            .trim()
            .parse()
            .map_err(|e| format!("range '{s}': offset: {e}"))?;
        let length = match length.trim() {
            l if l.eq_ignore_ascii_case("eof") => LENGTH_TO_EOF,
            l => l
                .parse()
                .map_err(|e| format!("range '{s}': length: {e} (a number or eof)"))?,
        };
        Ok(FileRange::new(offset, length))
    }
}

impl FileInfo {
    pub(crate) fn from_wire(f: pb::File) -> crate::Result<FileInfo> {
        Ok(FileInfo {
            job_id: Uuid::parse_str(&f.job_id)
                .map_err(|_| crate::Error::Protocol(format!("bad job id '{}'", f.job_id)))?,
            index: f.index,
            remote_url: f.remote_url,
            local_path: f.local_path,
            bytes_total: u64::try_from(f.bytes_total).ok(),
            bytes_transferred: f.bytes_transferred.max(0) as u64,
            completed: f.completed,
            temporary_path: f.temporary_path,
            expected_sha256: Some(f.expected_sha256).filter(|s| !s.is_empty()),
            final_url: Some(f.final_url).filter(|s| !s.is_empty()),
            validated: f.validated,
            bytes_from_origin: f.bytes_from_origin,
            bytes_from_peers: f.bytes_from_peers,
            mirrors: f.mirrors,
            url_in_use: f.url_in_use,
            response_headers: f.response_headers,
            ranges: f.ranges.iter().map(FileRange::from_wire).collect(),
            on_demand: f.on_demand,
            filled_ranges: f.filled_ranges.iter().map(FileRange::from_wire).collect(),
            download_position: f.download_position,
        })
    }
}

/// The daemon's own status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonStatus {
    /// Its process id.
    pub pid: u32,
    /// Its version.
    pub version: String,
    /// The socket it serves.
    pub socket_path: String,
    /// Where it keeps its store.
    pub state_dir: String,
    /// Jobs stored.
    pub jobs: u64,
    /// Jobs transferring now.
    pub active_transfers: u64,
    /// Start time, ms since the Unix epoch.
    pub started_unix_ms: i64,
    /// The daemon-wide bandwidth limit in bytes per second, 0 for none.
    pub bandwidth_limit: u64,
    /// The bandwidth schedule entries in force now.
    pub limits_in_force: Vec<ScheduledLimit>,
    /// Bytes per second of every transfer together, over the last few seconds.
    pub bytes_per_second: u64,
    /// The network is metered now: jobs that pause then wait.
    pub network_metered: bool,
    /// Where `network_metered` came from, e.g. "NetworkManager (Metered: yes)".
    pub network_cost_source: String,
    /// The network's cost state now, one BITS cost state: [`CostFlags::ROAMING`], else
    /// [`CostFlags::CAPPED_USAGE_UNKNOWN`] (metered), else [`CostFlags::UNRESTRICTED`].
    /// Jobs whose cost flags do not include it wait.
    pub network_cost_state: CostFlags,
    /// A connected modem is registered as roaming (ModemManager).
    pub network_roaming: bool,
    /// Where `network_roaming` came from, e.g. "ModemManager is not running: taken as not
    /// roaming".
    pub network_roaming_source: String,
}

/// A bandwidth schedule entry (`[[bandwidth.schedule]]` in `ferryd.toml`) in force:
/// jobs of its priorities share at most its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledLimit {
    /// Bytes per second; 0: a window with no transfers (none of its priorities' bytes
    /// move while it is in force).
    pub limit: u64,
    /// The priorities it holds back.
    pub priorities: Vec<Priority>,
    /// When it applies, e.g. `mon,tue,wed,thu,fri 08:00-18:00` (local time).
    pub period: String,
}

/// What `complete` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompleteOutcome {
    /// The job, now `acknowledged`.
    pub job: JobInfo,
    /// Files moved to their destinations.
    pub files_committed: u32,
    /// Files not transferred, discarded.
    pub files_discarded: u32,
}

impl CompleteOutcome {
    /// Some files were discarded.
    pub fn is_partial(&self) -> bool {
        self.files_discarded > 0
    }
}

/// A file to add to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// `http://`, `https://` or `file://` URL.
    pub remote_url: String,
    /// Absolute destination path.
    pub local_path: String,
    /// Lower-case hex SHA-256 the file must have, if known.
    pub expected_sha256: Option<String>,
    /// More URLs of the same content (mirrors, as aria2 and Metalink have them; BITS has
    /// one URL), tried in order when the URL in use fails for good; the download keeps
    /// its progress. At most 16.
    pub mirrors: Vec<String>,
    /// Only these ranges are downloaded, one after the other in this order into the
    /// local file (BITS: `IBackgroundCopyJob3::AddFileWithRanges`); empty: the whole file.
    pub ranges: Vec<FileRange>,
    /// Nothing downloads until ranges are requested while the job runs (BITS:
    /// `BITS_JOB_PROPERTY_ON_DEMAND_MODE`, per file here); see
    /// [`crate::Job::request_file_ranges`].
    pub on_demand: bool,
}

impl FileSpec {
    /// A file from `remote_url` to `local_path`.
    pub fn new(remote_url: impl Into<String>, local_path: impl Into<String>) -> FileSpec {
        FileSpec {
            remote_url: remote_url.into(),
            local_path: local_path.into(),
            expected_sha256: None,
            mirrors: Vec::new(),
            ranges: Vec::new(),
            on_demand: false,
        }
    }

    /// Downloads only `ranges` of the file, packed in this order into the local file
    /// (BITS: `AddFileWithRanges`: remote bytes 100–199 and 900–999 make a local file of
    /// 200 bytes). Overlapping or empty ranges are refused (`InvalidArgument`); a server
    /// that ignores `Range` fails the job (`insufficient_range_support`).
    pub fn ranges(mut self, ranges: impl IntoIterator<Item = FileRange>) -> FileSpec {
        self.ranges = ranges.into_iter().collect();
        self
    }

    /// Makes the file on demand (BITS: `BITS_JOB_PROPERTY_ON_DEMAND_MODE`): nothing
    /// downloads until the application requests ranges; each lands at its own offset of
    /// the local file, which is as long as the remote file. The job stays `transferring`
    /// until it is completed (`complete` keeps the file with the ranges it holds) or every
    /// byte is there.
    pub fn on_demand(mut self) -> FileSpec {
        self.on_demand = true;
        self
    }

    /// Requires this SHA-256 (hex).
    pub fn sha256(mut self, hex: impl Into<String>) -> FileSpec {
        self.expected_sha256 = Some(hex.into());
        self
    }

    /// Adds a mirror: another URL of the same content, tried after those before it.
    pub fn mirror(mut self, url: impl Into<String>) -> FileSpec {
        self.mirrors.push(url.into());
        self
    }
}

/// Properties to change with [`crate::Job::set`]; unset fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobProperties {
    /// New display name.
    pub display_name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New notify flags.
    pub notify_flags: Option<NotifyFlags>,
    /// New notification class; `Some(Uuid::nil())` clears it.
    pub notification_class: Option<Uuid>,
    /// New notify command (argv); `Some(vec![])` clears it.
    pub notify_command: Option<Vec<String>>,
    /// Seconds before a transient error is retried.
    pub minimum_retry_delay_secs: Option<u64>,
    /// Seconds without progress before a transient error becomes an error.
    pub no_progress_timeout_secs: Option<u64>,
    /// Seconds a transfer may take; 0 for no limit.
    pub max_transfer_time_secs: Option<u64>,
    /// Replaces the custom request headers (`Name: value` each); `Some(vec![])` clears them.
    pub headers: Option<Vec<String>>,
    /// `Some(true)` makes the value of every header write-only, not only of
    /// authorization-like ones (BITS's `MakeCustomHeadersWriteOnly`): the daemon still
    /// sends them, and shows their names with `***`. It cannot be undone: `Some(false)` on
    /// a job that has it is refused (`FAILED_PRECONDITION`).
    pub headers_write_only: Option<bool>,
    /// Sets or (with [`Credentials::Clear`]) removes the credentials.
    pub credentials: Option<Credentials>,
    /// `system`, `none` or a proxy URL: `http://`, `https://`, `socks5://` (ferryd resolves
    /// host names) or `socks5h://` (the proxy does), its credentials as userinfo (BITS:
    /// `IBackgroundCopyJob::SetProxySettings`).
    pub proxy: Option<String>,
    /// A PEM file of extra CA certificates; `Some("")` clears it.
    pub ca_file: Option<String>,
    /// Bytes per second; 0 for no limit.
    pub bandwidth_limit: Option<u64>,
    /// Where an upload-reply job keeps the server's reply; `Some("")` clears it.
    pub reply_file: Option<String>,
    /// Connections per file for large downloads (1–16; 0 = the daemon's default).
    pub connections: Option<u32>,
    /// The job's part in peer caching.
    pub peers: Option<PeerMode>,
    /// What the job does on a metered network: a shorthand for cost flags (`pause` is
    /// [`CostFlags::TRANSFER_UNRESTRICTED`], `continue` [`CostFlags::TRANSFER_NOT_ROAMING`]);
    /// replaces any cost flags set before.
    pub on_metered: Option<MeteredPolicy>,
    /// The network cost states the job transfers in (BITS:
    /// `SetProperty(BITS_JOB_PROPERTY_ID_COST_FLAGS)`), e.g.
    /// [`CostFlags::TRANSFER_NOT_ROAMING`]; replaces any `on_metered` set before. A running
    /// job the network's state no longer allows waits, queued, at once.
    pub cost_flags: Option<CostFlags>,
    /// `Some(true)`: the job does not yield to other traffic (BITS:
    /// `BITS_COST_OPTION_IGNORE_CONGESTION`); from its next run.
    pub ignore_congestion: Option<bool>,
    /// `Some(true)`: ferryd completes the job itself once it is transferred (the
    /// destinations appear without a `complete` call).
    pub auto_complete: Option<bool>,
    /// `Some(true)`: the server's TLS certificate is not checked at all (curl's `-k`);
    /// only for a server trusted by other means.
    pub insecure_tls: Option<bool>,
    /// `Some(true)`: a file that fails for good does not stop the job's other files.
    pub keep_going: Option<bool>,
    /// What a redirect does (BITS: `IBackgroundCopyJobHttpOptions::SetSecurityFlags`
    /// with a `BG_HTTP_REDIRECT_POLICY_*` value): follow silently (the default), follow
    /// and replace the file's URL by the final one, refuse (the file fails with
    /// `redirect_refused`), or refuse only https to http.
    pub redirect_policy: Option<RedirectPolicy>,
    /// Replaces the pinned server public keys, `sha256//BASE64` each (curl's
    /// `--pinnedpubkey`; several in one value separated by `;` too): a server whose key is
    /// none of them fails the job (`pinned_key_mismatch`). `Some(vec![])` clears them.
    pub pinned_public_keys: Option<Vec<String>>,
    /// A PEM file of certificate revocation lists the server's certificate is checked
    /// against (BITS: `SetSecurityFlags(BG_SSL_ENABLE_CRL_CHECK)`), read as the job's
    /// owner; a revoked certificate fails the job (`certificate_revoked`). `Some("")`
    /// clears it.
    pub crl_file: Option<String>,
    /// A PEM file with the client certificate (chain) for servers that require one
    /// (mutual TLS; BITS: `IBackgroundCopyJobHttpOptions::SetClientCertificateByName`),
    /// read as the job's owner. `Some("")` clears it.
    pub client_certificate: Option<String>,
    /// The PEM file of the client certificate's private key, when it is not in the
    /// certificate's file. `Some("")` clears it.
    pub client_key: Option<String>,
    /// Sets or (with [`ProxyCredentials::Clear`]) removes the proxy's credentials (BITS:
    /// `IBackgroundCopyJob2::SetCredentials` with `BG_AUTH_TARGET_PROXY`).
    pub proxy_credentials: Option<ProxyCredentials>,
    /// The largest file the job downloads, in bytes; `Some(0)` removes the limit (BITS:
    /// `SetProperty(BITS_JOB_PROPERTY_MAX_DOWNLOAD_SIZE)`).
    pub max_download_size: Option<u64>,
    /// The least time between two `job_modification` callbacks, in milliseconds (at most
    /// 86 400 000, a day); `Some(0)` restores the default, 500 (BITS:
    /// `SetProperty(BITS_JOB_PROPERTY_MINIMUM_NOTIFICATION_INTERVAL_MS)`).
    pub minimum_notification_interval_ms: Option<u64>,
    /// The HTTP method of the job's requests, e.g. `POST`: an HTTP token of at most 32
    /// characters (not `CONNECT`); `Some("")` restores the default. Not for tus uploads.
    /// A download with its own method goes over one connection and never to or from
    /// peers (BITS: `IBackgroundCopyJobHttpOptions2::SetHttpMethod`).
    pub http_method: Option<String>,
}

impl JobProperties {
    /// The wire form (`job_id` as given: empty when the properties go with `CreateJob`).
    pub(crate) fn into_wire(self, job_id: String) -> pb::SetJobPropertiesRequest {
        pb::SetJobPropertiesRequest {
            job_id,
            display_name: self.display_name,
            description: self.description,
            priority: self.priority.map(|p| p.to_wire()).unwrap_or_default(),
            notify_flags: self.notify_flags.map(|f| f.bits()),
            notification_class: self.notification_class.map(|c| {
                if c.is_nil() {
                    String::new()
                } else {
                    c.to_string()
                }
            }),
            notify_command: self.notify_command.map(|values| pb::StringList { values }),
            minimum_retry_delay_secs: self.minimum_retry_delay_secs,
            no_progress_timeout_secs: self.no_progress_timeout_secs,
            max_transfer_time_secs: self.max_transfer_time_secs,
            headers: self.headers.map(|values| pb::StringList { values }),
            headers_write_only: self.headers_write_only,
            credentials: self.credentials.map(|c| pb::Credentials {
                kind: Some(match c {
                    Credentials::Basic { user, password } => {
                        pb::credentials::Kind::Basic(pb::BasicCredentials { user, password })
                    }
                    Credentials::Bearer(t) => pb::credentials::Kind::BearerToken(t),
                    Credentials::Negotiate { ccache } => {
                        pb::credentials::Kind::Negotiate(pb::NegotiateCredentials {
                            ccache: ccache.unwrap_or_default(),
                        })
                    }
                    Credentials::Digest { user, password } => {
                        pb::credentials::Kind::Digest(pb::BasicCredentials { user, password })
                    }
                    Credentials::Clear => pb::credentials::Kind::Clear(true),
                }),
            }),
            proxy: self.proxy,
            ca_file: self.ca_file,
            bandwidth_limit: self.bandwidth_limit,
            reply_file: self.reply_file,
            connections: self.connections,
            peers: self.peers.map(|m| m.to_wire()).unwrap_or_default(),
            on_metered: self.on_metered.map(|m| m.to_wire()).unwrap_or_default(),
            cost_flags: self.cost_flags.map(|f| f.bits()),
            ignore_congestion: self.ignore_congestion,
            auto_complete: self.auto_complete,
            insecure_tls: self.insecure_tls,
            keep_going: self.keep_going,
            redirect_policy: self
                .redirect_policy
                .map(|p| p.to_wire())
                .unwrap_or_default(),
            pinned_public_keys: self
                .pinned_public_keys
                .map(|values| pb::StringList { values }),
            crl_file: self.crl_file,
            client_certificate: self.client_certificate,
            client_key: self.client_key,
            proxy_credentials: self.proxy_credentials.map(|c| pb::Credentials {
                kind: Some(match c {
                    ProxyCredentials::Basic { user, password } => {
                        pb::credentials::Kind::Basic(pb::BasicCredentials { user, password })
                    }
                    ProxyCredentials::Clear => pb::credentials::Kind::Clear(true),
                }),
            }),
            max_download_size: self.max_download_size,
            minimum_notification_interval_ms: self.minimum_notification_interval_ms,
            http_method: self.http_method,
        }
    }
}

impl FileSpec {
    pub(crate) fn into_wire(self) -> pb::FileSpec {
        pb::FileSpec {
            remote_url: self.remote_url,
            local_path: self.local_path,
            expected_sha256: self.expected_sha256.unwrap_or_default(),
            mirrors: self.mirrors,
            ranges: self.ranges.into_iter().map(FileRange::to_wire).collect(),
            on_demand: self.on_demand,
        }
    }
}

/// Credentials a job sends with every request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP basic authentication.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A bearer token (`Authorization: Bearer …`).
    Bearer(String),
    /// HTTP Negotiate (Kerberos through SPNEGO): when the server answers 401 with
    /// `WWW-Authenticate: Negotiate`, the daemon gets a ticket for `HTTP@host` from the
    /// job owner's Kerberos tickets (`kinit`) and sends `Authorization: Negotiate …`
    /// (BITS: `IBackgroundCopyJob2::SetCredentials` with `BG_AUTH_SCHEME_NEGOTIATE`).
    /// [`Credentials::negotiate`] takes the caller's `KRB5CCNAME`.
    Negotiate {
        /// The credential cache, as `KRB5CCNAME` names one (`FILE:/tmp/krb5cc_1000`,
        /// `KCM:`…), read as the job's owner; `None`: the owner's default cache as the
        /// daemon sees it.
        ccache: Option<String>,
    },
    /// HTTP Digest authentication (RFC 7616: MD5 or SHA-256, `qop=auth`), answering the
    /// server's `401` challenge (BITS: `BG_AUTH_SCHEME_DIGEST`).
    Digest {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Remove the credentials.
    Clear,
}

impl Credentials {
    /// Negotiate with the caller's credential cache: `KRB5CCNAME` when it is set (and not
    /// empty), else the job owner's default cache.
    pub fn negotiate() -> Credentials {
        Credentials::Negotiate {
            ccache: std::env::var("KRB5CCNAME").ok().filter(|c| !c.is_empty()),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
            Credentials::Negotiate { ccache } => write!(f, "Negotiate({ccache:?})"),
            Credentials::Digest { user, .. } => write!(f, "Digest({user}, ***)"),
            Credentials::Clear => f.write_str("Clear"),
        }
    }
}

/// Credentials for a job's proxy, apart from the proxy's URL (BITS:
/// `IBackgroundCopyJob2::SetCredentials` with `BG_AUTH_TARGET_PROXY`); ferry answers a
/// proxy's `407` with Basic.
#[derive(Clone, PartialEq, Eq)]
pub enum ProxyCredentials {
    /// HTTP basic authentication to the proxy (`Proxy-Authorization: Basic …`).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Remove the proxy's credentials.
    Clear,
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyCredentials::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            ProxyCredentials::Clear => f.write_str("Clear"),
        }
    }
}
