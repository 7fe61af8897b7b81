//! The system-wide ferryd writes and reads a job's files as the job's owner
//! (`cargo test system_mode`): A's downloads are A's with A's umask, and every attempt of
//! A to make the root daemon write or read where A cannot is refused or fails, leaving
//! everything outside A's reach as it was (contents, owners, modes, inodes).

mod system;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_testkit::{random_bytes, wait_until, Fault, TestServer};
use system::{fingerprint, names_in, users, SystemEnv, User};

/// Runs a shell script as `user` in their test folder (`$1`, `$2`… follow).
fn sh_as(env: &SystemEnv, user: &User, script: &str, args: &[&str]) {
    let mut cmd = env.as_user(user);
    cmd.args(["/bin/sh", "-ec", script, "sh"]).args(args);
    system::run_bounded(cmd).expect_ok(script);
}

/// The part file of `name` in `dir`, once it exists.
fn part_of(dir: &Path, name: &str) -> PathBuf {
    let prefix = format!(".{name}.ferry-");
    wait_until(
        Duration::from_secs(60),
        &format!("the part file of {name}"),
        || {
            names_in(dir)
                .into_iter()
                .find(|n| n.starts_with(&prefix) && n.ends_with(".part"))
                .map(|n| dir.join(n))
        },
    )
}

