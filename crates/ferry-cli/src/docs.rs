//! Man pages (clap_mangen) and shell completions (clap_complete) made from a clap
//! definition: `ferry man`, `ferry completions` and `xtask dist` (the Debian package's
//! pages and scripts, for ferry and ferryd) all call these, so the three never differ.
//!
//! May use: `exit` (ferry's EXIT STATUS section), clap, clap_mangen, clap_complete, std.

use std::io;

use clap::Command;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};

use crate::exit::Exit;

/// One man page: its file name (`ferry-get.1`) and its roff text.
pub struct ManPage {
    pub file_name: String,
    pub roff: Vec<u8>,
}

/// The page of `cmd` and of every subcommand under it, the command's own first. With
/// `exit_codes`, the top page has an EXIT STATUS section with ferry's table.
pub fn man_pages(cmd: Command, exit_codes: bool) -> io::Result<Vec<ManPage>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![page(&cmd, exit_codes)?];
    add_subcommand_pages(&cmd, &mut pages)?;
    Ok(pages)
}

fn add_subcommand_pages(cmd: &Command, pages: &mut Vec<ManPage>) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push(page(sub, false)?);
        add_subcommand_pages(sub, pages)?;
    }
    Ok(())
}

/// The page of the subcommand at `path` under `cmd` (`[]`: `cmd`'s own), or `None` when
/// there is no such subcommand.
pub fn man_page(cmd: Command, path: &[String], exit_codes: bool) -> io::Result<Option<ManPage>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    if path.is_empty() {
        return page(&cmd, exit_codes).map(Some);
    }
    let mut at = &cmd;
    for name in path {
        match at.find_subcommand(name) {
            Some(sub) => at = sub,
            None => return Ok(None),
        }
    }
    page(at, false).map(Some)
}

fn page(cmd: &Command, exit_codes: bool) -> io::Result<ManPage> {
    let man = clap_mangen::Man::new(cmd.clone());
    let file_name = man.get_filename();
    let mut roff = Vec::new();
    if exit_codes {
        // The sections clap_mangen writes, with EXIT STATUS before VERSION.
        man.render_title(&mut roff)?;
        man.render_name_section(&mut roff)?;
        man.render_synopsis_section(&mut roff)?;
        man.render_description_section(&mut roff)?;
        man.render_options_section(&mut roff)?;
        if cmd.has_subcommands() {
            man.render_subcommands_section(&mut roff)?;
        }
        if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
            man.render_extra_section(&mut roff)?;
        }
        exit_status_section().to_writer(&mut roff)?;
        man.render_version_section(&mut roff)?;
    } else {
        man.render(&mut roff)?;
    }
    Ok(ManPage { file_name, roff })
}

/// ferry's exit codes as a man page section.
fn exit_status_section() -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "curl's numbers where one of curl's means the same; ferry's own from 110. \
         With --json a failure also prints a JSON object on standard error.",
    )]);
    for exit in Exit::ALL {
        roff.control("TP", []);
        roff.text([
            bold(exit.code().to_string()),
            roman(format!(" ({})", exit.name())),
        ]);
        roff.text([roman(format!("{} [{}]", exit.meaning(), exit.origin()))]);
    }
    roff
}

/// The completion script of `shell` for `cmd`.
pub fn completions(shell: Shell, cmd: Command) -> Vec<u8> {
    let mut cmd = cmd;
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_trust_every_command_has_a_page_and_the_top_one_the_exit_codes() {
        let pages = man_pages(crate::args::Cli::command(), true).unwrap();
        let names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        for name in [
            "ferry.1",
            "ferry-get.1",
            "ferry-peers-ca-new.1",
            "ferry-daemon-stop.1",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        let top = String::from_utf8(pages[0].roff.clone()).unwrap();
        assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
        assert!(top.contains("http_client_error"), "{top}");
        let get = man_page(crate::args::Cli::command(), &["get".into()], true)
            .unwrap()
            .unwrap();
        assert_eq!(get.file_name, "ferry-get.1");
        assert!(String::from_utf8(get.roff).unwrap().contains("sha256"));
        assert!(
            man_page(crate::args::Cli::command(), &["nope".into()], true)
                .unwrap()
                .is_none()
        );
    }
}
