//! Checking paths a client names, on the file system, as their owner: a destination's
//! folder must exist, be writable by the owner, and is resolved once; a file to read must
//! be a regular file the owner can open; a working folder must be one the owner can
//! enter. (These checks give early, clear refusals. Safety never rests on them: the work
//! itself is done as the owner, so what the owner may not do fails then too.)

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path};

/// Whether the calling thread may access `path` with `mode` (`libc::W_OK | libc::X_OK`
/// …), asked with its effective (file-system) ids as the kernel checks them
/// (`faccessat2` with `AT_EACCESS`). `None` when the kernel cannot say (before 5.8).
fn may_access(path: &Path, mode: libc::c_int) -> Option<io::Result<()>> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path and plain integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            mode,
            libc::AT_EACCESS,
        )
    };
    if r == 0 {
        return Some(Ok(()));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOSYS) {
        None
    } else {
        Some(Err(e))
    }
}

/// Opens `path` to read it as the caller would (never blocking on a FIFO): the check that
/// the owner may read it.
fn open_readable(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Links followed from a destination at most (as the kernel's 40 for a whole path).
const MAX_LINKS: usize = 40;

/// A destination path: absolute, no `..`, an existing directory as parent, not a
/// directory itself. The folder is resolved now (symlinks followed once), so a link in it
/// that changes later cannot redirect where ferry writes. A destination that is itself a
/// symlink is written through, as curl does: the file lands where the link leads (the
/// part file beside it, the rename of `complete` there), and the link stays. Returns the
/// resolved path, or what is wrong with it.
pub fn check_destination(path: &str) -> Result<String, String> {
    let mut current = path.to_string();
    for _ in 0..MAX_LINKS {
        let resolved = check_one_destination(&current)?;
        match std::fs::read_link(&resolved) {
            Ok(target) => {
                let folder = Path::new(&resolved).parent().unwrap_or(Path::new("/"));
                let next = folder.join(target);
                current = next.into_os_string().into_string().map_err(|_| {
                    format!("the link '{resolved}' leads to a path that is not UTF-8")
                })?;
                if current.split('/').any(|c| c == "..") {
                    // Made absolute without `..` by resolving the folder the link names.
                    let p = Path::new(&current);
                    let name = p.file_name().ok_or_else(|| {
                        format!("the link '{resolved}' leads to no file ({current})")
                    })?;
                    let folder = std::fs::canonicalize(p.parent().unwrap_or(Path::new("/")))
                        .map_err(|e| {
                            format!(
                                "the folder the link '{resolved}' leads to cannot be used ({e})"
                            )
                        })?;
                    current = folder.join(name).display().to_string();
                }
            }
            Err(_) => return Ok(resolved),
        }
    }
    Err(format!(
        "local path '{path}' is a link that leads through more than {MAX_LINKS} links"
    ))
}

/// [`check_destination`] of one path, without following a link at its end.
fn check_one_destination(path: &str) -> Result<String, String> {
    if Path::new(path).starts_with("/proc") || Path::new(path).starts_with("/dev/fd") {
        return Err(format!(
            "local path '{path}' names a process's descriptors (/proc, /dev/fd), not a file \
             (the command line writes to standard output with `-o -`)"
        ));
    }
    if path.contains('\0') {
        return Err("the local path contains a NUL byte".into());
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!(
            "local path '{path}' is relative: give an absolute path"
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "local path '{path}' contains '..': give the path without it"
        ));
    }
    let Some(name) = p.file_name() else {
        return Err(format!("local path '{path}' names no file"));
    };
    if name.len() > 200 {
        return Err(format!(
            "the file name in '{path}' is too long (at most 200 bytes)"
        ));
    }
    let parent = p.parent().unwrap_or(Path::new("/"));
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", parent.display())),
        Err(e) => {
            return Err(format!(
                "the folder {} of '{path}' cannot be used ({e}): create it first",
                parent.display()
            ))
        }
    }
    let parent = std::fs::canonicalize(parent)
        .map_err(|e| format!("the folder of '{path}' cannot be resolved: {e}"))?;
    if let Some(Err(e)) = may_access(&parent, libc::W_OK | libc::X_OK) {
        return Err(format!(
            "you cannot write in the folder {} of '{path}' ({e}): choose a folder you can write to",
            parent.display()
        ));
    }
    let resolved = parent.join(name);
    if let Ok(m) = std::fs::symlink_metadata(&resolved) {
        if m.is_dir() {
            return Err(format!(
                "local path '{path}' is a directory: name a file inside it"
            ));
        }
    }
    resolved
        .into_os_string()
        .into_string()
        .map_err(|_| format!("local path '{path}' is not valid UTF-8"))
}

