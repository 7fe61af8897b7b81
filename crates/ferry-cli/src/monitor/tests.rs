//! The monitor drawn on ratatui's `TestBackend`: what a user sees for jobs in every
//! state, progress, rates, an error, a long name, the files view, the cancel question,
//! a daemon that went away, and the help.

use std::time::Instant;

use ferry_client::{JobState, Priority};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::model::{Connection, JobRow, Model, View};
use super::view;
use crate::testdata;

const WIDTH: u16 = 140;
const HEIGHT: u16 = 24;

/// The screen `model` draws, one string per line.
fn screen(model: &Model, now: Instant) -> Vec<String> {
    screen_of_size(model, now, WIDTH, HEIGHT)
}

/// The screen `model` draws on a `width`×`height` terminal.
fn screen_of_size(model: &Model, now: Instant, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| view::draw(frame, model, now))
        .unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

fn line_with<'a>(screen: &'a [String], text: &str) -> &'a str {
    screen
        .iter()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line shows {text:?}:\n{}", screen.join("\n")))
}

fn row(name: &str, state: JobState, done: u64, total: Option<u64>, now: Instant) -> JobRow {
    JobRow::from_info(&testdata::job(name, state, done, total), now)
}

fn sample(now: Instant) -> Model {
    let mut moving = row(
        "nightly.iso",
        JobState::Transferring,
        45 << 20,
        Some(100 << 20),
        now,
    );
    moving.rate = 1 << 20;
    moving.priority = Priority::High;
    let parked = row("parked.tar", JobState::Suspended, 0, Some(10 << 20), now);
    let unknown = row("unsized.bin", JobState::Queued, 0, None, now);
    let failed = testdata::with_error(
        testdata::job("broken.zip", JobState::Error, 0, None),
        "http_404",
        "https://example.test/broken.zip: the server answered 404 Not Found",
    );
    let failed = JobRow::from_info(&failed, now);
    Model::new(vec![moving, parked, unknown, failed])
}

#[test]
fn monitor_shows_states_progress_rate_eta_and_priority() {
    let now = Instant::now();
    let s = screen(&sample(now), now);
    let header = &s[0];
    assert!(header.contains("ferry monitor"), "{header}");
    assert!(header.contains("4 jobs, 1 transferring"), "{header}");
    assert!(header.contains("total 1.0 MiB/s"), "{header}");
    assert!(header.contains("ferryd connected"), "{header}");

    let moving = line_with(&s, "nightly.iso");
    assert!(moving.contains("transferring"), "{moving}");
    assert!(moving.contains("[#####       ]  45%"), "{moving}");
    assert!(moving.contains("45.0 MiB/100.0 MiB"), "{moving}");
    assert!(moving.contains("1.0 MiB/s"), "{moving}");
    assert!(moving.contains("0:55"), "55 MiB left at 1 MiB/s: {moving}");
    assert!(moving.contains("high"), "{moving}");
    assert!(
        moving.starts_with("> "),
        "the first job is selected: {moving}"
    );

    let parked = line_with(&s, "parked.tar");
    assert!(parked.contains("suspended"), "{parked}");
    assert!(parked.contains("   0%"), "{parked}");
    assert!(parked.contains("normal"), "{parked}");
    let unknown = line_with(&s, "unsized.bin");
    assert!(unknown.contains("queued"), "{unknown}");
    assert!(
        unknown.contains("?%"),
        "an unknown size shows as such: {unknown}"
    );
    line_with(&s, "↑↓ select");
}

#[test]
fn monitor_shows_an_error_with_its_code_and_message() {
    let now = Instant::now();
    let mut model = sample(now);
    model.selected = 3;
    let s = screen(&model, now);
    let failed = line_with(&s, "> broken.zip");
    assert!(failed.contains("error"), "{failed}");
    assert!(failed.contains("http_404: https:"), "{failed}");
    line_with(
        &s,
        "broken.zip: http_404: https://example.test/broken.zip: the server answered 404 Not Found",
    );
}

#[test]
fn monitor_cuts_a_long_name_to_its_column() {
    let now = Instant::now();
    let long = format!("{}-end", "a-very-long-job-name".repeat(10));
    let model = Model::new(vec![row(&long, JobState::Transferring, 1, Some(2), now)]);
    let s = screen(&model, now);
    let line = line_with(&s, "a-very-long-job-name");
    assert!(!line.contains("-end"), "the name is cut: {line}");
    assert!(line.contains('…'), "{line}");
    assert!(
        line.contains("transferring"),
        "the columns after it stay: {line}"
    );
    assert!(line.contains(" 50%"), "{line}");
}

