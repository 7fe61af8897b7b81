//! A compact byte encoding of a job and its files.
//!
//! Final jobs (`acknowledged`, `cancelled`) never change again, yet `info`, `list --all`
//! and queries must still show them until they are purged. The service keeps them in
//! memory in this form — [postcard] (varints, zig-zag for signed numbers, length-prefixed
//! strings, enums as variant indexes) in one boxed slice, a fraction of the size of a
//! `JobRecord` with its `Vec<FileRecord>` — and decodes one only when someone looks at it.
//!
//! The encoding lives only in memory (it is never written to disk), so it needs no
//! versioning: `encode` and `decode` just have to agree, and they do because both are
//! serde's derived code of the same types.
//!
//! Every field is encoded, and that is checked at compile time: `JobRecord`,
//! `FileRecord`, `JobErrorRecord`, `Segment`, `NotifyFlags` and the enums of
//! `model.rs` derive `Serialize` and `Deserialize`, and a derive covers every field of
//! its type, so a field added to a record is encoded without anyone touching this file.
//! The representation is chosen where the derive alone would waste bytes:
//!
//! - UUIDs are 16 raw bytes (`uuid::serde::compact`), enums a one-byte variant index,
//!   `NotifyFlags` its bits.
//! - `FileRecord::job_id` is `#[serde(skip)]`: the files are encoded with their job and
//!   [`decode`] sets it from the job's id (17 bytes a file saved).
//! - `JobRecord::options` is `#[serde(skip)]` and encoded beside the record as
//!   `OptionsRepr`: `Credentials` is an internally tagged enum (`{"kind": "basic", …}`,
//!   the form of the `jobs.options` JSON column), which a non-self-describing format such
//!   as postcard cannot decode, and `model` may not depend on the store for a serde
//!   `with` module. The mirror's conversions destructure `JobOptions` and `Credentials`
//!   exhaustively, so a field or variant added there fails to compile here until it is
//!   mirrored. Default options, the common case, take one byte.
//!
//! `every_field_round_trips` below round-trips a job and files with every field set to a
//! value other than its default.
//!
//! [postcard]: https://docs.rs/postcard

use serde::{Deserialize, Serialize};

use crate::model::{Credentials, FileRecord, JobOptions, JobRecord, ProxySetting};

/// Encodes `job` and its `files` (whose `job_id` must be `job.id`).
pub fn encode(job: &JobRecord, files: &[FileRecord]) -> Box<[u8]> {
    debug_assert!(files.iter().all(|f| f.job_id == job.id));
    let options =
        (job.options != JobOptions::default()).then(|| OptionsRepr::from(job.options.clone()));
    postcard::to_allocvec(&(job, options, files))
        .expect("postcard encodes every record (no maps, no untagged data)")
        .into_boxed_slice()
}

/// Decodes what [`encode`] made.
///
/// # Panics
///
/// If `bytes` did not come from `encode` (the encoding never leaves the process).
pub fn decode(bytes: &[u8]) -> (JobRecord, Vec<FileRecord>) {
    type Encoded = (JobRecord, Option<OptionsRepr>, Vec<FileRecord>);
    let ((mut job, options, mut files), rest): (Encoded, _) = match postcard::take_from_bytes(bytes)
    {
        Ok(decoded) => decoded,
        Err(e) => panic!("a compact job that `encode` did not make: {e}"),
    };
    debug_assert!(rest.is_empty(), "trailing bytes in a compact job");
    job.options = options.map(JobOptions::from).unwrap_or_default();
    for f in &mut files {
        f.job_id = job.id;
    }
    (job, files)
}

/// `Credentials`, externally tagged (a variant index).
#[derive(Serialize, Deserialize)]
enum CredentialsRepr {
    Basic { user: String, password: String },
    Bearer { token: String },
    Negotiate { ccache: Option<String> },
    Digest { user: String, password: String },
}

/// `JobOptions` as postcard can decode it.
#[derive(Serialize, Deserialize)]
struct OptionsRepr {
    headers: Vec<(String, String)>,
    headers_write_only: bool,
    credentials: Option<CredentialsRepr>,
    proxy: ProxySetting,
    ca_file: Option<String>,
    bandwidth_limit: u64,
    upload_protocol: Option<String>,
    reply_file: Option<String>,
    first_active_ms: Option<i64>,
    connections: u32,
    umask: Option<u32>,
    peers: Option<crate::model::PeerMode>,
    on_metered: Option<crate::model::MeteredPolicy>,
    auto_complete: bool,
    insecure_tls: bool,
    keep_going: bool,
    /// `None` for the default (one byte).
    security: Option<crate::model::HttpSecurity>,
    max_download_size: u64,
    minimum_notification_interval_ms: u64,
    http_method: Option<String>,
    cost_flags: Option<crate::model::CostFlags>,
    ignore_congestion: bool,
}

