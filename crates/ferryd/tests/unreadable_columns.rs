//! A stored column that cannot be read is never replaced by a default in silence (see the
//! module doc of `ferryd::store`): the store is written, a column corrupted with SQL, then
//! the store and the service are opened again.

use std::path::Path;
use std::sync::Arc;

use ferryd::config::Config;
use ferryd::model::{
    Credentials, ErrorContext, FileRecord, HandlerRecord, JobErrorRecord, JobRecord, JobState,
    JobType, Priority, ProxySetting, Segment,
};
use ferryd::service::{Service, ServiceError};
use ferryd::store::{Store, UNREADABLE_NOTIFY_COMMAND, UNREADABLE_OPTIONS};
use uuid::Uuid;

const OWNER: u32 = 4242;

fn job(name: &str, state: JobState) -> JobRecord {
    let mut j = JobRecord::new(name.into(), JobType::Download, Priority::Normal, OWNER);
    j.state = state;
    j.description = format!("{name}, described");
    j
}

fn file(job: &JobRecord, index: u32) -> FileRecord {
    FileRecord {
        job_id: job.id,
        index,
        remote_url: format!("https://example.org/{index}"),
        local_path: format!("/nonexistent/ferry-unreadable/{index}"),
        bytes_total: Some(1000),
        bytes_transferred: 300,
        completed: false,
        expected_sha256: None,
        final_url: None,
        validator: Some("\"v\"".into()),
        validated: None,
        segments: Vec::new(),
        peer: Default::default(),
        mirrors: Vec::new(),
        mirror_in_use: 0,
        response_headers: Vec::new(),
        ranges: Default::default(),
    }
}

async fn write(dir: &Path, jobs: &[(JobRecord, Vec<FileRecord>)], handlers: &[HandlerRecord]) {
    let store = Store::open(dir).unwrap();
    for (j, files) in jobs {
        Store::committed(store.put_job_and_files(j, files.clone()))
            .await
            .unwrap();
    }
    for h in handlers {
        Store::committed(store.put_handler(h)).await.unwrap();
    }
    store.close();
}

/// Runs one statement on the closed store, as someone (or something) editing it would.
fn corrupt(dir: &Path, sql: &str, id: impl rusqlite::ToSql) {
    let c = rusqlite::Connection::open(dir.join("ferry.db")).unwrap();
    assert_eq!(c.execute(sql, [id]).unwrap(), 1, "{sql}");
}

fn open(dir: &Path) -> Arc<Service> {
    Service::open(Config::default(), Store::open(dir).unwrap(), OWNER).unwrap()
}

fn error_of(svc: &Service, id: Uuid) -> JobErrorRecord {
    svc.get_job(OWNER, id)
        .unwrap()
        .job
        .error
        .expect("an error record")
}

async fn resume_refused(svc: &Arc<Service>, id: Uuid) -> String {
    match svc.resume(OWNER, id).await {
        Err(ServiceError::FailedPrecondition(m)) => m,
        other => panic!("resume of {id} should be refused, got {other:?}"),
    }
}

