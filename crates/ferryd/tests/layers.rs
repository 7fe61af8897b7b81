//! The layers of ferryd point one way: `rpc → service (the facade) → engine, notify,
//! query → store`, with `owner` (work done as a job's owner) and `model` below them, and
//! `daemon.rs`/`main.rs` on top wiring everything. `peers` (peer caching) sits beside
//! `notify` and `query` under the facade: the service tells it which files qualify for
//! the cache, and it implements the engine's `PeerFinder` interface, so it may use the
//! engine (never the other way round) and the store (the cache's index). This test reads
//! the source tree and fails on any reference that points up or around the facade.
//! `privsep/` (the system-wide daemon) is a top like `daemon.rs`, but its root broker's
//! files may use only the configuration, the accounts and the kernel's peer credentials.
//! `cargo test layers`.

use std::path::{Path, PathBuf};

/// The daemon's modules.
const MODULES: &[&str] = &[
    "rpc",
    "service",
    "engine",
    "notify",
    "query",
    "peers",
    "store",
    "owner",
    "model",
    "config",
    "paths",
    "netwatch",
    "costwatch",
    "daemon",
    "privsep",
];

/// What each module may use of the daemon (besides itself). Modules not listed here
/// (`daemon`, `main`, `lib`) are the top and may use everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("rpc", &["service", "model", "config"]),
    (
        "service",
        &[
            "engine",
            "notify",
            "query",
            "peers",
            "store",
            "owner",
            "model",
            "config",
            "netwatch",
            "costwatch",
        ],
    ),
    ("peers", &["engine", "store", "model", "config"]),
    ("engine", &["owner", "model", "config"]),
    ("notify", &["owner", "model"]),
    ("query", &["model"]),
    ("store", &["model"]),
    ("owner", &["model"]),
    ("netwatch", &["model"]),
    ("costwatch", &[]),
    ("model", &[]),
    ("config", &[]),
    ("paths", &[]),
    // The system-wide daemon's root broker (`privsep/` but its worker side): the
    // configuration, the accounts, the caller's model — never a job, a store, an engine
    // or a network client. Of rpc, only the kernel's peer credentials and the accept
    // loop (see `BROKER_RPC`).
    ("broker", &["config", "owner", "model", "rpc", "paths"]),
];

/// The files of the root broker (checked as module `broker`).
const BROKER_FILES: &[&str] = &[
    "privsep/broker.rs",
    "privsep/cache_supervisor.rs",
    "privsep/ipc.rs",
    "privsep/protocol.rs",
    "privsep/spawn.rs",
];

/// What the broker may name of rpc.
const BROKER_RPC: &[&str] = &["rpc::peer_credentials", "rpc::accept_connections"];

/// Only these modules may name these crates.
const CRATES: &[(&str, &[&str])] = &[
    // SQL lives in the store.
    ("rusqlite", &["store"]),
    // Wire types live in rpc (and the daemon's start-up).
    ("ferry_proto", &["rpc"]),
    ("tonic", &["rpc", "daemon", "privsep"]),
    // The kernel's routing messages are read by the network watcher only.
    ("rtnetlink", &["netwatch"]),
    // The system D-Bus (NetworkManager's `Metered`) is read by the cost watcher only.
    ("zbus", &["costwatch"]),
];

/// Calls that touch the file system or start a process: only the owner module does them
/// for jobs; the store, the configuration, the daemon's start-up and the peer cache (its
/// private folder under the state folder, and the fleet's certificates) do them for the
/// daemon's own files. A user's file enters the cache through a descriptor the owner
/// module opened.
const FS_CALLS: &[&str] = &[
    "fs::remove_file(",
    "fs::rename(",
    "fs::metadata(",
    "fs::read(",
    "fs::write(",
    "fs::canonicalize(",
    "fs::create_dir",
    "File::open(",
    "File::create(",
    "OpenOptions::new(",
    "Command::new(",
    "tokio::fs::File::open",
];
const FS_ALLOWED: &[&str] = &[
    "owner", "store", "config", "daemon", "main", "peers", "privsep", "broker",
];

/// Single files outside those modules that read the daemon's own state, never a job's
/// file: the yielding controller lists `/proc/self/fd` to find a connection's socket.
const FS_ALLOWED_FILES: &[&str] = &["engine/yielding/tcp.rs"];

