//! Helpers for test data: [`sha256_hex`] to compare contents, [`gzip`] (the
//! body [`Mode::gzip`] serves) and reproducible [`random_bytes`].

use std::io::Write;

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

#[cfg(doc)]
use super::Mode;

/// SHA-256 of `data`, as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `data` as a gzip member (RFC 1952), the body [`Mode::gzip`] serves.
///
/// Encoded with [`flate2`] at [`Compression::none`]: the deflate stream is
/// stored (uncompressed) blocks, so the body is about as long as the content
/// and cheap to build on every request, even in debug builds (compressing
/// random test data buys nothing). Any gzip reader decodes it (`gzip -d`).
/// The output is always the same for the same input (no name, mtime 0).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::none());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// `len` pseudo-random bytes, always the same for the same `seed` (a
/// [`fastrand::Rng`] seeded with `seed`; not for cryptography). The bytes
/// for a shorter `len` are a prefix of those for a longer one.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fastrand::Rng::with_seed(seed).fill(&mut out);
    out
}