impl From<JobOptions> for OptionsRepr {
    fn from(o: JobOptions) -> OptionsRepr {
        let JobOptions {
            headers,
            headers_write_only,
            credentials,
            proxy,
            ca_file,
            bandwidth_limit,
            upload_protocol,
            reply_file,
            first_active_ms,
            connections,
            umask,
            peers,
            on_metered,
            auto_complete,
            insecure_tls,
            keep_going,
            security,
            max_download_size,
            minimum_notification_interval_ms,
            http_method,
            cost_flags,
            ignore_congestion,
        } = o;
        OptionsRepr {
            headers,
            headers_write_only,
            credentials: credentials.map(|c| match c {
                Credentials::Basic { user, password } => CredentialsRepr::Basic { user, password },
                Credentials::Bearer { token } => CredentialsRepr::Bearer { token },
                Credentials::Negotiate { ccache } => CredentialsRepr::Negotiate { ccache },
                Credentials::Digest { user, password } => {
                    CredentialsRepr::Digest { user, password }
                }
            }),
            proxy,
            ca_file,
            bandwidth_limit,
            upload_protocol,
            reply_file,
            first_active_ms,
            connections,
            umask,
            peers,
            on_metered,
            auto_complete,
            insecure_tls,
            keep_going,
            security: (security != crate::model::HttpSecurity::default()).then_some(security),
            max_download_size,
            minimum_notification_interval_ms,
            http_method,
            cost_flags,
            ignore_congestion,
        }
    }
}

