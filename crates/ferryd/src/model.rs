//! The daemon's own data model: jobs, files, their states and properties.
//!
//! These types are what the store persists and the engine works on; `rpc/` converts them
//! to and from the wire types of `ferry-proto`. Every layer may use this module; it uses
//! none of them.

use uuid::Uuid;

mod clock;
mod error_kind;
mod metrics;
mod peers;
pub mod ranges;
mod secrets;
mod text;
mod url;
mod views;

pub use clock::{mono_ms, mono_since, mono_until, now_ms, wall_of};
pub use error_kind::ErrorKind;
pub use metrics::{MetricsSnapshot, PeerCounts};
pub use peers::{CacheEntry, FilePeerInfo};
pub use ranges::{FileRange, FileRanges, LENGTH_TO_EOF};
pub use secrets::{is_secret_header, mask_url, mask_urls_in, secrets_free_url, shown_header};
pub use text::{describe_char, escape_control_chars, first_control_char, is_control_char};
pub use url::is_loopback_url;
pub use views::{ChangeKind, FileView, JobEvent, JobView};

pub use ferry_common::{
    CostFlags, ErrorContext, JobState, JobType, MeteredPolicy, NotifyFlags, PeerMode, Priority,
    RedirectPolicy, UploadProtocol,
};

/// An error record kept with a job (BITS's `IBackgroundCopyError`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobErrorRecord {
    pub context: ErrorContext,
    pub code: String,
    pub message: String,
    pub file_index: Option<u32>,
    pub time_ms: i64,
}

impl JobErrorRecord {
    /// True for the record of a job loaded with a stored column it needs unreadable: such
    /// a job must not run (it would run on defaults in place of what was stored), and the
    /// record must stay until the job is cancelled.
    pub fn is_unreadable_column(&self) -> bool {
        self.context == ErrorContext::Daemon
            && matches!(
                ErrorKind::from_code(&self.code),
                Some(ErrorKind::UnreadableOptions | ErrorKind::UnreadableNotifyCommand)
            )
    }
}

/// Default `minimum_retry_delay`: 60 s.
pub const DEFAULT_MIN_RETRY_DELAY_SECS: u64 = 60;
/// Default `no_progress_timeout`: 14 days.
pub const DEFAULT_NO_PROGRESS_TIMEOUT_SECS: u64 = 14 * 24 * 3600;

/// A job as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    #[serde(with = "uuid::serde::compact")]
    pub id: Uuid,
    pub display_name: String,
    pub description: String,
    pub job_type: JobType,
    pub priority: Priority,
    pub state: JobState,
    pub owner_uid: u32,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub transferred_ms: Option<i64>,
    /// When a byte last moved (or the job was resumed); drives `no_progress_timeout`.
    pub last_progress_ms: i64,
    /// When a job in `transient_error` is retried.
    pub retry_at_ms: Option<i64>,
    pub error: Option<JobErrorRecord>,
    pub error_count: u32,
    pub notify_flags: NotifyFlags,
    #[serde(with = "uuid::serde::compact::option")]
    pub notification_class: Option<Uuid>,
    pub notify_command: Vec<String>,
    pub min_retry_delay_secs: u64,
    pub no_progress_timeout_secs: u64,
    /// 0: none.
    pub max_transfer_time_secs: u64,
    pub partial: bool,
    pub last_notification_error: String,
    /// A `complete` or `cancel` under way: written (durably) before the first file is
    /// renamed or deleted, cleared once every file is in place or gone, so a restart
    /// finishes what a crash interrupted.
    pub finishing: Option<Finishing>,
    /// Transfer options (headers, credentials, proxy, TLS, bandwidth, uploads).
    /// Not serialized with the record: its JSON form is the store's column, and the compact
    /// encoding of final jobs keeps it beside the record.
    #[serde(skip)]
    pub options: JobOptions,
}

/// Credentials sent with every request of a job. Never shown: outputs show
/// [`Credentials::public`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credentials {
    Basic {
        user: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    /// HTTP Negotiate (Kerberos through SPNEGO) with the job owner's tickets from
    /// `ccache` (as KRB5CCNAME names a cache; `None`: the owner's default cache).
    Negotiate {
        ccache: Option<String>,
    },
    /// HTTP Digest (RFC 7616, MD5 or SHA-256, `qop=auth`), answering the server's
    /// challenge (BITS's `BG_AUTH_SCHEME_DIGEST`).
    Digest {
        user: String,
        password: String,
    },
}

