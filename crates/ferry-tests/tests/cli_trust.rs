//! The command line people trust (issue 28, its command-line and packaging part), against
//! the real daemon and a local server (`cargo test cli_trust`): exit codes that say what
//! failed, output into a closed pipe that ends quietly, completions and man pages from the
//! binary, one JSON shape for a job in every command, errors as JSON, durations as people
//! write them, the README's tour run as it is written, and the Debian package lintian-clean.
//!
//! The JSON shape is checked by typed round-trips: `JobJson` and its siblings name every
//! field with its type, refuse unknown fields, refuse a missing one (the `present` helper
//! for fields that may be null) and refuse `null` where a list is (`Vec`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use ferry_client::{JobState, JobType, Priority};
use ferry_testkit::{random_bytes, sha256_hex, TestEnv, TestServer};
use serde::{Deserialize, Deserializer};

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A field that must be there, null or not.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// A job as every command prints it under `--json`.
#[allow(dead_code)] // Read by serde: the types are the check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobJson {
    id: ferry_client::Uuid,
    display_name: String,
    description: String,
    #[serde(rename = "type", deserialize_with = "present")]
    job_type: Option<JobType>,
    #[serde(deserialize_with = "present")]
    priority: Option<Priority>,
    #[serde(deserialize_with = "present")]
    state: Option<JobState>,
    owner_uid: u32,
    #[serde(deserialize_with = "present")]
    bytes_total: Option<u64>,
    bytes_transferred: u64,
    files_total: u32,
    files_transferred: u32,
    #[serde(deserialize_with = "present")]
    error: Option<JobErrorJson>,
    error_count: u32,
    created_unix_ms: i64,
    modified_unix_ms: i64,
    #[serde(deserialize_with = "present")]
    transferred_unix_ms: Option<i64>,
    notify_flags: u32,
    #[serde(deserialize_with = "present")]
    notification_class: Option<ferry_client::Uuid>,
    notify_command: Vec<String>,
    minimum_retry_delay_secs: u64,
    no_progress_timeout_secs: u64,
    max_transfer_time_secs: u64,
    partial: bool,
    last_notification_error: String,
    headers: Vec<String>,
    #[serde(deserialize_with = "present")]
    credentials: Option<String>,
    proxy: String,
    #[serde(deserialize_with = "present")]
    ca_file: Option<String>,
    bandwidth_limit: u64,
    #[serde(deserialize_with = "present")]
    upload_protocol: Option<String>,
    #[serde(deserialize_with = "present")]
    reply_file: Option<String>,
    connections: u32,
    bytes_per_second: u64,
    #[serde(deserialize_with = "present")]
    umask: Option<u32>,
    #[serde(deserialize_with = "present")]
    peers: Option<String>,
    bytes_from_origin: u64,
    bytes_from_peers: u64,
    #[serde(deserialize_with = "present")]
    on_metered: Option<String>,
    waiting_for_unmetered: bool,
    yielding: bool,
    cost_flags: u32,
    cost_flags_set: bool,
    ignore_congestion: bool,
    headers_write_only: bool,
    auto_complete: bool,
    insecure_tls: bool,
    keep_going: bool,
    #[serde(deserialize_with = "present")]
    redirect_policy: Option<String>,
    pinned_public_keys: Vec<String>,
    #[serde(deserialize_with = "present")]
    crl_file: Option<String>,
    #[serde(deserialize_with = "present")]
    client_certificate: Option<String>,
    #[serde(deserialize_with = "present")]
    client_key: Option<String>,
    #[serde(deserialize_with = "present")]
    proxy_credentials: Option<String>,
    max_download_size: u64,
    minimum_notification_interval_ms: u64,
    #[serde(deserialize_with = "present")]
    http_method: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobErrorJson {
    #[serde(deserialize_with = "present")]
    context: Option<String>,
    code: String,
    message: String,
    #[serde(deserialize_with = "present")]
    file_index: Option<u32>,
}

