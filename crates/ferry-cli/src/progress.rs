//! Progress bars for `get` and `wait`, drawn only on a terminal.

use std::io::IsTerminal;

use ferry_client::{Job, JobInfo, JobState, Result};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

/// Waits until the job is transferred, in error, or final; shows a bar per file when
/// stderr is a terminal and `show` is true.
pub async fn wait_with_progress(job: &Job, show: bool) -> Result<JobInfo> {
    let show = show && std::io::stderr().is_terminal();
    let done = |s: JobState| matches!(s, JobState::Transferred | JobState::Error) || s.is_final();
    if !show {
        return job.wait_for(done).await;
    }
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let mut bars: Vec<ProgressBar> = Vec::new();
    let mut stream = Box::pin(job.watch().await?);
    let mut last = None;
    while let Some(info) = stream.next().await {
        let info = info?;
        if let Ok(files) = job.files().await {
            while bars.len() < files.len() {
                let name = std::path::Path::new(&files[bars.len()].local_path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let bar = multi.add(ProgressBar::new(0).with_style(style()).with_prefix(name));
                bars.push(bar);
            }
            for (bar, f) in bars.iter().zip(&files) {
                if let Some(t) = f.bytes_total {
                    bar.set_length(t);
                }
                bar.set_position(f.bytes_transferred);
                if f.completed {
                    bar.finish();
                }
            }
        }
        let state = info.state();
        for bar in &bars {
            if !bar.is_finished() {
                bar.set_message(match state {
                    JobState::TransientError => "retrying",
                    JobState::Connecting => "connecting",
                    _ => "",
                });
            }
        }
        if done(state) {
            for bar in &bars {
                if state == JobState::Transferred {
                    bar.finish();
                } else {
                    bar.abandon();
                }
            }
            return Ok(info);
        }
        last = Some(info);
    }
    drop(last);
    job.wait_for(done).await
}
