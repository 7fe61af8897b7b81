//! Mapping between records and table rows.

use std::sync::OnceLock;

use rusqlite::{params, Connection, Row};
use uuid::Uuid;

use crate::model::{
    now_ms, CacheEntry, ErrorContext, FilePeerInfo, FileRecord, HandlerRecord, JobErrorRecord,
    JobOptions, JobRecord, JobState, NotifyFlags, OutboxRecord, Priority, Segment, UploadProtocol,
};

/// The error code of a job whose `jobs.options` could not be read (see the module doc of
/// `store`).
pub const UNREADABLE_OPTIONS: &str = "unreadable_options";
/// The error code of a job whose `jobs.notify_command` could not be read.
pub const UNREADABLE_NOTIFY_COMMAND: &str = "unreadable_notify_command";

/// True for the error record of a job loaded with a column it needs unreadable: such a
/// job must not be resumed (it would run with defaults in place of what was stored).
pub fn is_unreadable(e: &JobErrorRecord) -> bool {
    e.is_unreadable_column()
}

/// serde_json's reason, with the string values it quotes left out (a corrupt options
/// column may hold a password or token where another value was expected, and the reason
/// becomes part of the job's error, which `info` shows).
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if !e.is_data() {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            // Skip to the closing quote (serde quotes with Rust's escapes).
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            out.push_str("…\"");
        }
    }
    out
}

/// A column of a job row that could not be read.
struct Unreadable {
    code: &'static str,
    column: &'static str,
    what: &'static str,
    reason: String,
}

/// The options stored in `jobs.options`, or why they cannot be used.
fn read_options(text: &str) -> Result<JobOptions, String> {
    let options: JobOptions = serde_json::from_str(text).map_err(|e| json_reason(&e))?;
    if let Some(p) = &options.upload_protocol {
        p.parse::<UploadProtocol>()?;
    }
    Ok(options)
}

