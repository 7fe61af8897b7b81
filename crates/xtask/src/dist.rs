//! `xtask dist [DIR]`: writes the man pages of `ferry` and `ferryd` (clap_mangen) and
//! their bash, zsh and fish completions (clap_complete) from the very clap definitions the
//! binaries parse with. DIR defaults to `dist/` beside this executable, that is
//! `target/<profile>/dist`, where the Debian package's assets expect them
//! (`dist/deb/build` runs it before `cargo deb`).
//!
//! May use: the command-line definitions of `ferry-cli` and `ferryd`, clap, std.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

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

/// Writes `man/NAME.1` and `completions/{NAME.bash,_NAME,NAME.fish}` for both commands.
fn write_all(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    for cmd in [
        ferry_cli::args::Cli::command(),
        ferryd::cli::Args::command(),
    ] {
        let name = cmd.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
        std::fs::write(man.join(format!("{name}.1")), page)?;
        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut text);
            std::fs::write(completions.join(file), text)?;
        }
    }
    Ok(())
}
