//! `ferry peers ca new` and `ferry peers cert issue`: a fleet's trust material, made on
//! the spot with rcgen (no daemon involved). A fleet is a CA; each machine gets a
//! certificate and key signed by it, plus the CA's certificate, in one folder to copy to
//! `~/.config/ferry/fleet/` on that machine (the `[peers]` defaults point there).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The year now, for validity periods.
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

/// Writes `data` to a new file `path` with `mode`; refuses to replace a file.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Makes a fleet CA in `dir`: `ca.pem` (to give every machine) and `ca.key` (keep it
/// private: whoever holds it can add machines to the fleet).
pub fn ca_new(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca.key");
    if cert_path.exists() || key_path.exists() {
        bail!(
            "{} already holds a fleet CA: use it, or choose another folder",
            dir.display()
        );
    }
    private_dir(dir)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    name.push(DnType::CommonName, format!("ferry fleet CA {tag}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 20, 1, 1);
    let cert = params.self_signed(&key)?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

/// Issues a certificate for machine `name`, signed by the CA in `ca_dir`, into `out`:
/// `ca.pem`, `node.pem` and `node.key`.
pub fn cert_issue(ca_dir: &Path, name: &str, out: &Path) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        bail!(
            "'{name}' is not a machine name: use letters, digits, '-' and '.' (e.g. its host name)"
        );
    }
    let ca_pem = fs::read_to_string(ca_dir.join("ca.pem")).with_context(|| {
        format!(
            "reading {}/ca.pem (make a CA with `ferry peers ca new DIR`)",
            ca_dir.display()
        )
    })?;
    let ca_key_pem = fs::read_to_string(ca_dir.join("ca.key"))
        .with_context(|| format!("reading {}/ca.key", ca_dir.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("the CA key is not a PEM private key")?;
    // The issuer as rcgen needs it: the same name and key as the CA certificate.
    let ca = CertificateParams::from_ca_cert_pem(&ca_pem)
        .context("the CA certificate cannot be read")?
        .self_signed(&ca_key)?;
    for f in ["ca.pem", "node.pem", "node.key"] {
        if out.join(f).exists() {
            bail!(
                "{} already exists: choose another --out folder",
                out.join(f).display()
            );
        }
    }
    private_dir(out)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 5, 1, 1);
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    write_new(&out.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
    write_new(&out.join("node.pem"), cert.pem().as_bytes(), 0o644)?;
    write_new(&out.join("node.key"), key.serialize_pem().as_bytes(), 0o600)?;
    Ok(())
}
