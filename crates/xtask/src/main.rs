//! ferry's build helpers, run as `cargo xtask COMMAND` (the alias in `.cargo/config.toml`,
//! which leaves out the `dist` feature) or as the built binary:
//!
//! - `xtask dist [DIR]` (feature `dist`, on by default): man pages and shell completions
//!   for the Debian package, see [`dist`].
//! - `xtask h2 check` and `xtask h2 vendor [VERSION]`: vendor/h2 as the published h2 plus
//!   ferry's patch, see [`h2`].
//!
//! May use: dist, h2, anyhow, std.

#[cfg(feature = "dist")]
mod dist;
mod h2;

use std::process::ExitCode;

const USAGE: &str = "\
usage: xtask dist [DIR]          man pages and shell completions of ferry and ferryd
                                 (DIR defaults to target/<profile>/dist)
       xtask h2 check            fails unless vendor/h2 is the published h2 plus
                                 vendor/h2/ferry.patch, Cargo.lock names its version,
                                 and no newer h2 of that minor version is published
       xtask h2 vendor [VERSION] rebuilds vendor/h2 from h2 VERSION (default: the newest
                                 of the folder's minor version) and ferry.patch";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["dist"] => dist(None),
        ["dist", dir] => dist(Some(dir)),
        ["h2", "check"] => h2::check(),
        ["h2", "vendor"] => h2::vendor(None),
        ["h2", "vendor", version] => h2::vendor(Some(version)),
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
        "this xtask was built without its `dist` feature (the `cargo xtask` alias leaves it \
         out): run `cargo run -p xtask -- dist [DIR]`"
    )
}
