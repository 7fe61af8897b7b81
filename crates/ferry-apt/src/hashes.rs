//! The hashes apt checks a fetched file against, computed from the file that apt will
//! use: SHA-256, SHA-512 and the size (apt's `Checksum-FileSize`). apt compares every
//! kind both sides name, so these cover any index apt trusts (it refuses MD5 and SHA-1
//! alone).
//!
//! May use: std, sha2.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

/// A file's hashes, as `201 URI Done` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    /// Lower-case hex.
    pub sha256: String,
    /// Lower-case hex.
    pub sha512: String,
    /// Bytes.
    pub size: u64,
}

impl FileHashes {
    /// Hashes what `reader` gives to its end.
    pub fn of_reader(mut reader: impl Read) -> io::Result<FileHashes> {
        let (mut a, mut b, mut size) = (Sha256::new(), Sha512::new(), 0u64);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            a.update(&buf[..n]);
            b.update(&buf[..n]);
            size += n as u64;
        }
        Ok(FileHashes {
            sha256: hex::encode(a.finalize()),
            sha512: hex::encode(b.finalize()),
            size,
        })
    }

    /// Hashes the file at `path`.
    pub fn of_file(path: &Path) -> io::Result<FileHashes> {
        FileHashes::of_reader(std::fs::File::open(path)?)
    }

    /// The fields apt reads (`SHA256-Hash`, `SHA512-Hash`, `Checksum-FileSize-Hash`).
    pub fn fields(&self) -> Vec<(String, String)> {
        vec![
            ("SHA256-Hash".into(), self.sha256.clone()),
            ("SHA512-Hash".into(), self.sha512.clone()),
            ("Checksum-FileSize-Hash".into(), self.size.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        let h = FileHashes::of_reader(&b"abc"[..]).unwrap();
        assert_eq!(
            h.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(h.sha512.starts_with("ddaf35a193617aba"));
        assert_eq!(h.size, 3);
        let fields = h.fields();
        assert_eq!(fields[0].0, "SHA256-Hash");
        assert_eq!(fields[2], ("Checksum-FileSize-Hash".into(), "3".into()));
    }

    #[test]
    fn a_file_larger_than_the_buffer_is_hashed_whole() {
        let dir = std::env::temp_dir().join(format!("ferry-apt-hash-{}", std::process::id()));
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&dir, &data).unwrap();
        let h = FileHashes::of_file(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(h.size, data.len() as u64);
        assert_eq!(h.sha256, hex::encode(Sha256::digest(&data)));
    }
}