#[test]
fn monitor_shows_the_files_of_one_job() {
    let now = Instant::now();
    let mut model = sample(now);
    let job = testdata::job("nightly.iso", JobState::Transferring, 0, None);
    let id = model.jobs[0].id;
    let mut a = testdata::file(&job, 0, "/srv/a.bin", 1 << 20, Some(1 << 20));
    let mut b = testdata::file(&job, 1, "/srv/b.bin", 1 << 19, Some(1 << 20));
    a.job_id = id;
    b.job_id = id;
    model.view = View::Files {
        job: id,
        files: Some(vec![a, b]),
    };
    let s = screen(&model, now);
    line_with(&s, &id.to_string());
    let a = line_with(&s, "/srv/a.bin");
    assert!(a.contains("100%") && a.contains("done"), "{a}");
    let b = line_with(&s, "/srv/b.bin");
    assert!(b.contains(" 50%") && !b.contains("done"), "{b}");
    line_with(&s, "Esc: back");
}

#[test]
fn monitor_asks_before_cancelling() {
    let now = Instant::now();
    let mut model = sample(now);
    model.confirm_cancel = Some(model.jobs[1].id);
    let s = screen(&model, now);
    line_with(&s, "Cancel job?");
    line_with(&s, "Cancel 'parked.tar'?");
    line_with(&s, "y: cancel the job");
}

#[test]
fn monitor_says_when_the_daemon_is_away_and_shows_the_sparkline() {
    let now = Instant::now();
    let mut model = sample(now);
    model.connection = Connection::Away("the connection to it broke".into());
    for rate in [0, 1 << 20, 2 << 20, 1 << 20] {
        model.throughput.push_back(rate);
    }
    let s = screen(&model, now);
    assert!(s[0].contains("ferryd away: reconnecting"), "{}", s[0]);
    line_with(&s, "ferryd went away: the connection to it broke; waiting");
    line_with(&s, "throughput, last 4 s (peak 2.0 MiB/s)");
    let bars = &s[2];
    assert!(
        bars.chars().any(|c| "▁▂▃▄▅▆▇█".contains(c)),
        "the sparkline draws bars: {bars}"
    );
}

#[test]
fn monitor_help_lists_the_keys() {
    let now = Instant::now();
    let mut model = sample(now);
    model.show_help = true;
    let s = screen(&model, now);
    line_with(&s, "suspend the job");
    line_with(&s, "cancel the job (asks first");
    line_with(&s, "raise or lower the job's priority");
}

#[test]
fn monitor_without_jobs_says_how_to_add_one() {
    let now = Instant::now();
    let s = screen(&Model::new(Vec::new()), now);
    line_with(&s, "no jobs: `ferry get URL`");
}

const EVERY_STATE: [JobState; 9] = [
    JobState::Suspended,
    JobState::Queued,
    JobState::Connecting,
    JobState::Transferring,
    JobState::TransientError,
    JobState::Error,
    JobState::Transferred,
    JobState::Acknowledged,
    JobState::Cancelled,
];

#[test]
fn cli_trust_monitor_at_80x24_shows_every_state_whole_and_distinct() {
    let now = Instant::now();
    let rows = EVERY_STATE
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let mut r = row(&format!("job-{i}"), *state, 45 << 20, Some(100 << 20), now);
            r.rate = if *state == JobState::Transferring {
                1 << 20
            } else {
                0
            };
            r
        })
        .collect();
    let s = screen_of_size(&Model::new(rows), now, 80, 24);
    let mut labels = Vec::new();
    for (i, state) in EVERY_STATE.iter().enumerate() {
        let label = view::state_label(*state, false);
        let line = line_with(&s, &format!("job-{i}"));
        assert!(
            line.split_whitespace().any(|word| word == label),
            "{state} shows as the whole word {label:?}: {line}\n{}",
            s.join("\n")
        );
        assert!(
            line.contains("]  45%"),
            "the bar and its percentage: {line}"
        );
        assert!(line.contains("45.0 MiB/100.0 MiB"), "{line}");
        labels.push(label);
    }
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), EVERY_STATE.len(), "distinct: {labels:?}");
    line_with(&s, "1.0 MiB/s");
    line_with(&s, "0:55");
    // The columns that do not fit are said under the table for the selected job.
    line_with(&s, "job-0: normal priority, files 0/1");
    line_with(&s, "q quit");
}

#[test]
fn cli_trust_monitor_help_fits_80x24_and_scrolls_when_shorter() {
    let now = Instant::now();
    let mut model = sample(now);
    model.show_help = true;
    let text = view::help_text();
    let s = screen_of_size(&model, now, 80, 24);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        line_with(&s, line.trim_end());
    }
    // Twelve lines: the arrows scroll it, and the title says where it stands.
    let s = screen_of_size(&model, now, 80, 12);
    let first = text.lines().next().unwrap();
    let last = text.lines().last().unwrap().trim_end();
    line_with(&s, first);
    assert!(!s.iter().any(|l| l.contains(last)), "{}", s.join("\n"));
    line_with(&s, "↑↓ scroll");
    model.help_scroll = 100;
    let s = screen_of_size(&model, now, 80, 12);
    line_with(&s, last);
    assert!(!s.iter().any(|l| l.contains(first)), "{}", s.join("\n"));
}