/// What `complete --json` prints.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteJson {
    job: JobJson,
    files_committed: u32,
    files_discarded: u32,
}

/// A line of `watch --json`.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventJson {
    #[serde(rename = "__CLASS")]
    class: String,
    #[serde(rename = "TargetInstance")]
    target: JobJson,
    #[serde(rename = "PreviousInstance", default)]
    previous: Option<JobJson>,
    #[serde(rename = "TIME_CREATED")]
    time_created: i64,
}

/// What a failure prints on standard error under `--json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorJson {
    error: ErrorBody,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    exit_code: i32,
    kind: String,
    message: String,
    #[serde(deserialize_with = "present")]
    hint: Option<String>,
    #[serde(deserialize_with = "present")]
    reason: Option<String>,
    #[serde(deserialize_with = "present")]
    job_id: Option<ferry_client::Uuid>,
    #[serde(deserialize_with = "present")]
    job_error: Option<JobErrorJson>,
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, text: &str) -> T {
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{what} does not have the one JSON shape ({e}): {text}"))
}

/// Runs `ferry ARGS` and returns its output (whatever its exit).
fn ferry_out(env: &TestEnv, args: &[&str]) -> Output {
    let mut cmd = ferry(env);
    cmd.args(args);
    run(cmd)
}

/// `ferry ARGS`, which must exit with `code`; the output.
fn exits_with(env: &TestEnv, args: &[&str], code: i32) -> Output {
    let out = ferry_out(env, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "ferry {args:?}\nstdout: {}\nstderr: {}",
        stdout_of(&out),
        stderr_of(&out)
    );
    out
}

#[test]
fn cli_trust_exit_codes_say_what_failed() {
    let env = TestEnv::new();
    // One file at a time, in order: a job's first file is transferred before its second
    // fails (the partial `complete` below).
    let config = env.dir.path().join("ferryd.toml");
    std::fs::write(&config, "files_in_parallel = 1\n").unwrap();
    let _d = env.start_daemon_with(&["--config", s(&config)]);
    let server = TestServer::start();
    server.add_file("/ok.bin", random_bytes(10_000, 281));
    let dest = |name: &str| env.files.join(name).to_string_lossy().into_owned();

    // Usage: clap's, ferry's own checks, and a value ferryd refused.
    exits_with(&env, &["get"], 2);
    exits_with(&env, &["info", "not-a-job"], 2);
    exits_with(&env, &["create", "x", "--priority", "fast"], 2);
    let job = run_ok({
        let mut c = ferry(&env);
        c.args(["create", "target"]);
        c
    });
    let job = job.trim();
    exits_with(
        &env,
        &["add-file", job, "gopher://example.com/x", &dest("x")],
        2,
    );
    exits_with(&env, &["set", job, "--bandwidth", "fast"], 2);
    exits_with(&env, &["set", job, "--basic", "no-colon"], 2);
    // No such job.
    let unknown = "0190c3a4-0000-7000-8000-000000000000";
    exits_with(&env, &["info", unknown], 110);
    exits_with(&env, &["cancel", unknown], 110);
    // No daemon there, and not allowed to start one.
    let elsewhere = env.dir.path().join("elsewhere.sock");
    exits_with(
        &env,
        &["--socket", elsewhere.to_str().unwrap(), "list"],
        111,
    );
    // The server's answer. (A 5xx, 112, is retried until the job's no-progress timeout,
    // which ferryd does not apply to server errors yet: the mapping is unit-tested in
    // ferry-cli's exit.rs.)
    exits_with(
        &env,
        &["get", &server.url("/missing"), "-o", &dest("m")],
        22,
    );
    // A wrong SHA-256.
    exits_with(
        &env,
        &[
            "get",
            &server.url("/ok.bin"),
            "-o",
            &dest("checked"),
            "--sha256",
            &"0".repeat(64),
        ],
        32,
    );
    // A server certificate nobody trusts.
    let (tls_server, _material) = TestServer::start_tls();
    tls_server.add_file("/tls.bin", random_bytes(1000, 282));
    exits_with(
        &env,
        &["get", &tls_server.url("/tls.bin"), "-o", &dest("tls")],
        60,
    );
    // `complete` of a job in error puts what it has in place and says it was partial.
    let failing = run_ok({
        let mut c = ferry(&env);
        c.args(["create", "half"]);
        c
    });
    let failing = failing.trim();
    run_ok({
        let mut c = ferry(&env);
        c.args([
            "add-file",
            failing,
            &server.url("/ok.bin"),
            &dest("half-ok"),
        ]);
        c
    });
    run_ok({
        let mut c = ferry(&env);
        c.args([
            "add-file",
            failing,
            &server.url("/gone"),
            &dest("half-gone"),
        ]);
        c
    });
    run_ok({
        let mut c = ferry(&env);
        c.args(["resume", failing]);
        c
    });
    exits_with(&env, &["wait", failing], 22);
    let out = exits_with(&env, &["complete", failing], 113);
    assert!(stderr_of(&out).contains("partially"), "{}", stderr_of(&out));
    assert!(env.files.join("half-ok").exists() && !env.files.join("half-gone").exists());

    // The table lists every code used here.
    let table = stdout_of(&exits_with(&env, &["help", "exit-codes"], 0));
    for code in [2, 22, 32, 60, 110, 111, 113] {
        assert!(
            table
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "{code} in the table:\n{table}"
        );
    }
}