/// A file only root may change (0644, in the test's folder, which everyone may enter).
fn root_file(env: &SystemEnv, name: &str) -> PathBuf {
    let p = env.env.dir.path().join(name);
    std::fs::write(&p, format!("{name}: root's, never to change\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_download_is_the_owners_with_the_owners_umask() {
    let users = users("system_mode_download_is_the_owners_with_the_owners_umask");
    let env = SystemEnv::start(users, "");
    let a = &users.a;
    let server = TestServer::start();
    let data = random_bytes(2 << 20, 12);
    server.add_file("/a.bin", data.clone());
    server.push_fault("/a.bin", Fault::StallAfter(4096));

    // The job takes the umask of the process that creates it.
    let job = env
        .ferry_with_umask(a, "027", &["create", "a-download"])
        .expect_ok("create");
    env.ferry_with_umask(
        a,
        "027",
        &["add-file", &job, &server.url("/a.bin"), "a.bin"],
    )
    .expect_ok("add-file");
    env.ferry_with_umask(a, "027", &["resume", &job])
        .expect_ok("resume");
    // While the transfer waits, the part file is A's and private.
    let part = part_of(&env.home_a, "a.bin");
    let meta = std::fs::metadata(&part).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (a.uid, a.gid),
        "the part file is A's"
    );
    assert_eq!(meta.mode() & 0o777, 0o600, "the part file is private");
    server.release_stalls();
    env.wait_state(&job, &["transferred"]);
    env.ferry(a, &["complete", &job]).expect_ok("complete");
    let file = env.home_a.join("a.bin");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (a.uid, a.gid), "the file is A's");
    assert_eq!(meta.mode() & 0o777, 0o640, "0666 less A's umask 027");
    assert_eq!(std::fs::read(&file).unwrap(), data);
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_destinations_out_of_the_owners_reach_are_refused() {
    let users = users("system_mode_destinations_out_of_the_owners_reach_are_refused");
    let env = SystemEnv::start(users, "");
    let a = &users.a;
    let job = env.create(a, "a-attacks");
    let url = "http://127.0.0.1:9/x";
    let in_b = env.home_b.join("planted");
    let in_etc = Path::new("/etc/ferry-test-planted");
    for dest in [in_b.as_path(), in_etc] {
        let err = env
            .ferry(a, &["add-file", &job, url, dest.to_str().unwrap()])
            .expect_err(&format!("a destination {}", dest.display()));
        assert!(
            err.contains(dest.parent().unwrap().to_str().unwrap())
                && err.contains("ermission denied"),
            "the refusal names the folder and why: {err}"
        );
        assert!(!dest.exists());
    }
    assert!(names_in(&env.home_b).is_empty(), "nothing in B's folder");
    let files = env.ferry(a, &["--json", "files", &job]).expect_ok("files");
    assert_eq!(files.trim(), "[]", "no file was added");
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_symlinks_swapped_in_never_lead_the_daemon_astray() {
    let users = users("system_mode_symlinks_swapped_in_never_lead_the_daemon_astray");
    let env = SystemEnv::start(users, "");
    let a = &users.a;
    let server = TestServer::start();
    server.add_file("/f", b"A's bytes\n".to_vec());

    // 1. Between add-file and the transfer: A's folder `d` becomes a link to a folder
    //    of root's and to B's folder.
    for (n, target) in [(1, env.root_only.clone()), (2, env.home_b.clone())] {
        let job = env.create(a, &format!("swap-before-{n}"));
        let dir = format!("d{n}");
        sh_as(&env, a, "mkdir \"$1\"", &[&dir]);
        env.ferry(
            a,
            &["add-file", &job, &server.url("/f"), &format!("{dir}/f")],
        )
        .expect_ok("add-file into A's folder");
        sh_as(
            &env,
            a,
            "mv \"$1\" \"$1.moved\" && ln -s \"$2\" \"$1\"",
            &[&dir, target.to_str().unwrap()],
        );
        env.ferry(a, &["resume", &job]).expect_ok("resume");
        env.wait_state(&job, &["error", "transient_error"]);
        let info = env.ferry(a, &["info", &job]).expect_ok("info");
        assert!(
            info.contains("ermission denied"),
            "the job's error says why: {info}"
        );
        assert!(
            names_in(&target).is_empty(),
            "nothing created in {target:?}"
        );
        env.ferry(a, &["cancel", &job]).expect_ok("cancel");
    }

    // 2. Between the transfer and complete: the folder becomes a link to B's folder,
    //    and (second job) the part file becomes a link to a file of root's.
    let victim = root_file(&env, "root-file");
    let before = fingerprint(&victim);
    let job = env.create(a, "swap-after");
    sh_as(&env, a, "mkdir e", &[]);
    env.ferry(a, &["add-file", &job, &server.url("/f"), "e/f"])
        .expect_ok("add-file");
    env.ferry(a, &["resume", &job]).expect_ok("resume");
    env.wait_state(&job, &["transferred"]);
    sh_as(
        &env,
        a,
        "mv e e.moved && ln -s \"$1\" e",
        &[env.home_b.to_str().unwrap()],
    );
    let err = env.ferry(a, &["complete", &job]).expect_err("complete");
    assert!(err.contains("e/f"), "the error names the file: {err}");
    assert!(
        names_in(&env.home_b).is_empty(),
        "nothing moved into B's folder"
    );

    let job = env.create(a, "part-swapped");
    env.ferry(a, &["add-file", &job, &server.url("/f"), "g"])
        .expect_ok("add-file");
    env.ferry(a, &["resume", &job]).expect_ok("resume");
    env.wait_state(&job, &["transferred"]);
    let part = part_of(&env.home_a, "g");
    sh_as(
        &env,
        a,
        "rm -f \"$1\" && ln -s \"$2\" \"$1\"",
        &[part.to_str().unwrap(), victim.to_str().unwrap()],
    );
    let _ = env.ferry(a, &["complete", &job]);
    assert_eq!(fingerprint(&victim), before, "root's file is untouched");
    // Whatever `g` became, it is no file of root's.
    if let Ok(m) = std::fs::symlink_metadata(env.home_a.join("g")) {
        assert!(m.file_type().is_symlink() || m.uid() == a.uid, "{m:?}");
    }
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_hard_links_uploads_and_replies_stay_in_the_owners_reach() {
    let users = users("system_mode_hard_links_uploads_and_replies_stay_in_the_owners_reach");
    let env = SystemEnv::start(users, "");
    let a = &users.a;
    let server = TestServer::start();
    server.add_file("/f", b"A's bytes\n".to_vec());

    // A hard link to a file of root's in A's folder (made by root here: the kernel's
    // protected_hardlinks would stop A) as a destination: root's file stays as it was.
    let victim = root_file(&env, "linked");
    let before = fingerprint(&victim);
    std::fs::hard_link(&victim, env.home_a.join("hl")).unwrap();
    let job = env.create(a, "hard-link");
    if env
        .ferry(a, &["add-file", &job, &server.url("/f"), "hl"])
        .ok
    {
        env.ferry(a, &["resume", &job]).expect_ok("resume");
        env.wait_state(&job, &["transferred", "error"]);
        let _ = env.ferry(a, &["complete", &job]);
    }
    let after = fingerprint(&victim);
    assert_eq!(
        (&after.0, after.1, after.2, after.3, after.4),
        (&before.0, before.1, before.2, before.3, before.4),
        "root's hard-linked file is untouched"
    );

    // An upload of /etc/shadow: refused, and the server receives nothing.
    let up = env
        .ferry(a, &["create", "--type", "upload", "shadow"])
        .expect_ok("create upload");
    let err = env
        .ferry(a, &["add-file", &up, &server.url("/up"), "/etc/shadow"])
        .expect_err("an upload of /etc/shadow");
    assert!(
        err.contains("/etc/shadow") && err.contains("ermission denied"),
        "{err}"
    );
    assert_eq!(server.request_count("/up"), 0);

    // A reply file in /root: refused, and nothing is created there.
    let source = env.home_a.join("source.txt");
    sh_as(&env, a, "echo hello > source.txt", &[]);
    let reply_job = env
        .ferry(a, &["create", "--type", "upload_reply", "reply"])
        .expect_ok("create upload_reply");
    env.ferry(
        a,
        &[
            "add-file",
            &reply_job,
            &server.url("/reply"),
            source.to_str().unwrap(),
        ],
    )
    .expect_ok("add-file of A's own file");
    let reply = Path::new("/root/ferry-test-reply");
    let set = env.ferry(
        a,
        &["set", &reply_job, "--reply-file", reply.to_str().unwrap()],
    );
    if set.ok {
        // Accepted as a name: the transfer must then fail to write it.
        server.set_upload_reply("/reply", 200, b"the reply".to_vec());
        env.ferry(a, &["resume", &reply_job]).expect_ok("resume");
        env.wait_state(&reply_job, &["error", "transient_error", "transferred"]);
    } else {
        assert!(set.stderr.contains("/root"), "{}", set.stderr);
    }
    assert!(!reply.exists(), "no reply file in /root");

    // With no reply file named, the reply goes to A's own folder in the daemon's state
    // folder, written as A (A reaches it; B and other users do not).
    let own = env
        .ferry(a, &["create", "--type", "upload_reply", "own-reply"])
        .expect_ok("create upload_reply");
    env.ferry(
        a,
        &[
            "add-file",
            &own,
            &server.url("/own"),
            source.to_str().unwrap(),
        ],
    )
    .expect_ok("add-file");
    server.set_upload_reply("/own", 200, b"A's reply".to_vec());
    env.ferry(a, &["resume", &own]).expect_ok("resume");
    env.wait_state(&own, &["transferred"]);
    let kept = env
        .env
        .state_dir
        .join(format!("users/{}/replies/{own}.reply", a.uid));
    assert_eq!(std::fs::read(&kept).unwrap(), b"A's reply");
    let m = std::fs::metadata(&kept).unwrap();
    assert_eq!(m.uid(), a.uid, "the reply is A's");
    let folder = std::fs::metadata(kept.parent().unwrap().parent().unwrap()).unwrap();
    assert_eq!((folder.uid(), folder.mode() & 0o777), (a.uid, 0o700));
}