/// Puts a job whose `problems` make it unusable in `error` (a final job keeps its state:
/// nothing uses its options any more) with an error record that says what could not be
/// read and what to do.
fn mark_unreadable(job: &mut JobRecord, problems: &[Unreadable]) {
    let mut message = problems
        .iter()
        .map(|p| {
            format!(
                "its stored {} (column {}) could not be read: {}",
                p.what, p.column, p.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if job.state.is_final() {
        message.push_str(&format!(
            "; the job is {}, so nothing uses them any more",
            job.state
        ));
    } else {
        message.push_str(
            "; it will not be transferred with defaults in their place: cancel the job \
             (CancelJob) and create it again",
        );
        job.state = JobState::Error;
        job.retry_at_ms = None;
    }
    tracing::error!(job = %job.id, "{message}");
    job.error = Some(JobErrorRecord {
        context: ErrorContext::Daemon,
        code: problems[0].code.into(),
        message,
        file_index: None,
        time_ms: now_ms(),
    });
}

fn parse<T: std::str::FromStr<Err = String>>(idx: usize, s: String) -> rusqlite::Result<T> {
    s.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

fn uuid(idx: usize, s: String) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

/// The columns of [`archived_from_row`].
pub const ARCHIVED_COLUMNS: &str = "id, owner_uid, state, priority, created_ms, modified_ms";

/// What the daemon keeps in memory of a final job it leaves in the store.
#[derive(Debug, Clone)]
pub struct ArchivedRow {
    pub id: Uuid,
    pub owner_uid: u32,
    pub state: JobState,
    pub priority: Priority,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// An [`ArchivedRow`] from the columns [`ARCHIVED_COLUMNS`].
pub fn archived_from_row(r: &Row) -> rusqlite::Result<ArchivedRow> {
    Ok(ArchivedRow {
        id: uuid(0, r.get(0)?)?,
        owner_uid: r.get(1)?,
        state: parse(2, r.get(2)?)?,
        priority: parse(3, r.get(3)?)?,
        created_ms: r.get(4)?,
        modified_ms: r.get(5)?,
    })
}

/// `col = excluded.col, …` for every column but the key.
fn update_list(columns: &str, key: &[&str]) -> String {
    columns
        .split(',')
        .map(str::trim)
        .filter(|c| !key.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub const JOB_COLUMNS: &str = "id, display_name, description, job_type, priority, state, \
    owner_uid, created_ms, modified_ms, transferred_ms, last_progress_ms, retry_at_ms, \
    error_context, error_code, error_message, error_file_index, error_time_ms, error_count, \
    notify_flags, notification_class, notify_command, min_retry_delay_secs, \
    no_progress_timeout_secs, max_transfer_time_secs, partial, last_notification_error, options, \
    finishing";

/// A job row; the flag is true when a column it needs could not be read and the job was
/// put in `error` ([`mark_unreadable`]): that state is then to be written back.
pub fn job_from_row(r: &Row<'_>) -> rusqlite::Result<(JobRecord, bool)> {
    let error_context: Option<String> = r.get(12)?;
    let error = match error_context {
        Some(ctx) => {
            // Written together with the context: NULL here is an empty code or message.
            let code = r.get::<_, Option<String>>(13)?.unwrap_or_default();
            let message = r.get::<_, Option<String>>(14)?.unwrap_or_default();
            let file_index = r.get(15)?;
            let time_ms = r.get::<_, Option<i64>>(16)?.unwrap_or(0);
            Some(match ctx.parse::<ErrorContext>() {
                Ok(context) => JobErrorRecord {
                    context,
                    code,
                    message,
                    file_index,
                    time_ms,
                },
                // The record is kept; only where it happened is lost.
                Err(reason) => JobErrorRecord {
                    context: ErrorContext::Daemon,
                    code,
                    message: format!(
                        "{message} (its stored context, column jobs.error_context, could \
                         not be read: {reason})"
                    ),
                    file_index,
                    time_ms,
                },
            })
        }
        None => None,
    };
    let class: Option<String> = r.get(19)?;
    let mut problems = Vec::new();
    let notify_command = serde_json::from_str(&r.get::<_, String>(20)?).unwrap_or_else(|e| {
        problems.push(Unreadable {
            code: UNREADABLE_NOTIFY_COMMAND,
            column: "jobs.notify_command",
            what: "notify command",
            reason: json_reason(&e),
        });
        Vec::new()
    });
    let options = read_options(&r.get::<_, String>(26)?).unwrap_or_else(|reason| {
        problems.insert(
            0,
            Unreadable {
                code: UNREADABLE_OPTIONS,
                column: "jobs.options",
                what: "transfer options (headers, credentials, proxy, CA file, bandwidth \
                       limit, upload protocol, reply file, connections)",
                reason,
            },
        );
        JobOptions::default()
    });
    let mut job = JobRecord {
        id: uuid(0, r.get(0)?)?,
        display_name: r.get(1)?,
        description: r.get(2)?,
        job_type: parse(3, r.get(3)?)?,
        priority: parse(4, r.get(4)?)?,
        state: parse(5, r.get(5)?)?,
        owner_uid: r.get(6)?,
        created_ms: r.get(7)?,
        modified_ms: r.get(8)?,
        transferred_ms: r.get(9)?,
        last_progress_ms: r.get(10)?,
        retry_at_ms: r.get(11)?,
        error,
        error_count: r.get(17)?,
        notify_flags: NotifyFlags::from_bits_truncate(r.get(18)?),
        notification_class: class.map(|c| uuid(19, c)).transpose()?,
        notify_command,
        min_retry_delay_secs: r.get::<_, i64>(21)? as u64,
        no_progress_timeout_secs: r.get::<_, i64>(22)? as u64,
        max_transfer_time_secs: r.get::<_, i64>(23)? as u64,
        partial: r.get(24)?,
        last_notification_error: r.get(25)?,
        finishing: r
            .get::<_, Option<String>>(27)?
            .map(|f| parse(27, f))
            .transpose()?,
        options,
    };
    if !problems.is_empty() {
        mark_unreadable(&mut job, &problems);
    }
    Ok((job, !problems.is_empty()))
}

/// Writes the state and error record that [`mark_unreadable`] gave a job, leaving its
/// other columns (the unreadable one included) as they are.
pub fn record_unreadable(tx: &Connection, j: &JobRecord) -> rusqlite::Result<()> {
    let e = j.error.as_ref();
    tx.prepare_cached(
        "UPDATE jobs SET state = ?2, retry_at_ms = ?3, error_context = ?4, error_code = ?5, \
         error_message = ?6, error_file_index = ?7, error_time_ms = ?8 WHERE id = ?1",
    )?
    .execute(params![
        j.id.to_string(),
        j.state.as_str(),
        j.retry_at_ms,
        e.map(|e| e.context.as_str()),
        e.map(|e| e.code.as_str()),
        e.map(|e| e.message.as_str()),
        e.and_then(|e| e.file_index),
        e.map(|e| e.time_ms),
    ])?;
    Ok(())
}

/// The upsert of a job row, built once (the statement cache is keyed by the text).
fn upsert_job_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        // An upsert, never `INSERT OR REPLACE`: REPLACE deletes the row first, and the
        // delete would cascade to the job's files.
        format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
              ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28) \
             ON CONFLICT(id) DO UPDATE SET {}",
            update_list(JOB_COLUMNS, &["id"])
        )
    })
}

pub fn upsert_job(tx: &Connection, j: &JobRecord) -> rusqlite::Result<()> {
    let e = j.error.as_ref();
    tx.prepare_cached(upsert_job_sql())?.execute(params![
        j.id.to_string(),
        j.display_name,
        j.description,
        j.job_type.as_str(),
        j.priority.as_str(),
        j.state.as_str(),
        j.owner_uid,
        j.created_ms,
        j.modified_ms,
        j.transferred_ms,
        j.last_progress_ms,
        j.retry_at_ms,
        e.map(|e| e.context.as_str()),
        e.map(|e| e.code.as_str()),
        e.map(|e| e.message.as_str()),
        e.and_then(|e| e.file_index),
        e.map(|e| e.time_ms),
        j.error_count,
        j.notify_flags.bits(),
        j.notification_class.map(|c| c.to_string()),
        serde_json::to_string(&j.notify_command).unwrap_or_else(|_| "[]".into()),
        j.min_retry_delay_secs as i64,
        j.no_progress_timeout_secs as i64,
        j.max_transfer_time_secs as i64,
        j.partial,
        j.last_notification_error,
        serde_json::to_string(&j.options).unwrap_or_else(|_| "{}".into()),
        j.finishing.map(|f| f.as_str()),
    ])?;
    Ok(())
}

pub const FILE_COLUMNS: &str = "job_id, idx, remote_url, local_path, bytes_total, \
    bytes_transferred, completed, expected_sha256, final_url, validator, validated, segments, \
    bytes_from_origin, bytes_from_peers, no_peer_cache, origin_only, mirrors, mirror_in_use, \
    response_headers, ranges";

pub fn file_from_row(r: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let mut f = FileRecord {
        job_id: uuid(0, r.get(0)?)?,
        index: r.get(1)?,
        remote_url: r.get(2)?,
        local_path: r.get(3)?,
        bytes_total: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
        bytes_transferred: r.get::<_, i64>(5)? as u64,
        completed: r.get(6)?,
        expected_sha256: r.get(7)?,
        final_url: r.get(8)?,
        validator: r.get(9)?,
        validated: r.get(10)?,
        segments: Vec::new(),
        peer: FilePeerInfo {
            from_origin: r.get::<_, i64>(12)? as u64,
            from_peers: r.get::<_, i64>(13)? as u64,
            no_peer_cache: r.get(14)?,
            origin_only: r.get(15)?,
        },
        mirrors: Vec::new(),
        mirror_in_use: r.get(17)?,
        // What the last response said is information only: unreadable, it is dropped.
        response_headers: serde_json::from_str(&r.get::<_, String>(18)?).unwrap_or_default(),
        ranges: Default::default(),
    };
    match serde_json::from_str::<Vec<String>>(&r.get::<_, String>(16)?) {
        Ok(mirrors) => f.mirrors = mirrors,
        // The file is still fetched from its own URL; the mirrors are lost, and said so.
        Err(e) => {
            tracing::warn!(
                job = %f.job_id,
                file = f.index,
                "the stored mirrors of this file (column files.mirrors) could not be read: \
                 {}; it is fetched from its remote_url only",
                json_reason(&e)
            );
            f.mirror_in_use = 0;
        }
    }
    if f.mirror_in_use as usize > f.mirrors.len() {
        f.mirror_in_use = 0;
    }
    let ranges: String = r.get(19)?;
    if !ranges.is_empty() {
        match serde_json::from_str(&ranges) {
            Ok(ranges) => f.ranges = ranges,
            // Without its ranges the file would be downloaded whole into a file its
            // application reads as ranges: it fails instead, and says why.
            Err(e) => {
                tracing::warn!(
                    job = %f.job_id,
                    file = f.index,
                    "the stored ranges of this file (column files.ranges) could not be read: {}",
                    json_reason(&e)
                );
                f.ranges = crate::model::FileRanges {
                    ranges: vec![crate::model::FileRange::new(0, 0)],
                    on_demand: false,
                    position: 0,
                    size: None,
                };
            }
        }
    }
    match serde_json::from_str::<Vec<Segment>>(&r.get::<_, String>(11)?) {
        Ok(segments) => f.segments = segments,
        // Without its segments the durable bytes of a multi-connection download are not
        // one run from the start: resuming at `bytes_transferred` would leave holes. Its
        // checkpoint is dropped and the file starts again (a completed file needs none).
        Err(e) if !f.completed => {
            tracing::warn!(
                job = %f.job_id,
                file = f.index,
                "the stored segments of this file (column files.segments) could not be read: \
                 {}; it starts again from zero",
                json_reason(&e)
            );
            f.bytes_transferred = 0;
        }
        Err(_) => {}
    }
    Ok(f)
}

/// The upsert of a file row, built once.
fn upsert_file_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "INSERT INTO files ({FILE_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) \
             ON CONFLICT(job_id, idx) DO UPDATE SET {}",
            update_list(FILE_COLUMNS, &["job_id", "idx"])
        )
    })
}

