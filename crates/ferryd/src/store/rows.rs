//! Mapping between records and table rows.

use std::sync::OnceLock;

use rusqlite::{params, Connection, Row};
use uuid::Uuid;

use crate::model::{
    ErrorContext, FileRecord, HandlerRecord, JobErrorRecord, JobRecord, NotifyFlags, OutboxRecord,
};

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
    no_progress_timeout_secs, max_transfer_time_secs, partial, last_notification_error, options";

pub fn job_from_row(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let error_context: Option<String> = r.get(12)?;
    let error = match error_context {
        Some(ctx) => Some(JobErrorRecord {
            context: parse::<ErrorContext>(12, ctx)?,
            code: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
            message: r.get::<_, Option<String>>(14)?.unwrap_or_default(),
            file_index: r.get(15)?,
            time_ms: r.get::<_, Option<i64>>(16)?.unwrap_or(0),
        }),
        None => None,
    };
    let class: Option<String> = r.get(19)?;
    let command: String = r.get(20)?;
    Ok(JobRecord {
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
        notify_command: serde_json::from_str(&command).unwrap_or_default(),
        min_retry_delay_secs: r.get::<_, i64>(21)? as u64,
        no_progress_timeout_secs: r.get::<_, i64>(22)? as u64,
        max_transfer_time_secs: r.get::<_, i64>(23)? as u64,
        partial: r.get(24)?,
        last_notification_error: r.get(25)?,
        options: serde_json::from_str(&r.get::<_, String>(26)?).unwrap_or_default(),
    })
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
              ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27) \
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
    ])?;
    Ok(())
}

pub const FILE_COLUMNS: &str = "job_id, idx, remote_url, local_path, bytes_total, \
    bytes_transferred, completed, expected_sha256, final_url, validator, validated, segments";

pub fn file_from_row(r: &Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
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
        segments: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
    })
}

/// The upsert of a file row, built once.
fn upsert_file_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "INSERT INTO files ({FILE_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
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
    ])?;
    Ok(())
}

pub fn handler_from_row(r: &Row<'_>) -> rusqlite::Result<HandlerRecord> {
    let argv: String = r.get(2)?;
    Ok(HandlerRecord {
        class: uuid(0, r.get(0)?)?,
        owner_uid: r.get(1)?,
        argv: serde_json::from_str(&argv).unwrap_or_default(),
        workdir: r.get(3)?,
        registered_ms: r.get(4)?,
    })
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
