//! Drawing the monitor: a header with the daemon's total throughput and its sparkline,
//! the job table (or one job's files), the status line and the keys. Pure rendering of a
//! [`Model`] into a ratatui frame, so tests draw it on ratatui's `TestBackend`.

use std::time::{Duration, Instant};

use ferry_client::JobState;
use ferry_common::units::{format_rate, format_size};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap};
use ratatui::Frame;

use super::model::{Connection, JobRow, Model, View};
use crate::output::fit;

/// The keys, one line (the full list is in `ferry monitor --help` and behind `?`).
const KEYS: &str =
    "↑↓ select  ⏎ files  s suspend  r resume  x cancel  c complete  +/- priority  ? help  q quit";
/// The same in 80 columns.
const KEYS_NARROW: &str =
    "↑↓ select ⏎ files s suspend r resume x cancel c complete +/- prio ? help q quit";

/// The width of the text progress bar in the job table.
const BAR: usize = 12;
/// The same below [`WIDE`].
const BAR_NARROW: usize = 6;

/// Draws `model` as it stands at `now`.
pub fn draw(frame: &mut Frame, model: &Model, now: Instant) {
    let [header, spark, main, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(model, now)), header);
    draw_sparkline(frame, model, spark);
    match &model.view {
        View::Jobs => draw_jobs(frame, model, now, main),
        View::Files { job, files } => draw_files(frame, model, *job, files.as_deref(), main),
    }
    frame.render_widget(
        Paragraph::new(status_line(model)).style(Style::default().add_modifier(Modifier::BOLD)),
        status,
    );
    let keys_line = if frame.area().width >= KEYS.chars().count() as u16 {
        KEYS
    } else {
        KEYS_NARROW
    };
    frame.render_widget(
        Paragraph::new(keys_line).style(Style::default().fg(Color::DarkGray)),
        keys,
    );
    if let Some(id) = model.confirm_cancel {
        let name = model
            .jobs
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.name.as_str())
            .unwrap_or("?");
        draw_popup(
            frame,
            "Cancel job?",
            &format!(
                "Cancel '{name}'? Its temporary files are deleted and nothing is kept.\n\n\
                 y: cancel the job    any other key: keep it"
            ),
        );
    }
    if model.show_help {
        draw_help(frame, model.help_scroll);
    }
}

/// What the `?` key shows: the keys of `ferry monitor --help` and what the short state
/// names of a narrow terminal stand for, each line short enough for 80 columns.
pub fn help_text() -> String {
    let keys = super::HELP
        .split_once("Keys")
        .map(|(_, keys)| format!("Keys{keys}"))
        .unwrap_or_else(|| super::HELP.to_string());
    format!(
        "{keys}\n\nStates, shortened below {WIDE} columns:\n  \
         connect   connecting            xferring  transferring\n  \
         xferred   transferred           retrying  transient_error\n  \
         acked     acknowledged"
    )
}

/// The help in a box that fits the screen; when the screen is too short for all of it, the
/// arrows scroll it and the title says so.
fn draw_help(frame: &mut Frame, scroll: u16) {
    let text = help_text();
    let lines = text.lines().count() as u16;
    let area = frame.area();
    let inner = area.height.saturating_sub(2);
    let fits = lines <= inner;
    let scroll = scroll.min(lines.saturating_sub(inner));
    let title = if fits {
        " Keys (any key closes) ".to_string()
    } else {
        format!(
            " Keys ↑↓ scroll, lines {}-{} of {lines} ",
            scroll + 1,
            (scroll + inner).min(lines)
        )
    };
    let width = area.width.min(80);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - (lines + 2).min(area.height)) / 2,
        width,
        height: (lines + 2).min(area.height),
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text)
            .scroll((scroll, 0))
            .block(Block::default().borders(Borders::ALL).title(title)),
        popup,
    );
}

fn header_line(model: &Model, now: Instant) -> Line<'static> {
    let connection = match &model.connection {
        Connection::Connected => {
            Span::styled("ferryd connected", Style::default().fg(Color::Green))
        }
        Connection::Away(_) => Span::styled(
            "ferryd away: reconnecting…",
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ),
    };
    Line::from(vec![
        Span::styled(
            "ferry monitor",
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  {} jobs, {} transferring, total {}  ",
            model.jobs.len(),
            model.transferring(),
            format_rate(model.total_rate(now))
        )),
        connection,
    ])
}

fn draw_sparkline(frame: &mut Frame, model: &Model, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    let recent: Vec<u64> = model
        .throughput
        .iter()
        .skip(model.throughput.len().saturating_sub(width))
        .copied()
        .collect();
    let peak = recent.iter().copied().max().unwrap_or(0);
    let title = format!(
        " throughput, last {} s (peak {}) ",
        recent.len(),
        format_rate(peak)
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .data(recent)
            .style(Style::default().fg(Color::Cyan)),
        area,
    );
}