/// `ferry files validate JOB INDEX --valid|--invalid`, the application's
/// SetValidationState from the shell: its verdicts, what they do to the job, and its
/// errors with the codes of the exit-code table.
#[test]
fn cli_trust_files_validate_judges_a_transferred_file() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.add_file("/a.bin", random_bytes(20_000, 291));
    server.add_file("/b.bin", random_bytes(20_000, 292));
    let dest = |name: &str| env.files.join(name).to_string_lossy().into_owned();
    let ok = |args: &[&str]| stdout_of(&exits_with(&env, args, 0));
    let job = ok(&["create", "judged"]);
    let job = job.trim();
    ok(&["add-file", job, &server.url("/a.bin"), &dest("a.bin")]);
    ok(&["add-file", job, &server.url("/b.bin"), &dest("b.bin")]);

    // Not transferred yet: refused, saying when it can be.
    let out = exits_with(&env, &["files", "validate", job, "0", "--valid"], 1);
    assert!(
        stderr_of(&out).contains("not transferred yet"),
        "{}",
        stderr_of(&out)
    );
    ok(&["resume", job]);
    ok(&["wait", job]);

    let said = ok(&["files", "validate", job, "0", "--valid"]);
    assert!(said.contains("validated"), "{said}");
    let files: serde_json::Value = parse("files", &ok(&["--json", "files", job]));
    assert_eq!(files[0]["validated"], true, "{files}");
    assert_eq!(files[1]["validated"], serde_json::Value::Null, "{files}");
    let f: serde_json::Value = parse(
        "the judged file",
        &ok(&["--json", "files", "validate", job, "1", "--invalid"]),
    );
    assert_eq!(f["index"], 1, "{f}");
    assert_eq!(f["completed"], false, "{f}");
    let info: serde_json::Value = parse("info", &ok(&["--json", "info", job]));
    assert_eq!(info["state"], "error", "{info}");
    assert_eq!(info["error"]["code"], "validation_failed", "{info}");

    // Its errors: a bad command line, no such job, no such file.
    exits_with(&env, &["files", "validate", job, "0"], 2);
    exits_with(
        &env,
        &["files", "validate", job, "0", "--valid", "--invalid"],
        2,
    );
    exits_with(&env, &["files", "validate", job, "x", "--valid"], 2);
    exits_with(&env, &["files", "validate", "not-a-job", "0", "--valid"], 2);
    let unknown = "0190c3a4-0000-7000-8000-000000000000";
    exits_with(&env, &["files", "validate", unknown, "0", "--valid"], 110);
    let out = exits_with(&env, &["files", "validate", job, "7", "--valid"], 1);
    assert!(stderr_of(&out).contains("no file 7"), "{}", stderr_of(&out));
    // Listing is unchanged.
    assert!(ok(&["files", job]).contains("a.bin"));
}

