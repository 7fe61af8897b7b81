//! Core transfer behaviour through the client library, against the misbehaving local
//! test server: commit on `complete`, cleanup on `cancel`, resume with ranges, transient
//! and fatal HTTP errors, `no_progress_timeout`, changed content, servers without ranges
//! or lengths, and refused input.

mod common;

use common::*;
use ferry_client::{ErrorContext, FileSpec, JobState, Uuid};
use ferry_testkit::{random_bytes, sha256_hex, Fault, Mode, TestEnv, TestServer};

/// `.NAME.ferry-JOBID-N.part` files in a folder listing.
fn part_files(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| n.starts_with('.') && n.ends_with(".part"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_file_job_appears_only_on_complete() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let contents = [
        ("/a.bin", random_bytes(1 << 20, 11)),
        ("/b.bin", random_bytes(300_000, 12)),
        ("/c.bin", random_bytes(4_321, 13)),
    ];
    for (path, data) in &contents {
        server.add_file(path, data.clone());
    }
    // The second file trickles in, so the job is observably mid-transfer.
    server.set_mode(
        "/b.bin",
        Mode {
            throttle_bytes_per_sec: Some(200_000),
            ..Default::default()
        },
    );
    let dest = |path: &str| env.files.join(path.trim_start_matches('/'));

    let job = m.create_job("three files").await.unwrap();
    let specs = contents
        .iter()
        .map(|(path, _)| FileSpec::new(server.url(path), s(&dest(path))))
        .collect();
    let added = job.add_files(specs).await.unwrap();
    assert_eq!(added.len(), 3);
    job.resume().await.unwrap();

    // Mid-transfer: bytes are in part files, no destination exists.
    wait_bytes(&job, (1 << 20) + 50_000).await;
    for (path, _) in &contents {
        assert!(
            !dest(path).exists(),
            "{path} appeared before complete (while transferring)"
        );
    }
    assert!(
        !part_files(&dir_entries(&env.files)).is_empty(),
        "the bytes land in part files: {:?}",
        dir_entries(&env.files)
    );

    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(info.files_total, 3);
    assert_eq!(info.files_transferred, 3);
    let total: u64 = contents.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(info.bytes_total, Some(total));
    assert_eq!(info.bytes_transferred, total);
    // Transferred, not completed: still only part files.
    let names = dir_entries(&env.files);
    assert_eq!(
        part_files(&names).len(),
        3,
        "one part file per file and nothing else: {names:?}"
    );
    assert_eq!(names.len(), 3, "{names:?}");
    for (path, _) in &contents {
        assert!(!dest(path).exists(), "{path} appeared before complete");
    }
    for f in job.files().await.unwrap() {
        assert!(f.completed, "{f:?}");
        assert!(
            std::path::Path::new(&f.temporary_path).exists(),
            "{}",
            f.temporary_path
        );
    }

    let out = job.complete().await.unwrap();
    assert_eq!(out.files_committed, 3);
    assert_eq!(out.files_discarded, 0);
    assert!(!out.is_partial());
    assert_eq!(out.job.state(), JobState::Acknowledged);
    assert_eq!(
        dir_entries(&env.files),
        vec!["a.bin", "b.bin", "c.bin"],
        "exactly the destinations, no part file left"
    );
    for (path, data) in &contents {
        assert_eq!(file_sha(&dest(path)), sha256_hex(data), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_leaves_no_file_behind() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/small", random_bytes(20_000, 1));
    server.add_file("/slow", random_bytes(4 << 20, 2));
    server.set_mode(
        "/slow",
        Mode {
            throttle_bytes_per_sec: Some(100_000),
            ..Default::default()
        },
    );
    let job = m.create_job("to cancel").await.unwrap();
    job.add_files(vec![
        FileSpec::new(server.url("/small"), s(&env.files.join("small"))),
        FileSpec::new(server.url("/slow"), s(&env.files.join("slow"))),
    ])
    .await
    .unwrap();
    job.resume().await.unwrap();
    // The first file is done and the second one has started.
    wait_bytes(&job, 20_000 + 30_000).await;
    let before = dir_entries(&env.files);
    assert_eq!(
        part_files(&before).len(),
        2,
        "both files have part files before the cancel: {before:?}"
    );

    let info = job.cancel().await.unwrap();
    assert_eq!(info.state(), JobState::Cancelled);
    assert_eq!(
        dir_entries(&env.files),
        Vec::<String>::new(),
        "cancel removes every part file and writes no destination"
    );
    // Still nothing once the job is final and queryable.
    let info = job.info().await.unwrap();
    assert_eq!(info.state(), JobState::Cancelled);
    assert!(dir_entries(&env.files).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_file_resumes_with_a_range_request() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(2 << 20, 21);
    let cut = 700_000u64;
    server.add_file("/cut.bin", data.clone());
    server.push_fault("/cut.bin", Fault::CutAfter(cut));
    let dest = env.files.join("cut.bin");

    let job = m.create_job("cut").await.unwrap();
    fast_retries(&job).await;
    job.add_file(&server.url("/cut.bin"), s(&dest))
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert!(info.error_count >= 1, "the cut was an error: {info:?}");

    let requests = server.requests("/cut.bin");
    assert_eq!(
        range_starts(&requests),
        vec![None, Some(cut)],
        "one full request, cut, then one range request from exactly where the cut was"
    );
    assert_eq!(
        requests[1].header("if-range"),
        server.etag("/cut.bin").as_deref(),
        "the resume is guarded by the ETag"
    );
    // What the server sent over both requests: the file once.
    let served = cut + (data.len() as u64 - cut);
    assert!(served < 2 * data.len() as u64);

    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), sha256_hex(&data));
    assert_eq!(dir_entries(&env.files), vec!["cut.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_cuts_resume_each_time_where_the_last_one_stopped() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(1_200_000, 22);
    server.add_file("/twice", data.clone());
    // The second cut applies to the 206 body of the first resume.
    server.push_fault("/twice", Fault::CutAfter(300_000));
    server.push_fault("/twice", Fault::CutAfter(400_000));
    let dest = env.files.join("twice");
    let job = m.create_job("cut twice").await.unwrap();
    fast_retries(&job).await;
    job.add_file(&server.url("/twice"), s(&dest)).await.unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(
        range_starts(&server.requests("/twice")),
        vec![None, Some(300_000), Some(700_000)],
        "every resume starts where the previous request stopped"
    );
    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_mid_transfer_commits_finished_files_and_discards_the_rest() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let done = random_bytes(50_000, 23);
    server.add_file("/done", done.clone());
    server.add_file("/slow", random_bytes(4 << 20, 24));
    server.set_mode(
        "/slow",
        Mode {
            throttle_bytes_per_sec: Some(100_000),
            ..Default::default()
        },
    );
    let job = m.create_job("partial").await.unwrap();
    job.add_files(vec![
        FileSpec::new(server.url("/done"), s(&env.files.join("done"))),
        FileSpec::new(server.url("/slow"), s(&env.files.join("slow"))),
    ])
    .await
    .unwrap();
    job.resume().await.unwrap();
    wait_bytes(&job, 50_000 + 20_000).await;
    let out = job.complete().await.unwrap();
    assert_eq!(out.files_committed, 1);
    assert_eq!(out.files_discarded, 1);
    assert!(out.is_partial());
    assert_eq!(out.job.state(), JobState::Acknowledged);
    assert!(
        out.job.partial,
        "the job reports it was completed partially"
    );
    assert_eq!(
        dir_entries(&env.files),
        vec!["done"],
        "the finished file is committed; the unfinished one leaves nothing"
    );
    assert_eq!(file_sha(&env.files.join("done")), sha256_hex(&done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_503_passes_through_transient_error_then_succeeds() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(500_000, 31);
    server.add_file("/busy", data.clone());
    server.push_fault("/busy", Fault::Status(503));
    let dest = env.files.join("busy");

    let job = m.create_job("503").await.unwrap();
    fast_retries(&job).await;
    job.add_file(&server.url("/busy"), s(&dest)).await.unwrap();
    // Subscribed before the resume, so no state is missed.
    let stream = job.watch().await.unwrap();
    job.resume().await.unwrap();
    let (states, snapshots) = follow_states(stream, |s| {
        matches!(s, JobState::Transferred | JobState::Error) || s.is_final()
    })
    .await;
    assert_eq!(states.last(), Some(&JobState::Transferred), "{states:?}");
    assert!(
        states.contains(&JobState::TransientError),
        "the 503 made the job pass through transient_error: {states:?}"
    );
    let transient = snapshots
        .iter()
        .find(|i| i.state() == JobState::TransientError)
        .unwrap();
    let err = transient
        .error
        .as_ref()
        .expect("a transient error is recorded");
    assert_eq!(err.code, "http_503");
    assert_eq!(err.context, Some(ErrorContext::RemoteFile));
    assert!(err.message.contains("503"), "{}", err.message);
    let last = snapshots.last().unwrap();
    assert!(last.error.is_none(), "success clears the error: {last:?}");
    assert_eq!(server.request_count("/busy"), 2);

    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_with_retry_after_is_retried_no_sooner_than_asked() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let limited = random_bytes(200_000, 41);
    let plain = random_bytes(200_000, 42);
    server.add_file("/limited", limited.clone());
    server.add_file("/plain", plain.clone());
    // The server asks for an hour; a job ignoring that would retry after its 1 s delay.
    server.push_fault("/limited", Fault::StatusRetryAfter(429, 3600));
    server.push_fault("/plain", Fault::Status(503));

    let slow = m.create_job("429").await.unwrap();
    fast_retries(&slow).await;
    slow.add_file(&server.url("/limited"), s(&env.files.join("limited")))
        .await
        .unwrap();
    slow.resume().await.unwrap();
    let info = wait_state(&slow, |s| s == JobState::TransientError).await;
    let err = info.error.expect("the 429 is recorded");
    assert_eq!(err.code, "http_429");
    assert_eq!(err.context, Some(ErrorContext::RemoteFile));

    // A job with the same 1 s retry delay and no Retry-After retries and finishes…
    let quick = m.create_job("503").await.unwrap();
    fast_retries(&quick).await;
    quick
        .add_file(&server.url("/plain"), s(&env.files.join("plain")))
        .await
        .unwrap();
    quick.resume().await.unwrap();
    let info = settle(&quick).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(server.request_count("/plain"), 2);
    // …while the 429 job, which failed earlier, still waits as the server asked.
    assert_eq!(slow.info().await.unwrap().state(), JobState::TransientError);
    assert_eq!(
        server.request_count("/limited"),
        1,
        "Retry-After: 3600 was not honoured"
    );

    // A resume retries at once and the job finishes.
    slow.resume().await.unwrap();
    let info = settle(&slow).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    slow.complete().await.unwrap();
    quick.complete().await.unwrap();
    assert_eq!(file_sha(&env.files.join("limited")), sha256_hex(&limited));
    assert_eq!(file_sha(&env.files.join("plain")), sha256_hex(&plain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_404_ends_in_error_with_remote_file_context() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/here", random_bytes(1000, 51));
    let job = m.create_job("404").await.unwrap();
    fast_retries(&job).await;
    job.add_files(vec![
        FileSpec::new(server.url("/here"), s(&env.files.join("here"))),
        FileSpec::new(server.url("/missing"), s(&env.files.join("missing"))),
    ])
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error);
    let err = info.error.expect("the error is recorded");
    assert_eq!(err.context, Some(ErrorContext::RemoteFile));
    assert_eq!(err.code, "http_404");
    assert_eq!(err.file_index, Some(1), "the error names the missing file");
    assert!(
        err.message.contains("404") && err.message.contains("/missing"),
        "the message says what and where: {}",
        err.message
    );
    assert_eq!(
        server.request_count("/missing"),
        1,
        "a 404 is fatal, not retried"
    );
    assert!(!env.files.join("missing").exists());
    assert!(!env.files.join("here").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_timeout_turns_a_stall_into_error() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/stall", random_bytes(1 << 20, 61));
    // Some bytes, then nothing; every retry stalls at once.
    server.push_fault("/stall", Fault::StallAfter(100_000));
    for _ in 0..20 {
        server.push_fault("/stall", Fault::StallAfter(0));
    }
    let job = m.create_job("stall").await.unwrap();
    job.set(ferry_client::JobProperties {
        minimum_retry_delay_secs: Some(1),
        no_progress_timeout_secs: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    job.add_file(&server.url("/stall"), s(&env.files.join("stall")))
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error, "{info:?}");
    assert!(info.bytes_transferred >= 100_000, "{info:?}");
    let err = info.error.expect("the error is recorded");
    assert!(
        err.message.contains("no_progress_timeout"),
        "the message names the timeout: {}",
        err.message
    );
    assert_eq!(err.file_index, Some(0));
    server.release_stalls();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_etag_after_a_cut_restarts_the_file_with_the_new_content() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let old = random_bytes(1 << 20, 71);
    let new = random_bytes(1_500_000, 72);
    server.add_file("/doc", old.clone());
    let old_etag = server.etag("/doc").unwrap();
    server.push_fault("/doc", Fault::CutAfter(400_000));
    server.push_fault("/doc", Fault::ChangeContent(new.clone()));
    let dest = env.files.join("doc");

    let job = m.create_job("changing").await.unwrap();
    fast_retries(&job).await;
    job.add_file(&server.url("/doc"), s(&dest)).await.unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(info.bytes_total, Some(new.len() as u64));

    let requests = server.requests("/doc");
    assert!(requests.len() >= 2, "{requests:?}");
    assert_eq!(
        requests[1].range_start,
        Some(400_000),
        "ferry tried to resume"
    );
    assert_eq!(
        requests[1].header("if-range"),
        Some(old_etag.as_str()),
        "under the old ETag"
    );
    assert_ne!(server.etag("/doc").unwrap(), old_etag);

    job.complete().await.unwrap();
    assert_eq!(
        file_sha(&dest),
        sha256_hex(&new),
        "the new content, not a mix"
    );
}

/// Downloads `/f` (with `mode`) after a cut at 300 000 bytes; returns the requests.
async fn download_after_cut(mode: Mode, cut: u64) -> Vec<ferry_testkit::RecordedRequest> {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(1 << 20, 81);
    server.add_file("/f", data.clone());
    server.set_mode("/f", mode);
    server.push_fault("/f", Fault::CutAfter(cut));
    let dest = env.files.join("f");
    let job = m.create_job("after a cut").await.unwrap();
    fast_retries(&job).await;
    job.add_file(&server.url("/f"), s(&dest)).await.unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert!(info.error_count >= 1, "the cut was noticed: {info:?}");
    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), sha256_hex(&data));
    assert_eq!(dir_entries(&env.files), vec!["f"]);
    server.requests("/f")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ignoring_ranges_still_completes_after_a_cut() {
    let requests = download_after_cut(
        Mode {
            ignore_range: true,
            ..Default::default()
        },
        300_000,
    )
    .await;
    // ferry asked for the rest; the server sent everything again, and ferry started over.
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].range_start, Some(300_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_server_without_ranges_completes_after_a_cut() {
    let requests = download_after_cut(
        Mode {
            chunked: true,
            ignore_range: true,
            ..Default::default()
        },
        300_000,
    )
    .await;
    assert_eq!(requests.len(), 2, "{requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_content_length_completes() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(700_000, 91);
    server.add_file("/stream", data.clone());
    server.set_mode(
        "/stream",
        Mode {
            no_content_length: true,
            ..Default::default()
        },
    );
    let dest = env.files.join("stream");
    let job = m.create_job("close-delimited").await.unwrap();
    job.add_file(&server.url("/stream"), s(&dest))
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_close_delimited_body_is_caught_by_the_checksum_and_fetched_again() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(700_000, 92);
    server.add_file("/stream", data.clone());
    server.set_mode(
        "/stream",
        Mode {
            no_content_length: true,
            ..Default::default()
        },
    );
    // Without a length, a cut looks like the end of the body: only the checksum tells.
    server.push_fault("/stream", Fault::CutAfter(250_000));
    let dest = env.files.join("stream");
    let job = m.create_job("close-delimited, cut").await.unwrap();
    fast_retries(&job).await;
    job.add_files(vec![
        FileSpec::new(server.url("/stream"), s(&dest)).sha256(sha256_hex(&data))
    ])
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(
        range_starts(&server.requests("/stream")),
        vec![None, None],
        "fetched again from the start"
    );
    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_documented_code_and_changes_nothing() {
    use tonic::Code;
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/ok", random_bytes(1000, 1));
    let job = m.create_job("victim").await.unwrap();
    job.add_file(&server.url("/ok"), s(&env.files.join("ok")))
        .await
        .unwrap();
    let cancelled = m.create_job("cancelled").await.unwrap();
    cancelled.cancel().await.unwrap();

    let jobs_before = m.jobs(true).await.unwrap();
    let files_before = job.files().await.unwrap();
    let dir_before = dir_entries(&env.files);

    // A relative destination.
    let e = job
        .add_file(&server.url("/ok"), "relative/out.bin")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(
        e.to_string().contains("relative") && e.to_string().contains("relative/out.bin"),
        "{e}"
    );

    // An unknown scheme.
    let e = job
        .add_file("gopher://example.com/x", s(&env.files.join("x")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(
        e.to_string().contains("scheme") && e.to_string().contains("gopher"),
        "{e}"
    );

    // An unknown job id.
    let unknown = Uuid::new_v4();
    let e = m.job(unknown).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound), "{e}");
    assert!(e.to_string().contains(&unknown.to_string()), "{e}");
    let e = m.job_unchecked(unknown).resume().await.unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound), "{e}");
    let e = m.job_unchecked(unknown).cancel().await.unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound), "{e}");

    // Completing a cancelled job.
    let e = cancelled.complete().await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("cancelled"), "{e}");

    // A mixed batch is all or nothing.
    let e = job
        .add_files(vec![
            FileSpec::new(server.url("/ok"), s(&env.files.join("fine"))),
            FileSpec::new(server.url("/ok"), "not/absolute"),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");

    assert_eq!(m.jobs(true).await.unwrap(), jobs_before, "no job changed");
    assert_eq!(job.files().await.unwrap(), files_before, "no file added");
    assert_eq!(dir_entries(&env.files), dir_before, "nothing written");
}

/// The common case in one call: `CreateJob` with files and `resume` hands back a job that
/// is already queued (or further on) and transfers, a download and an upload alike; with
/// no files, or with a file refused, it is refused and no job is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_resume_queues_the_job_in_one_call_and_leaves_nothing_on_refusal() {
    use ferry_client::NewJob;
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(200_000, 41);
    server.add_file("/one.bin", data.clone());
    let dest = env.files.join("one.bin");

    let job = m
        .create_job_with(NewJob {
            files: vec![FileSpec::new(server.url("/one.bin"), s(&dest))],
            resume: true,
            ..NewJob::download("one call")
        })
        .await
        .unwrap();
    let created = job.info().await.unwrap();
    assert_ne!(created.state(), JobState::Suspended, "{created:?}");
    assert_eq!(settle(&job).await.state(), JobState::Transferred);
    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), sha256_hex(&data));

    // An upload: its source is noted (size, time) as a first resume notes it.
    let src = env.files.join("up.bin");
    std::fs::write(&src, &data).unwrap();
    let up = m
        .create_job_with(NewJob {
            files: vec![FileSpec::new(server.url("/up.bin"), s(&src))],
            resume: true,
            ..NewJob::upload("one call up", "put")
        })
        .await
        .unwrap();
    assert_eq!(settle(&up).await.state(), JobState::Transferred);
    assert_eq!(server.uploaded("/up.bin"), Some(data.clone()));
    up.complete().await.unwrap();

    let before = m.jobs(true).await.unwrap().len();
    let e = m
        .create_job_with(NewJob {
            resume: true,
            ..NewJob::download("no files")
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("needs files"), "{e}");
    let e = m
        .create_job_with(NewJob {
            files: vec![
                FileSpec::new(server.url("/one.bin"), s(&env.files.join("again.bin"))),
                FileSpec::new(server.url("/one.bin"), "relative/path.bin"),
            ],
            resume: true,
            ..NewJob::download("one refused file")
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
    assert_eq!(
        m.jobs(true).await.unwrap().len(),
        before,
        "no job left behind"
    );
    assert_eq!(
        server.requests("/one.bin").len(),
        1,
        "the refused job fetched nothing"
    );
}