/// `[#####     ] 45%` with a bar of `width`, or a placeholder while the size is unknown.
fn bar(fraction: Option<f64>, width: usize) -> String {
    match fraction {
        Some(f) => {
            let filled = ((f * width as f64).round() as usize).min(width);
            format!(
                "[{}{}] {:>3.0}%",
                "#".repeat(filled),
                " ".repeat(width - filled),
                f * 100.0
            )
        }
        None => format!("[{}]  ?%", "?".repeat(width)),
    }
}

fn eta(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) => {
            let s = d.as_secs();
            if s >= 3600 {
                format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
            } else {
                format!("{}:{:02}", s / 60, s % 60)
            }
        }
    }
}

/// A state as the job table shows it: in full from [`WIDE`] columns, else in at most 9,
/// each short form distinct (never cut, where `transfe…` could be two states).
pub fn state_label(state: JobState, wide: bool) -> &'static str {
    if wide {
        return state.as_str();
    }
    match state {
        JobState::Suspended => "suspended",
        JobState::Queued => "queued",
        JobState::Connecting => "connect",
        JobState::Transferring => "xferring",
        JobState::Transferred => "xferred",
        JobState::TransientError => "retrying",
        JobState::Error => "error",
        JobState::Acknowledged => "acked",
        JobState::Cancelled => "cancelled",
    }
}

fn state_style(state: JobState) -> Style {
    match state {
        JobState::Transferring => Style::default().fg(Color::Cyan),
        JobState::Transferred | JobState::Acknowledged => Style::default().fg(Color::Green),
        JobState::Error => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        JobState::TransientError => Style::default().fg(Color::Yellow),
        JobState::Cancelled => Style::default().fg(Color::DarkGray),
        _ => Style::default(),
    }
}

fn sizes(j: &JobRow) -> String {
    match j.total {
        Some(t) => format!("{}/{}", format_size(j.done), format_size(t)),
        None => format!("{}/?", format_size(j.done)),
    }
}

/// The widths of the job table's columns after the name, and what the table needs besides
/// the name and error columns (one space between columns, two for the selection mark).
const JOB_COLUMNS: [u16; 7] = [15, BAR as u16 + 7, 21, 7, 12, 6, 10];
const JOB_TABLE_FIXED: u16 = 15 + BAR as u16 + 7 + 21 + 7 + 12 + 6 + 10 + 8 + 2;
/// From this width the job table has every column (names of 12 columns at least, errors
/// of 10) and states in full; below it (80 columns, say), short states and a short bar,
/// and the selected job's priority, files and error under the table.
pub const WIDE: u16 = JOB_TABLE_FIXED + 12 + 10;
/// The narrow table's columns after the name: state, progress, bytes, rate, time left;
/// and what the table needs besides the name (one space between columns, two for the
/// selection mark).
const NARROW_COLUMNS: [u16; 5] = [9, BAR_NARROW as u16 + 7, 19, 11, 6];
const NARROW_FIXED: u16 = 9 + BAR_NARROW as u16 + 7 + 19 + 11 + 6 + 5 + 2;

