//! `ferryd.toml` as ferryd reads it: ranges, refusals, defaults, the shipped files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_common::{PeerMode, Priority};

use super::*;

/// Where the tests' files claim to come from (messages name it).
const FILE: &str = "/etc/ferry/ferryd.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    load::parse(Path::new(FILE), text, None)
}

/// A key's range as the tests probe it, values written as TOML: the lowest and highest
/// it takes, and the nearest it refuses on each side (`None` where TOML cannot write
/// one or the kind has no such value).
struct Range {
    key: &'static str,
    lowest: &'static str,
    below: Option<&'static str>,
    highest: &'static str,
    above: Option<&'static str>,
}

const I64_MAX: &str = "9223372036854775807";

const fn range(
    key: &'static str,
    lowest: &'static str,
    below: Option<&'static str>,
    highest: &'static str,
    above: Option<&'static str>,
) -> Range {
    Range {
        key,
        lowest,
        below,
        highest,
        above,
    }
}

/// Every bounded key of `ferryd.toml`.
const RANGES: &[Range] = &[
    range("max_jobs_per_machine", "0", Some("-1"), I64_MAX, None),
    range("max_concurrent_jobs", "1", Some("0"), "64", Some("65")),
    range("retention", "'0s'", None, "'100years'", Some("'101y'")),
    range(
        "job_inactivity_timeout",
        "'1ms'",
        Some("'0s'"),
        "'100y'",
        Some("'101y'"),
    ),
    range("max_jobs_per_user", "0", Some("-1"), I64_MAX, None),
    range("max_files_per_job", "0", Some("-1"), I64_MAX, None),
    range("drain_timeout", "'0s'", None, "'100y'", Some("'100y 1s'")),
    range("max_transfer_time", "'0s'", None, "'100y'", Some("'101y'")),
    range(
        "activation_timeout",
        "'1ms'",
        Some("'0s'"),
        "'100y'",
        Some("'101y'"),
    ),
    range("bandwidth_limit", "0", Some("-1"), I64_MAX, None),
    range("connections_per_file", "1", Some("0"), "16", Some("17")),
    range("files_in_parallel", "1", Some("0"), "64", Some("100")),
    range(
        "callback_timeout",
        "'1ms'",
        Some("'0s'"),
        "'100y'",
        Some("'101y'"),
    ),
    range("max_notifications_per_user", "1", Some("0"), I64_MAX, None),
    range(
        "notify_command_timeout",
        "'1ms'",
        Some("'0s'"),
        "'100y'",
        Some("'101y'"),
    ),
    range(
        "housekeeping_interval",
        "'1ms'",
        Some("'0s'"),
        "'100y'",
        Some("'101y'"),
    ),
    range("peers.port", "1", Some("0"), "65535", Some("65536")),
    range(
        "peers.cache_size",
        "'0%'",
        Some("'-0.5%'"),
        "'100%'",
        Some("'100.5%'"),
    ),
    range(
        "peers.max_content_age",
        "'1ms'",
        Some("'0s'"),
        "'100y'",
        Some("'101y'"),
    ),
    range("peers.max_upload_rate", "0", Some("-1"), I64_MAX, None),
    range("peers.max_clients", "1", Some("0"), I64_MAX, None),
    range(
        "peers.lookup_timeout",
        "'1ms'",
        Some("'0s'"),
        "'100y'",
        Some("'101y'"),
    ),
    range(
        "peers.probe_interval",
        "'200ms'",
        Some("'199ms'"),
        "'100y'",
        Some("'101y'"),
    ),
    range("peers.ban_duration", "'0s'", None, "'100y'", Some("'101y'")),
    range(
        "peers.dns_sd_interval",
        "'1s'",
        Some("'999ms'"),
        "'100y'",
        Some("'101y'"),
    ),
    range(
        "bandwidth.schedule[0].from",
        "'00:00'",
        None,
        "'24:00'",
        Some("'24:01'"),
    ),
    range(
        "bandwidth.schedule[0].to",
        "'00:00'",
        None,
        "'24:00'",
        Some("'25:00'"),
    ),
    // 0: a window with no transfers (BITS parity, issue 30).
    range(
        "bandwidth.schedule[0].limit",
        "0",
        Some("-1"),
        I64_MAX,
        None,
    ),
    range(
        "system.worker_idle_timeout",
        "'1s'",
        Some("'999ms'"),
        "'100y'",
        Some("'101y'"),
    ),
    range("max_header_bytes", "1024", Some("1023"), I64_MAX, None),
    range("max_handlers_per_user", "0", Some("-1"), I64_MAX, None),
    range("max_final_jobs_per_user", "0", Some("-1"), I64_MAX, None),
    range("max_store_bytes_per_user", "0", Some("-1"), I64_MAX, None),
    range(
        "system.max_connections_per_user",
        "1",
        Some("0"),
        I64_MAX,
        None,
    ),
    range(
        "system.worker_max_files",
        "64",
        Some("63"),
        "1048576",
        Some("1048577"),
    ),
];