#[test]
fn cli_trust_errors_are_json_under_json_and_name_no_grpc_code() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let unknown = "0190c3a4-0000-7000-8000-000000000000";
    let out = exits_with(&env, &["--json", "info", unknown], 110);
    assert!(out.stdout.is_empty(), "no result: {}", stdout_of(&out));
    let e: ErrorJson = parse("info's error", &stderr_of(&out));
    assert_eq!(e.error.exit_code, 110);
    assert_eq!(e.error.kind, "unknown_job");
    assert_eq!(e.error.reason.as_deref(), Some("JOB_NOT_FOUND"));
    assert!(e.error.hint.is_some());

    // A failed get: the job on standard output (its error in it), the error on stderr.
    let dest = env.files.join("nope");
    let out = exits_with(
        &env,
        &["--json", "get", &server.url("/nope"), "-o", s(&dest)],
        22,
    );
    let job: JobJson = parse("get's job", &stdout_of(&out));
    assert_eq!(job.error.as_ref().unwrap().code, "http_404");
    let e: ErrorJson = parse("get's error", &stderr_of(&out));
    assert_eq!(e.error.kind, "http_client_error");
    assert_eq!(e.error.job_id, Some(job.id));
    assert_eq!(e.error.job_error.unwrap().code, "http_404");

    // As text: the message and the hint, no gRPC code.
    let out = exits_with(&env, &["resume", unknown], 110);
    let text = stderr_of(&out);
    assert!(text.contains(unknown) && text.contains("hint:"), "{text}");
    assert!(!text.contains("(code:"), "{text}");
    let out = exits_with(&env, &["query", "SELECT nonsense FROM"], 2);
    assert!(!stderr_of(&out).contains("(code:"), "{}", stderr_of(&out));
}

