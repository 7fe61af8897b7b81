//! File trees as maps from a relative path (`src/server.rs`, always with `/`) to the file's
//! bytes: a published `.crate` unpacked, a folder read from disk or written to it, a unified
//! diff applied, and what differs between two trees.
//!
//! May use: anyhow, diffy, flate2, tar, std.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Component, Path};

use anyhow::{anyhow, bail, Context, Result};
use diffy::patch_set::{FileOperation, ParseOptions, PatchKind, PatchSet};

/// Relative path (with `/`) to contents.
pub type Tree = BTreeMap<String, Vec<u8>>;

/// The files of the `.crate` archive `file`, whose entries all lie under the folder `top`
/// (`h2-0.4.21`), with paths relative to it.
pub fn unpack_crate(file: &Path, top: &str) -> Result<Tree> {
    let archive = fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut tree = Tree::new();
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", file.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", file.display()))?;
        let path = entry.path()?.into_owned();
        let relative = path
            .strip_prefix(top)
            .map_err(|_| anyhow!("{}: {} lies outside {top}/", file.display(), path.display()))?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular => {}
            other => bail!(
                "{}: {} is a {other:?}, not a file",
                file.display(),
                path.display()
            ),
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        tree.insert(slash_path(relative)?, bytes);
    }
    Ok(tree)
}

/// The files under `dir`, but for the entries of `dir` itself named in `skip`.
pub fn read_folder(dir: &Path, skip: &[&str]) -> Result<Tree> {
    let mut tree = Tree::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in
            fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?
        {
            let path = entry?.path();
            let relative = slash_path(path.strip_prefix(dir)?)?;
            if skip.contains(&relative.as_str()) {
                continue;
            }
            let kind = fs::symlink_metadata(&path)?.file_type();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let bytes =
                    fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                tree.insert(relative, bytes);
            } else {
                bail!("{} is neither a file nor a folder", path.display());
            }
        }
    }
    Ok(tree)
}

/// Replaces what `dir` holds, but for its entries named in `keep`, with `tree`.
pub fn replace_folder(dir: &Path, tree: &Tree, keep: &[&str]) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if keep.iter().any(|name| entry.file_name() == *name) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    for (relative, bytes) in tree {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Removes the files named in `names` from `tree`; a name ending in `/` removes that
/// folder.
pub fn leave_out(tree: &mut Tree, names: &[&str]) {
    tree.retain(|path, _| {
        !names.iter().any(|name| match name.strip_suffix('/') {
            Some(folder) => path
                .strip_prefix(folder)
                .is_some_and(|rest| rest.starts_with('/')),
            None => path == name,
        })
    });
}

/// Applies the unified diff `patch` (paths as `a/PATH` and `b/PATH`, as `git diff` and
/// `diff -u a b` write them) to the files of `tree`. The diff may only change files that
/// exist; a hunk applies where its context lines match exactly, at its line number or
/// shifted from it (as `patch` does without fuzz).
pub fn apply_patch(tree: &mut Tree, patch: &str) -> Result<()> {
    for file in PatchSet::parse(patch, ParseOptions::unidiff()) {
        let file = file.map_err(|e| anyhow!("the patch does not parse: {e}"))?;
        let (path, hunks) = match (file.operation().strip_prefix(1), file.patch()) {
            (FileOperation::Modify { original, modified }, PatchKind::Text(hunks))
                if original == modified =>
            {
                (original.into_owned(), hunks)
            }
            (operation, _) => bail!(
                "the patch does {operation:?}: only text changes to existing files are \
                 supported (`--- a/PATH` and `+++ b/PATH` with the same PATH)"
            ),
        };
        let base = tree
            .get(&path)
            .ok_or_else(|| anyhow!("the patch changes {path}, which the crate does not have"))?;
        let base = std::str::from_utf8(base).map_err(|_| anyhow!("{path} is not UTF-8 text"))?;
        let patched = diffy::apply(base, hunks)
            .map_err(|e| anyhow!("the patch does not apply to {path}: {e}"))?;
        tree.insert(path, patched.into_bytes());
    }
    Ok(())
}

/// How a folder differs from the tree it should equal.
#[derive(Debug, PartialEq, Eq)]
pub enum Difference {
    /// In both, with other contents.
    Changed(String),
    /// Only in the expected tree.
    Missing(String),
    /// Only in the folder.
    Extra(String),
}

impl Difference {
    /// The labels of the kinds, in the order to report them.
    pub const LABELS: [&'static str; 3] = ["changed", "missing", "not in the published crate"];

    /// What kind of difference, as one of [`Self::LABELS`].
    pub fn label(&self) -> &'static str {
        match self {
            Difference::Changed(_) => Self::LABELS[0],
            Difference::Missing(_) => Self::LABELS[1],
            Difference::Extra(_) => Self::LABELS[2],
        }
    }

    pub fn path(&self) -> &str {
        match self {
            Difference::Changed(path) | Difference::Missing(path) | Difference::Extra(path) => path,
        }
    }
}

/// Every file of `expected` that `actual` lacks or holds otherwise, and every file of
/// `actual` that `expected` lacks, in path order.
pub fn differences(expected: &Tree, actual: &Tree) -> Vec<Difference> {
    let mut found = Vec::new();
    for (path, bytes) in expected {
        match actual.get(path) {
            Some(other) if other == bytes => {}
            Some(_) => found.push(Difference::Changed(path.clone())),
            None => found.push(Difference::Missing(path.clone())),
        }
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            found.push(Difference::Extra(path.clone()));
        }
    }
    found
}