/// Keys that take a form or a name rather than a range.
const UNBOUNDED: &[&str] = &[
    "mode",
    "admin_group",
    "bandwidth",
    "bandwidth.schedule",
    "bandwidth.schedule[0].days",
    "bandwidth.schedule[0].priorities",
    "peers",
    "peers.enabled",
    "peers.listen_address",
    "peers.discovery",
    "peers.static_peers",
    "peers.dns_sd_domains",
    "peers.ca_cert",
    "peers.crl",
    "peers.node_cert",
    "peers.node_key",
    "peers.default_job_peers",
    "peers.public_origins",
    "system",
    "system.cache_user",
    "metrics",
    "metrics.listen",
];

/// A file setting `key` to `value` (`value` TOML): a key of `[peers]` or of a
/// `[[bandwidth.schedule]]` entry goes in its table, with the entry's other keys.
fn file_setting(key: &str, value: &str) -> String {
    if let Some(k) = key.strip_prefix("peers.") {
        return format!("[peers]\n{k} = {value}\n");
    }
    if let Some(k) = key.strip_prefix("system.") {
        return format!("[system]\n{k} = {value}\n");
    }
    if let Some(k) = key.strip_prefix("bandwidth.schedule[0].") {
        let mut entry = toml::Table::new();
        entry.insert("from".into(), "12:00".into());
        entry.insert("to".into(), "13:00".into());
        entry.insert("limit".into(), 1000.into());
        // Away from the probed value, so the period is never empty.
        if k == "from" || k == "to" {
            let other = if k == "from" { "to" } else { "from" };
            entry.insert(other.into(), "12:34".into());
        }
        entry.remove(k);
        return format!("[[bandwidth.schedule]]\n{k} = {value}\n{entry}");
    }
    format!("{key} = {value}\n")
}

#[test]
fn every_key_has_its_range_listed_or_is_unbounded() {
    let mut listed: Vec<&str> = RANGES
        .iter()
        .map(|r| r.key)
        .chain(UNBOUNDED.to_vec())
        .collect();
    listed.sort();
    let full = full_config();
    let table = toml::Table::try_from(&full).unwrap();
    let mut all = Vec::new();
    for (key, value) in &table {
        all.push(key.clone());
        let inner = match (key.as_str(), value) {
            ("bandwidth", v) => {
                all.push("bandwidth.schedule".into());
                v["schedule"][0].as_table().unwrap().clone()
            }
            (_, toml::Value::Table(t)) => t.clone(),
            _ => continue,
        };
        let prefix = if key == "bandwidth" {
            "bandwidth.schedule[0]"
        } else {
            key
        };
        all.extend(inner.keys().map(|k| format!("{prefix}.{k}")));
    }
    all.sort();
    assert_eq!(
        listed, all,
        "a new key needs its range (RANGES) or UNBOUNDED"
    );
}

/// A bound as messages write it; `None` for one they need not name.
fn as_named(bound: &str) -> Option<String> {
    let bound = bound.trim_matches('\'');
    if ["0", "0s", "0%", "00:00", I64_MAX].contains(&bound) {
        return None;
    }
    Some(match bound.strip_suffix('y') {
        Some(years) => format!("{years}years"),
        None => bound.to_string(),
    })
}

