//! The workspace's binaries and examples that tests start (`ferryd`, `ferry`,
//! `notify_handler`, …), built by the test kit itself when they are missing or stale.
//!
//! Cargo builds a package's own binaries for its integration tests (and tells them where,
//! in `CARGO_BIN_EXE_<name>`), but no binary of another package: `cargo test --workspace`
//! on a fresh checkout compiles `ferryd` only as a unit-test harness, never as
//! `target/debug/ferryd`, and the examples of `ferry-client` are not built for the tests of
//! `ferry-tests` at all. So the first time a test process asks for one of them, the test
//! kit runs
//!
//! ```text
//! $CARGO build --workspace --bins --examples --profile P --target-dir T [--target TRIPLE]
//! ```
//!
//! in the workspace root, with the target directory, target triple and profile the running
//! test was built with (read from its own path, `T/[TRIPLE/]P/deps/<test>-<hash>`), and
//! takes the executables' paths from cargo's JSON messages. Cargo rebuilds what an edit made
//! stale and nothing else, so a test never runs an old binary; when everything is fresh the
//! call takes about half a second. Selecting the whole workspace with its examples makes
//! cargo unify features as `cargo test --workspace` does, so that run's dependencies are
//! reused as they are (a run limited to one package, `cargo test -p ferry-client`, may build
//! some dependencies a second time with the workspace's features, once).
//!
//! Why not move the tests that start binaries into the packages that own them, where
//! cargo sets `CARGO_BIN_EXE_*`: the tests start `ferryd` (package `ferryd`), `ferry`
//! (`ferry-cli`) and examples of `ferry-client`, and cargo builds none of another package's
//! binaries nor any example for them, so that would take one package owning the daemon,
//! the command line, the examples and every end-to-end test, and `ferry-client`'s own tests
//! could no longer start a daemon. Building from here keeps the packages as they are.
//!
//! Running cargo from a test does not wait on cargo's build lock: `cargo test` releases it
//! once compilation is over, before it runs the first test, and nextest compiles everything
//! (`cargo test --no-run`) before it starts any test.
//!
//! nextest runs each test in a process of its own: a lock file and a note of the run
//! (`NEXTEST_RUN_ID`) in the profile directory let the first test of a run build, and the
//! others take its result without asking cargo again.
//!
//! `FERRY_BIN_DIR` turns all this off: binaries and examples are then taken, as they are,
//! from that directory (or its `examples/` folder), for example to test an installed ferry.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The workspace root (this package is `crates/ferry-testkit`).
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// In the profile directory: the lock taken while building, and the note of the last build.
const LOCK_FILE: &str = ".ferry-testkit-build.lock";
const NOTE_FILE: &str = ".ferry-testkit-build";

/// The path of the workspace binary `name` (e.g. `ferryd`), built first if it is missing or
/// older than its sources (see the [module documentation](self)); from `FERRY_BIN_DIR`
/// (or its `examples/` folder) as it is when that is set. Panics with a clear message if
/// the build fails or there is no such binary.
pub fn target_dir_bin(name: &str) -> PathBuf {
    locate(name, Kind::Bin)
}

/// The path of the workspace example `name` (e.g. `notify_handler`), built first if it is
/// missing or stale, like [`target_dir_bin`]; with `FERRY_BIN_DIR` set, from its
/// `examples/` folder (or that directory itself).
pub fn example_bin(name: &str) -> PathBuf {
    locate(name, Kind::Example)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Bin,
    Example,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Bin => "bin",
            Kind::Example => "example",
        }
    }

    fn from_label(label: &str) -> Option<Kind> {
        match label {
            "bin" => Some(Kind::Bin),
            "example" => Some(Kind::Example),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Bin => "binary",
            Kind::Example => "example",
        })
    }
}

/// The executables of one build, by kind and name.
type Artifacts = HashMap<(Kind, String), PathBuf>;

