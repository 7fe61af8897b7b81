//! The monitor's keys: what each key means in the state the monitor is in. Plain keys
//! only (letters, arrows, Enter, Esc), so it works over ssh and in any terminal.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ferry_client::Priority;

use super::model::{Model, View};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    /// Show the selected job's files.
    OpenFiles,
    /// Back to the job list (or close help).
    Back,
    Suspend,
    Resume,
    /// Ask whether to cancel the current job.
    AskCancel,
    /// Yes to the question asked.
    ConfirmCancel,
    /// No to the question asked.
    KeepJob,
    Complete,
    /// One step towards `foreground` (`true`) or `low` (`false`).
    Priority(bool),
    ToggleHelp,
    /// Scroll the help one line down (`true`) or up.
    ScrollHelp(bool),
    Nothing,
}

/// The action of `key` in `model`'s state.
pub fn action(model: &Model, key: KeyEvent) -> Action {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') | KeyCode::Char('d') => Action::Quit,
            _ => Action::Nothing,
        };
    }
    if model.confirm_cancel.is_some() {
        return match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => Action::ConfirmCancel,
            _ => Action::KeepJob,
        };
    }
    if model.show_help {
        return match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Down | KeyCode::Char('j') | KeyCode::PageDown => Action::ScrollHelp(true),
            KeyCode::Up | KeyCode::Char('k') | KeyCode::PageUp => Action::ScrollHelp(false),
            _ => Action::ToggleHelp,
        };
    }
    match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
            match model.view {
                View::Files { .. } => Action::Back,
                View::Jobs if key.code == KeyCode::Esc => Action::Quit,
                View::Jobs => Action::Nothing,
            }
        }
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') | KeyCode::Char('f') => {
            Action::OpenFiles
        }
        KeyCode::Char('s') => Action::Suspend,
        KeyCode::Char('r') => Action::Resume,
        KeyCode::Char('x') | KeyCode::Delete => Action::AskCancel,
        KeyCode::Char('c') => Action::Complete,
        KeyCode::Char('+') | KeyCode::Char('=') => Action::Priority(true),
        KeyCode::Char('-') | KeyCode::Char('_') => Action::Priority(false),
        KeyCode::Char('?') => Action::ToggleHelp,
        _ => Action::Nothing,
    }
}

/// The priority one step from `p`: towards `foreground` when `up`, else towards `low`;
/// `None` at either end.
pub fn step_priority(p: Priority, up: bool) -> Option<Priority> {
    const ORDER: [Priority; 4] = [
        Priority::Foreground,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];
    let i = ORDER.iter().position(|q| *q == p)?;
    if up {
        i.checked_sub(1).map(|j| ORDER[j])
    } else {
        ORDER.get(i + 1).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventKind;
    use ferry_client::JobState;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new_with_kind(code, KeyModifiers::NONE, KeyEventKind::Press)
    }

    fn model() -> Model {
        let job = crate::testdata::job("a", JobState::Transferring, 1, Some(2));
        Model::new(vec![super::super::model::JobRow::from_info(
            &job,
            std::time::Instant::now(),
        )])
    }

    #[test]
    fn cancel_asks_first_and_anything_but_yes_keeps_the_job() {
        let mut m = model();
        assert_eq!(action(&m, key(KeyCode::Char('x'))), Action::AskCancel);
        m.confirm_cancel = Some(m.jobs[0].id);
        assert_eq!(action(&m, key(KeyCode::Char('y'))), Action::ConfirmCancel);
        assert_eq!(action(&m, key(KeyCode::Char('n'))), Action::KeepJob);
        assert_eq!(action(&m, key(KeyCode::Char('q'))), Action::KeepJob);
        assert_eq!(action(&m, key(KeyCode::Esc)), Action::KeepJob);
    }

    #[test]
    fn keys_act_on_jobs_and_escape_leaves_the_files_view() {
        let mut m = model();
        assert_eq!(action(&m, key(KeyCode::Char('s'))), Action::Suspend);
        assert_eq!(action(&m, key(KeyCode::Char('r'))), Action::Resume);
        assert_eq!(action(&m, key(KeyCode::Char('c'))), Action::Complete);
        assert_eq!(action(&m, key(KeyCode::Char('+'))), Action::Priority(true));
        assert_eq!(action(&m, key(KeyCode::Enter)), Action::OpenFiles);
        m.view = View::Files {
            job: m.jobs[0].id,
            files: None,
        };
        assert_eq!(action(&m, key(KeyCode::Esc)), Action::Back);
        m.view = View::Jobs;
        assert_eq!(action(&m, key(KeyCode::Esc)), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(&m, ctrl_c), Action::Quit);
    }

    #[test]
    fn cli_trust_arrows_scroll_the_help_and_other_keys_close_it() {
        let mut m = model();
        m.show_help = true;
        assert_eq!(action(&m, key(KeyCode::Down)), Action::ScrollHelp(true));
        assert_eq!(
            action(&m, key(KeyCode::Char('k'))),
            Action::ScrollHelp(false)
        );
        assert_eq!(action(&m, key(KeyCode::Char('?'))), Action::ToggleHelp);
        assert_eq!(action(&m, key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn priorities_step_and_stop_at_the_ends() {
        assert_eq!(step_priority(Priority::Normal, true), Some(Priority::High));
        assert_eq!(
            step_priority(Priority::High, true),
            Some(Priority::Foreground)
        );
        assert_eq!(step_priority(Priority::Foreground, true), None);
        assert_eq!(step_priority(Priority::Normal, false), Some(Priority::Low));
        assert_eq!(step_priority(Priority::Low, false), None);
    }
}