#[test]
fn cli_trust_one_json_shape_for_a_job_in_every_command() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.add_file("/a.bin", random_bytes(50_000, 283));
    let json = |args: &[&str]| stdout_of(&exits_with(&env, args, 0));

    let created: JobJson = parse("create", &json(&["--json", "create", "shaped"]));
    let id = created.id.to_string();
    assert!(created.headers.is_empty() && created.notify_command.is_empty());
    // A job with lists that are not empty, and one whose lists are.
    let set: JobJson = parse(
        "set",
        &json(&[
            "--json",
            "set",
            &id,
            "-H",
            "X-One: 1",
            "-H",
            "X-Two: a; b",
            "--notify-command",
            "--",
            "/bin/echo",
            "two words",
        ]),
    );
    assert_eq!(set.headers, ["X-One: 1", "X-Two: a; b"]);
    assert_eq!(set.notify_command, ["/bin/echo", "two words"]);
    let other: JobJson = parse("create", &json(&["--json", "create", "plain"]));

    // A watch that sees the next change.
    let mut watch = ferry(&env);
    watch
        .args([
            "--json",
            "watch",
            "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job'",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut watch = watch.spawn().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let dest = env.files.join("a.bin");
    run_ok({
        let mut c = ferry(&env);
        c.args(["add-file", &id, &server.url("/a.bin"), s(&dest)]);
        c
    });
    let resumed: JobJson = parse("resume", &json(&["--json", "resume", &id]));
    assert_eq!(resumed.id, created.id);
    let waited: JobJson = parse("wait", &json(&["--json", "wait", &id]));
    assert_eq!(waited.state, Some(JobState::Transferred));
    let info: JobJson = parse("info", &json(&["--json", "info", &id]));
    assert_eq!(info.headers, set.headers);
    let listed: Vec<JobJson> = parse("list", &json(&["--json", "list"]));
    assert_eq!(listed.len(), 2);
    let queried: Vec<JobJson> = parse("query", &json(&["--json", "query", "SELECT * FROM Job"]));
    assert_eq!(queried.len(), 2);
    let same = queried.iter().find(|j| j.id == created.id).unwrap();
    assert_eq!(same.headers, set.headers, "lists, not joined text");
    assert_eq!(same.notify_command, set.notify_command);
    let plain = queried.iter().find(|j| j.id != created.id).unwrap();
    assert!(plain.headers.is_empty() && plain.notify_command.is_empty());

    // A query that selects some properties: the same names, types and values as info.
    let info_value: serde_json::Value =
        serde_json::from_str(&json(&["--json", "info", &id])).unwrap();
    let picked: serde_json::Value = serde_json::from_str(&json(&[
        "--json",
        "query",
        &format!("SELECT id, state, headers, yielding FROM Job WHERE id = '{id}'"),
    ]))
    .unwrap();
    let picked = picked[0].as_object().unwrap();
    assert_eq!(picked.len(), 4, "{picked:?}");
    for (name, value) in picked {
        assert_eq!(value, &info_value[name], "{name}");
    }

    let event = wait_until_line(&lines, "a modification event");
    let event: EventJson = parse("watch", &event);
    assert_eq!(event.class, "__InstanceModificationEvent");
    assert!(event.previous.is_some());
    let _ = watch.kill();
    let _ = watch.wait();

    let done: CompleteJson = parse("complete", &json(&["--json", "complete", &id]));
    assert_eq!(done.files_committed, 1);
    let got: JobJson = parse(
        "get",
        &json(&[
            "--json",
            "get",
            &server.url("/a.bin"),
            "-o",
            s(&env.files.join("again.bin")),
        ]),
    );
    assert_eq!(got.state, Some(JobState::Acknowledged));
    let cancelled: JobJson = parse(
        "cancel",
        &json(&["--json", "cancel", &other.id.to_string()]),
    );
    assert_eq!(cancelled.state, Some(JobState::Cancelled));
}

/// The next line `lines` receives, within the deadline.
fn wait_until_line(lines: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    lines
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
}

#[test]
fn cli_trust_durations_read_as_people_write_them() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let id = run_ok({
        let mut c = ferry(&env);
        c.args(["create", "durations"]);
        c
    });
    let id = id.trim();
    run_ok({
        let mut c = ferry(&env);
        c.args([
            "set",
            id,
            "--min-retry-delay",
            "90s",
            "--max-transfer-time",
            "90m",
        ]);
        c
    });
    let info = stdout_of(&exits_with(&env, &["info", id], 0));
    assert!(info.contains("no-progress stop: 14days"), "{info}");
    assert!(info.contains("retry delay:      1m 30s"), "{info}");
    assert!(info.contains("max time:         1h 30m"), "{info}");
    assert!(!info.contains(" s\n"), "no bare seconds: {info}");
}

/// `ferry ARGS` with its standard output a pipe whose reader is gone.
fn into_a_closed_pipe(env: &TestEnv, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = ferry(env);
    cmd.args(args).stdout(writer).stderr(Stdio::piped());
    cmd.output().unwrap()
}

#[test]
fn cli_trust_output_into_a_closed_pipe_ends_quietly() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let id = run_ok({
        let mut c = ferry(&env);
        c.args(["create", "piped"]);
        c
    });
    let id = id.trim();
    for args in [
        vec!["info", id],
        vec!["list"],
        vec!["--json", "list"],
        vec!["peers", "status"],
        vec!["query", "SELECT * FROM Job"],
        vec!["help", "exit-codes"],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        let out = into_a_closed_pipe(&env, &args);
        assert_eq!(
            out.status.code(),
            Some(141),
            "ferry {args:?}: {}",
            stderr_of(&out)
        );
        assert!(
            out.stderr.is_empty(),
            "ferry {args:?} is quiet: {}",
            stderr_of(&out)
        );
    }
}

