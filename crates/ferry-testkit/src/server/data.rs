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

/// `len` pseudo-random bytes, always the same for the same `seed`
/// (xorshift64*; not for cryptography).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    // splitmix64 of the seed, so that nearby seeds give unrelated streams and
    // a zero seed works.
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    if x == 0 {
        x = 0x2545_F491_4F6C_DD1D;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