impl Credentials {
    /// What may be shown: the scheme and the user, never the secret.
    pub fn public(&self) -> String {
        match self {
            Credentials::Basic { user, .. } => format!("basic {user}"),
            Credentials::Bearer { .. } => "bearer".into(),
            Credentials::Negotiate { .. } => "negotiate".into(),
            Credentials::Digest { user, .. } => format!("digest {user}"),
        }
    }
}

/// Basic credentials for the job's proxy, kept apart from the proxy's URL (BITS's
/// `SetCredentials` with `BG_AUTH_TARGET_PROXY`). Never shown: outputs show
/// [`ProxyCredentials::public`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProxyCredentials {
    pub user: String,
    pub password: String,
}

impl ProxyCredentials {
    /// What may be shown: `basic USER`.
    pub fn public(&self) -> String {
        format!("basic {}", self.user)
    }
}

/// A job's TLS policy and authentication beyond its credentials (BITS's
/// `IBackgroundCopyJobHttpOptions`: security flags, client certificate; proxy
/// credentials). Kept in the `jobs.options` JSON as one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HttpSecurity {
    /// What a redirect does (BITS's `BG_HTTP_REDIRECT_POLICY_*`).
    pub redirect_policy: RedirectPolicy,
    /// SHA-256 hashes of the server public keys (SubjectPublicKeyInfo, DER) the job
    /// accepts, as curl's `--pinnedpubkey` writes them: `sha256//BASE64`. Empty: no pin.
    pub pinned_public_keys: Vec<String>,
    /// A PEM file of certificate revocation lists the server's certificate is checked
    /// against (BITS's `BG_SSL_ENABLE_CRL_CHECK`); read as the job's owner.
    pub crl_file: Option<String>,
    /// A PEM file with the client certificate (chain) for mutual TLS (BITS's
    /// `SetClientCertificateByName`); read as the job's owner.
    pub client_certificate: Option<String>,
    /// The PEM file of the client certificate's private key; `None`: in
    /// `client_certificate` itself.
    pub client_key: Option<String>,
    /// Basic credentials for the proxy.
    pub proxy_credentials: Option<ProxyCredentials>,
}

impl HttpSecurity {
    /// True when the job needs an HTTP client of its own for these settings.
    pub fn needs_own_client(&self) -> bool {
        *self != HttpSecurity::default()
    }
}

/// How a job reaches the network.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxySetting {
    /// `http_proxy`/`https_proxy`/`no_proxy` from the daemon's environment.
    #[default]
    System,
    /// Direct connections.
    None,
    /// This proxy URL: `http`, `https`, `socks5` or `socks5h` (`service::validate::proxy`).
    Url(String),
}

impl ProxySetting {
    /// `system`, `none` or the URL, password included (outputs show
    /// [`ProxySetting::shown`]).
    pub fn as_text(&self) -> String {
        match self {
            ProxySetting::System => "system".into(),
            ProxySetting::None => "none".into(),
            ProxySetting::Url(u) => u.clone(),
        }
    }
}

