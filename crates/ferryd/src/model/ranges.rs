//! Byte ranges of a file, as BITS has them: a file added with ranges
//! (`IBackgroundCopyJob3::AddFileWithRanges`, `BG_FILE_RANGE`) and an on-demand file whose
//! application asks for ranges while its job runs (`IBackgroundCopyFile6`).
//!
//! Where the bytes land:
//!
//! - **Added with ranges**: as BITS writes them, one after the other *in the order
//!   given*: the local file is as long as the ranges together, and byte 0 of it is the
//!   first byte of the first range (BITS's example: remote bytes 100–199, 900–999 and
//!   400–499 make a local file of 300 bytes).
//! - **On demand**: each range at its own offset; the local file is as long as the remote
//!   file (when the server says how long), and bytes not downloaded read as zeros (holes
//!   where the file system supports them). `filled` says which hold downloaded bytes.
//!
//! This module holds the pure rules: checking ranges, merging requests, resolving
//! `BG_LENGTH_TO_EOF` against the remote size, the local layout, and the filled ranges of
//! recorded segments.

use super::Segment;

/// BITS's `BG_LENGTH_TO_EOF`: a range's length that runs to the end of the remote file.
pub const LENGTH_TO_EOF: u64 = u64::MAX;

/// At most this many ranges per file (BITS's `MaxRangesPerFile` group policy; ferry's
/// fixed limit keeps a file's row small).
pub const MAX_RANGES_PER_FILE: usize = 1000;

/// A byte range of a remote file (BITS: `BG_FILE_RANGE`): `length` bytes from `offset`,
/// [`LENGTH_TO_EOF`] for the rest of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRange {
    pub offset: u64,
    pub length: u64,
}

impl FileRange {
    /// `length` bytes from `offset`.
    pub fn new(offset: u64, length: u64) -> FileRange {
        FileRange { offset, length }
    }

    /// The range `[start, end)`; `end` = `u64::MAX` stands for the end of the file.
    pub fn from_bounds(start: u64, end: u64) -> FileRange {
        FileRange {
            offset: start,
            length: if end == u64::MAX {
                LENGTH_TO_EOF
            } else {
                end - start
            },
        }
    }

    /// The end (exclusive), `u64::MAX` for a range that runs to the end of the file.
    pub fn end(&self) -> u64 {
        if self.length == LENGTH_TO_EOF {
            u64::MAX
        } else {
            self.offset.saturating_add(self.length)
        }
    }

    /// How it is written in messages and by the command line: `OFFSET:LENGTH`,
    /// `OFFSET:eof`.
    pub fn describe(&self) -> String {
        if self.length == LENGTH_TO_EOF {
            format!("{}:eof", self.offset)
        } else {
            format!("{}:{}", self.offset, self.length)
        }
    }
}

/// Which bytes of a file are downloaded. The default, no ranges and not on demand, is the
/// whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRanges {
    /// Added with ranges: those ranges, in the order given (their order is the local
    /// layout). On demand: every range requested so far, sorted and merged.
    #[serde(default)]
    pub ranges: Vec<FileRange>,
    /// Nothing downloads until the application requests ranges (BITS:
    /// `BITS_JOB_PROPERTY_ON_DEMAND_MODE`); each lands at its own offset.
    #[serde(default)]
    pub on_demand: bool,
    /// Where the application reads (BITS: `UpdateDownloadPosition`): missing bytes from
    /// here on are fetched first.
    #[serde(default)]
    pub position: u64,
    /// The remote file's size as the server last said it (requests past it are refused).
    #[serde(default)]
    pub size: Option<u64>,
}

impl FileRanges {
    /// The whole file is downloaded, as usual.
    pub fn is_whole(&self) -> bool {
        !self.on_demand && self.ranges.is_empty()
    }
}

