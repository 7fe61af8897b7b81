//! `ferry daemon log [-f]`: the log of the per-user daemon that `ferry` started — a file a
//! day, `STATE_DIR/ferryd.log.YYYY-MM-DD` (ferryd keeps the last seven), and what ferryd
//! printed before its log started (`STATE_DIR/ferryd.log`: a panic, a refused start).
//!
//! May use: std, tokio, the `outln!` output.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// How often a followed log is looked at for more.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// The newest dated log file in `state_dir`, if any.
fn newest(state_dir: &Path) -> Option<PathBuf> {
    let mut dated: Vec<PathBuf> = std::fs::read_dir(state_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ferryd.log.") && n.len() > "ferryd.log.".len())
        })
        .collect();
    dated.sort();
    dated.pop()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Prints the last `lines` lines of the log, then, with `follow`, what is added (also
/// across the daily change of file) until interrupted.
pub async fn show(state_dir: &Path, lines: usize, follow: bool) -> Result<()> {
    let early = state_dir.join("ferryd.log");
    if let Ok(text) = std::fs::read_to_string(&early) {
        let text = text.trim_end();
        if !text.is_empty() {
            for l in tail(text, lines) {
                outln!("{l}");
            }
        }
    }
    let Some(mut path) = newest(state_dir) else {
        if !follow {
            anyhow::bail!(
                "no log of ferryd in {} yet (ferry starts ferryd with its log there; a ferryd \
                 started otherwise logs to its standard error, or to the journal under systemd)",
                state_dir.display()
            );
        }
        return follow_from(state_dir, None).await;
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for l in tail(&text, lines) {
        outln!("{l}");
    }
    if !follow {
        return Ok(());
    }
    let at = text.len() as u64;
    path = path.clone();
    follow_from(state_dir, Some((path, at))).await
}

/// Prints what is added to the newest log from `from` on, moving to a newer file when one
/// appears.
async fn follow_from(state_dir: &Path, mut from: Option<(PathBuf, u64)>) -> Result<()> {
    loop {
        if let Some(newer) = newest(state_dir) {
            if from.as_ref().is_none_or(|(p, _)| *p != newer) {
                from = Some((newer, 0));
            }
        }
        if let Some((path, at)) = &mut from {
            if let Ok(mut f) = std::fs::File::open(&*path) {
                if f.seek(SeekFrom::Start(*at)).is_ok() {
                    let mut more = String::new();
                    if let Ok(n) = f.read_to_string(&mut more) {
                        *at += n as u64;
                        for l in more.lines() {
                            outln!("{l}");
                        }
                    }
                }
            }
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_dated_file_and_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        assert!(newest(dir.path()).is_none());
        for name in [
            "ferryd.log",
            "ferryd.log.2026-12-06",
            "ferryd.log.2026-12-07",
            "other",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        assert_eq!(
            newest(dir.path()).unwrap().file_name().unwrap(),
            "ferryd.log.2026-12-07"
        );
        assert_eq!(tail("a\nb\nc\n", 2), vec!["b", "c"]);
        assert_eq!(tail("a", 5), vec!["a"]);
    }
}
