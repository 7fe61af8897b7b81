//! The layers of ferryd point one way: `rpc → service (the facade) → engine, notify,
//! query → store`, with `owner` (work done as a job's owner) and `model` below them, and
//! `daemon.rs`/`main.rs` on top wiring everything. `peers` (peer caching) sits beside
//! `notify` and `query` under the facade: the service tells it which files qualify for
//! the cache, and it implements the engine's `PeerFinder` interface, so it may use the
//! engine (never the other way round) and the store (the cache's index). This test reads
//! the source tree and fails on any reference that points up or around the facade.
//! `privsep/` (the system-wide daemon) is a top like `daemon.rs`, but its root broker's
//! files may use only the configuration, the accounts and the kernel's peer credentials.
//! Inside the engine, its files form no import circle (a strategy never reaches back into
//! the one that chose it), and no function of the engine runs over
//! [`MAX_ENGINE_FN_LINES`] lines. `cargo test layers`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    "logging",
    "metrics",
];

/// What each module may use of the daemon (besides itself). Modules not listed here
/// (`daemon`, `main`, `lib`) are the top and may use everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("rpc", &["service", "model", "config"]),
    // The metrics endpoint: like rpc, a front of the facade (its snapshot).
    ("metrics", &["service", "model", "config"]),
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
    // How log lines are written: escaping and masking, from the model.
    ("logging", &["model"]),
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

/// A file of the engine as a node of its import graph: `engine/http.rs`,
/// `engine/swarm/mod.rs`. Its module path: `["engine", "http"]`, `["engine", "swarm"]`.
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of `source` that is built outside tests, comments left out, one line per line.
fn non_test_code(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in source.lines() {
        if test_module_starts(line) {
            break;
        }
        out.push(code(line).to_string());
    }
    out
}

/// Expands a `use` tree (`super::{a, b::{self, C}}`, spaces removed around `::`, `{`, `}`
/// and `,`) into its full paths.
fn expand_use(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.split(" as ").next().unwrap_or("").trim();
    let Some(open) = tree.find('{') else {
        let path = format!("{prefix}{tree}");
        out.push(path.trim_end_matches("::self").to_string());
        return;
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand_use(&head, &inner[from..i], out);
                from = i + 1;
            }
            _ => {}
        }
    }
    if !inner[from..].trim().is_empty() {
        expand_use(&head, &inner[from..], out);
    }
}

/// Every path `source` names outside its tests, with the (0-based) line that names it:
/// the paths of its `use` declarations, expanded, and every `word::word…` in its code
/// (which of them lead to a file of the engine is [`resolve`]'s call).
fn named_paths(source: &str) -> Vec<(usize, String)> {
    let lines = non_test_code(source);
    let mut out = Vec::new();
    let mut statement: Option<(usize, String)> = None;
    for (n, line) in lines.iter().enumerate() {
        let mut rest = line.as_str();
        if statement.is_none() {
            let t = line.trim_start();
            let t = t
                .strip_prefix("pub(crate) ")
                .or_else(|| t.strip_prefix("pub(super) "))
                .or_else(|| t.strip_prefix("pub "))
                .unwrap_or(t);
            if let Some(tree) = t.strip_prefix("use ") {
                statement = Some((n, String::new()));
                rest = tree;
            }
        }
        if let Some((at, text)) = &mut statement {
            text.push_str(rest);
            text.push(' ');
            if let Some(end) = text.find(';') {
                let mut tree: String = text[..end].split_whitespace().collect::<Vec<_>>().join(" ");
                for sep in ["::", "{", "}", ","] {
                    tree = tree
                        .replace(&format!(" {sep}"), sep)
                        .replace(&format!("{sep} "), sep);
                }
                let mut paths = Vec::new();
                expand_use("", &tree, &mut paths);
                out.extend(paths.into_iter().map(|p| (*at, p)));
                statement = None;
            }
            continue;
        }
        let bytes = line.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let mut i = 0;
        while i < bytes.len() {
            let starts =
                word(bytes[i]) && (i == 0 || !(word(bytes[i - 1]) || bytes[i - 1] == b':'));
            if !starts {
                i += 1;
                continue;
            }
            let mut end = i;
            while end < bytes.len() && (word(bytes[end]) || line[end..].starts_with("::")) {
                end += if bytes[end] == b':' { 2 } else { 1 };
            }
            let path = line[i..end].trim_end_matches("::");
            if path.contains("::") {
                out.push((n, path.to_string()));
            }
            i = end.max(i + 1);
        }
    }
    out
}

