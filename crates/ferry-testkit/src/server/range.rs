//! `Range` headers: parsing a single byte range and resolving it against a
//! body length.

/// A single byte range from a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ByteRange {
    /// `bytes=N-`
    From(u64),
    /// `bytes=N-M` (inclusive)
    FromTo(u64, u64),
    /// `bytes=-N` (the last N bytes)
    Suffix(u64),
}

impl ByteRange {
    pub(super) fn start(&self) -> Option<u64> {
        match *self {
            ByteRange::From(n) | ByteRange::FromTo(n, _) => Some(n),
            ByteRange::Suffix(_) => None,
        }
    }

    /// The half-open byte interval to send, or `None` if unsatisfiable.
    pub(super) fn resolve(self, total: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(n) if n < total => Some((n, total)),
            ByteRange::FromTo(n, m) if n < total => Some((n, m.saturating_add(1).min(total))),
            ByteRange::Suffix(k) if k > 0 && total > 0 => Some((total - k.min(total), total)),
            _ => None,
        }
    }
}

/// Parses a single-range `Range` header; anything else is ignored (`None`).
pub(super) fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return b.parse().ok().map(ByteRange::Suffix);
    }
    let start = a.parse().ok()?;
    if b.is_empty() {
        return Some(ByteRange::From(start));
    }
    let end = b.parse().ok()?;
    (end >= start).then_some(ByteRange::FromTo(start, end))
}