#[test]
fn each_bounded_key_takes_its_range_and_refuses_past_it_naming_the_key() {
    for r in RANGES {
        for ok in [r.lowest, r.highest] {
            let text = file_setting(r.key, ok);
            if let Err(e) = parse(&text) {
                panic!("{} = {ok} is in range but was refused: {e}\n{text}", r.key);
            }
        }
        for bad in [r.below, r.above].into_iter().flatten() {
            let text = file_setting(r.key, bad);
            let e = parse(&text).expect_err(&format!("{} = {bad} was taken", r.key));
            let message = e.to_string();
            match &e {
                ConfigError::BadValue {
                    key,
                    value,
                    expected,
                    ..
                } => {
                    assert_eq!(key, r.key, "{message}");
                    assert_eq!(value, bad, "{message}");
                    // The message gives the bound passed (a lower bound of zero goes
                    // without saying, and TOML cannot write past i64::MAX).
                    let bound = if Some(bad) == r.below {
                        r.lowest
                    } else {
                        r.highest
                    };
                    if let Some(bound) = as_named(bound) {
                        assert!(expected.contains(&bound), "{message} does not name {bound}");
                    }
                }
                other => panic!("{} = {bad}: {other:?}", r.key),
            }
            assert!(
                message.starts_with(&format!("{FILE}: {} = {bad}: expected ", r.key)),
                "{message}"
            );
        }
    }
}

#[test]
fn the_values_at_the_ends_of_ranges_are_the_ones_read() {
    let c = parse("max_concurrent_jobs = 64\nfiles_in_parallel = 1\nconnections_per_file = 16\n")
        .unwrap();
    assert_eq!(
        (
            c.max_concurrent_jobs,
            c.files_in_parallel,
            c.connections_per_file
        ),
        (64, 1, 16)
    );
    let c = parse("[peers]\nprobe_interval = '200ms'\ncache_size = '100%'\n").unwrap();
    assert_eq!(c.peers.probe_interval, Duration::from_millis(200));
    assert_eq!(c.peers.cache_size, CacheSize::Percent(100.0));
}

#[test]
fn a_bad_duration_is_named_with_what_is_expected() {
    let e = parse("retention = 'forever'\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{FILE}: retention = 'forever': expected a duration such as 30s, 15m, 7d")
    );
    assert_eq!(e.key(), Some("retention"));
    let e = parse("[peers]\nlookup_timeout = 2\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{FILE}: peers.lookup_timeout = 2: expected a duration of at least 1ms such as \
             30s, 15m, 7d"
        )
    );
    let e = parse("housekeeping_interval = '0s'\n").unwrap_err();
    assert!(e.to_string().contains("at least 1ms"), "{e}");
}

