//! Progress for `get` and `wait`: a bar per file with aligned names and a total bar
//! (drawn only on a terminal), notes about the daemon going away and coming back, and the
//! sentence a user reads when it does not come back.

use std::io::IsTerminal;

use ferry_client::{ConnectionEvent, Error, FileInfo, Job, JobInfo, JobState, Manager, Result};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use uuid::Uuid;

use crate::output::fit;

/// Up to this many files get a bar each; a larger job shows the total bar only.
const MAX_FILE_BARS: usize = 10;

/// The widest a file name column gets (longer names are cut with `…`).
const MAX_NAME_WIDTH: usize = 32;

/// Where progress and notes go: bars on standard error when it is a terminal, plain
/// lines otherwise, nothing but errors when quiet.
#[derive(Clone)]
pub struct Display {
    /// Set when bars are drawn.
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl Display {
    /// Bars when `bars` is asked for and standard error is a terminal; notes unless
    /// `quiet`.
    pub fn new(bars: bool, quiet: bool) -> Display {
        let multi = (bars && !quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Display { multi, quiet }
    }

    /// Leaves the bars as they are drawn, so that what is printed next goes below them.
    pub fn finish(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    /// Prints a line to standard error (above the bars when they are drawn).
    pub fn note(&self, line: &str) {
        if self.quiet {
            return;
        }
        let line = crate::stdout::shown(line);
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Tells the user when the daemon goes away and comes back, until the returned guard
    /// is dropped.
    pub fn follow_connection(&self, manager: &Manager, job: Option<Uuid>) -> FollowGuard {
        let mut events = manager.connection_events();
        let display = self.clone();
        let task = tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let Some(line) = connection_note(&event, job) {
                    display.note(&line);
                }
            }
        });
        FollowGuard(task)
    }
}

/// Stops following the connection when dropped.
pub struct FollowGuard(tokio::task::JoinHandle<()>);

impl Drop for FollowGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a user reads about a connection event (`None`: nothing; a give-up is followed by
/// the error itself).
pub fn connection_note(event: &ConnectionEvent, job: Option<Uuid>) -> Option<String> {
    match event {
        ConnectionEvent::Lost { reason } => Some(format!(
            "ferry: ferryd went away: {reason}; waiting for it to come back…"
        )),
        ConnectionEvent::Restored { pid, started } => {
            let how = if *started {
                ", started again by ferry"
            } else {
                ""
            };
            let goes_on = job
                .map(|j| format!("; job {j} goes on where it was"))
                .unwrap_or_default();
            Some(format!("ferry: ferryd is back (pid {pid}{how}){goes_on}"))
        }
        ConnectionEvent::GaveUp { .. } => None,
    }
}

/// `e`, and when the daemon went away for good, what becomes of job `id` and what to do
/// (`complete`: the command would also have completed the job).
pub fn daemon_gone_hint(e: Error, id: Uuid, complete: bool) -> anyhow::Error {
    match e {
        Error::DaemonGone { .. } => {
            let then = if complete {
                format!(", then `ferry complete {id}`")
            } else {
                String::new()
            };
            crate::failure::DaemonGone(format!(
                "{e}. Job {id} is kept and goes on when ferryd runs again: `ferry daemon start` \
                 and `ferry wait {id}`{then}"
            ))
            .into()
        }
        e => e.into(),
    }
}

fn file_style(name_width: usize) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix:{name_width}}} [{{bar:30}}] {{bytes:>10}}/{{total_bytes:<10}} \
         {{bytes_per_sec:>12}} {{eta:>4}} {{msg}}"
    ))
    .expect("valid template")
    .progress_chars("=> ")
}

fn total_style(name_width: usize) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix:{name_width}.bold}} [{{bar:30}}] {{bytes:>10}}/{{total_bytes:<10}} \
         {{bytes_per_sec:>12}} {{eta:>4}} {{msg}}"
    ))
    .expect("valid template")
    .progress_chars("#> ")
}

