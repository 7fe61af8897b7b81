//! The `ferry` command line against a real daemon: one-shot `get`, the job commands,
//! `--json` output, refused input and `daemon status|stop`.

mod common;

use common::*;
use ferry_testkit::{random_bytes, sha256_hex, TestEnv, TestServer};
use serde_json::Value;

/// The fields every job has in `--json` output, and their JSON types.
fn assert_job_json(v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("a job is a JSON object: {v}"));
    for key in [
        "id",
        "display_name",
        "state",
        "priority",
        "bytes_total",
        "bytes_transferred",
        "files_total",
        "files_transferred",
        "error",
    ] {
        assert!(obj.contains_key(key), "the job JSON has `{key}`: {v}");
    }
    assert!(v["id"].is_string(), "{v}");
    assert!(v["display_name"].is_string(), "{v}");
    assert!(v["state"].is_string(), "{v}");
    assert!(v["priority"].is_string(), "{v}");
    assert!(
        v["bytes_total"].is_u64() || v["bytes_total"].is_null(),
        "{v}"
    );
    assert!(v["bytes_transferred"].is_u64(), "{v}");
    assert!(v["files_total"].is_u64(), "{v}");
    assert!(v["files_transferred"].is_u64(), "{v}");
    assert!(v["error"].is_null() || v["error"].is_object(), "{v}");
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn get_over_http_writes_the_whole_file() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let data = random_bytes(1_500_000, 201);
    server.add_file("/dl/data.bin", data.clone());
    let out_dir = env.files.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("saved.bin");
    let mut cmd = ferry(&env);
    cmd.args(["get", &server.url("/dl/data.bin"), "-o", s(&dest)]);
    run_ok(cmd);
    assert_eq!(file_sha(&dest), sha256_hex(&data));
    assert_eq!(
        dir_entries(&out_dir),
        vec!["saved.bin"],
        "no part file left"
    );
}

#[test]
fn get_of_a_url_list_fetches_every_file_into_one_folder() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    // More URLs than fit in a 4096-byte display name.
    let n = 400;
    let mut list = String::from("# a comment, then a blank line\n\n");
    for i in 0..n {
        server.add_file(
            &format!("/many/file-{i:04}.bin"),
            random_bytes(2000 + i, i as u64),
        );
        list.push_str(&server.url(&format!("/many/file-{i:04}.bin")));
        list.push('\n');
    }
    let list_path = env.files.join("urls.txt");
    std::fs::write(&list_path, list).unwrap();
    let out_dir = env.files.join("many");
    std::fs::create_dir(&out_dir).unwrap();
    let mut cmd = ferry(&env);
    cmd.args(["--json", "get", "-i", s(&list_path), "-o", s(&out_dir)]);
    let out = run_ok(cmd);
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["files_total"], n as u64, "{job}");
    let name = job["display_name"].as_str().unwrap();
    assert!(name.ends_with(&format!("(+{} more)", n - 1)), "{name}");
    assert_eq!(
        dir_entries(&out_dir).len(),
        n,
        "every file, no part file left"
    );
    for i in 0..n {
        let got = std::fs::read(out_dir.join(format!("file-{i:04}.bin"))).unwrap();
        assert_eq!(got, random_bytes(2000 + i, i as u64), "file {i}");
    }
}

#[test]
fn get_of_a_file_url_writes_the_whole_file() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let data = random_bytes(3 << 20, 202);
    let src = env.files.join("source.bin");
    std::fs::write(&src, &data).unwrap();
    let out_dir = env.files.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("copy.bin");
    let mut cmd = ferry(&env);
    cmd.args([
        "--json",
        "get",
        &format!("file://{}", s(&src)),
        "-o",
        s(&dest),
    ]);
    let job = run_json(cmd);
    assert_job_json(&job);
    assert_eq!(job["state"], "acknowledged");
    assert_eq!(job["bytes_transferred"], data.len() as u64);
    assert_eq!(file_sha(&dest), sha256_hex(&data));
    assert_eq!(dir_entries(&out_dir), vec!["copy.bin"]);
    assert_eq!(file_sha(&src), sha256_hex(&data), "the source is untouched");
}

#[test]
fn get_of_a_404_fails_and_leaves_no_file() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let dest = env.files.join("nothing.bin");
    let mut cmd = ferry(&env);
    cmd.args(["get", &server.url("/nope"), "-o", s(&dest)]);
    let out = run(cmd);
    assert!(!out.status.success(), "a 404 is a failure");
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("404") && stderr.contains("http_404"),
        "the error is shown: {stderr}"
    );
    assert!(!dest.exists());
    assert!(
        dir_entries(&env.files).is_empty(),
        "no part file either: {:?}",
        dir_entries(&env.files)
    );
}

