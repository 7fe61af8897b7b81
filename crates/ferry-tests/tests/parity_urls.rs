//! Issue 30, rows 1 and 8: URLs that change without losing progress (BITS's
//! `IBackgroundCopyFile2::SetRemoteName` and `IBackgroundCopyJob3::ReplaceRemotePrefix`)
//! and mirrors with failover (aria2's and Metalink's; BITS has one URL). Two test servers
//! (A and B) serve the same bytes; a download started from A continues from B with a
//! `Range` request from the byte where A's bytes stop, and the result is byte-identical.

mod common;

use common::*;
use ferry_client::{FileSpec, JobState, Uuid};
use ferry_testkit::{random_bytes, sha256_hex, Fault, TestEnv, TestServer};
use tonic::Code;

/// 3 MB: written through the writer thread (not gathered in memory as a small body).
const SIZE: usize = 3_000_000;
/// Where A stops sending.
const CUT: u64 = 1_000_000;

/// The `Range` start of every GET `server` received for `path`.
fn gets(server: &TestServer, path: &str) -> Vec<Option<u64>> {
    server
        .requests(path)
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.range_start)
        .collect()
}

/// Two servers with the same file at `path`.
fn two_servers(path: &str, data: &[u8]) -> (TestServer, TestServer) {
    let a = TestServer::start();
    let b = TestServer::start();
    a.add_file(path, data.to_vec());
    b.add_file(path, data.to_vec());
    (a, b)
}