#[test]
fn cli_trust_completions_and_man_pages_come_from_the_binary() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&exits_with(&env, &["completions", shell], 0));
        assert!(
            script.contains("add-file") && script.contains("completions"),
            "{shell} knows the commands: {script}"
        );
    }
    let bash = stdout_of(&exits_with(&env, &["completions", "bash"], 0));
    let check = Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash reads it: {}",
        stderr_of(&check)
    );

    let top = stdout_of(&exits_with(&env, &["man"], 0));
    assert!(top.contains(".TH ferry 1"), "{top}");
    assert!(
        top.contains("EXIT STATUS") && top.contains("unknown_job"),
        "{top}"
    );
    let get = stdout_of(&exits_with(&env, &["man", "get"], 0));
    assert!(
        get.contains(".TH ferry-get 1") && get.contains("sha256"),
        "{get}"
    );
    let nested = stdout_of(&exits_with(&env, &["man", "peers", "ca", "new"], 0));
    assert!(nested.contains(".TH ferry-peers-ca-new 1"), "{nested}");
    exits_with(&env, &["man", "nonsense"], 2);
    // man(1) reads it, where it is installed.
    if Path::new("/usr/bin/man").exists() {
        let mut man = Command::new("man")
            .args(["-l", "-"])
            .env("MANPAGER", "cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        man.stdin.take().unwrap().write_all(top.as_bytes()).unwrap();
        let shown = man.wait_with_output().unwrap();
        assert!(shown.status.success(), "{}", stderr_of(&shown));
        assert!(stdout_of(&shown).contains("EXIT STATUS"));
    }
    let dir = env.files.join("man1");
    exits_with(&env, &["man", "--dir", s(&dir)], 0);
    let pages = dir_entries(&dir);
    for page in [
        "ferry.1",
        "ferry-get.1",
        "ferry-daemon-stop.1",
        "ferry-man.1",
    ] {
        assert!(pages.contains(&page.to_string()), "{page} in {pages:?}");
    }
    // `ferry help` knows commands and topics.
    let help = stdout_of(&exits_with(&env, &["help", "get"], 0));
    assert!(help.contains("--sha256"), "{help}");
    exits_with(&env, &["help", "nonsense"], 2);
}