fn locate(name: &str, kind: Kind) -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_BIN_DIR").filter(|d| !d.is_empty()) {
        return find_bin(Path::new(&dir), name, kind).unwrap_or_else(|missing| {
            panic!(
                "`{}` is missing (FERRY_BIN_DIR is set, so the test kit builds nothing)",
                missing.display()
            )
        });
    }
    let artifacts = built().as_ref().unwrap_or_else(|e| panic!("{e}"));
    match artifacts.get(&(kind, name.to_string())) {
        Some(path) => path.clone(),
        None => {
            panic!("`cargo build --workspace --bins --examples` built no {kind} named `{name}`")
        }
    }
}

/// The result of this process's build, made on first use.
fn built() -> &'static Result<Artifacts, String> {
    static BUILT: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot tell the path of the running test: {e}"))?;
        let layout = Layout::of(&exe);
        let run = std::env::var("NEXTEST_RUN_ID")
            .ok()
            .filter(|r| !r.is_empty());
        match &layout {
            Some(layout) => build_once_per_run(layout, run.as_deref()),
            None => cargo_build(None),
        }
    })
}

/// Where cargo put the running test: `target_dir/[triple/]profile_dir/deps/<test>`.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    target_dir: PathBuf,
    triple: Option<String>,
    /// `target_dir/[triple/]debug`: where the build's lock and note are kept.
    profile_dir: PathBuf,
    /// The cargo profile to build with: `test` for `debug` (the profile of `cargo test`,
    /// which gives the same artifacts as `dev` unless `[profile.test]` changes something),
    /// else the directory's name (`release`, or a custom profile).
    profile: String,
}

impl Layout {
    /// `None` when `exe` is not in a cargo target directory (one with `CACHEDIR.TAG`).
    fn of(exe: &Path) -> Option<Layout> {
        let dir = exe.parent()?;
        let nested = dir
            .file_name()
            .is_some_and(|n| n == "deps" || n == "examples");
        let profile_dir = if nested { dir.parent()? } else { dir };
        let profile = match profile_dir.file_name()?.to_str()? {
            "debug" => "test".to_string(),
            name => name.to_string(),
        };
        let above = profile_dir.parent()?;
        let is_target_dir = |d: &Path| d.join("CACHEDIR.TAG").is_file();
        let (target_dir, triple) = if is_target_dir(above) {
            (above.to_path_buf(), None)
        } else {
            let target_dir = above.parent().filter(|d| is_target_dir(d))?;
            let triple = above.file_name()?.to_str()?.to_string();
            (target_dir.to_path_buf(), Some(triple))
        };
        Some(Layout {
            target_dir,
            triple,
            profile_dir: profile_dir.to_path_buf(),
            profile,
        })
    }
}

/// Builds, or under nextest takes the build another test of the same run made.
fn build_once_per_run(layout: &Layout, run: Option<&str>) -> Result<Artifacts, String> {
    let lock_path = layout.profile_dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns; no memory is involved. The lock
    // is released when `lock` is closed, at the end of this function.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("cannot lock {}: {e}", lock_path.display()));
    }
    let note = layout.profile_dir.join(NOTE_FILE);
    if let Some(run) = run {
        if let Some(artifacts) = fs::read_to_string(&note)
            .ok()
            .and_then(|text| read_note(&text, run))
        {
            return Ok(artifacts);
        }
    }
    let artifacts = cargo_build(Some(layout))?;
    match run.and_then(|run| write_note(run, &artifacts)) {
        // A failed write only costs the next test a cargo call.
        Some(text) => drop(fs::write(&note, text)),
        None => drop(fs::remove_file(&note)),
    }
    Ok(artifacts)
}

/// Runs cargo and returns the executables it reports.
fn cargo_build(layout: Option<&Layout>) -> Result<Artifacts, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(WORKSPACE).args([
        "build",
        "--workspace",
        "--bins",
        "--examples",
        "--quiet",
        "--message-format=json-render-diagnostics",
    ]);
    if let Some(layout) = layout {
        cmd.arg("--profile")
            .arg(&layout.profile)
            .arg("--target-dir")
            .arg(&layout.target_dir);
        if let Some(triple) = &layout.triple {
            cmd.arg("--target").arg(triple);
        }
    }
    // Cargo describes the test's own package to it in variables that cargo would also pass
    // on to build scripts; some scripts (ring's) are rerun when one of them changes, which
    // would rebuild their crates and everything above them on each switch between this
    // build and the outer one. The nested cargo gets the environment the outer one had.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_tests) {
            cmd.env_remove(&key);
        }
    }
    // Compiler messages go to the test's stderr; stdout carries the JSON messages.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown} to build the workspace binaries: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}); its messages are above",
            out.status
        ));
    }
    Ok(parse_messages(&String::from_utf8_lossy(&out.stdout)))
}

