//! A compact byte encoding of a job and its files.
//!
//! Final jobs (`acknowledged`, `cancelled`) never change again, yet `info`, `list --all`
//! and queries must still show them until they are purged. The service keeps them in
//! memory in this form — varints and length-prefixed strings in one boxed slice, about a
//! fifth of the size of a `JobRecord` with its `Vec<FileRecord>` — and decodes one only
//! when someone looks at it.
//!
//! The encoding lives only in memory (it is never written to disk), so it needs no
//! versioning: `encode` and `decode` just have to agree. Both destructure the records
//! field by field, so adding a field to `JobRecord` or `FileRecord` fails to compile here
//! until it is encoded too.

use uuid::Uuid;

use crate::model::{
    ErrorContext, FileRecord, JobErrorRecord, JobOptions, JobRecord, JobState, JobType,
    NotifyFlags, Priority, Segment,
};

/// Encodes `job` and its `files` (whose `job_id` must be `job.id`).
pub fn encode(job: &JobRecord, files: &[FileRecord]) -> Box<[u8]> {
    let mut w = Writer(Vec::with_capacity(128));
    let JobRecord {
        id,
        display_name,
        description,
        job_type,
        priority,
        state,
        owner_uid,
        created_ms,
        modified_ms,
        transferred_ms,
        last_progress_ms,
        retry_at_ms,
        error,
        error_count,
        notify_flags,
        notification_class,
        notify_command,
        min_retry_delay_secs,
        no_progress_timeout_secs,
        max_transfer_time_secs,
        partial,
        last_notification_error,
        options,
    } = job;
    w.0.extend_from_slice(id.as_bytes());
    w.str(display_name);
    w.str(description);
    w.0.push(index_of(JobType::ALL, *job_type));
    w.0.push(index_of(Priority::ALL, *priority));
    w.0.push(index_of(JobState::ALL, *state));
    w.u64(u64::from(*owner_uid));
    w.i64(*created_ms);
    w.i64(*modified_ms);
    w.opt_i64(*transferred_ms);
    w.i64(*last_progress_ms);
    w.opt_i64(*retry_at_ms);
    match error {
        None => w.0.push(0),
        Some(JobErrorRecord {
            context,
            code,
            message,
            file_index,
            time_ms,
        }) => {
            w.0.push(1 + index_of(ErrorContext::ALL, *context));
            w.str(code);
            w.str(message);
            w.opt_u64(file_index.map(u64::from));
            w.i64(*time_ms);
        }
    }
    w.u64(u64::from(*error_count));
    w.u64(u64::from(notify_flags.bits()));
    match notification_class {
        None => w.0.push(0),
        Some(c) => {
            w.0.push(1);
            w.0.extend_from_slice(c.as_bytes());
        }
    }
    w.u64(notify_command.len() as u64);
    for a in notify_command {
        w.str(a);
    }
    w.u64(*min_retry_delay_secs);
    w.u64(*no_progress_timeout_secs);
    w.u64(*max_transfer_time_secs);
    w.0.push(u8::from(*partial));
    w.str(last_notification_error);
    // Options are nearly always the defaults: an empty string stands for them.
    if *options == JobOptions::default() {
        w.str("");
    } else {
        w.str(&serde_json::to_string(options).unwrap_or_default());
    }

    w.u64(files.len() as u64);
    for f in files {
        let FileRecord {
            job_id: _,
            index,
            remote_url,
            local_path,
            bytes_total,
            bytes_transferred,
            completed,
            expected_sha256,
            final_url,
            validator,
            validated,
            segments,
        } = f;
        w.u64(u64::from(*index));
        w.str(remote_url);
        w.str(local_path);
        w.opt_u64(*bytes_total);
        w.u64(*bytes_transferred);
        w.0.push(u8::from(*completed));
        w.opt_str(expected_sha256.as_deref());
        w.opt_str(final_url.as_deref());
        w.opt_str(validator.as_deref());
        w.0.push(match validated {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        });
        w.u64(segments.len() as u64);
        for Segment { start, end, done } in segments {
            w.u64(*start);
            w.u64(*end);
            w.u64(*done);
        }
    }
    w.0.into_boxed_slice()
}