/// `path` (relative, plain components only) with `/` between its components.
fn slash_path(path: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(
                part.to_str()
                    .ok_or_else(|| anyhow!("{} is not a UTF-8 path", path.display()))?,
            ),
            _ => bail!("{} is not a plain relative path", path.display()),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> Tree {
        files
            .iter()
            .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
            .collect()
    }

    const PATCH: &str = "\
A line before the diff, as a patch file's own note.
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
";

    #[test]
    fn a_patch_applies_where_its_context_matches_even_if_the_lines_moved() {
        let mut files = tree(&[
            ("src/lib.rs", "zero\none\ntwo\nthree\n"),
            ("README.md", "two\n"),
        ]);
        apply_patch(&mut files, PATCH).unwrap();
        assert_eq!(
            files,
            tree(&[
                ("src/lib.rs", "zero\none\nTWO\nthree\n"),
                ("README.md", "two\n"),
            ])
        );
    }

    #[test]
    fn a_patch_whose_context_is_gone_names_the_file() {
        let mut files = tree(&[("src/lib.rs", "one\n2\nthree\n")]);
        let error = apply_patch(&mut files, PATCH).unwrap_err().to_string();
        assert!(error.contains("does not apply to src/lib.rs"), "{error}");
    }

    #[test]
    fn a_patch_of_a_file_the_crate_lacks_is_refused() {
        let mut files = tree(&[("src/main.rs", "one\ntwo\nthree\n")]);
        let error = apply_patch(&mut files, PATCH).unwrap_err().to_string();
        assert!(
            error.contains("src/lib.rs, which the crate does not have"),
            "{error}"
        );
    }

    #[test]
    fn leave_out_removes_files_and_whole_folders_only() {
        let mut files = tree(&[
            ("Cargo.lock", ""),
            ("examples/client.rs", ""),
            ("examples.md", ""),
            ("src/examples/x.rs", ""),
        ]);
        leave_out(&mut files, &["Cargo.lock", "examples/"]);
        assert_eq!(
            files,
            tree(&[("examples.md", ""), ("src/examples/x.rs", "")])
        );
    }

    #[test]
    fn differences_name_changed_missing_and_extra_files() {
        let expected = tree(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let actual = tree(&[("a", "1"), ("b", "two"), ("d", "4")]);
        assert_eq!(
            differences(&expected, &actual),
            vec![
                Difference::Changed("b".into()),
                Difference::Missing("c".into()),
                Difference::Extra("d".into()),
            ]
        );
    }

    #[test]
    fn a_folder_reads_back_as_written_and_kept_entries_stay() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("NOTES.md"), "ours").unwrap();
        fs::create_dir(dir.path().join("old")).unwrap();
        fs::write(dir.path().join("old/gone.rs"), "").unwrap();
        let files = tree(&[("Cargo.toml", "[package]"), ("src/a/b.rs", "fn b() {}")]);
        replace_folder(dir.path(), &files, &["NOTES.md"]).unwrap();
        assert_eq!(read_folder(dir.path(), &["NOTES.md"]).unwrap(), files);
        assert_eq!(
            fs::read_to_string(dir.path().join("NOTES.md")).unwrap(),
            "ours"
        );
        assert!(!dir.path().join("old").exists());
    }
}
