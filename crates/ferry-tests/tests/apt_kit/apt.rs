//! apt with a tree of its own: configuration, sources, lists, cache and dpkg status in a
//! folder of the test, never the host's (`APT_CONFIG` names a configuration that points
//! every `Dir::` there and reads no part of `/etc/apt`), run in a machine's namespace
//! (so it reaches nothing but the test's LAN). apt runs as root and starts the method as
//! its sandbox user `_apt`, as on any Debian machine; so every folder on the way is
//! searchable by others (apt checks, and would otherwise stay root).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::target_dir_bin;

/// How long one apt command may take.
pub const APT_DEADLINE: Duration = Duration::from_secs(300);

/// An apt tree.
pub struct AptRoot {
    dir: tempfile::TempDir,
}

/// How an apt command ended.
#[derive(Debug)]
pub struct AptRun {
    pub ok: bool,
    pub output: String,
    pub took: Duration,
}

impl AptRoot {
    /// A tree whose sources list has `deb [trusted=yes] URI stable main`, and whose
    /// configuration maps the schemes `ferry+http` and `ferry+https` to this build's
    /// method (apt's `Dir::Bin::Methods::NAME`, the same key that lets one line route
    /// every http source through ferry), with `extra` lines (apt.conf syntax) after it.
    pub fn new(uri: &str, extra: &str) -> AptRoot {
        let dir = tempfile::Builder::new()
            .prefix("ferry-apt-root-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        for d in [
            "etc/apt/apt.conf.d",
            "etc/apt/sources.list.d",
            "etc/apt/preferences.d",
            "etc/apt/trusted.gpg.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/info",
            "var/log/apt",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        std::fs::write(
            root.join("etc/apt/sources.list"),
            format!("deb [trusted=yes] {uri} {} main\n", super::repo::SUITE),
        )
        .unwrap();
        let method = target_dir_bin("ferry-apt");
        let r = root.display();
        std::fs::write(
            root.join("etc/apt/apt.conf"),
            format!(
                "Dir \"{r}/\";\n\
                 Dir::State::status \"{r}/var/lib/dpkg/status\";\n\
                 Dir::Etc::Parts \"{r}/etc/apt/apt.conf.d\";\n\
                 Dir::Etc::SourceParts \"{r}/etc/apt/sources.list.d\";\n\
                 Dir::Bin::Methods::ferry+http \"{m}\";\n\
                 Dir::Bin::Methods::ferry+https \"{m}\";\n\
                 APT::Architecture \"amd64\";\n\
                 APT::Architectures {{ \"amd64\"; }};\n\
                 Acquire::Languages \"none\";\n\
                 Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled \"false\";\n\
                 {extra}\n",
                m = method.display(),
            ),
        )
        .unwrap();
        // apt runs its methods as _apt when _apt can reach the files: every folder on
        // the way must be searchable.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        AptRoot { dir }
    }

    /// The tree's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// apt's archives folder.
    pub fn archives(&self) -> PathBuf {
        self.path().join("var/cache/apt/archives")
    }

    /// The files in the archives folder and its `partial/` (names, sorted).
    pub fn archived_files(&self) -> (Vec<String>, Vec<String>) {
        let names = |dir: PathBuf| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_type().unwrap().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lock")
                .collect();
            v.sort();
            v
        };
        (
            names(self.archives()),
            names(self.archives().join("partial")),
        )
    }

    /// `apt-get ARGS` in the namespace `ns` with `env`, bounded by [`APT_DEADLINE`].
    pub fn apt_get(&self, ns: &str, env: &[(String, String)], args: &[&str]) -> AptRun {
        let mut cmd = self.apt_get_command(ns, env, args);
        let start = Instant::now();
        let mut child = cmd.spawn().expect("run apt-get");
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > APT_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "apt-get {args:?} ran longer than {APT_DEADLINE:?}: {}",
                    reader.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        AptRun {
            ok: status.success(),
            output: reader.join().unwrap(),
            took: start.elapsed(),
        }
    }

    /// The command of [`AptRoot::apt_get`], output (both streams) piped, in a process
    /// group of its own.
    pub fn apt_get_command(&self, ns: &str, env: &[(String, String)], args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            "exec \"$@\" 2>&1",
            "sh",
            "apt-get",
        ])
        .args(["-q", "-y"])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("APT_CONFIG", self.path().join("etc/apt/apt.conf"))
        .env("LC_ALL", "C")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // A group of its own, as a shell's job: a test can interrupt apt and its methods
        // together, as Ctrl-C does.
        .process_group(0);
        cmd
    }
}