/// The `sh` blocks of the README's tour section, in order.
fn readme_tour() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let start = readme
        .find("## A short tour of the command line")
        .expect("the tour's heading");
    let end = start
        + readme[start..]
            .find("\n### ")
            .expect("the tour's first subsection");
    let mut script = String::new();
    let mut in_sh = false;
    for line in readme[start..end].lines() {
        match (in_sh, line.trim_end()) {
            (false, "```sh") => in_sh = true,
            (true, "```") => in_sh = false,
            (true, line) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

#[test]
fn cli_trust_readme_tour_runs_verbatim() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let semantics = random_bytes(300_000, 284);
    let caching = random_bytes(200_000, 285);
    server.add_file("/rfc/rfc9110.txt", semantics.clone());
    server.add_file("/rfc/rfc9111.txt", caching.clone());
    server.enable_tus("/files/");
    let tour = readme_tour();
    assert!(
        tour.contains("ferry get") && tour.contains("ferry add-file"),
        "{tour}"
    );
    // The same commands, against the local server instead of the public ones.
    let script = tour
        .replace("https://www.rfc-editor.org", &server.base_url())
        .replace("https://tusd.tusdemo.net", &server.base_url());
    let here = env.files.join("tour");
    std::fs::create_dir(&here).unwrap();
    let ferry_bin = ferry_testkit::target_dir_bin("ferry");
    let path = format!(
        "{}:{}",
        ferry_bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A home of its own: the tour installs completions and man pages there.
    let home = env.files.join("home");
    std::fs::create_dir(&home).unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&here)
        .envs(env.envs())
        .env("PATH", path)
        .env("HOME", &home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the tour failed ({}):\n{script}\nstdout: {}\nstderr: {}",
        out.status,
        stdout_of(&out),
        stderr_of(&out)
    );
    let sha = |name: &str| file_sha(&here.join(name));
    assert_eq!(sha("http-semantics.txt"), sha256_hex(&semantics));
    assert_eq!(sha("checked.txt"), sha256_hex(&semantics));
    assert_eq!(sha("caching.txt"), sha256_hex(&caching));
    assert_eq!(sha("with-options.txt"), sha256_hex(&semantics));
    assert_eq!(sha("rfcs/rfc9110.txt"), sha256_hex(&semantics));
    assert_eq!(sha("rfcs/rfc9111.txt"), sha256_hex(&caching));
    assert_eq!(sha("nightly.txt"), sha256_hex(&semantics));
    assert!(
        !here.join("later.txt").exists(),
        "the cancelled job left nothing"
    );
    let sent = server.requests("/rfc/rfc9110.txt");
    assert!(
        sent.iter().any(|r| r.header("x-token") == Some("t")),
        "-H went with the request"
    );
    let uploads = server.tus_uploads();
    assert_eq!(uploads.len(), 1, "the backup was uploaded");
    assert_eq!(
        uploads[0].3,
        std::fs::read(here.join("backup.tar")).unwrap(),
        "every byte of it"
    );
    // The watch saw the nightly job move.
    assert!(stdout_of(&out).contains("__InstanceModificationEvent"));
    // Completions and man pages installed as the README says.
    for installed in [
        ".local/share/bash-completion/completions/ferry",
        ".zfunc/_ferry",
        ".config/fish/completions/ferry.fish",
        ".local/share/man/man1/ferry.1",
        ".local/share/man/man1/ferry-get.1",
    ] {
        let path = home.join(installed);
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
            "{}",
            path.display()
        );
    }
}

#[test]
fn cli_trust_readme_has_the_exit_code_table() {
    let env = TestEnv::new();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let table = stdout_of(&exits_with(&env, &["help", "exit-codes"], 0));
    let mut rows = 0;
    for line in table.lines() {
        let mut words = line.split_whitespace();
        let (Some(code), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        if code.parse::<u8>().is_err() {
            continue;
        }
        rows += 1;
        assert!(
            readme.contains(&format!("| {code} | `{name}` |")),
            "the README's table has {code} {name}"
        );
    }
    assert!(rows >= 12, "{table}");
}

#[test]
#[ignore = "needs cargo-deb and lintian: .ci/run runs lintian on the package it builds"]
fn cli_trust_debian_package_is_lintian_clean() {
    let xtask = ferry_testkit::target_dir_bin("xtask");
    ferry_testkit::target_dir_bin("ferry");
    ferry_testkit::target_dir_bin("ferryd");
    let profile_dir = xtask.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    let out_dir = tempfile::tempdir().unwrap();
    let built = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../dist/deb/build"))
        .args([&profile, "-o"])
        .arg(out_dir.path())
        .env("FERRY_DEB_PREBUILT", "1")
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr_of(&built));
    let deb = dir_entries(out_dir.path())
        .into_iter()
        .find(|n| n.ends_with(".deb"))
        .expect("a .deb");
    let lint = Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(out_dir.path().join(deb))
        .output()
        .expect("lintian (apt-get install lintian)");
    let said = stdout_of(&lint);
    assert!(lint.status.success(), "lintian: {said}{}", stderr_of(&lint));
    assert!(
        !said
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{said}"
    );
}
