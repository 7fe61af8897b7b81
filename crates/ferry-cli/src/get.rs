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
use crate::failure::{usage, JobFailed, Partial, TimedOut};
use crate::options::{absolute, TransferProperties};
use crate::output;
use crate::progress::{daemon_gone_hint, wait_patiently, Display, Patience, Waited};
use ferry_cli::args::GetArgs;
use ferry_cli::exit::Exit;

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
    if !a.mirrors.is_empty() && a.urls.len() > 1 {
        return Err(usage(
            "--mirror applies to one URL (its mirrors); give one URL, or add each file with \
             its mirrors by `ferry add-file JOB URL PATH --mirror URL2`",
        ));
    }
    let to_stdout = a.output.as_deref() == Some(Path::new("-"));
    if to_stdout && (a.urls.len() > 1 || a.detach) {
        return Err(usage(
            "-o - writes one URL's bytes to standard output, in the foreground: give one URL, \
             without --detach",
        ));
    }
    // `-o -`: the job writes into a private folder of this process, whose file is copied
    // to standard output once verified (and the job cancelled, which deletes it).
    let scratch = if to_stdout {
        Some(
            tempfile::Builder::new()
                .prefix("ferry-get-")
                .tempdir()
                .context("making a private folder for -o -")?,
        )
    } else {
        None
    };
    let specs = destinations(&a, scratch.as_ref().map(|d| d.path()))?;
    let several = specs.len() > 1;
    let properties = JobProperties {
        minimum_retry_delay_secs: Some(a.retry_delay.as_secs().max(1)),
        no_progress_timeout_secs: Some(a.no_progress_timeout.as_secs().max(1)),
        connections: a.connections,
        // Several URLs: one that fails does not stop the others (wget's way).
        keep_going: several.then_some(true),
        // Detached: the job puts its files in place itself.
        auto_complete: a.detach.then_some(true),
        ..a.transfer.properties(false, false)?
    };
    let manager = ctx.manager().await?;
    let display = Display::new(!ctx.json && !a.quiet, a.quiet);
    // The same `ferry get` again (after Ctrl-C, say) goes on with the job that is there.
    let job = match same_get(&manager, &a.urls, &specs).await? {
        Some(job) => {
            display.note(&format!(
                "ferry: going on with job {} (started earlier for these files)",
                job.id()
            ));
            let info = job.info().await?;
            if matches!(info.state(), JobState::Suspended | JobState::Error) {
                job.resume()
                    .await
                    .map_err(|e| daemon_gone_hint(e, job.id(), true))?;
            }
            job
        }
        None => {
            // One call: the daemon checks every file and option before it creates the job,
            // and queues it in the same transaction.
            manager
                .create_job_with(NewJob {
                    priority: priority(&a.priority)?,
                    files: specs.clone(),
                    properties: Some(properties),
                    resume: true,
                    ..NewJob::download(get_job_name(&a.urls))
                })
                .await?
        }
    };
    if a.detach {
        if ctx.json {
            output::json(&job.info().await?);
        } else {
            outln!("{}", job.id());
        }
        return Ok(0);
    }
    let patience = Patience {
        retries: a.retry,
        deadline: a.max_time.map(|t| tokio::time::Instant::now() + t),
    };
    let waited = tokio::select! {
        w = wait_patiently(&job, &display, &patience) => {
            w.map_err(|e| daemon_gone_hint(e, job.id(), true))?
        }
        _ = tokio::signal::ctrl_c() => {
            if to_stdout {
                let _ = job.cancel().await;
                return Ok(Exit::Interrupted.code());
            }
            display.finish();
            eprintln!(
                "\nferry: interrupted; job {id} goes on in the background: `ferry wait {id}` \
                 follows it and puts the files in place, `ferry cancel {id}` stops it, and \
                 the same `ferry get` goes on with it",
                id = job.id()
            );
            return Ok(Exit::Interrupted.code());
        }
    };
    let info = match waited {
        Waited::Ended(info) => info,
        Waited::GaveUp(info) => {
            // A foreground get that cannot get anywhere ends, as curl's --retry does.
            let _ = job.cancel().await;
            if ctx.json {
                output::json(&info);
            }
            return Err(JobFailed(info).into());
        }
        Waited::TimedOut => {
            let _ = job.cancel().await;
            return Err(TimedOut {
                job: job.id(),
                after: a.max_time.unwrap_or_default(),
            }
            .into());
        }
    };
    match info.state() {
        JobState::Transferred if to_stdout => {
            let files = job.files().await?;
            let part = files
                .first()
                .map(|f| f.temporary_path.clone())
                .context("the job has no file")?;
            let copied = copy_to_stdout(Path::new(&part));
            let _ = job.cancel().await;
            copied?;
            Ok(0)
        }
        JobState::Transferred => {
            complete_and_report(&job, ctx, a.quiet, &display, started).await?;
            Ok(0)
        }
        JobState::Error if several && info.files_transferred > 0 => {
            // Keep those that succeeded (wget's way); the exit code says it was partial.
            display.note(&format!(
                "ferry: {}",
                info.error
                    .as_ref()
                    .map_or_else(|| "a file failed".to_string(), |e| e.message.clone())
            ));
            let out = complete_and_report(&job, ctx, a.quiet, &display, started).await?;
            Err(Partial {
                job: job.id(),
                committed: out.files_committed,
                discarded: out.files_discarded,
            }
            .into())
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

/// The files of a `get`: each URL's destination by `-o` (a file for one URL; a folder
/// for several, or for a path ending in '/', made if missing as with `--create-dirs`;
/// `scratch` for `-o -`) or the current folder.
fn destinations(a: &GetArgs, scratch: Option<&Path>) -> Result<Vec<FileSpec>> {
    let folder_named = a.output.as_ref().is_some_and(|o| {
        o.as_os_str().as_encoded_bytes().ends_with(b"/") || o.is_dir() || a.urls.len() > 1
    });
    let mut specs = Vec::new();
    for url in &a.urls {
        let dest = match (scratch, &a.output) {
            (Some(dir), _) => dir.join(url_file_name(url)),
            (None, Some(o)) if folder_named => absolute(o)?.join(url_file_name(url)),
            (None, Some(o)) => absolute(o)?,
            (None, None) => absolute(Path::new(&url_file_name(url)))?,
        };
        let folder = dest.parent().unwrap_or(Path::new("/"));
        let trailing = a
            .output
            .as_ref()
            .is_some_and(|o| o.as_os_str().as_encoded_bytes().ends_with(b"/"));
        if (a.create_dirs || trailing) && !folder.exists() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("making the folder {}", folder.display()))?;
        }
        let mut spec = FileSpec::new(url.clone(), dest.to_string_lossy().into_owned());
        if let Some(h) = &a.sha256 {
            spec = spec.sha256(h.clone());
        }
        spec.mirrors = a.mirrors.clone();
        specs.push(spec);
    }
    Ok(specs)
}

