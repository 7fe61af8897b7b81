//! vendor/h2: the h2 crate as published on crates.io plus ferry's patch, put in place of
//! the published crate by the workspace's `[patch.crates-io]`. The patch,
//! `vendor/h2/ferry.patch`, is the source of truth; `vendor/h2/FERRY-PATCH.md` says why it
//! exists. Everything else in the folder is derived:
//!
//! - `xtask h2 vendor [VERSION]` rebuilds the folder from h2 VERSION as published (default:
//!   the newest of the folder's minor version) and the patch, then updates Cargo.lock.
//! - `xtask h2 check` fails when the folder is not exactly that (a file changed, missing or
//!   added), when Cargo.lock does not name the folder's version, or when a newer h2 of the
//!   same minor version is published (yanked ones do not count), so that CI notices an
//!   upstream release and the patch must be carried over to it.
//!
//! May use: registry (the published crate), tree (file trees and the patch), anyhow, toml,
//! std.

mod registry;
mod tree;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use tree::Difference;

/// The folder, relative to the workspace root.
const FOLDER: &str = "vendor/h2";
/// ferry's change to h2, a unified diff in the folder.
const PATCH: &str = "ferry.patch";
/// ferry's own files in the folder, which the published crate does not have.
const OWN_FILES: &[&str] = &["FERRY-PATCH.md", PATCH];
/// Files of the published crate the folder leaves out: no ferry build reads them (the
/// examples, benchmarks, h2's own lock file and CI set-up), and h2's `.gitignore` would
/// hide files of the folder from git. The manifest stays as published: cargo reads the
/// targets and dev-dependencies of a patched dependency only to build that crate's own
/// tests, which ferry never does.
const LEFT_OUT: &[&str] = &[
    ".cargo_vcs_info.json",
    ".github/",
    ".gitignore",
    "Cargo.lock",
    "Cargo.toml.orig",
    "CONTRIBUTING.md",
    "benches/",
    "examples/",
];
/// At most this many files of each kind of difference are named.
const NAMED_AT_MOST: usize = 20;

/// `xtask h2 check`: see the module documentation.
pub fn check() -> Result<()> {
    let root = workspace_root();
    let folder = root.join(FOLDER);
    let version = folder_version(&folder)?;
    let mut problems = Vec::new();

    match locked_patch_version(&root.join("Cargo.lock"))? {
        Some(locked) if locked == version => {}
        Some(locked) => problems.push(format!(
            "Cargo.lock has h2 {locked} from {FOLDER}, but the folder is h2 {version}: run \
             `cargo update -p h2`"
        )),
        None => problems.push(format!(
            "Cargo.lock has no h2 from {FOLDER}: is the `[patch.crates-io]` entry of the \
             workspace's Cargo.toml gone?"
        )),
    }

    let newest = registry::h2(&format!("~{version}"))?;
    let published = if newest.version == version {
        newest
    } else {
        problems.push(format!(
            "h2 {} is published, newer than {FOLDER}'s {version}: move to it with `cargo xtask \
             h2 vendor` (re-make ferry.patch if it no longer applies, see \
             {FOLDER}/FERRY-PATCH.md)",
            newest.version
        ));
        registry::h2(&format!("={version}"))?
    };

    let expected = expected_tree(&published, &folder)?;
    let actual = tree::read_folder(&folder, OWN_FILES)?;
    let differences = tree::differences(&expected, &actual);
    if !differences.is_empty() {
        problems.push(format!(
            "{FOLDER} is not h2 {version} as published plus {PATCH}:\n{}\n    Put a change to h2 \
             in {FOLDER}/{PATCH} and run `cargo xtask h2 vendor {version}`, which also \
             restores the folder.",
            describe(&differences)
        ));
    }

    if problems.is_empty() {
        println!(
            "{FOLDER} is h2 {version} as published (crate SHA-256 {}) plus {PATCH}; Cargo.lock \
             names it; no newer h2 {} is published",
            published.checksum,
            minor_of(&version)
        );
        return Ok(());
    }
    for problem in &problems {
        eprintln!("- {problem}");
    }
    bail!("{} problem(s) with {FOLDER}", problems.len())
}