/// The file of the engine a path named in `from` leads to: the deepest module of the
/// engine the path goes through (an item of a module lives in that module's file).
/// `None` for paths outside the engine and for the file itself.
fn resolve(from: &str, path: &str, files: &BTreeMap<Vec<String>, String>) -> Option<String> {
    let here = module_path(from);
    let segments: Vec<&str> = path.split("::").collect();
    let (mut module, rest) = match segments[0] {
        "crate" => (vec!["crate".to_string()], &segments[1..]),
        "self" => (here.clone(), &segments[1..]),
        "super" => {
            let supers = segments.iter().take_while(|s| **s == "super").count();
            (
                here[..here.len() - supers.min(here.len())].to_vec(),
                &segments[supers..],
            )
        }
        _ => (here.clone(), &segments[..]),
    };
    if module.first().is_some_and(|m| m == "crate") {
        module.clear();
    }
    let mut went = 0;
    for s in rest {
        let mut next = module.clone();
        next.push(s.to_string());
        if !files.contains_key(&next) {
            break;
        }
        module = next;
        went += 1;
    }
    // A bare word that is no child module of this file is not an engine path.
    if segments[0] != "crate" && segments[0] != "self" && segments[0] != "super" && went == 0 {
        return None;
    }
    let file = files.get(&module)?;
    (file != from).then(|| file.clone())
}

/// The import graph of the engine's files (`file -> file it names`, with the first line
/// that names it), from `(file, source)` pairs with paths like `engine/http.rs`.
fn engine_imports(sources: &[(String, String)]) -> BTreeMap<String, BTreeMap<String, String>> {
    let files: BTreeMap<Vec<String>, String> = sources
        .iter()
        .map(|(f, _)| (module_path(f), f.clone()))
        .collect();
    let mut graph = BTreeMap::new();
    for (file, source) in sources {
        let lines: Vec<&str> = source.lines().collect();
        let edges: &mut BTreeMap<String, String> = graph.entry(file.clone()).or_default();
        for (n, path) in named_paths(source) {
            if let Some(to) = resolve(file, &path, &files) {
                edges
                    .entry(to)
                    .or_insert_with(|| format!("{file}:{}: {}", n + 1, lines[n].trim()));
            }
        }
    }
    graph
}

/// The import circles of `graph`: for each file on a circle not reported yet, the shortest
/// way from it back to itself, with the line that makes each step.
fn import_circles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // The shortest way back to `start` (breadth first).
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue: VecDeque<&String> = VecDeque::from([start]);
        let mut closing: Option<&String> = None;
        while let Some(at) = queue.pop_front() {
            for to in graph.get(at).into_iter().flat_map(|e| e.keys()) {
                if to == start {
                    closing = Some(at);
                    break;
                }
                if !came_from.contains_key(to) {
                    came_from.insert(to, at);
                    queue.push_back(to);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let Some(mut at) = closing else { continue };
        let mut back = Vec::new();
        while at != start {
            back.push(at.clone());
            at = came_from[at];
        }
        let circle: Vec<String> = std::iter::once(start.clone())
            .chain(back.into_iter().rev())
            .chain(std::iter::once(start.clone()))
            .collect();
        let steps: Vec<String> = circle
            .windows(2)
            .map(|w| format!("  {} -> {}  ({})", w[0], w[1], graph[&w[0]][&w[1]]))
            .collect();
        reported.extend(circle.iter().cloned());
        out.push(format!(
            "import circle: {}\n{}",
            circle.join(" -> "),
            steps.join("\n")
        ));
    }
    out
}

/// The longest function the engine may have, signature and closing brace included.
const MAX_ENGINE_FN_LINES: usize = 120;

/// Functions of `source` longer than `max` lines, as `file:line: name (N lines)`. Counts
/// from the `fn` line to the closing brace at the same indentation (rustfmt's layout).
fn long_functions(name: &str, source: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let Some(at) = t.find("fn ") else { continue };
        let before = &t[..at];
        let qualifiers = before
            .split_whitespace()
            .all(|w| w.starts_with("pub") || ["async", "const", "unsafe", "extern"].contains(&w));
        if !qualifiers || !t[at + 3..].starts_with(|c: char| c.is_alphabetic() || c == '_') {
            continue;
        }
        let indent = &line[..line.len() - t.len()];
        let close = format!("{indent}}}");
        let mut end = None;
        for (m, l) in lines.iter().enumerate().skip(n) {
            if (m == n && l.trim_end().ends_with('}')) || *l == close {
                end = Some(m);
                break;
            }
            if l.trim_end().ends_with(';')
                && !lines[n..m].iter().any(|l| l.trim_end().ends_with('{'))
            {
                break; // a declaration without a body
            }
        }
        if let Some(end) = end {
            let len = end - n + 1;
            if len > max {
                let fn_name: String = t[at + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(format!("{name}:{}: {fn_name} ({len} lines)", n + 1));
            }
        }
    }
    out
}

/// The engine's source files, as `(engine/…, source)`.
fn engine_sources() -> Vec<(String, String)> {
    let dir = source_dir();
    let mut files = Vec::new();
    rust_files(&dir.join("engine"), &mut files);
    files.sort();
    files
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&dir).unwrap().display().to_string();
            (rel, std::fs::read_to_string(p).unwrap())
        })
        .collect()
}

