//! Reading `ferryd.toml`: the file's keys are laid over the mode's defaults (as
//! [`Config`] serializes them), and the whole is deserialized into a [`Config`] in one
//! pass. A key the file leaves out so keeps its default whatever table it is in, and a
//! refusal names the key it was at (serde_path_to_error), with a typed reason
//! (serde-value's errors, never a message's text).
//!
//! May use: nothing of the daemon.

use std::path::Path;

use serde::Deserialize;
use serde_value::{DeserializerError, ValueDeserializer};

use super::{Config, ConfigError, Mode, PeersConfig};

/// [`Config::load_as`].
pub(super) fn load(path: &Path, mode: Option<Mode>) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut c = Config::defaults(mode.unwrap_or_default());
            c.source = path.to_owned();
            c.peers = PeersConfig::default().resolved(path.parent());
            return Ok(c);
        }
        Err(source) => {
            return Err(ConfigError::Unreadable {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse(path, &text, mode)
}

/// The settings `text` (read from `path`) gives a daemon started in `mode` (`None`: as
/// the file says, else per-user).
pub(super) fn parse(path: &Path, text: &str, mode: Option<Mode>) -> Result<Config, ConfigError> {
    let file: toml::Table = text.parse().map_err(|source| ConfigError::NotToml {
        path: path.to_owned(),
        source,
    })?;
    // A `mode` that is not a mode is refused with the other keys, below.
    let file_mode = file
        .get("mode")
        .and_then(|m| Mode::deserialize(m.clone()).ok());
    let mode = match (mode, file_mode) {
        (Some(Mode::System), Some(Mode::User)) => {
            return Err(ConfigError::UserFileInSystemMode {
                path: path.to_owned(),
            })
        }
        (Some(m), _) => m,
        (None, m) => m.unwrap_or_default(),
    };
    let mut table = defaults_table(mode);
    lay_over(&mut table, file);
    if file_mode.is_some() {
        // The command line's mode wins; a `mode` that is no mode stays, to be refused.
        table.insert("mode".into(), mode_value(mode));
    }
    let mut c =
        deserialize(&table).map_err(|e| ConfigError::refused(path.to_owned(), &table, e))?;
    c.source = path.to_owned();
    c.peers = c.peers.resolved(path.parent());
    Ok(c)
}

/// The defaults of `mode` as a file would write them.
fn defaults_table(mode: Mode) -> toml::Table {
    // Every value of the defaults is one TOML can write (a test loads them back).
    toml::Table::try_from(Config::defaults(mode)).expect("the defaults serialize as TOML")
}

fn mode_value(mode: Mode) -> toml::Value {
    toml::Value::try_from(mode).expect("a mode serializes as a string")
}

/// `file` laid over `base`: tables merge key by key, any other value of `file` replaces
/// `base`'s (a list is replaced whole).
fn lay_over(base: &mut toml::Table, file: toml::Table) {
    for (key, value) in file {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => lay_over(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `table` as a [`Config`]; a refusal says where (the path of keys) and why (typed).
fn deserialize(
    table: &toml::Table,
) -> Result<Config, serde_path_to_error::Error<DeserializerError>> {
    // serde-value's deserializer takes the error type as a parameter: its own keeps
    // serde's reasons (unknown field, invalid value and the expected text) as variants.
    let value = serde_value::to_value(table).map_err(|e| {
        serde_path_to_error::Error::new(
            serde_path_to_error::Track::new().path(),
            DeserializerError::Custom(e.to_string()),
        )
    })?;
    serde_path_to_error::deserialize(ValueDeserializer::<DeserializerError>::new(value))
}
