//! `ferry help [COMMAND|TOPIC]`, `ferry man [COMMAND]` and `ferry completions SHELL`:
//! what the binary tells about itself, from its own clap definition (`ferry_cli::docs`
//! makes the pages and scripts, as for the Debian package).
//!
//! May use: `ferry_cli::{args, docs, exit}`, `failure`, `stdout`, clap.

use anyhow::Result;
use clap::CommandFactory;
use ferry_cli::args::{Cli, CompletionsArgs, HelpArgs, ManArgs};
use ferry_cli::{docs, exit};

use crate::failure::usage;

/// The topics `ferry help` knows besides the commands.
const TOPICS: &str = "exit-codes";

pub fn help(a: HelpArgs) -> Result<i32> {
    if a.topic == ["exit-codes"] {
        crate::stdout::bytes(exit::table().as_bytes());
        return Ok(0);
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut at = &mut cmd;
    for name in &a.topic {
        at = match at.find_subcommand_mut(name) {
            Some(sub) => sub,
            None => {
                return Err(usage(format!(
                    "no command or help topic '{}': `ferry --help` lists the commands; \
                     topics: {TOPICS}",
                    a.topic.join(" ")
                )))
            }
        };
    }
    crate::stdout::bytes(at.render_long_help().to_string().as_bytes());
    Ok(0)
}

pub fn man(a: ManArgs) -> Result<i32> {
    if let Some(dir) = a.dir {
        std::fs::create_dir_all(&dir)?;
        let pages = docs::man_pages(Cli::command(), true)?;
        for page in &pages {
            std::fs::write(dir.join(&page.file_name), &page.roff)?;
        }
        outln!("wrote {} man pages to {}", pages.len(), dir.display());
        return Ok(0);
    }
    match docs::man_page(Cli::command(), &a.command, true)? {
        Some(page) => crate::stdout::bytes(&page.roff),
        None => {
            return Err(usage(format!(
                "no command '{}': `ferry --help` lists the commands",
                a.command.join(" ")
            )))
        }
    }
    Ok(0)
}

pub fn completions(a: CompletionsArgs) -> Result<i32> {
    crate::stdout::bytes(&docs::completions(a.shell, Cli::command()));
    Ok(0)
}