/// The row as stored: state, error code, options.
fn stored_row(dir: &Path, id: Uuid) -> (String, Option<String>, String) {
    let c = rusqlite::Connection::open(dir.join("ferry.db")).unwrap();
    c.query_row(
        "SELECT state, error_code, options FROM jobs WHERE id = ?1",
        [id.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[tokio::test]
async fn a_job_whose_options_cannot_be_read_is_loaded_in_error_and_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    // Queued: with defaults it would have been run at once, without its credentials.
    let mut bad = job("corrupted", JobState::Queued);
    bad.options.credentials = Some(Credentials::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    });
    bad.options.proxy = ProxySetting::Url("http://proxy:3128".into());
    let bad_files = vec![file(&bad, 0), file(&bad, 1)];
    let mut good = job("healthy", JobState::Suspended);
    good.created_ms += 1;
    good.options.ca_file = Some("/etc/ca.pem".into());
    let good_files = vec![file(&good, 0)];
    write(
        dir.path(),
        &[
            (bad.clone(), bad_files.clone()),
            (good.clone(), good_files.clone()),
        ],
        &[],
    )
    .await;
    corrupt(
        dir.path(),
        "UPDATE jobs SET options = '{not json' WHERE id = ?1",
        bad.id.to_string(),
    );

    let svc = open(dir.path());
    let view = svc.get_job(OWNER, bad.id).unwrap();
    assert_eq!(view.job.state, JobState::Error);
    let e = view.job.error.clone().unwrap();
    assert_eq!(e.context, ErrorContext::Daemon);
    assert_eq!(e.code, UNREADABLE_OPTIONS);
    assert_eq!(e.file_index, None);
    for part in [
        "column jobs.options",
        "could not be read: key must be a string at line 1 column 2",
        "credentials",
        "cancel the job",
        "create it again",
    ] {
        assert!(e.message.contains(part), "{part:?} not in {:?}", e.message);
    }
    // Everything but the options (now defaults) and the state is as stored.
    let mut expected = bad.clone();
    expected.state = JobState::Error;
    expected.options = Default::default();
    expected.error = Some(e.clone());
    assert_eq!(view.job, expected);
    let files: Vec<FileRecord> = svc
        .list_files(OWNER, bad.id)
        .unwrap()
        .into_iter()
        .map(|f| f.file)
        .collect();
    assert_eq!(files, bad_files);
    // The healthy job is untouched.
    assert_eq!(svc.get_job(OWNER, good.id).unwrap().job, good);

    // Resume says why it is refused.
    let refused = resume_refused(&svc, bad.id).await;
    assert!(refused.contains("cannot be resumed"), "{refused}");
    assert!(refused.contains("jobs.options"), "{refused}");
    assert!(refused.contains("cancel the job"), "{refused}");
    assert_eq!(
        svc.get_job(OWNER, bad.id).unwrap().job.state,
        JobState::Error
    );

    // The new state is stored; the unreadable column is left as it was.
    svc.close();
    assert_eq!(
        stored_row(dir.path(), bad.id),
        (
            "error".into(),
            Some(UNREADABLE_OPTIONS.into()),
            "{not json".into()
        )
    );
    drop(svc);

    // The next start finds it the same way, and so does one after the job was rewritten
    // (its options column then holds the defaults, its error record stays).
    let svc = open(dir.path());
    assert_eq!(error_of(&svc, bad.id).code, UNREADABLE_OPTIONS);
    svc.set_properties(
        OWNER,
        bad.id,
        ferryd::service::JobChanges {
            display_name: Some("renamed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    svc.close();
    drop(svc);
    let svc = open(dir.path());
    let view = svc.get_job(OWNER, bad.id).unwrap();
    assert_eq!(view.job.display_name, "renamed");
    assert_eq!(view.job.state, JobState::Error);
    resume_refused(&svc, bad.id).await;
    // Cancelling is what the message asks for, and it works.
    svc.cancel(OWNER, bad.id).await.unwrap();
    assert_eq!(
        svc.get_job(OWNER, bad.id).unwrap().job.state,
        JobState::Cancelled
    );
}

#[tokio::test]
async fn options_that_parse_but_cannot_be_used_are_unreadable_and_no_secret_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let tus = job("unknown protocol", JobState::Suspended);
    let mut shaped = job("wrong shape", JobState::TransientError);
    shaped.created_ms += 1;
    shaped.retry_at_ms = Some(shaped.created_ms + 60_000);
    write(
        dir.path(),
        &[
            (tus.clone(), vec![file(&tus, 0)]),
            (shaped.clone(), vec![file(&shaped, 0)]),
        ],
        &[],
    )
    .await;
    corrupt(
        dir.path(),
        r#"UPDATE jobs SET options = '{"upload_protocol": "ftp"}' WHERE id = ?1"#,
        tus.id.to_string(),
    );
    // Valid JSON of the wrong shape, quoting a value that may be a secret.
    corrupt(
        dir.path(),
        r#"UPDATE jobs SET options = '{"bandwidth_limit": "hunter2"}' WHERE id = ?1"#,
        shaped.id.to_string(),
    );
    let svc = open(dir.path());

    let e = error_of(&svc, tus.id);
    assert_eq!(e.code, UNREADABLE_OPTIONS);
    assert!(
        e.message.contains("unknown upload protocol 'ftp'"),
        "{}",
        e.message
    );
    resume_refused(&svc, tus.id).await;

    let view = svc.get_job(OWNER, shaped.id).unwrap();
    assert_eq!(view.job.state, JobState::Error);
    assert_eq!(view.job.retry_at_ms, None, "no retry is due any more");
    let e = view.job.error.unwrap();
    assert_eq!(e.code, UNREADABLE_OPTIONS);
    assert!(
        e.message
            .contains("invalid type: string \"…\", expected u64"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("hunter2"), "{}", e.message);
    resume_refused(&svc, shaped.id).await;
}

#[tokio::test]
async fn an_unreadable_notify_command_is_refused_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job("notify", JobState::Suspended);
    j.notify_command = vec!["/usr/bin/logger".into(), "done".into()];
    write(dir.path(), &[(j.clone(), vec![file(&j, 0)])], &[]).await;
    corrupt(
        dir.path(),
        "UPDATE jobs SET notify_command = '[\"/usr/bin/logger\", ' WHERE id = ?1",
        j.id.to_string(),
    );
    let svc = open(dir.path());
    let view = svc.get_job(OWNER, j.id).unwrap();
    assert_eq!(view.job.state, JobState::Error);
    assert!(view.job.notify_command.is_empty());
    let e = view.job.error.unwrap();
    assert_eq!(e.code, UNREADABLE_NOTIFY_COMMAND);
    assert!(
        e.message.contains("column jobs.notify_command"),
        "{}",
        e.message
    );
    assert!(e.message.contains("EOF while parsing"), "{}", e.message);
    let refused = resume_refused(&svc, j.id).await;
    assert!(refused.contains("jobs.notify_command"), "{refused}");
}

#[tokio::test]
async fn a_final_job_keeps_its_state_and_gets_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job("done", JobState::Acknowledged);
    j.options.headers = vec![("X-A".into(), "b".into())];
    let mut f = file(&j, 0);
    f.completed = true;
    f.bytes_transferred = 1000;
    write(dir.path(), &[(j.clone(), vec![f])], &[]).await;
    corrupt(
        dir.path(),
        "UPDATE jobs SET options = 'null' WHERE id = ?1",
        j.id.to_string(),
    );
    let svc = open(dir.path());
    // Final jobs are archived at load (compact): the record survives that too.
    assert_eq!(
        svc.archived_state(OWNER, j.id),
        Some(JobState::Acknowledged)
    );
    let e = error_of(&svc, j.id);
    assert_eq!(e.code, UNREADABLE_OPTIONS);
    assert!(
        e.message
            .contains("the job is acknowledged, so nothing uses them"),
        "{}",
        e.message
    );
    svc.close();
    assert_eq!(
        stored_row(dir.path(), j.id),
        (
            "acknowledged".into(),
            Some(UNREADABLE_OPTIONS.into()),
            "null".into()
        )
    );
}

#[tokio::test]
async fn unreadable_segments_drop_the_checkpoint_of_an_incomplete_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let j = job("segmented", JobState::Suspended);
    let segments = vec![
        Segment {
            start: 0,
            end: 500,
            done: 200,
        },
        Segment {
            start: 500,
            end: 1000,
            done: 100,
        },
    ];
    let mut f0 = file(&j, 0);
    f0.segments = segments.clone();
    let mut f1 = file(&j, 1);
    f1.segments = segments;
    f1.completed = true;
    f1.bytes_transferred = 1000;
    write(
        dir.path(),
        &[(j.clone(), vec![f0.clone(), f1.clone()])],
        &[],
    )
    .await;
    let c = rusqlite::Connection::open(dir.path().join("ferry.db")).unwrap();
    c.execute(
        "UPDATE files SET segments = '[{\"start\": 0' WHERE job_id = ?1",
        [j.id.to_string()],
    )
    .unwrap();
    drop(c);

    let svc = open(dir.path());
    let files: Vec<FileRecord> = svc
        .list_files(OWNER, j.id)
        .unwrap()
        .into_iter()
        .map(|f| f.file)
        .collect();
    // 300 bytes scattered over two segments are not the first 300 bytes of the file.
    let mut restarted = f0;
    restarted.segments = Vec::new();
    restarted.bytes_transferred = 0;
    let mut done = f1;
    done.segments = Vec::new();
    assert_eq!(files, vec![restarted, done]);
    // The job itself is fine.
    let view = svc.get_job(OWNER, j.id).unwrap();
    assert_eq!(view.job, j);
}

#[tokio::test]
async fn a_handler_whose_command_cannot_be_read_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let h = |n: u128, argv: &[&str]| HandlerRecord {
        class: Uuid::from_u128(n),
        owner_uid: OWNER,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        workdir: None,
        registered_ms: n as i64,
    };
    let (broken, fine) = (h(1, &["/bin/a"]), h(2, &["/bin/b", "x"]));
    write(dir.path(), &[], &[broken.clone(), fine.clone()]).await;
    corrupt(
        dir.path(),
        "UPDATE handlers SET argv = '{' WHERE class = ?1",
        broken.class.to_string(),
    );
    let svc = open(dir.path());
    assert_eq!(svc.handlers(OWNER), vec![fine]);
}

