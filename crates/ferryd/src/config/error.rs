//! Why a `ferryd.toml` was refused: [`ConfigError`], naming the file, the key, the value
//! and what the key takes.
//!
//! May use: nothing of the daemon.

use std::path::PathBuf;

use serde_path_to_error::Segment;
use serde_value::DeserializerError;

/// A configuration file ferryd will not start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is there but cannot be read.
    #[error("reading {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{}: {source}", path.display())]
    NotToml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A key ferryd does not know (a typo, or a key of another version).
    #[error("{}: unknown key {key} (expected one of {})", path.display(), known.join(", "))]
    UnknownKey {
        path: PathBuf,
        /// The key, with its tables: `peers.enable`.
        key: String,
        /// The keys its table takes.
        known: Vec<&'static str>,
    },
    /// A key that has no default is left out (in a `[[bandwidth.schedule]]` entry).
    #[error("{}: {key} is missing", path.display())]
    MissingKey { path: PathBuf, key: String },
    /// A value the key does not take.
    #[error("{}: {key} = {value}: expected {expected}", path.display())]
    BadValue {
        path: PathBuf,
        /// The key, with its tables and list positions: `bandwidth.schedule[0].from`.
        key: String,
        /// The value as written (strings in single quotes).
        value: String,
        /// What the key takes: "a whole number from 1 to 64".
        expected: String,
    },
    /// Values that are each fine but not together (an empty schedule period).
    #[error("{}: {key}: {problem}", path.display())]
    Inconsistent {
        path: PathBuf,
        key: String,
        problem: String,
    },
    /// `ferryd --system` was given a per-user daemon's file.
    #[error(
        "{} says mode = \"user\" but ferryd was started with --system: use the system-wide \
         configuration ({}) or remove the line",
        path.display(),
        ferry_common::paths::SYSTEM_CONFIG
    )]
    UserFileInSystemMode { path: PathBuf },
}

impl ConfigError {
    /// The key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::MissingKey { key, .. }
            | ConfigError::BadValue { key, .. }
            | ConfigError::Inconsistent { key, .. } => Some(key),
            ConfigError::UserFileInSystemMode { .. } => Some("mode"),
            ConfigError::Unreadable { .. } | ConfigError::NotToml { .. } => None,
        }
    }

    /// The deserializer's refusal `e` of the file at `path`, whose keys (laid over the
    /// defaults) are `table`: the value is looked up there by the refusal's path.
    pub(super) fn refused(
        path: PathBuf,
        table: &toml::Table,
        e: serde_path_to_error::Error<DeserializerError>,
    ) -> ConfigError {
        let key = e.path().to_string();
        let value = value_at(table, e.path());
        match e.into_inner() {
            DeserializerError::UnknownField(_, known) => ConfigError::UnknownKey {
                path,
                key,
                known: known.to_vec(),
            },
            DeserializerError::MissingField(field) => ConfigError::MissingKey {
                path,
                key: format!("{key}.{field}"),
            },
            DeserializerError::InvalidType(unexpected, expected)
            | DeserializerError::InvalidValue(unexpected, expected) => ConfigError::BadValue {
                path,
                key,
                value: value.unwrap_or_else(|| unexpected.to_unexpected().to_string()),
                expected,
            },
            DeserializerError::InvalidLength(length, expected) => ConfigError::BadValue {
                path,
                key,
                value: value.unwrap_or_else(|| format!("({length} values)")),
                expected,
            },
            DeserializerError::UnknownVariant(name, names) => ConfigError::BadValue {
                path,
                key,
                value: value.unwrap_or(name),
                expected: format!("one of {}", names.join(", ")),
            },
            DeserializerError::DuplicateField(field) => ConfigError::Inconsistent {
                path,
                key,
                problem: format!("{field} is given twice"),
            },
            DeserializerError::Custom(problem) => ConfigError::Inconsistent { path, key, problem },
        }
    }
}

/// The value at `at` in `table`, as written: strings in single quotes, the rest as TOML.
fn value_at(table: &toml::Table, at: &serde_path_to_error::Path) -> Option<String> {
    let mut segments = at.iter();
    let mut value = match segments.next()? {
        Segment::Map { key } => table.get(key)?,
        _ => return None,
    };
    for segment in segments {
        value = match segment {
            Segment::Map { key } => value.as_table()?.get(key)?,
            Segment::Seq { index } => value.as_array()?.get(*index)?,
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    Some(match value {
        toml::Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    })
}