#[test]
fn json_works_before_and_after_the_subcommand() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut cmd = ferry(&env);
    cmd.args(["--json", "create", "before"]);
    let before = run_json(cmd);
    assert_job_json(&before);
    assert_eq!(before["display_name"], "before");
    assert_eq!(before["state"], "suspended");
    assert_eq!(before["priority"], "normal");
    assert_eq!(before["files_total"], 0);
    assert_eq!(before["bytes_transferred"], 0);
    assert!(before["error"].is_null());

    let mut cmd = ferry(&env);
    cmd.args(["create", "after", "--priority", "high", "--json"]);
    let after = run_json(cmd);
    assert_job_json(&after);
    assert_eq!(after["display_name"], "after");
    assert_eq!(after["priority"], "high");

    let id = before["id"].as_str().unwrap();
    let mut cmd = ferry(&env);
    cmd.args(["--json", "info", id]);
    let a = run_json(cmd);
    let mut cmd = ferry(&env);
    cmd.args(["info", id, "--json"]);
    let b = run_json(cmd);
    assert_eq!(a, b, "the flag's position does not matter");
    assert_eq!(a["id"], id);
    assert_job_json(&a);

    let mut cmd = ferry(&env);
    cmd.args(["list", "--json"]);
    let list = run_json(cmd);
    let list = list.as_array().expect("a list is a JSON array");
    assert_eq!(list.len(), 2);
    list.iter().for_each(assert_job_json);
}

#[test]
fn create_add_file_resume_wait_complete() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let one = random_bytes(800_000, 211);
    let two = random_bytes(120_000, 212);
    server.add_file("/one", one.clone());
    server.add_file("/two", two.clone());

    let mut cmd = ferry(&env);
    cmd.args(["--json", "create", "by hand"]);
    let id = run_json(cmd)["id"].as_str().unwrap().to_string();

    let mut cmd = ferry(&env);
    cmd.args([
        "--json",
        "add-file",
        &id,
        &server.url("/one"),
        s(&env.files.join("one")),
    ]);
    let file = run_json(cmd);
    assert_eq!(file["index"], 0);
    assert_eq!(file["local_path"], s(&env.files.join("one")));
    // A relative destination is made absolute against the current folder.
    let mut cmd = ferry(&env);
    cmd.current_dir(&env.files)
        .args(["--json", "add-file", &id, &server.url("/two"), "two"]);
    let file = run_json(cmd);
    assert_eq!(file["index"], 1);
    let canonical = env.files.canonicalize().unwrap().join("two");
    assert_eq!(file["local_path"], s(&canonical));

    let mut cmd = ferry(&env);
    cmd.args(["resume", &id]);
    run_ok(cmd);
    let mut cmd = ferry(&env);
    cmd.args(["--json", "wait", &id]);
    let waited = run_json(cmd);
    assert_job_json(&waited);
    assert_eq!(waited["state"], "transferred", "{waited}");
    assert_eq!(waited["files_transferred"], 2);
    assert_eq!(waited["bytes_transferred"], (one.len() + two.len()) as u64);
    assert!(!env.files.join("one").exists(), "not before complete");
    assert!(!env.files.join("two").exists(), "not before complete");

    let mut cmd = ferry(&env);
    cmd.args(["--json", "complete", &id]);
    let done = run_json(cmd);
    assert_eq!(done["files_committed"], 2, "{done}");
    assert_eq!(done["files_discarded"], 0, "{done}");
    assert_eq!(done["job"]["state"], "acknowledged", "{done}");
    assert_eq!(file_sha(&env.files.join("one")), sha256_hex(&one));
    assert_eq!(file_sha(&env.files.join("two")), sha256_hex(&two));
    assert_eq!(dir_entries(&env.files), vec!["one", "two"]);

    // Acknowledged jobs leave the default list but stay in `--all`.
    let mut cmd = ferry(&env);
    cmd.args(["--json", "list"]);
    assert_eq!(run_json(cmd), serde_json::json!([]));
    let mut cmd = ferry(&env);
    cmd.args(["--json", "list", "--all"]);
    let all = run_json(cmd);
    assert_eq!(all[0]["id"], id.as_str());
    assert_eq!(all[0]["state"], "acknowledged");
}

