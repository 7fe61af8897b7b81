//! BITS parity, issue 30 row 7 in the system-wide ferryd (real users, `ferryd --system`):
//! administrators add files to and change the properties of another user's job (the
//! paths they name opened as the owner, never as root), and take a job over
//! (IBackgroundCopyJob2::TakeOwnership, `bitsadmin /takeownership`): it moves from its
//! owner's worker to the administrator's.

mod system;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use ferry_testkit::{random_bytes, wait_until, TestServer};
use system::{users, SystemEnv};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn parity_admin_adds_files_and_sets_properties_as_the_owner() {
    let users = users("parity_admin_adds_files_and_sets_properties_as_the_owner");
    let env = SystemEnv::start(users, "");
    let (a, b, admin) = (&users.a, &users.b, &users.admin);
    let job = env.create(a, "a-job");
    let dest = env.home_a.join("from-admin.bin");

    // The administrator adds a file to A's job: its destination is checked as A's.
    env.ferry(
        admin,
        &[
            "add-file",
            &job,
            "http://127.0.0.1:9/x",
            dest.to_str().unwrap(),
        ],
    )
    .expect_ok("the admin adds a file to A's job");
    let files = json(&env.ferry(a, &["--json", "files", &job]).expect_ok("files"));
    assert_eq!(files[0]["local_path"], dest.to_str().unwrap(), "{files}");
    // A folder only root may enter: refused, because A may not write there.
    let denied = env.root_only.join("x.bin");
    let err = env
        .ferry(
            admin,
            &[
                "add-file",
                &job,
                "http://127.0.0.1:9/y",
                denied.to_str().unwrap(),
            ],
        )
        .expect_err("a destination A cannot write");
    assert!(
        err.to_lowercase().contains("permission denied"),
        "opened as A, not as root: {err}"
    );
    // Root too acts as the owner.
    let err = env
        .root_ferry(&[
            "add-file",
            &job,
            "http://127.0.0.1:9/z",
            "/etc/ferry-parity-test",
        ])
        .expect_err("root names /etc for A's job");
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    assert!(!std::path::Path::new("/etc/ferry-parity-test").exists());

    // Properties, as the admin; a notify command would run as A: refused.
    env.ferry(
        admin,
        &[
            "set",
            &job,
            "--name",
            "renamed",
            "--max-download-size",
            "1MiB",
        ],
    )
    .expect_ok("the admin changes A's job");
    let info = json(&env.ferry(a, &["--json", "info", &job]).expect_ok("info"));
    assert_eq!(info["display_name"], "renamed");
    assert_eq!(info["max_download_size"], 1 << 20);
    let err = env
        .ferry(admin, &["set", &job, "--notify-command", "--", "/bin/true"])
        .expect_err("a notify command on A's job");
    assert!(err.contains("notify command"), "{err}");

    // URLs, as the admin (BITS's SetRemoteName and ReplaceRemotePrefix).
    env.ferry(admin, &["set-url", &job, "0", "http://127.0.0.1:9/moved"])
        .expect_ok("the admin changes a URL of A's job");
    env.ferry(
        admin,
        &[
            "replace-prefix",
            &job,
            "http://127.0.0.1:9/",
            "http://127.0.0.1:8/",
        ],
    )
    .expect_ok("the admin moves A's job to another server");
    let files = json(&env.ferry(a, &["--json", "files", &job]).expect_ok("files"));
    assert_eq!(
        files[0]["remote_url"], "http://127.0.0.1:8/moved",
        "{files}"
    );

    // Someone else still cannot.
    let err = env
        .ferry(b, &["set", &job, "--name", "stolen"])
        .expect_err("B changes A's job");
    assert!(err.contains("no job"), "{err}");
    let err = env
        .ferry(b, &["set-url", &job, "0", "http://127.0.0.1:7/evil"])
        .expect_err("B changes a URL of A's job");
    assert!(err.contains("no job"), "{err}");

    let log = env.log();
    for action in [
        "added files to",
        "changed the properties of",
        "changed a URL of",
        "replaced a URL prefix of",
    ] {
        let line = format!(
            "administrator uid {} {action} job {job} of uid {}",
            admin.uid, a.uid
        );
        assert!(log.contains(&line), "the log says '{line}'");
    }
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn parity_admin_takes_ownership_of_another_users_job() {
    let users = users("parity_admin_takes_ownership_of_another_users_job");
    let env = SystemEnv::start(users, "");
    let (a, b, admin) = (&users.a, &users.b, &users.admin);
    let server = TestServer::start();
    let data = random_bytes(300_000, 30);
    server.add_file("/taken.bin", data.clone());

    // A folder both A and the admin may write in.
    let shared = env.env.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let dest = shared.join("taken.bin");

    let job = env.create(a, "to be taken");
    env.ferry(
        a,
        &[
            "add-file",
            &job,
            &server.url("/taken.bin"),
            dest.to_str().unwrap(),
        ],
    )
    .expect_ok("add-file");
    env.ferry(
        a,
        &[
            "set",
            &job,
            "--header",
            "X-Trace: visible",
            "--header",
            "X-Api-Key: s3cret",
            "--basic",
            "alice:pw",
            "--max-download-size",
            "1MiB",
            "--notify-command",
            "--",
            "/bin/true",
        ],
    )
    .expect_ok("A's properties");

    // Someone who is not an administrator may not.
    let err = env
        .ferry(b, &["takeown", &job])
        .expect_err("B takes A's job");
    assert!(err.to_lowercase().contains("ferrytest-admins"), "{err}");

    let taken = json(
        &env.ferry(admin, &["--json", "takeown", &job])
            .expect_ok("the admin takes A's job"),
    );
    assert_eq!(taken["id"], job.as_str());
    assert_eq!(taken["owner_uid"], admin.uid);
    assert_eq!(taken["state"], "suspended");
    assert_eq!(taken["max_download_size"], 1 << 20, "properties move");
    let headers: Vec<&str> = taken["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(headers, ["X-Trace: visible"], "secret headers stay behind");
    assert!(taken["credentials"].is_null(), "{taken}");
    assert_eq!(taken["notify_command"].as_array().map(Vec::len), Some(0));

    // It is no longer A's, and it is in one place only.
    let err = env.ferry(a, &["info", &job]).expect_err("A's info");
    assert!(err.contains("no job"), "{err}");
    let listed = json(
        &env.root_ferry(&["--json", "list", "--all", "--all-users"])
            .expect_ok("list"),
    );
    let copies: Vec<&serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["id"] == job.as_str())
        .collect();
    assert_eq!(copies.len(), 1, "{listed}");
    assert_eq!(copies[0]["owner_uid"], admin.uid);

    // Taking one's own job changes nothing.
    let again = json(
        &env.ferry(admin, &["--json", "takeown", &job])
            .expect_ok("again"),
    );
    assert_eq!(again["owner_uid"], admin.uid);

    // The admin runs it: the file is written as the admin.
    env.ferry(admin, &["resume", &job]).expect_ok("resume");
    env.wait_state(&job, &["transferred"]);
    env.ferry(admin, &["complete", &job]).expect_ok("complete");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(std::fs::metadata(&dest).unwrap().uid(), admin.uid);

    let log = env.log();
    let line = format!(
        "administrator uid {} took over job {job} of uid {}",
        admin.uid, a.uid
    );
    wait_until(Duration::from_secs(10), "the log line", || {
        env.log().contains(&line).then_some(())
    });
    assert!(!log.contains("s3cret"), "the secret never reaches the log");
}
