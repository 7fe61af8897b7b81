//! Stores written by older ferryd builds, one per earlier schema version
//! (`tests/fixtures/store-vN.db`, see the README there), open with this build: every job,
//! file, option, handler and undelivered notification comes back exactly as it was
//! written, and the schema is brought to the current version.
//!
//! `expected(version)` below repeats the values the fixture writer used, leaving out what
//! that version could not store (options from 2 on, segments and connections from 3,
//! outbox entries from 2: version 1 had the table but nothing wrote to it).

use std::path::Path;

use ferryd::config::Config;
use ferryd::model::{
    now_ms, Credentials, ErrorContext, FileRecord, HandlerRecord, JobErrorRecord, JobRecord,
    JobState, JobType, NotifyFlags, NotifyMethod, OutboxRecord, Priority, ProxySetting, Segment,
};
use ferryd::service::{CallbackMethod, ObjRef, Service};
use ferryd::store::{schema, Store};
use uuid::Uuid;

const T: i64 = 1_763_800_000_000;
const A: u32 = 1000;
const B: u32 = 1001;
const C1: u128 = 0xc1c1_c1c1_0000_4000_8000_0000_0000_0001;
const C2: u128 = 0xc2c2_c2c2_0000_4000_8000_0000_0000_0002;
const MIB: u64 = 1 << 20;
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn id(n: u32) -> Uuid {
    Uuid::from_u128(0x0196_a000_0000_7000_8000_0000_0000_0000 | n as u128)
}

fn job(n: u32, name: &str, t: JobType, p: Priority, s: JobState, owner: u32) -> JobRecord {
    let mut j = JobRecord::new(name.into(), t, p, owner);
    j.id = id(n);
    j.state = s;
    let at = T + n as i64 * 1000;
    (j.created_ms, j.modified_ms, j.last_progress_ms) = (at, at + 900, at + 800);
    j
}