/// An existing regular file the caller can read, by absolute path (CA files, upload
/// sources).
pub fn check_regular_file(what: &str, path: &str) -> Result<String, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!(
            "{what} '{path}' is relative: give an absolute path"
        ));
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => {}
        Ok(m) if m.file_type().is_fifo() => {
            return Err(format!("{what} '{path}' is a pipe, not a regular file"))
        }
        Ok(_) => return Err(format!("{what} '{path}' is not a regular file")),
        Err(e) => return Err(format!("{what} '{path}' cannot be read: {e}")),
    }
    match open_readable(p) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(path.to_string()),
        Ok(_) => Err(format!("{what} '{path}' is not a regular file")),
        Err(e) => Err(format!("{what} '{path}' cannot be read by you: {e}")),
    }
}

/// An existing folder the caller can enter (a handler's working folder).
pub fn check_folder(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_dir() {
        return Err(format!("the working folder '{path}' does not exist"));
    }
    match may_access(p, libc::X_OK) {
        Some(Err(e)) => Err(format!(
            "you cannot enter the working folder '{path}' ({e})"
        )),
        _ => Ok(()),
    }
}

/// A program the owner can run, by absolute path: an existing regular file with execute
/// permission for the calling user (a handler's program).
pub fn check_program(what: &str, path: &str) -> Result<(), String> {
    check_regular_file(what, path)?;
    let c_path =
        std::ffi::CString::new(path).map_err(|_| format!("{what} '{path}' contains a NUL byte"))?;
    // SAFETY: a valid NUL-terminated path; access() only reads it.
    if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0 {
        return Ok(());
    }
    let why = std::io::Error::last_os_error();
    Err(format!("{what} '{path}' cannot be run: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert!(check_destination("relative/file").is_err());
        assert!(check_destination("/tmp/../etc/passwd").is_err());
        assert!(check_destination("/tmp").is_err());
        assert!(check_destination("/nonexistent-dir-xyz/file").is_err());
        assert!(check_destination("/tmp/ferry-validate-test").is_ok());
    }

    #[test]
    fn a_destination_that_is_a_link_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let data = real.join("data");
        std::fs::create_dir(&data).unwrap();
        let target = data.join("real.iso");
        std::fs::write(&target, b"old").unwrap();
        let link = real.join("link.iso");
        std::os::unix::fs::symlink("data/real.iso", &link).unwrap();
        assert_eq!(
            check_destination(link.to_str().unwrap()).unwrap(),
            target.display().to_string()
        );
        // A dangling link: the file appears where it leads.
        let dangling = real.join("later.iso");
        std::os::unix::fs::symlink(data.join("new.iso"), &dangling).unwrap();
        assert_eq!(
            check_destination(dangling.to_str().unwrap()).unwrap(),
            data.join("new.iso").display().to_string()
        );
        // Relative with `..`, and through two links.
        let up = data.join("up.iso");
        std::os::unix::fs::symlink("../link.iso", &up).unwrap();
        assert_eq!(
            check_destination(up.to_str().unwrap()).unwrap(),
            target.display().to_string()
        );
        // A loop is refused, and so is a link to a folder.
        let a = real.join("a");
        let b = real.join("b");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(check_destination(a.to_str().unwrap())
            .unwrap_err()
            .contains("links"));
        let to_dir = real.join("to-dir");
        std::os::unix::fs::symlink(&data, &to_dir).unwrap();
        assert!(check_destination(to_dir.to_str().unwrap()).is_err());
        // /dev/stdout leads into /proc, where no file can be made.
        assert!(check_destination("/dev/stdout").is_err());
    }

    #[test]
    fn regular_files() {
        assert!(check_regular_file("the CA file", "/etc/hostname-missing-xyz").is_err());
        assert!(check_regular_file("the CA file", "/tmp").is_err());
        assert!(check_regular_file("the CA file", "relative").is_err());
    }

    #[test]
    fn programs() {
        assert!(check_program("the program", "/bin/sh").is_ok());
        let missing = check_program("the program", "/nonexistent-xyz/prog").unwrap_err();
        assert!(missing.contains("cannot be read"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("not-executable");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        // No execute bit at all: refused to root too.
        let e = check_program("the program", script.to_str().unwrap()).unwrap_err();
        assert!(e.contains("cannot be run"), "{e}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever a client sends as a destination, the check answers (never panics), and
        /// what it accepts keeps the invariants the engine relies on.
        #[test]
        fn destinations_are_checked_without_panics(s in prop_oneof![
            any::<String>(),
            "[ -~\r\n\t\u{0}]{0,300}",
            "/[a-zA-Z0-9._/ -]{0,120}",
        ]) {
            if let Ok(p) = check_destination(&s) {
                prop_assert!(p.starts_with('/'));
                prop_assert!(!Path::new(&p)
                    .components()
                    .any(|c| matches!(c, Component::ParentDir)));
                prop_assert!(!p.contains('\0'));
            }
        }
    }
}