/// Whether cargo sets `key` when it runs a test (the variables it sets for crates, about
/// the package being built).
fn set_by_cargo_for_tests(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// The executables in cargo's `--message-format=json` output.
fn parse_messages(stdout: &str) -> Artifacts {
    let mut artifacts = Artifacts::new();
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let Some(name) = msg["target"]["name"].as_str() else {
            continue;
        };
        let kinds = msg["target"]["kind"].as_array().into_iter().flatten();
        for kind in kinds.filter_map(|k| k.as_str().and_then(Kind::from_label)) {
            artifacts.insert((kind, name.to_string()), PathBuf::from(exe));
        }
    }
    artifacts
}

/// The note of a build: the run's id on the first line, then `kind<TAB>name<TAB>path`
/// lines. `None` if a path is not UTF-8.
fn write_note(run: &str, artifacts: &Artifacts) -> Option<String> {
    let mut text = format!("{run}\n");
    for ((kind, name), path) in artifacts {
        text.push_str(&format!("{}\t{name}\t{}\n", kind.label(), path.to_str()?));
    }
    Some(text)
}

/// The artifacts of a note written during `run` whose files all still exist.
fn read_note(text: &str, run: &str) -> Option<Artifacts> {
    let mut lines = text.lines();
    if lines.next()? != run {
        return None;
    }
    let mut artifacts = Artifacts::new();
    for line in lines {
        let mut fields = line.splitn(3, '\t');
        let kind = Kind::from_label(fields.next()?)?;
        let name = fields.next()?.to_string();
        let path = PathBuf::from(fields.next()?);
        if !path.is_file() {
            return None;
        }
        artifacts.insert((kind, name), path);
    }
    Some(artifacts)
}