/// The transfer options of a job, stored as one JSON column.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct JobOptions {
    /// Extra request headers, in order. Outputs show [`JobOptions::shown_headers`].
    pub headers: Vec<(String, String)>,
    /// Every header's value is write-only (BITS's `MakeCustomHeadersWriteOnly`), not only
    /// those of authorization-like headers; once set, it stays set.
    pub headers_write_only: bool,
    pub credentials: Option<Credentials>,
    pub proxy: ProxySetting,
    /// A PEM file of extra CA certificates to trust.
    pub ca_file: Option<String>,
    /// Bytes per second; 0 for no limit.
    pub bandwidth_limit: u64,
    /// `put` (default) or `tus`, for upload jobs.
    pub upload_protocol: Option<String>,
    /// Where an upload-reply job keeps the server's reply.
    pub reply_file: Option<String>,
    /// When the job was last resumed (drives `max_transfer_time`: each resume starts it again).
    pub first_active_ms: Option<i64>,
    /// Connections per file for large downloads; 0 takes the daemon's default.
    pub connections: u32,
    /// The file-mode creation mask of the process that created the job: completed
    /// destinations that did not exist get mode `0o666 & !umask`; in system mode the job's
    /// files are created, and its handler or command runs, with it (`None`: the daemon's
    /// own umask).
    pub umask: Option<u32>,
    /// The job's part in peer caching; `None` takes the daemon's default.
    pub peers: Option<PeerMode>,
    /// What the job does while the network is metered; `None` follows its priority
    /// ([`MeteredPolicy::default_for`]).
    pub on_metered: Option<MeteredPolicy>,
    /// Completed by the daemon itself once transferred (`ferry get --detach`; off for API
    /// jobs, as in BITS, whose application completes them).
    pub auto_complete: bool,
    /// The server's certificate is not checked (curl's `-k`): shown in the job's view.
    pub insecure_tls: bool,
    /// A file that fails for good does not stop the others (`ferry get` of several URLs,
    /// as wget): the job goes to `error` once every file has been tried.
    pub keep_going: bool,
    /// Redirect policy, pinned keys, CRL, client certificate, proxy credentials.
    #[serde(skip_serializing_if = "is_default")]
    pub security: HttpSecurity,
    /// The largest file the job downloads, in bytes (BITS's
    /// `BITS_JOB_PROPERTY_MAX_DOWNLOAD_SIZE`); 0: no limit.
    #[serde(skip_serializing_if = "is_default")]
    pub max_download_size: u64,
    /// The least time between two `job_modification` callbacks, in milliseconds (BITS's
    /// `BITS_JOB_PROPERTY_MINIMUM_NOTIFICATION_INTERVAL_MS`); 0: the default
    /// ([`DEFAULT_NOTIFICATION_INTERVAL_MS`]).
    #[serde(skip_serializing_if = "is_default")]
    pub minimum_notification_interval_ms: u64,
    /// The HTTP method of the job's requests (BITS's `SetHttpMethod`); `None`: GET for
    /// downloads, PUT for PUT uploads.
    #[serde(skip_serializing_if = "is_default")]
    pub http_method: Option<String>,
    /// The network cost states the job transfers in (BITS: `BITS_JOB_PROPERTY_ID_COST_FLAGS`);
    /// `None` follows `on_metered`, else its priority ([`CostFlags::default_for`]). Setting
    /// one of the two clears the other.
    #[serde(skip_serializing_if = "is_default")]
    pub cost_flags: Option<CostFlags>,
    /// The job does not yield to other traffic (BITS: `BITS_COST_OPTION_IGNORE_CONGESTION`).
    #[serde(skip_serializing_if = "is_default")]
    pub ignore_congestion: bool,
}

/// Whether a value is its type's default: the options added since schema 6 are left out
/// of the stored JSON when they are (`#[serde(default)]` reads them back), so that a job
/// that does not use them costs the store no more than before.
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The least time between two `job_modification` callbacks of a job that does not set
/// its own: 500 ms.
pub const DEFAULT_NOTIFICATION_INTERVAL_MS: u64 = 500;

/// Request headers that make nothing about a request private (content negotiation and
/// the client's name): any other header may carry a secret (an API key, a session).
pub const PUBLIC_HEADERS: &[&str] = &["accept", "accept-language", "accept-encoding", "user-agent"];

impl JobOptions {
    /// True when the job's requests carry credentials or a header outside
    /// [`PUBLIC_HEADERS`]: what it fetches is never cached or served to peers, nor asked
    /// of them (see [`request_is_private`] for the URL's part).
    pub fn is_private(&self) -> bool {
        self.credentials.is_some()
            || self.security.client_certificate.is_some()
            || self.http_method.is_some()
            || self
                .headers
                .iter()
                .any(|(n, _)| !PUBLIC_HEADERS.iter().any(|p| n.eq_ignore_ascii_case(p)))
    }
}

/// True when a request for `remote` with `options` may carry something private: credentials,
/// a header outside [`PUBLIC_HEADERS`], a user name or password in the URL, or a query
/// string (a signed URL's token) unless the URL's origin is one of `public_origins`.
/// Private content never enters the peer cache, is never shared with a swarm, and is not
/// asked of peers (which would tell them the URL).
pub fn request_is_private(options: &JobOptions, remote: &str, public_origins: &[String]) -> bool {
    if options.is_private() {
        return true;
    }
    let Ok(u) = ::url::Url::parse(remote) else {
        return true;
    };
    if !u.username().is_empty() || u.password().is_some() {
        return true;
    }
    u.query().is_some()
        && !public_origins
            .iter()
            .any(|o| *o == u.origin().ascii_serialization())
}

impl JobOptions {
    /// The least time between two `job_modification` callbacks.
    pub fn notification_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(match self.minimum_notification_interval_ms {
            0 => DEFAULT_NOTIFICATION_INTERVAL_MS,
            ms => ms,
        })
    }

    pub fn upload_protocol(&self) -> UploadProtocol {
        self.upload_protocol
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(UploadProtocol::Put)
    }
}