/// Serde of a file's [`FileRanges`] as an option, so that a whole file's take one byte in
/// the compact encoding of final jobs (`store::compact`); the store's `files.ranges`
/// column is written from the value itself.
pub mod as_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::FileRanges;

    pub fn serialize<S: Serializer>(r: &FileRanges, s: S) -> Result<S::Ok, S::Error> {
        (*r != FileRanges::default()).then_some(r).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FileRanges, D::Error> {
        Ok(Option::<FileRanges>::deserialize(d)?.unwrap_or_default())
    }
}

/// Checks the ranges of `AddFileWithRanges`: at least one, none empty or past 2^64,
/// none overlapping another (BITS refuses those with `E_INVALIDARG`,
/// `BG_E_INVALID_RANGE` and `BG_E_OVERLAPPING_RANGES`). Their order is kept (it is the
/// local layout).
pub fn check_added(ranges: &[FileRange]) -> Result<(), String> {
    check_each(ranges)?;
    let mut sorted: Vec<(usize, FileRange)> = ranges.iter().copied().enumerate().collect();
    sorted.sort_by_key(|(_, r)| (r.offset, r.end()));
    for w in sorted.windows(2) {
        let ((i, a), (j, b)) = (w[0], w[1]);
        if a.end() > b.offset {
            let (first, second) = if i < j { (i, j) } else { (j, i) };
            return Err(format!(
                "ranges {first} ({}) and {second} ({}) overlap: give each byte once \
                 (BITS: BG_E_OVERLAPPING_RANGES)",
                ranges[first].describe(),
                ranges[second].describe()
            ));
        }
    }
    Ok(())
}

/// Checks the ranges of a `RequestFileRanges`: at least one, none empty or past 2^64.
/// They may overlap each other and ranges requested before (BITS merges them).
pub fn check_requested(ranges: &[FileRange]) -> Result<(), String> {
    check_each(ranges)
}

fn check_each(ranges: &[FileRange]) -> Result<(), String> {
    if ranges.is_empty() {
        return Err("no ranges given: give at least one OFFSET:LENGTH".into());
    }
    if ranges.len() > MAX_RANGES_PER_FILE {
        return Err(format!(
            "{} ranges given; a file takes at most {MAX_RANGES_PER_FILE} \
             (BITS: BG_E_TOO_MANY_RANGES_IN_FILE)",
            ranges.len()
        ));
    }
    for (i, r) in ranges.iter().enumerate() {
        if r.length == 0 {
            return Err(format!(
                "range {i} ({}) is empty: give a length of at least 1, or eof \
                 (BITS: BG_E_INVALID_RANGE)",
                r.describe()
            ));
        }
        if r.offset == LENGTH_TO_EOF
            || (r.length != LENGTH_TO_EOF && r.offset.checked_add(r.length).is_none())
        {
            return Err(format!(
                "range {i} ({}) ends past 2^64 bytes (BITS: BG_E_INVALID_RANGE)",
                r.describe()
            ));
        }
    }
    Ok(())
}

/// The union of `existing` and `more`: sorted, overlapping and adjacent ranges merged.
pub fn merge(existing: &[FileRange], more: &[FileRange]) -> Vec<FileRange> {
    let mut all: Vec<(u64, u64)> = existing
        .iter()
        .chain(more)
        .map(|r| (r.offset, r.end()))
        .collect();
    all.sort();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (s, e) in all {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out.into_iter()
        .map(|(s, e)| FileRange::from_bounds(s, e))
        .collect()
}

/// `ranges` as `[start, end)` pairs in the given order, `BG_LENGTH_TO_EOF` resolved
/// against the remote `size`. A range past the end of the file is an error (BITS:
/// `BG_E_INVALID_RANGE`), and so is one to the end when the server did not say the size.
pub fn resolve(ranges: &[FileRange], size: Option<u64>) -> Result<Vec<(u64, u64)>, String> {
    ranges
        .iter()
        .map(|r| {
            if r.length == 0 {
                return Err(
                    "a range of the file is empty: its stored ranges could not be read; \
                     cancel the job and add the file again"
                        .to_string(),
                );
            }
            let end = match (r.length == LENGTH_TO_EOF, size) {
                (true, Some(size)) => size,
                (true, None) => {
                    return Err(format!(
                        "range {} runs to the end of the file, and the server did not say \
                         how long the file is (no Content-Length to a HEAD)",
                        r.describe()
                    ))
                }
                (false, _) => r.end(),
            };
            if let Some(size) = size {
                if end > size || r.offset >= size {
                    return Err(format!(
                        "range {} goes past the end of the file ({size} bytes) \
                         (BITS: BG_E_INVALID_RANGE)",
                        r.describe()
                    ));
                }
            }
            Ok((r.offset, end))
        })
        .collect()
}

/// Where the bytes of the remote file land in the local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `(remote start, remote end, local start)` of each range.
    spans: Vec<(u64, u64, u64)>,
    /// The local file's length.
    pub local_len: u64,
}

