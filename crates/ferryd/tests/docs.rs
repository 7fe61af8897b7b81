//! The architecture pages stay true to the tree: the module table of
//! `docs/architecture/layers.md` has a row for every module of `crates/ferryd/src/` and
//! names every file of it (and no file that is gone), and every link between the pages
//! (`ARCHITECTURE.md`, `TESTING.md`, `README.md`, `docs/architecture/*.md`) leads to a
//! file that exists and, with a `#fragment`, to one of its headings. `cargo test docs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as paths relative to `root` with `/` between parts.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap();
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The spans between backticks in `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The rows of the module table: the module's name (`engine`, `daemon`, as its first
/// cell names it less `/` and `.rs`) → (its "owns" cell, its line in the page).
fn module_rows(page: &str) -> BTreeMap<String, (String, usize)> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for (n, line) in page.lines().enumerate() {
        if line.starts_with("| module | owns | may use |") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1].starts_with("---") {
            continue;
        }
        let name = cells[1].trim_matches('`');
        let name = name.trim_end_matches('/').trim_end_matches(".rs");
        let old = rows.insert(name.to_string(), (cells[2].to_string(), n + 1));
        assert!(
            old.is_none(),
            "layers.md:{}: a second row for `{name}`",
            n + 1
        );
    }
    assert!(!rows.is_empty(), "layers.md has no module table");
    rows
}

/// What a module's row must name for `rel` (a file under `src/`): nothing for the
/// module's own root (`engine/mod.rs`, `config.rs`, `daemon.rs`), `swarm/` for
/// `engine/swarm/mod.rs`, `swarm/plan.rs` for `engine/swarm/plan.rs`.
fn name_in_row(rel: &str) -> (String, Option<String>) {
    let (module, rest) = match rel.split_once('/') {
        Some((module, rest)) => (module.to_string(), rest.to_string()),
        None => return (rel.trim_end_matches(".rs").to_string(), None),
    };
    let named = match rest.strip_suffix("mod.rs") {
        Some("") => None,
        Some(folder) => Some(folder.to_string()),
        None => Some(rest),
    };
    (module, named)
}

/// Backticked names in an "owns" cell that look like a file (`planner.rs`) or a folder
/// (`swarm/`) of the module.
fn named_files(cell: &str) -> Vec<&str> {
    code_spans(cell)
        .into_iter()
        .filter(|s| {
            (s.ends_with(".rs") || s.ends_with('/'))
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_/.".contains(c))
        })
        .collect()
}

#[test]
fn docs_module_table_names_every_file_of_ferryd() {
    let page_path = workspace().join("docs/architecture/layers.md");
    let page = std::fs::read_to_string(&page_path).unwrap();
    let rows = module_rows(&page);
    let src = source_dir();
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    files.sort();

    let mut problems = Vec::new();
    for rel in &files {
        let (module, named) = name_in_row(rel);
        let Some((owns, line)) = rows.get(&module) else {
            problems.push(format!(
                "src/{rel}: the module table has no row for `{module}` (add one: | `{module}/` | what it owns | what it may use |)"
            ));
            continue;
        };
        if let Some(named) = named {
            if !code_spans(owns).contains(&named.as_str()) {
                problems.push(format!(
                    "src/{rel}: the row of `{module}` (layers.md:{line}) does not name `{named}`"
                ));
            }
        }
    }
    // And the other way: what the table names exists.
    for (module, (owns, line)) in &rows {
        // A module with a folder names its files from there; a module of one file
        // (`daemon.rs`, `lib.rs`) names other files of `src/`.
        let root = if src.join(module).is_dir() {
            src.join(module)
        } else {
            src.clone()
        };
        let is_module = src.join(module).is_dir() || src.join(format!("{module}.rs")).is_file();
        if !is_module {
            problems.push(format!(
                "layers.md:{line}: `{module}` is no module of crates/ferryd/src"
            ));
            continue;
        }
        for named in named_files(owns) {
            let path = root.join(named);
            let exists = if named.ends_with('/') {
                path.is_dir()
            } else {
                // A module's own file beside its folder (`config.rs`, `model.rs`).
                path.is_file() || named.strip_suffix(".rs") == Some(module.as_str())
            };
            if !exists {
                problems.push(format!(
                    "layers.md:{line}: the row of `{module}` names `{named}`, which is not in {}",
                    root.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// GitHub's anchor of a heading: lower case, only letters, digits, spaces, `-` and `_`
/// kept, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a page outside fenced code blocks, with their numbers.
fn prose(page: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (n, line) in page.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((n + 1, line));
        }
    }
    out
}

/// The anchors of a page's headings (a repeated heading gets `-1`, `-2`, … as on GitHub).
fn anchors(page: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(page) {
        let Some(text) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(text.trim_start_matches('#'));
        let count = seen.entry(base.clone()).or_default();
        out.insert(match *count {
            0 => base.clone(),
            k => format!("{base}-{k}"),
        });
        *count += 1;
    }
    out
}

/// The targets of a line's inline links `[text](target)`.
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

#[test]
fn docs_links_between_the_pages_resolve() {
    let root = workspace();
    let mut pages: Vec<PathBuf> = ["ARCHITECTURE.md", "TESTING.md", "README.md"]
        .iter()
        .map(|p| root.join(p))
        .collect();
    let dir = root.join("docs/architecture");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    assert!(pages.len() > 3, "no pages under docs/architecture");

    let mut problems = Vec::new();
    let mut links = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let name = page.strip_prefix(&root).unwrap().display().to_string();
        for (n, line) in prose(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                links += 1;
                let (file, fragment) = match target.split_once('#') {
                    Some((file, fragment)) => (file, Some(fragment)),
                    None => (target, None),
                };
                let dest = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().unwrap().join(file)
                };
                if !dest.exists() {
                    problems.push(format!(
                        "{name}:{n}: `{target}`: no file {}",
                        dest.display()
                    ));
                    continue;
                }
                if let Some(fragment) = fragment {
                    let dest_text = std::fs::read_to_string(&dest).unwrap();
                    if !anchors(&dest_text).contains(fragment) {
                        problems.push(format!(
                            "{name}:{n}: `{target}`: no heading with the anchor #{fragment}"
                        ));
                    }
                }
            }
        }
    }
    // Every page of the part pages is linked from the overview.
    let overview = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    for page in pages.iter().filter(|p| p.starts_with(&dir)) {
        let file = page.file_name().unwrap().to_string_lossy();
        if !overview.contains(&format!("(docs/architecture/{file})")) {
            problems.push(format!(
                "ARCHITECTURE.md does not link docs/architecture/{file}"
            ));
        }
    }
    assert!(
        links > 10,
        "only {links} links found: is the link reader broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn docs_slugs_are_githubs() {
    assert_eq!(
        slug(" Stock clients on the Unix socket (`:authority`)"),
        "stock-clients-on-the-unix-socket-authority"
    );
    assert_eq!(
        slug(" The fleet swarm (`engine/swarm/`, `peers/shares.rs`)"),
        "the-fleet-swarm-engineswarm-peerssharesrs"
    );
    assert_eq!(
        anchors("# A\n## A\n```\n# not a heading\n```\n"),
        BTreeSet::from(["a".to_string(), "a-1".to_string()])
    );
}