impl JobRecord {
    /// The network cost states the job transfers in: its cost flags, else what its
    /// `on_metered` shorthand stands for, else its priority's default.
    pub fn cost_flags(&self) -> CostFlags {
        self.options
            .cost_flags
            .or_else(|| self.options.on_metered.map(MeteredPolicy::cost_flags))
            .unwrap_or_else(|| CostFlags::default_for(self.priority))
    }

    /// True when the job waits while the network's cost state is `network` (one state).
    pub fn waits_in(&self, network: CostFlags) -> bool {
        !self.cost_flags().intersects(network)
    }

    /// A new job in `suspended`, with every default (ARCHITECTURE.md, "Jobs").
    pub fn new(
        display_name: String,
        job_type: JobType,
        priority: Priority,
        owner_uid: u32,
    ) -> Self {
        let now = now_ms();
        JobRecord {
            id: Uuid::now_v7(),
            display_name,
            description: String::new(),
            job_type,
            priority,
            state: JobState::Suspended,
            owner_uid,
            created_ms: now,
            modified_ms: now,
            transferred_ms: None,
            last_progress_ms: now,
            retry_at_ms: None,
            error: None,
            error_count: 0,
            notify_flags: NotifyFlags::default(),
            notification_class: None,
            notify_command: Vec::new(),
            min_retry_delay_secs: DEFAULT_MIN_RETRY_DELAY_SECS,
            no_progress_timeout_secs: DEFAULT_NO_PROGRESS_TIMEOUT_SECS,
            max_transfer_time_secs: 0,
            partial: false,
            last_notification_error: String::new(),
            finishing: None,
            options: JobOptions::default(),
        }
    }
}

/// What a job is being finished by (`jobs.finishing`, schema version 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Finishing {
    /// `complete`: the transferred part files are moved over their destinations.
    Complete,
    /// `cancel`: every part file is deleted.
    Cancel,
}

impl Finishing {
    /// The name stored in `jobs.finishing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finishing::Complete => "complete",
            Finishing::Cancel => "cancel",
        }
    }
}

impl std::str::FromStr for Finishing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "complete" => Ok(Finishing::Complete),
            "cancel" => Ok(Finishing::Cancel),
            other => Err(format!(
                "unknown finishing action '{other}' (expected complete or cancel)"
            )),
        }
    }
}

impl std::fmt::Display for Finishing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file of a job as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    /// Not serialized: `store::compact` stores files with their job and takes it from there.
    #[serde(skip)]
    pub job_id: Uuid,
    pub index: u32,
    pub remote_url: String,
    pub local_path: String,
    /// None while unknown.
    pub bytes_total: Option<u64>,
    /// Bytes durably in the part file (the checkpoint), or all of them once completed.
    pub bytes_transferred: u64,
    pub completed: bool,
    pub expected_sha256: Option<String>,
    pub final_url: Option<String>,
    /// The validator the partial bytes were fetched under (ETag or Last-Modified).
    pub validator: Option<String>,
    pub validated: Option<bool>,
    /// Byte ranges fetched over separate connections (empty: one connection).
    pub segments: Vec<Segment>,
    /// Where its bytes came from, and what peer caching may do with it.
    pub peer: FilePeerInfo,
    /// More URLs of the same content, tried in order after `remote_url` when the URL in
    /// use fails for good (files.mirrors, a JSON list).
    pub mirrors: Vec<String>,
    /// The URL the file is fetched from now: 0 is `remote_url`, `i` is `mirrors[i - 1]`
    /// (files.mirror_in_use).
    pub mirror_in_use: u32,
    /// The headers of the last response its transfer got, in order, secrets left out
    /// (BITS's `BITS_FILE_PROPERTY_ID_HTTP_RESPONSE_HEADERS`; see
    /// [`kept_response_headers`]).
    pub response_headers: Vec<(String, String)>,
    /// Only these byte ranges are downloaded, or only those an application requests
    /// (BITS: `AddFileWithRanges`, on-demand files); the default is the whole file.
    #[serde(default, with = "ranges::as_option")]
    pub ranges: FileRanges,
}

/// The most response headers a file keeps.
pub const MAX_RESPONSE_HEADERS: usize = 64;
/// The most bytes (names and values) of response headers a file keeps.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 16 << 10;