impl Layout {
    /// Added with ranges: the resolved `ranges` one after the other, in the order given.
    pub fn packed(ranges: &[(u64, u64)]) -> Layout {
        let mut at = 0;
        let spans = ranges
            .iter()
            .map(|&(s, e)| {
                let span = (s, e, at);
                at += e - s;
                span
            })
            .collect();
        Layout {
            spans,
            local_len: at,
        }
    }

    /// On demand: each byte at its own offset, the local file `len` long.
    pub fn in_place(len: u64) -> Layout {
        Layout {
            spans: Vec::new(),
            local_len: len,
        }
    }

    /// What to add (wrapping) to a remote offset in the range holding `remote` to get
    /// its local offset.
    pub fn delta(&self, remote: u64) -> u64 {
        self.spans
            .iter()
            .find(|(s, e, _)| *s <= remote && remote < *e)
            .map_or(0, |(s, _, local)| local.wrapping_sub(*s))
    }
}

/// The ranges of the remote file whose bytes are durable in the local file, from the
/// file's recorded `segments`: sorted, adjacent ones merged.
pub fn filled(segments: &[Segment]) -> Vec<FileRange> {
    let done: Vec<FileRange> = segments
        .iter()
        .filter(|s| s.done > 0)
        .map(|s| FileRange::new(s.start, s.done.min(s.end - s.start)))
        .collect();
    merge(&done, &[])
}

/// The ranges of the remote file whose bytes are durable in the local file of `f` (BITS:
/// `GetFilledFileRanges`): its recorded segments; a completed file of ranges, all of
/// them; a file downloaded whole, the bytes from its start.
pub fn filled_of(f: &super::FileRecord) -> Vec<FileRange> {
    if !f.segments.is_empty() {
        return filled(&f.segments);
    }
    if f.ranges.is_whole() {
        let len = if f.completed {
            f.bytes_total.unwrap_or(f.bytes_transferred)
        } else {
            f.bytes_transferred
        };
        return if len > 0 {
            vec![FileRange::new(0, len)]
        } else {
            Vec::new()
        };
    }
    if f.completed && !f.ranges.on_demand {
        return match resolve(&f.ranges.ranges, f.ranges.size) {
            Ok(resolved) => merge(
                &resolved
                    .iter()
                    .map(|&(s, e)| FileRange::from_bounds(s, e))
                    .collect::<Vec<_>>(),
                &[],
            ),
            Err(_) => merge(&f.ranges.ranges, &[]),
        };
    }
    if f.completed {
        if let Some(size) = f.ranges.size {
            return vec![FileRange::new(0, size)];
        }
    }
    Vec::new()
}