/// A job of this user not yet done that a `ferry get` of the same URLs into the same
/// files made (the same command again goes on with it).
async fn same_get(
    manager: &ferry_client::Manager,
    urls: &[String],
    specs: &[FileSpec],
) -> Result<Option<Job>> {
    let name = get_job_name(urls);
    for info in manager.jobs(false).await? {
        if info.display_name != name
            || info.files_total as usize != specs.len()
            || info.state().is_final()
        {
            continue;
        }
        let job = manager.job(info.id).await?;
        let files = job.files().await?;
        let same = files
            .iter()
            .zip(specs)
            .all(|(f, s)| f.remote_url == s.remote_url && same_path(&f.local_path, &s.local_path));
        if same {
            return Ok(Some(job));
        }
    }
    Ok(None)
}

/// True when two local paths name the same file (as given, or once their folders are
/// resolved: ferryd keeps the resolved path).
fn same_path(stored: &str, asked: &str) -> bool {
    if stored == asked {
        return true;
    }
    let resolve = |p: &str| {
        let p = Path::new(p);
        let folder = std::fs::canonicalize(p.parent()?).ok()?;
        Some(folder.join(p.file_name()?))
    };
    match (resolve(stored), resolve(asked)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Copies a verified file to standard output (`-o -`), in pieces through
/// `stdout::bytes` (a closed pipe ends quietly).
fn copy_to_stdout(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("reading the downloaded file {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading the downloaded file {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        crate::stdout::bytes(&buf[..n]);
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

/// Completes the job ([`complete`]) and reports it: the job as JSON under `--json`, else
/// the closing line unless `--quiet`.
async fn complete_and_report(
    job: &Job,
    ctx: &Ctx,
    quiet: bool,
    display: &Display,
    started: Instant,
) -> Result<CompleteOutcome> {
    let out = complete(job)
        .await
        .map_err(|e| daemon_gone_hint(e, job.id(), true))?;
    if ctx.json {
        output::json(&out.job);
    } else if !quiet {
        display.note(&summary(&out, started.elapsed()));
    }
    Ok(out)
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