impl From<OptionsRepr> for JobOptions {
    fn from(o: OptionsRepr) -> JobOptions {
        let OptionsRepr {
            headers,
            headers_write_only,
            credentials,
            proxy,
            ca_file,
            bandwidth_limit,
            upload_protocol,
            reply_file,
            first_active_ms,
            connections,
            umask,
            peers,
            on_metered,
            auto_complete,
            insecure_tls,
            keep_going,
            security,
            max_download_size,
            minimum_notification_interval_ms,
            http_method,
            cost_flags,
            ignore_congestion,
        } = o;
        JobOptions {
            headers,
            headers_write_only,
            credentials: credentials.map(|c| match c {
                CredentialsRepr::Basic { user, password } => Credentials::Basic { user, password },
                CredentialsRepr::Bearer { token } => Credentials::Bearer { token },
                CredentialsRepr::Negotiate { ccache } => Credentials::Negotiate { ccache },
                CredentialsRepr::Digest { user, password } => {
                    Credentials::Digest { user, password }
                }
            }),
            proxy,
            ca_file,
            bandwidth_limit,
            upload_protocol,
            reply_file,
            first_active_ms,
            connections,
            umask,
            peers,
            on_metered,
            auto_complete,
            insecure_tls,
            keep_going,
            security: security.unwrap_or_default(),
            max_download_size,
            minimum_notification_interval_ms,
            http_method,
            cost_flags,
            ignore_congestion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    use crate::model::{
        Credentials, ErrorContext, Finishing, JobErrorRecord, JobOptions, JobState, JobType,
        NotifyFlags, NotifyMethod, Priority, ProxySetting, Segment, UploadProtocol,
    };

    fn file(job: &JobRecord, index: u32) -> FileRecord {
        FileRecord {
            job_id: job.id,
            index,
            remote_url: format!("http://h/{index}"),
            local_path: format!("/tmp/{index}"),
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

    #[test]
    fn a_plain_job_round_trips_and_is_small() {
        let mut job = JobRecord::new("bench job 1".into(), JobType::Download, Priority::Low, 1000);
        job.state = JobState::Acknowledged;
        let files = vec![file(&job, 0)];
        let bytes = encode(&job, &files);
        // Each option and file property at its default costs a byte or two.
        assert!(bytes.len() < 110, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes), (job, files));
    }

    /// A job with every field set to something other than its default. Struct literals
    /// without `..`: a field added to a record fails to compile here until it is set.
    fn job_with_every_field(state: JobState, variant: usize) -> JobRecord {
        JobRecord {
            id: Uuid::new_v4(),
            display_name: "naïve ✓".into(),
            description: "d".repeat(300),
            job_type: JobType::ALL[variant % JobType::ALL.len()],
            priority: Priority::ALL[variant % Priority::ALL.len()],
            state,
            owner_uid: u32::MAX,
            created_ms: -5,
            modified_ms: i64::MAX,
            transferred_ms: Some(i64::MIN),
            last_progress_ms: 1_779_000_000_123,
            retry_at_ms: Some(0),
            error: Some(JobErrorRecord {
                context: ErrorContext::ALL[variant % ErrorContext::ALL.len()],
                code: "http_404".into(),
                message: "not found".into(),
                file_index: Some(u32::MAX),
                time_ms: 17,
            }),
            error_count: 3,
            notify_flags: NotifyFlags::all(),
            notification_class: Some(Uuid::new_v4()),
            notify_command: vec!["/bin/echo".into(), "".into(), "x y".into()],
            min_retry_delay_secs: u64::MAX,
            no_progress_timeout_secs: 0,
            max_transfer_time_secs: 1 << 40,
            partial: true,
            last_notification_error: "refused".into(),
            finishing: Some(if variant.is_multiple_of(2) {
                Finishing::Complete
            } else {
                Finishing::Cancel
            }),
            options: JobOptions {
                headers: vec![("X-A".into(), "b".into()), ("X-B".into(), "".into())],
                headers_write_only: true,
                auto_complete: true,
                insecure_tls: true,
                keep_going: true,
                credentials: Some(match variant % 3 {
                    0 => Credentials::Basic {
                        user: "u".into(),
                        password: "p".into(),
                    },
                    1 => Credentials::Bearer {
                        token: "t0k3n".into(),
                    },
                    _ => Credentials::Negotiate {
                        ccache: Some("FILE:/tmp/krb5cc_1000".into()),
                    },
                }),
                proxy: if variant.is_multiple_of(2) {
                    ProxySetting::Url("http://proxy:3128".into())
                } else {
                    ProxySetting::None
                },
                ca_file: Some("/etc/ca.pem".into()),
                bandwidth_limit: 12345,
                upload_protocol: Some("tus".into()),
                reply_file: Some("/tmp/reply".into()),
                first_active_ms: Some(99),
                connections: 4,
                umask: Some(0o027),
                peers: Some(crate::model::PeerMode::Client),
                on_metered: Some(crate::model::MeteredPolicy::Continue),
                security: crate::model::HttpSecurity {
                    redirect_policy: crate::model::RedirectPolicy::NoHttpsToHttp,
                    pinned_public_keys: vec!["sha256//AAAA".into()],
                    crl_file: Some("/etc/crl.pem".into()),
                    client_certificate: Some("/etc/client.pem".into()),
                    client_key: Some("/etc/client.key".into()),
                    proxy_credentials: Some(crate::model::ProxyCredentials {
                        user: "pu".into(),
                        password: "pp".into(),
                    }),
                },
                max_download_size: 1 << 41,
                minimum_notification_interval_ms: 60_000,
                http_method: Some("POST".into()),
                cost_flags: Some(crate::model::CostFlags::TRANSFER_STANDARD),
                ignore_congestion: true,
            },
        }
    }

    fn file_with_every_field(job: &JobRecord, index: u32, validated: bool) -> FileRecord {
        FileRecord {
            job_id: job.id,
            index,
            remote_url: format!("https://h/ü/{index}"),
            local_path: format!("/tmp/ü/{index}"),
            bytes_total: Some(1 << 33),
            bytes_transferred: 1 << 32,
            completed: true,
            expected_sha256: Some("ab".repeat(32)),
            final_url: Some("https://mirror/x".into()),
            validator: Some("\"etag\"".into()),
            validated: Some(validated),
            segments: vec![
                Segment {
                    start: 0,
                    end: 10,
                    done: 5,
                },
                Segment {
                    start: 10,
                    end: u64::MAX,
                    done: 0,
                },
            ],
            peer: crate::model::FilePeerInfo {
                from_origin: 7,
                from_peers: 1 << 32,
                no_peer_cache: true,
                origin_only: true,
            },
            mirrors: vec!["https://mirror.example/ü".into(), "file:///srv/m".into()],
            mirror_in_use: 2,
            response_headers: vec![("ETag".into(), "\"v1\"".into()), ("X-Ü".into(), "".into())],
            ranges: crate::model::FileRanges {
                ranges: vec![crate::model::FileRange::new(3, crate::model::LENGTH_TO_EOF)],
                on_demand: true,
                position: 9,
                size: Some(12),
            },
        }
    }

    #[test]
    fn every_field_round_trips() {
        for (i, state) in JobState::ALL.iter().enumerate() {
            let job = job_with_every_field(*state, i);
            let files = vec![
                file(&job, 0),
                file_with_every_field(&job, 1, false),
                file_with_every_field(&job, u32::MAX, true),
            ];
            assert_eq!(decode(&encode(&job, &files)), (job, files));
        }
        // Each value of each enum, and each flag alone.
        for (i, flag) in NotifyFlags::all().iter().enumerate() {
            let mut job = job_with_every_field(JobState::Cancelled, i);
            job.notify_flags = flag;
            job.options.credentials = None;
            job.options.proxy = ProxySetting::System;
            let files = vec![file_with_every_field(&job, 0, true)];
            assert_eq!(decode(&encode(&job, &files)), (job, files));
        }
        // Options that differ from the defaults in one field only are not taken for them.
        let mut job = JobRecord::new("o".into(), JobType::Upload, Priority::Normal, 1);
        job.options.connections = 1;
        assert_eq!(decode(&encode(&job, &[])), (job, vec![]));
    }

    #[test]
    fn string_enums_serialize_as_their_store_names() {
        fn check<T: serde::Serialize + std::fmt::Display>(all: &[T]) {
            for v in all {
                assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{v}\""));
            }
        }
        check(JobType::ALL);
        check(Priority::ALL);
        check(JobState::ALL);
        check(ErrorContext::ALL);
        check(UploadProtocol::ALL);
        check(NotifyMethod::ALL);
    }

    /// A final job as scenario 5 of bench/run stores them: an acknowledged download of
    /// one completed file, default options.
    fn typical_final_job() -> (JobRecord, Vec<FileRecord>) {
        let t = 1_779_000_000_000;
        let mut job = JobRecord::new(
            "bench job 12345".into(),
            JobType::Download,
            Priority::Normal,
            1000,
        );
        job.state = JobState::Acknowledged;
        (job.created_ms, job.modified_ms, job.last_progress_ms) = (t, t + 900, t + 800);
        job.transferred_ms = Some(t + 800);
        let mut f = file(&job, 0);
        f.remote_url = "http://127.0.0.1:38211/missing/12345.bin".into();
        f.local_path = "/tmp/ferry-bench/out/s5/12345.bin".into();
        f.bytes_total = Some(16384);
        f.bytes_transferred = 16384;
        f.completed = true;
        (job, vec![f])
    }

    /// A download as `ferry get` leaves it: resumed once (so its options record when it
    /// was first queued), a validator, a final URL after a redirect.
    fn fetched_final_job() -> (JobRecord, Vec<FileRecord>) {
        let (mut job, mut files) = typical_final_job();
        job.display_name = "https://example.org/pub/releases/tool-1.2.3.tar.gz".into();
        job.priority = Priority::Foreground;
        job.min_retry_delay_secs = 2;
        job.no_progress_timeout_secs = 60;
        job.options.first_active_ms = Some(job.created_ms + 5);
        let f = &mut files[0];
        f.remote_url = job.display_name.clone();
        f.local_path = "/home/user/Downloads/tool-1.2.3.tar.gz".into();
        f.final_url = Some("https://cdn.example.org/pub/releases/tool-1.2.3.tar.gz".into());
        f.validator = Some("\"5f3c-61a2b3c4d5e6f\"".into());
        f.bytes_total = Some(48_213_770);
        f.bytes_transferred = 48_213_770;
        (job, files)
    }

    /// The hand-written varint codec this replaced took 167 and 468 bytes for these two
    /// (the second kept its options as JSON); `finishing` (schema 4) adds a byte, and each
    /// file's bytes from the origin and from peers another (one byte when there are none),
    /// and options that are not the defaults one for the metered policy, one for
    /// write-only headers and one each for `auto_complete`, `insecure_tls`,
    /// `keep_going` and the TLS policy (`security`, none set); each file's mirrors and the
    /// mirror in use two (none, the file's own URL); each file one for its last response's
    /// headers (none) and non-default options one each for `max_download_size`,
    /// `minimum_notification_interval_ms` and `http_method`; one each for the cost flags
    /// (unset) and `ignore_congestion`; each file's ranges one (a whole file's: none set).
    #[test]
    fn encoded_size_of_typical_final_jobs() {
        for (what, (job, files), bound) in [
            ("scenario-5 job", typical_final_job(), 175),
            ("fetched job", fetched_final_job(), 327),
        ] {
            let bytes = encode(&job, &files);
            eprintln!("compact size, {what}: {} bytes", bytes.len());
            assert!(bytes.len() <= bound, "{what}: {} bytes", bytes.len());
            assert_eq!(decode(&bytes), (job, files));
        }
    }
}