/// The response headers a file keeps of `headers` (name, value pairs in the order sent):
/// not `Set-Cookie`/`Set-Cookie2` nor any whose name marks a secret (as
/// [`is_secret_header`] says of request headers: auth, token, key, secret, password,
/// cookie, session…) or whose value starts with an authentication scheme, values that are not text shown lossily, and at most
/// [`MAX_RESPONSE_HEADERS`] headers and [`MAX_RESPONSE_HEADER_BYTES`] bytes (the rest are
/// left out).
pub fn kept_response_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    for (name, value) in headers {
        let value = escape_control_chars(&String::from_utf8_lossy(value)).into_owned();
        // Set-Cookie is caught by its name; a value with an authentication scheme too.
        if is_secret_header(name)
            || secrets::shown_header(name, &value, false).ends_with(secrets::MASK)
        {
            continue;
        }
        if kept.len() == MAX_RESPONSE_HEADERS
            || bytes + name.len() + value.len() > MAX_RESPONSE_HEADER_BYTES
        {
            break;
        }
        bytes += name.len() + value.len();
        kept.push((name.to_string(), value));
    }
    kept
}

/// A byte range of a file fetched over its own connection: `[start, end)`, of which
/// `done` bytes from `start` are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub done: u64,
}

impl FileRecord {
    /// The URL the file is fetched from now: `remote_url`, or the mirror in use.
    pub fn url_in_use(&self) -> &str {
        match self.mirror_in_use {
            0 => &self.remote_url,
            i => self
                .mirrors
                .get(i as usize - 1)
                .map_or(self.remote_url.as_str(), String::as_str),
        }
    }

    /// How many URLs the file has: `remote_url` and its mirrors.
    pub fn url_count(&self) -> u32 {
        1 + self.mirrors.len() as u32
    }

    /// The temporary file beside the destination: `.NAME.ferry-JOBID-N.part`.
    pub fn temporary_path(&self) -> std::path::PathBuf {
        let dest = std::path::Path::new(&self.local_path);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = format!(
            ".{}.ferry-{}-{}.part",
            name,
            self.job_id.simple(),
            self.index
        );
        match dest.parent() {
            Some(dir) => dir.join(part),
            None => std::path::PathBuf::from(part),
        }
    }
}

/// Derived totals of a job's files.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// None while some file's size is unknown.
    pub bytes_total: Option<u64>,
    pub bytes_transferred: u64,
    pub files_total: u32,
    pub files_transferred: u32,
    /// Bytes of the files as they stand that came from the origin.
    pub bytes_from_origin: u64,
    /// Bytes of the files as they stand that came from peers.
    pub bytes_from_peers: u64,
}

impl Totals {
    /// Sums over files; `live` gives the in-flight byte count of a file when a worker has one.
    pub fn of(files: &[FileRecord], live: impl Fn(&FileRecord) -> Option<u64>) -> Totals {
        let mut t = Totals {
            bytes_total: Some(0),
            ..Totals::default()
        };
        for f in files {
            t.files_total += 1;
            if f.completed {
                t.files_transferred += 1;
            }
            t.bytes_total = match (t.bytes_total, f.bytes_total) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            t.bytes_transferred += live(f).unwrap_or(f.bytes_transferred);
            t.bytes_from_origin += f.peer.from_origin;
            t.bytes_from_peers += f.peer.from_peers;
        }
        t
    }
}

/// Who makes a call: the peer's credentials as the kernel reported them when it
/// connected (`SO_PEERCRED`, `SO_PEERGROUPS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// The process, when the kernel told it.
    pub pid: Option<u32>,
    /// The supplementary groups.
    pub groups: Vec<u32>,
    /// The system-wide daemon's broker opened this connection for an administrator
    /// (`uid`), who acts through it on the jobs of the worker that serves it.
    pub vouched: bool,
    /// The broker's id of the connection (a worker of the system-wide daemon), by which
    /// the broker checks what it saw of the client when a worker asks for it.
    pub connection: Option<u64>,
}

impl Caller {
    /// A caller known by uid and gid only.
    pub fn user(uid: u32, gid: u32) -> Caller {
        Caller {
            uid,
            gid,
            pid: None,
            groups: Vec::new(),
            vouched: false,
            connection: None,
        }
    }

    /// True when the caller is a member of group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Whose objects a listing or a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The objects of this uid.
    Uid(u32),
    /// Every user's (root and administrators of the system-wide daemon).
    Everyone,
}

impl Scope {
    /// True when objects of `uid` are in scope.
    pub fn admits(self, uid: u32) -> bool {
        match self {
            Scope::Uid(u) => u == uid,
            Scope::Everyone => true,
        }
    }
}

