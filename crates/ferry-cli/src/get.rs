//! `ferry get`: download URLs now, as curl or aria2c would — one job created with its
//! files and options in one call (so input the daemon refuses leaves no job behind),
//! progress bars, the files put in place, a one-line summary. It rides out a daemon
//! restart: the library reconnects (starting ferryd again unless `--no-autostart`) and
//! the job goes on where the daemon's store left it.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use ferry_client::{
    CompleteOutcome, Error as ClientError, FileSpec, Job, JobProperties, JobState, NewJob,
};
use ferry_common::units::{format_rate, format_size};

use crate::commands::{priority, Ctx};
use crate::failure::{usage, JobFailed};
use crate::options::{absolute, TransferProperties};
use crate::output;
use crate::progress::{daemon_gone_hint, wait_with_progress, Display};
use ferry_cli::args::GetArgs;

/// The file name a URL is saved under (its last path segment; `index.html` for none).
fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() {
        "index.html".into()
    } else {
        name.to_string()
    }
}

pub async fn get(ctx: &Ctx, mut a: GetArgs) -> Result<i32> {
    let started = Instant::now();
    if let Some(list) = &a.input_file {
        a.urls.extend(read_url_list(list)?);
    }
    if a.urls.is_empty() {
        return Err(usage(
            "no URL to download: give URLs or a non-empty --input-file",
        ));
    }
    if a.sha256.is_some() && a.urls.len() > 1 {
        return Err(usage(
            "--sha256 applies to one URL; give one URL or check the files separately",
        ));
    }
    let mut specs = Vec::new();
    for url in &a.urls {
        let dest = match (&a.output, a.urls.len()) {
            (Some(o), 1) if !o.is_dir() => absolute(o)?,
            (Some(dir), _) => absolute(dir)?.join(url_file_name(url)),
            (None, _) => absolute(Path::new(&url_file_name(url)))?,
        };
        let mut spec = FileSpec::new(url.clone(), dest.to_string_lossy().into_owned());
        if let Some(h) = &a.sha256 {
            spec = spec.sha256(h.clone());
        }
        specs.push(spec);
    }
    let properties = JobProperties {
        minimum_retry_delay_secs: Some(a.retry_delay.as_secs().max(1)),
        no_progress_timeout_secs: Some(a.no_progress_timeout.as_secs().max(1)),
        connections: a.connections,
        ..a.transfer.properties(false, false)?
    };
    let manager = ctx.manager().await?;
    // One call: the daemon checks every file and option before it creates the job.
    let job = manager
        .create_job_with(NewJob {
            priority: priority(&a.priority)?,
            files: specs,
            properties: Some(properties),
            ..NewJob::download(get_job_name(&a.urls))
        })
        .await?;
    job.resume()
        .await
        .map_err(|e| daemon_gone_hint(e, job.id(), true))?;
    if a.detach {
        if ctx.json {
            output::json(&job.info().await?);
        } else {
            outln!("{}", job.id());
        }
        return Ok(0);
    }
    let display = Display::new(!ctx.json && !a.quiet, a.quiet);
    let info = wait_with_progress(&job, &display)
        .await
        .map_err(|e| daemon_gone_hint(e, job.id(), true))?;
    match info.state() {
        JobState::Transferred => {
            let out = complete(&job)
                .await
                .map_err(|e| daemon_gone_hint(e, job.id(), true))?;
            if ctx.json {
                output::json(&out.job);
            } else if !a.quiet {
                display.note(&summary(&out, started.elapsed()));
            }
            Ok(0)
        }
        state => {
            if !state.is_final() {
                let _ = job.cancel().await;
            }
            if ctx.json {
                output::json(&info);
            }
            // The error, its hint and the exit code of its kind (failure.rs).
            Err(JobFailed(info).into())
        }
    }
}

/// Completes the job; if the daemon went away during the call (so it may or may not have
/// happened), looks at the job on the daemon that comes back and completes it again if
/// it is still `transferred`.
async fn complete(job: &Job) -> ferry_client::Result<CompleteOutcome> {
    let mut attempts = 0;
    loop {
        match job.complete().await {
            Err(ClientError::DaemonGone { .. }) if attempts < 3 => {
                attempts += 1;
                let info = job.info().await?;
                match info.state() {
                    JobState::Acknowledged => {
                        return Ok(CompleteOutcome {
                            files_committed: info.files_transferred,
                            files_discarded: info.files_total - info.files_transferred,
                            job: info,
                        })
                    }
                    JobState::Transferred => continue,
                    _ => return job.complete().await,
                }
            }
            other => return other,
        }
    }
}

/// The closing line: files, bytes, time, average rate.
fn summary(out: &CompleteOutcome, elapsed: std::time::Duration) -> String {
    let files = out.files_committed;
    let bytes = out.job.bytes_transferred;
    let secs = elapsed.as_secs_f64().max(0.001);
    let time = if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = secs.round() as u64;
        format!("{}m {:02}s", s / 60, s % 60)
    };
    format!(
        "downloaded {files} file{}, {} in {time} ({} on average)",
        if files == 1 { "" } else { "s" },
        format_size(bytes),
        format_rate((bytes as f64 / secs) as u64),
    )
}

/// The URLs of a `--input-file` list ("-": standard input).
fn read_url_list(path: &Path) -> Result<Vec<String>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading URLs from standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the URL list {}", path.display()))?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// The display name of a `ferry get` job: the first URL, and how many more there are,
/// kept within the daemon's 4096-byte limit.
fn get_job_name(urls: &[String]) -> String {
    const MAX: usize = 4096;
    let mut name = format!("ferry get {}", urls[0]);
    let more = match urls.len() {
        1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    if name.len() + more.len() > MAX {
        let mut cut = MAX - more.len() - 3;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push_str("...");
    }
    name + &more
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_files_bytes_time_and_rate() {
        let job = crate::testdata::job("j", JobState::Acknowledged, 3 << 20, Some(3 << 20));
        let out = CompleteOutcome {
            job,
            files_committed: 3,
            files_discarded: 0,
        };
        let line = summary(&out, std::time::Duration::from_secs(2));
        assert_eq!(
            line,
            "downloaded 3 files, 3.0 MiB in 2.0 s (1.5 MiB/s on average)"
        );
        let long = summary(&out, std::time::Duration::from_secs(135));
        assert!(long.contains("in 2m 15s"), "{long}");
    }

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(url_file_name("http://h/a/b.iso?x=1#f"), "b.iso");
        assert_eq!(url_file_name("http://h/"), "index.html");
    }
}