fn draw_jobs(frame: &mut Frame, model: &Model, now: Instant, area: Rect) {
    let wide = area.width >= WIDE;
    // The selected job's error in full, under the table (the column shows its start); in
    // a narrow table, also what its missing columns would say.
    let detail = model.selected_job().and_then(|j| {
        let error = j
            .error
            .as_ref()
            .map(|(code, message)| format!("{code}: {message}"));
        if wide {
            return error.map(|e| format!("{}: {e}", j.name));
        }
        let mut line = format!(
            "{}: {} priority, files {}/{}",
            j.name, j.priority, j.files_done, j.files_total
        );
        if let Some(e) = error {
            line.push_str(&format!("; {e}"));
        }
        Some(line)
    });
    let [area, detail_area] = Layout::vertical([
        Constraint::Min(2),
        Constraint::Length(if detail.is_some() { 2 } else { 0 }),
    ])
    .areas(area);
    if let Some(detail) = detail {
        frame.render_widget(
            Paragraph::new(detail)
                .style(Style::default().fg(Color::Red))
                .wrap(Wrap { trim: true }),
            detail_area,
        );
    }
    if !wide {
        draw_jobs_narrow(frame, model, now, area);
        return;
    }
    let spare = area.width.saturating_sub(JOB_TABLE_FIXED);
    let name_width = (spare * 3 / 5).clamp(12, 48) as usize;
    let rows = model.jobs.iter().map(|j| {
        let error = j
            .error
            .as_ref()
            .map(|(code, message)| format!("{code}: {message}"))
            .unwrap_or_default();
        let rate = j.rate_at(now);
        let row = Row::new(vec![
            Span::raw(fit(&j.name, name_width)),
            Span::styled(j.state.as_str(), state_style(j.state)),
            Span::raw(bar(j.fraction(), BAR)),
            Span::raw(sizes(j)),
            Span::raw(format!("{}/{}", j.files_done, j.files_total)),
            Span::raw(if rate > 0 {
                format_rate(rate)
            } else {
                "-".into()
            }),
            Span::raw(eta(j.eta_at(now))),
            Span::raw(j.priority.as_str()),
            Span::styled(error, Style::default().fg(Color::Red)),
        ]);
        if j.state.is_final() {
            row.style(Style::default().add_modifier(Modifier::DIM))
        } else {
            row
        }
    });
    let header = Row::new([
        "NAME", "STATE", "PROGRESS", "BYTES", "FILES", "RATE", "ETA", "PRIORITY", "ERROR",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let mut widths = vec![Constraint::Length(name_width as u16)];
    widths.extend(JOB_COLUMNS.map(Constraint::Length));
    widths.push(Constraint::Min(10));
    render_job_table(frame, model, Table::new(rows, widths).header(header), area);
}

/// The job table below [`WIDE`] columns: name, short state, short bar, bytes, rate and
/// time left (the priority, files and error of the selected job are under it).
fn draw_jobs_narrow(frame: &mut Frame, model: &Model, now: Instant, area: Rect) {
    let name_width = area.width.saturating_sub(NARROW_FIXED).max(8) as usize;
    let rows = model.jobs.iter().map(|j| {
        let rate = j.rate_at(now);
        let row = Row::new(vec![
            Span::raw(fit(&j.name, name_width)),
            Span::styled(state_label(j.state, false), state_style(j.state)),
            Span::raw(bar(j.fraction(), BAR_NARROW)),
            Span::raw(sizes(j)),
            Span::raw(if rate > 0 {
                format_rate(rate)
            } else {
                "-".into()
            }),
            Span::raw(eta(j.eta_at(now))),
        ]);
        if j.state.is_final() {
            row.style(Style::default().add_modifier(Modifier::DIM))
        } else {
            row
        }
    });
    let header = Row::new(["NAME", "STATE", "PROGRESS", "BYTES", "RATE", "ETA"])
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let mut widths = vec![Constraint::Length(name_width as u16)];
    widths.extend(NARROW_COLUMNS.map(Constraint::Length));
    render_job_table(frame, model, Table::new(rows, widths).header(header), area);
}

/// Draws `table` (the wide or the narrow job table) under its title, the selected job
/// highlighted.
fn render_job_table(frame: &mut Frame, model: &Model, table: Table, area: Rect) {
    let empty = model.jobs.is_empty();
    let table = table
        .block(Block::default().borders(Borders::TOP).title(if empty {
            " no jobs: `ferry get URL` or `ferry create` adds one "
        } else {
            " jobs "
        }))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = TableState::default().with_selected((!empty).then_some(model.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_files(
    frame: &mut Frame,
    model: &Model,
    job: ferry_client::Uuid,
    files: Option<&[ferry_client::FileInfo]>,
    area: Rect,
) {
    let [head, list] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(area);
    let row = model.jobs.iter().find(|j| j.id == job);
    let mut lines = vec![Line::from(vec![
        Span::styled(
            row.map(|j| j.name.clone()).unwrap_or_default(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {job}  ")),
        row.map(|j| Span::styled(j.state.as_str(), state_style(j.state)))
            .unwrap_or_default(),
    ])];
    if let Some((code, message)) = row.and_then(|j| j.error.as_ref()) {
        lines.push(Line::styled(
            format!("error {code}: {message}"),
            Style::default().fg(Color::Red),
        ));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), head);
    let Some(files) = files else {
        frame.render_widget(Paragraph::new("reading the job's files…"), list);
        return;
    };
    let name_width = list.width.saturating_sub(54).clamp(12, 80) as usize;
    let rows = files.iter().map(|f| {
        let fraction = match f.bytes_total {
            Some(0) => Some(1.0),
            Some(t) => Some(f.bytes_transferred as f64 / t as f64),
            None => None,
        };
        Row::new(vec![
            f.index.to_string(),
            fit(&f.local_path, name_width),
            bar(fraction, BAR),
            match f.bytes_total {
                Some(t) => format!("{}/{}", format_size(f.bytes_transferred), format_size(t)),
                None => format!("{}/?", format_size(f.bytes_transferred)),
            },
            if f.completed { "done" } else { "" }.to_string(),
        ])
    });
    let widths = [
        Constraint::Length(5),
        Constraint::Length(name_width as u16),
        Constraint::Length(BAR as u16 + 7),
        Constraint::Length(21),
        Constraint::Length(5),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new(["#", "DESTINATION", "PROGRESS", "BYTES", ""])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(" files (Esc: back to the jobs) "),
        );
    frame.render_widget(table, list);
}

fn status_line(model: &Model) -> String {
    match &model.connection {
        Connection::Away(reason) => {
            format!("ferryd went away: {reason}; waiting for it to come back…")
        }
        Connection::Connected => model.status.clone(),
    }
}

/// A box in the middle of the screen.
fn draw_popup(frame: &mut Frame, title: &str, text: &str) {
    let area = frame.area();
    let lines = text.lines().count() as u16 + 2;
    let width = area.width.saturating_sub(4).min(84);
    let height = lines.min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {title} ")),
        ),
        popup,
    );
}
