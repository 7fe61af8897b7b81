//! The published h2, asked of cargo itself: a throw-away package that depends on h2 alone
//! is resolved (`cargo generate-lockfile`: the newest version that matches, read from the
//! registry's index, yanked versions left out) and its dependencies downloaded
//! (`cargo metadata`), with this machine's cargo configuration (registry, source
//! replacement, proxy, certificates) as any build would use it. The `.crate` file is then
//! taken from cargo's download cache and its SHA-256 checked against the checksum the
//! index gives.
//!
//! May use: anyhow, hex, serde_json, sha2, tempfile, toml, std.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// A published release of h2.
pub struct Published {
    pub version: String,
    /// The `.crate` file's SHA-256, in hex, as the registry's index lists it.
    pub checksum: String,
    /// The `.crate` file, in cargo's download cache, checked against `checksum`.
    pub crate_file: PathBuf,
}

/// The newest published h2 that matches the version requirement `requirement` (`~0.4.21`,
/// `=0.4.21`), downloaded. Fails when none does (none published, or only yanked ones).
pub fn h2(requirement: &str) -> Result<Published> {
    let probe = tempfile::Builder::new().prefix("xtask-h2-").tempdir()?;
    let manifest = probe.path().join("Cargo.toml");
    fs::write(
        &manifest,
        format!(
            "[package]\nname = \"xtask-h2-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[dependencies]\nh2 = \"{requirement}\"\n\n[workspace]\n"
        ),
    )?;
    fs::create_dir(probe.path().join("src"))?;
    fs::write(probe.path().join("src/lib.rs"), "")?;

    cargo(&["generate-lockfile"], &manifest).with_context(|| {
        format!(
            "asking cargo for the newest published h2 matching `{requirement}` (yanked ones \
             do not count)"
        )
    })?;
    let (version, checksum) = locked_h2(&probe.path().join("Cargo.lock"))?;

    let metadata = cargo(&["metadata", "--format-version", "1"], &manifest)
        .context("cargo could not download h2 and its dependencies")?;
    let source = h2_source_folder(&metadata, &version)?;
    let crate_file = cached_crate_file(&source, &version)?;
    let bytes =
        fs::read(&crate_file).with_context(|| format!("reading {}", crate_file.display()))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != checksum {
        bail!(
            "{} has SHA-256 {actual}, the registry's index lists {checksum}: delete it and run \
             again, and cargo downloads it anew",
            crate_file.display()
        );
    }
    Ok(Published {
        version,
        checksum,
        crate_file,
    })
}

/// Runs `cargo ARGS --manifest-path MANIFEST`; its standard output, or an error with what
/// it wrote to standard error.
fn cargo(args: &[&str], manifest: &Path) -> Result<String> {
    // `cargo run` tells the program which cargo started it.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Online even where cargo is told to work offline: an old copy of the index would hide
    // a newer release.
    let output = Command::new(&cargo)
        .args(["--config", "net.offline=false"])
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .with_context(|| format!("starting {}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "`cargo {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The version and checksum of the one h2 in the lock file `lock`.
fn locked_h2(lock: &Path) -> Result<(String, String)> {
    let text = fs::read_to_string(lock).with_context(|| format!("reading {}", lock.display()))?;
    let lock: toml::Table = text.parse()?;
    let packages = lock.get("package").and_then(|p| p.as_array());
    let h2 = packages
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some("h2"))
        .ok_or_else(|| anyhow!("cargo's lock file names no h2"))?;
    let field = |key: &str| {
        h2.get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("cargo's lock file gives h2 no {key}"))
    };
    Ok((field("version")?, field("checksum")?))
}

/// Where cargo unpacked h2 `version`: the folder of its manifest, from `cargo metadata`'s
/// JSON.
fn h2_source_folder(metadata: &str, version: &str) -> Result<PathBuf> {
    let metadata: serde_json::Value = serde_json::from_str(metadata)?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "h2" && p["version"] == version)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| anyhow!("cargo metadata lists no h2 {version}"))?;
    Path::new(manifest)
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cargo metadata gives h2 the manifest {manifest}"))
}

/// The `.crate` file that cargo unpacked into `source`: cargo keeps downloads in
/// `registry/cache/REGISTRY/NAME-VERSION.crate` beside `registry/src/REGISTRY/NAME-VERSION`.
fn cached_crate_file(source: &Path, version: &str) -> Result<PathBuf> {
    let registry = source.parent().and_then(|src| {
        let name = src.file_name()?;
        Some(src.parent()?.parent()?.join("cache").join(name))
    });
    let Some(file) = registry.map(|cache| cache.join(format!("h2-{version}.crate"))) else {
        bail!(
            "h2 {version} was unpacked to {}, outside cargo's registry",
            source.display()
        );
    };
    if !file.is_file() {
        bail!(
            "cargo unpacked h2 {version} to {} but keeps no {}: delete that folder and run \
             again, and cargo downloads the crate anew",
            source.display(),
            file.display()
        );
    }
    Ok(file)
}
