//! `ferry peers ca new` and `ferry peers cert issue`: a fleet's trust material, made on
//! the spot with rcgen (no daemon involved). A fleet is a CA; each machine gets a
//! certificate and key signed by it, plus the CA's certificate, in one folder whose files
//! go into `/etc/ferry/fleet/` (system-wide) or `~/.config/ferry/fleet/` (a user's daemon)
//! on that machine (the `[peers]` defaults point there).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

const DAY: Duration = Duration::from_secs(86_400);
/// How long a node certificate is valid: 5 years (`ferry peers cert renew` makes another).
const NODE_VALIDITY: Duration = Duration::from_secs(5 * 365 * 86_400);

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

/// The fleet CA of `ca_dir` as rcgen signs with it: its PEM, its certificate and key.
fn load_ca(ca_dir: &Path) -> Result<(String, rcgen::Certificate, KeyPair)> {
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
    Ok((ca_pem, ca, ca_key))
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        bail!(
            "'{name}' is not a machine name: use letters, digits, '-' and '.' (e.g. its host name)"
        );
    }
    Ok(())
}

/// Writes a node's folder `out` (new files only): `ca.pem`, a certificate for `name`
/// with `key`, valid 5 years from now, signed by the CA, and `node.key`.
fn write_node(
    out: &Path,
    name: &str,
    key: &KeyPair,
    (ca_pem, ca, ca_key): &(String, rcgen::Certificate, KeyPair),
) -> Result<()> {
    for f in ["ca.pem", "node.pem", "node.key"] {
        if out.join(f).exists() {
            bail!(
                "{} already exists: choose another --out folder",
                out.join(f).display()
            );
        }
    }
    private_dir(out)?;
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
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs);
    // A day back: clocks of the fleet that lag a little still accept it.
    params.not_before = now - DAY;
    params.not_after = now + NODE_VALIDITY;
    let cert = params.signed_by(key, ca, ca_key)?;
    write_new(&out.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
    write_new(&out.join("node.pem"), cert.pem().as_bytes(), 0o644)?;
    write_new(&out.join("node.key"), key.serialize_pem().as_bytes(), 0o600)?;
    Ok(())
}

/// Issues a certificate for machine `name`, signed by the CA in `ca_dir`, into `out`:
/// `ca.pem`, `node.pem` and `node.key`.
pub fn cert_issue(ca_dir: &Path, name: &str, out: &Path) -> Result<()> {
    check_name(name)?;
    let ca = load_ca(ca_dir)?;
    write_node(out, name, &KeyPair::generate()?, &ca)
}

/// The machine name (common name) of the certificate `from/node.pem`.
pub fn cert_name(from: &Path) -> Result<String> {
    let pem = fs::read_to_string(from.join("node.pem")).with_context(|| {
        format!(
            "reading {}/node.pem (the machine's certificate folder: /etc/ferry/fleet, \
             ~/.config/ferry/fleet, or the folder `ferry peers cert issue` made)",
            from.display()
        )
    })?;
    let cert = CertificateParams::from_ca_cert_pem(&pem)
        .with_context(|| format!("{}/node.pem is not a certificate", from.display()))?;
    cert_name_of(&cert, from)
}

/// The machine name (common name) of a certificate found in `from`.
fn cert_name_of(cert: &CertificateParams, from: &Path) -> Result<String> {
    match cert.distinguished_name.get(&DnType::CommonName) {
        Some(DnValue::Utf8String(s)) => Ok(s.clone()),
        Some(DnValue::PrintableString(s)) => Ok(s.as_str().to_string()),
        _ => bail!(
            "the certificate in {} names no machine (no common name)",
            from.display()
        ),
    }
}

/// Renews the certificate in the node folder `from` (its `node.pem`; its `node.key`
/// unless `new_key`): a new certificate for the same machine name, valid 5 years from
/// now, signed by the CA in `ca_dir`, with the same key or a new one, into `out`. The
/// machine's name.
pub fn cert_renew(ca_dir: &Path, from: &Path, new_key: bool, out: &Path) -> Result<String> {
    let name = cert_name(from)?;
    check_name(&name)?;
    let key = if new_key {
        KeyPair::generate()?
    } else {
        let pem = fs::read_to_string(from.join("node.key")).with_context(|| {
            format!(
                "reading {}/node.key (to keep the machine's key; or give --new-key)",
                from.display()
            )
        })?;
        KeyPair::from_pem(&pem)
            .with_context(|| format!("{}/node.key is not a PEM private key", from.display()))?
    };
    let ca = load_ca(ca_dir)?;
    write_node(out, &name, &key, &ca)?;
    Ok(name)
}