#[tokio::test]
async fn an_unknown_error_context_keeps_the_record_and_does_not_hold_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job("failed", JobState::Error);
    j.error = Some(JobErrorRecord {
        context: ErrorContext::RemoteFile,
        code: "http_404".into(),
        message: "https://example.org/0: 404 Not Found".into(),
        file_index: Some(0),
        time_ms: 1234,
    });
    write(dir.path(), &[(j.clone(), vec![file(&j, 0)])], &[]).await;
    corrupt(
        dir.path(),
        "UPDATE jobs SET error_context = 'cosmic_ray' WHERE id = ?1",
        j.id.to_string(),
    );
    let svc = open(dir.path());
    let e = error_of(&svc, j.id);
    assert_eq!(
        e,
        JobErrorRecord {
            context: ErrorContext::Daemon,
            code: "http_404".into(),
            message: "https://example.org/0: 404 Not Found (its stored context, column \
                      jobs.error_context, could not be read: unknown error context 'cosmic_ray' \
                      (expected one of: local_file, remote_file, transport, daemon, validation, \
                      notification, authentication))"
                .into(),
            file_index: Some(0),
            time_ms: 1234,
        }
    );
    // Only informative: resume clears it and queues the job.
    let view = svc.resume(OWNER, j.id).await.unwrap();
    assert_eq!(view.job.state, JobState::Queued);
    assert_eq!(view.job.error, None);
}

#[tokio::test]
async fn validating_a_file_cannot_replace_the_record_that_holds_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let bad = job("transferred, then corrupted", JobState::Transferred);
    let mut done = file(&bad, 0);
    done.completed = true;
    done.bytes_transferred = 1000;
    write(dir.path(), &[(bad.clone(), vec![done])], &[]).await;
    corrupt(
        dir.path(),
        "UPDATE jobs SET options = '{not json' WHERE id = ?1",
        bad.id.to_string(),
    );
    let svc = open(dir.path());
    assert_eq!(error_of(&svc, bad.id).code, UNREADABLE_OPTIONS);
    // A rejected file would put the job in `error` with a validation record in place of
    // the one that keeps it from running on default options.
    for valid in [false, true] {
        match svc.set_validation_state(OWNER, bad.id, 0, valid).await {
            Err(ServiceError::FailedPrecondition(m)) => {
                assert!(m.contains("jobs.options"), "{m}")
            }
            other => panic!("validation should be refused, got {other:?}"),
        }
    }
    assert_eq!(error_of(&svc, bad.id).code, UNREADABLE_OPTIONS);
    resume_refused(&svc, bad.id).await;
    svc.close();
}
