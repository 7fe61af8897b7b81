//! The terminal while the monitor runs: raw mode, the alternate screen and a hidden
//! cursor, all undone when the [`Terminal`] is dropped — on a normal exit, on an error,
//! and on a panic (a panic hook restores the terminal before the panic message is
//! printed, so the message is readable and the shell usable).

use std::io::{stdout, Stdout};

use anyhow::{Context, Result};
use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;

/// The monitor's terminal; restored when dropped.
pub struct Terminal {
    inner: ratatui::Terminal<CrosstermBackend<Stdout>>,
}

/// Puts the terminal back as the shell had it. Safe to call more than once.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, Show);
}

impl Terminal {
    /// Takes over the terminal.
    pub fn enter() -> Result<Terminal> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        let setup = || -> std::io::Result<ratatui::Terminal<CrosstermBackend<Stdout>>> {
            enable_raw_mode()?;
            execute!(stdout(), EnterAlternateScreen, Hide)?;
            ratatui::Terminal::new(CrosstermBackend::new(stdout()))
        };
        match setup() {
            Ok(inner) => Ok(Terminal { inner }),
            Err(e) => {
                restore();
                Err(e).context("setting up the terminal for the monitor")
            }
        }
    }

    /// Draws a frame.
    pub fn draw(&mut self, f: impl FnOnce(&mut ratatui::Frame)) -> Result<()> {
        self.inner
            .draw(f)
            .map(|_| ())
            .context("drawing the monitor")
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
    }
}