#[test]
fn layers_no_import_circle_in_the_engine() {
    let sources = engine_sources();
    assert!(
        sources.len() > 20,
        "found only {} engine files",
        sources.len()
    );
    let graph = engine_imports(&sources);
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(
        edges > 40,
        "found only {edges} imports between the engine's files"
    );
    let circles = import_circles(&graph);
    assert!(
        circles.is_empty(),
        "the engine's files import each other in a circle (a strategy reaching back into \
         what chose it): move what both need into a module below them\n{}",
        circles.join("\n")
    );
}

#[test]
fn layers_engine_functions_stay_short() {
    let long: Vec<String> = engine_sources()
        .iter()
        .flat_map(|(name, source)| long_functions(name, source, MAX_ENGINE_FN_LINES))
        .collect();
    assert!(
        long.is_empty(),
        "functions of the engine over {MAX_ENGINE_FN_LINES} lines: split them\n{}",
        long.join("\n")
    );
}

#[test]
fn layers_the_circle_check_catches_a_circle() {
    let files = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(f, s)| (f.to_string(), s.to_string()))
            .collect()
    };
    // a -> b -> c -> a, through a grouped use, a multi-line use, a path in code and an
    // item of the parent module; d only points down.
    let circle = files(&[
        (
            "engine/mod.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub struct Task;\n",
        ),
        ("engine/a.rs", "use super::{b, Task};\n"),
        ("engine/b.rs", "use super::{\n    c::Thing,\n};\n"),
        ("engine/c.rs", "fn f() { super::a::go(); }\n"),
        ("engine/d/mod.rs", "mod e;\nuse e::X;\nuse super::Task;\n"),
        ("engine/d/e.rs", "use super::super::c;\n"),
    ]);
    let graph = engine_imports(&circle);
    assert!(
        graph["engine/a.rs"].contains_key("engine/mod.rs"),
        "{graph:#?}"
    );
    assert!(
        graph["engine/d/mod.rs"].contains_key("engine/d/e.rs"),
        "{graph:#?}"
    );
    assert!(
        graph["engine/d/e.rs"].contains_key("engine/c.rs"),
        "{graph:#?}"
    );
    let found = import_circles(&graph);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("engine/a.rs -> engine/b.rs -> engine/c.rs -> engine/a.rs"),
        "{found:#?}"
    );
    // A child that uses an item of its parent, which uses the child: a circle too.
    let parent = files(&[
        (
            "engine/s/mod.rs",
            "mod r;\npub struct Download;\nfn go() { r::fix(); }\n",
        ),
        ("engine/s/r.rs", "use super::Download;\n"),
    ]);
    assert_eq!(import_circles(&engine_imports(&parent)).len(), 1);
    // Comments, tests and outside paths make no edge.
    let quiet = files(&[
        ("engine/mod.rs", "pub mod a;\npub mod b;\n"),
        ("engine/a.rs", "use super::b;\n"),
        (
            "engine/b.rs",
            "// super::a::x\nuse crate::model::X;\nuse std::sync::Arc;\n#[cfg(test)]\nmod tests { use super::super::a; }\n",
        ),
    ]);
    assert!(import_circles(&engine_imports(&quiet)).is_empty());
}

#[test]
fn layers_the_length_check_counts_lines() {
    let body = |n: usize| "    let x = 1;\n".repeat(n);
    let source = format!(
        "pub(super) async fn long(\n    a: u32,\n) -> u32 {{\n{}}}\n\nfn short() {{}}\n\ntrait T {{\n    fn declared(&self);\n}}\n",
        body(120)
    );
    let found = long_functions("x.rs", &source, 120);
    assert_eq!(found, vec!["x.rs:1: long (124 lines)".to_string()]);
    assert!(long_functions("x.rs", &source, 124).is_empty());
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
