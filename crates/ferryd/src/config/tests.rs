//! `ferryd.toml` as ferryd reads it: ranges, refusals, defaults, the shipped files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

#[test]
fn rates() {
    assert_eq!(parse_rate("1MiB/s").unwrap(), 1 << 20);
    assert_eq!(parse_rate("500k").unwrap(), 500_000);
    assert_eq!(parse_rate("2048").unwrap(), 2048);
    assert!(parse_rate("fast").is_err());
    assert!(parse_rate("3 parsecs").is_err());
}

#[test]
fn file_overrides_defaults_and_rejects_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ferryd.toml");
    assert_eq!(Config::load(&p).unwrap().max_concurrent_jobs, 8);
    std::fs::write(
        &p,
        "max_concurrent_jobs = 3\nbandwidth_limit = \"1MiB/s\"\nretention = \"2d\"\n",
    )
    .unwrap();
    let c = Config::load(&p).unwrap();
    assert_eq!(c.max_concurrent_jobs, 3);
    assert_eq!(c.bandwidth_limit, 1 << 20);
    assert_eq!(c.retention, Duration::from_secs(2 * 86400));
    std::fs::write(&p, "max_concurent_jobs = 3\n").unwrap();
    let e = Config::load(&p).unwrap_err();
    assert_eq!(e.key(), Some("max_concurent_jobs"));
    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
}

mod shipped_example {
    use super::*;

    fn dist(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../dist")
            .join(name)
    }

    /// The keys a shipped file sets, sorted.
    fn keys_of(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut keys: Vec<String> = table.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn all_keys() -> Vec<String> {
        let mut k = keys();
        k.sort();
        assert!(k.len() >= 14, "{k:?}");
        k
    }

    #[test]
    fn dist_ferryd_toml_is_valid_and_holds_the_defaults() {
        let path = dist("ferryd.toml");
        assert_eq!(
            keys_of(&path),
            all_keys(),
            "{} lists every key",
            path.display()
        );
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c,
            Config {
                peers: PeersConfig::default().resolved(path.parent()),
                source: path,
                ..Config::default()
            }
        );
    }

    #[test]
    fn dist_system_ferryd_toml_is_valid_and_holds_the_system_defaults() {
        let path = dist("system/ferryd.toml");
        assert_eq!(
            keys_of(&path),
            all_keys(),
            "{} lists every key",
            path.display()
        );
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c,
            Config {
                source: path.clone(),
                peers: PeersConfig::default().resolved(path.parent()),
                ..Config::system()
            }
        );
        // The same file with --system.
        assert_eq!(Config::load_as(&path, Some(Mode::System)).unwrap(), c);
    }

    #[test]
    fn the_mode_picks_the_defaults_and_system_refuses_a_user_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ferryd.toml");
        let missing = Config::load_as(&p, Some(Mode::System)).unwrap();
        assert_eq!(missing.mode, Mode::System);
        assert_eq!(missing.max_jobs_per_user, 60);
        assert_eq!(Config::load(&p).unwrap().max_jobs_per_user, 100_000);
        std::fs::write(&p, "mode = \"system\"\nmax_jobs_per_user = 5\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(
            (c.mode, c.max_jobs_per_user, c.max_files_per_job),
            (Mode::System, 5, 200)
        );
        std::fs::write(&p, "mode = \"user\"\n").unwrap();
        let e = Config::load_as(&p, Some(Mode::System)).unwrap_err();
        assert!(
            matches!(e, ConfigError::UserFileInSystemMode { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("--system"), "{e}");
        std::fs::write(&p, "mode = \"machine\"\n").unwrap();
        assert!(Config::load(&p)
            .unwrap_err()
            .to_string()
            .contains("mode = 'machine'"));
    }

    #[test]
    fn dist_ferryd_toml_lists_every_peers_key() {
        let known = toml::Table::try_from(PeersConfig::default()).unwrap();
        let mut known: Vec<&str> = known.keys().map(String::as_str).collect();
        known.sort();
        assert_eq!(known.len(), 16);
        for name in ["ferryd.toml", "system/ferryd.toml"] {
            let path = dist(name);
            let table: toml::Table =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let peers = table["peers"].as_table().expect("a [peers] section");
            let mut listed: Vec<&str> = peers.keys().map(String::as_str).collect();
            listed.sort();
            assert_eq!(listed, known, "{} lists every [peers] key", path.display());
        }
    }
}