pub fn upsert_file(tx: &Connection, f: &FileRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(upsert_file_sql())?.execute(params![
        f.job_id.to_string(),
        f.index,
        f.remote_url,
        f.local_path,
        f.bytes_total.map(|v| v as i64),
        f.bytes_transferred as i64,
        f.completed,
        f.expected_sha256,
        f.final_url,
        f.validator,
        f.validated,
        serde_json::to_string(&f.segments).unwrap_or_else(|_| "[]".into()),
        f.peer.from_origin as i64,
        f.peer.from_peers as i64,
        f.peer.no_peer_cache,
        f.peer.origin_only,
        serde_json::to_string(&f.mirrors).unwrap_or_else(|_| "[]".into()),
        f.mirror_in_use,
        serde_json::to_string(&f.response_headers).unwrap_or_else(|_| "[]".into()),
        if f.ranges.is_whole() {
            String::new()
        } else {
            serde_json::to_string(&f.ranges).unwrap_or_default()
        },
    ])?;
    Ok(())
}

/// A handler row; `None` (with an error logged) when its command cannot be read.
pub fn handler_from_row(r: &Row<'_>) -> rusqlite::Result<Option<HandlerRecord>> {
    let class = uuid(0, r.get(0)?)?;
    let owner_uid = r.get(1)?;
    let argv = match serde_json::from_str(&r.get::<_, String>(2)?) {
        Ok(argv) => argv,
        Err(e) => {
            tracing::error!(
                %class,
                owner_uid,
                "the stored command of this handler (column handlers.argv) could not be read: \
                 {}; the handler is not loaded: register it again (RegisterHandler)",
                json_reason(&e)
            );
            return Ok(None);
        }
    };
    Ok(Some(HandlerRecord {
        class,
        owner_uid,
        argv,
        workdir: r.get(3)?,
        registered_ms: r.get(4)?,
    }))
}

