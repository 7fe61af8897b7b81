//! ferry's build helpers:
//!
//! - `xtask dist [DIR]` (feature `dist`, on by default): man pages and shell completions
//!   for the Debian package, see [`dist`].
//!
//! May use: dist, anyhow, std.

#[cfg(feature = "dist")]
mod dist;

use std::process::ExitCode;

const USAGE: &str = "\
usage: xtask dist [DIR]   man pages and shell completions of ferry and ferryd
                          (DIR defaults to target/<profile>/dist)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["dist"] => dist(None),
        ["dist", dir] => dist(Some(dir)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "dist")]
fn dist(dir: Option<&str>) -> anyhow::Result<()> {
    dist::run(dir)
}

#[cfg(not(feature = "dist"))]
fn dist(_dir: Option<&str>) -> anyhow::Result<()> {
    anyhow::bail!(
        "this xtask was built without its `dist` feature: run `cargo run -p xtask -- dist [DIR]`"
    )
}