/// Completes `job` and checks the destination holds exactly `data`.
async fn complete_and_check(job: &ferry_client::Job, dest: &std::path::Path, data: &[u8]) {
    let out = job.complete().await.expect("complete");
    assert_eq!(out.files_committed, 1, "{out:?}");
    assert_eq!(file_sha(dest), sha256_hex(data), "the destination differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_set_remote_name_continues_a_suspended_download_from_server_b() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let data = random_bytes(SIZE, 30);
    let (a, b) = two_servers("/f", &data);
    // A sends the first CUT bytes, then nothing.
    a.push_fault("/f", Fault::StallAfter(CUT));
    let m = manager(&env).await;
    let dest = env.files.join("f");
    let job = m.create_job("set url").await.unwrap();
    job.add_files(vec![FileSpec::new(a.url("/f"), s(&dest))])
        .await
        .unwrap();
    job.resume().await.unwrap();
    wait_bytes(&job, CUT).await;
    job.suspend().await.unwrap();
    a.release_stalls();
    let kept = job.files().await.unwrap()[0].bytes_transferred;
    assert_eq!(kept, CUT, "the bytes from A are durable after suspend");

    let f = job.set_remote_name(0, &b.url("/f")).await.unwrap();
    assert_eq!(f.remote_url, b.url("/f"));
    assert_eq!(f.url_in_use, b.url("/f"));
    assert_eq!(f.bytes_transferred, CUT, "progress is kept: {f:?}");
    let asked_of_a = a.requests("/f").len();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    assert_eq!(
        gets(&b, "/f"),
        vec![Some(CUT)],
        "B is asked for the rest only, from the byte A's bytes stop at"
    );
    let if_range = b.requests("/f")[0].header("if-range").map(str::to_string);
    assert_eq!(
        if_range,
        b.etag("/f"),
        "under the validator the bytes came with"
    );
    assert_eq!(a.requests("/f").len(), asked_of_a, "A is not asked again");
    complete_and_check(&job, &dest, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_set_remote_name_of_a_running_download_moves_it_to_server_b_at_once() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let data = random_bytes(SIZE, 31);
    let (a, b) = two_servers("/f", &data);
    a.push_fault("/f", Fault::StallAfter(CUT));
    let m = manager(&env).await;
    let dest = env.files.join("f");
    let job = m.create_job("set url running").await.unwrap();
    job.add_files(vec![FileSpec::new(a.url("/f"), s(&dest))])
        .await
        .unwrap();
    job.resume().await.unwrap();
    wait_bytes(&job, CUT).await;
    // A holds the connection open: the job is transferring when its URL changes.
    job.set_remote_name(0, &b.url("/f")).await.unwrap();
    let info = settle(&job).await;
    a.release_stalls();
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    assert_eq!(gets(&b, "/f"), vec![Some(CUT)], "B continues at byte {CUT}");
    assert_eq!(gets(&a, "/f").len(), 1, "A is not asked again");
    complete_and_check(&job, &dest, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_set_remote_name_to_other_content_starts_the_file_over_as_bits_does() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let data = random_bytes(SIZE, 32);
    let other = random_bytes(SIZE, 33);
    let a = TestServer::start();
    let b = TestServer::start();
    a.add_file("/f", data);
    // Same length, other bytes: another ETag.
    b.add_file("/f", other.clone());
    a.push_fault("/f", Fault::StallAfter(CUT));
    let m = manager(&env).await;
    let dest = env.files.join("f");
    let job = m.create_job("other content").await.unwrap();
    job.add_files(vec![FileSpec::new(a.url("/f"), s(&dest))])
        .await
        .unwrap();
    job.resume().await.unwrap();
    wait_bytes(&job, CUT).await;
    job.suspend().await.unwrap();
    a.release_stalls();
    job.set_remote_name(0, &b.url("/f")).await.unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    // Asked from CUT under A's ETag, B sends the whole file: nothing of A's is kept.
    assert_eq!(gets(&b, "/f"), vec![Some(CUT)]);
    complete_and_check(&job, &dest, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_replace_remote_prefix_changes_only_the_matching_urls() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let a = TestServer::start();
    let b = TestServer::start();
    let x = random_bytes(400_000, 34);
    let y = random_bytes(400_000, 35);
    let z = random_bytes(400_000, 36);
    // After the change, /old/x and /old/y come from B's /new/; /keep/z stays on A.
    b.add_file("/new/x", x.clone());
    b.add_file("/new/y", y.clone());
    a.add_file("/keep/z", z.clone());
    let m = manager(&env).await;
    let job = m.create_job("replace prefix").await.unwrap();
    let dest = |n: &str| env.files.join(n);
    job.add_files(vec![
        FileSpec::new(a.url("/old/x"), s(&dest("x"))),
        // Its mirror matches too.
        FileSpec::new(b.url("/new/y"), s(&dest("y"))).mirror(a.url("/old/y")),
        FileSpec::new(a.url("/keep/z"), s(&dest("z"))),
    ])
    .await
    .unwrap();

    let old = a.url("/old/");
    let changed = job
        .replace_remote_prefix(&old, &b.url("/new/"))
        .await
        .unwrap();
    assert_eq!(changed, 2, "x's URL and y's mirror");
    let files = job.files().await.unwrap();
    assert_eq!(files[0].remote_url, b.url("/new/x"));
    assert_eq!(files[1].remote_url, b.url("/new/y"));
    assert_eq!(files[1].mirrors, vec![b.url("/new/y")]);
    assert_eq!(files[2].remote_url, a.url("/keep/z"));
    assert_eq!(
        job.replace_remote_prefix(&old, &b.url("/new/"))
            .await
            .unwrap(),
        0,
        "nothing starts with the old prefix any more"
    );

    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    assert!(a.requests("/old/x").is_empty() && a.requests("/old/y").is_empty());
    assert_eq!(gets(&a, "/keep/z"), vec![None]);
    job.complete().await.unwrap();
    for (n, data) in [("x", &x), ("y", &y), ("z", &z)] {
        assert_eq!(file_sha(&dest(n)), sha256_hex(data), "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_url_changes_refuse_bad_input_with_clear_codes() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let a = TestServer::start();
    let m = manager(&env).await;
    let job = m.create_job("bad input").await.unwrap();
    job.add_files(vec![
        FileSpec::new(a.url("/one"), s(&env.files.join("one"))),
        FileSpec::new(a.url("/two"), s(&env.files.join("two"))),
    ])
    .await
    .unwrap();

    let e = job.set_remote_name(7, &a.url("/x")).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound), "{e}");
    assert!(
        e.to_string().contains("has no file 7") && e.to_string().contains("0 to 1"),
        "{e}"
    );

    let e = job
        .set_remote_name(0, "ftp://example.com/a")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(
        e.to_string().contains("unsupported URL scheme 'ftp'"),
        "{e}"
    );

    // All or none: the second file's URL would become ftp, so the first keeps its own.
    let e = job
        .replace_remote_prefix(&a.url("/"), "ftp://example.com/")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(e.to_string().contains("files[0].remote_url"), "{e}");
    let e = job
        .replace_remote_prefix("", "http://x/")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(e.to_string().contains("old_prefix is empty"), "{e}");
    let urls: Vec<String> = job
        .files()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.remote_url)
        .collect();
    assert_eq!(urls, vec![a.url("/one"), a.url("/two")]);

    // Too many mirrors, a bad mirror, mirrors of an upload.
    let spec = (0..17).fold(
        FileSpec::new(a.url("/m"), s(&env.files.join("m"))),
        |spec, i| spec.mirror(a.url(&format!("/m{i}"))),
    );
    let e = job.add_files(vec![spec]).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    let bad = FileSpec::new(a.url("/m"), s(&env.files.join("m"))).mirror("gopher://h/m");
    let e = job.add_files(vec![bad]).await.unwrap_err();
    assert!(e.to_string().contains("files[0].mirrors[0]"), "{e}");

    job.cancel().await.unwrap();
    let e = job.set_remote_name(0, &a.url("/x")).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("cancelled"), "{e}");
    let e = job
        .replace_remote_prefix(&a.url("/"), &a.url("/x/"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_a_mirror_takes_over_when_the_first_url_is_cut_then_gone() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let data = random_bytes(SIZE, 37);
    let (a, b) = two_servers("/f", &data);
    // A sends CUT bytes and hangs up (transient: A is tried again), then is gone (404:
    // that URL failed for good).
    a.push_fault("/f", Fault::CutAfter(CUT));
    a.push_fault("/f", Fault::Status(404));
    let m = manager(&env).await;
    let dest = env.files.join("f");
    let job = m.create_job("mirror").await.unwrap();
    fast_retries(&job).await;
    let added = job
        .add_files(vec![
            FileSpec::new(a.url("/f"), s(&dest)).mirror(b.url("/f"))
        ])
        .await
        .unwrap();
    assert_eq!(added[0].mirrors, vec![b.url("/f")]);
    assert_eq!(added[0].url_in_use, a.url("/f"));
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    assert_eq!(gets(&a, "/f"), vec![None, Some(CUT)]);
    assert_eq!(
        gets(&b, "/f"),
        vec![Some(CUT)],
        "the mirror continues from where A stopped"
    );
    let f = &job.files().await.unwrap()[0];
    assert_eq!(f.url_in_use, b.url("/f"), "ListFiles shows the URL in use");
    assert_eq!(f.remote_url, a.url("/f"));
    let wql = format!(
        "SELECT url_in_use, mirrors FROM File WHERE job_id = '{}'",
        job.id()
    );
    let objects = m.exec_query(&wql).await.unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].get_str("url_in_use"), Some(b.url("/f").as_str()));
    assert_eq!(
        objects[0].get("mirrors"),
        Some(&ferry_client::Value::List(vec![b.url("/f")]))
    );
    complete_and_check(&job, &dest, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_a_mirror_takes_over_from_a_server_that_refuses_connections() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let data = random_bytes(SIZE, 38);
    let b = TestServer::start();
    b.add_file("/f", data.clone());
    // A port nothing listens on: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}/f", closed.local_addr().unwrap());
    drop(closed);
    let m = manager(&env).await;
    let dest = env.files.join("f");
    let job = m.create_job("refused").await.unwrap();
    job.add_files(vec![FileSpec::new(&refused, s(&dest)).mirror(b.url("/f"))])
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    assert_eq!(gets(&b, "/f"), vec![None]);
    complete_and_check(&job, &dest, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_every_mirror_gone_is_an_error_naming_the_last() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let a = TestServer::start();
    let b = TestServer::start();
    let m = manager(&env).await;
    let job = m.create_job("all gone").await.unwrap();
    job.add_files(vec![
        FileSpec::new(a.url("/f"), s(&env.files.join("f"))).mirror(b.url("/f"))
    ])
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error, "{info:?}");
    let error = info.error.expect("an error record");
    assert_eq!(error.code, "http_404");
    assert!(error.message.contains(&b.url("/f")), "{}", error.message);
    assert_eq!((gets(&a, "/f").len(), gets(&b, "/f").len()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_cli_set_url_replace_prefix_and_mirrors() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let data = random_bytes(400_000, 39);
    let (a, b) = two_servers("/f", &data);
    let id = run_ok({
        let mut c = ferry(&env);
        c.args(["create", "cli urls"]);
        c
    })
    .trim()
    .to_string();
    let dest = env.files.join("f");
    let added = run_json({
        let mut c = ferry(&env);
        c.args(["--json", "add-file", &id, &a.url("/gone"), s(&dest)])
            .args(["--mirror", &b.url("/f")]);
        c
    });
    assert_eq!(added["mirrors"][0], b.url("/f"), "{added}");
    let set = run_json({
        let mut c = ferry(&env);
        c.args(["--json", "set-url", &id, "0", &a.url("/f")]);
        c
    });
    assert_eq!(set["url_in_use"], a.url("/f"), "{set}");
    let replaced = run_json({
        let mut c = ferry(&env);
        c.args(["--json", "replace-prefix", &id, &a.url("/"), &b.url("/")]);
        c
    });
    assert_eq!(replaced["files_changed"], 1, "{replaced}");
    let out = run({
        let mut c = ferry(&env);
        c.args(["set-url", &id, "3", &b.url("/f")]);
        c
    });
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no file 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_ok({
        let mut c = ferry(&env);
        c.args(["resume", &id]);
        c
    });
    let m = manager(&env).await;
    let job = m.job(Uuid::parse_str(&id).unwrap()).await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    assert!(
        a.requests("/f").is_empty(),
        "the prefix moved the file to B"
    );
    complete_and_check(&job, &dest, &data).await;
}