pub fn upsert_handler(tx: &Connection, h: &HandlerRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO handlers (class, owner_uid, argv, workdir, registered_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        h.class.to_string(),
        h.owner_uid,
        serde_json::to_string(&h.argv).unwrap_or_else(|_| "[]".into()),
        h.workdir,
        h.registered_ms,
    ])?;
    Ok(())
}

pub fn outbox_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxRecord> {
    Ok(OutboxRecord {
        id: r.get(0)?,
        job_id: uuid(1, r.get(1)?)?,
        method: parse(2, r.get(2)?)?,
        file_index: r.get(3)?,
        created_ms: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_ms: r.get(6)?,
        last_error: r.get(7)?,
    })
}

pub fn upsert_outbox(tx: &Connection, o: &OutboxRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO outbox (id, job_id, method, file_index, created_ms, attempts, \
         next_attempt_ms, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        o.id,
        o.job_id.to_string(),
        o.method.as_str(),
        o.file_index,
        o.created_ms,
        o.attempts,
        o.next_attempt_ms,
        o.last_error,
    ])?;
    Ok(())
}

pub const CACHE_COLUMNS: &str =
    "id, url, validator, length, sha256, created_ms, last_access_ms, bytes_served";

pub fn cache_entry_from_row(r: &Row<'_>) -> rusqlite::Result<CacheEntry> {
    Ok(CacheEntry {
        id: r.get(0)?,
        url: r.get(1)?,
        validator: r.get(2)?,
        length: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        created_ms: r.get(5)?,
        last_access_ms: r.get(6)?,
        bytes_served: r.get::<_, i64>(7)? as u64,
    })
}

pub fn upsert_cache_entry(tx: &Connection, e: &CacheEntry) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO peer_cache ({CACHE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        e.id,
        e.url,
        e.validator,
        e.length as i64,
        e.sha256,
        e.created_ms,
        e.last_access_ms,
        e.bytes_served as i64,
    ])?;
    Ok(())
}
