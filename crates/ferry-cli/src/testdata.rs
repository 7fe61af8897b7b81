//! Jobs and files made up for the unit tests of the command line (rendering, summaries).

use ferry_client::{FileInfo, JobError, JobInfo, JobState, Priority, Uuid};

/// A download job in `state` with one file of `total` bytes, `done` of them transferred.
pub fn job(name: &str, state: JobState, done: u64, total: Option<u64>) -> JobInfo {
    let id = Uuid::now_v7();
    JobInfo {
        id,
        display_name: name.into(),
        description: String::new(),
        job_type: Some(ferry_client::JobType::Download),
        priority: Some(Priority::Normal),
        state: Some(state),
        owner_uid: 0,
        bytes_total: total,
        bytes_transferred: done,
        files_total: 1,
        files_transferred: u32::from(state == JobState::Transferred),
        error: None,
        error_count: 0,
        created_unix_ms: id.get_timestamp().map_or(0, |t| {
            let (secs, nanos) = t.to_unix();
            (secs * 1000 + u64::from(nanos) / 1_000_000) as i64
        }),
        modified_unix_ms: 0,
        transferred_unix_ms: None,
        notify_flags: 3,
        notification_class: None,
        notify_command: Vec::new(),
        minimum_retry_delay_secs: 60,
        no_progress_timeout_secs: 60,
        max_transfer_time_secs: 0,
        partial: false,
        last_notification_error: String::new(),
        headers: Vec::new(),
        headers_write_only: false,
        auto_complete: false,
        insecure_tls: false,
        keep_going: false,
        credentials: None,
        proxy: "system".into(),
        ca_file: None,
        bandwidth_limit: 0,
        upload_protocol: None,
        reply_file: None,
        connections: 0,
        bytes_per_second: 0,
        umask: Some(0o022),
        peers: None,
        bytes_from_origin: 0,
        bytes_from_peers: 0,
        on_metered: None,
        waiting_for_unmetered: false,
        yielding: false,
        redirect_policy: Some(ferry_common::RedirectPolicy::AllowSilent),
        pinned_public_keys: Vec::new(),
        crl_file: None,
        client_certificate: None,
        client_key: None,
        proxy_credentials: None,
        max_download_size: 0,
        minimum_notification_interval_ms: 0,
        http_method: None,
        cost_flags: ferry_client::CostFlags::TRANSFER_UNRESTRICTED,
        cost_flags_set: false,
        ignore_congestion: false,
    }
}

/// `job` with the error `code`: `message`.
pub fn with_error(mut job: JobInfo, code: &str, message: &str) -> JobInfo {
    job.error = Some(JobError {
        context: Some(ferry_client::ErrorContext::RemoteFile),
        code: code.into(),
        message: message.into(),
        file_index: Some(0),
    });
    job
}

/// File `index` of `job`, going to `local_path`, `done` of `total` bytes there.
pub fn file(
    job: &JobInfo,
    index: u32,
    local_path: &str,
    done: u64,
    total: Option<u64>,
) -> FileInfo {
    FileInfo {
        job_id: job.id,
        index,
        remote_url: format!("https://example.test/{index}"),
        local_path: local_path.into(),
        bytes_total: total,
        bytes_transferred: done,
        completed: total == Some(done),
        temporary_path: format!("{local_path}.part"),
        expected_sha256: None,
        final_url: None,
        validated: None,
        bytes_from_origin: 0,
        bytes_from_peers: 0,
        mirrors: Vec::new(),
        url_in_use: format!("https://example.test/{index}"),
        response_headers: Vec::new(),
        ranges: Vec::new(),
        on_demand: false,
        filled_ranges: Vec::new(),
        download_position: 0,
    }
}