/// `xtask h2 vendor [VERSION]`: see the module documentation.
pub fn vendor(version: Option<&str>) -> Result<()> {
    let root = workspace_root();
    let folder = root.join(FOLDER);
    let requirement = match version {
        Some(version) => format!("={version}"),
        None => format!("~{}", folder_version(&folder)?),
    };
    let published = registry::h2(&requirement)?;
    // Everything is made before the folder is touched: a patch that does not apply leaves
    // it as it was.
    let expected = expected_tree(&published, &folder)?;
    tree::replace_folder(&folder, &expected, OWN_FILES)?;
    println!(
        "{FOLDER} is now h2 {} as published (crate SHA-256 {}) plus {PATCH}",
        published.version, published.checksum
    );

    if locked_patch_version(&root.join("Cargo.lock"))?.as_deref()
        != Some(published.version.as_str())
    {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let updated = Command::new(cargo)
            .args(["update", "--offline", "-p", "h2"])
            .current_dir(&root)
            .status()?;
        if !updated.success() {
            bail!("`cargo update -p h2` failed: Cargo.lock still names the folder's old version");
        }
    }
    println!(
        "Next: `cargo test -p ferry-tests --test stock_client` (h2 with the patch serves stock \
         gRPC clients), and the version in ARCHITECTURE.md's crate list"
    );
    Ok(())
}

/// h2 as published, less [`LEFT_OUT`], with the folder's patch applied.
fn expected_tree(published: &registry::Published, folder: &Path) -> Result<tree::Tree> {
    let top = format!("h2-{}", published.version);
    let mut files = tree::unpack_crate(&published.crate_file, &top)?;
    tree::leave_out(&mut files, LEFT_OUT);
    let patch_file = folder.join(PATCH);
    let patch = std::fs::read_to_string(&patch_file)
        .with_context(|| format!("reading {}", patch_file.display()))?;
    tree::apply_patch(&mut files, &patch).with_context(|| {
        format!(
            "{FOLDER}/{PATCH} on h2 {}: re-make the patch against this release, whose crate is \
             {} ({FOLDER}/FERRY-PATCH.md says how)",
            published.version,
            published.crate_file.display()
        )
    })?;
    Ok(files)
}

/// The workspace root (this package is `crates/xtask`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The version in the folder's `Cargo.toml`, which must be h2's.
fn folder_version(folder: &Path) -> Result<String> {
    let path = folder.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}: restore it with git", path.display()))?;
    let manifest: toml::Table = text
        .parse()
        .with_context(|| format!("{} does not parse", path.display()))?;
    let package = manifest.get("package");
    let field = |key: &str| package.and_then(|p| p.get(key)).and_then(|v| v.as_str());
    match (field("name"), field("version")) {
        (Some("h2"), Some(version)) => Ok(version.to_string()),
        _ => Err(anyhow!(
            "{} names no package h2 with a version: restore it with git",
            path.display()
        )),
    }
}

/// The version of the h2 that Cargo.lock takes from the folder (the entry without a
/// registry source), if any.
fn locked_patch_version(lock: &Path) -> Result<Option<String>> {
    let text =
        std::fs::read_to_string(lock).with_context(|| format!("reading {}", lock.display()))?;
    let lock: toml::Table = text.parse()?;
    let packages = lock.get("package").and_then(|p| p.as_array());
    Ok(packages
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some("h2") && p.get("source").is_none())
        .and_then(|p| p.get("version")?.as_str().map(str::to_string)))
}

/// `0.4.x` for `0.4.21`.
fn minor_of(version: &str) -> String {
    let mut parts = version.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}.x"),
        _ => version.to_string(),
    }
}

/// One line per kind of difference, naming at most [`NAMED_AT_MOST`] files each.
fn describe(differences: &[Difference]) -> String {
    let mut lines = Vec::new();
    for label in Difference::LABELS {
        let paths: Vec<&str> = differences
            .iter()
            .filter(|d| d.label() == label)
            .map(Difference::path)
            .collect();
        if paths.is_empty() {
            continue;
        }
        let mut named = paths[..paths.len().min(NAMED_AT_MOST)].join(", ");
        if paths.len() > NAMED_AT_MOST {
            named.push_str(&format!(" and {} more", paths.len() - NAMED_AT_MOST));
        }
        lines.push(format!("    {label}: {named}"));
    }
    lines.join("\n")
}