/// Decodes what [`encode`] made.
///
/// # Panics
///
/// If `bytes` did not come from `encode` (the encoding never leaves the process).
pub fn decode(bytes: &[u8]) -> (JobRecord, Vec<FileRecord>) {
    let mut r = Reader(bytes);
    let id = r.uuid();
    let display_name = r.string();
    let description = r.string();
    let job_type = JobType::ALL[r.byte() as usize];
    let priority = Priority::ALL[r.byte() as usize];
    let state = JobState::ALL[r.byte() as usize];
    let owner_uid = r.u64() as u32;
    let created_ms = r.i64();
    let modified_ms = r.i64();
    let transferred_ms = r.opt_i64();
    let last_progress_ms = r.i64();
    let retry_at_ms = r.opt_i64();
    let error = match r.byte() {
        0 => None,
        c => Some(JobErrorRecord {
            context: ErrorContext::ALL[c as usize - 1],
            code: r.string(),
            message: r.string(),
            file_index: r.opt_u64().map(|v| v as u32),
            time_ms: r.i64(),
        }),
    };
    let error_count = r.u64() as u32;
    let notify_flags = NotifyFlags::from_bits_truncate(r.u64() as u32);
    let notification_class = match r.byte() {
        0 => None,
        _ => Some(r.uuid()),
    };
    let n = r.u64() as usize;
    let notify_command = (0..n).map(|_| r.string()).collect();
    let min_retry_delay_secs = r.u64();
    let no_progress_timeout_secs = r.u64();
    let max_transfer_time_secs = r.u64();
    let partial = r.byte() != 0;
    let last_notification_error = r.string();
    let options = match r.str() {
        "" => JobOptions::default(),
        json => serde_json::from_str(json).unwrap_or_default(),
    };
    let job = JobRecord {
        id,
        display_name,
        description,
        job_type,
        priority,
        state,
        owner_uid,
        created_ms,
        modified_ms,
        transferred_ms,
        last_progress_ms,
        retry_at_ms,
        error,
        error_count,
        notify_flags,
        notification_class,
        notify_command,
        min_retry_delay_secs,
        no_progress_timeout_secs,
        max_transfer_time_secs,
        partial,
        last_notification_error,
        options,
    };

    let n = r.u64() as usize;
    let mut files = Vec::with_capacity(n);
    for _ in 0..n {
        let index = r.u64() as u32;
        let remote_url = r.string();
        let local_path = r.string();
        let bytes_total = r.opt_u64();
        let bytes_transferred = r.u64();
        let completed = r.byte() != 0;
        let expected_sha256 = r.opt_string();
        let final_url = r.opt_string();
        let validator = r.opt_string();
        let validated = match r.byte() {
            0 => None,
            v => Some(v == 2),
        };
        let k = r.u64() as usize;
        let segments = (0..k)
            .map(|_| Segment {
                start: r.u64(),
                end: r.u64(),
                done: r.u64(),
            })
            .collect();
        files.push(FileRecord {
            job_id: id,
            index,
            remote_url,
            local_path,
            bytes_total,
            bytes_transferred,
            completed,
            expected_sha256,
            final_url,
            validator,
            validated,
            segments,
        });
    }
    debug_assert!(r.0.is_empty(), "trailing bytes in a compact job");
    (job, files)
}

fn index_of<T: PartialEq>(all: &[T], v: T) -> u8 {
    all.iter().position(|x| *x == v).expect("a declared value") as u8
}

struct Writer(Vec<u8>);

impl Writer {
    /// LEB128.
    fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// Zig-zag, then LEB128.
    fn i64(&mut self, v: i64) {
        self.u64(((v << 1) ^ (v >> 63)) as u64);
    }

    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.u64(v);
            }
        }
    }

    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.i64(v);
            }
        }
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn byte(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.byte();
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn i64(&mut self) -> i64 {
        let v = self.u64();
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    fn opt_u64(&mut self) -> Option<u64> {
        (self.byte() != 0).then(|| self.u64())
    }

    fn opt_i64(&mut self) -> Option<i64> {
        (self.byte() != 0).then(|| self.i64())
    }

    fn uuid(&mut self) -> Uuid {
        Uuid::from_slice(self.take(16)).expect("16 bytes")
    }

    fn str(&mut self) -> &'a str {
        let n = self.u64() as usize;
        std::str::from_utf8(self.take(n)).expect("encoded from a str")
    }

    fn string(&mut self) -> String {
        self.str().to_owned()
    }

    fn opt_string(&mut self) -> Option<String> {
        (self.byte() != 0).then(|| self.string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Credentials, ProxySetting};

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
        }
    }

    #[test]
    fn a_plain_job_round_trips_and_is_small() {
        let mut job = JobRecord::new("bench job 1".into(), JobType::Download, Priority::Low, 1000);
        job.state = JobState::Acknowledged;
        let files = vec![file(&job, 0)];
        let bytes = encode(&job, &files);
        assert!(bytes.len() < 100, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes), (job, files));
    }

    #[test]
    fn every_field_round_trips() {
        for (i, state) in JobState::ALL.iter().enumerate() {
            let mut job = JobRecord::new(
                "naïve ✓".into(),
                JobType::UploadReply,
                Priority::High,
                u32::MAX,
            );
            job.state = *state;
            job.description = "d".repeat(300);
            job.created_ms = -5;
            job.modified_ms = i64::MAX;
            job.transferred_ms = Some(i64::MIN);
            job.retry_at_ms = Some(0);
            job.error = Some(JobErrorRecord {
                context: ErrorContext::ALL[i % ErrorContext::ALL.len()],
                code: "http_404".into(),
                message: "not found".into(),
                file_index: Some(u32::MAX),
                time_ms: 17,
            });
            job.error_count = 3;
            job.notify_flags = NotifyFlags::all();
            job.notification_class = Some(Uuid::new_v4());
            job.notify_command = vec!["/bin/echo".into(), "".into(), "x y".into()];
            job.min_retry_delay_secs = u64::MAX;
            job.no_progress_timeout_secs = 0;
            job.max_transfer_time_secs = 1 << 40;
            job.partial = true;
            job.last_notification_error = "refused".into();
            job.options = JobOptions {
                headers: vec![("X-A".into(), "b".into())],
                credentials: Some(Credentials::Basic {
                    user: "u".into(),
                    password: "p".into(),
                }),
                proxy: ProxySetting::Url("http://proxy:3128".into()),
                ca_file: Some("/etc/ca.pem".into()),
                bandwidth_limit: 12345,
                upload_protocol: Some("tus".into()),
                reply_file: Some("/tmp/reply".into()),
                first_active_ms: Some(99),
                connections: 4,
            };
            let mut f1 = file(&job, 1);
            f1.bytes_total = Some(1 << 33);
            f1.bytes_transferred = 1 << 32;
            f1.completed = true;
            f1.expected_sha256 = Some("ab".repeat(32));
            f1.final_url = Some("https://mirror/x".into());
            f1.validator = Some("\"etag\"".into());
            f1.validated = Some(false);
            f1.segments = vec![
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
            ];
            let mut f2 = file(&job, 2);
            f2.validated = Some(true);
            let files = vec![file(&job, 0), f1, f2];
            assert_eq!(decode(&encode(&job, &files)), (job, files));
        }
    }
}