/// True when `line` calls into the file system: one of [`FS_CALLS`], or a function of
/// `std::fs` (its types, `File` and `Metadata`, may be passed around).
fn touches_fs(line: &str) -> bool {
    FS_CALLS.iter().any(|c| line.contains(c))
        || line.match_indices("std::fs::").any(|(i, m)| {
            line[i + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase())
        })
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to: its first path component under `src/`, without `.rs`.
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a line, without a trailing `//` comment and not a comment line.
fn code(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with("//") {
        return "";
    }
    match line.find("//") {
        Some(i) if !line[..i].contains('"') => &line[..i],
        _ => line,
    }
}

/// True inside `#[cfg(test)]` modules: tests may reach anything.
fn test_module_starts(line: &str) -> bool {
    line.trim() == "#[cfg(test)]"
}

/// Every rule broken by the source of `module` (file `name`), one message each.
fn violations(module: &str, name: &str, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let allowed = ALLOWED.iter().find(|(m, _)| *m == module).map(|(_, a)| *a);
    let mut in_tests = false;
    for (n, line) in source.lines().enumerate() {
        if test_module_starts(line) {
            in_tests = true;
        }
        if in_tests {
            continue;
        }
        let line = code(line);
        let at = format!("{name}:{}", n + 1);
        if let Some(allowed) = allowed {
            for other in MODULES {
                if *other == module || allowed.contains(other) {
                    continue;
                }
                if line.contains(&format!("crate::{other}::"))
                    || line.contains(&format!("crate::{other};"))
                    || line.contains(&format!("crate::{other}{{"))
                {
                    out.push(format!(
                        "{at}: {module} may not use {other}: {}",
                        line.trim()
                    ));
                }
            }
        }
        if module == "broker"
            && line.contains("crate::rpc::")
            && !BROKER_RPC.iter().any(|r| line.contains(r))
        {
            out.push(format!(
                "{at}: the broker uses only {BROKER_RPC:?} of rpc: {}",
                line.trim()
            ));
        }
        for (krate, owners) in CRATES {
            if !owners.contains(&module)
                && (line.contains(&format!("{krate}::")) || line.contains(&format!("use {krate}")))
            {
                out.push(format!(
                    "{at}: only {owners:?} may use {krate}: {}",
                    line.trim()
                ));
            }
        }
        if !FS_ALLOWED.contains(&module)
            && !FS_ALLOWED_FILES.iter().any(|f| name.ends_with(f))
            && touches_fs(line)
        {
            out.push(format!(
                "{at}: file-system work and processes go through owner/: {}",
                line.trim()
            ));
        }
    }
    out
}

#[test]
fn layers_point_one_way() {
    let dir = source_dir();
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(files.len() > 40, "found only {} source files", files.len());
    let mut all = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&dir).unwrap();
        let module = if BROKER_FILES.iter().any(|f| rel == Path::new(f)) {
            "broker".to_string()
        } else {
            module_of(rel)
        };
        let source = std::fs::read_to_string(path).unwrap();
        all.extend(violations(&module, &rel.display().to_string(), &source));
    }
    assert!(all.is_empty(), "layer rules broken:\n{}", all.join("\n"));
}

#[test]
fn layers_the_facade_keeps_its_fields() {
    let source = std::fs::read_to_string(source_dir().join("service/mod.rs")).unwrap();
    let start = source
        .find("pub struct Service {")
        .expect("the Service struct");
    let body = &source[start..start + source[start..].find("\n}").unwrap()];
    let public: Vec<&str> = body
        .lines()
        .skip(1)
        .filter(|l| l.trim_start().starts_with("pub"))
        .collect();
    assert!(public.is_empty(), "public fields of Service: {public:?}");
}

#[test]
fn layers_the_checker_catches_what_it_should() {
    // The rules above would be worthless if the checker missed these.
    let bad =
        "use crate::service::Service;\nlet x = std::fs::read(p);\nuse rusqlite::Connection;\n";
    let found = violations("engine", "engine/x.rs", bad);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(violations("rpc", "rpc/x.rs", "use crate::notify::Notifier;").len() == 1);
    assert!(violations("engine", "engine/x.rs", "use crate::peers::Peers;").len() == 1);
    assert!(violations("peers", "peers/x.rs", "use crate::service::Service;").len() == 1);
    assert!(violations("peers", "peers/x.rs", "use crate::owner::Owner;").len() == 1);
    assert!(violations("peers", "peers/x.rs", "use crate::engine::PeerFinder;").is_empty());
    assert!(violations("rpc", "rpc/x.rs", "use crate::service::Service;").is_empty());
    assert!(violations("broker", "privsep/broker.rs", "use crate::store::Store;").len() == 1);
    assert!(violations("broker", "privsep/broker.rs", "crate::rpc::serve(x)").len() == 1);
    assert!(violations(
        "broker",
        "privsep/broker.rs",
        "crate::rpc::peer_credentials(&s)"
    )
    .is_empty());
    assert!(violations("notify", "notify/x.rs", "// crate::service:: in a comment").is_empty());
    assert!(
        violations(
            "query",
            "query/x.rs",
            "#[cfg(test)]\nuse crate::service::Service;"
        )
        .is_empty(),
        "test modules may reach anything"
    );
    assert!(violations(
        "store",
        "store/x.rs",
        "let c = rusqlite::Connection::open(p);"
    )
    .is_empty());
}
