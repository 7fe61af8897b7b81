//! The line apt shows while ferry works (`102 Status`). apt draws a file's own progress
//! from the size of its destination, which ferry fills only at the end (the bytes go to a
//! part file until the job completes); so the method reports the files under way
//! together, as one line apt shows in its progress bar between files.
//!
//! May use: ferry-common.

use std::collections::BTreeMap;

use ferry_common::units::{format_rate, format_size};

/// Where one file stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileProgress {
    /// Bytes transferred.
    pub done: u64,
    /// Its size, once known.
    pub total: Option<u64>,
    /// Bytes that came from the fleet's peers.
    pub from_peers: u64,
    /// Bytes per second now.
    pub rate: u64,
    /// Why it waits, when it does ("retrying: …").
    pub note: Option<String>,
}

/// Every file under way, by apt's URI.
#[derive(Debug, Default)]
pub struct Progress {
    files: BTreeMap<String, (String, FileProgress)>,
    /// Set while ferryd is away: what happened.
    pub daemon_away: Option<String>,
    changed: bool,
}

impl Progress {
    /// Records where the file `uri` (called `name`) stands.
    pub fn set(&mut self, uri: &str, name: &str, p: FileProgress) {
        let entry = (name.to_string(), p);
        if self.files.get(uri) != Some(&entry) {
            self.files.insert(uri.to_string(), entry);
            self.changed = true;
        }
    }

    /// The file `uri` is no longer under way.
    pub fn remove(&mut self, uri: &str) {
        self.changed |= self.files.remove(uri).is_some();
    }

    /// Records that ferryd went away (`Some(reason)`) or is back (`None`).
    pub fn set_daemon_away(&mut self, reason: Option<String>) {
        self.changed |= self.daemon_away != reason;
        self.daemon_away = reason;
    }

    /// A URI under way, for the status message's `URI` field.
    pub fn any_uri(&self) -> Option<&str> {
        self.files.keys().next().map(String::as_str)
    }

    /// The status line when something changed since the last call, else `None`.
    pub fn take_line(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.changed) || self.files.is_empty() {
            return None;
        }
        Some(self.line())
    }

    /// The status line: files under way, bytes, rate, bytes from peers; a waiting file's
    /// reason; ferryd's absence.
    pub fn line(&self) -> String {
        if let Some(reason) = &self.daemon_away {
            return format!("ferry: ferryd went away ({reason}); waiting for it to come back");
        }
        let n = self.files.len();
        let done: u64 = self.files.values().map(|(_, p)| p.done).sum();
        let peers: u64 = self.files.values().map(|(_, p)| p.from_peers).sum();
        let rate: u64 = self.files.values().map(|(_, p)| p.rate).sum();
        let total: Option<u64> = self.files.values().map(|(_, p)| p.total).sum();
        let mut line = if n == 1 {
            format!("ferry: {}", self.files.values().next().unwrap().0)
        } else {
            format!("ferry: {n} files")
        };
        line.push_str(&format!(" {}", format_size(done)));
        if let Some(total) = total {
            line.push_str(&format!(" of {}", format_size(total)));
        }
        if rate > 0 {
            line.push_str(&format!(", {}", format_rate(rate)));
        }
        if peers > 0 {
            line.push_str(&format!(", {} from peers", format_size(peers)));
        }
        for (name, p) in self.files.values() {
            if let Some(note) = &p.note {
                line.push_str(&format!("; {name}: {note}"));
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_is_named_and_several_are_summed() {
        let mut p = Progress::default();
        p.set(
            "u1",
            "a.deb",
            FileProgress {
                done: 1 << 20,
                total: Some(4 << 20),
                ..Default::default()
            },
        );
        assert_eq!(
            p.take_line().unwrap(),
            format!(
                "ferry: a.deb {} of {}",
                format_size(1 << 20),
                format_size(4 << 20)
            )
        );
        assert_eq!(p.take_line(), None, "nothing changed");
        p.set(
            "u2",
            "b.deb",
            FileProgress {
                done: 2 << 20,
                total: None,
                from_peers: 2 << 20,
                rate: 1 << 20,
                note: None,
            },
        );
        let line = p.take_line().unwrap();
        assert!(line.starts_with("ferry: 2 files "), "{line}");
        assert!(!line.contains(" of "), "a size unknown: no total: {line}");
        assert!(line.contains(&format_rate(1 << 20)), "{line}");
        assert!(
            line.ends_with(&format!("{} from peers", format_size(2 << 20))),
            "{line}"
        );
    }

    #[test]
    fn a_waiting_file_says_why_and_ferryds_absence_says_so() {
        let mut p = Progress::default();
        p.set(
            "u1",
            "a.deb",
            FileProgress {
                note: Some("retrying: connection refused".into()),
                ..Default::default()
            },
        );
        assert!(p.line().ends_with("; a.deb: retrying: connection refused"));
        p.set_daemon_away(Some("it was killed".into()));
        assert_eq!(
            p.take_line().unwrap(),
            "ferry: ferryd went away (it was killed); waiting for it to come back"
        );
        p.remove("u1");
        assert_eq!(p.take_line(), None, "nothing under way, nothing to say");
    }
}