#[test]
fn refused_input_exits_with_its_code_and_changes_nothing() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut cmd = ferry(&env);
    cmd.args(["--json", "create", "target"]);
    let id = run_json(cmd)["id"].as_str().unwrap().to_string();
    let mut cmd = ferry(&env);
    cmd.args(["--json", "create", "gone"]);
    let gone = run_json(cmd)["id"].as_str().unwrap().to_string();
    let mut cmd = ferry(&env);
    cmd.args(["cancel", &gone]);
    run_ok(cmd);
    let list_all = || {
        let mut cmd = ferry(&env);
        cmd.args(["--json", "list", "--all"]);
        run_json(cmd)
    };
    let before = list_all();

    // The exit code says what kind of refusal it was (`ferry help exit-codes`); the
    // message no longer names the gRPC code.
    let refused = |args: &[&str], code: i32, words: &[&str]| {
        let mut cmd = ferry(&env);
        cmd.args(args);
        let out = run(cmd);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(code), "ferry {args:?}: {stderr}");
        assert!(!stderr.contains("(code:"), "ferry {args:?}: {stderr}");
        for w in words {
            assert!(stderr.contains(w), "ferry {args:?} mentions {w}: {stderr}");
        }
    };
    let dest = env.files.join("x");
    refused(
        &["add-file", &id, "gopher://example.com/x", s(&dest)],
        2,
        &["scheme", "gopher"],
    );
    let unknown = "0190c3a4-0000-7000-8000-000000000000";
    refused(&["info", unknown], 110, &[unknown]);
    refused(&["resume", unknown], 110, &[unknown]);
    refused(&["complete", &gone], 1, &["cancelled"]);
    refused(&["resume", &id], 1, &["no files"]);

    // Not even sent to the daemon: not a job id.
    let mut cmd = ferry(&env);
    cmd.args(["info", "not-a-job"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        stderr_of(&out).contains("not a job id"),
        "{}",
        stderr_of(&out)
    );

    assert_eq!(list_all(), before, "nothing changed");
    assert!(dir_entries(&env.files).is_empty());
}

#[test]
fn the_daemon_speaks_of_the_api_and_the_command_line_adds_its_hints() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut cmd = ferry(&env);
    cmd.args(["create", "empty"]);
    let id = run_ok(cmd).trim().to_string();
    let unknown = "0190c3a4-0000-7000-8000-000000000000";
    let events = "SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'";
    for (args, api_words, hint) in [
        (
            vec!["resume", id.as_str()],
            "add some with AddFiles first",
            "hint: add files with `ferry add-file JOB URL PATH` first",
        ),
        (
            vec!["info", unknown],
            "ListJobs with all = true lists yours",
            "hint: `ferry list --all` shows your jobs",
        ),
        (
            vec!["query", events],
            "run it with ExecNotificationQuery",
            "hint: run an event query with `ferry watch`",
        ),
        (
            vec!["handler", "unregister", unknown],
            "ListHandlers lists them",
            "hint: `ferry handler list` shows the registered handlers",
        ),
    ] {
        let mut cmd = ferry(&env);
        cmd.args(&args);
        let out = run(cmd);
        assert!(!out.status.success(), "ferry {args:?} succeeded");
        let stderr = stderr_of(&out);
        let (message, rest) = stderr.split_once('\n').unwrap();
        assert!(message.contains(api_words), "ferry {args:?}: {stderr}");
        assert!(
            !message.contains("`ferry"),
            "the daemon's message names no command: {stderr}"
        );
        assert!(rest.starts_with(hint), "ferry {args:?}: {stderr}");
    }

    // Notify flags by name.
    let mut cmd = ferry(&env);
    cmd.args(["set", &id, "--notify-flags", "job_error,file_transferred"]);
    run_ok(cmd);
    let mut cmd = ferry(&env);
    cmd.args(["info", &id]);
    let info = run_ok(cmd);
    assert!(
        info.contains("notify flags:     job_error, file_transferred (0x12)"),
        "{info}"
    );
}

#[test]
fn daemon_status_and_stop() {
    let env = TestEnv::new();
    let mut d = env.start_daemon();
    let mut cmd = ferry(&env);
    cmd.args(["--json", "daemon", "status"]);
    let status = run_json(cmd);
    assert_eq!(status["pid"], d.pid(), "{status}");
    assert_eq!(status["socket_path"], s(&env.socket), "{status}");
    assert_eq!(status["jobs"], 0, "{status}");
    let mut cmd = ferry(&env);
    cmd.args(["daemon", "status"]);
    let text = run_ok(cmd);
    assert!(text.contains("running"), "{text}");
    assert!(text.contains(&d.pid().to_string()), "{text}");

    let mut cmd = ferry(&env);
    cmd.args(["daemon", "stop"]);
    let text = run_ok(cmd);
    assert!(text.contains("stopped"), "{text}");
    let exit = d.wait_exit(DEADLINE);
    assert!(exit.success(), "ferryd exited with {exit}");

    let mut cmd = ferry(&env);
    cmd.args(["daemon", "status"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(3), "status of a stopped daemon");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not running"),
        "{out:?}"
    );
    let mut cmd = ferry(&env);
    cmd.args(["--json", "daemon", "status"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], false);
    // Stopping what is not running is not an error.
    let mut cmd = ferry(&env);
    cmd.args(["daemon", "stop"]);
    let text = run_ok(cmd);
    assert!(text.contains("not running"), "{text}");
}
