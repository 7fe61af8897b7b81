//! tus 1.0 resumable uploads, upload-reply jobs and https with a private CA, through the
//! public interface against the local test server (`cargo test tus` runs the tus tests).

mod common;
use common::{manager, wait_done};

use std::time::Duration;

use ferry_client::{ErrorContext, Job, JobProperties, JobState, JobType, Manager, NewJob};
use ferry_testkit::{random_bytes, sha256_hex, wait_until, Fault, TestEnv, TestServer};

const DEADLINE: Duration = Duration::from_secs(120);

/// The path part of an absolute URL.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.find('/')
        .map(|i| rest[i..].to_string())
        .unwrap_or_default()
}

/// The `Upload-Offset` of every `PATCH` the server received for the upload at `path`.
fn patch_offsets(server: &TestServer, path: &str) -> Vec<u64> {
    server
        .requests(path)
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.header("upload-offset").unwrap().parse().unwrap())
        .collect()
}

async fn upload_job(m: &Manager, name: &str, job_type: JobType, protocol: &str) -> Job {
    m.create_job_with(NewJob {
        job_type,
        ..NewJob::upload(name, protocol)
    })
    .await
    .unwrap()
}

async fn fast_retries(job: &Job) {
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_upload_interrupted_twice_resumes_from_the_server_offset() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.enable_tus("/files/");
    // Both interruptions hit the next PATCH under the prefix: the connection is cut after
    // 700 000 bytes of the first PATCH's body, then after 900 000 more of the second.
    server.push_fault("/files/", Fault::CutAfter(700_000));
    server.push_fault("/files/", Fault::CutAfter(900_000));
    let m = manager(&env).await;
    let data = random_bytes(3 << 20, 21);
    let src = env.files.join("tus.bin");
    std::fs::write(&src, &data).unwrap();
    let job = upload_job(&m, "tus", JobType::Upload, "tus").await;
    fast_retries(&job).await;
    job.add_file(&server.url("/files/"), src.to_str().unwrap())
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert!(
        info.error_count >= 2,
        "two interruptions were counted: {info:?}"
    );

    let uploads = server.tus_uploads();
    assert_eq!(uploads.len(), 1, "one upload, created once: {uploads:?}");
    let (location, offset, length, stored) = &uploads[0];
    assert_eq!((*offset, *length), (data.len() as u64, data.len() as u64));
    assert_eq!(sha256_hex(stored), sha256_hex(&data));
    // Each PATCH after an interruption started where the server said it stood.
    let offsets = patch_offsets(&server, &path_of(location));
    assert_eq!(offsets, vec![0, 700_000, 1_600_000], "PATCH offsets");
    let heads = server
        .requests(&path_of(location))
        .iter()
        .filter(|r| r.method == "HEAD")
        .count();
    assert!(
        heads >= 3,
        "the offset was asked before each PATCH ({heads})"
    );
    assert_eq!(job.complete().await.unwrap().files_committed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_upload_continues_after_the_daemon_is_killed_mid_patch() {
    let env = TestEnv::new();
    let mut daemon = env.start_daemon();
    let server = TestServer::start();
    server.enable_tus("/files/");
    server.push_fault("/files/", Fault::StallAfter(1 << 20));
    let m = manager(&env).await;
    let data = random_bytes(8 << 20, 22);
    let src = env.files.join("tus-kill.bin");
    std::fs::write(&src, &data).unwrap();
    let job = upload_job(&m, "tus-kill", JobType::Upload, "tus").await;
    job.add_file(&server.url("/files/"), src.to_str().unwrap())
        .await
        .unwrap();
    job.resume().await.unwrap();
    // Wait until the server holds the first MiB, then kill the daemon while it is stalled.
    let location = wait_until(DEADLINE, "the server holds 1 MiB", || {
        server
            .tus_uploads()
            .first()
            .filter(|u| u.1 == 1 << 20)
            .map(|u| u.0.clone())
    });
    // The upload URL is recorded before the daemon dies (checkpointed every second).
    let id = job.id();
    tokio::time::timeout(DEADLINE, async {
        while job.files().await.unwrap()[0].final_url.as_deref() != Some(location.as_str()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the upload URL is stored");
    drop(job);
    drop(m);
    daemon.kill9();
    // The stalled request stays stalled: the server holds exactly the first MiB, whatever
    // the killed connection still had in flight.
    let _d = env.start_daemon();
    let m = manager(&env).await;
    let job = m.job(id).await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    let uploads = server.tus_uploads();
    assert_eq!(
        uploads.len(),
        1,
        "the restarted daemon continued the same upload"
    );
    assert_eq!(sha256_hex(&uploads[0].3), sha256_hex(&data));
    // The restarted daemon asked for the offset and continued from there.
    let offsets = patch_offsets(&server, &path_of(&location));
    assert_eq!(offsets, vec![0, 1 << 20], "PATCH offsets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_upload_recreated_when_the_server_forgot_it() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.enable_tus("/files/");
    server.push_fault("/files/", Fault::CutAfter(500_000));
    let m = manager(&env).await;
    let data = random_bytes(2 << 20, 23);
    let src = env.files.join("tus-forgot.bin");
    std::fs::write(&src, &data).unwrap();
    let job = upload_job(&m, "tus-forgot", JobType::Upload, "tus").await;
    job.add_file(&server.url("/files/"), src.to_str().unwrap())
        .await
        .unwrap();
    // Hold the retry until the server has forgotten the first upload.
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let first = wait_until(DEADLINE, "the first upload is cut", || {
        server
            .tus_uploads()
            .first()
            .filter(|u| u.1 == 500_000)
            .map(|u| u.0.clone())
    });
    tokio::time::timeout(DEADLINE, async {
        while job.info().await.unwrap().state() != JobState::TransientError {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cut makes the job a transient error");
    assert!(server.tus_forget(&first));
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    let uploads = server.tus_uploads();
    assert_eq!(uploads.len(), 1, "one live upload: the re-created one");
    assert_ne!(uploads[0].0, first);
    assert_eq!(sha256_hex(&uploads[0].3), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_reply_job_stores_the_reply_where_asked_and_info_shows_it() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let reply = b"{\"stored\":\"report.bin\",\"id\":42}\n".to_vec();
    server.set_upload_reply("/reports/report.bin", 200, reply.clone());
    let m = manager(&env).await;
    let data = random_bytes(1 << 20, 24);
    let src = env.files.join("report.bin");
    std::fs::write(&src, &data).unwrap();
    let reply_path = env.files.join("reply.json");
    let job = upload_job(&m, "reply", JobType::UploadReply, "put").await;
    job.add_file(&server.url("/reports/report.bin"), src.to_str().unwrap())
        .await
        .unwrap();
    job.set(JobProperties {
        reply_file: Some(reply_path.to_str().unwrap().into()),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(
        sha256_hex(&server.uploaded("/reports/report.bin").unwrap()),
        sha256_hex(&data)
    );
    assert_eq!(std::fs::read(&reply_path).unwrap(), reply);
    assert_eq!(info.reply_file.as_deref(), reply_path.to_str());
    let out = env
        .ferry()
        .args(["info", &job.id().to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("reply file:       {}", reply_path.display())),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_upload_reply_without_a_reply_file_is_kept_in_the_state_directory() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.enable_tus("/files/");
    // A tus server answers the last PATCH with 200 and a body when it has something to say.
    server.set_upload_reply("/files/", 200, b"tus reply body".to_vec());
    let m = manager(&env).await;
    let data = random_bytes(600_000, 25);
    let src = env.files.join("t.bin");
    std::fs::write(&src, &data).unwrap();
    let job = upload_job(&m, "tus-reply", JobType::UploadReply, "tus").await;
    job.add_file(&server.url("/files/"), src.to_str().unwrap())
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    let shown = info.reply_file.expect("info names where the reply is");
    assert_eq!(std::fs::read(&shown).unwrap(), b"tus reply body");
    assert_eq!(sha256_hex(&server.tus_uploads()[0].3), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_ca_fails_without_the_ca_file_and_works_with_it() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let (server, tls) = TestServer::start_tls();
    let data = random_bytes(2 << 20, 26);
    server.add_file("/secure.bin", data.clone());
    let url = server.url("/secure.bin");
    assert!(url.starts_with("https://"), "{url}");
    let m = manager(&env).await;

    let untrusted = m.create_job("no-ca").await.unwrap();
    let dest = env.files.join("no-ca.bin");
    untrusted
        .add_file(&url, dest.to_str().unwrap())
        .await
        .unwrap();
    untrusted.resume().await.unwrap();
    let info = wait_done(&untrusted).await;
    assert_eq!(
        info.state(),
        JobState::Error,
        "a certificate failure is fatal"
    );
    let err = info.error.expect("an error is recorded");
    assert_eq!(err.context, Some(ErrorContext::Transport), "{err:?}");
    assert_eq!(err.code, "tls_certificate", "{err:?}");
    assert!(
        err.message.contains(&tls.cert_subject),
        "the message names the certificate's subject: {}",
        err.message
    );
    assert!(
        err.message.contains("ca_file (SetJobProperties)"),
        "the message says what to do: {}",
        err.message
    );
    assert!(!dest.exists());
    // The API's message names the field; the command line adds its own command.
    let out = env
        .ferry()
        .args(["info", &untrusted.id().to_string()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("hint:             `ferry set JOB --ca-file PATH`"),
        "{shown}"
    );

    let trusted = m.create_job("with-ca").await.unwrap();
    let dest = env.files.join("with-ca.bin");
    trusted
        .add_file(&url, dest.to_str().unwrap())
        .await
        .unwrap();
    trusted
        .set(JobProperties {
            ca_file: Some(tls.ca_pem_path.to_str().unwrap().into()),
            ..Default::default()
        })
        .await
        .unwrap();
    trusted.resume().await.unwrap();
    let info = wait_done(&trusted).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    trusted.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(&dest).unwrap()),
        sha256_hex(&data)
    );

    // The same through the CLI: `ferry set --ca-file`.
    let out = env.ferry().args(["create", "cli-ca"]).output().unwrap();
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dest = env.files.join("cli-ca.bin");
    for args in [
        vec!["add-file", &id, &url, dest.to_str().unwrap()],
        vec!["set", &id, "--ca-file", tls.ca_pem_path.to_str().unwrap()],
        vec!["resume", &id],
        vec!["wait", &id],
        vec!["complete", &id],
    ] {
        let out = env.ferry().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "ferry {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        sha256_hex(&std::fs::read(&dest).unwrap()),
        sha256_hex(&data)
    );
}