/// New segments for the parts of `ranges` (resolved) that no segment covers yet.
pub fn uncovered(ranges: &[(u64, u64)], segments: &[Segment]) -> Vec<Segment> {
    let mut covered: Vec<(u64, u64)> = segments.iter().map(|s| (s.start, s.end)).collect();
    covered.sort();
    let mut out = Vec::new();
    for &(start, end) in ranges {
        let mut at = start;
        for &(cs, ce) in &covered {
            if ce <= at || cs >= end {
                continue;
            }
            if cs > at {
                out.push(Segment {
                    start: at,
                    end: cs,
                    done: 0,
                });
            }
            at = at.max(ce);
            if at >= end {
                break;
            }
        }
        if at < end {
            out.push(Segment {
                start: at,
                end,
                done: 0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(offset: u64, length: u64) -> FileRange {
        FileRange::new(offset, length)
    }

    #[test]
    fn parity_added_ranges_are_checked_as_bits_does() {
        assert!(check_added(&[r(100, 100), r(900, 100), r(400, 100)]).is_ok());
        assert!(check_added(&[r(0, 10), r(10, LENGTH_TO_EOF)]).is_ok());
        let e = check_added(&[]).unwrap_err();
        assert!(e.contains("no ranges"), "{e}");
        let e = check_added(&[r(0, 10), r(5, 10)]).unwrap_err();
        assert!(e.contains("ranges 0 (0:10) and 1 (5:10) overlap"), "{e}");
        let e = check_added(&[r(500, LENGTH_TO_EOF), r(900, 1)]).unwrap_err();
        assert!(e.contains("overlap"), "{e}");
        let e = check_added(&[r(1, 0)]).unwrap_err();
        assert!(e.contains("range 0 (1:0) is empty"), "{e}");
        let e = check_added(&[r(u64::MAX - 1, 5)]).unwrap_err();
        assert!(e.contains("past 2^64"), "{e}");
        let e = check_added(&[r(LENGTH_TO_EOF, 1)]).unwrap_err();
        assert!(e.contains("past 2^64"), "{e}");
        // Requests may overlap (they are merged).
        assert!(check_requested(&[r(0, 10), r(5, 10)]).is_ok());
    }

    #[test]
    fn parity_requests_merge_into_sorted_ranges() {
        let merged = merge(
            &[r(100, 10)],
            &[r(0, 10), r(105, 20), r(10, 5), r(200, LENGTH_TO_EOF)],
        );
        assert_eq!(merged, vec![r(0, 15), r(100, 25), r(200, LENGTH_TO_EOF)]);
    }

    #[test]
    fn parity_eof_resolves_against_the_size_and_the_layout_packs_in_order() {
        let ranges = [r(900, 100), r(100, 100), r(5000, LENGTH_TO_EOF)];
        assert!(resolve(&ranges, None).unwrap_err().contains("did not say"));
        assert!(resolve(&ranges, Some(4000))
            .unwrap_err()
            .contains("past the end"));
        let resolved = resolve(&ranges, Some(6000)).unwrap();
        assert_eq!(resolved, vec![(900, 1000), (100, 200), (5000, 6000)]);
        let layout = Layout::packed(&resolved);
        assert_eq!(layout.local_len, 1200);
        assert_eq!(950u64.wrapping_add(layout.delta(950)), 50);
        assert_eq!(150u64.wrapping_add(layout.delta(150)), 150);
        assert_eq!(5000u64.wrapping_add(layout.delta(5000)), 200);
        assert_eq!(Layout::in_place(10).delta(7), 0);
    }

    #[test]
    fn parity_filled_and_uncovered_follow_the_segments() {
        let segs = [
            Segment {
                start: 0,
                end: 10,
                done: 10,
            },
            Segment {
                start: 10,
                end: 20,
                done: 4,
            },
            Segment {
                start: 50,
                end: 60,
                done: 0,
            },
        ];
        assert_eq!(filled(&segs), vec![r(0, 14)]);
        assert_eq!(
            uncovered(&[(5, 30), (55, 70)], &segs),
            vec![
                Segment {
                    start: 20,
                    end: 30,
                    done: 0
                },
                Segment {
                    start: 60,
                    end: 70,
                    done: 0
                }
            ]
        );
    }
}
