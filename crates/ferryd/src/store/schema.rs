//! The schema and its forward migrations, versioned with `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry migrates from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: jobs, files, handlers, outbox.
    r#"
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY NOT NULL,
        display_name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        job_type TEXT NOT NULL,
        priority TEXT NOT NULL,
        state TEXT NOT NULL,
        owner_uid INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        modified_ms INTEGER NOT NULL,
        transferred_ms INTEGER,
        last_progress_ms INTEGER NOT NULL,
        retry_at_ms INTEGER,
        error_context TEXT,
        error_code TEXT,
        error_message TEXT,
        error_file_index INTEGER,
        error_time_ms INTEGER,
        error_count INTEGER NOT NULL DEFAULT 0,
        notify_flags INTEGER NOT NULL,
        notification_class TEXT,
        notify_command TEXT NOT NULL DEFAULT '[]',
        min_retry_delay_secs INTEGER NOT NULL,
        no_progress_timeout_secs INTEGER NOT NULL,
        max_transfer_time_secs INTEGER NOT NULL DEFAULT 0,
        partial INTEGER NOT NULL DEFAULT 0,
        last_notification_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE INDEX jobs_priority ON jobs(priority);
    CREATE INDEX jobs_owner ON jobs(owner_uid);
    CREATE INDEX jobs_created ON jobs(created_ms);

    CREATE TABLE files (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        remote_url TEXT NOT NULL,
        local_path TEXT NOT NULL,
        bytes_total INTEGER,
        bytes_transferred INTEGER NOT NULL DEFAULT 0,
        completed INTEGER NOT NULL DEFAULT 0,
        expected_sha256 TEXT,
        final_url TEXT,
        validator TEXT,
        validated INTEGER,
        PRIMARY KEY (job_id, idx)
    ) WITHOUT ROWID;

    CREATE TABLE handlers (
        class TEXT NOT NULL,
        owner_uid INTEGER NOT NULL,
        argv TEXT NOT NULL,
        workdir TEXT,
        registered_ms INTEGER NOT NULL,
        PRIMARY KEY (class, owner_uid)
    );

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        method TEXT NOT NULL,
        file_index INTEGER,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX outbox_job ON outbox(job_id);
    "#,
    // 1 → 2: transfer options (headers, credentials, proxy, TLS, bandwidth, uploads).
    r#"
    ALTER TABLE jobs ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    "#,
    // 2 → 3: segments of multi-connection downloads.
    r#"
    ALTER TABLE files ADD COLUMN segments TEXT NOT NULL DEFAULT '[]';
    "#,
    // 3 → 4: a complete or cancel under way ('complete', 'cancel'), finished after a crash.
    r#"
    ALTER TABLE jobs ADD COLUMN finishing TEXT;
    "#,
    // 4 → 5: peer caching: where each file's bytes came from, and the cache's index.
    r#"
    ALTER TABLE files ADD COLUMN bytes_from_origin INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE files ADD COLUMN bytes_from_peers INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE files ADD COLUMN no_peer_cache INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE files ADD COLUMN origin_only INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE peer_cache (
        id TEXT PRIMARY KEY NOT NULL,
        url TEXT NOT NULL,
        validator TEXT,
        length INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_access_ms INTEGER NOT NULL,
        bytes_served INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX peer_cache_url ON peer_cache(url, validator, length);
    CREATE INDEX peer_cache_sha256 ON peer_cache(sha256);
    "#,
    // 5 → 6 (issue 30, BITS's file properties): a file's mirrors (a JSON list of more
    // URLs) and which URL is in use (0: its remote_url, i: mirror i - 1); the headers of
    // its last response (BITS's HTTP_RESPONSE_HEADERS), a JSON list of [name, value];
    // its byte ranges (AddFileWithRanges, on-demand files): JSON `{"ranges": [{"offset",
    // "length"}], "on_demand", "position"}`, '' for the whole file.
    r#"
    ALTER TABLE files ADD COLUMN mirrors TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE files ADD COLUMN mirror_in_use INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE files ADD COLUMN response_headers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE files ADD COLUMN ranges TEXT NOT NULL DEFAULT '';
    "#,
];

/// The schema version this build writes.
pub const CURRENT_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`CURRENT_VERSION`]; refuses a database from a newer ferryd.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<u32> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CURRENT_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the job store has schema version {version}, newer than this ferryd understands \
             ({CURRENT_VERSION}); run a newer ferryd or move the state directory aside"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
        tx.commit()?;
    }
    Ok(version)
}