/// Finds `name` in `dir` or `dir/examples` (looked at first for examples); on failure
/// returns the path that was expected.
fn find_bin(dir: &Path, name: &str, kind: Kind) -> Result<PathBuf, PathBuf> {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let plain = dir.join(&file);
    let in_examples = dir.join("examples").join(&file);
    let (primary, secondary) = match kind {
        Kind::Bin => (plain, in_examples),
        Kind::Example => (in_examples, plain),
    };
    if primary.is_file() {
        Ok(primary)
    } else if secondary.is_file() {
        Ok(secondary)
    } else {
        Err(primary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    /// A fake target directory `t` (with `CACHEDIR.TAG`) and `t/<sub>/deps/test-abc`.
    fn fake_exe(t: &Path, sub: &str) -> PathBuf {
        fs::write(
            t.join("CACHEDIR.TAG"),
            b"Signature: 8a477f597d28d172789f06886806bc55",
        )
        .unwrap();
        let deps = t.join(sub).join("deps");
        fs::create_dir_all(&deps).unwrap();
        deps.join("test-abc")
    }

    #[test]
    fn layout_of_a_test_executable() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();

        let layout = Layout::of(&fake_exe(t, "debug")).unwrap();
        assert_eq!(
            layout,
            Layout {
                target_dir: t.to_path_buf(),
                triple: None,
                profile_dir: t.join("debug"),
                profile: "test".into(),
            }
        );

        let layout = Layout::of(&fake_exe(t, "release")).unwrap();
        assert_eq!(layout.profile, "release");
        assert_eq!(layout.target_dir, t);

        let layout = Layout::of(&t.join("release/examples/ex-abc")).unwrap();
        assert_eq!(layout.profile, "release");
        assert_eq!(layout.profile_dir, t.join("release"));

        let layout = Layout::of(&fake_exe(t, "x86_64-unknown-linux-gnu/fast")).unwrap();
        assert_eq!(layout.target_dir, t);
        assert_eq!(layout.triple.as_deref(), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(layout.profile, "fast");
        assert_eq!(layout.profile_dir, t.join("x86_64-unknown-linux-gnu/fast"));

        // Not below a cargo target directory.
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(Layout::of(&elsewhere.path().join("a/b/deps/test")), None);
    }

    #[test]
    fn executables_come_from_cargo_messages() {
        let stdout = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"ferryd"},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"ferryd"},"executable":"/t/debug/ferryd"}
{"reason":"compiler-artifact","target":{"kind":["example"],"name":"notify_handler"},"executable":"/t/debug/examples/notify_handler"}
{"reason":"compiler-artifact","target":{"kind":["custom-build"],"name":"build-script-build"},"executable":null}
{"reason":"build-finished","success":true}
not json"#;
        let artifacts = parse_messages(stdout);
        assert_eq!(artifacts.len(), 2, "{artifacts:?}");
        assert_eq!(
            artifacts[&(Kind::Bin, "ferryd".to_string())],
            Path::new("/t/debug/ferryd")
        );
        assert_eq!(
            artifacts[&(Kind::Example, "notify_handler".to_string())],
            Path::new("/t/debug/examples/notify_handler")
        );
    }

    #[test]
    fn a_note_serves_its_own_run_only() {
        let dir = tempfile::tempdir().unwrap();
        let ferryd = dir.path().join("ferryd");
        fs::write(&ferryd, b"").unwrap();
        let artifacts = Artifacts::from([((Kind::Bin, "ferryd".to_string()), ferryd.clone())]);
        let note = write_note("run-1", &artifacts).unwrap();
        assert_eq!(read_note(&note, "run-1"), Some(artifacts));
        assert_eq!(read_note(&note, "run-2"), None);
        fs::remove_file(&ferryd).unwrap();
        assert_eq!(read_note(&note, "run-1"), None, "a vanished file voids it");
    }

    #[test]
    fn find_bin_checks_examples() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("examples")).unwrap();
        fs::write(dir.path().join("ferryd"), b"").unwrap();
        fs::write(dir.path().join("examples").join("demo"), b"").unwrap();
        let d = dir.path();
        assert_eq!(find_bin(d, "ferryd", Kind::Bin), Ok(d.join("ferryd")));
        assert_eq!(find_bin(d, "demo", Kind::Bin), Ok(d.join("examples/demo")));
        assert_eq!(
            find_bin(d, "demo", Kind::Example),
            Ok(d.join("examples/demo"))
        );
        assert_eq!(find_bin(d, "nope", Kind::Bin), Err(d.join("nope")));
        assert_eq!(
            find_bin(d, "nope", Kind::Example),
            Err(d.join("examples/nope"))
        );
    }

    /// The newest modification time of the files under `dir`.
    fn newest_source(dir: &Path) -> SystemTime {
        let mut newest = SystemTime::UNIX_EPOCH;
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let time = if path.is_dir() {
                newest_source(&path)
            } else {
                fs::metadata(&path).unwrap().modified().unwrap()
            };
            newest = newest.max(time);
        }
        newest
    }

    #[test]
    fn binaries_are_built_from_the_current_sources() {
        if std::env::var_os("FERRY_BIN_DIR").is_some() {
            return;
        }
        let workspace = Path::new(WORKSPACE);
        for (path, sources) in [
            (target_dir_bin("ferryd"), "crates/ferryd/src"),
            (target_dir_bin("ferry"), "crates/ferry-cli/src"),
            (example_bin("notify_handler"), "crates/ferry-client/src"),
        ] {
            let built = fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .modified()
                .unwrap();
            assert!(
                built >= newest_source(&workspace.join(sources)),
                "{} is older than a file of {sources}",
                path.display()
            );
        }
        // The daemon itself, not the harness of its unit tests (`deps/ferryd-<hash>`).
        let help = Command::new(target_dir_bin("ferryd"))
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("Usage: ferryd"), "{help}");
    }

    #[test]
    #[should_panic(expected = "built no binary named `no-such-ferry-binary`")]
    fn an_unknown_binary_panics_clearly() {
        if std::env::var_os("FERRY_BIN_DIR").is_some() {
            panic!("built no binary named `no-such-ferry-binary`");
        }
        target_dir_bin("no-such-ferry-binary");
    }
}