fn file(j: &JobRecord, idx: u32, url: &str, path: &str) -> FileRecord {
    FileRecord {
        job_id: j.id,
        index: idx,
        remote_url: url.into(),
        local_path: path.into(),
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

struct Expected {
    jobs: Vec<(JobRecord, Vec<FileRecord>)>,
    handlers: Vec<HandlerRecord>,
    outbox: Vec<OutboxRecord>,
}

/// What the fixture of schema `version` holds.
fn expected(version: u32) -> Expected {
    use JobState::*;
    let mut v = Vec::new();

    let mut j = job(
        1,
        "suspended download",
        JobType::Download,
        Priority::Normal,
        Suspended,
        A,
    );
    j.description = "two files, the first a quarter done".into();
    let mut f0 = file(
        &j,
        0,
        "https://example.org/data/a.iso",
        "/srv/ferry-fixture/a.iso",
    );
    f0.bytes_total = Some(MIB);
    f0.bytes_transferred = 256 * 1024;
    f0.expected_sha256 = Some(SHA.into());
    f0.final_url = Some("https://mirror.example.org/data/a.iso".into());
    f0.validator = Some("\"a-etag-1\"".into());
    let f1 = file(
        &j,
        1,
        "https://example.org/data/b.txt",
        "/srv/ferry-fixture/b.txt",
    );
    v.push((j, vec![f0, f1]));

    let mut j = job(
        2,
        "queued download",
        JobType::Download,
        Priority::High,
        Queued,
        A,
    );
    j.notify_flags = NotifyFlags::JOB_TRANSFERRED
        | NotifyFlags::JOB_ERROR
        | NotifyFlags::JOB_MODIFICATION
        | NotifyFlags::FILE_TRANSFERRED;
    j.notify_command = vec![
        "/usr/bin/logger".into(),
        "-t".into(),
        "ferry".into(),
        "job done".into(),
    ];
    j.max_transfer_time_secs = 7200;
    if version >= 2 {
        j.options.headers = vec![
            ("X-Trace".into(), "fixture-2".into()),
            ("Accept-Encoding".into(), "gzip".into()),
        ];
        j.options.credentials = Some(Credentials::Basic {
            user: "alice".into(),
            password: "s3cret".into(),
        });
        j.options.proxy = ProxySetting::Url("http://proxy.example.org:3128".into());
        j.options.ca_file = Some("/etc/ferry/ca.pem".into());
        j.options.bandwidth_limit = 1_000_000;
        j.options.first_active_ms = Some(T + 2100);
    }
    let f0 = file(
        &j,
        0,
        "https://example.org/queued.bin",
        "/srv/ferry-fixture/queued.bin",
    );
    v.push((j, vec![f0]));

    let mut j = job(
        3,
        "connecting download",
        JobType::Download,
        Priority::Low,
        Connecting,
        A,
    );
    j.notification_class = Some(Uuid::from_u128(C1));
    j.notify_flags = NotifyFlags::JOB_TRANSFERRED;
    if version >= 2 {
        j.options.credentials = Some(Credentials::Bearer {
            token: "tok-3".into(),
        });
        j.options.proxy = ProxySetting::None;
        j.options.first_active_ms = Some(T + 3100);
    }
    let mut f0 = file(
        &j,
        0,
        "http://127.0.0.1:9/small",
        "/srv/ferry-fixture/small",
    );
    f0.bytes_total = Some(4096);
    v.push((j, vec![f0]));

    let mut j = job(
        4,
        "transferring download",
        JobType::Download,
        Priority::Foreground,
        Transferring,
        A,
    );
    j.min_retry_delay_secs = 2;
    j.no_progress_timeout_secs = 60;
    if version >= 2 {
        j.options.first_active_ms = Some(T + 4100);
    }
    if version >= 3 {
        j.options.connections = 4;
    }
    let mut f0 = file(
        &j,
        0,
        "https://example.org/big.img",
        "/srv/ferry-fixture/big.img",
    );
    f0.bytes_total = Some(64 * MIB);
    f0.validator = Some("\"big-etag\"".into());
    f0.final_url = Some("https://cdn.example.org/big.img".into());
    f0.bytes_transferred = 8 * MIB;
    if version >= 3 {
        let seg = |start, end, done| Segment { start, end, done };
        f0.segments = vec![
            seg(0, 16 * MIB, 16 * MIB),
            seg(16 * MIB, 32 * MIB, 5_000_000),
            seg(32 * MIB, 48 * MIB, 0),
            seg(48 * MIB, 64 * MIB, 1_000_000),
        ];
        f0.bytes_transferred = 16 * MIB + 5_000_000 + 1_000_000;
    }
    v.push((j, vec![f0]));

    let mut j = job(
        5,
        "retrying download",
        JobType::Download,
        Priority::Normal,
        TransientError,
        A,
    );
    j.retry_at_ms = Some(T + 5900 + 30_000);
    j.error = Some(JobErrorRecord {
        context: ErrorContext::Transport,
        code: "connect".into(),
        message: "https://example.org/flaky: connection refused".into(),
        file_index: Some(0),
        time_ms: T + 5900,
    });
    j.error_count = 2;
    j.min_retry_delay_secs = 30;
    j.no_progress_timeout_secs = 3600;
    let mut f0 = file(
        &j,
        0,
        "https://example.org/flaky",
        "/srv/ferry-fixture/flaky",
    );
    f0.bytes_total = Some(10_000);
    f0.bytes_transferred = 1234;
    f0.validator = Some("Sat, 01 Nov 2025 10:00:00 GMT".into());
    v.push((j, vec![f0]));

    let mut j = job(
        6,
        "failed download",
        JobType::Download,
        Priority::Normal,
        Error,
        A,
    );
    j.error = Some(JobErrorRecord {
        context: ErrorContext::RemoteFile,
        code: "http_404".into(),
        message: "https://example.org/missing: 404 Not Found".into(),
        file_index: Some(1),
        time_ms: T + 6800,
    });
    j.error_count = 1;
    j.last_notification_error = "handler exited with status 1".into();
    let mut f0 = file(
        &j,
        0,
        "https://example.org/present",
        "/srv/ferry-fixture/present",
    );
    f0.bytes_total = Some(100);
    f0.bytes_transferred = 100;
    f0.completed = true;
    let f1 = file(
        &j,
        1,
        "https://example.org/missing",
        "/srv/ferry-fixture/missing",
    );
    v.push((j, vec![f0, f1]));

    let mut j = job(
        7,
        "transferred upload",
        JobType::Upload,
        Priority::Normal,
        Transferred,
        A,
    );
    j.transferred_ms = Some(T + 7800);
    j.notify_flags =
        NotifyFlags::JOB_TRANSFERRED | NotifyFlags::JOB_ERROR | NotifyFlags::FILE_TRANSFERRED;
    if version >= 2 {
        j.options.upload_protocol = Some("tus".into());
        j.options.credentials = Some(Credentials::Bearer {
            token: "upload-token".into(),
        });
        j.options.headers = vec![("X-Upload-Tag".into(), "7".into())];
        j.options.first_active_ms = Some(T + 7100);
    }
    let mut f0 = file(
        &j,
        0,
        "https://uploads.example.org/files/",
        "/srv/ferry-fixture/upload.bin",
    );
    f0.bytes_total = Some(2048);
    f0.bytes_transferred = 2048;
    f0.completed = true;
    f0.final_url = Some("https://uploads.example.org/files/abc123".into());
    f0.validator = Some("2048:1763799000000".into());
    v.push((j, vec![f0]));

    let mut j = job(
        8,
        "upload with reply",
        JobType::UploadReply,
        Priority::Normal,
        Acknowledged,
        A,
    );
    j.transferred_ms = Some(T + 8700);
    if version >= 2 {
        j.options.upload_protocol = Some("put".into());
        j.options.reply_file = Some("/srv/ferry-fixture/replies/8.reply".into());
        j.options.first_active_ms = Some(T + 8100);
    }
    let mut f0 = file(
        &j,
        0,
        "https://api.example.org/submit",
        "/srv/ferry-fixture/form.json",
    );
    f0.bytes_total = Some(512);
    f0.bytes_transferred = 512;
    f0.completed = true;
    v.push((j, vec![f0]));

    let mut j = job(
        9,
        "cancelled download",
        JobType::Download,
        Priority::Low,
        Cancelled,
        A,
    );
    j.max_transfer_time_secs = 600;
    let mut f0 = file(
        &j,
        0,
        "https://example.org/abandoned",
        "/srv/ferry-fixture/abandoned",
    );
    f0.bytes_total = Some(MIB);
    f0.bytes_transferred = 4096;
    f0.validator = Some("\"abandoned\"".into());
    v.push((j, vec![f0]));

    let mut j = job(
        10,
        "acknowledged partial download",
        JobType::Download,
        Priority::Normal,
        Acknowledged,
        A,
    );
    j.transferred_ms = Some(T + 10_700);
    j.partial = true;
    let mut f0 = file(&j, 0, "https://example.org/good", "/srv/ferry-fixture/good");
    f0.bytes_total = Some(10);
    f0.bytes_transferred = 10;
    f0.completed = true;
    f0.expected_sha256 = Some(SHA.into());
    f0.validated = Some(true);
    let mut f1 = file(&j, 1, "https://example.org/bad", "/srv/ferry-fixture/bad");
    f1.bytes_total = Some(20);
    f1.bytes_transferred = 20;
    f1.completed = true;
    f1.validated = Some(false);
    v.push((j, vec![f0, f1]));

    let mut j = job(
        11,
        "another user's job",
        JobType::Download,
        Priority::Normal,
        Suspended,
        B,
    );
    j.notify_flags = NotifyFlags::DISABLE;
    let f0 = file(&j, 0, "ftp-less://nowhere", "/srv/ferry-fixture/other");
    v.push((j, vec![f0]));

    let handlers = vec![
        HandlerRecord {
            class: Uuid::from_u128(C1),
            owner_uid: A,
            argv: vec![
                "/usr/local/bin/ferry-handler".into(),
                "--class".into(),
                "c1".into(),
            ],
            workdir: Some("/var/tmp".into()),
            registered_ms: T + 100,
        },
        HandlerRecord {
            class: Uuid::from_u128(C2),
            owner_uid: B,
            argv: vec!["/usr/bin/true".into()],
            workdir: None,
            registered_ms: T + 200,
        },
    ];

    let outbox = if version >= 2 {
        vec![
            OutboxRecord {
                id: 1,
                job_id: id(6),
                method: NotifyMethod::JobError,
                file_index: None,
                created_ms: T + 6800,
                attempts: 1,
                next_attempt_ms: T + 6800 + 60_000,
                last_error: "handler exited with status 1".into(),
            },
            OutboxRecord {
                id: 2,
                job_id: id(7),
                method: NotifyMethod::FileTransferred,
                file_index: Some(0),
                created_ms: T + 7700,
                attempts: 3,
                next_attempt_ms: T + 7700 + 180_000,
                last_error: "callback timed out after 120 s".into(),
            },
            OutboxRecord {
                id: 3,
                job_id: id(7),
                method: NotifyMethod::JobTransferred,
                file_index: None,
                created_ms: T + 7800,
                attempts: 0,
                next_attempt_ms: T + 7800,
                last_error: String::new(),
            },
        ]
    } else {
        Vec::new()
    };
    Expected {
        jobs: v,
        handlers,
        outbox,
    }
}

fn user_version(db: &Path) -> u32 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// Loads `store` and compares it with `want`, its jobs changed by `adjust` first.
fn assert_store_holds(store: &Store, want: &Expected, adjust: impl Fn(&mut JobRecord)) {
    let snap = store.load().unwrap();
    let jobs: Vec<JobRecord> = want
        .jobs
        .iter()
        .map(|(j, _)| {
            let mut j = j.clone();
            adjust(&mut j);
            j
        })
        .collect();
    // Final jobs come as an index (read in full with load_job); put them back in order.
    let mut stored: Vec<(JobRecord, Vec<FileRecord>)> = snap
        .jobs
        .iter()
        .map(|j| {
            let files = snap
                .files
                .iter()
                .filter(|f| f.job_id == j.id)
                .cloned()
                .collect();
            (j.clone(), files)
        })
        .collect();
    for row in &snap.archived {
        assert!(row.state.is_final(), "{row:?}");
        let (job, files) = store
            .load_job(row.id)
            .unwrap()
            .expect("an archived job is stored");
        assert_eq!(
            (row.owner_uid, row.state, row.created_ms),
            (job.owner_uid, job.state, job.created_ms)
        );
        stored.push((job, files));
    }
    stored.sort_by_key(|(j, _)| (j.created_ms, j.id));
    assert_eq!(stored.len(), jobs.len());
    for ((got, _), want) in stored.iter().zip(&jobs) {
        assert_eq!(got, want);
    }
    let files: Vec<FileRecord> = want.jobs.iter().flat_map(|(_, f)| f.clone()).collect();
    let got_files: Vec<FileRecord> = stored.into_iter().flat_map(|(_, f)| f).collect();
    assert_eq!(got_files, files);
    let mut handlers = snap.handlers;
    handlers.sort_by_key(|h| h.registered_ms);
    assert_eq!(handlers, want.handlers);
    assert_eq!(snap.outbox, want.outbox);
}

async fn upgrade(version: u32) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("store-v{version}.db"));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ferry.db");
    std::fs::copy(&fixture, &db).unwrap();
    assert_eq!(user_version(&db), version, "the fixture's own version");
    let want = expected(version);

    // The store: migrated, and every row as written.
    let store = Store::open(dir.path()).unwrap();
    // Version 6 (a file's mirrors, its last response's headers): `store-v5.db` was
    // written by the ferryd of 759bc62, as the fixtures' README says.
    assert_eq!(
        schema::CURRENT_VERSION,
        6,
        "a new version needs a fixture of the one before"
    );
    let now_version: u32 = store
        .read(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(now_version, schema::CURRENT_VERSION);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_store_holds(&store, &want, |_| {});
    // Version 5 (peer caching): files count no bytes from peers (the `peer` defaults
    // above) and the cache index is there, empty.
    assert!(store.load_cache_entries().unwrap().is_empty());

    // The service: jobs as clients see them.
    let before_open = now_ms();
    let svc = Service::open(Config::default(), store, A).unwrap();
    assert_eq!(svc.job_count(), want.jobs.len());
    for (j, files) in &want.jobs {
        let view = svc.get_job(j.owner_uid, j.id).unwrap();
        let mut expected = j.clone();
        match j.state {
            // A transfer cut off by the stop is queued again; a retry keeps its time.
            JobState::Queued | JobState::Connecting | JobState::Transferring => {
                expected.state = JobState::Queued;
                expected.retry_at_ms = None;
                assert!(view.job.modified_ms >= before_open);
                expected.modified_ms = view.job.modified_ms;
            }
            JobState::TransientError => {
                assert!(view.job.modified_ms >= before_open);
                expected.modified_ms = view.job.modified_ms;
            }
            _ => {}
        }
        assert_eq!(view.job, expected);
        let got: Vec<(FileRecord, u64)> = svc
            .list_files(j.owner_uid, j.id)
            .unwrap()
            .into_iter()
            .map(|f| (f.file, f.bytes_transferred))
            .collect();
        let want_files: Vec<(FileRecord, u64)> = files
            .iter()
            .map(|f| (f.clone(), f.bytes_transferred))
            .collect();
        assert_eq!(got, want_files);
        // Final jobs with nothing left to notify are archived (the compact encoding).
        let archived = j.state.is_final().then_some(j.state);
        assert_eq!(svc.archived_state(j.owner_uid, j.id), archived);
        // The other owner sees nothing of it.
        let other = if j.owner_uid == A { B } else { A };
        assert!(svc.get_job(other, j.id).is_err());
    }
    assert_eq!(svc.handlers(A), want.handlers[..1]);
    assert_eq!(svc.handlers(B), want.handlers[1..]);

    // The service took the undelivered notifications: a callback object set on job 7 gets
    // its oldest one at once. It is not answered, so it stays in the outbox.
    if let Some(oldest) = want.outbox.iter().find(|o| o.job_id == id(7)) {
        assert_eq!(oldest.method, NotifyMethod::FileTransferred);
        let (tx, mut calls) = tokio::sync::mpsc::channel(4);
        let channel = svc.open_callback_channel(A, tx);
        let object = ObjRef {
            channel: channel.id,
            object: 77,
        };
        svc.set_notify_interface(A, id(7), Some(object)).unwrap();
        let call = tokio::time::timeout(std::time::Duration::from_secs(30), calls.recv())
            .await
            .expect("the pending notification is delivered to the new callback object")
            .unwrap();
        assert_eq!(call.object_id, 77);
        assert_eq!(call.method, CallbackMethod::FileTransferred);
        let (job7, files7) = &want.jobs[6];
        assert_eq!(call.job.job, *job7);
        assert_eq!(call.file.map(|f| f.file), Some(files7[0].clone()));
    }

    // What the service wrote back (the requeued jobs) is what it shows; nothing else
    // changed: the undelivered notifications are still there for the next delivery.
    let requeued: Vec<(Uuid, i64)> = [3, 4]
        .iter()
        .map(|n| (id(*n), svc.get_job(A, id(*n)).unwrap().job.modified_ms))
        .collect();
    svc.close();
    let again = Store::open(dir.path()).unwrap();
    assert_store_holds(&again, &want, |j| {
        if let Some((_, modified)) = requeued.iter().find(|(id, _)| *id == j.id) {
            j.state = JobState::Queued;
            j.modified_ms = *modified;
        }
    });
    again.close();
}

#[tokio::test]
async fn schema_upgrade_from_v1() {
    upgrade(1).await;
}

#[tokio::test]
async fn schema_upgrade_from_v2() {
    upgrade(2).await;
}

#[tokio::test]
async fn schema_upgrade_from_v3() {
    upgrade(3).await;
}

#[tokio::test]
async fn schema_upgrade_from_v4() {
    upgrade(4).await;
}

#[tokio::test]
async fn schema_upgrade_from_v5() {
    // Version 6 (ranges): every file of an older store is a whole file (the defaults).
    upgrade(5).await;
}

/// The system-wide daemon's single store of an earlier version split into one store per
/// user (privilege separation): each holds exactly its owner's jobs, files, handlers and
/// undelivered notifications, as written, at the current schema.
fn split(version: u32) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("store-v{version}.db"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&fixture, dir.path().join("ferry.db")).unwrap();
    let want = expected(version);
    let made = ferryd::store::split_by_owner(dir.path(), |uid| {
        let d = dir.path().join("users").join(uid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        d
    })
    .unwrap();
    let uids: Vec<u32> = made.iter().map(|(u, _)| *u).collect();
    assert_eq!(uids, vec![A, B], "one store per owner");
    for (uid, path) in made {
        assert_eq!(user_version(&path), schema::CURRENT_VERSION);
        let mine = Expected {
            jobs: want
                .jobs
                .iter()
                .filter(|(j, _)| j.owner_uid == uid)
                .cloned()
                .collect(),
            handlers: want
                .handlers
                .iter()
                .filter(|h| h.owner_uid == uid)
                .cloned()
                .collect(),
            outbox: want
                .outbox
                .iter()
                .filter(|o| {
                    want.jobs
                        .iter()
                        .any(|(j, _)| j.id == o.job_id && j.owner_uid == uid)
                })
                .cloned()
                .collect(),
        };
        assert!(!mine.jobs.is_empty(), "uid {uid} has jobs in the fixture");
        let store = Store::open(path.parent().unwrap()).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        assert_store_holds(&store, &mine, |_| {});
        store.close();
    }
}

#[test]
fn schema_upgrade_split_by_owner_from_v1_to_v5() {
    for version in 1..=5 {
        split(version);
    }
}
