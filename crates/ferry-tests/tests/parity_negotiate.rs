//! HTTP Negotiate (Kerberos through SPNEGO; BITS: BG_AUTH_SCHEME_NEGOTIATE) against the
//! real thing: an MIT Kerberos KDC (Debian's krb5-kdc) with a realm the test makes in a
//! temporary folder, and Apache with mod_auth_gssapi requiring Negotiate, both in the
//! server namespace of a `NetLab`; ferryd in the client namespace; the user's tickets
//! from `kinit` in a credential cache file. Needs root (network namespaces), iproute2,
//! curl, krb5-kdc, krb5-admin-server (kadmin.local), krb5-user (kinit), apache2 and
//! libapache2-mod-auth-gssapi: .ci/run installs them. `cargo test parity_negotiate`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ferry_client::{Credentials, ErrorContext, JobProperties, JobState};
use ferry_testkit::{random_file, NetLab, TestEnv, SERVER_ADDR};

const REALM: &str = "FERRY.TEST";
const USER: &str = "alice";
/// How long the KDC and Apache get to answer after they are started.
const START: Duration = Duration::from_secs(30);

/// Runs `cmd`, panicking with its output unless it succeeds.
fn must(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops a server: SIGTERM (Apache stops its children), then SIGKILL after 10 s.
fn stop(child: &mut Child) {
    // SAFETY: signalling a child of this process by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A Kerberos realm and a web server requiring Negotiate, in `lab`'s server namespace.
/// Dropped in field order: the servers stop before the namespaces go.
struct Realm {
    kdc: Child,
    apache: Child,
    /// krb5.conf, kdc.conf, the database, keytabs, Apache's configuration and logs, the
    /// served folder `www/`.
    dir: tempfile::TempDir,
    lab: NetLab,
}

impl Drop for Realm {
    fn drop(&mut self) {
        stop(&mut self.apache);
        stop(&mut self.kdc);
    }
}

impl Realm {
    fn start(tag: &str) -> Realm {
        let lab = NetLab::create(tag);
        let dir = tempfile::Builder::new()
            .prefix("ferry-krb5-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Apache's workers (www-data) read the served folder and the keytab.
        set_mode(d, 0o755);
        std::fs::write(
            d.join("krb5.conf"),
            format!(
                "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n \
                 dns_lookup_realm = false\n dns_canonicalize_hostname = false\n rdns = false\n\
                 [realms]\n {REALM} = {{\n  kdc = {SERVER_ADDR}:88\n }}\n\
                 [domain_realm]\n {SERVER_ADDR} = {REALM}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n kdc_ports = 88\n kdc_tcp_ports = 88\n\
                 [realms]\n {REALM} = {{\n  database_name = {p}/principal\n  \
                 key_stash_file = {p}/stash\n  acl_file = {p}/kadm5.acl\n }}\n\
                 [logging]\n kdc = FILE:{p}/kdc.log\n",
                p = d.display()
            ),
        )
        .unwrap();
        let krb = |program: &str| {
            let mut c = Command::new(program);
            c.env("KRB5_CONFIG", d.join("krb5.conf"))
                .env("KRB5_KDC_PROFILE", d.join("kdc.conf"));
            c
        };
        let mut create = krb("kdb5_util");
        create.args(["-r", REALM, "-P", "master-pw-for-tests", "create", "-s"]);
        must(create, "creating the realm's database");
        let service = format!("HTTP/{SERVER_ADDR}");
        for q in [
            format!("addprinc -randkey {USER}"),
            format!("addprinc -randkey {service}"),
            format!("ktadd -k {} {service}", d.join("http.keytab").display()),
            format!("ktadd -k {} {USER}", d.join("user.keytab").display()),
        ] {
            let mut k = krb("kadmin.local");
            k.args(["-r", REALM, "-q", &q]);
            must(k, &q);
        }
        set_mode(&d.join("http.keytab"), 0o644);
        let kdc = lab
            .in_server("krb5kdc")
            .args(["-n", "-r", REALM])
            .env("KRB5_CONFIG", d.join("krb5.conf"))
            .env("KRB5_KDC_PROFILE", d.join("kdc.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start krb5kdc (Debian package krb5-kdc)");
        std::fs::create_dir(d.join("www")).unwrap();
        set_mode(&d.join("www"), 0o755);
        std::fs::write(d.join("httpd.conf"), apache_conf(d)).unwrap();
        let apache = lab
            .in_server("apache2")
            .arg("-f")
            .arg(d.join("httpd.conf"))
            .arg("-DFOREGROUND")
            .env("KRB5_CONFIG", d.join("krb5.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start apache2 (Debian packages apache2, libapache2-mod-auth-gssapi)");
        let realm = Realm {
            kdc,
            apache,
            dir,
            lab,
        };
        realm.wait_for_apache();
        realm
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn krb5_conf(&self) -> PathBuf {
        self.path("krb5.conf")
    }

    /// A file of random bytes served (behind Negotiate) at the returned URL.
    fn serve(&self, name: &str, len: usize, seed: u64) -> (String, PathBuf) {
        let path = random_file(&self.path("www"), name, len, seed);
        set_mode(&path, 0o644);
        (format!("http://{SERVER_ADDR}/{name}"), path)
    }

    /// Apache answers (with its 401) in the client namespace.
    fn wait_for_apache(&self) {
        let end = Instant::now() + START;
        loop {
            let out = self
                .lab
                .in_client("curl")
                .args(["-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}"])
                .arg(format!("http://{SERVER_ADDR}/"))
                .output()
                .expect("run curl");
            if String::from_utf8_lossy(&out.stdout) == "401" {
                return;
            }
            assert!(
                Instant::now() < end,
                "Apache did not answer 401 within {START:?}; its log:\n{}",
                std::fs::read_to_string(self.path("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kinit` as the user (from its keytab) into `ccache`, in the client namespace;
    /// retried until the KDC answers.
    fn kinit(&self, ccache: &str) {
        let end = Instant::now() + START;
        loop {
            let out = self
                .lab
                .in_client("kinit")
                .args(["-k", "-t"])
                .arg(self.path("user.keytab"))
                .arg(USER)
                .env("KRB5_CONFIG", self.krb5_conf())
                .env("KRB5CCNAME", ccache)
                .output()
                .expect("run kinit (Debian package krb5-user)");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < end,
                "kinit failed for {START:?}: {}; the KDC's log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.path("kdc.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The prefix that runs ferryd in the client namespace with this realm's krb5.conf
    /// and `default_ccache` as its KRB5CCNAME.
    fn daemon_prefix(&self, default_ccache: &str) -> Vec<String> {
        let mut p = self.lab.client_prefix();
        p.push("env".into());
        p.push(format!("KRB5_CONFIG={}", self.krb5_conf().display()));
        p.push(format!("KRB5CCNAME={default_ccache}"));
        p
    }

    /// Apache's access log: "USER METHOD PATH STATUS" a line.
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.path("access.log")).unwrap_or_default()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Apache serving `dir/www` on port 80 of the server address, every request requiring
/// Negotiate (mod_auth_gssapi with the service's keytab).
fn apache_conf(dir: &Path) -> String {
    let d = dir.display();
    let m = "/usr/lib/apache2/modules";
    format!(
        "ServerRoot {d}\nServerName {SERVER_ADDR}\nListen {SERVER_ADDR}:80\n\
         PidFile {d}/httpd.pid\nErrorLog {d}/error.log\nLogLevel info\n\
         User www-data\nGroup www-data\n\
         LoadModule mpm_event_module {m}/mod_mpm_event.so\n\
         LoadModule authn_core_module {m}/mod_authn_core.so\n\
         LoadModule authz_core_module {m}/mod_authz_core.so\n\
         LoadModule authz_user_module {m}/mod_authz_user.so\n\
         LoadModule auth_gssapi_module {m}/mod_auth_gssapi.so\n\
         LogFormat \"%u %m %U %>s\" who\nCustomLog {d}/access.log who\n\
         DocumentRoot {d}/www\n\
         <Directory {d}/www>\n  AuthType GSSAPI\n  AuthName \"ferry test\"\n  \
         GssapiCredStore keytab:{d}/http.keytab\n  Require valid-user\n</Directory>\n"
    )
}

/// `ferry get --negotiate` with the user's tickets in KRB5CCNAME downloads two files
/// behind Negotiate, one of them over several connections (a HEAD, then ranges: every
/// request authenticated), byte for byte; Apache saw the user's principal. A job with
/// Negotiate and no cache named (the Rust client's `Negotiate { ccache: None }`) takes
/// the daemon's default cache, and the job shows its credentials as `negotiate` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, krb5-kdc and apache2: .ci/run runs it"]
async fn parity_negotiate_a_job_downloads_from_a_server_that_requires_kerberos() {
    let realm = Realm::start("negok");
    let (big_url, big) = realm.serve("big.bin", 12 << 20, 1);
    let (small_url, small) = realm.serve("small.bin", 70_000, 2);
    let (third_url, third) = realm.serve("third.bin", 50_000, 3);
    let cc = realm.path("alice.cc");
    let ccache = format!("FILE:{}", cc.display());
    realm.kinit(&ccache);

    let env = TestEnv::new();
    // The daemon's default cache is the user's too (for the job that names none).
    let _d = env.start_daemon_wrapped(&realm.daemon_prefix(&ccache), &[]);
    let out_dir = env.files.join("got");
    let mut get = ferry(&env);
    get.args(["get", "--negotiate", "-x", "4", "-q", "-o"])
        .arg(format!("{}/", out_dir.display()))
        .args([&big_url, &small_url])
        .env("KRB5CCNAME", &ccache);
    run_ok(get);
    assert_eq!(file_sha(&out_dir.join("big.bin")), file_sha(&big));
    assert_eq!(file_sha(&out_dir.join("small.bin")), file_sha(&small));
    let log = realm.access_log();
    let principal = format!("{USER}@{REALM}");
    let served_to_user = |path: &str| {
        log.lines().any(|l| {
            l.starts_with(&format!("{principal} GET {path} "))
                && (l.ends_with(" 200") || l.ends_with(" 206"))
        })
    };
    assert!(served_to_user("/big.bin"), "{log}");
    assert!(served_to_user("/small.bin"), "{log}");
    let big_ranges = log
        .lines()
        .filter(|l| l.starts_with(&format!("{principal} GET /big.bin ")) && l.ends_with(" 206"))
        .count();
    assert!(
        big_ranges > 1,
        "the big file came over several authenticated connections:\n{log}"
    );
    let kdc_log = std::fs::read_to_string(realm.path("kdc.log")).unwrap();
    assert!(
        kdc_log.contains("TGS_REQ") && kdc_log.contains(&format!("HTTP/{SERVER_ADDR}@{REALM}")),
        "the KDC issued the service ticket:\n{kdc_log}"
    );

    let m = manager(&env).await;
    let job = m.create_job("negotiate, default cache").await.unwrap();
    let dest = env.files.join("third.bin");
    job.add_file(&third_url, s(&dest)).await.unwrap();
    let info = job
        .set(JobProperties {
            credentials: Some(Credentials::Negotiate { ccache: None }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(info.credentials.as_deref(), Some("negotiate"));
    job.resume().await.unwrap();
    let done = settle(&job).await;
    assert_eq!(done.state(), JobState::Transferred, "{done:?}");
    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), file_sha(&third));
}

/// Without a ticket (a credential cache that does not exist), the job does not transfer:
/// it goes to `error` with the authentication context, code `kerberos_no_ticket`, and a
/// message that says to run kinit; `ferry get --negotiate` fails saying the same. With a
/// ticket got afterwards, `resume` finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, krb5-kdc and apache2: .ci/run runs it"]
async fn parity_negotiate_without_a_ticket_the_job_errors_saying_to_run_kinit() {
    let realm = Realm::start("negno");
    let (url, served) = realm.serve("f.bin", 100_000, 4);
    let ccache = format!("FILE:{}", realm.path("later.cc").display());
    let env = TestEnv::new();
    let _d = env.start_daemon_wrapped(&realm.daemon_prefix(&ccache), &[]);

    let m = manager(&env).await;
    let job = m.create_job("negotiate, no ticket").await.unwrap();
    let dest = env.files.join("f.bin");
    job.add_file(&url, s(&dest)).await.unwrap();
    job.set(JobProperties {
        credentials: Some(Credentials::Negotiate {
            ccache: Some(ccache.clone()),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let failed = settle(&job).await;
    assert_eq!(failed.state(), JobState::Error, "{failed:?}");
    let error = failed.error.clone().expect("an error record");
    assert_eq!(
        error.context,
        Some(ErrorContext::Authentication),
        "{error:?}"
    );
    assert_eq!(error.code, "kerberos_no_ticket", "{error:?}");
    assert!(error.message.contains("run kinit"), "{error:?}");
    assert!(error.message.contains(&ccache), "{error:?}");
    assert!(!dest.exists());

    let mut get = ferry(&env);
    get.args(["get", "--negotiate", "-o"])
        .arg(env.files.join("by-get.bin"))
        .arg(&url)
        .env("KRB5CCNAME", &ccache);
    let out = get.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kinit"), "{stderr}");

    realm.kinit(&ccache);
    job.resume().await.unwrap();
    let done = settle(&job).await;
    assert_eq!(done.state(), JobState::Transferred, "{done:?}");
    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), file_sha(&served));
}
