//! A real Debian repository made for a test: packages built with `dpkg-deb` from a folder
//! with `DEBIAN/control` and random data, `Packages` and `Release` written by
//! `apt-ftparchive` (Debian's apt-utils). Unsigned: the sources line says
//! `[trusted=yes]`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_testkit::sha256_hex;

use crate::peer_cache_kit::content;

/// The suite and component of every test repository.
pub const SUITE: &str = "stable";

/// A package in the repository.
#[derive(Debug, Clone)]
pub struct Package {
    /// Its name (also what `apt-get install` is given).
    pub name: String,
    /// The `.deb` file's name.
    pub file_name: String,
    /// Its path below the repository's root (as the origin's log shows it, after `/debian/`).
    pub pool_path: String,
    /// The `.deb` file's bytes.
    pub deb: Vec<u8>,
    /// Their SHA-256.
    pub sha256: String,
}

/// Runs `cmd`, panicking with its output when it fails; returns its standard output.
fn must(mut cmd: Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (apt-get install dpkg apt-utils)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Builds a repository under `root` (served as `/debian/` when `root` is the origin's
/// `www/debian`): one package per `(name, bytes of data)`, each made of random bytes from
/// `seed`.
pub fn build(root: &Path, packages: &[(&str, usize)], seed: u64) -> Vec<Package> {
    let work = tempfile::Builder::new()
        .prefix("ferry-apt-pkg-")
        .tempdir()
        .unwrap();
    let pool = root.join("pool/main");
    std::fs::create_dir_all(&pool).unwrap();
    let mut built = Vec::new();
    for (i, (name, size)) in packages.iter().enumerate() {
        let dir = work.path().join(name);
        std::fs::create_dir_all(dir.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(dir.join("usr/share").join(name)).unwrap();
        std::fs::write(
            dir.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: 1.0\nArchitecture: all\n\
                 Maintainer: ferry tests <tests@ferry.invalid>\n\
                 Description: ferry's apt test package {name}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("usr/share").join(name).join("data"),
            content(*size, seed * 100 + i as u64),
        )
        .unwrap();
        let file_name = format!("{name}_1.0_all.deb");
        let mut cmd = Command::new("dpkg-deb");
        cmd.args(["--root-owner-group", "-Znone", "--build"])
            .arg(&dir)
            .arg(pool.join(&file_name));
        must(cmd);
        let deb = std::fs::read(pool.join(&file_name)).unwrap();
        built.push(Package {
            name: name.to_string(),
            pool_path: format!("pool/main/{file_name}"),
            sha256: sha256_hex(&deb),
            file_name,
            deb,
        });
    }
    index(root);
    built
}

/// Writes `dists/SUITE/main/binary-amd64/Packages` (plain and gzip) and
/// `dists/SUITE/Release` with `apt-ftparchive`.
fn index(root: &Path) {
    let bin = root.join(format!("dists/{SUITE}/main/binary-amd64"));
    std::fs::create_dir_all(&bin).unwrap();
    let mut cmd = Command::new("apt-ftparchive");
    cmd.current_dir(root).args(["packages", "pool"]);
    let packages = must(cmd);
    std::fs::write(bin.join("Packages"), &packages).unwrap();
    let mut gz = Command::new("gzip");
    gz.args(["-9", "-k", "-n"]).arg(bin.join("Packages"));
    must(gz);
    let mut cmd = Command::new("apt-ftparchive");
    cmd.current_dir(root)
        .args([
            "-o",
            &format!("APT::FTPArchive::Release::Suite={SUITE}"),
            "-o",
            &format!("APT::FTPArchive::Release::Codename={SUITE}"),
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "release",
        ])
        .arg(format!("dists/{SUITE}"));
    let release = must(cmd);
    std::fs::write(root.join(format!("dists/{SUITE}/Release")), release).unwrap();
}

/// The path of `package` in the repository under `root`.
pub fn deb_path(root: &Path, package: &Package) -> PathBuf {
    root.join(&package.pool_path)
}

/// The line apt prints for the SHA-256 of a received file that failed its check.
pub fn received_sha256_line(bytes: &[u8]) -> String {
    format!("SHA256:{}", sha256_hex(bytes))
}