#[test]
fn other_bad_values_name_the_key_the_value_and_what_is_expected() {
    let cases = [
        (
            "mode = 'machine'\n",
            "mode",
            "'machine'",
            "one of user, system",
        ),
        (
            "admin_group = 'a:b'\n",
            "admin_group",
            "'a:b'",
            "a group name",
        ),
        (
            "files_in_parallel = 'many'\n",
            "files_in_parallel",
            "'many'",
            "from 1 to 64",
        ),
        (
            "bandwidth_limit = 'fast'\n",
            "bandwidth_limit",
            "'fast'",
            "a rate",
        ),
        (
            "[peers]\nenabled = 'yes'\n",
            "peers.enabled",
            "'yes'",
            "a boolean",
        ),
        (
            "[peers]\nmax_clients = 1.5\n",
            "peers.max_clients",
            "1.5",
            "a whole number",
        ),
        (
            "[peers]\ndefault_job_peers = 'all'\n",
            "peers.default_job_peers",
            "'all'",
            "one of off, client, server, both",
        ),
        (
            "[peers]\nstatic_peers = ['a:1', 'b']\n",
            "peers.static_peers[1]",
            "'b'",
            "host:port",
        ),
        (
            "[[bandwidth.schedule]]\ndays = ['funday']\nfrom = '08:00'\nto = '09:00'\nlimit = 1\n",
            "bandwidth.schedule[0].days[0]",
            "'funday'",
            "mon-fri",
        ),
        (
            "[[bandwidth.schedule]]\nfrom = '8am'\nto = '09:00'\nlimit = 1\n",
            "bandwidth.schedule[0].from",
            "'8am'",
            "HH:MM",
        ),
        ("peers = 5\n", "peers", "5", "a table"),
        (
            "[metrics]\nlisten = 'localhost'\n",
            "metrics.listen",
            "'localhost'",
            "an address and port such as \"127.0.0.1:9464\"",
        ),
    ];
    for (text, key, value, expected) in cases {
        match parse(text) {
            Err(ConfigError::BadValue {
                key: k,
                value: v,
                expected: x,
                ..
            }) => {
                assert_eq!((k.as_str(), v.as_str()), (key, value), "{text}");
                assert!(x.contains(expected), "{text}: expected {x}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn unknown_keys_are_refused_wherever_they_are() {
    let cases = [
        (
            "max_concurent_jobs = 3\n",
            "max_concurent_jobs",
            "max_concurrent_jobs",
        ),
        ("source = '/tmp/x'\n", "source", "retention"),
        ("socket_path = '/tmp/s'\n", "socket_path", "retention"),
        ("[peers]\nenable = true\n", "peers.enable", "enabled"),
        ("[bandwidth]\nlimit = 5\n", "bandwidth.limit", "schedule"),
        (
            "[[bandwidth.schedule]]\nfrom = '08:00'\nto = '09:00'\nlimit = 1\nday = ['mon']\n",
            "bandwidth.schedule[0].day",
            "days",
        ),
    ];
    for (text, key, known) in cases {
        let e = parse(text).unwrap_err();
        match &e {
            ConfigError::UnknownKey {
                key: k, known: ks, ..
            } => {
                assert_eq!(k, key, "{text}");
                assert!(ks.contains(&known), "{text}: {ks:?}");
            }
            other => panic!("{text}: {other:?}"),
        }
        assert!(e.to_string().contains(&format!("unknown key {key}")), "{e}");
    }
}

#[test]
fn an_entry_missing_a_key_or_with_an_empty_period_is_refused() {
    let e = parse("[[bandwidth.schedule]]\nfrom = '08:00'\nlimit = 1\n").unwrap_err();
    assert!(
        matches!(&e, ConfigError::MissingKey { key, .. } if key == "bandwidth.schedule[0].to"),
        "{e:?}"
    );
    let e = parse(
        "[[bandwidth.schedule]]\nfrom = '08:00'\nto = '09:00'\nlimit = 1\n\
         [[bandwidth.schedule]]\nfrom = '08:00'\nto = '08:00'\nlimit = 1\n",
    )
    .unwrap_err();
    assert!(
        matches!(&e, ConfigError::Inconsistent { key, problem, .. }
            if key == "bandwidth.schedule[1]" && problem.contains("empty")),
        "{e:?}"
    );
}

#[test]
fn a_file_that_is_not_toml_or_not_readable_says_so() {
    assert!(matches!(
        parse("retention = \n"),
        Err(ConfigError::NotToml { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    // A folder where the file should be: it exists but cannot be read as one.
    let e = Config::load(dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::Unreadable { .. }), "{e:?}");
    assert!(e.to_string().starts_with("reading "), "{e}");
}

/// A configuration with every key away from its default.
fn full_config() -> Config {
    Config {
        mode: Mode::System,
        admin_group: "wheel".into(),
        max_jobs_per_machine: 7,
        source: PathBuf::new(),
        max_concurrent_jobs: 3,
        retention: Duration::from_secs(2 * 86400),
        job_inactivity_timeout: Duration::from_secs(12 * 3600),
        max_jobs_per_user: 5,
        max_files_per_job: 9,
        max_header_bytes: 4096,
        max_handlers_per_user: 3,
        max_final_jobs_per_user: 10,
        max_store_bytes_per_user: 1 << 20,
        drain_timeout: Duration::from_millis(1500),
        activation_timeout: Duration::from_secs(45),
        bandwidth_limit: 1 << 20,
        connections_per_file: 4,
        files_in_parallel: 2,
        callback_timeout: Duration::from_secs(90),
        max_notifications_per_user: 2,
        notify_command_timeout: Duration::from_secs(60),
        max_transfer_time: Duration::from_secs(7 * 24 * 3600),
        housekeeping_interval: Duration::from_secs(30),
        socket_path: PathBuf::new(),
        schedules: vec![
            Schedule {
                days: [true, true, true, true, true, false, false],
                from_min: 8 * 60,
                to_min: 18 * 60,
                limit: 2 << 20,
                priorities: vec![Priority::Normal, Priority::Low],
            },
            Schedule {
                days: [true; 7],
                from_min: 22 * 60,
                to_min: 6 * 60 + 30,
                limit: 1000,
                priorities: vec![Priority::Foreground],
            },
        ],
        peers: PeersConfig {
            enabled: true,
            listen_address: "::1".into(),
            port: 7381,
            discovery: Discovery::Static,
            static_peers: vec!["10.1.2.3:7380".into(), "peer.example:7380".into()],
            dns_sd_domains: vec!["site.example".into(), "branch.site.example".into()],
            dns_sd_interval: Duration::from_secs(300),
            ca_cert: "/etc/fleet/ca.pem".into(),
            node_cert: "/etc/fleet/node.pem".into(),
            node_key: "/etc/fleet/node.key".into(),
            crl: "/etc/fleet/crl.pem".into(),
            cache_size: CacheSize::Bytes(20 << 30),
            max_content_age: Duration::from_secs(3 * 86400),
            max_upload_rate: 0,
            max_clients: 32,
            default_job_peers: PeerMode::Client,
            lookup_timeout: Duration::from_millis(300),
            probe_interval: Duration::from_secs(1),
            ban_duration: Duration::ZERO,
            public_origins: vec!["https://deb.debian.org".into()],
        },
        system: SystemConfig {
            worker_idle_timeout: Duration::from_secs(5),
            worker_max_files: 512,
            cache_user: "ferry-cache".into(),
            max_connections_per_user: 16,
        },
        metrics: MetricsConfig {
            listen: MetricsListen::Tcp("127.0.0.1:9464".parse().unwrap()),
        },
    }
}

#[test]
fn a_full_file_written_from_a_config_reads_back_the_same() {
    let full = full_config();
    let text = toml::to_string(&full).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferryd.toml");
    std::fs::write(&path, &text).unwrap();
    let back = Config::load(&path).unwrap();
    assert_eq!(
        back,
        Config {
            source: path.clone(),
            ..full
        },
        "{text}"
    );
    // Every key is in the file.
    let table: toml::Table = text.parse().unwrap();
    let mut written: Vec<String> = table.keys().cloned().collect();
    written.sort();
    let mut all = keys();
    all.sort();
    assert_eq!(written, all);
    assert_eq!(table["peers"].as_table().unwrap().len(), 20);
}

/// The per-user daemon's defaults as they were before `ferryd.toml` went through serde.
fn user_defaults() -> Config {
    Config {
        mode: Mode::User,
        admin_group: "ferry-admin".into(),
        max_jobs_per_machine: 100_000,
        source: PathBuf::new(),
        max_concurrent_jobs: 8,
        retention: Duration::from_secs(7 * 24 * 3600),
        job_inactivity_timeout: Duration::from_secs(90 * 24 * 3600),
        max_jobs_per_user: 100_000,
        max_files_per_job: 100_000,
        max_header_bytes: 64 << 10,
        max_handlers_per_user: 100_000,
        max_final_jobs_per_user: 0,
        max_store_bytes_per_user: 0,
        drain_timeout: Duration::from_secs(10),
        activation_timeout: Duration::from_secs(30),
        bandwidth_limit: 0,
        connections_per_file: 1,
        files_in_parallel: 8,
        callback_timeout: Duration::from_secs(120),
        max_notifications_per_user: 4,
        notify_command_timeout: Duration::from_secs(300),
        max_transfer_time: Duration::ZERO,
        housekeeping_interval: Duration::from_secs(600),
        socket_path: PathBuf::new(),
        schedules: Vec::new(),
        peers: PeersConfig {
            enabled: false,
            listen_address: "0.0.0.0".into(),
            port: 7380,
            discovery: Discovery::Both,
            static_peers: Vec::new(),
            dns_sd_domains: Vec::new(),
            dns_sd_interval: Duration::from_secs(60),
            ca_cert: "fleet/ca.pem".into(),
            node_cert: "fleet/node.pem".into(),
            node_key: "fleet/node.key".into(),
            crl: "fleet/crl.pem".into(),
            cache_size: CacheSize::Percent(1.0),
            max_content_age: Duration::from_secs(90 * 24 * 3600),
            max_upload_rate: 25 << 20,
            max_clients: 8,
            default_job_peers: PeerMode::Both,
            lookup_timeout: Duration::from_secs(2),
            probe_interval: Duration::from_secs(15),
            ban_duration: Duration::from_secs(3600),
            public_origins: Vec::new(),
        },
        system: SystemConfig {
            worker_idle_timeout: Duration::from_secs(120),
            worker_max_files: 4096,
            cache_user: "_ferry".into(),
            max_connections_per_user: 256,
        },
        metrics: MetricsConfig {
            listen: MetricsListen::Off,
        },
    }
}

#[test]
fn the_defaults_of_both_modes_are_unchanged() {
    let user = user_defaults();
    assert_eq!(Config::default(), user);
    let system = Config {
        mode: Mode::System,
        max_jobs_per_user: 60,
        max_jobs_per_machine: 300,
        max_files_per_job: 200,
        max_handlers_per_user: 64,
        max_final_jobs_per_user: 1000,
        max_store_bytes_per_user: 256 << 20,
        ..user.clone()
    };
    assert_eq!(Config::system(), system);
    // An empty file gives them too: the keys it leaves out take the mode's defaults.
    let resolved = |c: Config| Config {
        source: FILE.into(),
        peers: c.peers.clone().resolved(Path::new(FILE).parent()),
        ..c
    };
    assert_eq!(parse("").unwrap(), resolved(user.clone()));
    assert_eq!(
        parse("mode = 'system'\n").unwrap(),
        resolved(system.clone())
    );
    assert_eq!(
        load::parse(Path::new(FILE), "", Some(Mode::System)).unwrap(),
        resolved(system)
    );
    // A table the file names keeps the defaults of the keys it leaves out.
    let c = parse("[peers]\nenabled = true\n").unwrap();
    assert_eq!(c.peers.max_upload_rate, 25 << 20);
    assert_eq!(c.max_files_per_job, 100_000);
}

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
        assert_eq!(known.len(), 20);
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

    #[test]
    fn dist_ferryd_toml_lists_every_system_key_with_its_default() {
        let known = toml::Table::try_from(SystemConfig::default()).unwrap();
        for name in ["ferryd.toml", "system/ferryd.toml"] {
            let path = dist(name);
            let table: toml::Table =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let system = table["system"].as_table().expect("a [system] section");
            let mut listed: Vec<&String> = system.keys().collect();
            listed.sort();
            let mut want: Vec<&String> = known.keys().collect();
            want.sort();
            assert_eq!(listed, want, "{} lists every [system] key", path.display());
            assert_eq!(
                Config::load(&path).unwrap().system,
                SystemConfig::default(),
                "{} holds the defaults",
                path.display()
            );
        }
    }
}

#[test]
fn parity_a_default_max_transfer_time_is_read_and_checked() {
    assert_eq!(
        Config::default().max_transfer_time,
        Duration::ZERO,
        "none by default"
    );
    let c = parse("max_transfer_time = \"90d\"\n").unwrap();
    assert_eq!(c.max_transfer_time, Duration::from_secs(90 * 24 * 3600));
    let e = parse("max_transfer_time = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_transfer_time") && e.contains("soon"), "{e}");
}