/// A registered notification handler.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerRecord {
    pub class: Uuid,
    pub owner_uid: u32,
    pub argv: Vec<String>,
    pub workdir: Option<String>,
    pub registered_ms: i64,
}

/// What a durable notification calls.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(
    serialize_all = "snake_case",
    ascii_case_insensitive,
    parse_err_ty = String,
    parse_err_fn = unknown_method
)]
pub enum NotifyMethod {
    JobTransferred,
    JobError,
    FileTransferred,
}

fn unknown_method(text: &str) -> String {
    use strum::VariantNames;
    format!(
        "unknown notification method '{text}' (expected one of: {})",
        NotifyMethod::VARIANTS.join(", ")
    )
}

impl NotifyMethod {
    /// Every value, in declaration order.
    pub const ALL: &'static [NotifyMethod] = <NotifyMethod as strum::VariantArray>::VARIANTS;

    /// The name used in the store.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A notification waiting in the outbox until it is delivered (or no longer due).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: i64,
    pub job_id: Uuid,
    pub method: NotifyMethod,
    pub file_index: Option<u32>,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: String,
}

#[cfg(test)]
mod privacy_tests {
    use super::*;

    #[test]
    fn what_makes_a_request_private() {
        let public = JobOptions::default();
        let origins = vec!["https://deb.debian.org".to_string()];
        let private = |o: &JobOptions, url: &str| request_is_private(o, url, &origins);
        assert!(!private(&public, "https://example.org/pkg.deb"));
        assert!(private(&public, "https://user:pw@example.org/pkg.deb"));
        assert!(private(&public, "https://user@example.org/pkg.deb"));
        assert!(private(&public, "https://cdn.example.org/f?sig=abc&exp=1"));
        assert!(!private(
            &public,
            "https://deb.debian.org/dists/x?arch=amd64"
        ));
        let headers = JobOptions {
            headers: vec![
                ("Accept".into(), "*/*".into()),
                ("user-agent".into(), "x".into()),
            ],
            ..Default::default()
        };
        assert!(!private(&headers, "https://example.org/a"));
        for secret in ["Authorization", "X-Api-Key", "Cookie", "X-Anything"] {
            let o = JobOptions {
                headers: vec![(secret.into(), "v".into())],
                ..Default::default()
            };
            assert!(private(&o, "https://example.org/a"), "{secret}");
        }
        let creds = JobOptions {
            credentials: Some(Credentials::Bearer { token: "t".into() }),
            ..Default::default()
        };
        assert!(private(&creds, "https://example.org/a"));
    }
}

#[cfg(test)]
mod response_header_tests {
    use super::*;

    #[test]
    fn parity_response_headers_keep_metadata_and_leave_out_secrets() {
        let long = "x".repeat(MAX_RESPONSE_HEADER_BYTES);
        let sent: Vec<(&str, &[u8])> = [
            ("etag", "\"v1\""),
            ("last-modified", "Tue, 08 Dec 2026 00:00:00 GMT"),
            ("set-cookie", "session=s3cret"),
            ("x-amz-security-token", "s3cret"),
            ("x-upstream", "Bearer s3cret"),
            ("content-type", "application/octet-stream"),
            ("x-bin", "a\x01b"),
            ("x-long", long.as_str()),
            ("x-after", "not kept: the budget is spent"),
        ]
        .into_iter()
        .map(|(n, v)| (n, v.as_bytes()))
        .collect();
        let kept = kept_response_headers(sent);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["etag", "last-modified", "content-type", "x-bin"]);
        assert!(!format!("{kept:?}").contains("s3cret"));
        assert_eq!(kept[0].1, "\"v1\"");
        assert!(
            !kept[3].1.contains('\u{1}'),
            "control characters are escaped"
        );
        let many: Vec<(String, Vec<u8>)> = (0..100)
            .map(|i| (format!("x-h{i}"), b"v".to_vec()))
            .collect();
        let kept = kept_response_headers(many.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        assert_eq!(kept.len(), MAX_RESPONSE_HEADERS);
    }

    #[test]
    fn parity_a_custom_method_makes_a_request_private() {
        let o = JobOptions {
            http_method: Some("POST".into()),
            ..Default::default()
        };
        assert!(o.is_private(), "a POST's answer is never cached for peers");
        assert_eq!(
            JobOptions::default().notification_interval(),
            std::time::Duration::from_millis(500)
        );
    }
}
