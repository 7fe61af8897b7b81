//! Splitting the single store of the system-wide daemon of earlier versions (one root
//! daemon, every user's jobs in `STATE/ferry.db`) into one store per user, as the workers
//! of privilege separation keep them. Each new store gets the current schema and exactly
//! its user's jobs, files, undelivered notifications and handlers, copied row for row in
//! one transaction per user. The peer cache's index is not carried over (the cache
//! process starts its own; the content is fetched again when asked for).

use std::path::{Path, PathBuf};

use rusqlite::params;

use super::{open_connection, schema, StoreError};

/// Splits `old_dir/ferry.db` by owner into `dest(uid)/ferry.db` (each folder created by
/// the caller, each file new); returns every user's new store. The old store is brought
/// to the current schema first and left as it is otherwise.
pub fn split_by_owner(
    old_dir: &Path,
    dest: impl Fn(u32) -> PathBuf,
) -> Result<Vec<(u32, PathBuf)>, StoreError> {
    let mut old = open_connection(&old_dir.join("ferry.db"))?;
    schema::migrate(&mut old)?;
    let uids: Vec<u32> = {
        let mut q = old.prepare(
            "SELECT owner_uid FROM jobs UNION SELECT owner_uid FROM handlers ORDER BY 1",
        )?;
        let rows = q.query_map([], |r| r.get::<_, u32>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut made = Vec::new();
    for uid in uids {
        let path = dest(uid).join("ferry.db");
        {
            let mut new = open_connection(&path)?;
            schema::migrate(&mut new)?;
            // A store other processes open later: no write-ahead log left beside it.
            new.pragma_update(None, "journal_mode", "DELETE")?;
        }
        old.execute("ATTACH DATABASE ?1 AS u", params![path.to_string_lossy()])?;
        let copied = (|| -> rusqlite::Result<()> {
            let tx = old.transaction()?;
            tx.execute(
                "INSERT INTO u.jobs SELECT * FROM main.jobs WHERE owner_uid = ?1",
                params![uid],
            )?;
            tx.execute(
                "INSERT INTO u.files SELECT * FROM main.files \
                 WHERE job_id IN (SELECT id FROM main.jobs WHERE owner_uid = ?1)",
                params![uid],
            )?;
            tx.execute(
                "INSERT INTO u.outbox SELECT * FROM main.outbox \
                 WHERE job_id IN (SELECT id FROM main.jobs WHERE owner_uid = ?1)",
                params![uid],
            )?;
            tx.execute(
                "INSERT INTO u.handlers SELECT * FROM main.handlers WHERE owner_uid = ?1",
                params![uid],
            )?;
            tx.commit()
        })();
        old.execute("DETACH DATABASE u", [])?;
        copied?;
        made.push((uid, path));
    }
    Ok(made)
}
