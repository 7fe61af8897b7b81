//! `xtask dist [DIR]`: writes the man pages of `ferry` (one per command: ferry.1,
//! ferry-get.1, …) and `ferryd`, gzipped as Debian wants them, and their bash, zsh and
//! fish completions, made by `ferry_cli::docs` (what `ferry man` and `ferry completions`
//! print) from the very clap definitions the binaries parse with. DIR defaults to `dist/`
//! beside this executable, that is `target/<profile>/dist`, where the Debian package's
//! assets expect them (`dist/deb/build` runs it before `cargo deb`, which compresses only
//! the man pages it does not take from the target folder).
//!
//! May use: the command-line definitions of `ferry-cli` and `ferryd`, `ferry_cli::docs`,
//! clap, flate2, std.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use ferry_cli::docs;

/// Writes the man pages and completions to `dir`, or to `dist/` beside this executable.
pub fn run(dir: Option<&str>) -> anyhow::Result<()> {
    let out = match dir {
        Some(dir) => PathBuf::from(dir),
        None => beside_this_executable()?.join("dist"),
    };
    write_all(&out)?;
    println!("wrote man pages and completions to {}", out.display());
    Ok(())
}

fn beside_this_executable() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// Writes `man/*.1.gz` and `completions/{NAME.bash,_NAME,NAME.fish}` for both commands.
fn write_all(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    // Pages of commands that no longer exist must not linger into the package.
    if man.exists() {
        std::fs::remove_dir_all(&man)?;
    }
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    for (cmd, exit_codes) in [
        (ferry_cli::args::Cli::command(), true),
        (ferryd::cli::Args::command(), false),
    ] {
        let name = cmd.get_name().to_string();
        for page in docs::man_pages(cmd.clone(), exit_codes)? {
            std::fs::write(
                man.join(format!("{}.gz", page.file_name)),
                gzip(&page.roff)?,
            )?;
        }
        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            std::fs::write(
                completions.join(file),
                docs::completions(shell, cmd.clone()),
            )?;
        }
    }
    Ok(())
}

/// `data` gzipped at the best compression (lintian checks it) with no name nor time in
/// the header, so that the package is the same from one build to the next.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}