/// Seconds since the Unix epoch.
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Revokes the certificate `cert` (a node folder holding `node.pem`, or the file itself)
/// with the CA in `ca_dir`: its serial number joins `ca_dir/revoked.txt`, and
/// `ca_dir/crl.pem`, the fleet's revocation list signed by the CA, is written again with
/// every serial revoked so far. The machine's name and the list's path.
pub fn cert_revoke(ca_dir: &Path, cert: &Path) -> Result<(String, PathBuf)> {
    let folder = if cert.is_dir() {
        cert.to_path_buf()
    } else {
        cert.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let pem_path = if cert.is_dir() {
        cert.join("node.pem")
    } else {
        cert.to_path_buf()
    };
    let pem = fs::read_to_string(&pem_path).with_context(|| {
        format!(
            "reading {} (the machine's certificate, or its folder)",
            pem_path.display()
        )
    })?;
    let params = CertificateParams::from_ca_cert_pem(&pem)
        .with_context(|| format!("{} is not a certificate", pem_path.display()))?;
    let name = cert_name_of(&params, &folder)?;
    let serial = params
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.to_bytes()))
        .context("the certificate has no serial number")?;
    let ca = load_ca(ca_dir)?;
    let list_path = ca_dir.join("revoked.txt");
    let mut listed = fs::read_to_string(&list_path).unwrap_or_default();
    if !listed
        .lines()
        .any(|l| l.split(' ').next() == Some(serial.as_str()))
    {
        listed.push_str(&format!("{serial} {name} {}\n", unix_secs()));
    }
    let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix_secs());
    let mut revoked = Vec::new();
    for line in listed.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split(' ');
        let hex_serial = parts.next().unwrap_or_default();
        let bytes = hex::decode(hex_serial)
            .with_context(|| format!("{}: '{line}' is not a serial number", list_path.display()))?;
        let when: u64 = parts.nth(1).and_then(|t| t.parse().ok()).unwrap_or(0);
        revoked.push(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&bytes),
            revocation_time: rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(when),
            reason_code: Some(rcgen::RevocationReason::CessationOfOperation),
            invalidity_date: None,
        });
    }
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::from_secs(20 * 365 * 86_400),
        crl_number: rcgen::SerialNumber::from_slice(&(revoked.len() as u64).to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca.1, &ca.2)?;
    let crl_path = ca_dir.join("crl.pem");
    replace(&list_path, listed.as_bytes(), 0o644)?;
    replace(&crl_path, crl.pem()?.as_bytes(), 0o644)?;
    Ok((name, crl_path))
}

/// Writes `data` to `path` through a temporary file renamed over it.
fn replace(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("new");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, data, mode)?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the certificate of the node folder `dir` expires (Unix seconds).
    fn not_after(dir: &Path) -> i64 {
        let pem = fs::read_to_string(dir.join("node.pem")).unwrap();
        let p = CertificateParams::from_ca_cert_pem(&pem).unwrap();
        p.not_after.unix_timestamp()
    }

    #[test]
    fn renew_keeps_the_name_and_the_key_or_makes_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        ca_new(&ca).unwrap();
        let first = dir.path().join("host1");
        cert_issue(&ca, "host1", &first).unwrap();

        let same = dir.path().join("same");
        assert_eq!(cert_renew(&ca, &first, false, &same).unwrap(), "host1");
        assert_eq!(cert_name(&same).unwrap(), "host1");
        assert_eq!(
            fs::read(first.join("node.key")).unwrap(),
            fs::read(same.join("node.key")).unwrap(),
            "the same key"
        );
        assert_ne!(
            fs::read(first.join("node.pem")).unwrap(),
            fs::read(same.join("node.pem")).unwrap(),
            "a new certificate"
        );
        assert_eq!(
            fs::read(ca.join("ca.pem")).unwrap(),
            fs::read(same.join("ca.pem")).unwrap()
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let expires = not_after(&same);
        assert!(
            (expires - now - NODE_VALIDITY.as_secs() as i64).abs() < 3600,
            "5 years from now: {expires}"
        );

        let fresh = dir.path().join("fresh");
        cert_renew(&ca, &first, true, &fresh).unwrap();
        assert_ne!(
            fs::read(first.join("node.key")).unwrap(),
            fs::read(fresh.join("node.key")).unwrap(),
            "--new-key"
        );
        // Never over an existing folder's files; a folder without a certificate is named.
        let e = cert_renew(&ca, &first, false, &same).unwrap_err();
        assert!(format!("{e:#}").contains("already exists"), "{e:#}");
        let e = cert_renew(
            &ca,
            &dir.path().join("nothing"),
            false,
            &dir.path().join("x"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("node.pem"), "{e:#}");
    }

    #[test]
    fn revoke_lists_each_certificate_once_in_a_signed_list() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        ca_new(&ca).unwrap();
        for n in ["h1", "h2"] {
            cert_issue(&ca, n, &dir.path().join(n)).unwrap();
        }
        let (name, crl) = cert_revoke(&ca, &dir.path().join("h1")).unwrap();
        assert_eq!(name, "h1");
        let first = fs::read_to_string(&crl).unwrap();
        assert!(first.starts_with("-----BEGIN X509 CRL-----"), "{first}");
        // Again (by the file this time): listed once.
        cert_revoke(&ca, &dir.path().join("h1").join("node.pem")).unwrap();
        let listed = fs::read_to_string(ca.join("revoked.txt")).unwrap();
        assert_eq!(listed.lines().count(), 1, "{listed}");
        cert_revoke(&ca, &dir.path().join("h2")).unwrap();
        let listed = fs::read_to_string(ca.join("revoked.txt")).unwrap();
        assert_eq!(listed.lines().count(), 2, "{listed}");
        assert_ne!(fs::read_to_string(&crl).unwrap(), first, "a new list");
        let e = cert_revoke(&ca, &dir.path().join("nothing")).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("nothing") && e.contains("certificate"), "{e}");
    }
}
