//! The system-wide daemon's store of earlier versions (one root daemon, every user's jobs
//! in `STATE/ferry.db`) moves into the layout of privilege separation: one store per
//! user, in `STATE/users/UID/`, which only that user's worker opens.
//!
//! The broker does it once, at start-up, before any worker runs and before it drops its
//! capabilities: it splits the old store by owner into `STATE/migrate/UID/ferry.db` (each
//! written as root in a folder only root may enter, then given to the user with its
//! folder), and renames the old store to `ferry.db.migrated`. The broker never writes
//! into a user's own folder, where a link the user planted could lead a write of root's
//! astray: each user's worker moves its store into place itself, as the user, when it
//! starts (`--import`, see `daemon.rs`). A split cut short is done again from the start
//! at the next start-up (the old store is renamed last).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::owner::Account;

/// Where the split store of `uid` waits for its worker.
pub fn import_path(state_dir: &Path, uid: u32) -> PathBuf {
    state_dir
        .join("migrate")
        .join(uid.to_string())
        .join("ferry.db")
}

/// Splits `STATE/ferry.db` into one store per user, if it exists (see the module doc).
pub fn single_store(state_dir: &Path) -> anyhow::Result<()> {
    let old = state_dir.join("ferry.db");
    let migrate = state_dir.join("migrate");
    if !old.exists() {
        // Folders the workers have emptied (their store imported) go.
        if let Ok(rd) = std::fs::read_dir(&migrate) {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir(e.path());
            }
            let _ = std::fs::remove_dir(&migrate);
        }
        return Ok(());
    }
    tracing::info!(
        store = %old.display(),
        "moving the jobs of the single system-wide store into one store per user"
    );
    // Leftovers of a split cut short are redone from the start.
    let _ = std::fs::remove_dir_all(&migrate);
    std::fs::DirBuilder::new()
        .mode(0o711)
        .create(&migrate)
        .with_context(|| format!("creating {}", migrate.display()))?;
    // Each user's worker passes through it to its own folder (the umask took the bits).
    std::fs::set_permissions(
        &migrate,
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )?;
    let made = crate::store::split_by_owner(state_dir, |uid| {
        let dir = migrate.join(uid.to_string());
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        dir
    })
    .with_context(|| format!("splitting {} by owner", old.display()))?;
    for (uid, path) in &made {
        let account = Account::of(*uid);
        for p in [path.as_path(), path.parent().expect("in its folder")] {
            std::os::unix::fs::chown(p, Some(account.uid), Some(account.gid))
                .with_context(|| format!("giving {} to uid {uid}", p.display()))?;
        }
        tracing::info!(
            uid,
            "the jobs of uid {uid} wait for their worker in {}",
            path.display()
        );
    }
    for suffix in ["", "-wal", "-shm"] {
        let from = state_dir.join(format!("ferry.db{suffix}"));
        if from.exists() {
            let to = state_dir.join(format!("ferry.db{suffix}.migrated"));
            std::fs::rename(&from, &to)
                .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
        }
    }
    tracing::info!(
        users = made.len(),
        "the single store is split; the old one is kept as ferry.db.migrated"
    );
    Ok(())
}