/// The file name shown for a file: the last part of its destination.
fn file_name(f: &FileInfo) -> String {
    std::path::Path::new(&f.local_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The bars of one job: one per file (for up to [`MAX_FILE_BARS`] files), and a total bar
/// when there is more than one file.
struct Bars {
    files: Vec<ProgressBar>,
    total: Option<ProgressBar>,
}

impl Bars {
    fn new(multi: MultiProgress, files: &[FileInfo]) -> Bars {
        let names: Vec<String> = files.iter().map(file_name).collect();
        let width = names
            .iter()
            .take(MAX_FILE_BARS)
            .map(|n| unicode_width::UnicodeWidthStr::width(n.as_str()))
            .max()
            .unwrap_or(0)
            .clamp(5, MAX_NAME_WIDTH);
        let mut bars = Vec::new();
        if files.len() <= MAX_FILE_BARS {
            for name in &names {
                let bar = ProgressBar::new(0)
                    .with_style(file_style(width))
                    .with_prefix(fit(name, width));
                bars.push(multi.add(bar));
            }
        }
        let total = (files.len() > 1).then(|| {
            let bar = ProgressBar::new(0)
                .with_style(total_style(width))
                .with_prefix(fit("total", width));
            multi.add(bar)
        });
        Bars { files: bars, total }
    }

    fn update(&self, info: &JobInfo, files: &[FileInfo]) {
        for (bar, f) in self.files.iter().zip(files) {
            if let Some(t) = f.bytes_total {
                bar.set_length(t);
            }
            bar.set_position(f.bytes_transferred);
            if f.completed && !bar.is_finished() {
                bar.finish();
            }
        }
        if let Some(total) = &self.total {
            if let Some(t) = info.bytes_total {
                total.set_length(t);
            }
            total.set_position(info.bytes_transferred);
            total.set_message(format!(
                "{}/{} files",
                info.files_transferred, info.files_total
            ));
        }
        let note = match info.state() {
            JobState::TransientError => "retrying",
            JobState::Connecting => "connecting",
            JobState::Suspended => "suspended",
            _ => "",
        };
        for bar in self.files.iter().filter(|b| !b.is_finished()) {
            bar.set_message(note);
        }
    }

    fn finish(&self, state: JobState) {
        for bar in self.files.iter().chain(&self.total) {
            if state == JobState::Transferred {
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}

/// Waits until the job is transferred, in error, or final; shows bars when `display`
/// draws them, and notes when the daemon goes away and comes back (the watch itself waits
/// for it: see `ferry_client::ConnectOptions::reconnect_timeout`).
pub async fn wait_with_progress(job: &Job, display: &Display) -> Result<JobInfo> {
    let _follow = display.follow_connection(job.manager(), Some(job.id()));
    let done = |s: JobState| matches!(s, JobState::Transferred | JobState::Error) || s.is_final();
    let Some(multi) = display.multi.clone() else {
        return job.wait_for(done).await;
    };
    let mut bars: Option<Bars> = None;
    let mut stream = Box::pin(job.watch().await?);
    while let Some(info) = stream.next().await {
        let info = info?;
        if let Ok(files) = job.files().await {
            let bars = bars.get_or_insert_with(|| Bars::new(multi.clone(), &files));
            bars.update(&info, &files);
        }
        if done(info.state()) {
            if let Some(b) = &bars {
                b.finish(info.state());
            }
            return Ok(info);
        }
    }
    job.wait_for(done).await
}

/// How a foreground `get` waits: it gives up after `retries` transient errors in a row
/// (curl's `--retry`), or at `deadline` (`--max-time`).
pub struct Patience {
    pub retries: u32,
    pub deadline: Option<tokio::time::Instant>,
}

/// How a wait ended.
pub enum Waited {
    /// Transferred, in error, or final.
    Ended(JobInfo),
    /// Transient errors in a row past the patience (the last one in the job's error).
    GaveUp(JobInfo),
    /// The deadline came.
    TimedOut,
}

/// Waits for `job` like [`wait_with_progress`], telling each transient error on the way
/// (once each), and giving up as `patience` says.
pub async fn wait_patiently(job: &Job, display: &Display, patience: &Patience) -> Result<Waited> {
    let _follow = display.follow_connection(job.manager(), Some(job.id()));
    let done = |s: JobState| matches!(s, JobState::Transferred | JobState::Error) || s.is_final();
    let mut bars: Option<Bars> = None;
    let mut stream = Box::pin(job.watch().await?);
    let first = job.info().await?;
    // Errors counted from the job's count now (a job found again may have some).
    let base = first.error_count;
    let mut told = base;
    let mut in_a_row = 0u32;
    let mut last_bytes = first.bytes_transferred;
    let far = tokio::time::Instant::now() + std::time::Duration::from_secs(100 * 365 * 86400);
    let deadline = patience.deadline.unwrap_or(far);
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = tokio::time::sleep_until(deadline) => return Ok(Waited::TimedOut),
        };
        let Some(info) = next else {
            return Ok(Waited::Ended(job.wait_for(done).await?));
        };
        let info = info?;
        if let Some(multi) = &display.multi {
            if let Ok(files) = job.files().await {
                let bars = bars.get_or_insert_with(|| Bars::new(multi.clone(), &files));
                bars.update(&info, &files);
            }
        }
        if info.bytes_transferred > last_bytes {
            last_bytes = info.bytes_transferred;
            in_a_row = 0;
        }
        if info.state() == JobState::TransientError && info.error_count > told {
            in_a_row += info.error_count - told;
            told = info.error_count;
            if let Some(e) = &info.error {
                let left = patience.retries.saturating_sub(in_a_row);
                display.note(&format!(
                    "ferry: {} ({}); {}",
                    e.message,
                    e.code,
                    if in_a_row > patience.retries {
                        "giving up".to_string()
                    } else {
                        format!(
                            "retrying ({left} more {} at most)",
                            if left == 1 { "try" } else { "tries" }
                        )
                    }
                ));
            }
            if in_a_row > patience.retries {
                if let Some(b) = &bars {
                    b.finish(JobState::Error);
                }
                return Ok(Waited::GaveUp(info));
            }
        }
        if done(info.state()) {
            if let Some(b) = &bars {
                b.finish(info.state());
            }
            return Ok(Waited::Ended(info));
        }
    }
}
